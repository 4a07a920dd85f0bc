"""The consumer runner: idempotent processing, offsets after the DB commit, a dead-letter topic.

A handler gets the session of one transaction and one event. The runner records the event id
in ``processed_events`` in that same transaction, commits, and only then commits the Kafka
offset: a redelivery finds the id and changes nothing.
"""

import asyncio
import contextlib
import logging
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_exponential_jitter,
)

from shared import faults, metrics, topics, tracing
from shared.bus import Bus
from shared.db import failed_for_now, in_dialect, insert_new_only, on_postgres, padded
from shared.events import (
    Envelope,
    MalformedEvent,
    decode_erasure_tombstone,
    decode_event,
    utcnow,
)
from shared.kafka import new_consumer
from shared.models import ProcessedEvent
from shared.request_context import reset_request_id, set_request_id
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

# The statements every applied batch runs, built once and on the table's columns: at light
# load a batch is one event, whose cost is mostly its statements (docs/reliability.md, "3 Dec").
# Recording first, the INSERT returns the ids it inserted (``_apply`` says when that is).
_PROCESSED = ProcessedEvent.__table__
_SEEN = select(_PROCESSED.c.event_id).where(
    _PROCESSED.c.consumer == bindparam("consumer"),
    _PROCESSED.c.event_id.in_(bindparam("ids", expanding=True)),
)
_RECORD_NEW = insert_new_only(_PROCESSED, returning=_PROCESSED.c.event_id)

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, list[Envelope]], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """What one consumer group of a service reads and which event types it applies.

    A type may also have a batch handler, which the runner prefers: it gets every consecutive
    event of that type in a fetched batch at once (set-based SQL instead of queries per event).
    ``prefetch`` gets a fetched batch's new events before any is applied, in the same
    transaction, to load in one query per table what the handlers will look up one by one;
    ``finish`` gets the session once they all have, to write what they gathered.
    """

    name: str
    topics: tuple[str, ...]
    handlers: dict[str, Handler]
    batch_handlers: dict[str, BatchHandler] = field(default_factory=dict)
    prefetch: BatchHandler | None = None
    finish: Callable[[AsyncSession], Awaitable[None]] | None = None
    # The handlers take the database's write lock before anything else (``lock_customers``):
    # on SQLite the batch's ids are then recorded first too, as on PostgreSQL, which holds the
    # lock no longer and saves the lookup and the lock's own statement.
    locks_first: bool = False


@dataclass
class _Decoded:
    record: ConsumerRecord
    envelope: Envelope | None  # None: a tombstone of no erasure, or a type this one ignores


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        subscription: Subscription,
        session_factory: async_sessionmaker[AsyncSession],
        kafka: KafkaSettings,
        bus: Bus,
        group_id: str,
        max_attempts: int = 3,
        batch_size: int = 500,
        retry_wait_s: float = 0.05,
    ) -> None:
        self.service = service
        self.subscription = subscription
        self.session_factory = session_factory
        self.kafka = kafka
        self.bus = bus
        self.group_id = group_id
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.retry_wait_s = retry_wait_s
        self._lag_reported: set[TopicPartition] = set()
        self.name = f"{service}.{subscription.name}"

    async def run(self) -> None:
        """Consume this subscription alone in its group."""
        await consume(self.kafka, group_id=self.group_id, consumers=[self], client_id=self.name)

    async def process_partitions(self, partitions: list[list[ConsumerRecord]]) -> None:
        """A fetch's records of all its partitions in one transaction, each partition's in
        their order (a key's events, a customer's, are all on one partition). Under load a
        fetch holds an event or two on each of several partitions: a transaction per
        partition paid a transaction's fixed cost (the session, the ids' lookup or insert, the
        commit) about once per event."""
        await self.process([record for records in partitions for record in records])

    async def process(self, records: list[ConsumerRecord]) -> None:
        """Apply records in order (a partition's, or a fetch's partitions' one after another);
        poison ones go to the dead-letter topic."""
        decoded: list[_Decoded] = []
        for record in records:
            try:
                decoded.append(_Decoded(record, self._decode(record)))
            except MalformedEvent as exc:
                # Nothing can fix a message that does not parse: no point retrying it.
                await self._dead_letter(record, exc)
                decoded.append(_Decoded(record, None))
        todo = [d for d in decoded if d.envelope is not None]
        if not todo:
            return
        try:
            # The fast path: the whole batch in one transaction.
            async with self.session_factory() as session:
                await self._apply(session, todo)
                await session.commit()
            return
        except Exception:
            log.info(
                "batch failed, applying one by one", extra={"consumer": self.name}, exc_info=True
            )
        for item in todo:
            await self._apply_one_with_retries(item)

    def _decode(self, record: ConsumerRecord) -> Envelope | None:
        if record.value is None:  # a tombstone on a compacted topic
            if record.topic != topics.CONTACTS:
                return None
            # After compaction an erasure's tombstone may be all that is left of it.
            envelope = decode_erasure_tombstone(record.key, record.headers)
            if envelope is None:
                return None  # one from before tombstones carried the erasure
        else:
            envelope = decode_event(record.value)
        if (
            envelope.type not in self.subscription.handlers
            and envelope.type not in self.subscription.batch_handlers
        ):
            return None
        return envelope

    async def _apply(self, session: AsyncSession, items: list[_Decoded]) -> None:
        """Apply the items not processed before, recording them as processed in the read
        model's transaction. On PostgreSQL the ids are recorded first: INSERT ... ON CONFLICT
        DO NOTHING RETURNING tells which are new (an IN-list lookup there slowed with the table
        once its prepared statement got a generic plan: docs/reliability.md, bug 8), and a
        replica holding the same event waits, then skips it. On SQLite they are looked up first
        and recorded after the handlers: any write takes the database's one write lock, which
        a slow subscription must not hold while the others wait; unless its handlers take
        that lock first anyway (``Subscription.locks_first``)."""
        record_first = on_postgres(session) or self.subscription.locks_first
        if record_first:
            new = await self._record_processed(session, items)
        else:
            new = await self._not_processed(session, items)
        fresh = []
        for item in items:
            if item.envelope is not None and item.envelope.id in new:
                new.discard(item.envelope.id)  # of a repeated id, the first
                fresh.append(item)
        if not fresh:
            return
        # One span for the batch (a child of the writer's span for a single event, else
        # linked to every event's): a span per event cost a fifth of the consumer's time.
        with self._span(fresh, f"{self.name} process"):
            await self._apply_fresh(session, fresh)
        if not record_first:
            await self._record_processed(session, fresh)
        for topic, count in Counter(item.record.topic for item in fresh).items():
            metrics.EVENTS_CONSUMED.labels(self.service, self.name, topic).inc(count)

    async def _not_processed(self, session: AsyncSession, items: list[_Decoded]) -> set[str]:
        ids = {item.envelope.id for item in items if item.envelope is not None}
        seen = await session.scalars(_SEEN, {"consumer": self.name, "ids": padded(ids)})
        return ids - set(seen)

    async def _record_processed(self, session: AsyncSession, items: list[_Decoded]) -> set[str]:
        """One INSERT for the batch, skipping ids already recorded; the ids it inserted."""
        now = utcnow()
        ids = dict.fromkeys(item.envelope.id for item in items if item.envelope is not None)
        # Padded like an IN list (a text per row count otherwise); a row repeated is skipped.
        rows = padded(
            {"consumer": self.name, "event_id": event_id, "processed_at": now} for event_id in ids
        )
        result = await session.execute(in_dialect(session, _RECORD_NEW), rows)
        return set(result.scalars())

    async def _apply_fresh(self, session: AsyncSession, fresh: list[_Decoded]) -> None:
        """Prefetch, then each event by its handler, or consecutive ones by a batch handler,
        then finish."""
        if self.subscription.prefetch is not None:
            await self.subscription.prefetch(session, [i.envelope for i in fresh if i.envelope])
        run: list[_Decoded] = []  # consecutive events of one type that has a batch handler
        for item in fresh:
            assert item.envelope is not None
            if item.envelope.type in self.subscription.batch_handlers:
                if run and run[0].envelope.type != item.envelope.type:  # type: ignore[union-attr]
                    await self._apply_run(session, run)
                    run = []
                run.append(item)
                continue
            if run:
                await self._apply_run(session, run)
                run = []
            await self._apply_single(session, item)
        if run:
            await self._apply_run(session, run)
        if self.subscription.finish is not None:
            await self.subscription.finish(session)

    def _span(self, items: list[_Decoded], name: str) -> Any:
        first = items[0]
        assert first.envelope is not None
        return tracing.consumer_span(
            name,
            [_text_headers(item.record) for item in items[: tracing.MAX_LINKS]],
            {
                "messaging.system": "kafka",
                "messaging.destination.name": first.record.topic,
                "messaging.kafka.offset": first.record.offset,
                "messaging.message.id": first.envelope.id,
                "messaging.batch.message_count": len(items),
                "crm.service": self.service,
            },
        )

    async def _apply_single(self, session: AsyncSession, item: _Decoded) -> None:
        envelope = item.envelope
        assert envelope is not None
        token = set_request_id(_header(item.record, "x-request-id") or envelope.id)
        try:
            await self.subscription.handlers[envelope.type](session, envelope)
        finally:
            reset_request_id(token)

    async def _apply_run(self, session: AsyncSession, run: list[_Decoded]) -> None:
        """One batch handler call for consecutive events of one type."""
        envelopes = [item.envelope for item in run if item.envelope is not None]
        first = run[0]
        token = set_request_id(_header(first.record, "x-request-id") or envelopes[0].id)
        try:
            await self.subscription.batch_handlers[envelopes[0].type](session, envelopes)
        finally:
            reset_request_id(token)

    async def _apply_one_with_retries(self, item: _Decoded) -> None:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.max_attempts),
                wait=wait_exponential(multiplier=self.retry_wait_s, max=2.0),
                reraise=True,
            ):
                with attempt:
                    try:
                        async with self.session_factory() as session:
                            await self._apply(session, [item])
                            await session.commit()
                    except Exception:
                        metrics.EVENTS_FAILED.labels(self.service, self.name).inc()
                        raise
        except Exception as exc:
            if is_transient(exc):
                raise  # the DB or the network is down: redeliver later, never dead-letter
            await self._dead_letter(item.record, exc)

    async def _dead_letter(self, record: ConsumerRecord, error: Exception) -> None:
        log.error(
            "event sent to the dead-letter topic",
            extra={
                "consumer": self.name,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": repr(error),
            },
        )
        headers = list(record.headers or ()) + [
            ("dlq.error", repr(error)[:2000].encode()),
            ("dlq.error.trace", "".join(traceback.format_exception(error))[-4000:].encode()),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.consumer", self.name.encode()),
            ("dlq.failed_at", utcnow().isoformat().encode()),
        ]
        producer = await self.bus.producer()
        await producer.send_and_wait(
            topics.DEAD_LETTER, value=record.value, key=record.key, headers=headers
        )
        metrics.EVENTS_DEAD_LETTERED.labels(self.service, self.name).inc()

    def forget_revoked(self, assigned: set[TopicPartition]) -> None:
        """A partition a rebalance moved to another replica is that replica's to report: a
        stale figure here would hold a lag alert up until this process restarts."""
        for tp in self._lag_reported - assigned:
            labels = (self.service, self.name, tp.topic, str(tp.partition))
            for gauge in (metrics.CONSUMER_LAG, metrics.CONSUMER_LAG_SECONDS):
                # Zeroed first: with several workers the value lives on in a shared file.
                gauge.labels(*labels).set(0)
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self._lag_reported &= assigned

    def record_lag(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, last: ConsumerRecord
    ) -> None:
        self._lag_reported.add(tp)
        highwater = consumer.highwater(tp)
        lag = max(0, highwater - (last.offset + 1)) if highwater is not None else 0
        labels = (self.service, self.name, tp.topic, str(tp.partition))
        metrics.CONSUMER_LAG.labels(*labels).set(lag)
        age = max(0.0, time.time() - last.timestamp / 1000) if lag else 0.0
        metrics.CONSUMER_LAG_SECONDS.labels(*labels).set(age)


async def consume(
    kafka: KafkaSettings,
    *,
    group_id: str,
    consumers: list[EventConsumer],
    client_id: str,
    dedupe_retention: timedelta | None = None,
) -> None:
    """One Kafka consumer in one group for one or more subscriptions (their topics must not
    overlap). Each fetched partition's records go to the subscription of its topic, which
    applies them in a task of its own, each partition in order. Its partitions stay paused
    meanwhile, so a slow subscription (one replaying a long backlog) holds back neither the
    fetch loop nor the other subscriptions. The offsets of what every subscription applied
    since the last fetch are committed in one request at the next: a request per applied batch
    cost the service and the broker about 0.27 ms of CPU each (docs/reliability.md, "6 Dec,
    sixth session"). Committed after the transactions, as before: a restart in between
    delivers those events again, and their recorded ids skip them.
    Consume until cancelled; reconnect with backoff when the broker goes away; a failed
    subscription restarts the consumer, which fetches again from the committed offsets.

    With ``dedupe_retention``, the applied-event records older than that are deleted every
    hour, so ``processed_events`` does not grow for ever."""
    by_topic = {topic: c for c in consumers for topic in c.subscription.topics}
    if len(by_topic) != sum(len(c.subscription.topics) for c in consumers):
        raise ValueError("two subscriptions read one topic: each needs a group of its own")
    max_records = sum(c.batch_size for c in consumers)
    next_prune = time.monotonic()
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
        before_sleep=lambda state: log.warning(
            "consumer failed, restarting",
            extra={"consumer": client_id, "error": repr(state.outcome.exception())},
        ),
    ):
        with attempt:
            consumer = new_consumer(kafka, group_id=group_id, client_id=client_id)
            dispatcher = _Dispatcher(consumer, by_topic)
            consumer.subscribe(list(by_topic), listener=dispatcher)
            try:
                await consumer.start()
                async with asyncio.TaskGroup() as group:
                    while True:
                        batches = await consumer.getmany(timeout_ms=1000, max_records=max_records)
                        await dispatcher.commit_applied()
                        dispatcher.dispatch(group, batches)
                        if dedupe_retention is not None and time.monotonic() >= next_prune:
                            next_prune = time.monotonic() + 3600
                            await prune_processed(consumers[0].session_factory, dedupe_retention)
            finally:
                await _stop(consumer)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, but for the CancelledError aiokafka raises out of it when a fetch it
    cancels was sleeping its retry back-off (the broker away: aio-libs/aiokafka#647). That is
    no cancellation of this task; let through, it ended the consume loop for good (no retry
    takes a BaseException) and the service accepted writes it never applied again."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this task was cancelled: the service is shutting down
        log.info("the Kafka consumer did not stop cleanly", extra={"error": "CancelledError"})
        # stop() gave up before closing the client: close its connections and metadata task.
        with contextlib.suppress(Exception):
            await consumer._client.close()  # noqa: SLF001


class _Dispatcher(ConsumerRebalanceListener):
    """Hands each subscription its share of a fetch, pauses its partitions until applied, and
    commits the offsets applied."""

    def __init__(self, consumer: AIOKafkaConsumer, by_topic: dict[str, EventConsumer]) -> None:
        self.consumer = consumer
        self.by_topic = by_topic
        self.in_flight: dict[EventConsumer, asyncio.Task[None]] = {}
        self.applied: dict[TopicPartition, int] = {}  # the next offset, not committed yet

    def dispatch(
        self, group: asyncio.TaskGroup, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        per_subscriber: dict[EventConsumer, dict[TopicPartition, list[ConsumerRecord]]]
        per_subscriber = defaultdict(dict)
        for tp, records in batches.items():
            per_subscriber[self.by_topic[tp.topic]][tp] = records
        for subscriber, fetched in per_subscriber.items():
            topics_of = subscriber.subscription.topics
            paused = [tp for tp in self.consumer.assignment() if tp.topic in topics_of]
            self.consumer.pause(*paused)
            self.in_flight[subscriber] = group.create_task(
                self._apply(subscriber, fetched, paused, self.in_flight.get(subscriber)),
                name=f"{subscriber.name} apply",
            )

    async def _apply(
        self,
        subscriber: EventConsumer,
        fetched: dict[TopicPartition, list[ConsumerRecord]],
        paused: list[TopicPartition],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            # Never the case while its partitions are paused; order must not rest on that alone.
            await previous
        try:
            await subscriber.process_partitions(list(fetched.values()))
            faults.crash_point("consumer.after_db_commit")  # fault injection (tests)
            for tp, records in fetched.items():
                self.applied[tp] = records[-1].offset + 1
                subscriber.record_lag(self.consumer, tp, records[-1])
        finally:
            assigned = self.consumer.assignment()
            self.consumer.resume(*(tp for tp in paused if tp in assigned))

    async def commit_applied(self) -> None:
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in self.applied.items() if tp in assigned}
        self.applied = {}
        if offsets:
            await self.consumer.commit(offsets)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Let the transactions under way finish and commit their offsets while this member
        # still owns their partitions: the next owner then starts after them instead of
        # applying them too.
        await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
        self.in_flight.clear()
        await self.commit_applied()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for subscriber in set(self.by_topic.values()):
            subscriber.forget_revoked(set(assigned))


async def prune_processed(
    session_factory: async_sessionmaker[AsyncSession], retention: timedelta
) -> int:
    """Delete the applied-event records older than ``retention``; how many went."""
    async with session_factory() as session:
        result = await session.execute(
            delete(ProcessedEvent).where(ProcessedEvent.processed_at < utcnow() - retention)
        )
        await session.commit()
    return int(result.rowcount or 0)


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure, not of the message: retrying later will succeed."""
    if failed_for_now(exc):  # the database's
        return True
    return isinstance(exc, OSError | TimeoutError | KafkaConnectionError)


def _header(record: ConsumerRecord, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name and value is not None:
            return value.decode(errors="replace")
    return None


def _text_headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in record.headers or () if v is not None}
