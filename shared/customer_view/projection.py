"""The customer view: reads (timeline, contact check) and the changes other services' events
make to it (applied by the consumers in consumers.py). Never commits: the caller's session does."""

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared import contact_rules, topics
from shared.contact_rules import Reason
from shared.customer_view.models import (
    ContactPolicyRow,
    CustomerProfile,
    ProfileStatus,
    TimelineEntry,
)
from shared.customer_view.schemas import InteractionCreate, TimelineItem
from shared.db import (
    add_row,
    get_row,
    in_dialect,
    in_lists,
    insert_new_only,
    lock_customers,
    lock_customers_on_the_way,
    padded,
)
from shared.errors import Conflict, InvalidInput
from shared.events import (
    INTERACTION_RECORDED,
    Channel,
    ContactPolicy,
    ContactPreferences,
    Department,
    InteractionRecorded,
    SourceRef,
    utcnow,
)
from shared.outbox import add_rows_once, event_row
from shared.pagination import cut_page, page_after

MAX_MERGE_CHAIN = 10
# Where ``filed_under_all`` found a transaction's customers filed (``session.info``).
_FILED_UNDER = "customer_view.filed_under"
# How a merged customer is followed to the survivor: ``survivor``, or ``filed_under``.
Follow = Callable[[AsyncSession, uuid.UUID], Awaitable[uuid.UUID | None]]
UnrecordedOutbound = Callable[[AsyncSession, uuid.UUID, datetime], Awaitable[int]]
# Statements every touch runs, written or applied, built once and on the tables' columns (the
# merged-or-erased lookup went from 340 to about 200 us of CPU per call on SQLite, a batch of
# one touch applied from 2.4 to 1.7 ms with the consumer's own: docs/reliability.md, "3 Dec").
_PROFILES = CustomerProfile.__table__.c
_IDS = bindparam("ids", expanding=True)
# Where one customer stands (every read of a customer's records asks first): 370 -> 225 us of
# CPU per call against loading the profile as an ORM object.
_STANDING = select(_PROFILES.status, _PROFILES.merged_into).where(
    _PROFILES.contact_id == bindparam("id")
)
# The statuses of some customers (those with no profile yet are active).
_STATUSES = select(_PROFILES.contact_id, _PROFILES.status).where(_PROFILES.contact_id.in_(_IDS))
# New touches, one INSERT for a batch: a touch already recorded (the same interaction id under
# another event id: a client's retry) is skipped, and the ids returned are the new ones.
_TIMELINE = TimelineEntry.__table__
_INSERT_NEW_TOUCHES = insert_new_only(
    _TIMELINE, conflict_on=[_TIMELINE.c.interaction_id], returning=_TIMELINE.c.interaction_id
)

# ---- reads ----------------------------------------------------------------------------------


def to_item(row: TimelineEntry) -> TimelineItem:
    return TimelineItem(
        interaction_id=row.interaction_id,
        customer_id=row.customer_id,
        department=row.department,
        channel=row.channel,
        direction=row.direction,
        kind=row.kind,
        subject=row.subject,
        occurred_at=row.occurred_at,
        actor=row.actor,
        sentiment=row.sentiment,
        outcome=row.outcome,
        ref=SourceRef(type=row.ref_type, id=row.ref_id) if row.ref_type and row.ref_id else None,
    )


async def survivor(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    lock_each: bool = False,
    locked: Collection[uuid.UUID] = (),
) -> uuid.UUID | None:
    """Where this customer's records live now; None if the customer was erased. With
    ``lock_each``, each customer on the way is locked before its profile is read (but those
    of ``locked``, which the transaction holds already)."""
    for _ in range(MAX_MERGE_CHAIN):
        if lock_each and customer_id not in locked:
            await lock_customers(session, [customer_id])
        profile = (await session.execute(_STANDING, {"id": customer_id})).first()
        if profile is None or profile.status == ProfileStatus.active:
            return customer_id
        if profile.status == ProfileStatus.erased or profile.merged_into is None:
            return None
        customer_id = profile.merged_into
    return customer_id


async def filed_under(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID | None:
    """``survivor``, under the customer's lock: where to file a record about the customer (an
    API's write, or an event of another topic than contacts', in no set order with the
    customer's merge or erasure). A merge or erasure applied at the same time either commits
    first (and the record follows it) or waits for the record (and moves or deletes it).
    Each customer on the way to the survivor is locked before its profile is read: a merge
    of the survivor itself (which locks only the merged id) is one of those.
    Answered from memory for the customers ``filed_under_all`` looked up."""
    remembered = session.info.get(_FILED_UNDER)
    if remembered is not None and customer_id in remembered:
        return remembered[customer_id]  # type: ignore[no-any-return]
    locked = await lock_the_way(session, [customer_id])
    return await survivor(session, customer_id, lock_each=True, locked=locked)


async def filed_under_all(
    session: AsyncSession, customer_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """``filed_under`` for many customers at once (their locks in one statement, their
    profiles in one query where nobody moved), remembered for the transaction: a consumer's
    batch of events of another topic than contacts' then files each one without a query.
    The locks are held until the transaction ends, so the answers stay true while it does;
    only a merge or an erasure applied in the same transaction changes them, and those
    forget what was remembered (``contact_merged``, ``contact_erased``)."""
    wanted = set(customer_ids)
    if not wanted:
        return {}
    locked = await lock_the_way(session, wanted)

    async def follow(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID | None:
        return await survivor(session, customer_id, lock_each=True, locked=locked)

    found = await survivors(session, list(wanted), follow)
    session.info.setdefault(_FILED_UNDER, {}).update(found)
    return found


async def lock_the_way(session: AsyncSession, customer_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Lock these customers and those their merges lead to, at once in the locks' one order
    (``lock_customers_on_the_way``); the ids locked."""
    return await lock_customers_on_the_way(session, customer_ids, _the_ways, rounds=MAX_MERGE_CHAIN)


async def _the_ways(session: AsyncSession, customer_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """These customers and every customer their merges lead to, as the profiles say now."""
    ways = set(customer_ids)
    for ids in in_lists(customer_ids):
        statuses = await session.execute(_STATUSES, {"ids": ids})
        for customer_id, status in statuses:
            if status == ProfileStatus.merged:  # rare: follow it to the survivor
                ways |= await _the_way(session, customer_id)
    return ways


async def _the_way(session: AsyncSession, customer_id: uuid.UUID) -> set[uuid.UUID]:
    """Every customer from this one to its survivor, as the profiles say now."""
    way = {customer_id}
    for _ in range(MAX_MERGE_CHAIN):
        profile = (await session.execute(_STANDING, {"id": customer_id})).first()
        if profile is None or profile.merged_into is None:
            break
        customer_id = profile.merged_into
        way.add(customer_id)
    return way


async def survivors(
    session: AsyncSession,
    customer_ids: Sequence[uuid.UUID],
    follow: Follow | None = None,
) -> dict[uuid.UUID, uuid.UUID | None]:
    """``survivor`` for many customers, one query where nobody moved; those who did are
    followed by ``follow`` (``survivor``, or ``filed_under`` to lock the way)."""
    follow = follow or survivor
    wanted = list(set(customer_ids))
    moved: set[uuid.UUID] = set()
    for ids in in_lists(wanted):
        statuses = await session.execute(_STATUSES, {"ids": ids})
        moved.update(c for c, status in statuses if status != ProfileStatus.active)
    found: dict[uuid.UUID, uuid.UUID | None] = {c: c for c in wanted if c not in moved}
    for customer_id in moved:
        found[customer_id] = await follow(session, customer_id)
    return found


async def current_customer(
    session: AsyncSession, customer_id: uuid.UUID, field: str = "customer_id"
) -> uuid.UUID:
    """The id to file a new record under: the survivor of a merge; an erased customer is a 409.
    Under the customer's lock (``filed_under``), so a merge applied meanwhile moves the record."""
    current = await filed_under(session, customer_id)
    if current is None:
        raise Conflict(f"customer {customer_id} was erased", field=field)
    return current


def item_fields(count: int, field: str) -> list[str]:
    """How errors name a field: ``customer_id`` for one item, ``items.3.customer_id`` in a batch."""
    return [field] if count == 1 else [f"items.{index}.{field}" for index in range(count)]


async def current_customers(
    session: AsyncSession, customer_ids: Sequence[uuid.UUID], fields: Sequence[str]
) -> dict[uuid.UUID, uuid.UUID]:
    """``current_customer`` for a batch in one query where nobody moved: each id maps to where
    its records live now; an erased one is a 409 naming its item's field."""
    locked = await lock_the_way(session, customer_ids)

    async def follow(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID | None:
        return await survivor(session, customer_id, lock_each=True, locked=locked)

    return await _survivors_or_409(session, customer_ids, fields, follow)


async def _survivors_or_409(
    session: AsyncSession,
    customer_ids: Sequence[uuid.UUID],
    fields: Sequence[str],
    follow: Follow | None = None,
) -> dict[uuid.UUID, uuid.UUID]:
    """``current_customers`` without the lock (and ``survivors``' ``follow``)."""
    current = await survivors(session, customer_ids, follow)
    for customer_id, field in zip(customer_ids, fields, strict=True):
        if current[customer_id] is None:
            raise Conflict(f"customer {customer_id} was erased", field=field)
    return current  # type: ignore[return-value]  # no None left


@dataclass(frozen=True)
class TimelineFilters:
    """Which of a customer's touches a timeline shows: of a department, a channel, a kind,
    occurred in [since, until). Built once where a request arrives and passed down whole, so
    the shared timeline and analytics' customer 360 filter alike."""

    department: Department | None = None
    channel: Channel | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        # A window whose ends are reversed is a mistake, not an empty page.
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidInput(f"must not be after until ({self.until.isoformat()})", field="since")

    def page(self, query: Select[Any], cursor: str | None) -> Select[Any]:
        """``query`` (timeline entries, newest first) narrowed to these filters and started
        after the cursor."""
        if self.department is not None:
            query = query.where(TimelineEntry.department == self.department.value)
        if self.channel is not None:
            query = query.where(TimelineEntry.channel == self.channel.value)
        if self.kind is not None:
            query = query.where(TimelineEntry.kind == self.kind)
        if self.since is not None:
            query = query.where(TimelineEntry.occurred_at >= self.since)
        if self.until is not None:
            query = query.where(TimelineEntry.occurred_at < self.until)
        return page_after(query, TimelineEntry.occurred_at, TimelineEntry.interaction_id, cursor)


async def timeline(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    filters: TimelineFilters = TimelineFilters(),
) -> tuple[list[TimelineItem], str | None]:
    """Every department's touches of this customer, newest first."""
    current = await survivor(session, customer_id)
    if current is None:
        return [], None
    query = (
        select(TimelineEntry)
        .where(TimelineEntry.customer_id == current)
        .order_by(TimelineEntry.occurred_at.desc(), TimelineEntry.interaction_id.desc())
        .limit(limit + 1)
    )
    query = filters.page(query, cursor)
    rows, next_cursor = cut_page(
        list(await session.scalars(query)), limit, "occurred_at", "interaction_id"
    )
    return [to_item(r) for r in rows], next_cursor


async def policy(session: AsyncSession) -> ContactPolicy:
    row = await session.get(ContactPolicyRow, 1)
    return ContactPolicy.model_validate(row.policy) if row else ContactPolicy()


async def preferences(session: AsyncSession, customer_id: uuid.UUID) -> ContactPreferences | None:
    profile = await session.get(CustomerProfile, customer_id)
    return ContactPreferences.model_validate(profile.preferences) if profile else None


async def outbound_touches(
    session: AsyncSession, customer_id: uuid.UUID, *, since: datetime, until: datetime
) -> int:
    """Outbound touches of every department in (since, until]."""
    count = await session.scalar(
        select(func.count()).where(
            TimelineEntry.customer_id == customer_id,
            TimelineEntry.direction == "outbound",
            TimelineEntry.occurred_at > since,
            TimelineEntry.occurred_at <= until,
        )
    )
    return count or 0


async def contact_check(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    channel: Channel,
    department: Department,
    now: datetime | None = None,
    open_ticket_priorities: Sequence[str] = (),
    unrecorded_outbound: UnrecordedOutbound | None = None,
) -> list[Reason]:
    """Why an outbound touch now is not allowed (empty: it is allowed).
    ``unrecorded_outbound``: the service's own outbound touches the timeline has not seen yet
    (marketing's queued sends), counted toward the weekly limit too."""
    now = now or utcnow()
    current = await survivor(session, customer_id)
    if current is None:
        return [Reason.customer_erased]
    since = now - contact_rules.CONTACT_WINDOW
    outbound = await outbound_touches(session, current, since=since, until=now)
    if unrecorded_outbound is not None:
        outbound += await unrecorded_outbound(session, current, since)
    return contact_rules.contact_check(
        channel=channel,
        department=department,
        now=now,
        preferences=await preferences(session, current),
        policy=await policy(session),
        outbound_last_7_days=outbound,
        open_ticket_priorities=open_ticket_priorities,
    )


# ---- a department's own touches -------------------------------------------------------------


async def record_interactions(
    session: AsyncSession,
    items: Sequence[InteractionCreate],
    *,
    department: Department,
    source: str,
) -> list[uuid.UUID]:
    """Publish touches on crm.interactions.v1 (through the outbox, in one INSERT). A touch
    whose interaction_id was sent before is not published again: the client's retry."""
    now = utcnow()
    rows = []
    ids = []
    # No customer lock: nothing is filed here, and every consumer files the touch under its own.
    current = await _survivors_or_409(
        session, [item.customer_id for item in items], item_fields(len(items), "customer_id")
    )
    for item in items:
        customer_id = current[item.customer_id]
        touch = InteractionRecorded(
            interaction_id=item.interaction_id or uuid.uuid4(),
            customer_id=customer_id,
            department=department,
            channel=item.channel,
            direction=item.direction,
            kind=item.kind,
            subject=item.subject,
            occurred_at=item.occurred_at or now,
            actor=item.actor,
            sentiment=item.sentiment,
            outcome=item.outcome,
            ref=item.ref,
        )
        key = str(customer_id)
        rows.append(
            event_row(
                topic=topics.INTERACTIONS,
                key=key,
                event_type=INTERACTION_RECORDED,
                source=source,
                subject=key,
                data=touch,
                # One touch, one event, however often a client sends it (shared.outbox).
                event_id=touch.interaction_id,
            )
        )
        ids.append(touch.interaction_id)
    await add_rows_once(session, rows)
    return ids


# ---- projections (applied by consumers) -----------------------------------------------------


class TouchOutcome(StrEnum):
    recorded = "recorded"
    duplicate = "duplicate"  # seen before (a replay): nothing changed
    erased = "erased"  # the customer was erased: nothing kept


async def record_touch(session: AsyncSession, touch: InteractionRecorded) -> TouchOutcome:
    customer_id = await filed_under(session, touch.customer_id)
    if customer_id is None:
        return TouchOutcome.erased  # keep nothing about this person
    if await session.get(TimelineEntry, touch.interaction_id) is not None:
        return TouchOutcome.duplicate  # natural upsert
    session.add(TimelineEntry(**_timeline_row(touch, customer_id)))
    return TouchOutcome.recorded


async def record_touches(
    session: AsyncSession, touches: Sequence[InteractionRecorded]
) -> list[TouchOutcome]:
    """``record_touch`` for a batch in a few set-based statements: the customers locked in one
    order (PostgreSQL), their profiles read at once, the new touches inserted at once."""
    customer_ids = list({t.customer_id for t in touches})
    locked = await lock_the_way(session, customer_ids)
    statuses = dict((await session.execute(_STATUSES, {"ids": padded(customer_ids)})).all())
    outcomes: list[TouchOutcome | None] = []  # None: recorded unless already there
    rows: dict[uuid.UUID, dict[str, object]] = {}
    for touch in touches:
        status = statuses.get(touch.customer_id)
        if status is None or status == ProfileStatus.active:
            customer_id: uuid.UUID | None = touch.customer_id
        else:  # merged or erased: rare, follow the chain, each one on it locked
            customer_id = await survivor(session, touch.customer_id, lock_each=True, locked=locked)
        if customer_id is None:
            outcomes.append(TouchOutcome.erased)
        elif touch.interaction_id in rows:
            outcomes.append(TouchOutcome.duplicate)  # twice in this batch
        else:
            rows[touch.interaction_id] = _timeline_row(touch, customer_id)
            outcomes.append(None)
    new: set[uuid.UUID] = set()
    if rows:
        statement = in_dialect(session, _INSERT_NEW_TOUCHES)
        # Padded like an IN list (a text per row count otherwise); a row repeated is skipped.
        new = set(await session.scalars(statement, padded(rows.values())))
    decided: list[TouchOutcome] = []
    for touch, outcome in zip(touches, outcomes, strict=True):
        if outcome is None:  # not inserted: recorded before, under another event id (a retry)
            outcome = (
                TouchOutcome.recorded if touch.interaction_id in new else TouchOutcome.duplicate
            )
        decided.append(outcome)
    return decided


def _timeline_row(touch: InteractionRecorded, customer_id: uuid.UUID) -> dict[str, object]:
    return {
        "interaction_id": touch.interaction_id,
        "customer_id": customer_id,
        "department": touch.department.value,
        "channel": touch.channel.value,
        "direction": touch.direction.value,
        "kind": touch.kind,
        "subject": touch.subject,
        "occurred_at": touch.occurred_at,
        "actor": touch.actor,
        "sentiment": touch.sentiment.value if touch.sentiment else None,
        "outcome": touch.outcome,
        "ref_type": touch.ref.type if touch.ref else None,
        "ref_id": touch.ref.id if touch.ref else None,
    }


async def _profile(session: AsyncSession, contact_id: uuid.UUID) -> CustomerProfile:
    profile = await get_row(session, CustomerProfile, contact_id)
    if profile is None:
        profile = CustomerProfile(
            contact_id=contact_id, status=ProfileStatus.active.value, preferences={}
        )
        add_row(session, profile)
    profile.updated_at = utcnow()
    return profile


async def contact_changed(
    session: AsyncSession,
    contact_id: uuid.UUID,
    new_preferences: ContactPreferences,
    *,
    locked: bool = False,
) -> bool:
    """Keep the contact's preferences; False if the contact is merged or erased (final).
    Under the customer's lock (taken unless ``locked``: the batch's were, at once), which the
    service's own hook (``on_contact``) then holds too: an API write about the customer
    (sales handing its account over) takes it as well."""
    if not locked:
        await lock_customers(session, [contact_id])
    profile = await _profile(session, contact_id)
    if profile.status != ProfileStatus.active:
        return False
    profile.preferences = new_preferences.model_dump(mode="json")
    return True


async def contact_merged(
    session: AsyncSession, merged_id: uuid.UUID, survivor_id: uuid.UUID
) -> uuid.UUID | None:
    """Re-point the merged contact's touches to where the survivor's records live now; that
    id, or None if the merged contact's records are to be erased instead: it was erased
    already (a redelivered merge), or the survivor was. The merge of the survivor itself, or
    its erasure, travels under another key (another partition) and may have been applied
    first: the touches would be left under a merged-away id, or kept for an erased person."""
    session.info.pop(_FILED_UNDER, None)
    locked = await lock_the_way(session, [merged_id, survivor_id])
    profile = await _profile(session, merged_id)
    if profile.status == ProfileStatus.erased:
        return None
    current = await survivor(session, survivor_id, lock_each=True, locked=locked)
    if current is None:
        await contact_erased(session, merged_id)
        return None
    profile.status = ProfileStatus.merged.value
    profile.merged_into = current
    profile.preferences = {}
    await session.execute(
        update(CustomerProfile)
        .where(CustomerProfile.merged_into == merged_id)
        .values(merged_into=current)
    )
    await session.execute(
        update(TimelineEntry)
        .where(TimelineEntry.customer_id == merged_id)
        .values(customer_id=current)
    )
    return current


async def contact_erased(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """GDPR: the person's touches go; the profile stays as an 'erased' marker without data."""
    session.info.pop(_FILED_UNDER, None)
    await lock_customers(session, [contact_id])
    profile = await _profile(session, contact_id)
    profile.status = ProfileStatus.erased.value
    profile.preferences = {}
    profile.merged_into = None
    await session.execute(delete(TimelineEntry).where(TimelineEntry.customer_id == contact_id))


async def policy_updated(session: AsyncSession, new_policy: ContactPolicy) -> None:
    row = await session.get(ContactPolicyRow, 1)
    if row is None:
        row = ContactPolicyRow(id=1)
        session.add(row)
    row.policy = new_policy.model_dump(mode="json")
    row.updated_at = utcnow()
