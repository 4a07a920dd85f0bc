"""applied-event records indexed by age (the consumer prunes the old ones every hour)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 06:50:00
"""

from collections.abc import Sequence

from shared.migrations import drop_processed_events_age_index, index_processed_events_by_age

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    index_processed_events_by_age()


def downgrade() -> None:
    drop_processed_events_age_index()
