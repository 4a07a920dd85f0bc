"""Request and response bodies of the sales API."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.sales import rules
from services.sales.rules import LeadStatus
from shared.contact_rules import Country, Email, Phone, normalize_phone
from shared.customer_view import ContactCheck, TimelineItem
from shared.customer_view.schemas import CleanText, Short
from shared.events import Channel, Direction, Sentiment
from shared.pagination import MAX_LIMIT
from shared.values import MAX_AMOUNT, WHOLE_NUMBER, CalendarDay, HappenedAt

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Owner = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Segment = Literal["smb", "mid_market", "enterprise"]


def _cents(value: Decimal) -> Decimal:
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("at most two decimal places")
    return rules.amount(value)


Amount = Annotated[
    Decimal,
    Field(
        ge=0,
        le=MAX_AMOUNT,
        description='a decimal number or string ("129.90"), from 0 to 999999999999.99, at'
        " most two decimals",
    ),
    AfterValidator(_cents),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- leads ----------------------------------------------------------------------------------


class LeadCreate(_Input):
    lead_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the lead (else one is made): a lead sent again with the"
        " same id, a retry after a timeout say, is created and published once",
    )
    name: Name
    company: Name | None = None
    email: Email | None = None
    # country before phone: a local phone number is read in the lead's country.
    country: Country | None = None
    phone: Phone | None = None
    segment: Segment | None = None
    source: Key = Field(description="web, campaign, referral, event, partner, ...")
    campaign_id: uuid.UUID | None = None
    # Known when the lead is already a contact (e.g. a campaign's recipient).
    customer_id: uuid.UUID | None = None
    owner: Owner | None = Field(default=None, description="else the territory rules decide")

    @field_validator("phone")
    @classmethod
    def _phone_to_e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else normalize_phone(value, info.data.get("country"))

    @model_validator(mode="after")
    def _reachable(self) -> "LeadCreate":
        if self.email is None and self.phone is None:
            raise ValueError("a lead needs an email or a phone")
        return self


class LeadRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None
    company: str | None
    email: str | None
    phone: str | None
    country: str | None
    segment: str | None
    source: str
    campaign_id: uuid.UUID | None
    status: LeadStatus
    score: int
    fit_score: int
    engagement_score: int
    owner: str | None
    territory: str | None
    disqualify_reason: str | None
    customer_id: uuid.UUID | None
    opportunity_id: uuid.UUID | None
    erased: bool
    created_at: datetime
    updated_at: datetime
    qualified_at: datetime | None
    converted_at: datetime | None


class DisqualifyRequest(_Input):
    reason: Reason | None = Field(default=None, description="required, unless the lead was erased")


class OpportunityDraft(_Input):
    """The opportunity a conversion opens, for the new customer."""

    title: Name
    amount: Amount
    currency: Currency
    expected_close: CalendarDay | None = None
    owner: Owner | None = Field(default=None, description="else the lead's owner")
    stage: Key | None = Field(default=None, description="else the pipeline's first stage")


class ConvertRequest(_Input):
    opportunity: OpportunityDraft | None = None


# ---- territories ----------------------------------------------------------------------------


class AssignmentRule(_Input):
    owner: Owner
    territory: Owner | None = None
    countries: list[Country] = Field(
        default_factory=list, max_length=300, description="none: any country, or none known"
    )
    segment: Segment | None = Field(
        default=None,
        description="leads of this segment only; an account has no segment, so a rule naming"
        " one never assigns an account",
    )
    source: Key | None = Field(
        default=None,
        description="leads of this source only; an account has no source, so a rule naming"
        " one never assigns an account",
    )


class AssignmentRules(_Input):
    """Applied in order to each new lead, and each account, without an owner: the first rule
    whose conditions all match assigns the owner. A rule that can never be the first match
    (the rules before it match all it would) is a 422 on ``rules.N``, naming them."""

    rules: list[AssignmentRule] = Field(max_length=500)


class AccountUpdate(_Input):
    owner: Owner
    territory: Owner | None = None


class AccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: uuid.UUID
    country: str | None
    owner: str | None
    territory: str | None
    updated_at: datetime


# ---- opportunities --------------------------------------------------------------------------


class OpportunityCreate(OpportunityDraft):
    opportunity_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the opportunity (else one is made): one sent again with the"
        " same id, a retry after a timeout say, is opened and published once",
    )
    customer_id: uuid.UUID
    owner: Owner | None = Field(default=None, description="else the account's owner")
    campaign_id: uuid.UUID | None = None


class OpportunityUpdate(_Input):
    """Only the fields sent change; the stage moves through POST .../stage."""

    title: Name | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    expected_close: CalendarDay | None = None
    owner: Owner | None = None


class StageChange(_Input):
    stage: Key
    reason: Reason | None = Field(default=None, description="required for lost")


class OpportunityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    title: str
    amount: Decimal
    currency: str
    expected_close: date | None
    owner: str
    stage: str
    probability: Decimal
    close_reason: str | None
    lead_id: uuid.UUID | None
    campaign_id: uuid.UUID | None
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class StageFigures(BaseModel):
    stage: str
    probability: Decimal
    count: int
    amount: Decimal
    weighted: Decimal


class PipelineRead(BaseModel):
    currency: str
    stages: list[StageFigures]


class ForecastFigures(BaseModel):
    owner: str
    open_count: int
    pipeline: Decimal
    weighted: Decimal
    won: Decimal
    expected: Decimal
    overdue_count: int = Field(
        description="open deals counted here whose expected close has passed (in the current"
        " period: an open deal stays forecast until it is won or lost)"
    )
    overdue: Decimal = Field(description="their amount, unweighted")


class ForecastRead(BaseModel):
    period: str
    start: date
    end: date
    currency: str
    owners: list[ForecastFigures]
    total: ForecastFigures


class LeadConverted(BaseModel):
    lead: LeadRead
    customer_id: uuid.UUID
    created_contact: bool
    opportunity: OpportunityRead | None = None


# ---- activities -----------------------------------------------------------------------------


class ActivityCreate(_Input):
    activity_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the activity (else one is made): an activity sent again with"
        " the same id, a retry after a timeout say, is logged and published once",
    )
    customer_id: uuid.UUID
    kind: Literal["call", "meeting", "email", "message"]
    channel: Channel
    direction: Direction
    subject: CleanText | None = None
    occurred_at: HappenedAt | None = None
    actor: Short | None = None
    sentiment: Sentiment | None = None
    outcome: Short | None = None
    opportunity_id: uuid.UUID | None = None


class ActivityBatch(_Input):
    items: list[ActivityCreate] = Field(min_length=1, max_length=MAX_LIMIT)


class ActivityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    kind: str
    channel: str
    direction: str
    subject: str | None
    occurred_at: datetime
    actor: str | None
    sentiment: str | None
    outcome: str | None
    opportunity_id: uuid.UUID | None
    created_at: datetime
    # Outbound only: whether the touch was within the customer's contact budget.
    contact_check: ContactCheck | None = None


# ---- orders ---------------------------------------------------------------------------------


class OrderLine(_Input):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    description: Short | None = None
    quantity: Annotated[int, Field(ge=1, le=1_000_000), WHOLE_NUMBER]
    unit_price: Amount


class OrderCreate(_Input):
    order_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the order (else one is made): an order sent again with the"
        " same id, a retry after a timeout say, is placed and published once",
    )
    customer_id: uuid.UUID
    amount: Amount | None = Field(
        default=None,
        description="left out, the total of the lines (each quantity × unit_price); given with"
        " lines, it must equal that total (a 422 on amount tells the total)",
    )
    currency: Currency
    ordered_at: HappenedAt | None = None
    lines: list[OrderLine] = Field(default_factory=list, max_length=1000)
    campaign_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _amount_known(self) -> "OrderCreate":
        if self.amount is None and not self.lines:
            raise ValueError("an order needs an amount or lines")
        return self


class OrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    amount: Decimal
    currency: str
    status: str
    lines: list[dict[str, Any]]
    campaign_id: uuid.UUID | None
    external_id: str | None
    ordered_at: datetime
    paid_at: datetime | None
    refunded_at: datetime | None


class AtRequest(_Input):
    at: HappenedAt | None = None


# ---- the rep's customer view ----------------------------------------------------------------


class ScoresRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: uuid.UUID
    rfm_segment: str | None
    recency_days: int | None
    frequency: int
    monetary: Decimal
    clv: Decimal
    churn_risk: float
    churn_level: str
    factors: list[dict[str, Any]]
    scored_at: datetime


class TicketRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ticket_id: uuid.UUID
    subject: str | None
    priority: str
    status: str
    opened_at: datetime


class CustomerRead(BaseModel):
    """What a rep sees before calling: is now a good time, and what happened lately."""

    customer_id: uuid.UUID
    account: AccountRead | None
    scores: ScoresRead | None
    open_ticket_count: int
    open_tickets: list[TicketRead]
    marketing_this_week: list[TimelineItem]
    last_touches: list[TimelineItem]
    open_opportunities: list[OpportunityRead]
    orders: list[OrderRead]
    phone_check: ContactCheck
