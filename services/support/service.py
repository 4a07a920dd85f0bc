"""Ticket and agent use cases. They take the caller's session and never commit: the caller does."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, ScalarSelect, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import events, rules
from services.support.models import (
    Agent,
    RoutingRuleRow,
    SlaPolicyRow,
    TeamCategory,
    Ticket,
    TicketMessage,
)
from services.support.rules import Action, Status
from services.support.schemas import (
    AgentCreate,
    AgentUpdate,
    MessageCreate,
    SatisfactionRequest,
    TicketCreate,
)
from shared.customer_view import current_customer, filed_under
from shared.db import for_update, get_or_404, lock_table, made_before
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import utcnow
from shared.pagination import cut_page, page_after

# ---- agents and teams -----------------------------------------------------------------------


async def create_agent(session: AsyncSession, data: AgentCreate) -> Agent:
    agent = Agent(**data.model_dump(), created_at=utcnow())
    session.add(agent)
    await session.flush()
    return agent


async def get_agent(session: AsyncSession, agent_id: uuid.UUID) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    return agent


async def update_agent(session: AsyncSession, agent_id: uuid.UUID, data: AgentUpdate) -> Agent:
    agent = await get_agent(session, agent_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is None:
            raise InvalidInput(f"{field} cannot be null", field=field)
        setattr(agent, field, value)
    await session.flush()
    return agent


def _open_tickets_of(agent_id: ColumnElement[uuid.UUID]) -> ScalarSelect[int]:
    """The agent's open and pending tickets: an index range per agent, however large the
    backlog of other agents' and closed tickets."""
    return (
        select(func.count())
        .where(Ticket.agent_id == agent_id, Ticket.status.in_([s.value for s in rules.ACTIVE]))
        .scalar_subquery()
    )


async def open_ticket_counts(
    session: AsyncSession, agent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(Agent.id, _open_tickets_of(Agent.id)).where(Agent.id.in_(agent_ids))
    )
    return {agent_id: count for agent_id, count in rows}


async def list_agents(session: AsyncSession, team: str | None) -> list[Agent]:
    query = select(Agent).order_by(Agent.name, Agent.id)
    if team is not None:
        query = query.where(Agent.team == team)
    return list(await session.scalars(query))


async def set_team(session: AsyncSession, team: str, categories: list[str]) -> list[str]:
    """The team owns exactly these categories; one owned by another team is a 409."""
    # Taken first: two teams claiming one category at once would both find it free.
    await lock_table(session, TeamCategory)
    wanted = sorted(set(categories))
    if wanted:
        taken = await session.execute(
            select(TeamCategory.category, TeamCategory.team).where(
                TeamCategory.category.in_(wanted), TeamCategory.team != team
            )
        )
        for category, owner in taken:
            raise Conflict(f"category {category} belongs to team {owner}", field="categories")
    for row in await session.scalars(select(TeamCategory).where(TeamCategory.team == team)):
        if row.category not in wanted:
            await session.delete(row)
    owned = set(
        await session.scalars(select(TeamCategory.category).where(TeamCategory.team == team))
    )
    session.add_all(TeamCategory(category=c, team=team) for c in wanted if c not in owned)
    await session.flush()
    return wanted


async def list_teams(session: AsyncSession) -> dict[str, list[str]]:
    teams: dict[str, list[str]] = {}
    for team in await session.scalars(select(Agent.team).distinct()):
        teams[team] = []
    rows = await session.execute(select(TeamCategory).order_by(TeamCategory.category))
    for (row,) in rows:
        teams.setdefault(row.team, []).append(row.category)
    return dict(sorted(teams.items()))


async def routing_rules(session: AsyncSession) -> list[rules.RoutingRule]:
    rows = await session.scalars(select(RoutingRuleRow).order_by(RoutingRuleRow.position))
    return [rules.RoutingRule(r.team, r.category, r.channel, r.priority) for r in rows]


async def set_routing_rules(
    session: AsyncSession, new_rules: list[rules.RoutingRule]
) -> list[rules.RoutingRule]:
    """Replace the ordered rule list (the first matching rule decides)."""
    await lock_table(session, RoutingRuleRow)
    await session.execute(delete(RoutingRuleRow))
    session.add_all(
        RoutingRuleRow(
            position=n, team=r.team, category=r.category, channel=r.channel, priority=r.priority
        )
        for n, r in enumerate(new_rules)
    )
    await session.flush()
    return new_rules


async def route(
    session: AsyncSession, ticket: Ticket, exclude: uuid.UUID | None = None
) -> uuid.UUID | None:
    """The agent a ticket goes to: the team by the routing rules, then the least loaded."""
    owner = None
    if ticket.category is not None:
        owner = await session.scalar(
            select(TeamCategory.team).where(TeamCategory.category == ticket.category)
        )
    team = rules.team_for(
        await routing_rules(session),
        category=ticket.category,
        channel=ticket.channel,
        priority=ticket.priority,
        category_owner=owner,
    )
    agents = select(Agent.id).where(Agent.available.is_(True)).order_by(Agent.id)
    if team is not None:
        agents = agents.where(Agent.team == team)
    # Each ticket routed changes the loads counted below: tickets routed at once take turns
    # (in one order: no deadlock), or each counts the same spare capacity; twelve at once
    # went to agents of capacity 2, eight of them to one agent.
    await session.execute(await for_update(session, agents))
    candidates = select(
        Agent.id, Agent.team, Agent.available, Agent.capacity, _open_tickets_of(Agent.id)
    ).where(Agent.available.is_(True))
    if team is not None:
        candidates = candidates.where(Agent.team == team)
    if exclude is not None:
        candidates = candidates.where(Agent.id != exclude)
    return rules.route((rules.AgentLoad(*row) for row in await session.execute(candidates)), team)


# ---- tickets --------------------------------------------------------------------------------


async def open_ticket_priorities(session: AsyncSession, customer_id: uuid.UUID) -> list[str]:
    """The priorities of the customer's open tickets (an urgent one holds marketing back)."""
    priorities = await session.scalars(
        select(Ticket.priority)
        .where(
            Ticket.customer_id == customer_id, Ticket.status.in_([s.value for s in rules.ACTIVE])
        )
        .distinct()
    )
    return list(priorities)


async def create_ticket(
    session: AsyncSession, data: TicketCreate, *, unknown_customer: bool = False
) -> Ticket:
    """The ticket opened (and routed) and published; sent again with its ``ticket_id``, the
    ticket first opened (the id of another ticket is a 409)."""
    now = utcnow()
    customer_id = await current_customer(session, data.customer_id)
    earlier = await made_before(
        session,
        Ticket,
        data.ticket_id,
        name="ticket",
        field="ticket_id",
        same=lambda ticket: (
            (ticket.customer_id, ticket.subject, ticket.channel)
            == (customer_id, data.subject, data.channel.value)
        ),
    )
    if earlier is not None:
        return earlier
    ticket = Ticket(
        id=data.ticket_id or uuid.uuid4(),
        customer_id=customer_id,
        subject=data.subject,
        description=data.description,
        channel=data.channel.value,
        priority=data.priority.value,
        category=data.category,
        attributes=data.attributes,
        status=Status.open.value,
        unknown_customer=unknown_customer,
        opened_at=data.opened_at or now,
        updated_at=now,
    )
    agent_id = await _route_to_agent(session, ticket, now)
    session.add(ticket)
    await session.flush()
    events.ticket_opened(session, ticket)
    if agent_id is not None:
        events.ticket_assigned(session, ticket, None, now, automatic=True)
    return ticket


async def _route_to_agent(session: AsyncSession, ticket: Ticket, now: datetime) -> uuid.UUID | None:
    """The ticket, without an agent yet, to the agent routing picks, if any is free."""
    agent_id = await route(session, ticket)
    if agent_id is not None:
        ticket.status = rules.transition(ticket.status, Action.assign, assigned=False).value
        ticket.agent_id, ticket.assigned_at = agent_id, now
    return agent_id


async def assign_waiting(session: AsyncSession, ticket: Ticket, now: datetime) -> bool:
    """A ticket (locked) filed when no agent was free, to the agent routing picks now, as its
    filing would have; False if still nobody is free. The SLA sweep's."""
    if await _route_to_agent(session, ticket, now) is None:
        return False
    ticket.updated_at = now
    await session.flush()  # the next route() counts this ticket for its agent
    events.ticket_assigned(session, ticket, None, now, automatic=True)
    return True


async def get_ticket(session: AsyncSession, ticket_id: uuid.UUID, *, lock: bool = False) -> Ticket:
    """``lock`` for a change: requests changing one ticket at once then take turns, where each
    would check its transition against the same status (a ticket reopened and closed at once)."""
    return await get_or_404(session, Ticket, ticket_id, "ticket", lock=lock)


async def _ticket_of_a_customer(session: AsyncSession, ticket_id: uuid.UUID) -> Ticket:
    """The ticket, locked, to add what its customer said or thought (a message, a rating); a
    409 once the customer was erased: nothing more is kept about them. The customer's lock
    first, then the ticket's, as an erasure takes them."""
    customer_id = await session.scalar(select(Ticket.customer_id).where(Ticket.id == ticket_id))
    if customer_id is not None and await filed_under(session, customer_id) is None:
        raise Conflict(
            f"the customer of ticket {ticket_id} was erased: nothing more is kept about them",
            field="ticket_id",
        )
    return await get_ticket(session, ticket_id, lock=True)


async def messages(session: AsyncSession, ticket_id: uuid.UUID) -> list[TicketMessage]:
    return list(
        await session.scalars(
            select(TicketMessage)
            .where(TicketMessage.ticket_id == ticket_id)
            .order_by(TicketMessage.sent_at, TicketMessage.id)
        )
    )


async def list_tickets(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID | None,
    status: str | None,
    agent_id: uuid.UUID | None,
    priority: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Ticket], str | None]:
    """Newest first by opened_at."""
    query = select(Ticket).order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(limit + 1)
    for column, value in (
        (Ticket.customer_id, customer_id),
        (Ticket.status, status),
        (Ticket.agent_id, agent_id),
        (Ticket.priority, priority),
    ):
        if value is not None:
            query = query.where(column == value)
    query = page_after(query, Ticket.opened_at, Ticket.id, cursor)
    return cut_page(list(await session.scalars(query)), limit, "opened_at")


async def add_message(
    session: AsyncSession, ticket_id: uuid.UUID, data: MessageCreate
) -> TicketMessage:
    ticket = await _ticket_of_a_customer(session, ticket_id)
    earlier = await made_before(
        session,
        TicketMessage,
        data.message_id,
        name="message",
        field="message_id",
        same=lambda message: (
            (message.ticket_id, message.author_type) == (ticket.id, data.author_type)
        ),
    )
    if earlier is not None:
        return earlier
    if data.author_id is not None:
        await _existing_agent(session, data.author_id, "author_id")
    before = ticket.status
    ticket.status = rules.status_after_message(
        ticket.status, data.author_type, assigned=ticket.agent_id is not None
    ).value
    now = utcnow()
    message = TicketMessage(
        id=data.message_id or uuid.uuid4(),
        ticket_id=ticket.id,
        author_type=data.author_type,
        author_id=str(data.author_id) if data.author_id else None,
        body=data.body,
        sent_at=data.sent_at or now,
    )
    if data.author_type == "agent":
        # An answer dated before those recorded (synced late, imported) moves neither the
        # last answer back (the sweep would re-assign a ticket answered since its assignment)
        # nor the first answer forward.
        sent_at = message.sent_at
        if ticket.agent_replied_at is None or sent_at > ticket.agent_replied_at:
            ticket.agent_replied_at = sent_at
        if ticket.first_response_at is None or sent_at < ticket.first_response_at:
            ticket.first_response_at = sent_at
    if before != ticket.status:
        ticket.resolved_at = None  # reopened: no longer resolved, as POST /reopen has it
    ticket.updated_at = now
    session.add(message)
    await session.flush()
    events.message_added(session, ticket, message)
    if data.author_type == "agent":
        await _flag_late(session, ticket, now)
    if before != ticket.status:
        # Reopened now, not at sent_at (the sender's clock): a message written before the
        # resolution but arriving after it still reopens the ticket for every consumer.
        events.status_changed(session, ticket, events.TICKET_REOPENED, now)
    return message


async def _existing_agent(session: AsyncSession, agent_id: uuid.UUID, field: str) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise InvalidInput(f"agent {agent_id} not found", field=field)
    return agent


async def assign(session: AsyncSession, ticket_id: uuid.UUID, agent_id: uuid.UUID) -> Ticket:
    ticket = await get_ticket(session, ticket_id, lock=True)
    await _existing_agent(session, agent_id, "agent_id")
    ticket.status = rules.transition(ticket.status, Action.assign, assigned=True).value
    previous, ticket.agent_id = ticket.agent_id, agent_id
    ticket.updated_at = utcnow()
    if previous != agent_id:
        ticket.assigned_at = ticket.updated_at
    await session.flush()
    if previous != agent_id:
        events.ticket_assigned(session, ticket, previous, ticket.updated_at, automatic=False)
    return ticket


STATUS_EVENTS = {
    Action.resolve: events.TICKET_RESOLVED,
    Action.reopen: events.TICKET_REOPENED,
    Action.close: events.TICKET_CLOSED,
}


async def change_status(
    session: AsyncSession, ticket_id: uuid.UUID, action: Action, at: datetime | None = None
) -> Ticket:
    ticket = await get_ticket(session, ticket_id, lock=True)
    if at is not None and at < ticket.opened_at:
        # A resolution before the opening: a negative resolution time in every KPI.
        raise InvalidInput(
            f"{at.isoformat()} is before the ticket was opened ({ticket.opened_at.isoformat()})",
            field="at",
        )
    ticket.status = rules.transition(
        ticket.status, action, assigned=ticket.agent_id is not None
    ).value
    now = utcnow()
    when = at or now
    if action == Action.resolve:
        ticket.resolved_at = when
    elif action == Action.reopen:
        ticket.resolved_at = None
    elif action == Action.close:
        ticket.closed_at = when
    ticket.updated_at = now
    await session.flush()
    # POST /close is an agent's (the erasure's close is customers.py's).
    reason: events.CloseReason | None = "agent" if action == Action.close else None
    events.status_changed(session, ticket, STATUS_EVENTS[action], when, close_reason=reason)
    if action == Action.resolve:
        await _flag_late(session, ticket, now)
    return ticket


async def rate(session: AsyncSession, ticket_id: uuid.UUID, data: SatisfactionRequest) -> Ticket:
    """CSAT on a resolved or closed ticket; a later rating replaces an earlier one."""
    ticket = await _ticket_of_a_customer(session, ticket_id)
    rules.can_rate(ticket.status)
    now = utcnow()
    ticket.satisfaction_score = data.score
    ticket.satisfaction_comment = data.comment
    ticket.satisfaction_at = data.at or now
    ticket.updated_at = now
    await session.flush()
    events.satisfaction_rated(session, ticket)
    return ticket


# ---- SLA breaches ---------------------------------------------------------------------------


def sla_policy(row: SlaPolicyRow) -> rules.SlaPolicy:
    return rules.SlaPolicy(
        row.first_response_minutes, row.resolution_minutes, row.reassign_after_minutes
    )


def sla_clock(ticket: Ticket) -> rules.SlaClock:
    return rules.SlaClock(
        status=ticket.status,
        opened_at=ticket.opened_at,
        assigned_at=ticket.assigned_at,
        agent_replied_at=ticket.agent_replied_at,
        first_response_at=ticket.first_response_at,
        resolved_at=ticket.resolved_at,
        first_response_breached=ticket.first_response_breached_at is not None,
        resolution_breached=ticket.resolution_breached_at is not None,
    )


def flag_breaches(
    session: AsyncSession, ticket: Ticket, verdict: rules.SlaVerdict, now: datetime
) -> int:
    """Flags and publishes the verdict's new breaches; the flag on the (locked) ticket keeps
    each target to one breach, whether the sweep or an answer finds it first."""
    flagged = 0
    for target, breached in (
        ("first_response", verdict.first_response_breached),
        ("resolution", verdict.resolution_breached),
    ):
        if breached:
            setattr(ticket, f"{target}_breached_at", now)
            events.sla_breached(session, ticket, target, now)
            flagged += 1
    return flagged


async def _flag_late(session: AsyncSession, ticket: Ticket, now: datetime) -> None:
    """A late answer or resolution is a breach now: the sweep checks only open and pending
    tickets, and may not have reached this one between its target and now."""
    row = await session.get(SlaPolicyRow, ticket.priority)
    if row is None:
        return
    verdict = rules.sla_check(sla_clock(ticket), sla_policy(row), now)
    flag_breaches(session, ticket, verdict, now)
