"""Request and response bodies of the customer-view routes every department serves."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from shared.contact_rules import contains_contact_details
from shared.events import Channel, Direction, Sentiment, SourceRef
from shared.pagination import MAX_LIMIT
from shared.values import HappenedAt


def no_contact_details(value: str | None) -> str | None:
    if value is not None and contains_contact_details(value):
        raise ValueError(
            "must not contain e-mail addresses or phone numbers (PII stays in contacts)"
        )
    return value


Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CleanText = Annotated[str, StringConstraints(max_length=500), AfterValidator(no_contact_details)]
Short = Annotated[str, StringConstraints(max_length=200), AfterValidator(no_contact_details)]


class InteractionCreate(BaseModel):
    """A touch recorded directly (a courtesy call, a chat), published on crm.interactions.v1."""

    model_config = ConfigDict(extra="forbid")

    interaction_id: uuid.UUID | None = Field(
        default=None,
        description="your id for the touch (else one is made): a touch sent again with the"
        " same id, a retry after a timeout say, is recorded once",
    )
    customer_id: uuid.UUID
    channel: Channel
    direction: Direction
    kind: Key
    subject: CleanText | None = None
    occurred_at: HappenedAt | None = None
    actor: Short | None = None
    sentiment: Sentiment | None = None
    outcome: Short | None = None
    ref: SourceRef | None = None


class InteractionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[InteractionCreate] = Field(min_length=1, max_length=MAX_LIMIT)


class Created(BaseModel):
    id: uuid.UUID


class BatchCreated(BaseModel):
    ids: list[uuid.UUID]


class TimelineItem(BaseModel):
    interaction_id: uuid.UUID
    customer_id: uuid.UUID
    department: str
    channel: str
    direction: str
    kind: str
    subject: str | None
    occurred_at: datetime
    actor: str | None
    sentiment: str | None
    outcome: str | None
    ref: SourceRef | None


class ContactCheck(BaseModel):
    allowed: bool
    reasons: list[str]
