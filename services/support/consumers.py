"""What support does with other services' events: the shared timeline (every department's
touches) and the contacts projection (preferences, policy, merges, erasures)."""

from sqlalchemy.ext.asyncio import AsyncSession

from services.support import timeline
from shared import topics
from shared.consumer import Subscription
from shared.events import (
    CONTACT_CREATED,
    CONTACT_ERASED,
    CONTACT_MERGED,
    CONTACT_POLICY_UPDATED,
    CONTACT_UPDATED,
    INTERACTION_RECORDED,
    ContactErased,
    ContactMerged,
    ContactPolicy,
    ContactSnapshot,
    Envelope,
    InteractionRecorded,
)


async def interaction_recorded(session: AsyncSession, event: Envelope) -> None:
    await timeline.record_touch(session, InteractionRecorded.model_validate(event.data))


async def contact_changed(session: AsyncSession, event: Envelope) -> None:
    contact = ContactSnapshot.model_validate(event.data)
    identities = {(i.kind, i.value) for i in contact.identities}
    identities |= {(kind, v) for kind in ("email", "phone") if (v := getattr(contact, kind))}
    await timeline.contact_changed(
        session, contact.contact_id, contact.preferences, sorted(identities)
    )


async def contact_merged(session: AsyncSession, event: Envelope) -> None:
    merge = ContactMerged.model_validate(event.data)
    await timeline.contact_merged(session, merge.merged_id, merge.survivor_id)


async def contact_erased(session: AsyncSession, event: Envelope) -> None:
    await timeline.contact_erased(session, ContactErased.model_validate(event.data).contact_id)


async def policy_updated(session: AsyncSession, event: Envelope) -> None:
    await timeline.policy_updated(session, ContactPolicy.model_validate(event.data))


SUBSCRIPTIONS = [
    Subscription(
        name="timeline",
        topics=(topics.INTERACTIONS,),
        handlers={INTERACTION_RECORDED: interaction_recorded},
    ),
    Subscription(
        name="contacts",
        topics=(topics.CONTACTS,),
        handlers={
            CONTACT_CREATED: contact_changed,
            CONTACT_UPDATED: contact_changed,
            CONTACT_MERGED: contact_merged,
            CONTACT_ERASED: contact_erased,
            CONTACT_POLICY_UPDATED: policy_updated,
        },
    ),
]
