"""What contacts' changes do to support's own records (the shared customer view applies them to
the timeline and preferences first, in the same transaction). Never commits."""

import uuid
from collections import defaultdict
from itertools import zip_longest

from sqlalchemy import delete, inspect, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import events, rules
from services.support.models import CustomerIdentity, Ticket, TicketMessage
from shared.db import for_update, in_lists, lock_customers
from shared.events import ContactSnapshot, utcnow

ERASED = "[erased]"
IdentityKey = tuple[str, str]  # kind, normalized value


def identities_of(contact: ContactSnapshot) -> set[IdentityKey]:
    identities = {(i.kind, i.value) for i in contact.identities}
    identities |= {(kind, v) for kind in ("email", "phone") if (v := getattr(contact, kind))}
    return {(kind, rules.normalize_identity(kind, value)) for kind, value in identities}


def stand_ins_of(contact: ContactSnapshot, *, stand_in_key: bytes) -> list[uuid.UUID]:
    """Every stand-in id the contact's identities had while unknown (keyed and legacy)."""
    return [
        stand_in
        for kind, value in sorted(identities_of(contact))
        for stand_in in rules.stand_in_customers(kind, value, stand_in_key)
    ]


# What ``read_for_contacts`` read for a batch of contact events (``session.info``): the
# identities of its contacts and of their snapshots, kept as the batch changes them; and the
# tickets opened under the snapshots' stand-in ids, by stand-in id.
_IDENTITIES = "support.identities"
_STAND_IN_TICKETS = "support.stand_in_tickets"


class _Identities:
    """Identity rows by (kind, value) and by contact, changed only through these methods."""

    def __init__(self, rows: list[CustomerIdentity]) -> None:
        self.by_key: dict[IdentityKey, CustomerIdentity] = {}
        self.by_contact: defaultdict[uuid.UUID, set[IdentityKey]] = defaultdict(set)
        for row in rows:
            self.add(row)

    def of(
        self, contact_id: uuid.UUID, keys: set[IdentityKey]
    ) -> dict[IdentityKey, CustomerIdentity]:
        """The rows of these keys, and the contact's."""
        wanted = (keys & self.by_key.keys()) | self.by_contact[contact_id]
        return {key: self.by_key[key] for key in wanted}

    def add(self, row: CustomerIdentity) -> None:
        self.by_key[(row.kind, row.value)] = row
        self.by_contact[row.contact_id].add((row.kind, row.value))

    def drop(self, row: CustomerIdentity) -> None:
        del self.by_key[(row.kind, row.value)]
        self.by_contact[row.contact_id].discard((row.kind, row.value))

    def give(self, row: CustomerIdentity, contact_id: uuid.UUID) -> None:
        self.drop(row)
        row.contact_id = contact_id
        self.add(row)


async def read_for_contacts(
    session: AsyncSession,
    contact_ids: set[uuid.UUID],
    contacts: list[ContactSnapshot],
    *,
    stand_in_key: bytes,
) -> None:
    """For ``contact_changed``, a batch's at once: a query for its identities and four for
    its stand-in ids' tickets, each event's own, were most of a contact event's cost (3 ms).
    Under the stand-in ids' locks, which the batch took first (on SQLite the write lock)."""
    keys = set().union(*(identities_of(contact) for contact in contacts))
    rows: list[CustomerIdentity] = []
    for ids, pairs in zip_longest(in_lists(contact_ids), in_lists(keys), fillvalue=[]):
        query = select(CustomerIdentity).where(
            or_(
                CustomerIdentity.contact_id.in_(ids),
                tuple_(CustomerIdentity.kind, CustomerIdentity.value).in_(pairs),
            )
        )
        rows += await session.scalars(query)
    session.info[_IDENTITIES] = _Identities(rows)
    stand_ins = {
        s for contact in contacts for s in stand_ins_of(contact, stand_in_key=stand_in_key)
    }
    tickets: dict[uuid.UUID, list[Ticket]] = {stand_in: [] for stand_in in stand_ins}
    for chunk in in_lists(stand_ins):
        query = select(Ticket).where(
            Ticket.customer_id.in_(chunk), Ticket.unknown_customer.is_(True)
        )
        for ticket in await session.scalars(query):
            tickets[ticket.customer_id].append(ticket)
    session.info[_STAND_IN_TICKETS] = tickets


async def contact_changed(
    session: AsyncSession, contact: ContactSnapshot, *, stand_in_key: bytes
) -> None:
    """Keep the contact's identities (to recognise inbound senders), and re-point tickets
    opened by those senders before contacts knew them."""
    wanted = identities_of(contact)
    stand_ins = {(k, v): rules.stand_in_customers(k, v, stand_in_key) for k, v in wanted}
    identities = session.info.get(_IDENTITIES)
    if identities is None:  # not in a batch that read them (a merge since forgot them)
        identities = await _identities_of(session, contact, stand_in_key=stand_in_key)
    existing = identities.of(contact.contact_id, wanted)
    for key, row in existing.items():
        if key not in wanted and row.contact_id == contact.contact_id:
            identities.drop(row)
            if inspect(row).pending:  # added by an event before in the batch
                session.expunge(row)
            else:
                await session.delete(row)
    for kind, value in wanted:
        row = existing.get((kind, value))
        if row is None:
            row = CustomerIdentity(kind=kind, value=value, contact_id=contact.contact_id)
            identities.add(row)
            session.add(row)
        else:
            identities.give(row, contact.contact_id)
        # Under the keyed stand-in id, and the legacy one of tickets filed before it.
        for stand_in in stand_ins[(kind, value)]:
            await _identify(session, stand_in, contact.contact_id)


async def _identities_of(
    session: AsyncSession, contact: ContactSnapshot, *, stand_in_key: bytes
) -> _Identities:
    """``read_for_contacts`` for one contact."""
    # Intake holds a sender's stand-in locks while it opens a ticket for an unknown sender:
    # wait for it, or that ticket, not committed yet, is not re-pointed and stays unknown.
    # (The subscription took them before the contact's lock, as intake does, which may find
    # the sender known after all and then take the contact's; a batch's prefetch took them.)
    await lock_customers(session, stand_ins_of(contact, stand_in_key=stand_in_key))
    await read_for_contacts(session, {contact.contact_id}, [contact], stand_in_key=stand_in_key)
    return session.info.pop(_IDENTITIES)  # type: ignore[no-any-return]


async def _identify(session: AsyncSession, stand_in: uuid.UUID, contact_id: uuid.UUID) -> None:
    """The unknown sender's tickets go to the contact, and the other departments hear of it:
    the ticket's new owner, and its touches, held back while the sender was unknown (without
    them the conversation that brought the customer was missing from their history)."""
    now = utcnow()
    for ticket in session.info.get(_STAND_IN_TICKETS, {}).get(stand_in, []):
        if ticket.customer_id != stand_in or not ticket.unknown_customer:
            continue  # an event before in the batch identified it
        ticket.customer_id, ticket.unknown_customer = contact_id, False
        messages = await session.scalars(
            select(TicketMessage)
            .where(TicketMessage.ticket_id == ticket.id)
            .order_by(TicketMessage.sent_at, TicketMessage.id)
        )
        events.customer_identified(session, ticket, list(messages), stand_in, now)


async def contact_merged(
    session: AsyncSession, merged_id: uuid.UUID, survivor_id: uuid.UUID
) -> None:
    _forget_what_was_read(session)
    await session.execute(
        update(Ticket).where(Ticket.customer_id == merged_id).values(customer_id=survivor_id)
    )
    await session.execute(
        update(CustomerIdentity)
        .where(CustomerIdentity.contact_id == merged_id)
        .values(contact_id=survivor_id)
    )


async def contact_erased(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """GDPR: the person's identities go, their tickets keep only what carries no PII and are
    closed. Runs under the customer's lock (the customer view's erasure takes it first)."""
    _forget_what_was_read(session)
    await _close_tickets(session, contact_id)
    await session.execute(delete(CustomerIdentity).where(CustomerIdentity.contact_id == contact_id))
    ticket_ids = select(Ticket.id).where(Ticket.customer_id == contact_id).scalar_subquery()
    await session.execute(
        update(TicketMessage)
        .where(TicketMessage.ticket_id.in_(ticket_ids))  # replies quote the customer too
        .values(body=ERASED)
    )
    await session.execute(
        update(Ticket)
        .where(Ticket.customer_id == contact_id)
        .values(subject=ERASED, description=ERASED, attributes={}, satisfaction_comment=None)
    )


async def _close_tickets(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """Nothing more is done for an erased person: their unfinished tickets close, leaving the
    agents' queues and the SLA sweep, and the other departments hear it (under the erased id:
    each forgets the ticket or keeps it closed, without the person). The tickets' locks after
    the customer's, as every writer takes them; a ticket closed already stays as it is, so an
    erasure applied again publishes nothing."""
    unfinished = (
        select(Ticket)
        .where(Ticket.customer_id == contact_id, Ticket.status != rules.Status.closed.value)
        .order_by(Ticket.id)
    )
    locked = (await for_update(session, unfinished)).execution_options(populate_existing=True)
    now = utcnow()
    for ticket in await session.scalars(locked):
        ticket.status = rules.transition(
            ticket.status, rules.Action.close_for_erasure, assigned=ticket.agent_id is not None
        ).value
        ticket.closed_at = ticket.updated_at = now
        events.status_changed(session, ticket, events.TICKET_CLOSED, now, close_reason="erasure")
    await session.flush()


def _forget_what_was_read(session: AsyncSession) -> None:
    """A merge or an erasure changes identities and tickets in bulk: the batch's later
    contact events read them afresh."""
    session.info.pop(_IDENTITIES, None)
    session.info.pop(_STAND_IN_TICKETS, None)
