"""each opportunity's weighted amount stored, rounded to the cent half up as sales rounds it

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 11:00:00
"""

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FACTS = sa.table(
    "opportunity_facts",
    sa.column("opportunity_id", sa.Uuid()),
    sa.column("amount", sa.Numeric(precision=18, scale=2)),
    sa.column("probability", sa.Float()),
    sa.column("weighted", sa.Numeric(precision=18, scale=2)),
)


def upgrade() -> None:
    with op.batch_alter_table("opportunity_facts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weighted", sa.Numeric(precision=18, scale=2), nullable=True))
    # The existing facts, as services/analytics/rules.weighted computes a new one (copied
    # here: a migration must not change when that code does).
    connection = op.get_bind()
    values = [
        {
            "key": key,
            "value": (Decimal(str(amount)) * Decimal(str(probability))).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_UP
            ),
        }
        for key, amount, probability in connection.execute(
            sa.select(FACTS.c.opportunity_id, FACTS.c.amount, FACTS.c.probability)
        )
    ]
    if values:
        connection.execute(
            FACTS.update()
            .where(FACTS.c.opportunity_id == sa.bindparam("key"))
            .values(weighted=sa.bindparam("value")),
            values,
        )
    with op.batch_alter_table("opportunity_facts", schema=None) as batch_op:
        batch_op.alter_column(
            "weighted", existing_type=sa.Numeric(precision=18, scale=2), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("opportunity_facts", schema=None) as batch_op:
        batch_op.drop_column("weighted")
