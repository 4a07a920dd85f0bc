"""Races on PostgreSQL: touch counting against a concurrent merge (on SQLite the counting
transaction holds the database's one write lock from its start: ``shared.db.lock_customers``),
changes of one contact at once, one identity added by two requests at once, and the
contact policy set by two at once."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import consumers, importer, service
from services.contacts.models import ContactActivity
from services.contacts.schemas import ContactUpdate, IdentityIn
from services.contacts.tests.test_bus import interaction
from shared.contracts import marketing
from shared.errors import Conflict
from shared.events import (
    CONTACT_MERGED,
    CONTACT_UPDATED,
    ContactPolicy,
    ContactPreferences,
    Envelope,
    decode_event,
    utcnow,
)
from shared.models import OutboxMessage
from shared.testing import (
    app_of,
    in_lock_order,
    one_write_waits_for_another,
    postgres_only,
    until_a_transaction_waits_for_a_lock,
)


def touch(customer_id: str) -> Envelope:
    """A touch as contacts' consumer receives it (the bus tests' event, decoded)."""
    _, value, _ = interaction(customer_id)
    return decode_event(value)


@postgres_only
async def test_a_merge_while_touches_are_being_counted_loses_no_count(client):
    factory = app_of(client).state.session_factory
    survivor, duplicate = [
        (await client.post("/v1/contacts", json={"first_name": name})).json()["id"]
        for name in ("Ada", "Augusta")
    ]
    async with factory() as session:  # one touch each, counted and committed
        await consumers.interactions_recorded(session, [touch(survivor), touch(duplicate)])
        await session.commit()

    async def merge() -> None:
        async with factory() as session:
            await service.merge_contacts(session, uuid.UUID(survivor), [uuid.UUID(duplicate)])
            await session.commit()

    async with factory() as counting:
        # Two more touches of the survivor counted, not committed yet, while the merge runs.
        await consumers.interactions_recorded(counting, [touch(survivor), touch(survivor)])
        await counting.flush()
        merged = asyncio.create_task(merge())
        await until_a_transaction_waits_for_a_lock(counting)  # the merge, on the count
        await counting.commit()
    await merged

    async with factory() as session:
        total = (await session.get(ContactActivity, uuid.UUID(survivor))).interactions_total
    assert total == 4  # 1 + 2 of the survivor, 1 of the duplicate folded in


async def new_contact(client, **fields) -> uuid.UUID:
    response = await client.post("/v1/contacts", json={"first_name": "Ada", **fields})
    return uuid.UUID(response.json()["id"])


async def published(client, contact_id: uuid.UUID) -> list[Envelope]:
    """The contact's events in the order the relay publishes them."""
    async with app_of(client).state.session_factory() as session:
        rows = await session.scalars(
            select(OutboxMessage.value)
            .where(OutboxMessage.key == str(contact_id))
            .order_by(OutboxMessage.id)
        )
        return [decode_event(value) for value in rows]


@postgres_only
async def test_a_touch_of_a_contact_merged_earlier_counts_while_its_survivor_is_merged(client):
    factory = app_of(client).state.session_factory
    first, second, last = [await new_contact(client) for _ in range(3)]
    async with factory() as session:  # first merged into second, earlier; a touch of each
        await service.merge_contacts(session, second, [first])
        await consumers.interactions_recorded(session, [touch(str(first)), touch(str(second))])
        await session.commit()

    def merge_second_into_last(session: AsyncSession) -> Awaitable[object]:
        return service.merge_contacts(session, last, [second])

    def count_a_touch_of_first(session: AsyncSession) -> Awaitable[None]:
        return consumers.interactions_recorded(session, [touch(str(first))])

    # The count took first's lock only, read "merged into second", and counted it for second
    # after second's merge had folded second's count into last: last had 2, not 3.
    await one_write_waits_for_another(factory, merge_second_into_last, count_a_touch_of_first)
    async with factory() as session:
        assert (await session.get(ContactActivity, last)).interactions_total == 3
        assert await session.get(ContactActivity, second) is None


@postgres_only
async def test_touches_of_a_merged_contact_and_of_both_counted_at_once_take_turns(client):
    # A batch of touches of a merged contact locked it, then read where it went and locked the
    # survivor; another batch, of touches of both, had locked them in the locks' one order,
    # the survivor first. Each held a lock the other waited for: PostgreSQL ended one with a
    # deadlock (the five-service test's consumers met it).
    factory = app_of(client).state.session_factory
    survivor, merged = await in_lock_order(factory, [await new_contact(client) for _ in range(2)])
    async with factory() as session:
        await service.merge_contacts(session, survivor, [merged])
        await session.commit()

    async def count(*contact_ids: uuid.UUID) -> None:
        async with factory() as session:
            await consumers.interactions_recorded(session, [touch(str(c)) for c in contact_ids])
            await session.commit()

    async with factory() as holder:
        # The contacts held still: the first batch stops between its first lock and its look.
        await holder.execute(text("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE"))
        of_merged = asyncio.create_task(count(merged))
        await until_a_transaction_waits_for_a_lock(holder)
        of_both = asyncio.create_task(count(survivor, merged))
        await until_a_transaction_waits_for_a_lock(holder, 2)
        await holder.commit()
    await of_merged
    await of_both
    async with factory() as session:
        assert (await session.get(ContactActivity, survivor)).interactions_total == 3


@postgres_only
async def test_touches_counted_while_their_contact_is_merged_and_a_batch_of_both_take_turns(
    client,
):
    # A batch of touches of the merged contact read it as active, waited for its lock while
    # the merge ran, then found the survivor and locked it after the merged contact, against
    # the locks' one order; a batch of both had waited on the survivor meanwhile, held it and
    # waited for the merged one: a deadlock (the five-service test's consumers met it).
    factory = app_of(client).state.session_factory
    survivor, merged = await in_lock_order(factory, [await new_contact(client) for _ in range(2)])

    async def count(*contact_ids: uuid.UUID) -> None:
        async with factory() as session:
            await consumers.interactions_recorded(session, [touch(str(c)) for c in contact_ids])
            await session.commit()

    async with factory() as merging:
        await service.merge_contacts(merging, survivor, [merged])
        await merging.flush()
        of_merged = asyncio.create_task(count(merged))
        await until_a_transaction_waits_for_a_lock(merging)
        of_both = asyncio.create_task(count(survivor, merged))
        await until_a_transaction_waits_for_a_lock(merging, 2)
        await merging.commit()
    await of_merged
    await of_both
    async with factory() as session:
        assert (await session.get(ContactActivity, survivor)).interactions_total == 3


@postgres_only
async def test_one_identity_added_to_two_contacts_at_once_is_a_409_on_value(client):
    factory = app_of(client).state.session_factory
    ada, augusta = await new_contact(client), await new_contact(client)
    identity = IdentityIn(kind="telegram", value="ada_l")

    def add_to(contact_id: uuid.UUID) -> Callable[[AsyncSession], Awaitable[object]]:
        return lambda session: service.add_identity(session, contact_id, identity)

    with pytest.raises(Conflict) as error:
        await one_write_waits_for_another(factory, add_to(ada), add_to(augusta))
    # It named "email", with a message about creating a contact.
    assert error.value.field == "value"
    assert "telegram was just added" in error.value.message


@postgres_only
async def test_one_identity_added_to_a_contact_twice_at_once_is_added_once(client):
    factory = app_of(client).state.session_factory
    ada = await new_contact(client)

    def add_it(session: AsyncSession) -> Awaitable[object]:
        return service.add_identity(session, ada, IdentityIn(kind="telegram", value="ada_l"))

    # The later one waits for the earlier and finds it done; it was a 409 naming Ada herself.
    await one_write_waits_for_another(factory, add_it, add_it)
    updates = [e for e in await published(client, ada) if e.type == CONTACT_UPDATED]
    assert len(updates) == 1


@postgres_only
async def test_a_change_of_a_contact_while_it_is_merged_is_a_409(client):
    factory = app_of(client).state.session_factory
    survivor, duplicate = await new_contact(client), await new_contact(client)

    def merge(session: AsyncSession) -> Awaitable[object]:
        return service.merge_contacts(session, survivor, [duplicate])

    def rename(session: AsyncSession) -> Awaitable[object]:
        return service.update_contact(session, duplicate, ContactUpdate(last_name="Byron"))

    # The change went through after the merge, and its event came after contact.merged: a
    # snapshot of the merged contact, as if it were a customer of its own.
    with pytest.raises(Conflict) as error:
        await one_write_waits_for_another(factory, merge, rename)
    assert error.value.details == {"merged_into": str(survivor)}
    assert [e.type for e in await published(client, duplicate)][-1] == CONTACT_MERGED


@postgres_only
async def test_two_changes_of_a_contact_at_once_each_publish_what_is_committed(client):
    factory = app_of(client).state.session_factory
    ada = await new_contact(client)

    def rename(session: AsyncSession) -> Awaitable[object]:
        return service.update_contact(session, ada, ContactUpdate(last_name="Lovelace"))

    def opt_out(session: AsyncSession) -> Awaitable[object]:
        preferences = ContactPreferences(opted_out_channels=["sms"])
        return service.set_preferences(session, ada, preferences)

    await one_write_waits_for_another(factory, rename, opt_out)
    last = [e for e in await published(client, ada) if e.type == CONTACT_UPDATED][-1]
    # The later snapshot lacked the earlier change: every service kept last_name None.
    assert last.data["last_name"] == "Lovelace"
    assert last.data["preferences"]["opted_out_channels"] == ["sms"]


@postgres_only
async def test_an_unsubscribe_while_the_contact_changes_keeps_the_change(client):
    factory = app_of(client).state.session_factory
    ada = await new_contact(client)
    unsubscribed = Envelope(
        id=str(uuid.uuid4()),
        source=marketing.SOURCE,
        type=marketing.UNSUBSCRIBED,
        data={"customer_id": str(ada), "channel": "email", "unsubscribed_at": utcnow()},
    )

    def prefer_sms(session: AsyncSession) -> Awaitable[object]:
        return service.set_preferences(session, ada, ContactPreferences(preferred_channel="sms"))

    def unsubscribe(session: AsyncSession) -> Awaitable[None]:
        return consumers.unsubscribed(session, unsubscribed)

    await one_write_waits_for_another(factory, prefer_sms, unsubscribe)
    preferences = (await client.get(f"/v1/contacts/{ada}")).json()["preferences"]
    # The unsubscribe read the preferences before the change committed and wrote them back.
    assert preferences["preferred_channel"] == "sms"
    assert preferences["opted_out_channels"] == ["email"]


@postgres_only
async def test_one_file_imported_twice_at_once_the_later_is_a_409(client):
    factory = app_of(client).state.session_factory
    rows = importer.parse_rows(b"first_name,email\nAda,ada@example.com\n", "text/csv", 10)

    def import_it(session: AsyncSession) -> Awaitable[object]:
        return importer.import_contacts(session, rows)

    # Both found the e-mail free; the later insert failed on its key: a 500.
    with pytest.raises(Conflict) as error:
        await one_write_waits_for_another(factory, import_it, import_it)
    assert error.value.field == "body"
    assert "send the file again" in error.value.message
    again = await client.post(
        "/v1/contacts/import",
        content=b"first_name,email\nAda,ada@example.com\n",
        headers={"content-type": "text/csv"},
    )
    assert again.json()["created"] == 0  # sent again, the row is reported as taken
    assert again.json()["errors"][0]["field"] == "email"


@postgres_only
async def test_an_import_while_the_contact_changes_publishes_what_is_committed(client):
    factory = app_of(client).state.session_factory
    created = await client.post("/v1/contacts", json={"first_name": "Ada", "external_id": "e-1"})
    ada = uuid.UUID(created.json()["id"])
    rows = importer.parse_rows(b"first_name,external_id\nAugusta,e-1\n", "text/csv", 10)

    def rename(session: AsyncSession) -> Awaitable[object]:
        return service.update_contact(session, ada, ContactUpdate(last_name="Lovelace"))

    def import_it(session: AsyncSession) -> Awaitable[object]:
        return importer.import_contacts(session, rows)

    await one_write_waits_for_another(factory, rename, import_it)
    last = [e for e in await published(client, ada) if e.type == CONTACT_UPDATED][-1]
    # The import read the contact before the change committed: its snapshot, the contact's
    # latest state on the compacted topic, lacked the last name.
    assert (last.data["first_name"], last.data["last_name"]) == ("Augusta", "Lovelace")


@postgres_only
async def test_the_contact_policy_set_twice_at_once_keeps_the_later(client):
    factory = app_of(client).state.session_factory

    def set_cap(cap: int) -> Callable[[AsyncSession], Awaitable[ContactPolicy]]:
        return lambda session: service.set_policy(session, ContactPolicy(max_outbound_per_week=cap))

    # Both found no policy row, and the later insert failed on its key: a 500.
    await one_write_waits_for_another(factory, set_cap(3), set_cap(9))
    assert (await client.get("/v1/contact-policy")).json()["max_outbound_per_week"] == 9
