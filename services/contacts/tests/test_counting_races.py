"""Races on PostgreSQL: touch counting against a concurrent merge (on SQLite the counting
transaction holds the database's one write lock from its start: ``shared.db.lock_customers``),
one identity added by two requests at once, and the contact policy set by two at once."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import consumers, service
from services.contacts.models import ContactActivity
from services.contacts.schemas import IdentityIn
from services.contacts.tests.test_bus import interaction
from shared.errors import Conflict
from shared.events import ContactPolicy, Envelope, decode_event
from shared.testing import (
    app_of,
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


@postgres_only
async def test_the_same_identity_added_twice_at_once_is_a_409_on_value(client):
    factory = app_of(client).state.session_factory
    contact_id = uuid.UUID(
        (await client.post("/v1/contacts", json={"first_name": "Ada"})).json()["id"]
    )
    identity = IdentityIn(kind="telegram", value="ada_l")

    def add_it(session: AsyncSession) -> Awaitable[object]:
        return service.add_identity(session, contact_id, identity)

    with pytest.raises(Conflict) as error:
        await one_write_waits_for_another(factory, add_it, add_it)
    # It named "email", with a message about creating a contact.
    assert error.value.field == "value"
    assert "telegram was just added" in error.value.message


@postgres_only
async def test_the_contact_policy_set_twice_at_once_keeps_the_later(client):
    factory = app_of(client).state.session_factory

    def set_cap(cap: int) -> Callable[[AsyncSession], Awaitable[ContactPolicy]]:
        return lambda session: service.set_policy(session, ContactPolicy(max_outbound_per_week=cap))

    # Both found no policy row, and the later insert failed on its key: a 500.
    await one_write_waits_for_another(factory, set_cap(3), set_cap(9))
    assert (await client.get("/v1/contact-policy")).json()["max_outbound_per_week"] == 9
