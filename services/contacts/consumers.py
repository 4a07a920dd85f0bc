"""What contacts does with other services' events: keeps when each contact was last touched,
and opts a channel out when a customer unsubscribes from marketing."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import service
from services.contacts.models import Contact, ContactActivity, ContactStatus
from shared import topics
from shared.consumer import Subscription
from shared.contracts.marketing import UNSUBSCRIBED, Unsubscribed
from shared.customer_view.projection import MAX_MERGE_CHAIN
from shared.db import lock_customers, lock_customers_on_the_way, padded
from shared.events import (
    INTERACTION_RECORDED,
    ContactPreferences,
    Direction,
    Envelope,
    InteractionRecorded,
)

# Where each of some contacts stands (not the identities the model loads eagerly), built once:
# at light load every touch is a batch of its own.
_CONTACTS = Contact.__table__.c
_STATES = select(_CONTACTS.id, _CONTACTS.status, _CONTACTS.merged_into).where(
    _CONTACTS.id.in_(bindparam("ids", expanding=True))
)

# Built once, as _STATES: at a batch of one touch, building it was a tenth of the batch's CPU.
_ACTIVITIES = (
    select(ContactActivity)
    .where(ContactActivity.contact_id.in_(bindparam("ids", expanding=True)))
    .order_by(ContactActivity.contact_id)  # one lock order for every replica
    .with_for_update()
)


async def interaction_recorded(session: AsyncSession, event: Envelope) -> None:
    await interactions_recorded(session, [event])


async def interactions_recorded(session: AsyncSession, events: list[Envelope]) -> None:
    """A fetched batch of touches: the contacts and their activity rows read in two queries.
    The touches' contacts, with the survivors of merged ones, are locked first in one statement
    (a merge or an erasure of one waits, or is waited for), and the activity rows are locked as they are read: another replica counting touches
    for the same survivor waits instead of overwriting this count."""
    touches = [InteractionRecorded.model_validate(event.data) for event in events]
    wanted = {touch.customer_id for touch in touches}
    locked = await lock_customers_on_the_way(session, wanted, _the_way, rounds=MAX_MERGE_CHAIN)
    current = await _currents(session, wanted)
    for _ in range(MAX_MERGE_CHAIN):  # none in practice: the way was locked whole above
        # Merges kept landing while the locks were awaited (more than the rounds above): a
        # touch counts for its survivor, so lock the survivors left too, then look again.
        survivors = {c for c in current.values() if c is not None} - locked
        if not survivors:
            break
        await lock_customers(session, survivors)
        locked |= survivors
        current = await _currents(session, wanted)
    counted = {contact_id for contact_id in current.values() if contact_id is not None}
    activities = {
        a.contact_id: a for a in await session.scalars(_ACTIVITIES, {"ids": padded(counted)})
    }
    # Folded per contact first: a batch holds many touches of each of few contacts, and each
    # change to a loaded row goes through the ORM's attribute events.
    for contact_id, folded in fold_touches(touches, current).items():
        activity = activities.get(contact_id)
        if activity is None:
            activity = ContactActivity(contact_id=contact_id, interactions_total=0)
            session.add(activity)
        activity.interactions_total += folded.count
        activity.last_interaction_at = _latest(activity.last_interaction_at, folded.last)
        activity.last_inbound_at = _latest(activity.last_inbound_at, folded.last_inbound)
        activity.last_outbound_at = _latest(activity.last_outbound_at, folded.last_outbound)


@dataclass
class FoldedTouches:
    """What a batch's touches add to one contact's activity."""

    count: int = 0
    last: datetime | None = None
    last_inbound: datetime | None = None
    last_outbound: datetime | None = None


def fold_touches(
    touches: list[InteractionRecorded], counted_for: dict[uuid.UUID, uuid.UUID | None]
) -> dict[uuid.UUID, FoldedTouches]:
    """The touches per contact they count for (``counted_for``: the survivor of a merged
    customer, None for an erased one, whose touches count for no one)."""
    folded: dict[uuid.UUID, FoldedTouches] = {}
    for touch in touches:
        contact_id = counted_for[touch.customer_id]
        if contact_id is None:
            continue  # erased: keep nothing about this person
        into = folded.setdefault(contact_id, FoldedTouches())
        into.count += 1
        into.last = _latest(into.last, touch.occurred_at)
        if touch.direction == Direction.inbound:
            into.last_inbound = _latest(into.last_inbound, touch.occurred_at)
        else:
            into.last_outbound = _latest(into.last_outbound, touch.occurred_at)
    return folded


async def _the_way(session: AsyncSession, contact_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """These contacts and those their merges lead to, as read now, to be locked in one
    statement (``lock_customers_on_the_way``)."""
    way, frontier = set(contact_ids), contact_ids
    for _ in range(MAX_MERGE_CHAIN):
        current = await _currents(session, frontier)
        frontier = {c for c in current.values() if c is not None} - way
        if not frontier:
            break
        way |= frontier
    return way


async def _currents(
    session: AsyncSession, contact_ids: set[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID | None]:
    contacts = {row.id: row for row in await session.execute(_STATES, {"ids": padded(contact_ids)})}
    return {
        contact_id: _current(contacts.get(contact_id), contact_id) for contact_id in contact_ids
    }


def _current(contact: Contact | Row[Any] | None, contact_id: uuid.UUID) -> uuid.UUID | None:
    """The id a touch counts for: the survivor of a merge; None for an erased contact."""
    if contact is None:
        return contact_id  # not known here yet (another service may have the id first)
    if contact.status == ContactStatus.erased:
        return None
    if contact.status == ContactStatus.merged:
        return contact.merged_into
    return contact_id


async def unsubscribed(session: AsyncSession, event: Envelope) -> None:
    """A one-click unsubscribe in marketing: the channel joins the contact's opt-outs, through
    the preference update that republishes the contact for every service."""
    request = Unsubscribed.model_validate(event.data)
    contact_id: uuid.UUID | None = request.customer_id
    contact = None
    # The way to the survivor locked at once: one hop after another, the survivor's lock came
    # after the merged contact's, against the locks' one order (the hops below hold them).
    await lock_customers_on_the_way(
        session, [request.customer_id], _the_way, rounds=MAX_MERGE_CHAIN
    )
    while contact_id is not None:  # to the survivor, each one locked before it is read
        await lock_customers(session, [contact_id])  # as the API's changes of a contact do
        contact = await session.get(Contact, contact_id, populate_existing=True)
        if contact is None or contact.status != ContactStatus.merged:
            break
        contact_id = contact.merged_into
    if contact is None or contact.status != ContactStatus.active:
        return  # erased, or not a contact here: nothing to opt out
    preferences = ContactPreferences.model_validate(contact.preferences or {})
    if request.channel in preferences.opted_out_channels:
        return  # already out (a replay, or a second unsubscribe)
    preferences.opted_out_channels.append(request.channel)
    await service.set_preferences(session, contact.id, preferences)


def _latest(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate > current else current


SUBSCRIPTIONS = [
    Subscription(
        name="interactions",
        topics=(topics.INTERACTIONS,),
        handlers={INTERACTION_RECORDED: interaction_recorded},
        batch_handlers={INTERACTION_RECORDED: interactions_recorded},
        locks_first=True,  # interactions_recorded starts with lock_customers
    ),
    Subscription(
        name="marketing",
        topics=(topics.MARKETING,),
        handlers={UNSUBSCRIBED: unsubscribed},
    ),
]
