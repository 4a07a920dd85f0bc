"""Analytics rebuild: the time and the most memory `crm analytics rebuild` takes.

Starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS) and analytics as a real
`crm serve` process on SQLite (or ANALYTICS_DATABASE_URL), produces --customers customers
(a contact event and an order each), waits until the live service has published every
customer's score on crm.analytics.v1, stops it, then runs `crm analytics rebuild` into a
fresh SQLite database and prints its time, its peak resident memory (VmHWM, read while it
runs), what it printed (records replayed, scores republished: none, as the rules did not
change, but every customer's score is compared) and the customers the rebuilt database
scores (all of them: a rebuild that lost the tail of a partition's last record batch gave
49,991 of 50,000).

Figures (6 Dec, SQLite, a 100-minute soak running beside it), 50,000 customers: before the
scores were compared a chunk at a time, 39.8 s and at most 799 MB; after, 37.3-43.2 s and at
most 169-174 MB. 100,000 customers, after: 89.1 s, at most 184 MB.

    .venv/bin/python benchmarks/rebuild_bench.py [--customers 20000]

The rebuild runs the code of the tree this script is in (its working directory), so a copy
of the script in another checkout measures that checkout's rebuild.
"""

import argparse
import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from harness import ROOT, Platform, platform
from sqlalchemy import func, select

from services.analytics.models import CustomerScore  # noqa: E402 (harness puts the repo on the path)
from shared import topics  # noqa: E402
from shared.contracts import sales  # noqa: E402
from shared.events import CONTACT_CREATED, encode_event  # noqa: E402
from shared.models import OutboxMessage  # noqa: E402

BASE = datetime(2030, 1, 1, tzinfo=UTC)


def customer_events(count: int) -> list[tuple[str, str, str, dict]]:
    """(topic, key, type, data): each customer created, then an order."""
    out = []
    for i in range(count):
        customer = str(uuid.uuid4())
        at = (BASE + timedelta(minutes=i)).isoformat()
        contact = {
            "contact_id": customer,
            "first_name": f"C{i}",
            "last_name": "Bench",
            "email": f"c{i}@bench.example",
            "country": "DE",
            "created_at": at,
            "updated_at": at,
        }
        order = {
            "order_id": str(uuid.uuid4()),
            "customer_id": customer,
            "amount": f"{10 + i % 90}.00",
            "currency": "EUR",
            "status": "placed",
            "ordered_at": at,
        }
        out += [
            (topics.CONTACTS, customer, CONTACT_CREATED, contact),
            (topics.SALES, customer, sales.ORDER_PLACED, order),
        ]
    return out


async def produce(bootstrap: str, events: list[tuple[str, str, str, dict]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for topic, key, event_type, data in events:
            _, value, headers = encode_event(
                event_type=event_type, source="/crm/bench", data=data, subject=key
            )
            futures.append(
                await producer.send(
                    topic, value=value, key=key.encode(), headers=list(headers.items())
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def scores_published(bench: Platform, customers: int) -> None:
    """Until the live service has stored every customer's score and relayed its outbox."""
    engine = bench.engine("analytics")
    try:
        while True:
            async with engine.connect() as connection:
                scored = await connection.scalar(select(func.count()).select_from(CustomerScore))
                unsent = await connection.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                )
            if scored >= customers and unsent == 0:
                return
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


def peak_memory_mb(process: subprocess.Popen, peak: list[float]) -> None:
    """VmHWM of ``process`` until it ends (the last reading before it exits)."""
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = int(line.split()[1]) / 1024
        except OSError:
            return
        time.sleep(0.1)


def rebuild(bench: Platform) -> None:
    fresh = bench.workdir / "rebuilt.db"
    env = bench.env("analytics", ANALYTICS_DATABASE_URL=f"sqlite+aiosqlite:///{fresh}")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "analytics", "rebuild"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak = [0.0]
    watcher = threading.Thread(target=peak_memory_mb, args=(process, peak))
    watcher.start()
    output, _ = process.communicate()
    watcher.join()
    elapsed = time.perf_counter() - started
    assert process.returncode == 0, output
    print(f"  rebuild: {elapsed:.1f} s, at most {peak[0]:.0f} MB resident")
    for line in output.splitlines():
        print(f"    {line}")
    rebuilt = sqlite3.connect(fresh)
    try:
        (scores,) = rebuilt.execute("SELECT count(*) FROM customer_scores").fetchone()
    finally:
        rebuilt.close()
    print(f"  the rebuilt database scores {scores} customers")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    args = parser.parse_args()
    with platform() as bench:
        print(f"analytics on {bench.database('analytics')}, rebuilding into SQLite")
        bench.start("analytics")
        started = time.perf_counter()
        asyncio.run(produce(bench.bootstrap, customer_events(args.customers)))
        asyncio.run(scores_published(bench, args.customers))
        print(
            f"  {args.customers} customers (a contact and an order each) scored and published"
            f" by the live service in {time.perf_counter() - started:.1f} s"
        )
        live = bench.processes.pop("analytics")
        live.terminate()
        live.wait()
        rebuild(bench)


if __name__ == "__main__":
    main()
