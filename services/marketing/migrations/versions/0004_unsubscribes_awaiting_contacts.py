"""an unsubscribe kept until a contact snapshot shows it back, not only until a later one

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("engagements", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("awaiting_contacts", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # The unsubscribes no snapshot has reached since (the old rule kept just those) still
    # wait for contacts to show them back.
    op.execute(
        "UPDATE engagements SET awaiting_contacts = true WHERE kind = 'unsubscribed'"
        " AND occurred_at > (SELECT r.updated_at FROM recipients r"
        " WHERE r.contact_id = engagements.customer_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("engagements", schema=None) as batch_op:
        batch_op.drop_column("awaiting_contacts")
