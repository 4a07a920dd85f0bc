"""Reads of one customer (the 360, the scores) and of the RFM segments. No commits here."""

import uuid
from collections import defaultdict
from datetime import datetime

from sqlalchemy import bindparam, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import rules, scoring
from services.analytics.models import (
    CustomerScore,
    OpportunityFact,
    OrderFact,
    Profile,
    TicketFact,
)
from services.analytics.schemas import (
    Customer360,
    CustomerScores,
    OpenOpportunity,
    OpenTicket,
    OrderRead,
    ProfileRead,
    SegmentCount,
    Touches,
)
from shared import customer_view
from shared.customer_view import TimelineEntry, TimelineFilters, TimelineItem
from shared.customer_view.projection import to_item
from shared.errors import InvalidInput, NotFound
from shared.events import utcnow
from shared.pagination import cut_page, decode_cursor, encode_cursor

MAX_ORDERS = 100

# The 360's queries, built once: only the customer's record ids (a parameter) differ between
# requests.
_IDS = bindparam("ids", expanding=True)
_NEWEST_FIRST = (TimelineEntry.occurred_at.desc(), TimelineEntry.interaction_id.desc())
_TOUCHES = select(TimelineEntry).where(TimelineEntry.customer_id.in_(_IDS)).order_by(*_NEWEST_FIRST)
_TOUCH_COUNTS = (
    select(TimelineEntry.channel, TimelineEntry.department, func.count())
    .where(TimelineEntry.customer_id.in_(_IDS))
    .group_by(TimelineEntry.channel, TimelineEntry.department)
)
# The newest inbound and the newest outbound touch, in one query.
_LAST_TOUCHES = select(TimelineEntry).from_statement(
    union_all(
        *(
            select(TimelineEntry)
            .where(TimelineEntry.customer_id.in_(_IDS), TimelineEntry.direction == direction)
            .order_by(*_NEWEST_FIRST)
            .limit(1)
            .subquery()
            .select()
            for direction in ("inbound", "outbound")
        )
    )
)
_OPEN_TICKETS = (
    select(TicketFact)
    .where(
        TicketFact.customer_id.in_(_IDS),
        TicketFact.resolved_at.is_(None),
        TicketFact.closed_at.is_(None),
        TicketFact.opened_at.is_not(None),
    )
    .order_by(TicketFact.opened_at.desc())
)
_OPEN_OPPORTUNITIES = (
    select(OpportunityFact)
    .where(OpportunityFact.customer_id.in_(_IDS), OpportunityFact.closed_at.is_(None))
    .order_by(OpportunityFact.opened_at.desc())
)
_ORDERS = (
    select(OrderFact)
    .where(OrderFact.customer_id.in_(_IDS))
    .order_by(OrderFact.ordered_at.desc())
    .limit(MAX_ORDERS)
)


async def current(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID:
    """The survivor of merges; an erased customer is gone (404)."""
    found = await customer_view.survivor(session, customer_id)
    if found is None:
        raise NotFound(f"customer {customer_id} was erased", field="customer_id")
    return found


async def scores(
    session: AsyncSession, customer_id: uuid.UUID, now: datetime | None = None
) -> CustomerScores:
    """The scores as of now, with the factors behind the churn risk."""
    return await _scores_of(session, await current(session, customer_id), now or utcnow())


async def _scores_of(session: AsyncSession, customer: uuid.UUID, at: datetime) -> CustomerScores:
    """The scores of a customer already resolved to the survivor."""
    inputs = await session.run_sync(lambda sync: scoring.load_inputs(sync, customer, at))
    result = rules.score(inputs)
    return CustomerScores(
        customer_id=customer,
        scored_at=at,
        **scoring.values_of(result),
    )


async def customer_360(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    filters: TimelineFilters = TimelineFilters(),
) -> Customer360:
    customer = await current(session, customer_id)
    ids = await session.run_sync(lambda sync: scoring.record_ids(sync, customer))
    touches, next_cursor = await _touches(session, ids, limit=limit, cursor=cursor, filters=filters)
    params = {"ids": ids}
    profile = await session.get(Profile, customer)
    last = {
        row.direction: _item(row, customer) for row in await session.scalars(_LAST_TOUCHES, params)
    }
    per_channel: dict[str, int] = defaultdict(int)
    per_department: dict[str, int] = defaultdict(int)
    for channel_, department_, count in await session.execute(_TOUCH_COUNTS, params):
        per_channel[channel_] += count
        per_department[department_] += count
    return Customer360(
        customer_id=customer,
        profile=ProfileRead.model_validate(profile) if profile else None,
        touches=Touches(items=touches, next_cursor=next_cursor),
        touches_per_channel=dict(sorted(per_channel.items())),
        touches_per_department=dict(sorted(per_department.items())),
        last_inbound=last.get("inbound"),
        last_outbound=last.get("outbound"),
        open_tickets=[
            OpenTicket.model_validate(t) for t in await session.scalars(_OPEN_TICKETS, params)
        ],
        open_opportunities=[
            OpenOpportunity.model_validate(o)
            for o in await session.scalars(_OPEN_OPPORTUNITIES, params)
        ],
        orders=[OrderRead.model_validate(o) for o in await session.scalars(_ORDERS, params)],
        scores=await _scores_of(session, customer, utcnow()),
    )


async def _touches(
    session: AsyncSession,
    ids: list[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
    filters: TimelineFilters,
) -> tuple[list[TimelineItem], str | None]:
    """The customer's touches, newest first (the shared timeline's order and cursor)."""
    query = filters.page(_TOUCHES.limit(limit + 1), cursor)
    rows, next_cursor = cut_page(
        list(await session.scalars(query, {"ids": ids})), limit, "occurred_at", "interaction_id"
    )
    return [_item(r, ids[0]) for r in rows], next_cursor


def _item(row: TimelineEntry, customer: uuid.UUID) -> TimelineItem:
    return to_item(row).model_copy(update={"customer_id": customer})


async def segment_counts(session: AsyncSession) -> list[SegmentCount]:
    counts = dict(
        (
            await session.execute(
                select(CustomerScore.rfm_segment, func.count())
                .where(CustomerScore.rfm_segment.is_not(None))
                .group_by(CustomerScore.rfm_segment)
            )
        ).all()
    )
    return [SegmentCount(segment=s, customers=counts.get(s, 0)) for s in rules.SEGMENTS]


async def segment_members(
    session: AsyncSession, segment: str, *, limit: int, cursor: str | None
) -> tuple[list[CustomerScore], str | None]:
    query = (
        select(CustomerScore)
        .where(CustomerScore.rfm_segment == segment)
        .order_by(CustomerScore.customer_id)
        .limit(limit + 1)
    )
    if cursor is not None:
        (after,) = decode_cursor(cursor, 1)
        try:
            query = query.where(CustomerScore.customer_id > uuid.UUID(after))
        except ValueError as exc:
            raise InvalidInput("not a cursor returned by this API", field="cursor") from exc
    rows = list(await session.scalars(query))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].customer_id)
    return rows, next_cursor
