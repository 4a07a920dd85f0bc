"""A rep's calls, meetings, e-mails and messages: kept here and published as touches on the
shared timeline. An outbound one comes back with the contact check, so the rep is warned."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import customers
from services.sales.models import Activity, Opportunity
from services.sales.schemas import ActivityCreate
from shared import customer_view, topics
from shared.contracts.sales import SOURCE
from shared.customer_view import ContactCheck
from shared.errors import InvalidInput, NotFound
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


async def log_activity(
    session: AsyncSession, data: ActivityCreate
) -> tuple[Activity, ContactCheck | None]:
    customer_id = (await _current_customers(session, [data]))[data.customer_id]
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
        id=uuid.uuid4(),
        **data.model_dump(exclude={"customer_id", "occurred_at"}),
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
    INSERT. No contact checks: these touches already happened."""
    now = utcnow()
    current = await _current_customers(session, items)
    owners = await _opportunity_owners(session, items)
    rows, touches = [], []
    for index, data in enumerate(items):
        customer_id = current[data.customer_id]
        _check_opportunity(owners, data, customer_id, f"items.{index}.opportunity_id")
        activity_id = uuid.uuid4()
        occurred_at = data.occurred_at or now
        rows.append(
            {
                **data.model_dump(exclude={"customer_id", "occurred_at"}),
                "id": activity_id,
                "customer_id": customer_id,
                "occurred_at": occurred_at,
                "created_at": now,
            }
        )
        touches.append(_touch(activity_id, customer_id, data, occurred_at))
    await session.execute(insert(Activity), rows)
    await add_rows(session, touches)
    return [row["id"] for row in rows]


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
