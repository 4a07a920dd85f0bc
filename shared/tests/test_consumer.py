"""The consumer runner against the real broker and a real database."""

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.exc import OperationalError

from shared import topics
from shared.bus import Bus
from shared.consumer import EventConsumer, Subscription, consume, prune_processed
from shared.db import lock_customers
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.events import decode_event, encode_event, utcnow
from shared.kafka import ensure_topics
from shared.models import ProcessedEvent
from shared.settings import KafkaSettings
from shared.testing import BrokerProxy, TopicTail, consumer_record, eventually

pytestmark = pytest.mark.bus

TEST_EVENT = "crm.test.consumed.v1"
projection = Table(
    "applied",
    MetaData(),
    Column("event_id", String(64), primary_key=True),
    Column("key", String(64)),
    Column("label", String(64)),
)


@pytest.fixture
async def tables(session_factory):
    async with session_factory() as session:
        await (await session.connection()).run_sync(projection.metadata.create_all)
        await session.commit()
    return session_factory


async def publish(
    producer, key: str, label: str, topic: str = topics.ANALYTICS, partition: int | None = None
) -> str:
    event_id, value, headers = encode_event(
        event_type=TEST_EVENT, source="/crm/test", subject=key, data={"label": label}
    )
    await producer.send_and_wait(
        topic, value=value, key=key.encode(), headers=list(headers.items()), partition=partition
    )
    return event_id


async def applied_labels(session_factory, key: str) -> list[str]:
    """What the projection holds for ``key`` (a new group replays the topic's older events)."""
    async with session_factory() as session:
        query = select(projection.c.label).where(projection.c.key == key)
        return sorted((await session.scalars(query)).all())


class Harness:
    def __init__(self, session_factory, kafka_settings, handler) -> None:
        self.bus = Bus(kafka_settings, "test-consumer")
        self.consumer = EventConsumer(
            service="test",
            subscription=Subscription("t", (topics.ANALYTICS,), {TEST_EVENT: handler}),
            session_factory=session_factory,
            kafka=kafka_settings,
            bus=self.bus,
            group_id=f"test-{uuid.uuid4()}",
            max_attempts=3,
            retry_wait_s=0.01,
        )

    async def __aenter__(self) -> "Harness":
        self.task = asyncio.create_task(self.consumer.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.bus.close()


async def insert_applied(session, event):
    await session.execute(
        insert(projection).values(event_id=event.id, key=event.subject, label=event.data["label"])
    )


def subscriber(
    session_factory, kafka_settings, bus, name: str, topic: str, handler=insert_applied
) -> EventConsumer:
    return EventConsumer(
        service="test",
        subscription=Subscription(name, (topic,), {TEST_EVENT: handler}),
        session_factory=session_factory,
        kafka=kafka_settings,
        bus=bus,
        group_id="unused",
    )


async def test_applied_event_records_past_the_retention_are_pruned(session_factory):
    now = utcnow()
    async with session_factory() as session:
        for event_id, age in (("old", timedelta(days=31)), ("recent", timedelta(days=29))):
            session.add(
                ProcessedEvent(consumer="test.t", event_id=event_id, processed_at=now - age)
            )
        await session.commit()
    assert await prune_processed(session_factory, timedelta(days=30)) == 1
    async with session_factory() as session:
        kept = (await session.scalars(select(ProcessedEvent.event_id))).all()
    assert kept == ["recent"]


async def test_an_applied_events_record_is_stamped_so_the_pruning_drops_it(tables, kafka_settings):
    consumer = subscriber(tables, kafka_settings, Bus(kafka_settings, "t"), "t", topics.ANALYTICS)
    before = utcnow() - timedelta(seconds=5)
    await consumer.process([record(0, str(uuid.uuid4()), "a")])
    async with tables() as session:
        (stamped,) = (await session.scalars(select(ProcessedEvent.processed_at))).all()
    assert before <= stamped <= utcnow() + timedelta(seconds=5)
    assert await prune_processed(tables, timedelta(days=1)) == 0
    assert await prune_processed(tables, timedelta(seconds=-60)) == 1


class TestOneGroupPerService:
    async def test_each_topics_records_reach_their_subscription(
        self, tables, kafka_settings, producer
    ):
        bus = Bus(kafka_settings, "test-consumer")
        subscribers = [
            subscriber(tables, kafka_settings, bus, "scores", topics.ANALYTICS),
            subscriber(tables, kafka_settings, bus, "tickets", topics.SUPPORT),
        ]
        key = str(uuid.uuid4())
        scored = await publish(producer, key, "scored", topics.ANALYTICS)
        ticket = await publish(producer, key, "ticket", topics.SUPPORT)
        task = asyncio.create_task(
            consume(
                kafka_settings,
                group_id=f"test-{uuid.uuid4()}",
                consumers=subscribers,
                client_id="test",
            )
        )
        try:

            async def both_applied():
                assert await applied_labels(tables, key) == ["scored", "ticket"]

            await eventually(both_applied)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()
        async with tables() as session:
            rows = await session.execute(select(ProcessedEvent.event_id, ProcessedEvent.consumer))
            tracked = {event_id: consumer for event_id, consumer in rows}
        # Each event is recorded under the subscription of its topic, so a replay skips it there.
        assert tracked[scored] == "test.scores" and tracked[ticket] == "test.tickets"

    async def test_a_slow_subscription_holds_back_neither_the_fetching_nor_the_others(
        self, tables, kafka_settings, producer
    ):
        key = str(uuid.uuid4())
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow_handler(session, event):
            if event.subject != key:
                return  # older tests' events: nothing written, so nothing is locked meanwhile
            entered.set()
            await release.wait()
            await insert_applied(session, event)

        bus = Bus(kafka_settings, "test-consumer")
        slow = subscriber(tables, kafka_settings, bus, "slow", topics.ANALYTICS, slow_handler)
        fast = subscriber(tables, kafka_settings, bus, "fast", topics.SUPPORT)
        await publish(producer, key, "slow", topics.ANALYTICS)
        task = asyncio.create_task(
            consume(
                kafka_settings,
                group_id=f"test-{uuid.uuid4()}",
                consumers=[slow, fast],
                client_id="test",
            )
        )
        try:
            await asyncio.wait_for(entered.wait(), timeout=30)
            # Published while the slow subscription is mid-transaction: a fetch loop that
            # waited for it would not even fetch this.
            await publish(producer, key, "fast", topics.SUPPORT)

            async def fast_applied():
                assert await applied_labels(tables, key) == ["fast"]

            await eventually(fast_applied)
            assert not task.done()
            release.set()

            async def both_applied():
                assert await applied_labels(tables, key) == ["fast", "slow"]

            await eventually(both_applied)
        finally:
            release.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()

    async def test_a_rebalance_waits_for_the_batch_under_way_instead_of_handing_it_on(
        self, tables, kafka_settings, producer
    ):
        """Member "a" is mid-transaction on an event of partition 1 when "b" joins; the round
        robin gives partition 1 to "b" (members sorted by id). "b" must start after the event,
        not apply it a second time while "a" still is, nor be handed it again at all: "a"
        commits its offset before giving the partition up."""
        key = str(uuid.uuid4())
        release, first_entered = asyncio.Event(), asyncio.Event()
        entered: list[str] = []
        delivered: list[tuple[str, int]] = []  # who was handed the event, at which offset

        def member(name: str) -> EventConsumer:
            async def handler(session, event):
                if event.subject == key:
                    entered.append(name)
                    first_entered.set()
                    await release.wait()
                    await insert_applied(session, event)

            consumer = subscriber(tables, kafka_settings, bus, "t", topics.ANALYTICS, handler)
            process = consumer.process

            async def process_noting(records):
                delivered.extend((name, r.offset) for r in records if r.key == key.encode())
                await process(records)

            consumer.process = process_noting  # type: ignore[method-assign]
            return consumer

        bus = Bus(kafka_settings, "test-consumer")
        await publish(producer, key, "once", topics.ANALYTICS, partition=1)
        partition = TopicPartition(topics.ANALYTICS, 1)
        group = f"test-{uuid.uuid4()}"
        # Of the same group but never joining it: it only reads the group's offsets.
        reader = AIOKafkaConsumer(
            bootstrap_servers=kafka_settings.bootstrap_servers, group_id=group
        )
        await reader.start()
        members = []
        try:
            for name in ("a", "b"):
                members.append(
                    asyncio.create_task(
                        consume(
                            kafka_settings,
                            group_id=group,
                            consumers=[member(name)],
                            client_id=f"{name}-member",
                        )
                    )
                )
                if name == "a":
                    await asyncio.wait_for(first_entered.wait(), timeout=30)
            # Time enough for the rebalance to hand the partition on if nothing held it back.
            await asyncio.sleep(3)
            assert entered == ["a"]
            release.set()

            async def applied_once():
                assert await applied_labels(tables, key) == ["once"]

            await eventually(applied_once)
            [(_, offset)] = delivered

            async def committed_past_the_event():
                # By "a" before "b" got the partition, so "b" is never handed the event; else
                # by "b", once it was handed the event again (and skipped it: its id recorded).
                assert (await reader.committed(partition) or 0) > offset

            await eventually(committed_past_the_event)
            assert entered == ["a"] and delivered == [("a", offset)]
        finally:
            release.set()
            for task in members:
                task.cancel()
            await asyncio.gather(*members, return_exceptions=True)
            await reader.stop()
            await bus.close()

    async def test_what_every_subscription_applied_is_committed_to_the_group(
        self, tables, kafka_settings, producer
    ):
        """The offsets go to the group after the transactions (at the next fetch, one request
        for every subscription's): a member that starts again starts after them."""
        key = str(uuid.uuid4())
        bus = Bus(kafka_settings, "test-consumer")
        subscribers = [
            subscriber(tables, kafka_settings, bus, "scores", topics.ANALYTICS),
            subscriber(tables, kafka_settings, bus, "tickets", topics.SUPPORT),
        ]
        sent = {}
        for label, topic in (
            ("a", topics.ANALYTICS),
            ("b", topics.ANALYTICS),
            ("c", topics.SUPPORT),
        ):
            event_id, value, headers = encode_event(
                event_type=TEST_EVENT, source="/crm/test", subject=key, data={"label": label}
            )
            metadata = await producer.send_and_wait(
                topic, value=value, key=key.encode(), headers=list(headers.items())
            )
            sent[TopicPartition(topic, metadata.partition)] = metadata.offset + 1
        group = f"test-{uuid.uuid4()}"
        task = asyncio.create_task(
            consume(kafka_settings, group_id=group, consumers=subscribers, client_id="test")
        )
        # Of the same group but never joining it: it only reads the group's offsets.
        reader = AIOKafkaConsumer(
            bootstrap_servers=kafka_settings.bootstrap_servers, group_id=group
        )
        await reader.start()
        try:

            async def committed_past_them():
                assert await applied_labels(tables, key) == ["a", "b", "c"]
                assert {tp: await reader.committed(tp) for tp in sent} == sent

            await eventually(committed_past_them)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await reader.stop()
            await bus.close()

    async def test_two_subscriptions_of_one_topic_are_refused(self, tables, kafka_settings):
        bus = Bus(kafka_settings, "test-consumer")
        twice = [subscriber(tables, kafka_settings, bus, name, topics.ANALYTICS) for name in "ab"]
        with pytest.raises(ValueError, match="a group of its own"):
            await consume(kafka_settings, group_id="unused", consumers=twice, client_id="test")


class TestEventConsumer:
    async def test_one_bad_event_does_not_hold_back_the_good_ones_of_its_batch(
        self, tables, kafka_settings, producer, kafka_bootstrap
    ):
        async def handler(session, event):
            if event.data["label"] == "bad":
                raise ValueError("cannot apply this one")
            await session.execute(
                insert(projection).values(
                    event_id=event.id, key=event.subject, label=event.data["label"]
                )
            )

        key = str(uuid.uuid4())
        async with TopicTail(kafka_bootstrap, topics.DEAD_LETTER) as dead_letters:
            # one key, so one partition and (most likely) one batch
            ids = [await publish(producer, key, label) for label in ("a", "bad", "c")]
            async with Harness(tables, kafka_settings, handler):

                async def good_ones_applied():
                    assert await applied_labels(tables, key) == ["a", "c"]

                await eventually(good_ones_applied)
                [dead] = await dead_letters.collect(lambda r: r.key == key.encode())
        assert b"cannot apply this one" in dict(dead.headers)["dlq.error"]
        async with tables() as session:
            tracked = set((await session.scalars(select(ProcessedEvent.event_id))).all())
        # the tracking records of a and c were committed with them; the bad one has none
        assert ids[0] in tracked and ids[2] in tracked and ids[1] not in tracked

    async def test_a_database_error_names_no_stored_value_in_the_headers_or_the_log(
        self, tables, kafka_settings, producer, kafka_bootstrap, caplog
    ):
        """A database error's text carried the statement's values (SQLAlchemy's
        "[parameters: ...]"): e-mail addresses, message bodies, into the dead-letter headers
        every subscriber reads and into the logs, where no erasure reaches them."""
        address = f"ada.{uuid.uuid4().hex[:8]}@example.com"

        async def handler(session, event):
            row = {"event_id": event.id, "key": event.subject, "label": address}
            await session.execute(insert(projection).values(row))
            await session.execute(insert(projection).values(row))  # a unique violation

        key = str(uuid.uuid4())
        async with TopicTail(kafka_bootstrap, topics.DEAD_LETTER) as dead_letters:
            await publish(producer, key, "fails")
            async with Harness(tables, kafka_settings, handler):
                [dead] = await dead_letters.collect(lambda r: r.key == key.encode())
        headers = dict(dead.headers)
        assert b"IntegrityError" in headers["dlq.error"]
        assert address.encode() not in headers["dlq.error"]
        assert address.encode() not in headers["dlq.error.trace"]
        assert all(address not in repr(vars(record)) for record in caplog.records)

    async def test_an_infrastructure_error_is_retried_never_dead_lettered(
        self, tables, kafka_settings, producer, kafka_bootstrap
    ):
        failures = {"left": 5}  # more than max_attempts: the runner must restart, not give up

        async def handler(session, event):
            if failures["left"] > 0:
                failures["left"] -= 1
                raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database down"))
            await session.execute(
                insert(projection).values(
                    event_id=event.id, key=event.subject, label=event.data["label"]
                )
            )

        key = str(uuid.uuid4())
        async with TopicTail(kafka_bootstrap, topics.DEAD_LETTER) as dead_letters:
            await publish(producer, key, "survives")
            async with Harness(tables, kafka_settings, handler):

                async def applied():
                    assert await applied_labels(tables, key) == ["survives"]

                await eventually(applied, timeout=30)
            await asyncio.sleep(0.2)
            await dead_letters.consumer.getmany(timeout_ms=200)
            assert [r for r in dead_letters.records if r.key == key.encode()] == []
        assert failures["left"] == 0


def test_lag_of_revoked_partitions_is_forgotten():
    """After a rebalance the partitions another replica took over are no longer reported."""
    from aiokafka import TopicPartition

    from shared import metrics
    from shared.consumer import EventConsumer

    runner = EventConsumer.__new__(EventConsumer)
    runner.service, runner.name = "svc-lag-test", "timeline"
    runner._lag_reported = set()
    kept, moved = TopicPartition("crm.interactions.v1", 0), TopicPartition("crm.interactions.v1", 1)
    for tp in (kept, moved):
        runner._lag_reported.add(tp)
        metrics.CONSUMER_LAG.labels("svc-lag-test", "timeline", tp.topic, str(tp.partition)).set(7)
    runner.forget_revoked({kept})
    exported = {
        sample.labels["partition"]
        for family in metrics.CONSUMER_LAG.collect()
        for sample in family.samples
        if sample.labels["service"] == "svc-lag-test"
    }
    assert exported == {"0"}


def record(offset: int, key: str, label: str) -> ConsumerRecord:
    return consumer_record(topics.ANALYTICS, offset, TEST_EVENT, {"label": label}, key)


async def test_prefetch_sees_a_batchs_new_events_before_any_is_applied(tables, kafka_settings):
    calls: list[tuple[str, list[str]]] = []

    async def prefetch(session, events):
        calls.append(("prefetch", [event.data["label"] for event in events]))

    async def handler(session, event):
        calls.append(("apply", [event.data["label"]]))
        await session.execute(
            insert(projection).values(event_id=event.id, key=event.subject, label="x")
        )

    consumer = EventConsumer(
        service="test",
        subscription=Subscription("t", (topics.ANALYTICS,), {TEST_EVENT: handler}, {}, prefetch),
        session_factory=tables,
        kafka=kafka_settings,
        bus=Bus(kafka_settings, "test-prefetch"),
        group_id="unused",
    )
    key = str(uuid.uuid4())
    first = record(0, key, "a")
    await consumer.process([first])
    calls.clear()

    await consumer.process([first, record(1, key, "b"), record(2, key, "c")])  # a: redelivered

    assert calls == [("prefetch", ["b", "c"]), ("apply", ["b"]), ("apply", ["c"])]


@pytest.mark.parametrize("locks_first", [False, True], ids=["looked-up", "recorded-first"])
async def test_an_event_delivered_again_is_applied_once(tables, kafka_settings, locks_first):
    """Whether the ids are looked up before the handlers and recorded after them, or recorded
    first (a subscription whose handlers take the write lock first; always on PostgreSQL)."""
    applied: list[str] = []

    async def handler(session, event):
        await lock_customers(session, [uuid.uuid4()])
        applied.append(event.data["label"])
        await insert_applied(session, event)

    consumer = EventConsumer(
        service="test",
        subscription=Subscription(
            "t", (topics.ANALYTICS,), {TEST_EVENT: handler}, locks_first=locks_first
        ),
        session_factory=tables,
        kafka=kafka_settings,
        bus=Bus(kafka_settings, "test-again"),
        group_id="unused",
    )
    key = str(uuid.uuid4())
    first, second = record(0, key, "a"), record(1, key, "b")
    await consumer.process([first, first])  # twice in one batch
    await consumer.process([first, second])  # again in the next
    await consumer.process([second])

    assert applied == ["a", "b"]
    assert await applied_labels(tables, key) == ["a", "b"]
    async with tables() as session:
        recorded = await session.scalars(
            select(ProcessedEvent.event_id).where(ProcessedEvent.consumer == "test.t")
        )
        assert sorted(recorded) == sorted({decode_event(r.value).id for r in (first, second)})


async def test_a_consumer_that_fails_while_the_broker_is_away_runs_on_once_it_is_back(tables):
    """A network outage can take the database and the broker away together. The apply fails,
    the loop restarts its Kafka consumer, and stopping that consumer while the broker is still
    away must not end the loop: aiokafka's stop() then raised CancelledError (a fetch of the
    other subscription sleeping out its retry back-off), which no retry caught, and the
    service went on accepting writes it never applied again (the broker-outage test)."""
    broker_port, proxy_port = free_port(), free_port()
    broker = start_broker(broker_port, advertised_port=proxy_port)
    proxy = BrokerProxy(proxy_port, broker_port)
    await proxy.start()
    settings = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{proxy_port}",
        fetch_max_wait_ms=10,
        session_timeout_ms=1000,
        heartbeat_interval_ms=300,
    )
    key = str(uuid.uuid4())
    outage, over, given_up = asyncio.Event(), asyncio.Event(), asyncio.Event()
    attempts = 0

    async def apply_unless_cut_off(session, event):
        nonlocal attempts
        if not outage.is_set():
            outage.set()
            await proxy.stop()
            # Long enough for the other subscription's fetch to fail and sleep its back-off.
            await asyncio.sleep(0.5)
        if not over.is_set():
            attempts += 1
            if attempts == 4:  # the batch, then max_attempts=3 one by one: the loop restarts
                given_up.set()
            raise ConnectionError("the database is out of reach too")
        await insert_applied(session, event)

    bus = Bus(settings, "test-consumer")
    task = None
    try:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        try:
            await publish(producer, key, "first", topics.ANALYTICS)
        finally:
            await producer.stop()
        subscribers = [
            subscriber(tables, settings, bus, "cut", topics.ANALYTICS, apply_unless_cut_off),
            subscriber(tables, settings, bus, "other", topics.SUPPORT),
        ]
        task = asyncio.create_task(
            consume(settings, group_id=f"test-{uuid.uuid4()}", consumers=subscribers, client_id="t")
        )
        await asyncio.wait_for(outage.wait(), timeout=30)
        await asyncio.wait_for(given_up.wait(), timeout=30)
        await asyncio.sleep(0.5)  # the loop stops its Kafka consumer with the broker still away
        over.set()
        await proxy.start()

        async def applied_after_the_outage():
            assert not task.done(), f"the consumer loop ended: {task}"
            assert await applied_labels(tables, key) == ["first"]

        await eventually(applied_after_the_outage, timeout=30)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await bus.close()
        await proxy.stop()
        stop_broker(broker)


async def test_a_fetchs_partitions_are_applied_in_one_transaction_each_in_order(
    tables, kafka_settings
):
    applied: list[tuple[object, str]] = []  # (the session, the label), in applying order

    async def handler(session, event):
        applied.append((session, event.data["label"]))
        await insert_applied(session, event)

    consumer = subscriber(
        tables,
        kafka_settings,
        Bus(kafka_settings, "test-partitions"),
        "t",
        topics.ANALYTICS,
        handler,
    )
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    on_zero = [record(0, first, "a1"), record(1, first, "a2")]
    on_one = [dataclasses.replace(record(i, second, f"b{i + 1}"), partition=1) for i in (0, 1)]

    await consumer.process_partitions([on_zero, on_one])

    assert [label for _, label in applied] == ["a1", "a2", "b1", "b2"]
    sessions = {id(session) for session, _ in applied}  # each kept alive in ``applied``
    assert len(sessions) == 1  # one transaction for the fetch
    assert await applied_labels(tables, first) == ["a1", "a2"]
    assert await applied_labels(tables, second) == ["b1", "b2"]
