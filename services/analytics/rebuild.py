"""Rebuild analytics' projections by replaying every topic from its start into a database
(normally a fresh one: point ``ANALYTICS_DATABASE_URL`` / ``ANALYTICS_DATABASE_SCHEMA`` at it).

    crm analytics rebuild      (or: python -m services.analytics.rebuild)

Each subscription's topics are read from the beginning to (at least) their end at the start
of the rebuild, without a consumer group (the live service's offsets are untouched), and applied by
the same runner as the live consumers: the same handlers, the same processed-event records,
so the result equals the live projection and the service can be switched onto it. The contacts
topic goes first, so merges and erasures are known before the facts that depend on them.

The replay publishes no scores: its integrators have had them from the live service. Once it
is done, a score goes into the outbox only where it differs from the last one crm.analytics.v1
holds for its customer (``scoring.publish_changed``): where the rules changed since, say.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.analytics import scoring
from services.analytics.config import AnalyticsSettings
from services.analytics.consumers import SUBSCRIPTIONS
from services.analytics.models import PublishedScore
from shared import topics
from shared.app import migrate
from shared.bus import Bus
from shared.consumer import EventConsumer, Subscription
from shared.contracts import analytics
from shared.contracts.analytics import CustomerScored
from shared.db import create_engine, create_session_factory, insert_on_conflict
from shared.events import MalformedEvent, decode_event
from shared.kafka import connection_options
from shared.settings import AuthSettings

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
SCORES_REPUBLISHED = "scores republished"  # in the counts: those that differ from the topic's


class RebuildSettings(AnalyticsSettings):
    """Analytics' settings as a rebuild reads them: it verifies no token, so, like
    ``crm migrate``, it needs no JWT key (where `make up` runs, the dev one is not in the
    environment but in .crm-data)."""

    auth: AuthSettings | None = None  # type: ignore[assignment]


def replay_order(subscriptions: Sequence[Subscription]) -> list[Subscription]:
    return sorted(subscriptions, key=lambda s: topics.CONTACTS not in s.topics)


async def rebuild(settings: AnalyticsSettings) -> dict[str, int]:
    """Replay every subscription's topics, then publish the scores that differ from the
    published ones; returns the number of records read per consumer, and of scores published
    under ``SCORES_REPUBLISHED``."""
    engine = create_engine(settings.database_url, settings.database_schema)
    await migrate(engine, settings, MIGRATIONS)
    session_factory = create_session_factory(engine)
    session_factory.configure(info=scoring.session_info(settings.reporting_currency, publish=False))
    bus = Bus(settings.kafka, client_id="crm-analytics-rebuild")
    counts: dict[str, int] = {}
    try:
        for subscription in replay_order(SUBSCRIPTIONS):
            runner = EventConsumer(
                service="analytics",
                subscription=subscription,
                session_factory=session_factory,
                kafka=settings.kafka,
                bus=bus,
                group_id="crm.analytics",  # not joined: the replay reads without a group
                max_attempts=settings.consumer_max_attempts,
                batch_size=settings.consumer_batch_size,
            )
            counts[runner.name] = await _replay(settings, subscription, runner)
            log.info("replayed", extra={"consumer": runner.name, "records": counts[runner.name]})
        await _copy_published_scores(settings, session_factory)
        info = scoring.session_info(settings.reporting_currency)  # this one publishes
        counts[SCORES_REPUBLISHED] = 0
        after: uuid.UUID | None = None
        while True:  # a chunk of customers per transaction: its outbox rows, not everyone's
            async with session_factory(info=info) as session:
                published, after = await session.run_sync(scoring.publish_changed, after)
                await session.commit()
            counts[SCORES_REPUBLISHED] += published
            if after is None:
                break
        async with session_factory() as session:
            await session.execute(delete(PublishedScore))
            await session.commit()
    finally:
        await bus.reset()
        await engine.dispose()
    return counts


async def _replay(
    settings: AnalyticsSettings, subscription: Subscription, runner: EventConsumer
) -> int:
    return await _read(settings, subscription.name, subscription.topics, runner.process)


async def _copy_published_scores(
    settings: AnalyticsSettings, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Each customer's last score on crm.analytics.v1 (keyed by customer: in offset order)
    into ``PublishedScore``, a fetch at a time."""
    async with session_factory() as session:
        await session.execute(delete(PublishedScore))
        await session.commit()

    async def keep(records: list[ConsumerRecord]) -> None:
        last: dict[uuid.UUID, dict[str, Any]] = {}
        for record in records:
            with contextlib.suppress(MalformedEvent, ValidationError):  # not a score to compare
                event = decode_event(record.value)
                if event.type == analytics.CUSTOMER_SCORED:
                    score = CustomerScored.model_validate(event.data)
                    last[score.customer_id] = score.model_dump(mode="json")
        if not last:
            return
        async with session_factory() as session:
            upsert = insert_on_conflict(session, PublishedScore.__table__)
            upsert = upsert.on_conflict_do_update(
                index_elements=[PublishedScore.customer_id], set_={"score": upsert.excluded.score}
            )
            await session.execute(
                upsert, [{"customer_id": key, "score": score} for key, score in last.items()]
            )
            await session.commit()

    await _read(settings, "scores", (topics.ANALYTICS,), keep)


async def _read(
    settings: AnalyticsSettings,
    name: str,
    topic_names: Sequence[str],
    process: Callable[[list[ConsumerRecord]], Awaitable[None]],
) -> int:
    """Every record of these topics from their start to (at least) their end as of now, fetch
    by fetch to ``process``; how many."""
    reader = AIOKafkaConsumer(
        **connection_options(settings.kafka),
        client_id=f"crm-analytics-rebuild-{name}",
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
    )
    await reader.start()
    try:
        await reader.topics()  # fetches the cluster's metadata
        partitions = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(reader.partitions_for_topic(topic) or ())
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > await reader.position(tp)}
        fetched: set[TopicPartition] = set()
        records_read = 0
        while remaining:
            batches = await reader.getmany(
                *remaining, timeout_ms=500, max_records=settings.consumer_batch_size
            )
            for tp, records in batches.items():
                if records:  # newer events than the end are applied like live ones
                    await process(records)
                    records_read += len(records)
                # The embedded broker answers end_offsets with the first offset of the
                # partition's last record batch + 1, while its fetches carry the true high
                # watermark: the first fetch's is the end as the rebuild began (or later).
                # Reading to the former, a fetch cut by max_records inside that batch left the
                # rest unread (9 of 50,000 contacts in benchmarks/rebuild_bench.py).
                if tp not in fetched and (highwater := reader.highwater(tp)) is not None:
                    ends[tp] = max(ends[tp], highwater)
                    fetched.add(tp)
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records_read
    finally:
        await reader.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    counts = asyncio.run(rebuild(RebuildSettings()))
    republished = counts.pop(SCORES_REPUBLISHED)
    for consumer, records in counts.items():
        print(f"{consumer}: {records} records replayed")
    print(f"{republished} scores republished (those differing from crm.analytics.v1's last)")


if __name__ == "__main__":
    main()
