"""A service's fetch loop through the real broker: CPU per event of the service and the broker.

``consumer_bench.py`` hands a subscription its batches directly; this runs
``shared.consumer.consume`` against the embedded broker instead, with three subscriptions
(three topics) and an event on each topic every ``1 / --rate`` s, so every fetch has a small
batch for each, as at light load. What it shows is the fetch loop's own cost around the
batches: fetching, pausing and resuming, committing offsets, the lag metrics. The producer
runs in this process and is counted with it.

    .venv/bin/python benchmarks/fetch_loop_bench.py [--seconds 15] [--rate 40] [--fetch-wait-ms 25]

Figures (2 cores, SQLite): docs/reliability.md, "6 Dec, sixth session".
"""

import argparse
import asyncio
import tempfile
import time
import uuid

from aiokafka import AIOKafkaProducer
from harness import cpu_seconds
from sqlalchemy import Column, String, Table, insert

from shared import topics
from shared.bus import Bus
from shared.consumer import EventConsumer, Subscription, consume
from shared.db import create_engine, create_session_factory
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.events import encode_event
from shared.kafka import ensure_topics
from shared.models import ProcessedEvent
from shared.settings import KafkaSettings

EVENT = "crm.bench.consumed.v1"
TOPICS = (topics.ANALYTICS, topics.SUPPORT, topics.MARKETING)
applied = Table(
    "applied", ProcessedEvent.metadata, Column("event_id", String(64), primary_key=True)
)


async def bench(args: argparse.Namespace, broker_pid: int, bootstrap: str) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap, fetch_max_wait_ms=args.fetch_wait_ms)
    await ensure_topics(settings)
    engine = create_engine(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db")
    async with engine.begin() as connection:
        await connection.run_sync(ProcessedEvent.metadata.create_all)
    count, sent = 0, None  # sent: the events sent, once all are
    all_applied = asyncio.Event()

    async def apply(session, event) -> None:
        nonlocal count
        await session.execute(insert(applied).values(event_id=event.id))
        count += 1
        if sent is not None and count >= sent:
            all_applied.set()

    bus = Bus(settings, "bench")
    subscriptions = [
        EventConsumer(
            service="bench",
            subscription=Subscription(f"s{index}", (topic,), {EVENT: apply}),
            session_factory=create_session_factory(engine),
            kafka=settings,
            bus=bus,
            group_id="unused",
        )
        for index, topic in enumerate(TOPICS)
    ]
    loop = asyncio.create_task(
        consume(settings, group_id=f"bench-{uuid.uuid4()}", consumers=subscriptions, client_id="b")
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        await asyncio.sleep(3)  # the group joined
        sending = 0
        own, broker = time.process_time(), cpu_seconds(broker_pid)
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            for topic in TOPICS:
                key = str(uuid.uuid4())
                _, value, headers = encode_event(
                    event_type=EVENT, source="/bench", subject=key, data={}
                )
                await producer.send(
                    topic, value=value, key=key.encode(), headers=list(headers.items())
                )
                sending += 1
            await asyncio.sleep(1 / args.rate)
        sent = sending
        if count >= sent:
            all_applied.set()
        await all_applied.wait()
        own, broker = time.process_time() - own, cpu_seconds(broker_pid) - broker
        print(
            f"{sent} events on {len(TOPICS)} topics in {time.monotonic() - started:.1f} s: "
            f"CPU per event, this process {own * 1e6 / sent:.0f} µs, "
            f"the embedded broker {broker * 1e6 / sent:.0f} µs"
        )
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await producer.stop()
        await bus.close()
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rate", type=float, default=40, help="rounds of three events a second")
    parser.add_argument("--fetch-wait-ms", type=int, default=25)
    args = parser.parse_args()
    port = free_port()
    broker = start_broker(port)
    try:
        asyncio.run(bench(args, broker.pid, f"127.0.0.1:{port}"))
    finally:
        stop_broker(broker)
