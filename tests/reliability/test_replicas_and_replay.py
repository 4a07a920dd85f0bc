"""Two relay replicas of one service on one database keep each customer's order on the topic,
even when the lease holder is killed; a full replay into a fresh database rebuilds the same
read model."""

import asyncio
import hashlib
import json
import os
import signal
import uuid
from collections import defaultdict

from shared import topics
from shared.testing import eventually

from .harness import Database, Platform, position_groups
from .workload import (
    create_contacts,
    end_offsets,
    open_tickets,
    outbox,
    reconcile,
    record_batch,
    record_touches,
    topic_records,
    touch,
)


async def lease_holder_pid(database: Database) -> int | None:
    holders = await database.scalars("SELECT holder FROM relay_lease WHERE name = 'outbox'")
    return int(holders[0].split(":")[1]) if holders else None


async def test_two_relay_replicas_keep_per_customer_order(platform: Platform, client) -> None:
    support_db = await platform.database("support")
    lease = {"SUPPORT_RELAY_LEASE_S": "2"}
    first = platform.service("support", support_db, **lease)
    second = platform.service("support", support_db, **lease)
    second.position_groups = False  # the first one did; the group now has a live member
    await first.start()
    await second.start()
    replicas = [first, second]
    since = await end_offsets(platform.bootstrap, topics.INTERACTIONS)
    customers = [uuid.uuid4() for _ in range(8)]
    written: dict[str, list[str]] = defaultdict(list)  # customer -> touches in causal order
    killed = asyncio.Event()

    async def customer_session(customer: uuid.UUID) -> None:
        for index in range(30):
            # Each touch goes to the other replica than the one before, once the client has
            # its 201: the second is caused by the first and must never overtake it.
            alive = [r for r in replicas if r.process.poll() is None]
            replica = alive[index % len(alive)]
            body = touch(customer, index)
            try:
                response = await client.post(f"{replica.url}/v1/interactions", json=body)
            except Exception:
                continue  # the replica was killed under this request: nothing acknowledged
            if response.status_code == 201:
                written[str(customer)].append(body["interaction_id"])
            if index == 10 and not killed.is_set():
                killed.set()
                holder = await lease_holder_pid(support_db)
                victim = next(r for r in replicas if r.pid == holder)
                os.kill(victim.pid, signal.SIGKILL)  # the other must take the lease over
                victim.process.wait()

    await asyncio.gather(*(customer_session(c) for c in customers))
    survivor = next(r for r in replicas if r.process.poll() is None)
    # One more write after the lease expired: the survivor now publishes.
    await record_batch(client, survivor.url, customers, size=16)
    await reconcile([support_db], {"support": support_db})
    assert await lease_holder_pid(support_db) == survivor.pid

    first_seen: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for record in await topic_records(platform.bootstrap, topics.INTERACTIONS, since):
        data = json.loads(record.value)["data"]
        if data["interaction_id"] not in seen:
            seen.add(data["interaction_id"])
            first_seen[record.key.decode()].append(data["interaction_id"])
    for customer, ids in written.items():
        on_topic = [i for i in first_seen[customer] if i in set(ids)]
        assert on_topic == ids, f"customer {customer}: order on the topic differs from causal"
    assert sum(len(ids) for ids in written.values()) > 200


def digest(rows: list[tuple]) -> str:
    canonical = sorted(json.dumps([str(v) for v in row]) for row in rows)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


async def read_model(database: Database, customers: set[str]) -> dict[str, str]:
    """Hashes of the support read model for these customers (timeline, profiles, tickets)."""
    timeline = await database.rows(
        "SELECT interaction_id, customer_id, department, channel, direction, kind, subject,"
        " occurred_at, actor, sentiment, outcome, ref_type, ref_id FROM timeline"
    )
    profiles = await database.rows(
        "SELECT contact_id, status, preferences, merged_into FROM customer_profiles"
    )
    ours = [r for r in timeline if str(uuid.UUID(str(r[1]))) in customers]
    return {
        "timeline": digest(ours),
        "timeline_rows": str(len(ours)),
        "profiles": digest([r for r in profiles if str(uuid.UUID(str(r[0]))) in customers]),
    }


async def timeline_diff(before: Database, after: Database, customers: set[str]) -> str:
    query = "SELECT interaction_id, customer_id, kind FROM timeline"
    rows = [
        {str(uuid.UUID(str(r[0]))): (str(uuid.UUID(str(r[1]))), r[2]) for r in await db.rows(query)}
        for db in (before, after)
    ]
    differ = [
        f"{i}: {rows[0].get(i)} -> {rows[1].get(i)}"
        for i in rows[0]
        if rows[0][i] != rows[1].get(i) and rows[0][i][0] in customers
    ]
    return f"{len(differ)} timeline rows differ: " + "; ".join(differ[:5])


async def test_full_replay_into_a_fresh_database_rebuilds_the_same_read_model(
    platform: Platform, client
) -> None:
    contacts_db, support_db = (
        await platform.database("contacts"),
        await platform.database("support"),
    )
    contacts = platform.service("contacts", contacts_db)
    support = platform.service("support", support_db)
    await asyncio.gather(contacts.start(), support.start())
    customers = await create_contacts(client, contacts.url, 8)
    await record_touches(client, support.url, customers, per_customer=3)
    await record_batch(client, support.url, customers, size=40)
    await open_tickets(client, support.url, customers[:4])
    # Lifecycle events the projection must apply in order: preferences, a merge, an erasure.
    preferences = {"opted_out_channels": ["sms"], "max_outbound_per_week": 3}
    response = await client.put(
        f"{contacts.url}/v1/contacts/{customers[0]}/preferences", json=preferences
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        f"{contacts.url}/v1/contacts/{customers[1]}/merge",
        json={"duplicate_ids": [str(customers[2])]},
    )
    assert response.status_code == 200, response.text
    assert (await client.delete(f"{contacts.url}/v1/contacts/{customers[3]}")).status_code == 204
    await record_touches(client, support.url, customers[1:2], per_customer=2)
    await reconcile(
        [contacts_db, support_db],
        {"support": support_db, "contacts": contacts_db},
        erased=frozenset({str(customers[3])}),
    )
    ours = {str(c) for c in customers}
    original = await read_model(support_db, ours)
    assert int(original["timeline_rows"]) > 50

    # A fresh database and the consumer groups back at the start of every topic: the new
    # process reads the whole history (other tests' customers too; compared on ours).
    support.stop()
    fresh_db = await platform.database("support-replay")
    replay = platform.service("support", fresh_db, SUPPORT_RUN_SCHEDULER="false")
    replay.position_groups = False
    await position_groups(platform.bootstrap, "support", at="start")
    await replay.start()

    async def rebuilt() -> None:
        assert await read_model(fresh_db, ours) == original, await timeline_diff(
            support_db, fresh_db, ours
        )

    await eventually(rebuilt, timeout=45, interval=0.5)
    # Nothing was published by the replay itself: a projection rebuild is silent.
    assert await outbox(fresh_db) == []
