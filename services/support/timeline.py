"""The shared customer timeline and the contacts projection: reads, contact checks, and the
changes other services' events make (applied by consumers.py). Never commits."""

import uuid
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import events, rules
from services.support.models import (
    ContactPolicyRow,
    CustomerIdentity,
    CustomerProfile,
    ProfileStatus,
    Ticket,
    TicketMessage,
    TimelineEntry,
)
from services.support.schemas import InteractionCreate, TimelineItem
from services.support.service import current_customer
from shared import topics
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
from shared.outbox import add_rows, event_row
from shared.pagination import decode_cursor, encode_cursor

ERASED = "[erased]"


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


async def survivor(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID | None:
    """Where this customer's records live now; None if the customer was erased."""
    for _ in range(10):
        profile = await session.get(CustomerProfile, customer_id)
        if profile is None or profile.status == ProfileStatus.active:
            return customer_id
        if profile.status == ProfileStatus.erased or profile.merged_into is None:
            return None
        customer_id = profile.merged_into
    return customer_id


async def timeline(
    session: AsyncSession, customer_id: uuid.UUID, *, limit: int, cursor: str | None
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
    if cursor is not None:
        at_raw, id_raw = decode_cursor(cursor, 2)
        try:
            at, last_id = datetime.fromisoformat(at_raw), uuid.UUID(id_raw)
        except ValueError as exc:
            raise InvalidInput("not a cursor returned by this API", field="cursor") from exc
        query = query.where(
            or_(
                TimelineEntry.occurred_at < at,
                and_(TimelineEntry.occurred_at == at, TimelineEntry.interaction_id < last_id),
            )
        )
    rows = list(await session.scalars(query))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].occurred_at.isoformat(), rows[-1].interaction_id)
    return [to_item(r) for r in rows], next_cursor


async def policy(session: AsyncSession) -> ContactPolicy:
    row = await session.get(ContactPolicyRow, 1)
    return ContactPolicy.model_validate(row.policy) if row else ContactPolicy()


async def contact_check(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    channel: Channel,
    department: Department,
    now: datetime | None = None,
) -> list[rules.Reason]:
    now = now or utcnow()
    current = await survivor(session, customer_id)
    if current is None:
        return rules.contact_check(
            channel=channel,
            department=department,
            now=now,
            preferences=None,
            policy=ContactPolicy(),
            outbound_last_7_days=0,
            open_ticket_priorities=[],
            erased=True,
        )
    profile = await session.get(CustomerProfile, current)
    outbound = await session.scalar(
        select(func.count()).where(
            TimelineEntry.customer_id == current,
            TimelineEntry.direction == "outbound",
            TimelineEntry.occurred_at > now - rules.CONTACT_WINDOW,
            TimelineEntry.occurred_at <= now,
        )
    )
    priorities = await session.scalars(
        select(Ticket.priority)
        .where(
            Ticket.customer_id == current,
            Ticket.status.in_([s.value for s in rules.ACTIVE]),
        )
        .distinct()
    )
    return rules.contact_check(
        channel=channel,
        department=department,
        now=now,
        preferences=ContactPreferences.model_validate(profile.preferences) if profile else None,
        policy=await policy(session),
        outbound_last_7_days=outbound or 0,
        open_ticket_priorities=list(priorities),
    )


# ---- support's own touches that are not ticket messages -------------------------------------


async def record_interactions(
    session: AsyncSession, items: list[InteractionCreate]
) -> list[uuid.UUID]:
    """Publish support touches on crm.interactions.v1 (via the outbox, in one INSERT)."""
    now = utcnow()
    rows = []
    ids = []
    current: dict[uuid.UUID, uuid.UUID] = {}  # a batch often has one customer many times
    for index, item in enumerate(items):
        field = "customer_id" if len(items) == 1 else f"items.{index}.customer_id"
        if item.customer_id not in current:
            try:
                current[item.customer_id] = await current_customer(session, item.customer_id)
            except Conflict as exc:  # an erased customer: name the item's field
                raise Conflict(exc.message, field=field) from None
        customer_id = current[item.customer_id]
        touch = InteractionRecorded(
            interaction_id=item.interaction_id or uuid.uuid4(),
            customer_id=customer_id,
            department=Department.support,
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
                source=events.SOURCE,
                subject=key,
                data=touch,
            )
        )
        ids.append(touch.interaction_id)
    await add_rows(session, rows)
    return ids


# ---- projections (applied by consumers) -----------------------------------------------------


async def record_touch(session: AsyncSession, touch: InteractionRecorded) -> None:
    customer_id = await survivor(session, touch.customer_id)
    if customer_id is None:
        return  # erased: keep nothing about this person
    if await session.get(TimelineEntry, touch.interaction_id) is not None:
        return  # the same touch again (a replay): natural upsert
    session.add(
        TimelineEntry(
            interaction_id=touch.interaction_id,
            customer_id=customer_id,
            department=touch.department.value,
            channel=touch.channel.value,
            direction=touch.direction.value,
            kind=touch.kind,
            subject=touch.subject,
            occurred_at=touch.occurred_at,
            actor=touch.actor,
            sentiment=touch.sentiment.value if touch.sentiment else None,
            outcome=touch.outcome,
            ref_type=touch.ref.type if touch.ref else None,
            ref_id=touch.ref.id if touch.ref else None,
        )
    )


async def _profile(session: AsyncSession, contact_id: uuid.UUID) -> CustomerProfile:
    profile = await session.get(CustomerProfile, contact_id)
    if profile is None:
        profile = CustomerProfile(
            contact_id=contact_id, status=ProfileStatus.active.value, preferences={}
        )
        session.add(profile)
    profile.updated_at = utcnow()
    return profile


async def contact_changed(
    session: AsyncSession,
    contact_id: uuid.UUID,
    preferences: ContactPreferences,
    identities: list[tuple[str, str]],
) -> None:
    profile = await _profile(session, contact_id)
    if profile.status != ProfileStatus.active:  # merged and erased are final
        return
    profile.preferences = preferences.model_dump(mode="json")
    await _set_identities(session, contact_id, identities)


async def _set_identities(
    session: AsyncSession, contact_id: uuid.UUID, identities: list[tuple[str, str]]
) -> None:
    """The contact's identities, and tickets opened by those senders before contacts knew them
    re-pointed to the contact."""
    wanted = {(kind, rules.normalize_identity(kind, value)) for kind, value in identities}
    rows = await session.scalars(
        select(CustomerIdentity).where(
            or_(
                CustomerIdentity.contact_id == contact_id,
                *(and_(CustomerIdentity.kind == k, CustomerIdentity.value == v) for k, v in wanted),
            )
        )
    )
    existing = {(row.kind, row.value): row for row in rows}
    for key, row in existing.items():
        if key not in wanted and row.contact_id == contact_id:
            await session.delete(row)
    for kind, value in wanted:
        row = existing.get((kind, value))
        if row is None:
            session.add(CustomerIdentity(kind=kind, value=value, contact_id=contact_id))
        else:
            row.contact_id = contact_id
        await session.execute(
            update(Ticket)
            .where(
                Ticket.customer_id == rules.placeholder_customer(kind, value),
                Ticket.unknown_customer.is_(True),
            )
            .values(customer_id=contact_id, unknown_customer=False)
        )


async def contact_merged(
    session: AsyncSession, merged_id: uuid.UUID, survivor_id: uuid.UUID
) -> None:
    profile = await _profile(session, merged_id)
    if profile.status == ProfileStatus.erased:
        return
    profile.status = ProfileStatus.merged.value
    profile.merged_into = survivor_id
    profile.preferences = {}
    await session.execute(
        update(CustomerProfile)
        .where(CustomerProfile.merged_into == merged_id)
        .values(merged_into=survivor_id)
    )
    await session.execute(
        update(TimelineEntry)
        .where(TimelineEntry.customer_id == merged_id)
        .values(customer_id=survivor_id)
    )
    await session.execute(
        update(Ticket).where(Ticket.customer_id == merged_id).values(customer_id=survivor_id)
    )
    await session.execute(
        update(CustomerIdentity)
        .where(CustomerIdentity.contact_id == merged_id)
        .values(contact_id=survivor_id)
    )


async def contact_erased(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """GDPR: the person's touches go, their tickets keep only what carries no PII."""
    profile = await _profile(session, contact_id)
    profile.status = ProfileStatus.erased.value
    profile.preferences = {}
    profile.merged_into = None
    await session.execute(delete(TimelineEntry).where(TimelineEntry.customer_id == contact_id))
    await session.execute(delete(CustomerIdentity).where(CustomerIdentity.contact_id == contact_id))
    ticket_ids = select(Ticket.id).where(Ticket.customer_id == contact_id).scalar_subquery()
    await session.execute(
        update(TicketMessage)
        .where(TicketMessage.ticket_id.in_(ticket_ids))  # replies quote the customer too
        .values(body=ERASED)
    )
    await session.execute(
        update(Ticket)
        .where(Ticket.customer_id == contact_id)
        .values(subject=ERASED, description=ERASED, attributes={}, satisfaction_comment=None)
    )


async def policy_updated(session: AsyncSession, new_policy: ContactPolicy) -> None:
    row = await session.get(ContactPolicyRow, 1)
    if row is None:
        row = ContactPolicyRow(id=1)
        session.add(row)
    row.policy = new_policy.model_dump(mode="json")
    row.updated_at = utcnow()
