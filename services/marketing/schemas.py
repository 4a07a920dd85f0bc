"""Request and response bodies of the marketing API."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
)

from services.marketing import rules
from services.marketing.rules import CampaignChannel
from shared.customer_view.schemas import no_contact_details
from shared.values import CalendarDay, HappenedAt, UTCTime

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_contact_details),  # names go on the bus (events, timeline subjects)
]
Person = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Money = Annotated[
    Decimal,
    Field(
        ge=0,
        max_digits=14,
        decimal_places=4,
        description='a decimal number or string ("0.05"), at least 0, at most four decimals',
    ),
]
# Amounts out as plain decimal strings without trailing zeros ("100", "0.05").
Amount = Annotated[Decimal, PlainSerializer(lambda v: f"{v.normalize():f}", return_type=str)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- segments -------------------------------------------------------------------------------


SegmentRules = Annotated[
    dict[str, Any],
    Field(
        description='a condition {"field", "op", "value"} or a group {"and": [...]},'
        ' {"or": [...]}, {"not": ...}; the fields and operators: docs/marketing.md'
    ),
]


class SegmentKind(StrEnum):
    dynamic = "dynamic"  # members evaluated whenever used
    static = "static"  # members frozen when the segment is created


class SegmentCreate(_Input):
    segment_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the segment (else one is made): a segment sent again with"
        " the same id, a retry after a timeout say, is created once",
    )
    name: Name
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    kind: SegmentKind = SegmentKind.dynamic
    rules: SegmentRules


class SegmentPreview(_Input):
    rules: SegmentRules


class SegmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    kind: SegmentKind
    rules: dict[str, Any]
    created_at: datetime
    member_count: int | None = None  # static segments: the frozen count


class SegmentCount(BaseModel):
    count: int


class Member(BaseModel):
    customer_id: uuid.UUID
    first_name: str
    country: str | None


# ---- campaigns ------------------------------------------------------------------------------


class CampaignStatus(StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    sending = "sending"
    completed = "completed"
    cancelled = "cancelled"  # stopped for good: its queued sends withdrawn, never launched again


_TEMPLATE = (
    "text with the fields "
    + ", ".join("{" + name + "}" for name in rules.TEMPLATE_FIELDS)
    + "; {{ and }} for literal braces"
)


class CampaignCreate(_Input):
    campaign_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the campaign (else one is made): a campaign sent again with"
        " the same id, a retry after a timeout say, is created once, and its members mailed"
        " once",
    )
    name: Name
    channel: CampaignChannel
    segment_id: uuid.UUID = Field(description="a segment of this service")
    subject: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = (
        Field(default=None, description=_TEMPLATE)
    )
    template: Annotated[str, StringConstraints(min_length=1, max_length=50_000)] = Field(
        description=_TEMPLATE
    )
    budget: Money
    cost_per_send: Money
    scheduled_at: UTCTime | None = None

    @field_validator("template", "subject")
    @classmethod
    def _renderable(cls, value: str | None) -> str | None:
        if value is not None and (error := rules.template_errors(value)):
            raise ValueError(error)
        return value


class CampaignUpdate(_Input):
    """What may change before and between launches (a higher budget lets a re-launch go on)."""

    name: Name | None = None
    budget: Money | None = None
    scheduled_at: UTCTime | None = None


class CampaignRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    channel: CampaignChannel
    segment_id: uuid.UUID
    subject: str | None
    template: str
    budget: Amount
    cost_per_send: Amount
    scheduled_at: datetime | None
    status: CampaignStatus
    created_at: datetime
    launched_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None  # null too for one cancelled before migration 0005


class LaunchResult(BaseModel):
    campaign_id: uuid.UUID
    queued: int  # new sends handed to the sender
    suppressed: dict[str, int]  # new suppressions, by reason
    already_handled: int  # members with a send from an earlier launch (never sent twice)
    budget_remaining: Amount | None


class Report(BaseModel):
    campaign_id: uuid.UUID
    status: CampaignStatus
    targeted: int
    queued: int
    sent: int
    failed: int
    suppressed: int
    suppressed_by_reason: dict[str, int]
    delivered: int
    opened: int
    clicked: int
    replied: int
    unsubscribed: int
    converted_leads: int
    converted_orders: int
    # The orders' amounts summed per ISO 4217 currency (campaigns convert in several).
    order_revenue_by_currency: dict[str, Amount]
    budget: Amount
    spend: Amount
    budget_remaining: Amount


class SendRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    campaign_id: uuid.UUID
    customer_id: uuid.UUID
    status: str
    reasons: list[str]
    attempts: int
    error: str | None
    created_at: datetime
    sent_at: datetime | None


# ---- tasks ----------------------------------------------------------------------------------


class TaskStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"


class TaskCreate(_Input):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    assignee: Person
    due_date: CalendarDay | None = None
    status: TaskStatus = TaskStatus.todo


class TaskUpdate(_Input):
    title: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    assignee: Person | None = None
    due_date: CalendarDay | None = None
    status: TaskStatus | None = None


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    campaign_id: uuid.UUID
    title: str
    assignee: str
    due_date: date | None
    status: TaskStatus
    created_at: datetime
    updated_at: datetime


# ---- engagement reported by providers -------------------------------------------------------


class ProviderEventKind(StrEnum):
    delivered = "delivered"
    replied = "replied"


class ProviderEvent(_Input):
    """A delivery receipt or a reply a channel provider reports for a send."""

    send_id: uuid.UUID
    kind: ProviderEventKind
    occurred_at: HappenedAt | None = None
