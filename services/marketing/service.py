"""Segment, campaign and task use cases, and the campaign report. They take the caller's
session and never commit: the caller does."""

import json
import uuid
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import String, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing import audience, events, rules
from services.marketing.models import (
    Campaign,
    CampaignTask,
    Engagement,
    Lead,
    Order,
    Recipient,
    Segment,
    SegmentMember,
    Send,
    SendStatus,
)
from services.marketing.schemas import (
    CampaignCreate,
    CampaignStatus,
    CampaignUpdate,
    Member,
    Report,
    SegmentCreate,
    SegmentKind,
    TaskCreate,
    TaskUpdate,
)
from shared.db import chunked, get_or_404, made_before
from shared.errors import InvalidInput, InvalidTransition, NotFound
from shared.events import utcnow
from shared.pagination import cut_page, decode_cursor, encode_cursor, page_after

# ---- pages ----------------------------------------------------------------------------------


def _newest_first(query: Any, model: Any, cursor: str | None) -> Any:
    query = query.order_by(model.created_at.desc(), model.id.desc())
    return page_after(query, model.created_at, model.id, cursor)


# ---- segments -------------------------------------------------------------------------------


async def create_segment(session: AsyncSession, data: SegmentCreate) -> tuple[Segment, int | None]:
    """A segment; a static one gets its members frozen now (returned as the count)."""
    rule = rules.parse_rule(data.rules)
    earlier = await made_before(
        session,
        Segment,
        data.segment_id,
        name="segment",
        field="segment_id",
        same=lambda segment: (segment.name, segment.kind) == (data.name, data.kind.value),
    )
    if earlier is not None:
        return earlier, await static_count(session, earlier)
    now = utcnow()
    segment = Segment(
        id=data.segment_id or uuid.uuid4(),
        name=data.name,
        description=data.description,
        rules=data.rules,
        kind=data.kind.value,
        created_at=now,
    )
    session.add(segment)
    await session.flush()
    if data.kind == SegmentKind.dynamic:
        return segment, None
    members = await audience.matching(session, rule, now)
    for chunk in chunked(members, 5000):
        await session.execute(
            insert(SegmentMember), [{"segment_id": segment.id, "customer_id": m} for m in chunk]
        )
    return segment, len(members)


async def get_segment(session: AsyncSession, segment_id: uuid.UUID) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found")
    return segment


async def static_count(session: AsyncSession, segment: Segment) -> int | None:
    if segment.kind != SegmentKind.static:
        return None
    return await audience.member_count(session, segment, utcnow())


async def list_segments(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Segment], str | None]:
    rows = await session.scalars(_newest_first(select(Segment), Segment, cursor).limit(limit + 1))
    return cut_page(list(rows), limit, "created_at")


async def preview(session: AsyncSession, raw_rules: dict[str, Any]) -> int:
    return len(await audience.matching(session, rules.parse_rule(raw_rules), utcnow()))


async def count(session: AsyncSession, segment_id: uuid.UUID) -> int:
    segment = await get_segment(session, segment_id)
    return await audience.member_count(session, segment, utcnow())


async def members_page(
    session: AsyncSession, segment_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[Member], str | None]:
    """The members in id order; the cursor is the last id of the previous page."""
    segment = await get_segment(session, segment_id)
    after = None
    if cursor is not None:
        (raw,) = decode_cursor(cursor, 1)
        try:
            after = uuid.UUID(raw)
        except ValueError as exc:
            raise InvalidInput("not a cursor returned by this API", field="cursor") from exc
    ids = await audience.members(session, segment, utcnow(), after=after, limit=limit + 1)
    page = ids[:limit]
    rows = {
        r.contact_id: r
        for r in await session.scalars(select(Recipient).where(Recipient.contact_id.in_(page)))
    }
    items = [
        Member(customer_id=i, first_name=rows[i].first_name, country=rows[i].country)
        for i in page
        if i in rows
    ]
    next_cursor = encode_cursor(page[-1]) if len(ids) > limit else None
    return items, next_cursor


# ---- campaigns ------------------------------------------------------------------------------


async def create_campaign(session: AsyncSession, data: CampaignCreate) -> Campaign:
    earlier = await made_before(
        session,
        Campaign,
        data.campaign_id,
        name="campaign",
        field="campaign_id",
        same=lambda campaign: (
            (campaign.name, campaign.segment_id, campaign.channel)
            == (data.name, data.segment_id, data.channel.value)
        ),
    )
    if earlier is not None:
        return earlier
    if await session.get(Segment, data.segment_id) is None:
        raise InvalidInput(f"segment {data.segment_id} not found", field="segment_id")
    now = utcnow()
    campaign = Campaign(
        **data.model_dump(exclude={"campaign_id"}),
        id=data.campaign_id or uuid.uuid4(),
        status=(CampaignStatus.scheduled if data.scheduled_at else CampaignStatus.draft).value,
        created_at=now,
    )
    campaign.channel = data.channel.value
    session.add(campaign)
    await session.flush()
    events.campaign_created(session, campaign)
    return campaign


async def get_campaign(
    session: AsyncSession, campaign_id: uuid.UUID, *, lock: bool = False
) -> Campaign:
    """``lock`` for a change: it then waits for a launch under way (which locks it too)."""
    return await get_or_404(session, Campaign, campaign_id, "campaign", lock=lock)


async def list_campaigns(
    session: AsyncSession, *, status: CampaignStatus | None, limit: int, cursor: str | None
) -> tuple[list[Campaign], str | None]:
    query = select(Campaign)
    if status is not None:
        query = query.where(Campaign.status == status.value)
    rows = await session.scalars(_newest_first(query, Campaign, cursor).limit(limit + 1))
    return cut_page(list(rows), limit, "created_at")


async def update_campaign(
    session: AsyncSession, campaign_id: uuid.UUID, data: CampaignUpdate
) -> Campaign:
    campaign = await get_campaign(session, campaign_id, lock=True)
    changes = data.model_dump(exclude_unset=True)
    for field in ("name", "budget"):
        if field in changes and changes[field] is None:
            raise InvalidInput(f"{field} cannot be null", field=field)
    if "scheduled_at" in changes:
        if campaign.status not in (CampaignStatus.draft, CampaignStatus.scheduled):
            raise InvalidTransition(
                f"a campaign that is {campaign.status} cannot be rescheduled",
                details={"campaign_status": campaign.status, "action": "schedule"},
            )
        campaign.status = (
            CampaignStatus.scheduled if changes["scheduled_at"] else CampaignStatus.draft
        ).value
    for field, value in changes.items():
        setattr(campaign, field, value)
    await session.flush()
    return campaign


async def sends_page(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Send], str | None]:
    """Every recipient's outcome (queued, sent, suppressed with reasons, failed with the error)."""
    await get_campaign(session, campaign_id)
    query = select(Send).where(Send.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Send.status == status)
    rows = await session.scalars(_newest_first(query, Send, cursor).limit(limit + 1))
    return cut_page(list(rows), limit, "created_at")


async def report(session: AsyncSession, campaign_id: uuid.UUID) -> Report:
    campaign = await get_campaign(session, campaign_id)
    by_status: dict[str, int] = dict(
        (
            await session.execute(
                select(Send.status, func.count())
                .where(Send.campaign_id == campaign_id)
                .group_by(Send.status)
            )
        ).all()
    )
    # Grouped by the list of reasons as stored (a campaign has a few distinct lists), not
    # read send by send: a report is polled, and a campaign may suppress thousands.
    stored = cast(Send.reasons, String)
    reasons: Counter[str] = Counter()
    for send_reasons, count in await session.execute(
        select(stored, func.count())
        .where(Send.campaign_id == campaign_id, Send.status == SendStatus.suppressed)
        .group_by(stored)
    ):
        for reason in json.loads(send_reasons):
            reasons[reason] += count
    engaged: dict[str, int] = dict(
        (
            await session.execute(
                select(Engagement.kind, func.count())
                .where(Engagement.campaign_id == campaign_id)
                .group_by(Engagement.kind)
            )
        ).all()
    )
    leads = await session.scalar(
        select(func.count()).select_from(Lead).where(Lead.campaign_id == campaign_id)
    )
    # Per currency: an amount in one currency added to another's means nothing. Summed here
    # from the distinct amounts, not by the database: SQLite would add the decimals as floats.
    revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
    converted_orders = 0
    for currency, amount, count in await session.execute(
        select(Order.currency, Order.amount, func.count())
        .where(Order.campaign_id == campaign_id, Order.status != "refunded")
        .group_by(Order.currency, Order.amount)
    ):
        revenue[currency] += Decimal(amount) * count
        converted_orders += count
    sent = by_status.get(SendStatus.sent, 0)
    spend = events.spend(campaign, sent)
    return Report(
        campaign_id=campaign.id,
        status=campaign.status,
        targeted=sum(by_status.values()),
        queued=by_status.get(SendStatus.queued, 0) + by_status.get(SendStatus.sending, 0),
        sent=sent,
        failed=by_status.get(SendStatus.failed, 0),
        suppressed=by_status.get(SendStatus.suppressed, 0),
        suppressed_by_reason=dict(reasons),
        delivered=engaged.get("delivered", 0),
        opened=engaged.get("opened", 0),
        clicked=engaged.get("clicked", 0),
        replied=engaged.get("replied", 0),
        unsubscribed=engaged.get("unsubscribed", 0),
        converted_leads=leads or 0,
        converted_orders=converted_orders,
        order_revenue_by_currency=dict(sorted(revenue.items())),
        budget=campaign.budget,
        spend=spend,
        budget_remaining=max(campaign.budget - spend, Decimal(0)),
    )


# ---- tasks ----------------------------------------------------------------------------------


async def create_task(
    session: AsyncSession, campaign_id: uuid.UUID, data: TaskCreate
) -> CampaignTask:
    await get_campaign(session, campaign_id)
    now = utcnow()
    task = CampaignTask(
        campaign_id=campaign_id,
        title=data.title,
        assignee=data.assignee,
        due_date=data.due_date,
        status=data.status.value,
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    await session.flush()
    return task


async def list_tasks(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    *,
    assignee: str | None = None,
    due_before: date | None = None,
) -> list[CampaignTask]:
    await get_campaign(session, campaign_id)
    query = select(CampaignTask).where(CampaignTask.campaign_id == campaign_id)
    if assignee is not None:
        query = query.where(CampaignTask.assignee == assignee)
    if due_before is not None:
        query = query.where(CampaignTask.due_date < due_before)
    query = query.order_by(CampaignTask.due_date.is_(None), CampaignTask.due_date, CampaignTask.id)
    return list(await session.scalars(query))


async def update_task(
    session: AsyncSession, campaign_id: uuid.UUID, task_id: uuid.UUID, data: TaskUpdate
) -> CampaignTask:
    task = await session.get(CampaignTask, task_id)
    if task is None or task.campaign_id != campaign_id:
        raise NotFound(f"task {task_id} not found in campaign {campaign_id}")
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is None and field != "due_date":
            raise InvalidInput(f"{field} cannot be null", field=field)
        setattr(task, field, value.value if hasattr(value, "value") else value)
    task.updated_at = utcnow()
    await session.flush()
    return task
