"""Request and response bodies of the customer-view routes every department serves."""

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from shared.contact_rules import contains_contact_details
from shared.events import RFC3339_TEXT, Channel, Direction, Sentiment, SourceRef
from shared.pagination import MAX_LIMIT


def no_contact_details(value: str | None) -> str | None:
    if value is not None and contains_contact_details(value):
        raise ValueError(
            "must not contain e-mail addresses or phone numbers (PII stays in contacts)"
        )
    return value


# Stored and shown as UTC (RFC 3339 with Z), whatever offset the client sent.
UTCTime = Annotated[
    AwareDatetime, RFC3339_TEXT, AfterValidator(lambda value: value.astimezone(UTC))
]


def _iso_day(value: Any) -> Any:
    # Alone, pydantic also reads a number as Unix seconds (to=0 would be 1970-01-01).
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
        return value
    raise ValueError("must be a day written YYYY-MM-DD")


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# A calendar day in a query or a request body: YYYY-MM-DD and nothing else.
CalendarDay = Annotated[date, BeforeValidator(_iso_day)]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CleanText = Annotated[str, StringConstraints(max_length=500), AfterValidator(no_contact_details)]
Short = Annotated[str, StringConstraints(max_length=200), AfterValidator(no_contact_details)]


class InteractionCreate(BaseModel):
    """A touch recorded directly (a courtesy call, a chat), published on crm.interactions.v1."""

    model_config = ConfigDict(extra="forbid")

    interaction_id: uuid.UUID | None = None
    customer_id: uuid.UUID
    channel: Channel
    direction: Direction
    kind: Key
    subject: CleanText | None = None
    occurred_at: UTCTime | None = None
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
