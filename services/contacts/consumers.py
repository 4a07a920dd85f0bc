"""What contacts does with other services' events: keeps when each contact was last touched."""

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts.models import Contact, ContactActivity, ContactStatus
from shared import topics
from shared.consumer import Subscription
from shared.events import INTERACTION_RECORDED, Direction, Envelope, InteractionRecorded


async def interaction_recorded(session: AsyncSession, event: Envelope) -> None:
    touch = InteractionRecorded.model_validate(event.data)
    contact_id = await _current_id(session, touch.customer_id)
    if contact_id is None:
        return  # erased: keep nothing about this person
    activity = await session.get(ContactActivity, contact_id)
    if activity is None:
        activity = ContactActivity(contact_id=contact_id, interactions_total=0)
        session.add(activity)
    activity.interactions_total += 1
    activity.last_interaction_at = _later(activity.last_interaction_at, touch.occurred_at)
    if touch.direction == Direction.inbound:
        activity.last_inbound_at = _later(activity.last_inbound_at, touch.occurred_at)
    else:
        activity.last_outbound_at = _later(activity.last_outbound_at, touch.occurred_at)


async def _current_id(session: AsyncSession, contact_id: uuid.UUID) -> uuid.UUID | None:
    """The id a touch counts for: the survivor of a merge; None for an erased contact."""
    contact = await session.get(Contact, contact_id)
    if contact is None:
        return contact_id  # not known here yet (another service may have the id first)
    if contact.status == ContactStatus.erased:
        return None
    if contact.status == ContactStatus.merged:
        return contact.merged_into
    return contact_id


def _later(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


SUBSCRIPTIONS = [
    Subscription(
        name="interactions",
        topics=(topics.INTERACTIONS,),
        handlers={INTERACTION_RECORDED: interaction_recorded},
    ),
]
