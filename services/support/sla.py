"""SLA policies and the scheduler that assigns tickets waiting for a free agent, re-assigns
unattended ones and flags breaches.

``sweep`` takes the time as an argument, so tests drive it with a controlled clock. Several
replicas may sweep at once: on PostgreSQL each locks the tickets it works on and skips those
another replica holds; on SQLite a batch holds the database's one write lock from its read on.
A sweep commits once per batch of tickets.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.support import events, rules
from services.support.models import SlaPolicyRow, Ticket
from services.support.rules import Priority, Status
from services.support.schemas import SlaPolicyUpdate, SweepResult
from services.support.service import assign_waiting, flag_breaches, route, sla_clock, sla_policy
from shared.db import for_update, lock_table, on_postgres, session_scope
from shared.events import utcnow

log = logging.getLogger(__name__)


async def set_policy(
    session: AsyncSession, priority: Priority, data: SlaPolicyUpdate
) -> SlaPolicyRow:
    await lock_table(session, SlaPolicyRow)
    row = await session.get(SlaPolicyRow, priority.value)
    if row is None:
        row = SlaPolicyRow(priority=priority.value)
        session.add(row)
    for field, value in data.model_dump().items():
        setattr(row, field, value)
    await session.flush()
    return row


async def policies(session: AsyncSession) -> list[SlaPolicyRow]:
    return list(await session.scalars(select(SlaPolicyRow).order_by(SlaPolicyRow.priority)))


async def sweep(
    factory: async_sessionmaker[AsyncSession], now: datetime, batch: int = 500
) -> SweepResult:
    """Check every active ticket, ``batch`` at a time, oldest first, each batch in a transaction
    of its own (short locks). Every ticket is reached, however long the backlog: a ticket
    whose breaches are all flagged stays active, so the same first batch would otherwise be
    checked again and again."""
    result = SweepResult()
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        async for session in session_scope(factory):
            checked, after = await _sweep_batch(session, now, batch, after)
        result.assigned += checked.assigned
        result.reassigned += checked.reassigned
        result.breaches += checked.breaches
        if after is None:
            return result


async def _sweep_batch(
    session: AsyncSession, now: datetime, batch: int, after: tuple[datetime, uuid.UUID] | None
) -> tuple[SweepResult, tuple[datetime, uuid.UUID] | None]:
    """One batch of active tickets after ``after``; returns what it did and, if the batch was
    full, the last ticket's key to go on from."""
    result = SweepResult()
    by_priority = {row.priority: sla_policy(row) for row in await policies(session)}
    waiting = and_(Ticket.status == Status.open.value, Ticket.agent_id.is_(None))
    query = (
        select(Ticket)
        .where(
            Ticket.status.in_([s.value for s in rules.ACTIVE]),
            # A ticket waiting for an agent is assigned whatever its priority's SLA policy.
            or_(Ticket.priority.in_(list(by_priority)), waiting),
            Ticket.opened_at <= now,
        )
        .order_by(Ticket.opened_at, Ticket.id)
        .limit(batch)
    )
    if after is not None:
        opened_at, ticket_id = after
        query = query.where(
            or_(
                Ticket.opened_at > opened_at,
                and_(Ticket.opened_at == opened_at, Ticket.id > ticket_id),
            )
        )
    # Read under the locks the batch is changed under: a change committed between this read
    # and the writes (an erasure closing the ticket, an agent's answer) would otherwise be
    # overwritten by a re-assignment or a breach of the ticket as read. On SQLite, which has
    # no row locks and reads outside the write transaction, the database's write lock.
    if on_postgres(session):
        query = query.with_for_update(skip_locked=True)
    else:
        query = await for_update(session, query)
    tickets = list(await session.scalars(query))
    # Routes (category, channel, priority) that found nobody free: the batch's assignments
    # only fill agents up, so later tickets of the same route would find nobody either.
    nobody_free: set[tuple[str | None, str, str]] = set()
    for ticket in tickets:
        if ticket.agent_id is None and ticket.status == Status.open.value:
            route_key = (ticket.category, ticket.channel, ticket.priority)
            if route_key not in nobody_free:
                if await assign_waiting(session, ticket, now):
                    result.assigned += 1
                else:
                    nobody_free.add(route_key)
        policy = by_priority.get(ticket.priority)
        if policy is None:
            continue
        verdict = rules.sla_check(sla_clock(ticket), policy, now)
        if verdict.reassign and await _reassign(session, ticket, now):
            result.reassigned += 1
        result.breaches += flag_breaches(session, ticket, verdict, now)
    await session.flush()
    if len(tickets) < batch:
        return result, None
    return result, (tickets[-1].opened_at, tickets[-1].id)


async def _reassign(session: AsyncSession, ticket: Ticket, now: datetime) -> bool:
    agent_id = await route(session, ticket, exclude=ticket.agent_id)
    if agent_id is None:
        return False  # nobody free: try again on the next sweep
    previous, ticket.agent_id, ticket.assigned_at, ticket.updated_at = (
        ticket.agent_id,
        agent_id,
        now,
        now,
    )
    await session.flush()  # the next route() counts this ticket for its new agent
    events.ticket_event(
        session,
        events.TICKET_REASSIGNED,
        events.TicketReassigned(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            agent_id=agent_id,
            previous_agent_id=previous,
            reason="unanswered",
            reassigned_at=now,
        ),
    )
    return True


async def run(factory: async_sessionmaker[AsyncSession], interval_s: float) -> None:
    """The scheduler loop: one sweep per interval, errors logged, never fatal."""
    while True:
        try:
            swept = await sweep(factory, utcnow())
            if swept.assigned or swept.reassigned or swept.breaches:
                log.info("sla sweep", extra=swept.model_dump())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sla sweep failed")
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def scheduler(
    factory: async_sessionmaker[AsyncSession], interval_s: float
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(run(factory, interval_s), name="support.sla")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
