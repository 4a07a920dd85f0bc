"""HTTP routes of tickets, agents and teams: translate a request into a service call."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import rules, service
from services.support.models import Agent, Ticket
from services.support.rules import Action, Priority, Status
from services.support.schemas import (
    AgentCreate,
    AgentRead,
    AgentUpdate,
    AssignRequest,
    AtRequest,
    MessageCreate,
    MessageRead,
    RoutingRule,
    RoutingRules,
    SatisfactionRequest,
    TeamRead,
    TeamUpdate,
    TicketCreate,
    TicketRead,
)
from shared.app import Cursor, Limit, SessionDep
from shared.auth import require_scope
from shared.pagination import DEFAULT_LIMIT, Page

read = [Depends(require_scope("support:read"))]
write = [Depends(require_scope("support:write"))]

router = APIRouter(prefix="/v1", tags=["support"])
TeamName = Annotated[str, Query(min_length=1, max_length=64)]


def to_read(ticket: Ticket, messages: list | None = None) -> TicketRead:
    read_model = TicketRead.model_validate(ticket)
    if messages:
        read_model.messages = [MessageRead.model_validate(m) for m in messages]
    return read_model


async def _full(session: AsyncSession, ticket: Ticket) -> TicketRead:
    return to_read(ticket, await service.messages(session, ticket.id))


async def _agent_read(session: AsyncSession, agent: Agent) -> AgentRead:
    counts = await service.open_ticket_counts(session, [agent.id])
    return AgentRead.model_validate(agent).model_copy(
        update={"open_tickets": counts.get(agent.id, 0)}
    )


# ---- agents and teams -----------------------------------------------------------------------


@router.post("/agents", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_agent(body: AgentCreate, session: SessionDep) -> AgentRead:
    return await _agent_read(session, await service.create_agent(session, body))


@router.get("/agents", dependencies=read)
async def list_agents(
    session: SessionDep, team: Annotated[str | None, Query(max_length=64)] = None
) -> Page[AgentRead]:
    agents = await service.list_agents(session, team)
    counts = await service.open_ticket_counts(session, [a.id for a in agents])
    return Page(
        items=[
            AgentRead.model_validate(a).model_copy(update={"open_tickets": counts.get(a.id, 0)})
            for a in agents
        ]
    )


@router.get("/agents/{agent_id}", dependencies=read)
async def get_agent(agent_id: uuid.UUID, session: SessionDep) -> AgentRead:
    return await _agent_read(session, await service.get_agent(session, agent_id))


@router.patch("/agents/{agent_id}", dependencies=write)
async def update_agent(agent_id: uuid.UUID, body: AgentUpdate, session: SessionDep) -> AgentRead:
    return await _agent_read(session, await service.update_agent(session, agent_id, body))


@router.get("/teams", dependencies=read)
async def list_teams(session: SessionDep) -> list[TeamRead]:
    teams = await service.list_teams(session)
    return [TeamRead(name=name, categories=categories) for name, categories in teams.items()]


@router.put("/teams/{team}", dependencies=write)
async def set_team(team: str, body: TeamUpdate, session: SessionDep) -> TeamRead:
    """The categories this team owns: routing sends their tickets to the team's agents."""
    return TeamRead(name=team, categories=await service.set_team(session, team, body.categories))


@router.get("/routing-rules", dependencies=read)
async def get_routing_rules(session: SessionDep) -> RoutingRules:
    return _rules_read(await service.routing_rules(session))


@router.put("/routing-rules", dependencies=write)
async def set_routing_rules(body: RoutingRules, session: SessionDep) -> RoutingRules:
    """Replace the ordered routing rules (by category, channel and priority)."""
    wanted = [
        rules.RoutingRule(
            r.team,
            r.category,
            r.channel.value if r.channel else None,
            r.priority.value if r.priority else None,
        )
        for r in body.rules
    ]
    return _rules_read(await service.set_routing_rules(session, wanted))


def _rules_read(routing: list[rules.RoutingRule]) -> RoutingRules:
    return RoutingRules(
        rules=[RoutingRule.model_validate(r, from_attributes=True) for r in routing]
    )


# ---- tickets --------------------------------------------------------------------------------


@router.post("/tickets", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_ticket(body: TicketCreate, session: SessionDep) -> TicketRead:
    return to_read(await service.create_ticket(session, body))


@router.get("/tickets", dependencies=read)
async def list_tickets(
    session: SessionDep,
    customer_id: uuid.UUID | None = None,
    status: Status | None = None,
    agent_id: uuid.UUID | None = None,
    priority: Priority | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[TicketRead]:
    tickets, next_cursor = await service.list_tickets(
        session,
        customer_id=customer_id,
        status=status.value if status else None,
        agent_id=agent_id,
        priority=priority.value if priority else None,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[to_read(t) for t in tickets], next_cursor=next_cursor)


@router.get("/tickets/{ticket_id}", dependencies=read)
async def get_ticket(ticket_id: uuid.UUID, session: SessionDep) -> TicketRead:
    return await _full(session, await service.get_ticket(session, ticket_id))


@router.post(
    "/tickets/{ticket_id}/messages", status_code=status.HTTP_201_CREATED, dependencies=write
)
async def add_message(
    ticket_id: uuid.UUID, body: MessageCreate, session: SessionDep
) -> MessageRead:
    return MessageRead.model_validate(await service.add_message(session, ticket_id, body))


@router.post("/tickets/{ticket_id}/assign", dependencies=write)
async def assign(ticket_id: uuid.UUID, body: AssignRequest, session: SessionDep) -> TicketRead:
    return await _full(session, await service.assign(session, ticket_id, body.agent_id))


@router.post("/tickets/{ticket_id}/resolve", dependencies=write)
async def resolve(
    ticket_id: uuid.UUID, session: SessionDep, body: AtRequest | None = None
) -> TicketRead:
    at = body.at if body else None
    return await _full(session, await service.change_status(session, ticket_id, Action.resolve, at))


@router.post("/tickets/{ticket_id}/reopen", dependencies=write)
async def reopen(ticket_id: uuid.UUID, session: SessionDep) -> TicketRead:
    return await _full(session, await service.change_status(session, ticket_id, Action.reopen))


@router.post("/tickets/{ticket_id}/close", dependencies=write)
async def close(ticket_id: uuid.UUID, session: SessionDep) -> TicketRead:
    return await _full(session, await service.change_status(session, ticket_id, Action.close))


@router.post("/tickets/{ticket_id}/satisfaction", dependencies=write)
async def rate(ticket_id: uuid.UUID, body: SatisfactionRequest, session: SessionDep) -> TicketRead:
    return await _full(session, await service.rate(session, ticket_id, body))
