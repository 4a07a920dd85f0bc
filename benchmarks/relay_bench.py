"""The outbox relay alone: rows/s it publishes and its CPU per row, in this process.

Fills an outbox with touch events (the shape and keys a batch ingest writes: 20 customers),
then times ``OutboxRelay.publish_pending`` rounds until the outbox is drained, against an
embedded broker (or KAFKA_BOOTSTRAP_SERVERS) on a fresh SQLite file (or DATABASE_URL; on
PostgreSQL a schema of its own, dropped afterwards). In a service the relay shares its process
with the API that fills the outbox, so its CPU per row is what a batch ingest pays for it.

    .venv/bin/python benchmarks/relay_bench.py [--rows 40000] [--batch 2000] [--runs 3]

Figures (2 cores, SQLite, defaults; four runs each, before and after interleaved): the code
before 5 Dec, with aiokafka's partitioner (pure-Python murmur2) and a metric per row, against
murmur2 in C (shared.kafka.KeyPartitioner) and the metric counted once per topic and round:

                       CPU per row       rows/s
    before             30.9-33.7 us      28,700-31,300
    after              22.7-24.3 us      39,200-41,500

On PostgreSQL (the server on the same cores), after: 21.4-21.9 us per row, 20,700-22,400/s.
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid

from harness import touch_rows

from shared.bus import Bus
from shared.db import PlatformBase, create_engine, create_session_factory, ensure_schema
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.outbox import add_rows
from shared.relay import OutboxRelay
from shared.settings import KafkaSettings


async def one_run(bootstrap: str, rows: int, batch: int) -> tuple[float, float]:
    """Rows/s and CPU seconds per row of draining an outbox of ``rows`` rows."""
    url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/relay.db"
    schema = f"bench_relay_{uuid.uuid4().hex[:8]}" if url.startswith("postgresql") else None
    engine = create_engine(url, schema)
    await ensure_schema(engine, schema)
    async with engine.begin() as connection:
        await connection.run_sync(PlatformBase.metadata.create_all)
    session_factory = create_session_factory(engine)
    bus = Bus(KafkaSettings(bootstrap_servers=bootstrap), "relay-bench")
    try:
        customers = [uuid.uuid4() for _ in range(20)]
        for start in range(0, rows + batch, 1000):  # one round more: the warm-up's
            async with session_factory() as session:
                await add_rows(session, touch_rows(customers, start, 1000))
                await session.commit()
        relay = OutboxRelay(
            service="bench", session_factory=session_factory, bus=bus, batch_size=batch
        )
        await relay.publish_pending()  # connects, fetches metadata, creates topics
        started, cpu = time.perf_counter(), time.process_time()
        sent = 0
        while published := await relay.publish_pending():
            sent += published
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        return sent / wall, used / sent
    finally:
        await bus.close()
        if schema:
            async with engine.begin() as connection:
                await connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not bootstrap:
        port = free_port()
        broker = start_broker(port)
        bootstrap = f"127.0.0.1:{port}"
    try:
        for _ in range(args.runs):
            rate, cpu = await one_run(bootstrap, args.rows, args.batch)
            print(
                f"relay: {args.rows:,} rows, rounds of {args.batch}: {rate:,.0f} rows/s,"
                f" CPU {cpu * 1e6:.1f} us per row"
            )
    finally:
        if broker:
            stop_broker(broker)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=2000, help="rows per relay round")
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
