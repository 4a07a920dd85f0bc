"""The events analytics emits: a customer's scores on crm.analytics.v1 when they change, keyed
by the customer id so sales and marketing can upsert them."""

from typing import Any

from services.analytics.models import CustomerScore
from shared import topics
from shared.contracts.analytics import CUSTOMER_SCORED, SOURCE, CustomerScored, ScoreFactor
from shared.outbox import event_row


def scored(row: CustomerScore) -> CustomerScored:
    return CustomerScored(
        customer_id=row.customer_id,
        rfm_segment=row.rfm_segment,
        recency_days=row.recency_days,
        frequency=row.frequency,
        monetary=row.monetary,
        clv=row.clv,
        churn_risk=row.churn_risk,
        churn_level=row.churn_level,
        factors=[ScoreFactor(**factor) for factor in row.factors],
        scored_at=row.scored_at,
    )


def customer_scored_row(row: CustomerScore) -> dict[str, Any]:
    """The outbox row of a changed score (the rescoring inserts a batch's rows at once)."""
    key = str(row.customer_id)
    return event_row(
        topic=topics.ANALYTICS,
        key=key,
        event_type=CUSTOMER_SCORED,
        source=SOURCE,
        subject=key,
        data=scored(row),
    )
