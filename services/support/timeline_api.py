"""HTTP routes of the shared timeline: every department's touches, contact checks, and
support's own touches that are not ticket messages."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from pydantic import AwareDatetime

from services.support import timeline
from services.support.schemas import (
    BatchCreated,
    ContactCheck,
    Created,
    InteractionBatch,
    InteractionCreate,
    TimelineItem,
)
from shared.app import SessionDep
from shared.auth import require_scope
from shared.events import Channel, Department
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

read = [Depends(require_scope("support:read"))]
write = [Depends(require_scope("support:write"))]

router = APIRouter(prefix="/v1", tags=["timeline"])
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.get("/customers/{customer_id}/timeline", dependencies=read)
async def get_timeline(
    customer_id: uuid.UUID,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[TimelineItem]:
    items, next_cursor = await timeline.timeline(session, customer_id, limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/customers/{customer_id}/contact-check", dependencies=read)
async def contact_check(
    customer_id: uuid.UUID,
    session: SessionDep,
    channel: Channel,
    department: Department = Department.support,
    at: Annotated[AwareDatetime | None, Query(description="when the touch would be")] = None,
) -> ContactCheck:
    reasons = await timeline.contact_check(
        session, customer_id, channel=channel, department=department, now=at
    )
    return ContactCheck(allowed=not reasons, reasons=[r.value for r in reasons])


@router.post("/interactions", status_code=status.HTTP_201_CREATED, dependencies=write)
async def record_interaction(body: InteractionCreate, session: SessionDep) -> Created:
    [interaction_id] = await timeline.record_interactions(session, [body])
    return Created(id=interaction_id)


@router.post("/interactions:batch", status_code=status.HTTP_201_CREATED, dependencies=write)
async def record_interactions(body: InteractionBatch, session: SessionDep) -> BatchCreated:
    return BatchCreated(ids=await timeline.record_interactions(session, body.items))
