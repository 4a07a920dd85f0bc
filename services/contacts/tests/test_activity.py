"""Contacts' count of touches: a fetched batch applied in one transaction (the consumer's
batch handler), and the folding of a batch's touches per contact."""

import uuid
from datetime import UTC, datetime

from services.contacts import consumers
from services.contacts.consumers import FoldedTouches, fold_touches
from services.contacts.tests.test_bus import interaction
from shared.events import InteractionRecorded, decode_event
from shared.testing import app_of


def touch(customer_id: str, direction: str, day: int) -> InteractionRecorded:
    _, value, _ = interaction(customer_id, direction, occurred_at=f"2026-11-{day:02d}T09:00:00Z")
    return InteractionRecorded.model_validate(decode_event(value).data)


def at(day: int) -> datetime:
    return datetime(2026, 11, day, 9, tzinfo=UTC)


async def test_a_batch_counts_every_touch_and_keeps_the_latest_of_each_direction(client):
    contact_id = (await client.post("/v1/contacts", json={"first_name": "Ada"})).json()["id"]
    factory = app_of(client).state.session_factory

    async def apply(*touches: tuple[str, int]) -> dict:
        events = [
            decode_event(interaction(contact_id, d, occurred_at=f"2026-11-{day:02d}T09:00:00Z")[1])
            for d, day in touches
        ]
        async with factory() as session:
            await consumers.interactions_recorded(session, events)
            await session.commit()
        return (await client.get(f"/v1/contacts/{contact_id}")).json()["activity"]

    found = await apply(("outbound", 25))
    assert found["interactions_total"] == 1
    # Out of order, both directions, all earlier than the outbound touch already counted.
    found = await apply(("inbound", 21), ("outbound", 20), ("inbound", 23), ("inbound", 22))
    assert found == {
        "interactions_total": 5,
        "last_interaction_at": "2026-11-25T09:00:00Z",
        "last_inbound_at": "2026-11-23T09:00:00Z",
        "last_outbound_at": "2026-11-25T09:00:00Z",
    }


def test_touches_fold_into_the_contact_they_count_for():
    ada, augusta, erased = (str(uuid.uuid4()) for _ in range(3))
    counted_for = {
        uuid.UUID(ada): uuid.UUID(ada),
        uuid.UUID(augusta): uuid.UUID(ada),  # merged into Ada
        uuid.UUID(erased): None,
    }
    touches = [
        touch(augusta, "outbound", 24),
        touch(ada, "inbound", 20),
        touch(erased, "inbound", 30),
        touch(ada, "inbound", 22),
        touch(augusta, "inbound", 21),
    ]

    assert fold_touches(touches, counted_for) == {
        uuid.UUID(ada): FoldedTouches(
            count=4, last=at(24), last_inbound=at(22), last_outbound=at(24)
        )
    }
