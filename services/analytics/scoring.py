"""Keeping each customer's scores current: handlers mark the customers whose facts changed, and
just before the consumer's transaction commits every marked customer is rescored once (a batch
of 500 events about 20 customers rescored 20 times, not 500). When the result differs from the
stored one, ``CustomerScored`` goes on crm.analytics.v1 through the outbox, in the same
transaction."""

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.analytics import events, rules
from services.analytics.models import CustomerScore, OrderFact, PublishedScore, TicketFact
from shared.contracts.analytics import CustomerScored
from shared.customer_view import CustomerProfile, ProfileStatus, TimelineEntry
from shared.db import UTCDateTime, chunked, customer_locks, on_postgres, padded
from shared.events import utcnow
from shared.outbox import add_rows_before_commit
from shared.values import DEFAULT_REPORTING_CURRENCY

_DIRTY = "analytics_rescore"
_CURRENCY = "analytics_reporting_currency"
_PUBLISH = "analytics_publish_scores"
CHUNK = 500  # customers rescored per round of queries


def session_info(reporting_currency: str, *, publish: bool = True) -> dict[str, Any]:
    """What the service's sessions carry for the scoring (the rescoring runs inside a commit,
    wherever the session came from: the API, a consumer, the rebuild). Without ``publish``
    changed scores are stored but not published: a rebuild's replay, whose scores are the
    live service's over again (``publish_changed`` then publishes those that differ)."""
    return {_CURRENCY: reporting_currency, _PUBLISH: publish}


def _currency(session: Session) -> str:
    return session.info.get(_CURRENCY, DEFAULT_REPORTING_CURRENCY)


def mark(session: AsyncSession | Session, customer_id: uuid.UUID | None) -> None:
    """Rescore this customer before the transaction commits."""
    if customer_id is not None:
        session.info.setdefault(_DIRTY, set()).add(customer_id)


async def forget(session: AsyncSession, customer_id: uuid.UUID) -> None:
    """The customer was merged away or erased: no scores of their own any more."""
    session.info.get(_DIRTY, set()).discard(customer_id)
    await session.execute(delete(CustomerScore).where(CustomerScore.customer_id == customer_id))


@sa_event.listens_for(Session, "before_commit")
def _rescore_marked(session: Session) -> None:
    dirty = session.info.pop(_DIRTY, None)
    if dirty:
        rescore(session, sorted(dirty), utcnow())


def rescore(session: Session, customer_ids: list[uuid.UUID], now: datetime) -> None:
    """Recompute these customers' scores (sync: it runs inside the commit), a few queries for
    all of them; publish those that changed."""
    for chunk in chunked(customer_ids, CHUNK):
        _rescore(session, chunk, now)


def _rescore(session: Session, customer_ids: list[uuid.UUID], now: datetime) -> None:
    if on_postgres(session):
        # Consumers of different topics rescore the same customer at once (a ticket and its
        # touch): the second waits, then reads the first's committed facts, so neither
        # inserts a duplicate score row nor stores a score missing the other's fact.
        session.execute(customer_locks(customer_ids))
    inputs = load_inputs_many(session, customer_ids, now)
    # Plain rows in and out (no ORM objects): a batch rescores hundreds of customers, and the
    # unit of work's bookkeeping per object cost more than the scoring itself.
    stored = {
        row.customer_id: row for row in session.execute(_STORED_SCORES, {"ids": padded(inputs)})
    }
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for customer_id, customer_inputs in inputs.items():
        values = values_of(rules.score(customer_inputs))
        row = stored.get(customer_id)
        if row is not None and all(getattr(row, k) == v for k, v in values.items()):
            continue  # unchanged: nothing to publish
        values |= {"customer_id": customer_id, "scored_at": now}
        (new if row is None else changed).append(values)
    if new:
        session.execute(insert(CustomerScore.__table__), new)
    if changed:
        # By primary key; no ORM objects of these rows to keep in step.
        session.execute(
            update(CustomerScore), changed, execution_options={"synchronize_session": False}
        )
    if session.info.get(_PUBLISH, True):
        add_rows_before_commit(session, [events.customer_scored_row(v) for v in new + changed])


def publish_changed(
    session: Session, after: uuid.UUID | None = None
) -> tuple[int, uuid.UUID | None]:
    """After a rebuild's replay, for the next ``CHUNK`` stored scores by customer id after
    ``after``: publish those that differ from the ones last published (``PublishedScore``, the
    rebuild's copy of crm.analytics.v1), not the others again. Returns how many went out and
    the last customer id of the chunk (None when no customers are left after it).
    A published score is compared with the rebuilt facts scored as of its own ``scored_at``:
    scored as of now, every score would differ by the days gone by since (recency, activity),
    which the live service publishes at the customer's next event, not at a rebuild. Where
    they agree, the stored row becomes the published one, as the live service keeps it; a
    customer with no score on the topic (before its retention, or never) gets theirs."""
    query = (
        select(CustomerScore.__table__, PublishedScore.score.label("published"))
        .outerjoin(PublishedScore, PublishedScore.customer_id == CustomerScore.customer_id)
        .order_by(CustomerScore.customer_id)
        .limit(CHUNK)
    )
    if after is not None:
        query = query.where(CustomerScore.customer_id > after)
    stored: dict[uuid.UUID, dict[str, Any]] = {}
    published: dict[uuid.UUID, CustomerScored] = {}
    for row in session.execute(query):
        stored[row.customer_id] = values = row._asdict()
        if (score := values.pop("published")) is not None:
            published[row.customer_id] = CustomerScored.model_validate(score)
    as_of: dict[datetime, list[uuid.UUID]] = defaultdict(list)
    for customer_id, score in published.items():
        as_of[score.scored_at].append(customer_id)
    kept: list[dict[str, Any]] = []
    for at, customer_ids in as_of.items():  # a live batch scored its customers at one time
        for customer_id, inputs in load_inputs_many(session, customer_ids, at).items():
            values = values_of(rules.score(inputs)) | {"customer_id": customer_id, "scored_at": at}
            if CustomerScored.model_validate(values) == published[customer_id]:
                kept.append(values)
    if kept:
        session.execute(
            update(CustomerScore), kept, execution_options={"synchronize_session": False}
        )
    same = {values["customer_id"] for values in kept}
    changed = [row for customer_id, row in stored.items() if customer_id not in same]
    add_rows_before_commit(session, [events.customer_scored_row(v) for v in changed])
    return len(changed), (next(reversed(stored)) if len(stored) == CHUNK else None)


def values_of(scores: rules.Scores) -> dict[str, Any]:
    return {
        "rfm_segment": scores.rfm_segment,
        "recency_days": scores.recency_days,
        "frequency": scores.frequency,
        "currency": scores.currency,
        "monetary": scores.monetary,
        # JSON: amounts as their decimal strings, as the event carries them
        "monetary_other_currencies": {
            currency: str(amount) for currency, amount in scores.monetary_other_currencies.items()
        },
        "clv": scores.clv,
        "churn_risk": scores.churn_risk,
        "churn_level": scores.churn_level,
        "factors": [{"name": f.name, "value": f.value, "weight": f.weight} for f in scores.factors],
    }


def load_inputs(session: Session, customer_id: uuid.UUID, now: datetime) -> rules.ScoreInputs:
    found = load_inputs_many(session, [customer_id], now)
    return found.get(customer_id) or rules.ScoreInputs(now=now, currency=_currency(session))


def load_inputs_many(
    session: Session, customer_ids: list[uuid.UUID], now: datetime
) -> dict[uuid.UUID, rules.ScoreInputs]:
    """The score inputs of these customers (merged-away or erased ones left out). A customer's
    records are those filed under their id and under the ids merged into them (a record written
    while its merge was being applied, in a concurrent transaction, can keep the merged id)."""
    owner = {customer_id: customer_id for customer_id in customer_ids}
    for contact_id, status, merged_into in session.execute(
        _PROFILES, {"ids": padded(customer_ids)}
    ):
        if contact_id in customer_ids and status != ProfileStatus.active:
            owner.pop(contact_id, None)  # merged away or erased: no scores of their own
        elif merged_into in owner and status == ProfileStatus.merged:
            owner[contact_id] = merged_into
    owners = set(owner.values())
    ids = {"ids": padded(owner)}
    orders: dict[uuid.UUID, list[rules.Order]] = defaultdict(list)
    for customer_id, at, amount, currency in session.execute(_ORDERS, ids):
        orders[owner[customer_id]].append(
            rules.Order(ordered_at=at, amount=Decimal(amount), currency=currency)
        )
    tickets: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])
    for customer_id, open_count, breached in session.execute(_OPEN_TICKETS, ids):
        tickets[owner[customer_id]][0] += open_count
        tickets[owner[customer_id]][1] += breached
    windows = {
        "now": now,
        "sentiment_since": now - rules.SENTIMENT_WINDOW,
        "recent_since": now - rules.ENGAGEMENT_WINDOW,
        "before_since": now - 4 * rules.ENGAGEMENT_WINDOW,
    }
    windows["oldest"] = min(windows.values())
    touches: dict[uuid.UUID, list[Any]] = defaultdict(lambda: [None, 0, 0, 0, 0])

    def add_last_inbound(customer_id: uuid.UUID, last: datetime | None) -> None:
        total = touches[owner[customer_id]]
        if last is not None and (total[0] is None or last > total[0]):
            total[0] = last

    for customer_id, last, sentiments, negative, recent, before in session.execute(
        _WINDOWED_TOUCHES, ids | windows
    ):
        add_last_inbound(customer_id, last)
        total = touches[owner[customer_id]]
        for n, value in enumerate((sentiments, negative, recent, before), start=1):
            total[n] += value
    # A customer's last inbound touch is older than every window only when none is inside.
    lapsed = [customer_id for customer_id in owner if touches[owner[customer_id]][0] is None]
    if lapsed:
        older = {"ids": padded(lapsed), "oldest": windows["oldest"]}
        for customer_id, last in session.execute(_LAST_INBOUND_BEFORE, older):
            add_last_inbound(customer_id, last)
    found = {}
    for customer_id in owners:
        last_inbound, sentiments, negative, recent, before = touches[customer_id]
        customer_orders = orders[customer_id]
        activity = [at for at in (last_inbound, *(o.ordered_at for o in customer_orders)) if at]
        found[customer_id] = rules.ScoreInputs(
            now=now,
            orders=customer_orders,
            currency=_currency(session),
            last_activity_at=max(activity) if activity else None,
            sentiments=sentiments,
            negative=negative,
            open_tickets=tickets[customer_id][0],
            breached_tickets=tickets[customer_id][1],
            inbound_recent=recent,
            inbound_before=before,
        )
    return found


# The scoring's queries, built once on the tables' columns (no ORM entities to set up): at a
# batch of one touch, building and executing them per call as ORM statements was two thirds
# of analytics' CPU per touch (docs/reliability.md, "6 Dec, sixth session").
_IDS = bindparam("ids", expanding=True)
_PROFILE = CustomerProfile.__table__.c
_PROFILES = select(_PROFILE.contact_id, _PROFILE.status, _PROFILE.merged_into).where(
    or_(_PROFILE.contact_id.in_(_IDS), _PROFILE.merged_into.in_(_IDS))
)
_ORDER = OrderFact.__table__.c
_ORDERS = select(_ORDER.customer_id, _ORDER.ordered_at, _ORDER.amount, _ORDER.currency).where(
    _ORDER.customer_id.in_(_IDS), _ORDER.status != "refunded"
)
_TICKET = TicketFact.__table__.c
_OPEN_TICKETS = (
    select(
        _TICKET.customer_id,
        func.count(),
        func.coalesce(func.sum(case((_TICKET.sla_breaches > 0, 1), else_=0)), 0),
    )
    .where(
        _TICKET.customer_id.in_(_IDS),
        _TICKET.resolved_at.is_(None),
        _TICKET.closed_at.is_(None),
        _TICKET.opened_at.is_not(None),
    )
    .group_by(_TICKET.customer_id)
)
_SCORE = CustomerScore.__table__
_STORED_SCORES = select(_SCORE).where(_SCORE.c.customer_id.in_(_IDS))
_ENTRY = TimelineEntry.__table__.c


def _since(name: str) -> Any:
    return _ENTRY.occurred_at >= bindparam(name, type_=UTCDateTime())


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


_INBOUND = _ENTRY.direction == "inbound"
_IN_WINDOW = _ENTRY.occurred_at <= bindparam("now", type_=UTCDateTime())
# Only the windows' touches are read (the index on customer and time): read whole, a
# customer's history was read again at each of their touches, slower as it grew.
_WINDOWED_TOUCHES = (
    select(
        _ENTRY.customer_id,
        func.max(case((_INBOUND, _ENTRY.occurred_at)), type_=UTCDateTime()),
        _count(and_(_IN_WINDOW, _ENTRY.sentiment.is_not(None), _since("sentiment_since"))),
        _count(and_(_IN_WINDOW, _ENTRY.sentiment == "negative", _since("sentiment_since"))),
        _count(and_(_IN_WINDOW, _INBOUND, _since("recent_since"))),
        _count(
            and_(
                _INBOUND,
                _since("before_since"),
                _ENTRY.occurred_at < bindparam("recent_since", type_=UTCDateTime()),
            )
        ),
    )
    .where(_ENTRY.customer_id.in_(_IDS), _since("oldest"))
    .group_by(_ENTRY.customer_id)
)
_LAST_INBOUND_BEFORE = (
    select(_ENTRY.customer_id, func.max(_ENTRY.occurred_at, type_=UTCDateTime()))
    .where(
        _ENTRY.customer_id.in_(_IDS),
        _INBOUND,
        _ENTRY.occurred_at < bindparam("oldest", type_=UTCDateTime()),
    )
    .group_by(_ENTRY.customer_id)
)


def record_ids(session: Session, customer_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids this customer's records may be filed under: their own and the merged ones'."""
    merged = session.scalars(
        select(CustomerProfile.contact_id).where(CustomerProfile.merged_into == customer_id)
    )
    return [customer_id, *merged]
