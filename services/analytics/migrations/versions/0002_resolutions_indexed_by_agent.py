"""ticket resolutions indexed by agent first (the per-agent KPI reads one range per agent)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["resolution_seconds", "messages", "csat"]


def upgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_facts_resolved")
        batch_op.create_index(
            "ix_ticket_facts_resolved_by", ["resolved_by", "resolved_at", *COLUMNS], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_facts_resolved_by")
        batch_op.create_index(
            "ix_ticket_facts_resolved", ["resolved_at", "resolved_by", *COLUMNS], unique=False
        )
