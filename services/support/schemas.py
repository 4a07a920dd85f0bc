import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from services.support.rules import Priority
from shared.customer_view.schemas import no_contact_details
from shared.events import Channel
from shared.values import WHOLE_NUMBER, HappenedAt

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[^@\s]+@[^@\s]+$")]
CleanText = Annotated[str, StringConstraints(max_length=500), AfterValidator(no_contact_details)]
Short = Annotated[str, StringConstraints(max_length=200), AfterValidator(no_contact_details)]


def _attribute_value(value: Any) -> Any:
    # Python's JSON reader takes NaN and Infinity, which PostgreSQL's JSON column refused (a
    # 500); and a value had no size limit.
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= 500:
        return value
    raise ValueError(
        "must be a string of at most 500 characters, a finite number, true, false or null"
    )


# A ticket's own fields from its channel (a product model, a serial number), compared value by
# value to find similar cases.
Attributes = Annotated[
    dict[Key, Annotated[Any, AfterValidator(_attribute_value)]],
    Field(
        max_length=50,
        description="up to 50 fields, each a string of at most 500 characters, a finite"
        " number, true, false or null",
    ),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- agents and teams -----------------------------------------------------------------------


Capacity = Annotated[int, Field(ge=0, le=1000), WHOLE_NUMBER]  # open tickets at once


class AgentCreate(_Input):
    name: Name
    email: Annotated[Email, StringConstraints(max_length=254)] | None = None
    team: Key
    skills: list[Key] = Field(default_factory=list, max_length=50)
    capacity: Capacity = 10
    available: StrictBool = True


class AgentUpdate(_Input):
    """Only the fields sent change; none of them can be set to null."""

    available: StrictBool | None = None
    capacity: Capacity | None = None
    team: Key | None = None
    skills: list[Key] | None = Field(default=None, max_length=50)


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    email: str | None
    team: str
    skills: list[str]
    capacity: int
    available: bool
    open_tickets: int = 0
    created_at: datetime


class TeamUpdate(_Input):
    categories: list[Key] = Field(max_length=200)


class TeamRead(BaseModel):
    name: str
    categories: list[str]


class RoutingRule(_Input):
    """Tickets matching every condition given go to ``team`` (no condition: every ticket)."""

    team: Key
    category: Key | None = None
    channel: Channel | None = None
    priority: Priority | None = None


class RoutingRules(_Input):
    """Ordered: the first matching rule decides; unmatched tickets go to the category's team."""

    rules: list[RoutingRule] = Field(max_length=100)


# ---- tickets --------------------------------------------------------------------------------


class TicketCreate(_Input):
    ticket_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the ticket (else one is made): a ticket sent again with the"
        " same id, a retry after a timeout say, is opened and published once",
    )
    customer_id: uuid.UUID
    subject: Subject
    description: Body
    channel: Channel
    priority: Priority = Priority.normal
    category: Key | None = None
    attributes: Attributes = Field(default_factory=dict)
    opened_at: HappenedAt | None = None


class MessageCreate(_Input):
    message_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the message (else one is made): a message sent again with"
        " the same id, a retry after a timeout say, is added and published once",
    )
    author_type: Literal["agent", "customer"]
    author_id: uuid.UUID | None = Field(
        default=None, description="the agent's id: required for an agent, absent for a customer"
    )
    body: Body
    sent_at: HappenedAt | None = None

    @model_validator(mode="after")
    def _agent_needs_id(self) -> "MessageCreate":
        if self.author_type == "agent" and self.author_id is None:
            raise ValueError("author_id is required for agent messages")
        if self.author_type == "customer" and self.author_id is not None:
            raise ValueError("author_id is for agent messages only")
        return self


class AssignRequest(_Input):
    agent_id: uuid.UUID = Field(description="an agent of support's roster (/v1/agents)")


class AtRequest(_Input):
    at: HappenedAt | None = None


class SatisfactionRequest(_Input):
    score: Annotated[int, Field(ge=1, le=5), WHOLE_NUMBER]
    comment: Annotated[str, StringConstraints(max_length=5000)] | None = None
    at: HappenedAt | None = None


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    author_type: str
    author_id: str | None
    body: str
    sent_at: datetime


class TicketRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    subject: str
    description: str
    channel: Channel
    priority: Priority
    category: str | None
    attributes: dict[str, Any]
    status: str
    unknown_customer: bool
    agent_id: uuid.UUID | None
    assigned_at: datetime | None
    opened_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    satisfaction_score: int | None
    satisfaction_comment: str | None
    satisfaction_at: datetime | None
    first_response_breached_at: datetime | None
    resolution_breached_at: datetime | None
    updated_at: datetime
    messages: list[MessageRead] = Field(default_factory=list)


# ---- inbound intake -------------------------------------------------------------------------


class Sender(_Input):
    kind: Literal["email", "phone", "telegram", "whatsapp", "social", "other"]
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=254)]


class InboundMessage(_Input):
    message_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the message (a UUID derived from the provider's message id,"
        " say): a webhook delivered again with the same id is received once; it becomes the id"
        " of the message added, or of the ticket opened",
    )
    channel: Channel
    sender: Sender
    body: Body
    subject: Subject | None = None
    thread_ref: uuid.UUID | None = Field(default=None, description="the ticket id replied to")
    received_at: HappenedAt | None = None


class InboundResult(BaseModel):
    ticket_id: uuid.UUID
    message_id: uuid.UUID | None
    customer_id: uuid.UUID
    unknown_customer: bool
    threaded: bool


# ---- similar cases and macros --------------------------------------------------------------


class SimilarCase(BaseModel):
    ticket_id: uuid.UUID
    score: float
    subject: str
    category: str | None
    attributes: dict[str, Any]
    resolved_at: datetime | None
    resolution: str | None = Field(description="the last agent reply: how it was solved")


class MacroCreate(_Input):
    name: Name
    body: Body
    category: Key | None = None


class MacroRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    body: str
    category: str | None
    created_at: datetime


# ---- SLA policies ---------------------------------------------------------------------------

Minutes = Annotated[int, Field(ge=1, le=525_600), WHOLE_NUMBER]


class SlaPolicyUpdate(_Input):
    first_response_minutes: Minutes | None = None
    resolution_minutes: Minutes | None = None
    reassign_after_minutes: Minutes | None = None


class SlaPolicyRead(SlaPolicyUpdate):
    model_config = ConfigDict(from_attributes=True)

    priority: Priority


class SweepResult(BaseModel):
    assigned: int = 0  # tickets that waited for a free agent
    reassigned: int = 0
    breaches: int = 0
