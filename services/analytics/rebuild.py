"""Rebuild analytics' projections by replaying every topic from its start into a database
(normally a fresh one: point ``ANALYTICS_DATABASE_URL`` / ``ANALYTICS_DATABASE_SCHEMA`` at it).

    crm analytics rebuild      (or: python -m services.analytics.rebuild)

Each subscription's topics are read from the beginning to (at least) their end at the start
of the rebuild, without a consumer group (the live service's offsets are untouched), and applied by
the same runner as the live consumers: the same handlers, the same processed-event records,
so the result equals the live projection and the service can be switched onto it. The contacts
topic goes first, so merges and erasures are known before the facts that depend on them.
"""

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.analytics import scoring
from services.analytics.config import AnalyticsSettings
from services.analytics.consumers import SUBSCRIPTIONS
from shared import topics
from shared.app import migrate
from shared.bus import Bus
from shared.consumer import EventConsumer, Subscription
from shared.db import create_engine, create_session_factory
from shared.kafka import connection_options
from shared.settings import AuthSettings

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


class RebuildSettings(AnalyticsSettings):
    """Analytics' settings as a rebuild reads them: it verifies no token, so, like
    ``crm migrate``, it needs no JWT key (where `make up` runs, the dev one is not in the
    environment but in .crm-data)."""

    auth: AuthSettings | None = None  # type: ignore[assignment]


def replay_order(subscriptions: Sequence[Subscription]) -> list[Subscription]:
    return sorted(subscriptions, key=lambda s: topics.CONTACTS not in s.topics)


async def rebuild(settings: AnalyticsSettings) -> dict[str, int]:
    """Replay every subscription's topics; returns the number of records read per consumer."""
    engine = create_engine(settings.database_url, settings.database_schema)
    await migrate(engine, settings, MIGRATIONS)
    session_factory = create_session_factory(engine)
    session_factory.configure(info=scoring.session_info(settings.reporting_currency))
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
    finally:
        await bus.reset()
        await engine.dispose()
    return counts


async def _replay(
    settings: AnalyticsSettings, subscription: Subscription, runner: EventConsumer
) -> int:
    reader = AIOKafkaConsumer(
        **connection_options(settings.kafka),
        client_id=f"crm-analytics-rebuild-{subscription.name}",
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
    )
    await reader.start()
    try:
        await reader.topics()  # fetches the cluster's metadata
        partitions = [
            TopicPartition(topic, partition)
            for topic in subscription.topics
            for partition in sorted(reader.partitions_for_topic(topic) or ())
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > await reader.position(tp)}
        records_read = 0
        while remaining:
            batches = await reader.getmany(
                *remaining, timeout_ms=500, max_records=settings.consumer_batch_size
            )
            for tp, records in batches.items():
                # All of a fetch, even past the end offset taken at the start: the embedded
                # broker gives as end the first offset of a partition's last record batch + 1,
                # so the rest of that batch lies past it. Newer events are applied like live ones.
                if records:
                    await runner.process(records)
                    records_read += len(records)
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records_read
    finally:
        await reader.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    counts = asyncio.run(rebuild(RebuildSettings()))
    for consumer, records in counts.items():
        print(f"{consumer}: {records} records replayed")


if __name__ == "__main__":
    main()
