"""money columns of 20 digits: an order's amount from sales and a CLV from analytics fit

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {"orders": ["amount"], "scores": ["clv"], "campaigns": ["budget", "cost_per_send"]}


def _retype(precision: int) -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:  # SQLite rebuilds the table
            for column in columns:
                batch.alter_column(
                    column,
                    type_=sa.Numeric(precision=precision, scale=4),
                    existing_nullable=False,
                )


def upgrade() -> None:
    _retype(20)


def downgrade() -> None:
    _retype(14)
