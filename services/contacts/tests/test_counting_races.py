"""Touch counting against a concurrent merge (PostgreSQL; SQLite has one writer at a time)."""

import asyncio
import uuid

import pytest

from services.contacts import consumers, service
from services.contacts.models import ContactActivity
from shared.events import INTERACTION_RECORDED, Envelope
from shared.testing import app_of


def touch(customer_id: str) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        source="/crm/test",
        type=INTERACTION_RECORDED,
        data={
            "interaction_id": str(uuid.uuid4()),
            "customer_id": customer_id,
            "department": "sales",
            "channel": "phone",
            "direction": "outbound",
            "kind": "call",
            "occurred_at": "2026-11-02T10:00:00Z",
        },
    )


async def test_a_merge_while_touches_are_being_counted_loses_no_count(client):
    factory = app_of(client).state.session_factory
    async with factory() as probe:
        if probe.get_bind().dialect.name != "postgresql":
            pytest.skip("SQLite serialises writers by itself")
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
        await asyncio.sleep(0.3)  # the merge is now waiting for the count
        await counting.commit()
    await merged

    async with factory() as session:
        total = (await session.get(ContactActivity, uuid.UUID(survivor))).interactions_total
    assert total == 4  # 1 + 2 of the survivor, 1 of the duplicate folded in
