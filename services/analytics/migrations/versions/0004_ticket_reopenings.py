"""each reopening of a ticket recorded once (reopen_count counts a repeated one once)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticket_reopen_facts",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", "reopened_at", name=op.f("pk_ticket_reopen_facts")),
    )
    # The latest reopening of each ticket was all the facts kept: recorded, a repeat of it is
    # still not counted again.
    op.execute(
        "INSERT INTO ticket_reopen_facts (ticket_id, reopened_at) "
        "SELECT ticket_id, reopened_at FROM ticket_facts WHERE reopened_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("ticket_reopen_facts")
