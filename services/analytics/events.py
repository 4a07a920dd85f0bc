"""The events analytics emits: a customer's scores on crm.analytics.v1 when they change, keyed
by the customer id so sales and marketing can upsert them."""

from typing import Any

from shared import topics
from shared.contracts.analytics import CUSTOMER_SCORED, SOURCE, CustomerScored
from shared.outbox import event_row


def customer_scored_row(score: dict[str, Any]) -> dict[str, Any]:
    """The outbox row of a changed score, given the values of its customer_scores row (the
    rescoring inserts a batch's rows at once)."""
    key = str(score["customer_id"])
    return event_row(
        topic=topics.ANALYTICS,
        key=key,
        event_type=CUSTOMER_SCORED,
        source=SOURCE,
        subject=key,
        data=CustomerScored.model_validate(score),
    )
