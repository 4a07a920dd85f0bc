"""HTTP routes of segments, campaigns, tasks and provider reports: translate a request into a
service call."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel

from services.marketing import engagement, launch, service
from services.marketing.models import SendStatus
from services.marketing.schemas import (
    CampaignCreate,
    CampaignRead,
    CampaignStatus,
    CampaignUpdate,
    LaunchResult,
    Member,
    ProviderEvent,
    Report,
    SegmentCount,
    SegmentCreate,
    SegmentPreview,
    SegmentRead,
    SendRead,
    TaskCreate,
    TaskRead,
    TaskUpdate,
)
from shared.app import Cursor, Limit, SessionDep
from shared.auth import require_scope
from shared.pagination import DEFAULT_LIMIT, Page
from shared.values import CalendarDay

read = [Depends(require_scope("marketing:read"))]
write = [Depends(require_scope("marketing:write"))]

router = APIRouter(prefix="/v1", tags=["marketing"])


# ---- segments -------------------------------------------------------------------------------


@router.post("/segments", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_segment(body: SegmentCreate, session: SessionDep) -> SegmentRead:
    segment, count = await service.create_segment(session, body)
    return SegmentRead.model_validate(segment).model_copy(update={"member_count": count})


@router.get("/segments", dependencies=read)
async def list_segments(
    session: SessionDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[SegmentRead]:
    rows, next_cursor = await service.list_segments(session, limit=limit, cursor=cursor)
    return Page(items=[SegmentRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/segments:preview", dependencies=read)
async def preview_segment(body: SegmentPreview, session: SessionDep) -> SegmentCount:
    """How many customers these rules pick now, without saving a segment."""
    return SegmentCount(count=await service.preview(session, body.rules))


@router.get("/segments/{segment_id}", dependencies=read)
async def get_segment(segment_id: uuid.UUID, session: SessionDep) -> SegmentRead:
    segment = await service.get_segment(session, segment_id)
    count = await service.static_count(session, segment)
    return SegmentRead.model_validate(segment).model_copy(update={"member_count": count})


@router.get("/segments/{segment_id}/members", dependencies=read)
async def segment_members(
    segment_id: uuid.UUID, session: SessionDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[Member]:
    items, next_cursor = await service.members_page(session, segment_id, limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/segments/{segment_id}/count", dependencies=read)
async def segment_count(segment_id: uuid.UUID, session: SessionDep) -> SegmentCount:
    return SegmentCount(count=await service.count(session, segment_id))


# ---- campaigns ------------------------------------------------------------------------------


@router.post("/campaigns", status_code=status.HTTP_201_CREATED, dependencies=write)
async def create_campaign(body: CampaignCreate, session: SessionDep) -> CampaignRead:
    return CampaignRead.model_validate(await service.create_campaign(session, body))


@router.get("/campaigns", dependencies=read)
async def list_campaigns(
    session: SessionDep,
    status: CampaignStatus | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[CampaignRead]:
    rows, next_cursor = await service.list_campaigns(
        session, status=status, limit=limit, cursor=cursor
    )
    return Page(items=[CampaignRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/campaigns/{campaign_id}", dependencies=read)
async def get_campaign(campaign_id: uuid.UUID, session: SessionDep) -> CampaignRead:
    return CampaignRead.model_validate(await service.get_campaign(session, campaign_id))


@router.patch("/campaigns/{campaign_id}", dependencies=write)
async def update_campaign(
    campaign_id: uuid.UUID, body: CampaignUpdate, session: SessionDep
) -> CampaignRead:
    return CampaignRead.model_validate(await service.update_campaign(session, campaign_id, body))


@router.post(
    "/campaigns/{campaign_id}/launch", status_code=status.HTTP_202_ACCEPTED, dependencies=write
)
async def launch_campaign(campaign_id: uuid.UUID, session: SessionDep) -> LaunchResult:
    """Queue a send for every member not suppressed (the sender delivers them); members who
    already have a send from an earlier launch are never sent to again."""
    return await launch.launch(session, campaign_id)


@router.post("/campaigns/{campaign_id}/cancel", dependencies=write)
async def cancel_campaign(campaign_id: uuid.UUID, session: SessionDep) -> CampaignRead:
    """Stop the campaign for good: sends no sender has claimed yet are not sent (suppressed,
    reason ``campaign_cancelled``), those being handed over finish; it cannot be launched
    again. Cancelling it again changes nothing; a completed campaign is a 409."""
    return CampaignRead.model_validate(await launch.cancel(session, campaign_id))


@router.get("/campaigns/{campaign_id}/report", dependencies=read)
async def campaign_report(campaign_id: uuid.UUID, session: SessionDep) -> Report:
    return await service.report(session, campaign_id)


@router.get("/campaigns/{campaign_id}/sends", dependencies=read)
async def campaign_sends(
    campaign_id: uuid.UUID,
    session: SessionDep,
    status: SendStatus | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[SendRead]:
    rows, next_cursor = await service.sends_page(
        session, campaign_id, status=status, limit=limit, cursor=cursor
    )
    return Page(items=[SendRead.model_validate(r) for r in rows], next_cursor=next_cursor)


# ---- tasks ----------------------------------------------------------------------------------


@router.post(
    "/campaigns/{campaign_id}/tasks", status_code=status.HTTP_201_CREATED, dependencies=write
)
async def create_task(campaign_id: uuid.UUID, body: TaskCreate, session: SessionDep) -> TaskRead:
    return TaskRead.model_validate(await service.create_task(session, campaign_id, body))


@router.get("/campaigns/{campaign_id}/tasks", dependencies=read)
async def list_tasks(
    campaign_id: uuid.UUID,
    session: SessionDep,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    due_before: CalendarDay | None = None,
) -> Page[TaskRead]:
    tasks = await service.list_tasks(session, campaign_id, assignee=assignee, due_before=due_before)
    return Page(items=[TaskRead.model_validate(t) for t in tasks])


@router.patch("/campaigns/{campaign_id}/tasks/{task_id}", dependencies=write)
async def update_task(
    campaign_id: uuid.UUID, task_id: uuid.UUID, body: TaskUpdate, session: SessionDep
) -> TaskRead:
    return TaskRead.model_validate(await service.update_task(session, campaign_id, task_id, body))


# ---- what providers report ------------------------------------------------------------------


class Recorded(BaseModel):
    id: uuid.UUID | None
    recorded: bool


@router.post("/engagements", status_code=status.HTTP_201_CREATED, dependencies=write)
async def provider_event(body: ProviderEvent, session: SessionDep, response: Response) -> Recorded:
    """A delivery receipt or a reply reported by a channel provider (the first per send counts:
    a repeat answers 200 with ``recorded: false``). A send never handed to a provider (queued,
    suppressed, failed) cannot have been delivered or replied to: a 409 that records nothing."""
    recorded = await engagement.record(session, body.send_id, body.kind.value, body.occurred_at)
    if recorded is None:
        response.status_code = status.HTTP_200_OK
        return Recorded(id=None, recorded=False)
    return Recorded(id=recorded.id, recorded=True)
