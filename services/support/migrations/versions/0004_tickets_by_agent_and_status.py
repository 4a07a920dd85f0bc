"""tickets indexed by agent and status (routing counts only the candidate agents' open tickets)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.create_index("ix_tickets_agent_status", ["agent_id", "status"], unique=False)
        batch_op.drop_index("ix_tickets_agent_id")


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.create_index("ix_tickets_agent_id", ["agent_id"], unique=False)
        batch_op.drop_index("ix_tickets_agent_status")
