"""crm.sales.v1: leads, opportunities and orders. Keyed by the customer id; a lead that is not
yet a customer is keyed by its lead id. No names, e-mail addresses or phone numbers: a lead's
PII stays in sales, a customer's in contacts.

Also the inbound topic an integrator (an accounting system) publishes orders on, which sales
consumes and republishes as its own ``OrderPlaced``/``OrderPaid``/``OrderRefunded``."""

import uuid
from datetime import date
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, Field

from shared import topics
from shared.values import MAX_AMOUNT, UTCTime

TOPIC = topics.SALES
SOURCE = "/crm/sales"

LEAD_CREATED = "crm.sales.lead_created.v1"
LEAD_QUALIFIED = "crm.sales.lead_qualified.v1"
LEAD_DISQUALIFIED = "crm.sales.lead_disqualified.v1"
LEAD_CONVERTED = "crm.sales.lead_converted.v1"
OPPORTUNITY_OPENED = "crm.sales.opportunity_opened.v1"
OPPORTUNITY_STAGE_CHANGED = "crm.sales.opportunity_stage_changed.v1"
OPPORTUNITY_UPDATED = "crm.sales.opportunity_updated.v1"
ORDER_PLACED = "crm.sales.order_placed.v1"
ORDER_PAID = "crm.sales.order_paid.v1"
ORDER_REFUNDED = "crm.sales.order_refunded.v1"
# On topics.EXTERNAL_ORDERS, published by integrators.
EXTERNAL_ORDER = "crm.sales.external_order.v1"

Money = Decimal  # serialised as a string, never a float


class LeadCreated(BaseModel):
    lead_id: uuid.UUID
    source: str  # web | campaign | referral | event | ...
    campaign_id: uuid.UUID | None = None
    owner: str | None = None
    territory: str | None = None
    score: int | None = None
    created_at: AwareDatetime


class LeadQualified(BaseModel):
    lead_id: uuid.UUID
    score: int | None = None
    qualified_at: AwareDatetime


class LeadDisqualified(BaseModel):
    lead_id: uuid.UUID
    reason: str
    disqualified_at: AwareDatetime


class LeadConverted(BaseModel):
    lead_id: uuid.UUID
    customer_id: uuid.UUID
    opportunity_id: uuid.UUID | None = None
    source: str
    campaign_id: uuid.UUID | None = None
    converted_at: AwareDatetime


class OpportunityOpened(BaseModel):
    opportunity_id: uuid.UUID
    customer_id: uuid.UUID
    owner: str
    stage: str
    probability: float = Field(ge=0, le=1)
    amount: Money
    currency: str
    expected_close: date | None = None
    lead_id: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = None
    opened_at: AwareDatetime


class OpportunityStageChanged(BaseModel):
    """Also how won and lost are told (``stage`` won|lost, with a ``reason``)."""

    opportunity_id: uuid.UUID
    customer_id: uuid.UUID
    owner: str
    from_stage: str
    stage: str
    probability: float = Field(ge=0, le=1)
    amount: Money
    currency: str
    expected_close: date | None = None
    reason: str | None = None
    opened_at: AwareDatetime
    changed_at: AwareDatetime


class OpportunityUpdated(BaseModel):
    """A deal's terms changed (amount, expected close, owner); the stage did not."""

    opportunity_id: uuid.UUID
    customer_id: uuid.UUID
    owner: str
    stage: str
    probability: float = Field(ge=0, le=1)
    amount: Money
    currency: str
    expected_close: date | None = None
    opened_at: AwareDatetime
    updated_at: AwareDatetime


class OrderPlaced(BaseModel):
    order_id: uuid.UUID
    customer_id: uuid.UUID
    amount: Money
    currency: str
    status: str  # placed | paid | refunded
    campaign_id: uuid.UUID | None = None
    external_id: str | None = None
    ordered_at: AwareDatetime


class OrderPaid(BaseModel):
    order_id: uuid.UUID
    customer_id: uuid.UUID
    amount: Money
    currency: str
    paid_at: AwareDatetime


class OrderRefunded(BaseModel):
    order_id: uuid.UUID
    customer_id: uuid.UUID
    amount: Money
    currency: str
    refunded_at: AwareDatetime


class ExternalOrder(BaseModel):
    """An order from an accounting system; ``external_id`` makes a re-publish harmless."""

    # No U+0000 (PostgreSQL cannot store it), and the currency as the sales API takes it: an
    # order in "eur" would sit apart from the "EUR" ones in every figure.
    external_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$")
    customer_id: uuid.UUID
    # In cents, as sales keeps it: a fraction of a cent would be rounded in sales' books
    # while its order events told subscribers the amount as sent.
    amount: Money = Field(
        ge=0, le=MAX_AMOUNT, decimal_places=2, description="at most two decimals (cents)"
    )
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, upper case")
    status: str = Field(default="placed", pattern="^(placed|paid|refunded)$")
    ordered_at: UTCTime  # written by an integrator: checked as strictly as an API's input


EVENT_TYPES: dict[str, type[BaseModel]] = {
    LEAD_CREATED: LeadCreated,
    LEAD_QUALIFIED: LeadQualified,
    LEAD_DISQUALIFIED: LeadDisqualified,
    LEAD_CONVERTED: LeadConverted,
    OPPORTUNITY_OPENED: OpportunityOpened,
    OPPORTUNITY_STAGE_CHANGED: OpportunityStageChanged,
    OPPORTUNITY_UPDATED: OpportunityUpdated,
    ORDER_PLACED: OrderPlaced,
    ORDER_PAID: OrderPaid,
    ORDER_REFUNDED: OrderRefunded,
    EXTERNAL_ORDER: ExternalOrder,
}
