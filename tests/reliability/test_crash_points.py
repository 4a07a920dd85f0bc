"""SIGKILL a real service process at the relay's and the consumers' crash points, restart it,
and reconcile: every outbox event applied exactly once by every consumer, nothing lost.

Each test first writes through the APIs with the component under test switched off, so the
crash hits a known backlog; then the process restarts with ``CRM_CRASH_AT`` set, dies at the
point, and restarts once more without it."""

import asyncio
import json
import uuid

from shared import topics

from .harness import Platform
from .workload import (
    create_contacts,
    drained,
    end_offsets,
    open_tickets,
    outbox,
    reconcile,
    record_batch,
    record_touches,
    topic_records,
)

SIGKILLED = -9


async def write_mix(client, contacts, support) -> set[uuid.UUID]:
    """Contacts, single touches, a 40-touch batch, tickets with replies: every kind of write."""
    customers = await create_contacts(client, contacts.url, 5)
    accepted = set(await record_touches(client, support.url, customers, per_customer=3))
    accepted |= set(await record_batch(client, support.url, customers, size=40))
    await open_tickets(client, support.url, customers[:3])
    return accepted


def event_ids(records) -> list[str]:
    return [json.loads(r.value)["id"] for r in records if r.value is not None]


async def test_relay_killed_before_send_mid_batch_and_after_ack(platform: Platform, client) -> None:
    """One backlog, three crashes in turn: nothing sent; the first row of the batch sent; the
    whole batch acknowledged but not marked. Then a clean restart publishes it all again."""
    contacts_db, support_db = (
        await platform.database("contacts"),
        await platform.database("support"),
    )
    contacts = platform.service("contacts", contacts_db)
    support = platform.service("support", support_db)
    # The support relay is off: the backlog waits in the outbox for the crashes.
    await asyncio.gather(contacts.start(), support.start(SUPPORT_RUN_RELAY="false"))
    accepted = await write_mix(client, contacts, support)
    await drained(contacts_db)
    backlog = await outbox(support_db)
    touches = [row for row in backlog if row["topic"] == topics.INTERACTIONS]
    assert backlog and not any(row["published"] for row in backlog)
    since = await end_offsets(platform.bootstrap, topics.INTERACTIONS)
    support.stop()

    ours = {row["event_id"] for row in touches}

    async def sent_of_ours() -> list[str]:
        """The backlog's touches on the topic (other tests' processes may write there too)."""
        records = await topic_records(platform.bootstrap, topics.INTERACTIONS, since)
        return [event_id for event_id in event_ids(records) if event_id in ours]

    sent: list[str] = []
    for point in ("relay.before_send", "relay.mid_batch", "relay.after_send"):
        await support.spawn(CRM_CRASH_AT=point)
        assert await support.exited() == SIGKILLED, support.tail()
        # Whatever reached the broker, the crash left the outbox unmarked.
        assert not any(row["published"] for row in await outbox(support_db)), point
        on_topic = await sent_of_ours()
        new = len(on_topic) - len(sent)
        if point == "relay.before_send":
            assert new == 0
        elif point == "relay.mid_batch":
            assert 1 <= new < len(touches), f"{new} of {len(touches)} sent"
        else:
            assert new == len(touches)
        sent = on_topic

    await support.start()
    report = await reconcile(
        [contacts_db, support_db], {"support": support_db, "contacts": contacts_db}
    )
    in_outbox = {row["interaction_id"] for row in await outbox(support_db)}
    assert {str(i) for i in accepted} <= in_outbox, "a touch answered 201 has no outbox row"
    assert report["touches"] == len(accepted) + 6  # + ticket opened and reply, 3 tickets
    # The restarted relays sent again what the killed ones had sent: the topic holds
    # duplicates, and every consumer applied each event once all the same.
    again = await sent_of_ours()
    assert len(again) > len(set(again)) == len(touches)


async def test_consumers_killed_after_db_commit_before_offset_commit(
    platform: Platform, client
) -> None:
    contacts_db, support_db = (
        await platform.database("contacts"),
        await platform.database("support"),
    )
    contacts = platform.service("contacts", contacts_db)
    support = platform.service("support", support_db)
    # Writes first, consumers off: the crash then hits a batch of known events.
    await asyncio.gather(
        contacts.start(CONTACTS_RUN_CONSUMERS="false"), support.start(SUPPORT_RUN_CONSUMERS="false")
    )
    accepted = await write_mix(client, contacts, support)
    await drained(contacts_db, support_db)
    await asyncio.gather(asyncio.to_thread(contacts.stop), asyncio.to_thread(support.stop))

    crash = {"CRM_CRASH_AT": "consumer.after_db_commit"}
    await contacts.spawn(**crash)
    await support.spawn(**crash)
    assert await contacts.exited() == SIGKILLED, contacts.tail()
    assert await support.exited() == SIGKILLED, support.tail()
    # Each applied a batch and died before committing its offsets: it will get it again.
    for database in (contacts_db, support_db):
        assert await database.scalars("SELECT count(*) FROM processed_events") != [0]

    await asyncio.gather(contacts.start(), support.start())
    report = await reconcile(
        [contacts_db, support_db], {"support": support_db, "contacts": contacts_db}
    )
    assert report["touches"] == len(accepted) + 6
