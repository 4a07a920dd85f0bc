"""A rep's calls, meetings, e-mails and messages: kept here and published as touches on the
shared timeline. An outbound one comes back with the contact check, so the rep is warned."""

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import customers
from services.sales.models import Activity, Opportunity
from services.sales.schemas import ActivityCreate
from shared import customer_view, topics
from shared.contracts.sales import SOURCE
from shared.customer_view import ContactCheck
from shared.db import made_before
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import (
    INTERACTION_RECORDED,
    Department,
    Direction,
    InteractionRecorded,
    SourceRef,
    utcnow,
)
from shared.outbox import add_rows, event_row
from shared.pagination import cut_page, page_after


def _check_opportunity(
    owners: dict[uuid.UUID, uuid.UUID], data: ActivityCreate, customer_id: uuid.UUID, field: str
) -> None:
    if data.opportunity_id is None:
        return
    owner = owners.get(data.opportunity_id)
    if owner is None:
        raise InvalidInput("no such opportunity", field=field)
    if owner != customer_id:
        raise InvalidInput("the opportunity is another customer's", field=field)


async def _opportunity_owners(
    session: AsyncSession, items: Sequence[ActivityCreate]
) -> dict[uuid.UUID, uuid.UUID]:
    ids = {i.opportunity_id for i in items if i.opportunity_id is not None}
    if not ids:
        return {}
    rows = await session.execute(
        select(Opportunity.id, Opportunity.customer_id).where(Opportunity.id.in_(ids))
    )
    return {opportunity_id: customer_id for opportunity_id, customer_id in rows}


def _touch(
    activity_id: uuid.UUID, customer_id: uuid.UUID, data: ActivityCreate, at: datetime
) -> dict[str, Any]:
    """The activity as an outbox row of crm.interactions.v1 (its id is the activity's)."""
    touch = InteractionRecorded(
        interaction_id=activity_id,
        customer_id=customer_id,
        department=Department.sales,
        channel=data.channel,
        direction=data.direction,
        kind=data.kind,
        subject=data.subject,
        occurred_at=at,
        actor=data.actor,
        sentiment=data.sentiment,
        outcome=data.outcome,
        ref=SourceRef(type="activity", id=str(activity_id)),
    )
    key = str(customer_id)
    return event_row(
        topic=topics.INTERACTIONS,
        key=key,
        event_type=INTERACTION_RECORDED,
        source=SOURCE,
        subject=key,
        data=touch,
    )


async def _current_customers(
    session: AsyncSession, items: Sequence[ActivityCreate]
) -> dict[uuid.UUID, uuid.UUID]:
    return await customer_view.current_customers(
        session,
        [item.customer_id for item in items],
        customer_view.item_fields(len(items), "customer_id"),
    )


def _same_activity(data: ActivityCreate, customer_id: uuid.UUID) -> Callable[[Activity], bool]:
    """Whether an activity logged before is the one a retry sends again."""
    sent = (customer_id, data.kind, data.channel.value, data.direction.value)

    def same(earlier: Activity) -> bool:
        return (earlier.customer_id, earlier.kind, earlier.channel, earlier.direction) == sent

    return same


async def log_activity(
    session: AsyncSession, data: ActivityCreate
) -> tuple[Activity, ContactCheck | None]:
    """The activity logged and published, with the contact check of an outbound one; sent
    again with its ``activity_id``, the activity first logged, without a check."""
    customer_id = (await _current_customers(session, [data]))[data.customer_id]
    earlier = await made_before(
        session,
        Activity,
        data.activity_id,
        name="activity",
        field="activity_id",
        same=_same_activity(data, customer_id),
    )
    if earlier is not None:
        return earlier, None
    owners = await _opportunity_owners(session, [data])
    _check_opportunity(owners, data, customer_id, "opportunity_id")
    now = utcnow()
    occurred_at = data.occurred_at or now
    verdict = None
    if data.direction == Direction.outbound:
        # Judged before this touch is counted: was the customer within budget for it?
        reasons = await customer_view.contact_check(
            session,
            customer_id,
            channel=data.channel,
            department=Department.sales,
            now=occurred_at,
            open_ticket_priorities=await customers.open_ticket_priorities(session, customer_id),
        )
        verdict = ContactCheck(allowed=not reasons, reasons=[r.value for r in reasons])
    activity = Activity(
        id=data.activity_id or uuid.uuid4(),
        **data.model_dump(exclude={"activity_id", "customer_id", "occurred_at"}),
        customer_id=customer_id,
        occurred_at=occurred_at,
        created_at=now,
    )
    session.add(activity)
    await session.flush()
    await add_rows(session, [_touch(activity.id, customer_id, data, occurred_at)])
    return activity, verdict


async def log_activities(session: AsyncSession, items: Sequence[ActivityCreate]) -> list[uuid.UUID]:
    """Many activities at once (a dialer's or a calendar's sync): one INSERT, one outbox
    INSERT. No contact checks: these touches already happened. An activity sent again with
    its ``activity_id`` (a retried batch, or twice in one) is logged and published once."""
    now = utcnow()
    # Under the customers' locks: a retry sent at the same moment waits, then finds the first.
    current = await _current_customers(session, items)
    owners = await _opportunity_owners(session, items)
    given = [item.activity_id for item in items if item.activity_id is not None]
    earlier: dict[uuid.UUID, Activity] = {}
    if given:
        earlier.update(
            (a.id, a) for a in await session.scalars(select(Activity).where(Activity.id.in_(given)))
        )
    ids, rows, touches = [], [], []
    for index, data in enumerate(items):
        customer_id = current[data.customer_id]
        _check_opportunity(owners, data, customer_id, f"items.{index}.opportunity_id")
        if data.activity_id in earlier:
            if not _same_activity(data, customer_id)(earlier[data.activity_id]):
                raise Conflict(
                    f"{data.activity_id} is the id of another activity",
                    field=f"items.{index}.activity_id",
                )
            ids.append(data.activity_id)
            continue
        activity_id = data.activity_id or uuid.uuid4()
        occurred_at = data.occurred_at or now
        row = {
            **data.model_dump(exclude={"activity_id", "customer_id", "occurred_at"}),
            "id": activity_id,
            "customer_id": customer_id,
            "occurred_at": occurred_at,
            "created_at": now,
        }
        rows.append(row)
        touches.append(_touch(activity_id, customer_id, data, occurred_at))
        ids.append(activity_id)
        if data.activity_id is not None:
            earlier[activity_id] = Activity(**row)  # a repeat later in this batch names it
    if rows:
        try:
            await session.execute(insert(Activity), rows)
        except IntegrityError as exc:  # an id sent at once for another customer
            raise Conflict(
                "an activity_id of this batch was just used by another request", field="items"
            ) from exc
        await add_rows(session, touches)
    return ids


async def get_activity(session: AsyncSession, activity_id: uuid.UUID) -> Activity:
    activity = await session.get(Activity, activity_id)
    if activity is None:
        raise NotFound(f"activity {activity_id} not found")
    return activity


async def list_activities(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID | None,
    opportunity_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Activity], str | None]:
    query = (
        select(Activity).order_by(Activity.occurred_at.desc(), Activity.id.desc()).limit(limit + 1)
    )
    if customer_id is not None:
        current = await customer_view.survivor(session, customer_id)
        if current is None:
            return [], None
        query = query.where(Activity.customer_id == current)
    if opportunity_id is not None:
        query = query.where(Activity.opportunity_id == opportunity_id)
    query = page_after(query, Activity.occurred_at, Activity.id, cursor)
    return cut_page(list(await session.scalars(query)), limit, "occurred_at")
