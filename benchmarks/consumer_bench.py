"""Each service's consumer alone, in this process: CPU per event applied (touches by default).

Every touch any department logs is applied by all five services (contacts counts it, the
others file it in their customer view and more), so what one costs a consumer is paid five
times. For each service this starts the app's lifespan on a fresh SQLite file (or
DATABASE_URL; on PostgreSQL a schema of its own, dropped afterwards) with its relay and its
Kafka consumer off, and hands the service's interactions subscription fetched batches of
touch events (``EventConsumer.process``, as the fetch loop does): 20 customers, the shape of a
batch ingest. Prints CPU per touch, and how much of it the garbage collector took.

With ``--events tickets``, the services' consumers of crm.support.v1 (sales, marketing,
analytics) get ticket-opened events instead, a new ticket each, as the load benchmark's mix
opens them; with ``--events scores``, those of crm.analytics.v1 (sales, marketing) get
customer-scored events, a new customer each, as a rescoring publishes them; with ``--events
contacts``, those of crm.contacts.v1 (all but contacts) get contact-created events.

    .venv/bin/python benchmarks/consumer_bench.py [--count 20000] [--batch 500] [--runs 3]
        [--services contacts support] [--events touches|tickets|scores|contacts]

Figures (2 cores, SQLite): docs/reliability.md, "5 Dec, evening" (touches) and "5 Dec,
night" (tickets, scores, contacts).
"""

import argparse
import asyncio
import gc
import os
import tempfile
import time
import uuid
from typing import Any

from aiokafka import ConsumerRecord
from harness import touch_rows
from pydantic import BaseModel

from services.analytics.app import create_app as create_analytics
from services.analytics.config import AnalyticsSettings
from services.contacts.app import create_app as create_contacts
from services.contacts.config import ContactsSettings
from services.marketing.app import create_app as create_marketing
from services.marketing.config import MarketingSettings
from services.sales.app import create_app as create_sales
from services.sales.config import SalesSettings
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared import topics
from shared.consumer import EventConsumer
from shared.contracts import analytics, support
from shared.events import CONTACT_CREATED, Channel, ContactSnapshot, utcnow
from shared.outbox import event_row
from shared.settings import AuthSettings, KafkaSettings

SERVICES: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "contacts": (create_contacts, ContactsSettings, {}),
    "sales": (create_sales, SalesSettings, {}),
    "marketing": (create_marketing, MarketingSettings, {"run_sender": False}),
    "support": (create_support, SupportSettings, {"run_scheduler": False}),
    "analytics": (create_analytics, AnalyticsSettings, {}),
}


def touch_records(customers: list[uuid.UUID], count: int) -> list[ConsumerRecord]:
    """Fetched records of touch events, as support's relay publishes them."""
    return fetched(topics.INTERACTIONS, touch_rows(customers, 0, count))


def ticket_records(customers: list[uuid.UUID], count: int) -> list[ConsumerRecord]:
    """Fetched records of ticket-opened events, a new ticket each, the customers in turn."""
    opened = [
        support.TicketOpened(
            ticket_id=uuid.uuid4(),
            customer_id=customers[index % len(customers)],
            subject=f"load {index}",
            channel=Channel.email,
            priority="normal",
            category=None,
            opened_at=utcnow(),
        )
        for index in range(count)
    ]
    return events_fetched(topics.SUPPORT, support.TICKET_OPENED, support.SOURCE, opened)


def score_records(_customers: list[uuid.UUID], count: int) -> list[ConsumerRecord]:
    """Fetched records of customer-scored events, each of another customer."""
    scores = [
        analytics.CustomerScored(
            customer_id=uuid.uuid4(),
            rfm_segment="new",
            churn_risk=0.5,
            churn_level="medium",
            scored_at=utcnow(),
        )
        for _ in range(count)
    ]
    return events_fetched(topics.ANALYTICS, analytics.CUSTOMER_SCORED, analytics.SOURCE, scores)


def contact_records(_customers: list[uuid.UUID], count: int) -> list[ConsumerRecord]:
    """Fetched records of contact-created events, each of a new contact."""
    contacts = [
        ContactSnapshot(
            contact_id=uuid.uuid4(),
            first_name=f"Load {index}",
            email=f"load.{index}@example.com",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        for index in range(count)
    ]
    return events_fetched(topics.CONTACTS, CONTACT_CREATED, "/crm/contacts", contacts, "contact_id")


def events_fetched(
    topic: str, event_type: str, source: str, events: list[BaseModel], key: str = "customer_id"
) -> list[ConsumerRecord]:
    """Events as their outbox rows, then as fetched; keyed (and their subject) by the field
    ``key`` of each."""
    rows = [
        event_row(
            topic=topic,
            key=str(getattr(data, key)),
            event_type=event_type,
            source=source,
            subject=str(getattr(data, key)),
            data=data,
        )
        for data in events
    ]
    return fetched(topic, rows)


EVENTS = {
    "contacts": (topics.CONTACTS, contact_records),
    "touches": (topics.INTERACTIONS, touch_records),
    "tickets": (topics.SUPPORT, ticket_records),
    "scores": (topics.ANALYTICS, score_records),
}


def fetched(topic: str, rows: list[dict[str, Any]]) -> list[ConsumerRecord]:
    """Outbox rows as a fetch returns them, one partition."""
    return [
        ConsumerRecord(
            topic=topic,
            partition=0,
            offset=offset,
            timestamp=0,
            timestamp_type=0,
            key=row["key"].encode(),
            value=row["value"],
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=0,
            headers=[(name, value.encode()) for name, value in row["headers"].items()],
        )
        for offset, row in enumerate(rows)
    ]


class CollectorTime:
    """Time spent in the garbage collector, from its callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


async def bench(service: str, args: argparse.Namespace, collector: CollectorTime) -> None:
    create_app, settings_class, extra = SERVICES[service]
    url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/db.db"
    schema = f"bench_consumer_{uuid.uuid4().hex[:8]}" if url.startswith("postgresql") else None
    settings = settings_class(
        database_url=url,
        database_schema=schema,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", create_topics=False),
        auth=AuthSettings(secret="consumer-bench-" + uuid.uuid4().hex),
        run_relay=False,
        run_consumers=False,
        **extra,
    )
    topic, make_records = EVENTS[args.events]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        consumer: EventConsumer | None = next(
            (c for c in app.state.consumers if topic in c.subscription.topics), None
        )
        if consumer is None:
            print(f"{service}: does not consume {topic}")
            return
        customers = [uuid.uuid4() for _ in range(20)]
        await consumer.process(make_records(customers, args.batch))  # warm-up
        figures = []
        for _ in range(args.runs):
            records = make_records(customers, args.count)
            collector.seconds = 0.0
            started = time.process_time()
            for start in range(0, len(records), args.batch):
                await consumer.process(records[start : start + args.batch])
            used = time.process_time() - started
            per_event, in_gc = used / args.count, collector.seconds / args.count
            figures.append(f"{per_event * 1e6:.1f} us ({in_gc * 1e6:.1f} in GC)")
        print(
            f"{consumer.name}: CPU per event, {args.runs} runs: {', '.join(figures)}"
            f" (collector thresholds {gc.get_threshold()})"
        )
        if schema:
            async with app.state.engine.begin() as connection:
                await connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


async def main(args: argparse.Namespace) -> None:
    collector = CollectorTime()
    print(f"{args.count:,} {args.events} in fetched batches of {args.batch}")
    for service in args.services:
        await bench(service, args, collector)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="events per run")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", choices=list(EVENTS), default="touches")
    parser.add_argument("--services", nargs="+", choices=list(SERVICES), default=list(SERVICES))
    asyncio.run(main(parser.parse_args()))
