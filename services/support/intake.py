"""Intake from any channel: recognise the sender, thread the message into the customer's open
ticket, or open a new one. Never commits."""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import rules, service
from services.support.models import CustomerIdentity, Ticket, TicketMessage
from services.support.rules import Status
from services.support.schemas import InboundMessage, InboundResult, MessageCreate, TicketCreate
from shared.db import lock_customers
from shared.errors import Conflict

# A message threads into a ticket that is still being worked on or was just resolved (a reply
# to a resolved ticket reopens it); closed tickets are final.
THREADABLE = [Status.open.value, Status.pending.value, Status.resolved.value]


async def receive(
    session: AsyncSession, inbound: InboundMessage, *, stand_in_key: bytes
) -> InboundResult:
    kind = inbound.sender.kind
    value = rules.normalize_identity(kind, inbound.sender.value)
    # Where an unknown sender's tickets are: under their keyed stand-in id, where a new one
    # opens, or under the legacy one if filed before ids were keyed (the conversation goes on
    # in that ticket, under the id its earlier events carried).
    stand_ins = rules.stand_in_customers(kind, value, stand_in_key)
    contact_id = await _identity_owner(session, kind, value)
    if contact_id is None:
        # A sender not known yet: the stand-in ids' locks, then a second look. Applying
        # contacts' event that makes the sender known takes them too (customers.contact_changed):
        # either that re-points the ticket opened here, or this finds the sender's contact.
        await lock_customers(session, stand_ins)
        contact_id = await _identity_owner(session, kind, value)
    unknown = contact_id is None
    customer_ids = (
        stand_ins if contact_id is None else [await service.current_customer(session, contact_id)]
    )
    customer_id = customer_ids[0]  # a new ticket's
    # Two messages of one sender at once would each find no ticket to thread into, and open two.
    await lock_customers(session, customer_ids)
    if inbound.message_id is not None:
        earlier = await _received_before(session, inbound.message_id, customer_ids)
        if earlier is not None:
            return earlier
    ticket = await _thread(session, inbound, customer_ids)
    if ticket is not None:
        message = await service.add_message(
            session,
            ticket.id,
            MessageCreate(
                message_id=inbound.message_id,
                author_type="customer",
                body=inbound.body,
                sent_at=inbound.received_at,
            ),
        )
        return InboundResult(
            ticket_id=ticket.id,
            message_id=message.id,
            customer_id=ticket.customer_id,
            unknown_customer=ticket.unknown_customer,
            threaded=True,
        )
    subject = inbound.subject or rules.subject_from_body(inbound.body)
    ticket = await service.create_ticket(
        session,
        TicketCreate(
            ticket_id=inbound.message_id,
            customer_id=customer_id,
            subject=subject,
            description=inbound.body,
            channel=inbound.channel,
            opened_at=inbound.received_at,
        ),
        unknown_customer=unknown,
    )
    return InboundResult(
        ticket_id=ticket.id,
        message_id=None,
        customer_id=ticket.customer_id,
        unknown_customer=unknown,
        threaded=False,
    )


async def _identity_owner(session: AsyncSession, kind: str, value: str) -> uuid.UUID | None:
    return await session.scalar(
        select(CustomerIdentity.contact_id).where(
            CustomerIdentity.kind == kind, CustomerIdentity.value == value
        )
    )


async def _received_before(
    session: AsyncSession, message_id: uuid.UUID, customer_ids: list[uuid.UUID]
) -> InboundResult | None:
    """What a webhook delivered again got the first time: the message it added to a ticket,
    or the ticket it opened. Another customer's message or ticket is a 409."""
    message = await session.get(TicketMessage, message_id)
    ticket = await session.get(Ticket, message.ticket_id if message else message_id)
    if ticket is None:
        return None
    if ticket.customer_id not in customer_ids:
        raise Conflict(f"{message_id} is the id of another customer's message", field="message_id")
    return InboundResult(
        ticket_id=ticket.id,
        message_id=message.id if message else None,
        customer_id=ticket.customer_id,
        unknown_customer=ticket.unknown_customer,
        threaded=message is not None,
    )


async def _thread(
    session: AsyncSession, inbound: InboundMessage, customer_ids: list[uuid.UUID]
) -> Ticket | None:
    """The ticket this message answers: the referenced one if it is this sender's and still
    open to replies, else the sender's latest such ticket on the same channel."""
    if inbound.thread_ref is not None:
        ticket = await session.get(Ticket, inbound.thread_ref)
        if ticket and ticket.customer_id in customer_ids and ticket.status in THREADABLE:
            return ticket
    return await session.scalar(
        select(Ticket)
        .where(
            Ticket.customer_id.in_(customer_ids),
            Ticket.channel == inbound.channel.value,
            Ticket.status.in_(THREADABLE),
        )
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(1)
    )
