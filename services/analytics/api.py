"""HTTP routes of analytics: KPIs, the customer 360, scores and segments (read-only)."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.analytics import kpis, rules, service
from services.analytics.schemas import (
    Customer360,
    CustomerScores,
    SegmentMember,
    Segments,
)
from shared.app import Cursor, Limit, SessionDep
from shared.auth import require_scope
from shared.customer_view import TimelineFilters
from shared.customer_view.schemas import Key
from shared.errors import NotFound
from shared.events import Channel, Department
from shared.pagination import DEFAULT_LIMIT, Page
from shared.values import CalendarDay, UTCTime

read = [Depends(require_scope("analytics:read"))]

router = APIRouter(prefix="/v1", tags=["analytics"], dependencies=read)
From = Annotated[
    CalendarDay, Query(alias="from", description="first UTC day (YYYY-MM-DD), inclusive")
]
To = Annotated[CalendarDay, Query(description="last UTC day (YYYY-MM-DD), inclusive")]


@router.get("/kpis/support")
async def support_kpis(session: SessionDep, first: From, to: To) -> dict[str, Any]:
    """Tickets opened per day/weekday/month, closed per agent, response and resolution times,
    exchanges, CSAT and SLA breaches over the period."""
    return await kpis.support(session, kpis.Period.of(first, to))


@router.get("/kpis/sales")
async def sales_kpis(session: SessionDep, first: From, to: To) -> dict[str, Any]:
    """Leads by source, conversion and win rates, pipeline, forecast, cycle, revenue."""
    return await kpis.sales(session, kpis.Period.of(first, to))


@router.get("/kpis/marketing")
async def marketing_kpis(session: SessionDep, first: From, to: To) -> dict[str, Any]:
    """Per campaign: sent, suppressed by reason, engagement rates, leads, revenue, cost."""
    return await kpis.marketing(session, kpis.Period.of(first, to))


@router.get("/kpis/usage")
async def usage_kpis(session: SessionDep, first: From, to: To) -> dict[str, Any]:
    """Touches per department and per agent (actor) per day."""
    return await kpis.usage(session, kpis.Period.of(first, to))


@router.get("/customers/{customer_id}/360")
async def customer_360(
    customer_id: uuid.UUID,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    department: Department | None = None,
    channel: Channel | None = None,
    kind: Annotated[Key | None, Query()] = None,
    since: Annotated[UTCTime | None, Query(description="from (inclusive)")] = None,
    until: Annotated[UTCTime | None, Query(description="to (exclusive)")] = None,
) -> Customer360:
    """Profile, every department's touches (paged, filtered), open tickets and opportunities,
    orders, scores, touch counts and the last inbound and outbound touch."""
    filters = TimelineFilters(department, channel, kind, since, until)
    return await service.customer_360(
        session, customer_id, limit=limit, cursor=cursor, filters=filters
    )


@router.get("/customers/{customer_id}/scores")
async def customer_scores(customer_id: uuid.UUID, session: SessionDep) -> CustomerScores:
    """RFM segment, CLV and churn risk as of now, with the factors behind the risk."""
    return await service.scores(session, customer_id)


@router.get("/segments/rfm")
async def rfm_segments(session: SessionDep) -> Segments:
    """How many customers each RFM segment holds."""
    return Segments(segments=await service.segment_counts(session))


@router.get("/segments/rfm/{segment}/customers")
async def rfm_segment_members(
    segment: str, session: SessionDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[SegmentMember]:
    if segment not in rules.SEGMENTS:
        raise NotFound(f"no RFM segment {segment!r}; known: {', '.join(rules.SEGMENTS)}")
    rows, next_cursor = await service.segment_members(session, segment, limit=limit, cursor=cursor)
    return Page(items=[SegmentMember.model_validate(r) for r in rows], next_cursor=next_cursor)
