"""a ticket filed under an unknown sender's stand-in id flagged, so that id is not scored

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The tickets already kept came from events without the flag: false, as they were read.
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unknown_customer", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.drop_column("unknown_customer")
