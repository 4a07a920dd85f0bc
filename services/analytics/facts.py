"""Support's fact tables and analytics' side of contacts and touches (sales' and marketing's are
in ``sales_facts``), applied from the departments' events. Every write is a natural upsert keyed
by the source record id, guarded by event times where an order of arrival could matter, so a
duplicate, a replay or a late event leaves the same figures. A customer that was merged is filed
under the survivor; one that was erased under no one (the row stays for anonymous counts)."""

import uuid
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import rows, rules, scoring
from services.analytics.models import (
    CountedTouch,
    LeadFact,
    OpportunityFact,
    OrderFact,
    Profile,
    SendFact,
    SlaBreachFact,
    SuppressionFact,
    TicketFact,
    TicketMessageFact,
    TicketReopenFact,
    TouchDaily,
)
from shared.contracts import support
from shared.db import add_row, get_row, in_dialect, insert_new_only
from shared.events import ContactSnapshot, InteractionRecorded


def later(new: datetime, old: datetime | None) -> bool:
    return old is None or new >= old


# ---- support --------------------------------------------------------------------------------


async def _ticket(
    session: AsyncSession, ticket_id: uuid.UUID, customer: uuid.UUID | None
) -> rows.Row:
    """The ticket's row (a ``TicketFact``), added if new, filed under its customer's owner;
    an event under the stand-in id the ticket had before its sender was identified is older
    than the identification, and leaves the ticket with the contact (or no one, erased)."""
    ticket = await rows.get(session, TicketFact, ticket_id)
    if ticket is None:
        ticket = rows.add(session, TicketFact, ticket_id=ticket_id)
    if customer is None or customer != ticket.stand_in_id:
        ticket.customer_id = await rows.owner(session, customer)
    return ticket


def _rescore(session: AsyncSession, ticket: rows.Row) -> None:
    """Open and breached tickets are scored: the ticket's customer is rescored. Not an
    unknown sender's stand-in id: it is no customer, and its scores would be published."""
    if not ticket.unknown_customer:
        scoring.mark(session, ticket.customer_id)


def _derive(ticket: rows.Row) -> None:
    """The durations the KPIs average, kept on the row so a KPI query is a plain AVG()."""
    ticket.first_response_seconds = rules.seconds_between(
        ticket.opened_at, ticket.first_response_at
    )
    ticket.resolution_seconds = rules.seconds_between(ticket.opened_at, ticket.resolved_at)


async def ticket_opened(session: AsyncSession, data: support.TicketOpened) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    # Once identified, the sender is no longer unknown, however late this opening comes.
    ticket.unknown_customer = data.unknown_customer and ticket.stand_in_id is None
    _rescore(session, ticket)
    opened = data.opened_at.astimezone(UTC)
    ticket.channel = data.channel.value
    ticket.priority = data.priority
    ticket.opened_at = opened
    ticket.opened_day = opened.date()
    ticket.opened_month = rules.month_of(opened.date())
    ticket.opened_weekday = opened.weekday()
    _derive(ticket)


async def ticket_customer_identified(
    session: AsyncSession, data: support.TicketCustomerIdentified
) -> None:
    """An unknown sender's ticket now belongs to a contact: as if the stand-in id had been
    merged into the contact, its facts (this ticket's, and any other ticket of that sender)
    move to them and its scores (from events that did not flag it) go: they scored no
    customer. Each of the sender's tickets is identified by an event of its own, and keeps
    the stand-in id: the ticket's events under it, delivered again or late, are older."""
    ticket = await _ticket(session, data.ticket_id, data.customer_id)  # a row of this batch too
    ticket.unknown_customer = False  # its later events rescore the contact
    ticket.stand_in_id = data.previous_customer_id
    if ticket.customer_id is None:
        await contact_erased(session, data.previous_customer_id)
    else:
        await contact_merged(session, data.previous_customer_id, ticket.customer_id)


async def ticket_assigned(
    session: AsyncSession, data: support.TicketAssigned | support.TicketReassigned
) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    if isinstance(data, support.TicketAssigned):
        at = data.assigned_at
    else:
        at = data.reassigned_at
    if later(at, ticket.assigned_at):  # the latest assignment wins, whatever the arrival
        ticket.agent_id = data.agent_id
        ticket.assigned_at = at


async def message_added(session: AsyncSession, data: support.TicketMessageAdded) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    if await rows.get(session, TicketMessageFact, data.message_id) is not None:
        return
    rows.add(
        session,
        TicketMessageFact,
        message_id=data.message_id,
        ticket_id=data.ticket_id,
        author_type=data.author_type,
        sent_at=data.sent_at,
    )
    ticket.messages = (ticket.messages or 0) + 1
    if data.author_type == "agent" and (
        ticket.first_response_at is None or data.sent_at < ticket.first_response_at
    ):
        ticket.first_response_at = data.sent_at
    _derive(ticket)


async def ticket_resolved(session: AsyncSession, data: support.TicketResolved) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    _rescore(session, ticket)
    # A resolution older than a reopening was undone by it.
    if later(data.resolved_at, ticket.resolved_at) and (
        ticket.reopened_at is None or data.resolved_at > ticket.reopened_at
    ):
        ticket.resolved_at = data.resolved_at
        ticket.resolved_by = data.agent_id or ticket.agent_id
        _derive(ticket)


async def ticket_reopened(session: AsyncSession, data: support.TicketReopened) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    _rescore(session, ticket)
    # Any reopening seen before, not only the latest, is not counted again.
    if await rows.get(session, TicketReopenFact, (data.ticket_id, data.reopened_at)) is not None:
        return
    rows.add(session, TicketReopenFact, ticket_id=data.ticket_id, reopened_at=data.reopened_at)
    ticket.reopen_count = (ticket.reopen_count or 0) + 1
    if later(data.reopened_at, ticket.reopened_at):
        ticket.reopened_at = data.reopened_at
    # A resolution or close of the reopening's instant is undone too, as one arriving after
    # it is ignored (``ticket_resolved``, ``ticket_closed``): either order, the same ticket.
    if ticket.resolved_at is not None and ticket.resolved_at <= ticket.reopened_at:
        ticket.resolved_at = None
        ticket.resolved_by = None
        _derive(ticket)
    if ticket.closed_at is not None and ticket.closed_at <= ticket.reopened_at:
        ticket.closed_at = None


async def ticket_closed(session: AsyncSession, data: support.TicketClosed) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    _rescore(session, ticket)
    # A close older than a reopening was undone by it, whichever arrived first.
    if later(data.closed_at, ticket.closed_at) and (
        ticket.reopened_at is None or data.closed_at > ticket.reopened_at
    ):
        ticket.closed_at = data.closed_at


async def satisfaction_rated(session: AsyncSession, data: support.TicketSatisfactionRated) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    if later(data.rated_at, ticket.csat_at):  # a second rating replaces the first
        ticket.csat = data.score
        ticket.csat_at = data.rated_at
        ticket.csat_agent_id = data.agent_id


async def sla_breached(session: AsyncSession, data: support.TicketSlaBreached) -> None:
    ticket = await _ticket(session, data.ticket_id, data.customer_id)
    _rescore(session, ticket)
    if await rows.get(session, SlaBreachFact, (data.ticket_id, data.target)) is not None:
        return
    rows.add(
        session,
        SlaBreachFact,
        ticket_id=data.ticket_id,
        target=data.target,
        priority=data.priority,
        agent_id=data.agent_id,
        detected_at=data.detected_at,
    )
    ticket.sla_breaches = (ticket.sla_breaches or 0) + 1


# ---- interactions and contacts --------------------------------------------------------------


async def touches_recorded(session: AsyncSession, touches: list[InteractionRecorded]) -> None:
    """New touches (not replayed ones): counted for the usage figures, their customers
    rescored. The counts are anonymous: they survive the customer's erasure, and so does the
    record of which touches they hold (``counted_touches``): the timeline's row that told a
    touch delivered again from a new one goes with the erasure."""
    touches = await _not_counted_yet(session, touches)
    if not touches:
        return
    counts = Counter(
        (
            touch.occurred_at.astimezone(UTC).date(),
            touch.department.value,
            touch.actor or "",
            touch.direction.value,
        )
        for touch in touches
    )
    # One upsert adding to each day's counts: replicas count other partitions' touches into
    # the same rows, and the database adds theirs and ours atomically. Sorted, so that two
    # replicas lock the rows in the same order.
    await rows.add_counts(
        session,
        TouchDaily,
        [
            {"day": d, "department": dep, "actor": a, "direction": dir_, "touches": n}
            for (d, dep, a, dir_), n in sorted(counts.items())
        ],
        counter="touches",
    )
    # Only inbound touches and those with a sentiment feed the churn factors.
    scored = [t.customer_id for t in touches if t.direction.value == "inbound" or t.sentiment]
    if scored:
        await rows.load_owners(session, scored)
        for customer_id in scored:
            scoring.mark(session, await rows.owner(session, customer_id))


_COUNT_ONCE = insert_new_only(
    CountedTouch.__table__, returning=CountedTouch.__table__.c.interaction_id
)


async def _not_counted_yet(
    session: AsyncSession, touches: list[InteractionRecorded]
) -> list[InteractionRecorded]:
    """These touches' ids recorded as counted, in one INSERT; the touches not counted before
    (once each, of one id repeated in the batch)."""
    unique = {touch.interaction_id: touch for touch in touches}
    if not unique:
        return []
    new = set(
        await session.scalars(
            in_dialect(session, _COUNT_ONCE), [{"interaction_id": i} for i in unique]
        )
    )
    return [touch for interaction_id, touch in unique.items() if interaction_id in new]


async def contact_changed(session: AsyncSession, contact: ContactSnapshot) -> None:
    profile = await get_row(session, Profile, contact.contact_id)  # a batch's read at once
    if profile is None:
        profile = Profile(customer_id=contact.contact_id, created_at=contact.created_at)
        add_row(session, profile)
    elif profile.updated_at > contact.updated_at:
        return  # an older snapshot than the one kept
    profile.name = " ".join(p for p in (contact.first_name, contact.last_name) if p)[:300]
    profile.company = contact.company
    profile.country = contact.country
    profile.updated_at = contact.updated_at


FACT_TABLES = (TicketFact, LeadFact, OpportunityFact, OrderFact, SendFact, SuppressionFact)


async def contact_merged(session: AsyncSession, merged_id: uuid.UUID, survivor: uuid.UUID) -> None:
    """Every fact of the merged customer now belongs to the survivor, who is rescored."""
    rows.forget_owners(session)
    for table in FACT_TABLES:
        await session.execute(
            update(table).where(table.customer_id == merged_id).values(customer_id=survivor)
        )
    await session.execute(delete(Profile).where(Profile.customer_id == merged_id))
    await scoring.forget(session, merged_id)
    scoring.mark(session, survivor)


async def contact_erased(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """GDPR: the profile and scores go; the facts stay without a customer (anonymous counts)."""
    rows.forget_owners(session)
    for table in FACT_TABLES:
        await session.execute(
            update(table).where(table.customer_id == contact_id).values(customer_id=None)
        )
    await session.execute(delete(Profile).where(Profile.customer_id == contact_id))
    await scoring.forget(session, contact_id)
