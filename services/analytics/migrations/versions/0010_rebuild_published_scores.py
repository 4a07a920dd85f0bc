"""a rebuild keeps the scores last published in a table, not in memory

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rebuild_published_scores",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("score", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_rebuild_published_scores")),
    )


def downgrade() -> None:
    op.drop_table("rebuild_published_scores")
