"""crm.analytics.v1: scores analytics publishes back for sales and marketing to act on, keyed
by the customer id. Published when a customer's scores change, so consumers can upsert."""

import uuid
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, Field

from shared import topics

TOPIC = topics.ANALYTICS
SOURCE = "/crm/analytics"

CUSTOMER_SCORED = "crm.customer.scored.v1"


class ScoreFactor(BaseModel):
    """One reason behind a score, so a rep can see why a customer is at risk."""

    name: str  # e.g. days_since_last_touch, negative_sentiment, breached_tickets
    value: float
    weight: float


class CustomerScored(BaseModel):
    customer_id: uuid.UUID
    rfm_segment: str | None = None  # champions | loyal | at_risk | hibernating | new | ...
    recency_days: int | None = None
    frequency: int = 0  # non-refunded orders, in every currency
    # The currency of monetary and clv (analytics' reporting currency): only orders in it are
    # summed there. Absent from events published before it was added (they summed every
    # currency's amounts as one).
    currency: str | None = None
    monetary: Decimal = Decimal(0)
    # The other currencies' non-refunded orders, summed per currency (no conversion).
    monetary_other_currencies: dict[str, Decimal] = Field(default_factory=dict)
    clv: Decimal = Decimal(0)
    churn_risk: float = Field(ge=0, le=1)
    churn_level: str  # low | medium | high
    factors: list[ScoreFactor] = Field(default_factory=list)
    scored_at: AwareDatetime


EVENT_TYPES: dict[str, type[BaseModel]] = {CUSTOMER_SCORED: CustomerScored}
