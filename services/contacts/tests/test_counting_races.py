"""Touch counting against a concurrent merge (PostgreSQL; on SQLite the counting transaction
holds the database's one write lock from its start: ``shared.db.lock_customers``)."""

import asyncio
import uuid

from services.contacts import consumers, service
from services.contacts.models import ContactActivity
from services.contacts.tests.test_bus import interaction
from shared.events import Envelope, decode_event
from shared.testing import app_of, postgres_only, until_a_transaction_waits_for_a_lock


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
