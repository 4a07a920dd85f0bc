"""The consumer groups that keep the customer view: every department's touches
(crm.interactions.v1) and the contacts' lifecycle (crm.contacts.v1). A service passes hooks to
apply the same contact changes to its own records, in the same transaction."""

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from shared import topics
from shared.consumer import BatchHandler, Subscription
from shared.customer_view import projection
from shared.customer_view.models import CustomerProfile
from shared.db import load_rows, lock_customers, on_postgres
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

OnContact = Callable[[AsyncSession, ContactSnapshot], Awaitable[None]]
LocksBeforeContact = Callable[[ContactSnapshot], list[uuid.UUID]]
OnMerged = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[None]]
ReadForContacts = Callable[[AsyncSession, set[uuid.UUID], list[ContactSnapshot]], Awaitable[None]]
OnErased = Callable[[AsyncSession, uuid.UUID], Awaitable[None]]
OnTouches = Callable[
    [AsyncSession, list[tuple[InteractionRecorded, projection.TouchOutcome]]], Awaitable[None]
]

# In a transaction's Session.info (a session per transaction) once a contacts batch holds
# its contacts' locks and those of the ids locked before them, taken at once on PostgreSQL:
# each event taking its own again cost two statements per contact event.
_BATCH_LOCKED = "customer_view.contacts_batch_locked"


def batch_locked(session: AsyncSession) -> bool:
    """Whether this transaction is a contacts batch's that holds its contacts' locks, taken
    at once (PostgreSQL): a service's ``on_contact`` need not take the contact's again."""
    return bool(session.info.get(_BATCH_LOCKED))


def lock_the_way_first(*fields: str) -> BatchHandler:
    """A subscription's ``prefetch`` for handlers that file each event under its customer
    (``filed_under``), one after another in the batch's transaction: the customers the
    events' ``fields`` name, and those their merges lead to, locked at once in the locks' one
    order. Locked event by event, the batch held one customer while it waited for the next,
    which another writer (a batch of touches of both) had locked first and held while it
    waited for the first: a deadlock. On SQLite, whose lock is the database's, nothing runs."""

    async def prefetch(session: AsyncSession, events: list[Envelope]) -> None:
        if on_postgres(session):
            await projection.lock_the_way(session, ids_in(events, *fields))

    return prefetch


def file_under_first(
    *fields: str,
    rows: Mapping[str, type[DeclarativeBase]] | None = None,
    customer_rows: type[DeclarativeBase] | None = None,
) -> BatchHandler:
    """``lock_the_way_first``, and where each of those customers is filed now remembered for
    the batch's transaction (``projection.filed_under_all``): handlers that call
    ``filed_under`` event by event then ask nothing more, on SQLite too (where the batch's
    first one took the database's lock, this takes it). ``rows``: the rows the events' other
    fields name (a field, and the model whose primary key it holds), and ``customer_rows``:
    those of a model keyed by the customer, each where the customer is filed; read at once
    for the handlers' ``get_row``. For subscriptions to other topics than contacts', whose
    handlers apply no merge or erasure."""

    async def prefetch(session: AsyncSession, events: list[Envelope]) -> None:
        filed = await projection.filed_under_all(session, ids_in(events, *fields))
        for field, model in (rows or {}).items():
            await load_rows(session, model, ids_in(events, field))
        if customer_rows is not None:
            await load_rows(session, customer_rows, {c for c in filed.values() if c})

    return prefetch


def ids_in(events: list[Envelope], *fields: str) -> set[uuid.UUID]:
    """The ids these fields of the events' data hold; one that is not an id is left to its
    handler to reject."""
    ids = set()
    for event in events:
        for field in fields:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                ids.add(uuid.UUID(event.data.get(field)))
    return ids


def subscriptions(
    *,
    on_contact: OnContact | None = None,
    locks_before_contact: LocksBeforeContact | None = None,
    on_merged: OnMerged | None = None,
    on_erased: OnErased | None = None,
    on_touches: OnTouches | None = None,
    contact_rows: Sequence[type[DeclarativeBase]] = (),
    read_for_contacts: ReadForContacts | None = None,
) -> list[Subscription]:
    """``on_contact`` runs for active contacts only, ``on_merged`` with where the survivor's
    records live now (the survivor may have been merged on since), ``on_erased`` always (an
    erasure is final and must reach every record; a merge into a contact erased since, or of
    one erased before, is one too),
    ``on_touches`` once per batch of touches, each with what the timeline did with it.
    ``locks_before_contact``: the other ids ``on_contact`` locks, which the service's other
    writers take before the contact's; they are locked first, or each waits for the other
    (support's intake holds an unknown sender's stand-in ids, then finds the contact).
    ``contact_rows``: models keyed by the contact id whose rows the hooks look up
    (``get_row``), read for a batch's contacts at once; ``read_for_contacts``: a hook to read
    whatever else the hooks look up for them, at once, after those (given the batch's
    contact ids, and the snapshots of its creations and updates)."""

    async def interaction_recorded(session: AsyncSession, event: Envelope) -> None:
        touch = InteractionRecorded.model_validate(event.data)
        outcome = await projection.record_touch(session, touch)
        if on_touches is not None:
            await on_touches(session, [(touch, outcome)])

    async def interactions_recorded(session: AsyncSession, events: list[Envelope]) -> None:
        touches = [InteractionRecorded.model_validate(event.data) for event in events]
        outcomes = await projection.record_touches(session, touches)
        if on_touches is not None:
            await on_touches(session, list(zip(touches, outcomes, strict=True)))

    async def contact_changed(session: AsyncSession, event: Envelope) -> None:
        contact = ContactSnapshot.model_validate(event.data)
        locked = batch_locked(session)
        if locks_before_contact is not None and not locked:
            await lock_customers(session, locks_before_contact(contact))
        active = await projection.contact_changed(
            session, contact.contact_id, contact.preferences, locked=locked
        )
        if active and on_contact is not None:
            await on_contact(session, contact)

    async def contact_merged(session: AsyncSession, event: Envelope) -> None:
        merge = ContactMerged.model_validate(event.data)
        current = await projection.contact_merged(session, merge.merged_id, merge.survivor_id)
        if current is None:  # erased, or merged into someone erased since: erased with them
            if on_erased is not None:
                await on_erased(session, merge.merged_id)
        elif on_merged is not None:
            await on_merged(session, merge.merged_id, current)

    async def contact_erased(session: AsyncSession, event: Envelope) -> None:
        contact_id = ContactErased.model_validate(event.data).contact_id
        await projection.contact_erased(session, contact_id)
        if on_erased is not None:
            await on_erased(session, contact_id)

    async def policy_updated(session: AsyncSession, event: Envelope) -> None:
        await projection.policy_updated(session, ContactPolicy.model_validate(event.data))

    lock_contacts = lock_the_way_first("contact_id", "merged_id", "survivor_id")

    async def lock_contacts_first(session: AsyncSession, events: list[Envelope]) -> None:
        """The batch's contacts (and the ids locked before them) at once, before any change is
        applied: each applied under its lock, one after another, the batch held one contact
        while it waited for the next, which a batch of touches of both held while it waited
        for the first (a deadlock). PostgreSQL only, as ``lock_the_way_first``."""
        snapshots = []
        if locks_before_contact is not None or read_for_contacts is not None:
            for event in events:
                if event.type in (CONTACT_CREATED, CONTACT_UPDATED):
                    with contextlib.suppress(ValidationError):  # its handler rejects it
                        snapshots.append(ContactSnapshot.model_validate(event.data))
        if locks_before_contact is not None and on_postgres(session):
            await lock_customers(session, [i for s in snapshots for i in locks_before_contact(s)])
        await lock_contacts(session, events)
        if on_postgres(session):
            session.info[_BATCH_LOCKED] = True
        # Each event's profile (and the service's rows of the contact) read at once: a
        # contact event cost a service 2-4 ms of CPU, a query or two of them for these.
        # Under the locks: on SQLite the database's, which each handler takes first anyway.
        contact_ids = ids_in(events, "contact_id", "merged_id", "survivor_id")
        if not on_postgres(session):
            await lock_customers(session, contact_ids)
        for model in (CustomerProfile, *contact_rows):
            await load_rows(session, model, contact_ids)
        if read_for_contacts is not None:
            await read_for_contacts(session, contact_ids, snapshots)

    return [
        Subscription(
            name="timeline",
            topics=(topics.INTERACTIONS,),
            handlers={INTERACTION_RECORDED: interaction_recorded},
            batch_handlers={INTERACTION_RECORDED: interactions_recorded},
            locks_first=True,  # record_touch(es) starts with lock_customers
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
            prefetch=lock_contacts_first,
        ),
    ]
