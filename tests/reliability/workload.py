"""Writes through the real HTTP APIs, and the reconciliation every fault test ends with."""

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.testing import eventually

from .harness import Database, consumer_names, log_end

CHANNELS = ("phone", "email", "chat", "sms", "web")


async def create_contacts(client: httpx.AsyncClient, url: str, count: int) -> list[uuid.UUID]:
    async def one(index: int) -> uuid.UUID:
        response = await client.post(
            f"{url}/v1/contacts",
            json={"first_name": f"Rel{index}", "last_name": uuid.uuid4().hex[:10]},
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def touch(customer_id: uuid.UUID, index: int, **extra: Any) -> dict[str, Any]:
    return {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": str(customer_id),
        "channel": CHANNELS[index % len(CHANNELS)],
        "direction": "outbound" if index % 2 else "inbound",
        "kind": "call",
        "subject": f"touch {index}",
        **extra,
    }


async def record_touches(
    client: httpx.AsyncClient, url: str, customers: list[uuid.UUID], per_customer: int
) -> list[uuid.UUID]:
    """Single POST /v1/interactions, each customer's touches one after another (causal order)."""

    async def for_customer(customer_id: uuid.UUID) -> list[uuid.UUID]:
        ids = []
        for index in range(per_customer):
            body = touch(customer_id, index)
            response = await client.post(f"{url}/v1/interactions", json=body)
            assert response.status_code == 201, response.text
            ids.append(uuid.UUID(body["interaction_id"]))
        return ids

    nested = await asyncio.gather(*(for_customer(c) for c in customers))
    return [i for ids in nested for i in ids]


async def record_batch(
    client: httpx.AsyncClient, url: str, customers: list[uuid.UUID], size: int
) -> list[uuid.UUID]:
    """One POST /v1/interactions:batch: one outbox INSERT, so one relay batch of many rows."""
    items = [touch(customers[i % len(customers)], i) for i in range(size)]
    response = await client.post(f"{url}/v1/interactions:batch", json={"items": items})
    assert response.status_code == 201, response.text
    return [uuid.UUID(item["interaction_id"]) for item in items]


async def open_tickets(
    client: httpx.AsyncClient, url: str, customers: list[uuid.UUID]
) -> list[uuid.UUID]:
    """A ticket per customer and a customer reply on it (two touches each)."""

    async def one(customer_id: uuid.UUID) -> uuid.UUID:
        response = await client.post(
            f"{url}/v1/tickets",
            json={
                "customer_id": str(customer_id),
                "subject": "Invoice is wrong",
                "description": "The amount does not match the order.",
                "channel": "email",
            },
        )
        assert response.status_code == 201, response.text
        ticket_id = response.json()["id"]
        reply = await client.post(
            f"{url}/v1/tickets/{ticket_id}/messages",
            json={"author_type": "customer", "body": "Any news?"},
        )
        assert reply.status_code == 201, reply.text
        return uuid.UUID(ticket_id)

    return list(await asyncio.gather(*(one(c) for c in customers)))


# ---- reconciliation ---------------------------------------------------------------------------


async def outbox(database: Database) -> list[dict[str, Any]]:
    """Every outbox row: event id, topic, type, key, the interaction id for touches."""
    rows = await database.rows(
        "SELECT id, event_id, topic, event_type, key, value, published_at FROM outbox ORDER BY id"
    )
    found = []
    for row_id, event_id, topic, event_type, key, value, published_at in rows:
        data = json.loads(bytes(value))["data"] if value is not None else {}
        found.append(
            {
                "id": row_id,
                "event_id": str(uuid.UUID(str(event_id))),
                "topic": topic,
                "type": event_type,
                "key": key,
                "interaction_id": data.get("interaction_id"),
                "published": published_at is not None,
            }
        )
    return found


async def drained(*databases: Database, wait_s: float = 60) -> None:
    """Wait until every outbox row is marked published."""

    async def check() -> None:
        for database in databases:
            pending = await database.scalars(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            assert pending == [0], f"{pending[0]} outbox rows not published"

    await eventually(check, timeout=wait_s, interval=0.2)


async def reconcile(
    producers: list[Database],
    consumers: dict[str, Database],
    *,
    wait_s: float = 60,
    erased: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The platform's promise, checked on the databases: every consumer of every service has
    applied exactly the events the producers' outboxes hold for its topics (none lost, none
    extra), and the projections hold each touch exactly once (but those of ``erased``
    customers, which GDPR removes). Returns what it compared."""
    await drained(*producers, wait_s=wait_s)
    events = [row for database in producers for row in await outbox(database)]
    ids = [row["event_id"] for row in events]
    assert len(ids) == len(set(ids)), "an event id appears twice across the outboxes"
    touches = {
        row["interaction_id"] for row in events if row["type"].endswith("interaction.recorded.v1")
    }
    report: dict[str, Any] = {"events": len(events), "touches": len(touches)}

    for service, database in consumers.items():
        for name, topics in consumer_names(service).items():
            expected = {
                row["event_id"]
                for row in events
                if row["topic"] in topics and row["type"] != "tombstone"
            }

            async def applied(
                name: str = name, expected: set[str] = expected, database: Database = database
            ) -> None:
                got = await database.scalars(
                    "SELECT event_id FROM processed_events WHERE consumer = :name", name=name
                )
                got_set = {str(uuid.UUID(str(e))) for e in got}
                assert len(got) == len(got_set)
                missing, extra = expected - got_set, got_set - expected
                lost = [row for row in events if row["event_id"] in missing][:3]
                assert not missing and not extra, (
                    f"{name}: {len(missing)} events lost, {len(extra)} not in any outbox;"
                    " the first lost: "
                    + "; ".join(f"{r['type']} on {r['topic']} key {r['key']}" for r in lost)
                )

            await eventually(applied, timeout=wait_s, interval=0.2)
            report[name] = len(expected)

        if service == "support":
            timeline = await database.scalars("SELECT interaction_id FROM timeline")
            timeline_ids = [str(uuid.UUID(str(i))) for i in timeline]
            kept = {
                row["interaction_id"]
                for row in events
                if row["interaction_id"] is not None and row["key"] not in erased
            }
            assert Counter(timeline_ids) == Counter(kept), (
                f"timeline differs from the touches: {len(set(timeline_ids) - kept)} extra"
                f" (erased customers' touches: {len(set(timeline_ids) & (touches - kept))}),"
                f" {len(kept - set(timeline_ids))} missing"
            )
        if service == "contacts":
            # A counter, not an upsert: a touch applied twice would count twice.
            counted = await database.rows(
                "SELECT contact_id, interactions_total FROM contact_activity"
            )
            total = sum(n for contact, n in counted if str(uuid.UUID(str(contact))) not in erased)
            sent = sum(1 for row in events if row["interaction_id"] and row["key"] not in erased)
            assert total == sent, f"contacts counted {total} touches, {sent} sent"
    return report


async def topic_records(bootstrap: str, topic: str, since: dict[Any, int]) -> list[Any]:
    """Every record of ``topic`` from the ``since`` offsets to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = list(since)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, since[tp])
        records: list[Any] = []
        quiet = 0
        while quiet < 3:
            batches = await consumer.getmany(timeout_ms=200)
            quiet = 0 if any(batches.values()) else quiet + 1
            for batch in batches.values():
                records += batch
        return records
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[Any, int]:
    """The current end of every partition of ``topic`` (read, not asked: see log_end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        return await log_end(consumer, tps)
    finally:
        await consumer.stop()
