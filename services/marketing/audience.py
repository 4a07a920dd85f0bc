"""Who is in a segment: the facts marketing knows per customer, gathered in a few set-based
queries (only the columns the rule reads), and the segment rules (rules.py) applied to them,
``FACTS_CHUNK`` customers at a time. Never commits.

At 100,000 customers the cost is in turning rows into Python values, so ids stay strings
(``CAST(id AS VARCHAR)``: the same form for every table of one database) until the matches are
known, and rows are read through Core, not ORM entities."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, String, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing import rules
from services.marketing.models import Order, Recipient, Score, Segment, SegmentMember
from shared.contact_rules import CONTACT_WINDOW
from shared.customer_view import TimelineEntry
from shared.values import DEFAULT_REPORTING_CURRENCY

Facts = dict[str, dict[str, Any]]

_TEXT_COLUMNS = {
    "first_name": Recipient.first_name,
    "last_name": Recipient.last_name,
    "country": Recipient.country,
}
_PREFERENCE_FIELDS = {"opted_out_channels", "preferred_channel"}
_ORDER_FIELDS = {"last_purchase_at", "orders_count", "total_spent"}
_SCORE_COLUMNS = {
    "churn_level": Score.churn_level,
    "churn_risk": Score.churn_risk,
    "rfm_segment": Score.rfm_segment,
    "clv": Score.clv,
}
_TOUCH_FIELDS = {"last_touch_at", "last_email_open_at", "last_link_click_at", "outbound_touches_7d"}

# Customers whose facts are read and judged at once (in id order, the other tables' rows
# read for the same range of ids): an evaluation holds one chunk's facts, not every
# customer's. Read whole, every campaign's segment took memory in proportion to all the
# customers marketing knows (docs/reliability.md, "6 Dec, third session").
FACTS_CHUNK = 5000

_CURRENCY = "marketing_reporting_currency"


def session_info(reporting_currency: str) -> dict[str, Any]:
    """What the service's sessions carry for the facts: the currency of ``total_spent``."""
    return {_CURRENCY: reporting_currency}


def _key(column: Any) -> Any:
    return cast(column, String).label("key")


async def facts(
    session: AsyncSession, needed: set[str], now: datetime, *, after: uuid.UUID | None = None
) -> Facts:
    """The next ``FACTS_CHUNK`` recipients (by id as a string) in id order from ``after``,
    with the facts named in ``needed``."""
    connection = await session.connection()
    columns = [_key(Recipient.contact_id)]
    names = [name for name in _TEXT_COLUMNS if name in needed]
    columns += [_TEXT_COLUMNS[name] for name in names]
    if "has_email" in needed:
        names.append("has_email")
        columns.append(Recipient.email.is_not(None))
    if "has_phone" in needed:
        names.append("has_phone")
        columns.append(Recipient.phone.is_not(None))
    with_preferences = bool(needed & _PREFERENCE_FIELDS)
    if with_preferences:
        columns.append(Recipient.preferences)
    chunk = select(*columns).order_by(Recipient.contact_id).limit(FACTS_CHUNK)
    if after is not None:
        chunk = chunk.where(Recipient.contact_id > after)
    result: Facts = {}
    for row in await connection.execute(chunk):
        known = dict(zip(names, row[1 : len(names) + 1], strict=True))
        if with_preferences:
            prefs = row[-1] or {}
            known["opted_out_channels"] = prefs.get("opted_out_channels") or []
            known["preferred_channel"] = prefs.get("preferred_channel")
        result[row[0]] = known
    if not result:
        return result
    ids = (uuid.UUID(next(iter(result))), uuid.UUID(next(reversed(result))))  # first, last
    if needed & _ORDER_FIELDS:
        currency = session.info.get(_CURRENCY, DEFAULT_REPORTING_CURRENCY)
        await _add_orders(connection, result, ids, currency)
    if needed.intersection(_SCORE_COLUMNS):
        await _add_scores(connection, result, ids, [n for n in _SCORE_COLUMNS if n in needed])
    if needed & _TOUCH_FIELDS:
        await _add_touches(connection, result, ids, now)
    return result


async def _add_orders(
    connection: Any, result: Facts, ids: tuple[uuid.UUID, uuid.UUID], currency: str
) -> None:
    """The orders not refunded: the last, how many, and the amounts in ``currency`` added
    up (an amount in another currency added to them means nothing)."""
    query = (
        select(
            _key(Order.customer_id),
            func.max(Order.ordered_at),
            func.count(),
            func.sum(case((Order.currency == currency, Order.amount), else_=0)),
        )
        .where(Order.status != "refunded", Order.customer_id.between(*ids))
        .group_by(Order.customer_id)
    )
    for key, last, count, total in await connection.execute(query):
        if (known := result.get(key)) is not None:
            known.update(last_purchase_at=_aware(last), orders_count=count, total_spent=total)
    for known in result.values():
        known.setdefault("orders_count", 0)
        known.setdefault("total_spent", 0)


async def _add_scores(
    connection: Any, result: Facts, ids: tuple[uuid.UUID, uuid.UUID], names: list[str]
) -> None:
    query = select(_key(Score.customer_id), *(_SCORE_COLUMNS[n] for n in names)).where(
        Score.customer_id.between(*ids)
    )
    for row in await connection.execute(query):
        if (known := result.get(row[0])) is not None:
            known.update(zip(names, row[1:], strict=True))


async def _add_touches(
    connection: Any, result: Facts, ids: tuple[uuid.UUID, uuid.UUID], now: datetime
) -> None:
    entry = TimelineEntry
    recent_outbound = (entry.direction == "outbound") & (entry.occurred_at > now - CONTACT_WINDOW)
    query = select(
        _key(entry.customer_id),
        func.max(entry.occurred_at),
        func.max(case((entry.kind == "email_open", entry.occurred_at))),
        func.max(case((entry.kind == "link_click", entry.occurred_at))),
        func.sum(case((recent_outbound, 1), else_=0)),
    )
    query = query.where(entry.customer_id.between(*ids)).group_by(entry.customer_id)
    for key, last, opened, clicked, outbound in await connection.execute(query):
        if (known := result.get(key)) is not None:
            known.update(
                last_touch_at=_aware(last),
                last_email_open_at=_aware(opened),
                last_link_click_at=_aware(clicked),
                outbound_touches_7d=outbound or 0,
            )
    for known in result.values():
        known.setdefault("outbound_touches_7d", 0)


def _aware(value: Any) -> datetime | None:
    """Aggregates come back as the column's storage type (naive or a string on SQLite)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def matching(
    session: AsyncSession,
    rule: rules.Rule,
    now: datetime,
    *,
    after: uuid.UUID | None = None,
    limit: int | None = None,
) -> list[uuid.UUID]:
    """The customers ``rule`` picks, in id order (the chunks'), a chunk judged at a time:
    those after ``after``, and no more than ``limit`` (no chunk is read past them: a page of
    members judges the customers up to its last one, not all)."""
    needed = rules.fields_used(rule)
    picked: list[uuid.UUID] = []
    while known := await facts(session, needed, now, after=after):
        picked += [uuid.UUID(key) for key, fact in known.items() if rules.evaluate(rule, fact, now)]
        if len(known) < FACTS_CHUNK or (limit is not None and len(picked) >= limit):
            break
        after = uuid.UUID(next(reversed(known)))
    return picked[:limit]


def _static_members(segment: Segment) -> Select[tuple[uuid.UUID]]:
    """A static segment's frozen members still known (merges and erasures applied)."""
    return (
        select(SegmentMember.customer_id)
        .join(Recipient, Recipient.contact_id == SegmentMember.customer_id)
        .where(SegmentMember.segment_id == segment.id)
    )


async def member_count(session: AsyncSession, segment: Segment, now: datetime) -> int:
    """How many members the segment has now: counted by the database for a static one, the
    rules evaluated now for a dynamic one."""
    if segment.kind == "static":
        frozen = _static_members(segment).subquery()
        return await session.scalar(select(func.count()).select_from(frozen)) or 0
    return len(await matching(session, rules.parse_rule(segment.rules), now))


async def members(
    session: AsyncSession,
    segment: Segment,
    now: datetime,
    *,
    after: uuid.UUID | None = None,
    limit: int | None = None,
) -> list[uuid.UUID]:
    """The segment's members now, in id order, those after ``after`` and at most ``limit``:
    the frozen list of a static segment (merges and erasures applied), the rules evaluated now
    for a dynamic one."""
    if segment.kind == "static":
        query = _static_members(segment).order_by(SegmentMember.customer_id).limit(limit)
        if after is not None:
            query = query.where(SegmentMember.customer_id > after)
        return list(await session.scalars(query))
    return await matching(session, rules.parse_rule(segment.rules), now, after=after, limit=limit)
