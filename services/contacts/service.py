"""Contact use cases. They take the caller's session and never commit: the caller does."""

import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import events, rules
from services.contacts.models import (
    Contact,
    ContactActivity,
    ContactIdentity,
    ContactPolicyRow,
    ContactStatus,
)
from services.contacts.schemas import ContactCreate, ContactFields, ContactUpdate, IdentityIn
from shared import contact_rules
from shared.db import lock_customers, lock_table, made_before
from shared.errors import Conflict, Gone, InvalidInput, NotFound
from shared.events import ContactPolicy, ContactPreferences, utcnow
from shared.outbox import add_rows
from shared.pagination import cut_page, page_after

# The primary e-mail and phone are identities too, so one uniqueness rule covers all of them.
PRIMARY_IDENTITY_FIELDS = ("email", "phone")


async def get_contact(session: AsyncSession, contact_id: uuid.UUID) -> Contact:
    """An active contact; 404 for unknown or erased ids, 301 to the survivor for merged ones."""
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.status == ContactStatus.erased:
        raise NotFound(f"contact {contact_id} not found")
    if contact.status == ContactStatus.merged:
        raise Gone(
            f"contact {contact_id} was merged into {contact.merged_into}",
            details={
                "merged_into": str(contact.merged_into),
                "location": f"/v1/contacts/{contact.merged_into}",
            },
        )
    return contact


async def activities(
    session: AsyncSession, contact_ids: list[uuid.UUID]
) -> dict[uuid.UUID, ContactActivity]:
    """The touch summaries (from crm.interactions.v1) of these contacts."""
    if not contact_ids:
        return {}
    rows = await session.scalars(
        select(ContactActivity).where(ContactActivity.contact_id.in_(contact_ids))
    )
    return {row.contact_id: row for row in rows}


async def _writable(session: AsyncSession, contact_id: uuid.UUID) -> Contact:
    """The contact, to change: its lock is taken before it is read, so that changes of one
    contact take turns (each event's snapshot then holds the changes committed before it)
    and none slips in after its merge or erasure (a snapshot of a merged contact)."""
    await lock_customers(session, [contact_id])
    try:
        return await get_contact(session, contact_id)
    except Gone as moved:
        raise Conflict(
            moved.message, details={"merged_into": moved.details["merged_into"]}
        ) from None


async def find_identity_owners(
    session: AsyncSession, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """Which contact already holds each (kind, value): one query per 1,000 values per kind."""
    values_by_kind: dict[str, list[str]] = {}
    for kind, value in pairs:
        values_by_kind.setdefault(kind, []).append(value)
    owners: dict[tuple[str, str], uuid.UUID] = {}
    longest = max((len(values) for values in values_by_kind.values()), default=0)
    for start in range(0, longest, 1000):
        conditions = [
            and_(
                ContactIdentity.kind == kind,
                ContactIdentity.value.in_(values[start : start + 1000]),
            )
            for kind, values in values_by_kind.items()
            if values[start : start + 1000]
        ]
        rows = await session.execute(
            select(ContactIdentity.kind, ContactIdentity.value, ContactIdentity.contact_id).where(
                or_(*conditions)
            )
        )
        owners.update({(kind, value): cid for kind, value, cid in rows})
    return owners


def _primary_identities(contact_in: ContactCreate | Contact) -> list[tuple[str, str]]:
    return [(f, v) for f in PRIMARY_IDENTITY_FIELDS if (v := getattr(contact_in, f))]


def new_contact_row(
    data: ContactFields, now: datetime, contact_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """The column values of a new contact (bulk paths insert these without ORM objects)."""
    return {
        "id": contact_id or uuid.uuid4(),
        "status": ContactStatus.active.value,
        "first_name": data.first_name,
        "last_name": data.last_name,
        "email": data.email,
        "phone": data.phone,
        "company": data.company,
        "country": data.country,
        "external_id": data.external_id,
        "preferences": (data.preferences or ContactPreferences()).model_dump(mode="json"),
        "last_name_key": rules.blocking_key(data.last_name),
        "company_key": rules.blocking_key(data.company),
        "created_at": now,
        "updated_at": now,
    }


def refresh_keys(contact: Contact) -> None:
    contact.last_name_key = rules.blocking_key(contact.last_name)
    contact.company_key = rules.blocking_key(contact.company)


async def _holder_of_external_id(session: AsyncSession, external_id: str) -> Contact | None:
    """The contact holding an external id: an active one, or one merged into another (it
    keeps its external id, which leads a system that knows the record by it to the survivor)."""
    return await session.scalar(select(Contact).where(Contact.external_id == external_id))


def duplicate_conflict(field: str, existing_id: uuid.UUID) -> Conflict:
    return Conflict(
        f"a contact with this {field} already exists: {existing_id}",
        field=field,
        details={"existing_id": str(existing_id)},
    )


async def create_contact(
    session: AsyncSession, data: ContactCreate, *, duplicate_threshold: float
) -> tuple[Contact, list["NearMatch"]]:
    """Create a contact; 409 on an exact e-mail/phone/external id match, near matches returned.
    Sent again with its ``contact_id``, the contact first created (the id of another is a 409)."""
    earlier = await made_before(
        session, Contact, data.contact_id, name="contact", field="contact_id", same=_same(data)
    )
    if earlier is not None:
        # Answered as the first time, its look-alikes included.
        keys = ("id", "first_name", "last_name", "company", "last_name_key", "company_key")
        found = {key: getattr(earlier, key) for key in keys}
        return earlier, await near_duplicates(session, found, duplicate_threshold)
    owners = await find_identity_owners(session, _primary_identities(data))
    for (kind, _), owner in owners.items():
        raise duplicate_conflict(kind, owner)
    if data.external_id:
        holder = await _holder_of_external_id(session, data.external_id)
        if holder is not None:
            raise duplicate_conflict("external_id", holder.merged_into or holder.id)
    row = new_contact_row(data, utcnow(), data.contact_id)
    near = await near_duplicates(session, row, duplicate_threshold)
    identities = [
        {"contact_id": row["id"], "kind": k, "value": v} for k, v in _primary_identities(data)
    ]
    try:
        # Plain INSERTs, not the unit of work: the hot path of the API.
        await session.execute(insert(Contact).values(**row))
        if identities:
            await session.execute(insert(ContactIdentity).values(identities))
    except IntegrityError as exc:
        raise Conflict(
            "a contact with this e-mail, phone or external_id was just created", field="email"
        ) from exc
    await add_rows(session, [events.created_row(row)])
    # A detached instance, for the response only.
    contact = Contact(**row, identities=[ContactIdentity(**i) for i in identities])
    return contact, near


def _same(data: ContactCreate) -> Callable[[Contact], bool]:
    asked = (data.first_name, data.last_name, data.email, data.phone, data.external_id)

    def same(contact: Contact) -> bool:
        # A contact merged or erased since is not the one the retry asks for: a 409.
        fields = (contact.first_name, contact.last_name, contact.email, contact.phone)
        return contact.status == ContactStatus.active and (*fields, contact.external_id) == asked

    return same


async def _flush_unique(
    session: AsyncSession,
    message: str = "a contact with this e-mail, phone or external_id was just created",
    field: str = "email",
) -> None:
    """Flush; a concurrent request that took the same identity first becomes a 409."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(message, field=field) from exc


@dataclass(frozen=True)
class NearMatch:
    id: uuid.UUID
    first_name: str | None
    last_name: str | None
    company: str | None
    score: float


# A new contact is compared with at most this many others sharing its last name or company.
NEAR_DUPLICATE_CANDIDATES = 500


async def near_duplicates(
    session: AsyncSession, contact: dict[str, Any], threshold: float, limit: int = 5
) -> list[NearMatch]:
    """Active contacts sharing the last name or company whose name + company look alike."""
    keys = [Contact.last_name_key == contact["last_name_key"]] if contact["last_name_key"] else []
    if contact["company_key"]:
        keys.append(Contact.company_key == contact["company_key"])
    if not keys:
        return []
    # A common surname or a large company shares its key with more contacts than are compared:
    # those sharing both keys come first, then those whose first name starts with the same
    # letter, so the likeliest duplicates are among the ones compared.
    initial = contact["first_name"][:1].lower()
    likeliest_first = [
        case((and_(*keys), 0), else_=1),
        case((func.lower(func.substr(Contact.first_name, 1, 1)) == initial, 0), else_=1),
    ]
    rows = (
        await session.execute(
            select(Contact.id, Contact.first_name, Contact.last_name, Contact.company)
            .where(Contact.status == ContactStatus.active, Contact.id != contact["id"], or_(*keys))
            .order_by(*likeliest_first)
            .limit(NEAR_DUPLICATE_CANDIDATES)
        )
    ).all()
    person = rules.Person(contact["first_name"], contact["last_name"], contact["company"])
    by_id = {row.id: row for row in rows}
    matches = rules.best_matches(
        person,
        ((row.id, rules.Person(row.first_name, row.last_name, row.company)) for row in rows),
        threshold,
    )
    return [
        NearMatch(cid, by_id[cid].first_name, by_id[cid].last_name, by_id[cid].company, score)
        for cid, score in matches[:limit]
    ]


async def list_contacts(
    session: AsyncSession, *, q: str | None, limit: int, cursor: str | None
) -> tuple[list[Contact], str | None]:
    """Newest first; ``q`` matches name, e-mail, phone or company (case-insensitive)."""
    query = select(Contact).where(Contact.status == ContactStatus.active)
    if q:
        # autoescape: % and _ in the text are searched for, not read as LIKE's wildcards.
        text = unicodedata.normalize("NFC", q.strip())  # the form names are stored in
        conditions = [
            column.icontains(text, autoescape=True)
            for column in (
                Contact.first_name,
                Contact.last_name,
                Contact.email,
                Contact.company,
                Contact.phone,
            )
        ]
        # Stored in E.164; a number as written at home (trunk prefix 0: 030 1234567) or from
        # abroad (00 49 30 ...) holds the E.164 digits after its zeros.
        digits = "".join(ch for ch in q if ch.isdigit()).lstrip("0")
        if len(digits) >= 4:
            conditions.append(Contact.phone.contains(digits))
        words = " ".join(text.split())
        if " " in words:
            # A full name, or part of one (a first name may have two words: Anna Maria) ...
            full_name = Contact.first_name + " " + Contact.last_name
            conditions.append(full_name.icontains(words, autoescape=True))
            # ... or the beginnings of a first and a last name (Ann Schm).
            first, _, last = words.partition(" ")
            conditions.append(
                and_(
                    Contact.first_name.istartswith(first, autoescape=True),
                    Contact.last_name.istartswith(last, autoescape=True),
                )
            )
        query = query.where(or_(*conditions))
    query = page_after(query, Contact.created_at, Contact.id, cursor)
    query = query.order_by(Contact.created_at.desc(), Contact.id.desc()).limit(limit + 1)
    return cut_page(list(await session.scalars(query)), limit, "created_at")


async def update_contact(
    session: AsyncSession, contact_id: uuid.UUID, changes: ContactUpdate
) -> Contact:
    contact = await _writable(session, contact_id)
    values: dict[str, Any] = changes.model_dump(exclude_unset=True, mode="json")
    if "preferences" in values:
        # null clears them (the defaults a new contact has); else only the preferences sent
        # change: a PATCH of the preferred channel alone must not drop an opt-out.
        values["preferences"] = (
            _stored_preferences(None)
            if changes.preferences is None
            else _stored_preferences(
                rules.patched_preferences(
                    ContactPreferences.model_validate(contact.preferences or {}),
                    changes.preferences.model_dump(exclude_unset=True),
                )
            )
        )
    if "phone" in values and values["phone"] is not None:
        try:
            values["phone"] = contact_rules.normalize_phone(
                values["phone"], values.get("country", contact.country)
            )
        except ValueError as exc:
            raise InvalidInput(str(exc), field="phone") from None
    # Only what differs is changed: an update that changes nothing publishes nothing.
    values = {field: v for field, v in values.items() if v != _stored_value(contact, field)}
    if not values:
        return contact
    for field in PRIMARY_IDENTITY_FIELDS:
        if field in values and values[field] != getattr(contact, field):
            await _replace_identity(session, contact, field, getattr(contact, field), values[field])
    if values.get("external_id") and values["external_id"] != contact.external_id:
        holder = await _holder_of_external_id(session, values["external_id"])
        if holder is not None and holder.merged_into == contact.id:
            holder.external_id = None  # a record merged into this one: the id comes here
            await session.flush()
        elif holder is not None:
            raise duplicate_conflict("external_id", holder.merged_into or holder.id)
    for field, value in values.items():
        setattr(contact, field, value)
    refresh_keys(contact)
    contact.updated_at = utcnow()
    await _flush_unique(session)
    events.contact_updated(session, contact)
    return contact


def _stored_preferences(preferences: ContactPreferences | None) -> dict[str, Any]:
    return (preferences or ContactPreferences()).model_dump(mode="json")


def _stored_value(contact: Contact, field: str) -> Any:
    """A field as an update would write it (preferences with every key, as they are sent)."""
    if field == "preferences":
        return _stored_preferences(ContactPreferences.model_validate(contact.preferences or {}))
    return getattr(contact, field)


async def _replace_identity(
    session: AsyncSession, contact: Contact, kind: str, old: str | None, new: str | None
) -> None:
    if new is not None:
        owner = (await find_identity_owners(session, [(kind, new)])).get((kind, new))
        if owner is not None and owner != contact.id:
            raise duplicate_conflict(kind, owner)
    for identity in list(contact.identities):
        if identity.kind == kind and identity.value == old:
            contact.identities.remove(identity)
    if new is not None and not any(i.kind == kind and i.value == new for i in contact.identities):
        await session.flush()  # the old row must go before a re-insert of the same value
        contact.identities.append(ContactIdentity(kind=kind, value=new))


async def add_identity(
    session: AsyncSession, contact_id: uuid.UUID, identity: IdentityIn
) -> Contact:
    contact = await _writable(session, contact_id)
    value = identity.value
    try:
        if identity.kind == "email":
            value = contact_rules.normalize_email(value)
        elif identity.kind in ("phone", "whatsapp"):
            value = contact_rules.normalize_phone(value, contact.country)
        elif identity.kind == "telegram":
            value = value.lower().lstrip("@")
            if not value:
                raise ValueError("a Telegram username is needed after the @")
    except ValueError as exc:
        raise InvalidInput(str(exc), field="value") from None
    owner = (await find_identity_owners(session, [(identity.kind, value)])).get(
        (identity.kind, value)
    )
    if owner == contact.id:
        return contact
    if owner is not None:
        raise duplicate_conflict(identity.kind, owner)
    contact.identities.append(ContactIdentity(kind=identity.kind, value=value))
    contact.updated_at = utcnow()
    # Sent twice at once, it is added once; the other request learns it here.
    await _flush_unique(session, f"this {identity.kind} was just added to a contact", "value")
    events.contact_updated(session, contact)
    return contact


async def set_preferences(
    session: AsyncSession, contact_id: uuid.UUID, preferences: ContactPreferences
) -> Contact:
    contact = await _writable(session, contact_id)
    wanted = _stored_preferences(preferences)
    if wanted == _stored_value(contact, "preferences"):
        return contact  # unchanged: no event
    contact.preferences = wanted
    contact.updated_at = utcnow()
    events.contact_updated(session, contact)
    return contact


async def merge_contacts(
    session: AsyncSession, survivor_id: uuid.UUID, duplicate_ids: list[uuid.UUID]
) -> Contact:
    """Fold duplicates into the survivor: its empty fields filled, identities and consent kept."""
    if survivor_id in duplicate_ids:
        raise InvalidInput("a contact cannot be merged into itself", field="duplicate_ids")
    # The touch consumer counts under these contacts: it waits, or the merge does (no count
    # folded into the survivor while a touch of the duplicate is being counted).
    await lock_customers(session, [survivor_id, *duplicate_ids])
    survivor = await _writable(session, survivor_id)
    duplicates: list[Contact] = []
    for duplicate_id in dict.fromkeys(duplicate_ids):
        try:
            duplicates.append(await _writable(session, duplicate_id))
        except NotFound:
            # 422, not 404: the merge's own path names a contact that exists.
            raise InvalidInput(f"contact {duplicate_id} not found", field="duplicate_ids") from None
    now = utcnow()
    moved: dict[str, Any] = {}
    for field in ("last_name", "email", "phone", "company", "country", "external_id"):
        if getattr(survivor, field) is None:
            donor = next((d for d in duplicates if getattr(d, field) is not None), None)
            if donor is not None:
                moved[field] = getattr(donor, field)
                setattr(donor, field, None)
    # Unique columns: the donors' values are freed in a flush of their own first. In one
    # flush the rows are updated in primary-key order, and half the merges that moved an
    # e-mail, phone or external id failed on the survivor's row going first.
    await session.flush()
    for field, value in moved.items():
        setattr(survivor, field, value)
    survivor.preferences = rules.merged_preferences(
        ContactPreferences.model_validate(survivor.preferences or {}),
        [ContactPreferences.model_validate(d.preferences or {}) for d in duplicates],
    ).model_dump(mode="json")
    await session.flush()
    for duplicate in duplicates:
        for identity in list(duplicate.identities):
            identity.contact_id = survivor.id
        duplicate.status = ContactStatus.merged
        duplicate.merged_into = survivor.id
        external_id = duplicate.external_id
        _clear_pii(duplicate, now)
        # Its external id stays with it, leading to the survivor: the source system's next
        # import of the record updates the survivor instead of creating the duplicate again.
        duplicate.external_id = external_id
        events.contact_merged(session, duplicate, survivor)
    await _fold_activity(session, survivor.id, [d.id for d in duplicates])
    await session.flush()
    await session.refresh(survivor, ["identities"])
    # Contacts merged earlier into a duplicate now point straight at the survivor.
    for earlier in (
        await session.scalars(
            select(Contact).where(Contact.merged_into.in_([d.id for d in duplicates]))
        )
    ).all():
        earlier.merged_into = survivor.id
    refresh_keys(survivor)
    survivor.updated_at = now
    events.contact_updated(session, survivor)
    return survivor


async def _fold_activity(
    session: AsyncSession, survivor_id: uuid.UUID, merged_ids: list[uuid.UUID]
) -> None:
    """The survivor's touch counts include the merged records' touches."""
    merged = (
        await session.scalars(
            select(ContactActivity).where(ContactActivity.contact_id.in_(merged_ids))
        )
    ).all()
    if not merged:
        return
    target = await session.get(ContactActivity, survivor_id)
    if target is None:
        target = ContactActivity(contact_id=survivor_id, interactions_total=0)
        session.add(target)
    for activity in merged:
        target.interactions_total += activity.interactions_total
        for field in ("last_interaction_at", "last_inbound_at", "last_outbound_at"):
            values = [v for v in (getattr(target, field), getattr(activity, field)) if v]
            setattr(target, field, max(values) if values else None)
        await session.delete(activity)


def _clear_pii(contact: Contact, now: datetime) -> None:
    for field in ("first_name", "last_name", "email", "phone", "company", "country", "external_id"):
        setattr(contact, field, None)
    contact.preferences = {}
    contact.last_name_key = contact.company_key = None
    contact.updated_at = now


async def erase_contact(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """GDPR erasure: PII removed here and, through the bus, in every other service."""
    await lock_customers(session, [contact_id])
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.status == ContactStatus.erased:
        raise NotFound(f"contact {contact_id} not found")
    if contact.status == ContactStatus.merged:
        raise Conflict(
            f"contact {contact_id} was merged into {contact.merged_into}; erase that one",
            details={"merged_into": str(contact.merged_into)},
        )
    contact.identities.clear()
    contact.status = ContactStatus.erased
    now = utcnow()
    _clear_pii(contact, now)
    # Records merged into it held the same person's PII; they go too, erased now (their
    # updated_at was the merge's, and their erased events said so), their external ids too.
    for merged in (
        await session.scalars(select(Contact).where(Contact.merged_into == contact.id))
    ).all():
        merged.status = ContactStatus.erased
        _clear_pii(merged, now)
        events.contact_erased(session, merged)
    events.contact_erased(session, contact)


async def get_policy(session: AsyncSession) -> ContactPolicy:
    row = await session.get(ContactPolicyRow, 1)
    return ContactPolicy.model_validate(row.policy) if row else ContactPolicy()


async def set_policy(session: AsyncSession, policy: ContactPolicy) -> ContactPolicy:
    await lock_table(session, ContactPolicyRow)
    row = await session.get(ContactPolicyRow, 1)
    data = policy.model_dump(mode="json")
    if row is None:
        session.add(ContactPolicyRow(id=1, policy=data, updated_at=utcnow()))
    else:
        row.policy, row.updated_at = data, utcnow()
    events.policy_updated(session, policy)
    return policy
