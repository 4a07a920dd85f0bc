"""The events contacts emits on crm.contacts.v1, always keyed by the contact id."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts.models import Contact
from shared import events, topics
from shared.events import ContactErased, ContactMerged, ContactPolicy, ContactSnapshot, Identity
from shared.outbox import add_event, add_tombstone, event_row

SOURCE = "/crm/contacts"


def created_row(values: dict[str, Any]) -> dict[str, Any]:
    """The outbox row announcing a contact inserted from ``values`` (bulk import)."""
    contact_id = str(values["id"])
    data = ContactSnapshot(
        contact_id=values["id"],
        first_name=values["first_name"],
        identities=[Identity(kind=f, value=values[f]) for f in ("email", "phone") if values[f]],
        **{
            f: values[f]
            for f in (
                "last_name",
                "email",
                "phone",
                "company",
                "country",
                "external_id",
                "preferences",
                "created_at",
                "updated_at",
            )
        },
    )
    return event_row(
        topic=topics.CONTACTS,
        key=contact_id,
        event_type=events.CONTACT_CREATED,
        source=SOURCE,
        subject=contact_id,
        data=data,
    )


def snapshot(contact: Contact) -> ContactSnapshot:
    return ContactSnapshot(
        contact_id=contact.id,
        first_name=contact.first_name or "",
        last_name=contact.last_name,
        email=contact.email,
        phone=contact.phone,
        company=contact.company,
        country=contact.country,
        external_id=contact.external_id,
        identities=[Identity(kind=i.kind, value=i.value) for i in contact.identities],
        preferences=contact.preferences or {},
        created_at=contact.created_at,
        updated_at=contact.updated_at,
    )


def _publish(session: AsyncSession, event_type: str, key: str, data: object) -> None:
    add_event(
        session,
        topic=topics.CONTACTS,
        key=key,
        event_type=event_type,
        source=SOURCE,
        subject=key,
        data=data,
    )  # type: ignore[arg-type]


def contact_updated(session: AsyncSession, contact: Contact) -> None:
    _publish(session, events.CONTACT_UPDATED, str(contact.id), snapshot(contact))


def contact_merged(session: AsyncSession, merged: Contact, survivor: Contact) -> None:
    _publish(
        session,
        events.CONTACT_MERGED,
        str(merged.id),
        ContactMerged(merged_id=merged.id, survivor_id=survivor.id),
    )


def contact_erased(session: AsyncSession, contact: Contact) -> None:
    key, erased_at = str(contact.id), contact.updated_at
    # The event's time is the erasure's: the tombstone's ce_time must give its erased_at.
    event_id = add_event(
        session,
        topic=topics.CONTACTS,
        key=key,
        event_type=events.CONTACT_ERASED,
        source=SOURCE,
        subject=key,
        data=ContactErased(contact_id=contact.id, erased_at=erased_at),
        time=erased_at,
    )
    # The tombstone lets compaction drop every earlier message (and its PII) for this key,
    # the erased event too: it carries that event's id and time, so a replay still erases.
    add_tombstone(
        session,
        topic=topics.CONTACTS,
        key=key,
        event_id=event_id,
        event_type=events.CONTACT_ERASED,
        source=SOURCE,
        time=erased_at,
    )


def policy_updated(session: AsyncSession, policy: ContactPolicy) -> None:
    add_event(
        session,
        topic=topics.CONTACTS,
        key=events.CONTACT_POLICY_KEY,
        event_type=events.CONTACT_POLICY_UPDATED,
        source=SOURCE,
        data=policy,
    )
