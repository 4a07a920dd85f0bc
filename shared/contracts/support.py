"""crm.support.v1: ticket lifecycle events, keyed by the customer id. Subjects are redacted
of contact details; message bodies and descriptions never leave support."""

import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from shared import topics
from shared.events import Channel

TOPIC = topics.SUPPORT
SOURCE = "/crm/support"

TICKET_OPENED = "crm.support.ticket_opened.v1"
TICKET_ASSIGNED = "crm.support.ticket_assigned.v1"
TICKET_MESSAGE_ADDED = "crm.support.ticket_message_added.v1"
TICKET_RESOLVED = "crm.support.ticket_resolved.v1"
TICKET_REOPENED = "crm.support.ticket_reopened.v1"
TICKET_CLOSED = "crm.support.ticket_closed.v1"
TICKET_SATISFACTION_RATED = "crm.support.ticket_satisfaction_rated.v1"
TICKET_REASSIGNED = "crm.support.ticket_reassigned.v1"
TICKET_SLA_BREACHED = "crm.support.ticket_sla_breached.v1"
TICKET_CUSTOMER_IDENTIFIED = "crm.support.ticket_customer_identified.v1"


class TicketEvent(BaseModel):
    ticket_id: uuid.UUID
    customer_id: uuid.UUID


class TicketOpened(TicketEvent):
    subject: str
    channel: Channel
    priority: str
    category: str | None
    opened_at: AwareDatetime
    # Absent from events published before it existed: read as False, as they were.
    unknown_customer: bool = Field(
        default=False,
        description="true: an unknown sender opened the ticket and customer_id is a stand-in "
        "id, no contact's, until crm.support.ticket_customer_identified.v1 names the contact",
    )


class TicketAssigned(TicketEvent):
    agent_id: uuid.UUID
    previous_agent_id: uuid.UUID | None
    automatic: bool
    assigned_at: AwareDatetime


class TicketMessageAdded(TicketEvent):
    message_id: uuid.UUID
    author_type: str
    author_id: str | None
    sent_at: AwareDatetime


class TicketResolved(TicketEvent):
    agent_id: uuid.UUID | None
    resolved_at: AwareDatetime


class TicketReopened(TicketEvent):
    reopened_at: AwareDatetime


# Why a ticket closed: an agent closed it (a resolved ticket), or the customer's erasure did.
CloseReason = Literal["agent", "erasure"]


class TicketClosed(TicketEvent):
    closed_at: AwareDatetime
    # Absent from events published before it existed: either reason, not known.
    reason: CloseReason | None = Field(
        default=None,
        description="agent: an agent closed the resolved ticket (POST /v1/tickets/{id}/close); "
        "erasure: the customer's erasure closed it, resolved or not. Absent from events "
        "published before the field existed: not known",
    )


class TicketSatisfactionRated(TicketEvent):
    agent_id: uuid.UUID | None
    score: int
    rated_at: AwareDatetime


class TicketReassigned(TicketEvent):
    """The SLA scheduler moved a ticket its agent left unanswered."""

    agent_id: uuid.UUID
    previous_agent_id: uuid.UUID | None
    reason: str
    reassigned_at: AwareDatetime


class TicketSlaBreached(TicketEvent):
    agent_id: uuid.UUID | None
    priority: str
    target: str  # first_response | resolution
    detected_at: AwareDatetime


class TicketCustomerIdentified(TicketEvent):
    """A ticket an unknown sender opened now belongs to the contact who has that sender's
    identity (contacts learned it later). Its earlier events carried the stand-in id
    ``previous_customer_id``; its touches are published now, under the contact. Keyed by
    the stand-in id, unlike the other events: it follows the ticket's earlier events in their
    partition."""

    previous_customer_id: uuid.UUID
    identified_at: AwareDatetime


# Every support event type and its data model (input for generated schemas).
EVENT_TYPES: dict[str, type[BaseModel]] = {
    TICKET_OPENED: TicketOpened,
    TICKET_ASSIGNED: TicketAssigned,
    TICKET_MESSAGE_ADDED: TicketMessageAdded,
    TICKET_RESOLVED: TicketResolved,
    TICKET_REOPENED: TicketReopened,
    TICKET_CLOSED: TicketClosed,
    TICKET_SATISFACTION_RATED: TicketSatisfactionRated,
    TICKET_REASSIGNED: TicketReassigned,
    TICKET_SLA_BREACHED: TicketSlaBreached,
    TICKET_CUSTOMER_IDENTIFIED: TicketCustomerIdentified,
}
