"""The outbox relay against the real broker and a real database."""

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from sqlalchemy import event as sa_event
from sqlalchemy import select

from shared import topics
from shared.bus import Bus
from shared.errors import TooLarge
from shared.events import CONTACT_ERASED, ContactErased, utcnow
from shared.models import OutboxMessage
from shared.outbox import (
    MAX_EVENT_BYTES,
    NOTIFY,
    NOTIFY_CHANNEL,
    add_event,
    add_rows,
    add_rows_before_commit,
    add_tombstone,
    event_row,
)
from shared.relay import OutboxRelay
from shared.settings import KafkaSettings
from shared.testing import TopicTail, on_postgres

pytestmark = pytest.mark.bus


async def write_events(session_factory, keys: list[str], per_key: int) -> None:
    """Interleaved events, each carrying its key's sequence number, one transaction per event."""
    for seq in range(per_key):
        for key in keys:
            async with session_factory() as session:
                add_event(
                    session,
                    topic=topics.ANALYTICS,
                    key=key,
                    event_type="crm.test.seq.v1",
                    source="/crm/test",
                    subject=key,
                    data={"seq": seq},
                )
                await session.commit()


def sequences(records, keys: list[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {key: [] for key in keys}
    for record in records:
        key = record.key.decode()
        if key in found:
            found[key].append(json.loads(record.value)["data"]["seq"])
    return found


class TestOutboxRelay:
    async def test_published_rows_past_the_retention_go_unsent_ones_stay(
        self, session_factory, kafka_settings
    ):
        bus = Bus(kafka_settings, "relay-retention")
        relay = OutboxRelay(
            service="test", session_factory=session_factory, bus=bus, retention=timedelta(0)
        )
        try:
            sent, unsent = str(uuid.uuid4()), str(uuid.uuid4())
            await write_events(session_factory, [sent], 2)
            assert await relay.publish_pending() == 2
            await write_events(session_factory, [unsent], 1)
            await relay.purge_old()
        finally:
            await bus.close()
        async with session_factory() as session:
            kept = (await session.scalars(select(OutboxMessage.key))).all()
        assert kept == [unsent]

    async def test_two_replicas_publish_everything_in_per_key_order(
        self, session_factory, kafka_settings, kafka_bootstrap
    ):
        keys = [str(uuid.uuid4()) for _ in range(4)]
        buses = [Bus(kafka_settings, f"relay-{i}") for i in range(2)]
        relays = [
            OutboxRelay(
                service="test",
                session_factory=session_factory,
                bus=bus,
                batch_size=7,
                poll_interval_s=0.05,
                lease_s=0.3,
            )
            for bus in buses
        ]
        async with TopicTail(kafka_bootstrap, topics.ANALYTICS) as tail:
            tasks = [asyncio.create_task(relay.run()) for relay in relays]
            try:
                await write_events(session_factory, keys, per_key=30)
                ours = lambda r: r.key.decode() in keys  # noqa: E731
                records = await tail.collect(ours, count=120)
                while len({(r.key, r.value) for r in records}) < 120:  # repeats came first
                    records = await tail.collect(ours, count=len(records) + 1)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for bus in buses:
                    await bus.close()
        for key, seqs in sequences(records, keys).items():
            # A replica whose batch outlives its lease may send it again after the other took
            # over (at least once; consumers drop repeats by event id): what must never happen
            # is an event first appearing before one written earlier.
            first_seen = list(dict.fromkeys(seqs))
            assert first_seen == list(range(30)), f"order went backwards for {key}: {seqs}"

    async def test_a_large_batch_arrives_whole_in_key_order_where_send_would_put_it(
        self, session_factory, kafka_settings, kafka_bootstrap
    ):
        """600 rows of about 1 KB in one relay batch (several record batches per partition: one
        holds 16 KB): none lost, none repeated, each key's rows in outbox order on the
        partition a plain producer's send() picks for that key."""
        keys = [str(uuid.uuid4()) for _ in range(12)]
        async with session_factory() as session:
            await add_rows(
                session,
                [
                    event_row(
                        topic=topics.ANALYTICS,
                        key=keys[n % len(keys)],
                        event_type="crm.test.seq.v1",
                        source="/crm/test",
                        data={"seq": n // len(keys), "padding": "x" * 1000},
                    )
                    for n in range(600)
                ],
            )
            await session.commit()
        relay = OutboxRelay(
            service="test",
            session_factory=session_factory,
            bus=Bus(kafka_settings, "relay-large"),
            batch_size=1000,
        )
        async with TopicTail(kafka_bootstrap, topics.ANALYTICS) as tail:
            try:
                assert await relay.publish_pending() == 600
                ours = lambda r: r.key.decode() in keys  # noqa: E731
                records = await tail.collect(ours, count=600)
                await asyncio.sleep(0.5)  # a repeat would arrive meanwhile
                records = await tail.collect(ours, count=600)
                reference = await relay.bus.producer()
                expected = {
                    key: (
                        await reference.send_and_wait(topics.ANALYTICS, b"{}", key.encode())
                    ).partition
                    for key in keys
                }
            finally:
                await relay.bus.close()
        assert len(records) == 600
        assert sequences(records, keys) == {key: list(range(50)) for key in keys}
        assert {(r.key.decode(), r.partition) for r in records} == set(expected.items())

    async def test_only_the_lease_holder_publishes(self, session_factory, kafka_settings):
        first = OutboxRelay(
            service="test",
            session_factory=session_factory,
            bus=Bus(kafka_settings, "a"),
            lease_s=60,
        )
        second = OutboxRelay(
            service="test",
            session_factory=session_factory,
            bus=Bus(kafka_settings, "b"),
            lease_s=60,
        )
        await write_events(session_factory, ["k"], per_key=1)
        try:
            assert await first.publish_pending() == 1
            await write_events(session_factory, ["k"], per_key=1)
            assert await second.publish_pending() == 0  # the lease is held by the first
            await first.release_lease()
            assert await second.publish_pending() == 1
        finally:
            await first.bus.close()
            await second.bus.close()

    async def test_a_commit_wakes_the_relay_without_waiting_for_the_poll(
        self, session_factory, kafka_settings, kafka_bootstrap
    ):
        bus = Bus(kafka_settings, "wake")
        relay = OutboxRelay(
            service="test", session_factory=session_factory, bus=bus, poll_interval_s=3600
        )  # only a wake-up can make it publish
        session_factory.configure(info={NOTIFY: relay.wake})
        key = str(uuid.uuid4())
        async with TopicTail(kafka_bootstrap, topics.ANALYTICS) as tail:
            task = asyncio.create_task(relay.run())
            try:
                await asyncio.sleep(0.3)  # the relay has polled once and sleeps for an hour
                await write_events(session_factory, [key], per_key=1)
                await tail.collect(lambda r: r.key == key.encode(), timeout=10)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await bus.close()

    async def test_a_rolled_back_transaction_publishes_nothing(
        self, session_factory, kafka_settings
    ):
        async with session_factory() as session:
            add_event(
                session, topic=topics.ANALYTICS, key="k", event_type="t", source="/s", data={}
            )
            await session.rollback()
        relay = OutboxRelay(
            service="test", session_factory=session_factory, bus=Bus(kafka_settings, "rb")
        )
        try:
            assert await relay.publish_pending() == 0
        finally:
            await relay.bus.close()

    async def test_the_largest_event_the_outbox_takes_reaches_the_topic(
        self, session_factory, kafka_settings, kafka_bootstrap
    ):
        """MAX_EVENT_BYTES is within what the bus takes: a larger event is refused before it
        is written (a row the bus refused would hold back every row after it)."""
        key = str(uuid.uuid4())

        def event(blob: str) -> dict:
            return event_row(
                topic=topics.ANALYTICS,
                key=key,
                event_type="crm.test.big.v1",
                source="/s",
                data={"blob": blob},
            )

        blob = "x" * (MAX_EVENT_BYTES - len(event("")["value"]))
        assert len(event(blob)["value"]) == MAX_EVENT_BYTES
        with pytest.raises(TooLarge):
            event(blob + "x")
        async with session_factory() as session:
            await add_rows(session, [event(blob)])
            await session.commit()
        relay = OutboxRelay(
            service="test", session_factory=session_factory, bus=Bus(kafka_settings, "big")
        )
        async with TopicTail(kafka_bootstrap, topics.ANALYTICS) as tail:
            try:
                assert await relay.publish_pending() == 1
                [record] = await tail.collect(lambda r: r.key == key.encode(), count=1)
            finally:
                await relay.bus.close()
        assert json.loads(record.value)["data"]["blob"] == blob

    async def test_a_tombstone_carries_the_attributes_of_the_erased_event(
        self, session_factory, kafka_settings, kafka_bootstrap
    ):
        """Compaction removes the erased event and keeps the tombstone: its headers must say
        which erasure it ends, under the erased event's id."""
        contact = uuid.uuid4()
        key, erased_at = str(contact), utcnow()
        async with session_factory() as session:
            event_id = add_event(
                session,
                topic=topics.CONTACTS,
                key=key,
                event_type=CONTACT_ERASED,
                source="/crm/contacts",
                subject=key,
                data=ContactErased(contact_id=contact, erased_at=erased_at),
                time=erased_at,
            )
            add_tombstone(
                session,
                topic=topics.CONTACTS,
                key=key,
                event_id=event_id,
                event_type=CONTACT_ERASED,
                source="/crm/contacts",
                time=erased_at,
            )
            await session.commit()
        relay = OutboxRelay(
            service="test", session_factory=session_factory, bus=Bus(kafka_settings, "tomb")
        )
        async with TopicTail(kafka_bootstrap, topics.CONTACTS) as tail:
            try:
                assert await relay.publish_pending() == 2
                erased, tombstone = await tail.collect(lambda r: r.key == key.encode(), count=2)
            finally:
                await relay.bus.close()
        assert json.loads(erased.value)["id"] == str(event_id)
        assert tombstone.value is None
        headers = dict(tombstone.headers)
        assert {name: headers.get(name) for name in ("ce_specversion", "ce_type")} == {
            "ce_specversion": b"1.0",
            "ce_type": CONTACT_ERASED.encode(),
        }
        # An integrator's view: the CloudEvents SDK's Kafka binary binding reads it.
        message = KafkaMessage(headers=headers, key=tombstone.key, value=b"")
        event = from_binary(message, JSONFormat())
        assert (event.get_id(), event.get_source(), event.get_subject(), event.get_time()) == (
            str(event_id),
            "/crm/contacts",
            key,
            erased_at,
        )
        assert event.get_data() is None


@pytest.mark.skipif(not on_postgres(), reason="other replicas hear of commits by LISTEN/NOTIFY")
async def test_rows_a_commit_hook_adds_wake_other_replicas(session_factory):
    """Like analytics' score events: the transaction's only outbox rows come from a
    before_commit hook that runs after the outbox's own NOTIFY hook."""
    channel = f"crm_test_{uuid.uuid4().hex[:16]}"
    heard = asyncio.Event()
    engine = session_factory.kw["bind"]
    async with engine.connect() as listening:
        raw = (await listening.get_raw_connection()).driver_connection
        await raw.add_listener(channel, lambda *_: heard.set())
        async with session_factory(info={NOTIFY_CHANNEL: channel}) as session:
            row = event_row(topic=topics.ANALYTICS, key="k", event_type="t", source="/s", data={})
            sa_event.listen(
                session.sync_session,
                "before_commit",
                lambda sync_session: add_rows_before_commit(sync_session, [row]),
            )
            await session.commit()
        await asyncio.wait_for(heard.wait(), timeout=5)


async def test_a_broker_that_never_answers_holds_the_relay_no_longer_than_its_send_timeout(
    session_factory,
):
    """A broker that takes connections and never answers: connecting and each send's wait
    for the topic's metadata were outside the relay's send timeout, bounded only by
    aiokafka's request timeout (10 s to connect, then again for a send's metadata)."""

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", create_topics=False)
    async with session_factory() as session:
        add_event(session, topic=topics.ANALYTICS, key="k", event_type="t", source="/s", data={})
        await session.commit()
    relay = OutboxRelay(
        service="test",
        session_factory=session_factory,
        bus=Bus(settings, "silent"),
        send_timeout_s=1.0,
    )
    try:
        with pytest.raises(TimeoutError):  # the relay's own bound, not aiokafka's
            await relay.publish_pending()
    finally:
        await relay.bus.close(wait_s=1.0)
        silent.close()
