"""Analytics: ingest rate, event-to-KPI freshness, 360 and KPI query latency.

Starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS) and analytics as a real
`crm serve` process on SQLite (or ANALYTICS_DATABASE_URL), then prints:
  * events/s ingested: support and interaction events produced to the broker as fast as it
    takes them, timed until analytics' KPIs show every one of them (from a consumer that has
    joined its group: one event applied first),
  * freshness: a ticket event produced, until the support KPIs count it (p50/p99, light load),
  * 360 latency (p50/p99) over HTTP with --interactions touches stored (1,000,000 by default,
    10 per customer, bulk-loaded into the service's database),
  * support KPI query time over --tickets ticket facts (100,000 by default), one year.

    .venv/bin/python benchmarks/analytics_bench.py [--events 20000] [--interactions 1000000]
        [--workers 1]
"""

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from aiokafka import AIOKafkaProducer
from harness import ms, percentile, platform
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.analytics.models import TicketFact  # noqa: E402 (harness puts the repo on the path)
from shared import topics  # noqa: E402
from shared.contracts import support  # noqa: E402
from shared.customer_view import TimelineEntry  # noqa: E402
from shared.events import INTERACTION_RECORDED, encode_event  # noqa: E402

BASE = datetime(2030, 1, 1, tzinfo=UTC)  # the benchmark's own period


def ticket_events(n: int) -> list[tuple[str, str, str, dict]]:
    """(topic, key, type, data): each ticket opened, answered and resolved."""
    out = []
    for i in range(n):
        ticket, customer = str(uuid.uuid4()), str(uuid.uuid4())
        at = BASE + timedelta(minutes=i)
        base = {"ticket_id": ticket, "customer_id": customer}
        out += [
            (
                topics.SUPPORT,
                customer,
                support.TICKET_OPENED,
                {
                    **base,
                    "subject": "Printer",
                    "channel": "email",
                    "priority": "normal",
                    "category": None,
                    "opened_at": at.isoformat(),
                },
            ),
            (
                topics.SUPPORT,
                customer,
                support.TICKET_MESSAGE_ADDED,
                {
                    **base,
                    "message_id": str(uuid.uuid4()),
                    "author_type": "agent",
                    "author_id": "a-1",
                    "sent_at": (at + timedelta(minutes=5)).isoformat(),
                },
            ),
            (
                topics.SUPPORT,
                customer,
                support.TICKET_RESOLVED,
                {**base, "agent_id": None, "resolved_at": (at + timedelta(hours=1)).isoformat()},
            ),
        ]
    return out


def touch_events(n: int) -> list[tuple[str, str, str, dict]]:
    out = []
    for i in range(n):
        customer = str(uuid.uuid4())
        data = {
            "interaction_id": str(uuid.uuid4()),
            "customer_id": customer,
            "department": "sales",
            "channel": "phone",
            "direction": "outbound",
            "kind": "call",
            "occurred_at": (BASE + timedelta(seconds=i)).isoformat(),
            "actor": f"rep-{i % 20}",
        }
        out.append((topics.INTERACTIONS, customer, INTERACTION_RECORDED, data))
    return out


async def produce(bootstrap: str, events: list[tuple[str, str, str, dict]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    try:
        await send(producer, events)
    finally:
        await producer.stop()


async def send(producer: AIOKafkaProducer, events: list[tuple[str, str, str, dict]]) -> None:
    futures = []
    for topic, key, event_type, data in events:
        _, value, headers = encode_event(
            event_type=event_type, source="/crm/bench", data=data, subject=key
        )
        futures.append(
            await producer.send(topic, value=value, key=key.encode(), headers=list(headers.items()))
        )
    await asyncio.gather(*futures)


async def ingest(platform_, url: str, n_events: int) -> None:
    tickets = n_events // 4
    events = ticket_events(tickets) + touch_events(n_events - 3 * tickets)
    period = {"from": "2030-01-01", "to": "2030-12-31"}
    async with httpx.AsyncClient(base_url=url, headers=platform_.headers, timeout=30) as http:
        started = time.perf_counter()
        await produce(platform_.bootstrap, events)
        produced = time.perf_counter() - started
        while True:
            kpis = (await http.get("/v1/kpis/support", params=period)).json()
            usage = (await http.get("/v1/kpis/usage", params=period)).json()
            touches = sum(d["touches"] for d in usage["per_department"])
            if kpis["tickets_resolved"] >= tickets and touches >= n_events - 3 * tickets:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    print(
        f"ingest: {len(events)} events ({tickets} tickets x 3 + touches) produced in "
        f"{produced:.1f} s, all in the KPIs after {elapsed:.1f} s: "
        f"{len(events) / elapsed:,.0f} events/s"
    )


async def one_ticket_counted(http: httpx.AsyncClient, producer: AIOKafkaProducer, day) -> float:
    """Seconds from producing one ticket opened on ``day`` until the support KPIs count it."""
    period = {"from": str(day), "to": str(day)}
    event = ticket_events(1)[0]
    event[3]["opened_at"] = datetime.combine(day, datetime.min.time(), UTC).isoformat()
    started = time.perf_counter()
    await send(producer, [event])
    while time.perf_counter() - started < 60:
        kpis = (await http.get("/v1/kpis/support", params=period)).json()
        if kpis["tickets_opened"]:
            return time.perf_counter() - started
    raise RuntimeError(f"a ticket opened on {day} was not counted within 60 s")


async def consuming(platform_, url: str) -> None:
    """Wait until analytics applies events: `crm serve` answers HTTP before its consumer has
    joined its group and been given partitions, which took most of a second here."""
    producer = AIOKafkaProducer(bootstrap_servers=platform_.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        async with httpx.AsyncClient(base_url=url, headers=platform_.headers, timeout=30) as http:
            # A day outside every period the benchmark reads (2029, 2030, the freshness days).
            waited = await one_ticket_counted(http, producer, (BASE + timedelta(days=1000)).date())
    finally:
        await producer.stop()
    print(f"analytics applies events: a first one counted after {waited:.1f} s")


async def freshness(platform_, url: str, samples: int) -> None:
    # One producer for every sample: starting one (connections, metadata) is not freshness.
    producer = AIOKafkaProducer(bootstrap_servers=platform_.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        async with httpx.AsyncClient(base_url=url, headers=platform_.headers, timeout=30) as http:
            latencies = [
                await one_ticket_counted(http, producer, (BASE + timedelta(days=400 + n)).date())
                for n in range(samples)
            ]
    finally:
        await producer.stop()
    print(
        f"freshness (event produced -> in the support KPIs), {samples} samples: "
        f"p50 {ms(percentile(latencies, 50))}, p99 {ms(percentile(latencies, 99))}"
    )


async def bulk_load(engine: AsyncEngine, interactions: int, tickets: int) -> list[uuid.UUID]:
    """Touches (10 per customer) and ticket facts straight into the service's database."""
    customers = [uuid.uuid4() for _ in range(max(1, interactions // 10))]
    channels = ["phone", "email", "chat", "web"]
    departments = ["sales", "marketing", "support"]
    started = time.perf_counter()
    async with engine.begin() as connection:
        chunk = []
        for i in range(interactions):
            chunk.append(
                {
                    "interaction_id": uuid.uuid4(),
                    "customer_id": customers[i % len(customers)],
                    "department": departments[i % 3],
                    "channel": channels[i % 4],
                    "direction": "inbound" if i % 2 else "outbound",
                    "kind": "call",
                    "subject": "Renewal",
                    "occurred_at": BASE - timedelta(minutes=i),
                    "actor": f"rep-{i % 50}",
                }
            )
            if len(chunk) == 20_000:
                await connection.execute(insert(TimelineEntry), chunk)
                chunk = []
        if chunk:
            await connection.execute(insert(TimelineEntry), chunk)
        rows = []
        for i in range(tickets):
            opened = BASE - timedelta(days=365) + timedelta(minutes=5 * i)
            rows.append(
                {
                    "ticket_id": uuid.uuid4(),
                    "customer_id": customers[i % len(customers)],
                    "channel": "email",
                    "priority": "normal",
                    "opened_at": opened,
                    "opened_day": opened.date(),
                    "opened_month": f"{opened.year:04d}-{opened.month:02d}",
                    "opened_weekday": opened.weekday(),
                    "agent_id": None,
                    "first_response_at": opened + timedelta(minutes=30),
                    "first_response_seconds": 1800.0,
                    "messages": 3,
                    "resolved_at": opened + timedelta(hours=5),
                    "resolution_seconds": 18000.0,
                    "resolved_by": uuid.UUID(int=i % 25 + 1),
                    "reopen_count": 0,
                    "csat": i % 5 + 1,
                    "csat_at": opened + timedelta(hours=6),
                    "sla_breaches": 0,
                }
            )
        await connection.execute(insert(TicketFact), rows)
    print(
        f"bulk-loaded {interactions:,} touches and {tickets:,} tickets in "
        f"{time.perf_counter() - started:.0f} s"
    )
    if engine.dialect.name == "postgresql":
        # What autovacuum does after so many inserts (it may be off on a test machine): without
        # it the planner has no statistics and index-only scans still read the table.
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in (TimelineEntry.__tablename__, TicketFact.__tablename__):
                await autocommit.execute(text(f"VACUUM ANALYZE {table}"))
    await engine.dispose()
    return customers


async def query_latency(platform_, url: str, customers: list[uuid.UUID], samples: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers=platform_.headers, timeout=30) as http:
        for customer in customers[:20]:  # warm up
            await http.get(f"/v1/customers/{customer}/360")
        latencies = []
        for customer in random.sample(customers, min(samples, len(customers))):
            started = time.perf_counter()
            response = await http.get(f"/v1/customers/{customer}/360")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200 and len(response.json()["touches"]["items"]) == 10
        print(
            f"360 over HTTP, {len(latencies)} customers: "
            f"p50 {ms(percentile(latencies, 50))}, p99 {ms(percentile(latencies, 99))}"
        )
        period = {"from": "2029-01-01", "to": "2029-12-31"}
        kpi_times = []
        for _ in range(10):
            started = time.perf_counter()
            kpis = (await http.get("/v1/kpis/support", params=period)).json()
            kpi_times.append(time.perf_counter() - started)
        print(
            f"support KPIs over a year ({kpis['tickets_opened']:,} tickets opened in it): "
            f"p50 {ms(percentile(kpi_times, 50))}, max {ms(max(kpi_times))}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--freshness-samples", type=int, default=50)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="analytics worker processes (ANALYTICS_WORKERS): they share the partitions",
    )
    args = parser.parse_args()
    with platform() as running:
        url = running.start("analytics", ANALYTICS_WORKERS=str(args.workers))
        print(
            f"analytics on {running.database('analytics')} ({args.workers} worker(s)), "
            f"broker {running.bootstrap}"
        )
        # Timed from a consumer that has joined its group: the ingest rate, not the start-up.
        asyncio.run(consuming(running, url))
        asyncio.run(ingest(running, url, args.events))
        # Light load: the ingest's 5,000-odd score events are still being published for a
        # moment after the KPIs count the last ticket (the first samples waited behind them).
        time.sleep(2)
        asyncio.run(freshness(running, url, args.freshness_samples))
        customers = asyncio.run(
            bulk_load(running.engine("analytics"), args.interactions, args.tickets)
        )
        asyncio.run(query_latency(running, url, customers, args.queries))


if __name__ == "__main__":
    main()
