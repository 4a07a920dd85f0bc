"""The events support emits: domain events on crm.support.v1 and customer touches on
crm.interactions.v1, always keyed by the customer id. Message bodies and descriptions stay here."""

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.support.models import Ticket, TicketMessage
from shared import topics
from shared.contact_rules import redact_contact_details
from shared.contracts.support import (  # noqa: F401 (re-exported for support's modules)
    SOURCE,
    TICKET_ASSIGNED,
    TICKET_CLOSED,
    TICKET_CUSTOMER_IDENTIFIED,
    TICKET_MESSAGE_ADDED,
    TICKET_OPENED,
    TICKET_REASSIGNED,
    TICKET_REOPENED,
    TICKET_RESOLVED,
    TICKET_SATISFACTION_RATED,
    TICKET_SLA_BREACHED,
    CloseReason,
    TicketAssigned,
    TicketClosed,
    TicketCustomerIdentified,
    TicketEvent,
    TicketMessageAdded,
    TicketOpened,
    TicketReassigned,
    TicketReopened,
    TicketResolved,
    TicketSatisfactionRated,
    TicketSlaBreached,
)
from shared.events import (
    INTERACTION_RECORDED,
    Channel,
    Department,
    Direction,
    InteractionRecorded,
    SourceRef,
)
from shared.outbox import add_event


def _publish(
    session: AsyncSession, topic: str, event_type: str, customer_id: uuid.UUID, data: BaseModel
) -> None:
    key = str(customer_id)
    add_event(
        session,
        topic=topic,
        key=key,
        event_type=event_type,
        source=SOURCE,
        subject=key,
        data=data,
    )


def ticket_event(session: AsyncSession, event_type: str, data: TicketEvent) -> None:
    _publish(session, topics.SUPPORT, event_type, data.customer_id, data)


def interaction(session: AsyncSession, touch: InteractionRecorded) -> None:
    _publish(session, topics.INTERACTIONS, INTERACTION_RECORDED, touch.customer_id, touch)


def ticket_opened(session: AsyncSession, ticket: Ticket) -> None:
    subject = redact_contact_details(ticket.subject)
    ticket_event(
        session,
        TICKET_OPENED,
        TicketOpened(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            subject=subject,
            channel=Channel(ticket.channel),
            priority=ticket.priority,
            category=ticket.category,
            opened_at=ticket.opened_at,
            unknown_customer=ticket.unknown_customer,
        ),
    )
    if ticket.unknown_customer:
        return  # no contact to attach the touch to yet: published once it is identified
    interaction(session, _opened_touch(ticket))


def _opened_touch(ticket: Ticket) -> InteractionRecorded:
    return InteractionRecorded(
        interaction_id=ticket.id,  # one touch per ticket opened: its id is the ticket's
        customer_id=ticket.customer_id,
        department=Department.support,
        channel=Channel(ticket.channel),
        direction=Direction.inbound,
        kind="ticket_opened",
        subject=redact_contact_details(ticket.subject),
        occurred_at=ticket.opened_at,
        actor=str(ticket.agent_id) if ticket.agent_id else None,
        ref=SourceRef(type="ticket", id=str(ticket.id)),
    )


def ticket_assigned(
    session: AsyncSession,
    ticket: Ticket,
    previous: uuid.UUID | None,
    at: datetime,
    *,
    automatic: bool,
) -> None:
    assert ticket.agent_id is not None
    ticket_event(
        session,
        TICKET_ASSIGNED,
        TicketAssigned(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            agent_id=ticket.agent_id,
            previous_agent_id=previous,
            automatic=automatic,
            assigned_at=at,
        ),
    )


def message_added(session: AsyncSession, ticket: Ticket, message: TicketMessage) -> None:
    ticket_event(
        session,
        TICKET_MESSAGE_ADDED,
        TicketMessageAdded(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            message_id=message.id,
            author_type=message.author_type,
            author_id=message.author_id,
            sent_at=message.sent_at,
        ),
    )
    if ticket.unknown_customer:
        return  # published once the sender is identified
    interaction(session, _message_touch(ticket, message))


def _message_touch(ticket: Ticket, message: TicketMessage) -> InteractionRecorded:
    from_customer = message.author_type == "customer"
    return InteractionRecorded(
        interaction_id=message.id,
        customer_id=ticket.customer_id,
        department=Department.support,
        channel=Channel(ticket.channel),
        direction=Direction.inbound if from_customer else Direction.outbound,
        kind="ticket_reply",
        subject=redact_contact_details(ticket.subject),
        occurred_at=message.sent_at,
        actor=None if from_customer else message.author_id,
        ref=SourceRef(type="ticket", id=str(ticket.id)),
    )


def customer_identified(
    session: AsyncSession,
    ticket: Ticket,
    messages: list[TicketMessage],
    previous_customer_id: uuid.UUID,
    at: datetime,
) -> None:
    """An unknown sender's ticket now belongs to a contact: the ticket's new owner for the
    departments that keep tickets, and the touches held back until now (the ticket opened and
    its messages, under the ids they would have had) for every department's timeline."""
    # Keyed by the stand-in id: on the partition of the ticket's earlier events, so that no
    # consumer (a replay above all) applies it before the ticket_opened it re-points, which
    # would then file the ticket under the stand-in again.
    _publish(
        session,
        topics.SUPPORT,
        TICKET_CUSTOMER_IDENTIFIED,
        previous_customer_id,
        TicketCustomerIdentified(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            previous_customer_id=previous_customer_id,
            identified_at=at,
        ),
    )
    interaction(session, _opened_touch(ticket))
    for message in messages:
        interaction(session, _message_touch(ticket, message))


def status_changed(
    session: AsyncSession,
    ticket: Ticket,
    event_type: str,
    at: datetime,
    *,
    close_reason: CloseReason | None = None,
) -> None:
    """``close_reason`` for ``ticket_closed``: an agent's close or the customer's erasure."""
    base = {"ticket_id": ticket.id, "customer_id": ticket.customer_id}
    data: TicketEvent
    if event_type == TICKET_RESOLVED:
        data = TicketResolved(**base, agent_id=ticket.agent_id, resolved_at=at)
    elif event_type == TICKET_REOPENED:
        data = TicketReopened(**base, reopened_at=at)
    else:
        assert close_reason is not None
        data = TicketClosed(**base, closed_at=at, reason=close_reason)
    ticket_event(session, event_type, data)


def sla_breached(session: AsyncSession, ticket: Ticket, target: str, at: datetime) -> None:
    ticket_event(
        session,
        TICKET_SLA_BREACHED,
        TicketSlaBreached(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            agent_id=ticket.agent_id,
            priority=ticket.priority,
            target=target,
            detected_at=at,
        ),
    )


def satisfaction_rated(session: AsyncSession, ticket: Ticket) -> None:
    assert ticket.satisfaction_score is not None and ticket.satisfaction_at is not None
    ticket_event(
        session,
        TICKET_SATISFACTION_RATED,
        TicketSatisfactionRated(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            agent_id=ticket.agent_id,
            score=ticket.satisfaction_score,
            rated_at=ticket.satisfaction_at,
        ),
    )
