"""Marketing throughput: sends per second of a launched campaign, and segment evaluation time.

Starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), a real local SMTP server
(aiosmtpd, in this process) and the marketing service as a real `crm serve` process on SQLite
(or MARKETING_DATABASE_URL), then prints:
  * a campaign to N recipients (default 10,000; recipients arrive as crm.contacts.v1 events
    through the consumer): the launch request (contact checks + send rows + outbox, one
    transaction) and the most memory it took, then launch-to-last-e-mail sends/s over SMTP,
    with the sender's batches,
  * segment evaluation at M customers (default 100,000, rows written straight into a second
    instance's SQLite database: recipients, orders, scores, timeline touches): count previews
    of a simple and a nested rule (median of 3), and the most memory they took.

    .venv/bin/python benchmarks/marketing_bench.py [--recipients 10000] [--customers 100000]
"""

import argparse
import asyncio
import sqlite3
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, Platform, cpu_seconds, memory_mb, ms, platform, service_pids  # noqa: E402

sys.path.insert(0, str(ROOT))
from services.marketing.tests.servers import smtp_server  # noqa: E402
from shared.events import CONTACT_CREATED, encode_event  # noqa: E402
from shared.topics import CONTACTS  # noqa: E402


async def publish_contacts(bootstrap: str, family: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        now = datetime.now(UTC).isoformat()
        for i in range(count):
            contact_id = str(uuid.uuid4())
            data = {
                "contact_id": contact_id,
                "first_name": f"Reader{i}",
                "last_name": family,
                "email": f"reader{i}@bench.example",
                "country": "DE",
                "created_at": now,
                "updated_at": now,
            }
            _, value, headers = encode_event(
                event_type=CONTACT_CREATED, source="/crm/contacts", data=data, subject=contact_id
            )
            await producer.send(
                CONTACTS, value=value, key=contact_id.encode(), headers=list(headers.items())
            )
        await producer.flush()
    finally:
        await producer.stop()


def campaign_sends(bench: Platform, url: str, recipients: int) -> None:
    family = "Bench" + uuid.uuid4().hex[:8]
    rule = {"field": "last_name", "op": "eq", "value": family}
    client = httpx.Client(base_url=url, headers=bench.headers, timeout=300)
    started = time.perf_counter()
    asyncio.run(publish_contacts(bench.bootstrap, family, recipients))
    while client.post("/v1/segments:preview", json={"rules": rule}).json()["count"] < recipients:
        time.sleep(0.5)
    print(
        f"  {recipients} contacts through crm.contacts.v1 into recipients: "
        f"{time.perf_counter() - started:.1f} s"
    )
    segment = client.post("/v1/segments", json={"name": "Bench", "rules": rule}).json()
    campaign = client.post(
        "/v1/campaigns",
        json={
            "name": "Bench campaign",
            "channel": "email",
            "segment_id": segment["id"],
            "subject": "Hello {first_name}",
            "template": "Hi {first_name}, see https://shop.example/offer",
            "budget": str(recipients),
            "cost_per_send": "0.01",
        },
    ).json()
    pids = service_pids(bench.processes["marketing"].pid)
    cpu_before = sum(cpu_seconds(p) for p in pids)
    resident, most = memory_mb(pids[0]), memory_mb(pids[0], "VmHWM")
    started = time.perf_counter()
    launched = client.post(f"/v1/campaigns/{campaign['id']}/launch")
    launch_s = time.perf_counter() - started
    assert launched.status_code == 202, launched.text
    print(
        f"  launch request ({launched.json()['queued']} queued): {ms(launch_s)}; marketing"
        f" resident {resident:.0f} MB before it (at most {most:.0f} MB so far), at most"
        f" {memory_mb(pids[0], 'VmHWM'):.0f} MB after it"
    )
    while True:
        report = client.get(f"/v1/campaigns/{campaign['id']}/report").json()
        if report["status"] == "completed":
            break
        time.sleep(0.2)
    total_s = time.perf_counter() - started
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    print(
        f"  {report['sent']} sent, {report['failed']} failed in {total_s:.1f} s from the launch: "
        f"{report['sent'] / total_s:,.0f} sends/s (service CPU {cpu:.1f} s)"
    )


def seed(db: Path, customers: int) -> None:
    """Rows as the consumers would write them, straight into the service's SQLite file."""
    now = datetime.now(UTC)
    connection = sqlite3.connect(db)
    ids = [uuid.uuid4().hex for _ in range(customers)]
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    countries = ["DE", "FR", "IT", "ES", "PT"]
    connection.executemany(
        "INSERT INTO recipients (contact_id, first_name, last_name, country, email, phone,"
        " identities, preferences, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            (
                cid,
                f"C{i}",
                "Seed",
                countries[i % 5],
                f"c{i}@x.example",
                None,
                "{}",
                "{}",
                stamp,
                stamp,
            )
            for i, cid in enumerate(ids)
        ],
    )
    connection.executemany(
        "INSERT INTO orders (order_id, customer_id, amount, currency, status, campaign_id,"
        " ordered_at) VALUES (?,?,?,?,?,?,?)",
        [
            (
                uuid.uuid4().hex,
                cid,
                50,
                "EUR",
                "placed",
                None,
                (now - timedelta(days=i % 365)).strftime("%Y-%m-%d %H:%M:%S.%f"),
            )
            for i, cid in enumerate(ids)
            if i % 2 == 0
        ],
    )
    connection.executemany(
        "INSERT INTO scores (customer_id, churn_level, churn_risk, rfm_segment, clv, scored_at)"
        " VALUES (?,?,?,?,?,?)",
        [
            (cid, ["low", "medium", "high"][i % 3], (i % 100) / 100, "loyal", 100, stamp)
            for i, cid in enumerate(ids)
        ],
    )
    connection.executemany(
        "INSERT INTO timeline (interaction_id, customer_id, department, channel, direction,"
        " kind, occurred_at) VALUES (?,?,?,?,?,?,?)",
        [
            (
                uuid.uuid4().hex,
                cid,
                "marketing",
                "email",
                "inbound",
                "email_open",
                (now - timedelta(days=i % 60)).strftime("%Y-%m-%d %H:%M:%S.%f"),
            )
            for i, cid in enumerate(ids)
            if i % 3 == 0
        ],
    )
    connection.commit()
    connection.close()


def segment_evaluation(bench: Platform, url: str, db: Path, customers: int) -> None:
    started = time.perf_counter()
    seed(db, customers)
    print(f"  seeded {customers} customers in {time.perf_counter() - started:.1f} s")
    pid = bench.processes["marketing"].pid
    resident = memory_mb(pid)
    client = httpx.Client(base_url=url, headers=bench.headers, timeout=600)
    simple = {"field": "country", "op": "eq", "value": "DE"}
    nested = {
        "and": [
            {"field": "country", "op": "in", "value": ["DE", "FR"]},
            {
                "or": [
                    {"field": "last_purchase_at", "op": "older_than_days", "value": 90},
                    {"field": "churn_level", "op": "eq", "value": "high"},
                ]
            },
            {"not": {"field": "last_email_open_at", "op": "within_days", "value": 30}},
        ]
    }
    for name, rule in (("simple (country)", simple), ("nested (orders+scores+touches)", nested)):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            response = client.post("/v1/segments:preview", json={"rules": rule})
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        print(
            f"  {name}: {response.json()['count']} of {customers} match, "
            f"median {ms(statistics.median(times))}"
        )
    print(
        f"  marketing resident: {resident:.0f} MB before the previews,"
        f" at most {memory_mb(pid, 'VmHWM'):.0f} MB during them"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    with platform() as bench, smtp_server() as mailbox:
        print(f"marketing on {bench.database('marketing')}, SMTP on 127.0.0.1:{mailbox.port}")
        url = bench.start(
            "marketing",
            MARKETING_SMTP_PORT=str(mailbox.port),
            MARKETING_SENDER_POLL_INTERVAL_S="0.05",
        )
        print(f"campaign of {args.recipients}:")
        campaign_sends(bench, url, args.recipients)
        print(f"  SMTP server received {len(mailbox.messages)} messages")
        first = bench.processes.pop("marketing")
        first.terminate()
        first.wait()
        if bench.database("marketing").startswith("sqlite"):
            second = bench.start(
                "marketing",
                MARKETING_DATABASE_URL=f"sqlite+aiosqlite:///{bench.workdir / 'segments.db'}",
                MARKETING_RUN_CONSUMERS="false",
            )
            print(f"segment evaluation at {args.customers} customers (SQLite):")
            segment_evaluation(bench, second, bench.workdir / "segments.db", args.customers)


if __name__ == "__main__":
    main()
