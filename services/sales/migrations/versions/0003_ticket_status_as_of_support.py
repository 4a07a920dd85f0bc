"""a support ticket's updated_at is the time support told its status (it was the time sales
applied it, which made every earlier-dated status event look late)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 22:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The time a row's status was told is not known: its opening's is a lower bound, so any
    # status event still to come applies, as before.
    op.execute("UPDATE support_tickets SET updated_at = opened_at")


def downgrade() -> None:
    pass  # the times applied are gone; the opening's serve as well
