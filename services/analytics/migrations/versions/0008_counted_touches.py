"""counted touches: the ids of the touches in touch_daily, which survive erasures

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "counted_touches",
        sa.Column("interaction_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("interaction_id", name=op.f("pk_counted_touches")),
    )
    # Every touch on the timeline was counted. Those of customers erased before this ran are
    # gone from it: one of them delivered again is counted again, as before.
    op.execute("INSERT INTO counted_touches (interaction_id) SELECT interaction_id FROM timeline")


def downgrade() -> None:
    op.drop_table("counted_touches")
