"""The routes every department serves over its customer view: the shared timeline, the contact
check, and touches recorded directly."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from shared.app import Cursor, Limit, SessionDep
from shared.auth import require_scope
from shared.customer_view import projection
from shared.customer_view.schemas import (
    BatchCreated,
    ContactCheck,
    Created,
    InteractionBatch,
    InteractionCreate,
    Key,
    TimelineItem,
)
from shared.events import Channel, Department
from shared.pagination import DEFAULT_LIMIT, Page
from shared.values import UTCTime

OpenTicketPriorities = Callable[[AsyncSession, uuid.UUID], Awaitable[list[str]]]


def router(
    *,
    department: Department,
    source: str,
    read_scope: str,
    write_scope: str,
    open_ticket_priorities: OpenTicketPriorities | None = None,
    unrecorded_outbound: projection.UnrecordedOutbound | None = None,
) -> APIRouter:
    """``open_ticket_priorities`` gives the priorities of a customer's open support tickets as
    this service knows them (an open high or urgent ticket holds marketing back);
    ``unrecorded_outbound`` counts the service's own outbound touches since a time that the
    timeline has not seen yet (marketing's queued sends)."""
    read = [Depends(require_scope(read_scope))]
    write = [Depends(require_scope(write_scope))]
    api = APIRouter(prefix="/v1", tags=["customer view"])

    @api.get("/customers/{customer_id}/timeline", dependencies=read)
    async def get_timeline(
        customer_id: uuid.UUID,
        session: SessionDep,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        department: Department | None = None,
        channel: Channel | None = None,
        kind: Annotated[Key | None, Query()] = None,
        since: Annotated[UTCTime | None, Query(description="from (inclusive)")] = None,
        until: Annotated[UTCTime | None, Query(description="to (exclusive)")] = None,
    ) -> Page[TimelineItem]:
        """Every department's touches of this customer, newest first."""
        filters = projection.TimelineFilters(department, channel, kind, since, until)
        items, next_cursor = await projection.timeline(
            session, customer_id, limit=limit, cursor=cursor, filters=filters
        )
        return Page(items=items, next_cursor=next_cursor)

    @api.get("/customers/{customer_id}/contact-check", dependencies=read)
    async def contact_check(
        customer_id: uuid.UUID,
        session: SessionDep,
        channel: Channel,
        as_department: Annotated[Department, Query(alias="department")] = department,
        at: Annotated[UTCTime | None, Query(description="when the touch would be")] = None,
    ) -> ContactCheck:
        """Whether an outbound touch now is allowed, and if not, why."""
        current = await projection.survivor(session, customer_id)
        priorities = (
            await open_ticket_priorities(session, current)
            if open_ticket_priorities is not None and current is not None
            else []
        )
        reasons = await projection.contact_check(
            session,
            customer_id,
            channel=channel,
            department=as_department,
            now=at,
            open_ticket_priorities=priorities,
            unrecorded_outbound=unrecorded_outbound,
        )
        return ContactCheck(allowed=not reasons, reasons=[r.value for r in reasons])

    @api.post("/interactions", status_code=status.HTTP_201_CREATED, dependencies=write)
    async def record_interaction(body: InteractionCreate, session: SessionDep) -> Created:
        [interaction_id] = await projection.record_interactions(
            session, [body], department=department, source=source
        )
        return Created(id=interaction_id)

    @api.post("/interactions:batch", status_code=status.HTTP_201_CREATED, dependencies=write)
    async def record_interactions(body: InteractionBatch, session: SessionDep) -> BatchCreated:
        ids = await projection.record_interactions(
            session, body.items, department=department, source=source
        )
        return BatchCreated(ids=ids)

    return api
