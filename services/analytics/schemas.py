"""Response bodies of analytics' API (it takes no request bodies: analytics only reads)."""

import uuid
from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from shared.contracts.analytics import ScoreFactor
from shared.customer_view import TimelineItem


class FromAttributes(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ProfileRead(FromAttributes):
    name: str
    company: str | None
    country: str | None


class OpenTicket(FromAttributes):
    ticket_id: uuid.UUID
    channel: str | None
    priority: str | None
    opened_at: datetime
    agent_id: uuid.UUID | None
    messages: int
    sla_breaches: int
    reopen_count: int


class OpenOpportunity(FromAttributes):
    opportunity_id: uuid.UUID
    owner: str
    stage: str
    probability: float
    amount: Decimal
    currency: str
    expected_close: date | None
    opened_at: datetime


class OrderRead(FromAttributes):
    order_id: uuid.UUID
    amount: Decimal
    currency: str
    status: str
    ordered_at: datetime
    paid_at: datetime | None
    refunded_at: datetime | None


class CustomerScores(BaseModel):
    customer_id: uuid.UUID
    rfm_segment: str | None
    recency_days: int | None
    frequency: int
    currency: str
    monetary: Decimal
    monetary_other_currencies: dict[str, Decimal]
    clv: Decimal
    churn_risk: float
    churn_level: str
    factors: list[ScoreFactor]
    scored_at: datetime


class Touches(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None


class Customer360(BaseModel):
    customer_id: uuid.UUID
    profile: ProfileRead | None
    touches: Touches
    touches_per_channel: dict[str, int]
    touches_per_department: dict[str, int]
    last_inbound: TimelineItem | None
    last_outbound: TimelineItem | None
    open_tickets: list[OpenTicket]
    open_opportunities: list[OpenOpportunity]
    orders: list[OrderRead]
    scores: CustomerScores


class SegmentCount(BaseModel):
    segment: str
    customers: int


class SegmentMember(FromAttributes):
    customer_id: uuid.UUID
    rfm_segment: str | None
    recency_days: int | None
    frequency: int
    currency: str | None  # None: scored before the currency was kept, all currencies summed
    monetary: Decimal
    monetary_other_currencies: dict[str, Decimal] | None
    clv: Decimal
    churn_risk: float
    churn_level: str


class Segments(BaseModel):
    segments: list[SegmentCount]
