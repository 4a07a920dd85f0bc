"""an identified sender's ticket keeps its stand-in id, so an older event under it is told

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Tickets identified before this ran do not know their stand-in id: an event under it
    # delivered again still re-files such a ticket, until its identification comes again.
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stand_in_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.drop_column("stand_in_id")
