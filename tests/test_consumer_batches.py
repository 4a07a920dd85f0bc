"""Sales', marketing's and analytics' subscriptions to contacts' events, and sales' and
marketing's to support's tickets and analytics' scores, given fetched batches (no broker): a
batch's customers are filed and its rows read at once (``customer_view.file_under_first``,
the contacts subscription's prefetch), then each event is applied without looking them up."""

import logging
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.analytics.app import create_app as create_analytics
from services.analytics.config import AnalyticsSettings
from services.analytics.models import Profile
from services.marketing.app import create_app as create_marketing
from services.marketing.config import MarketingSettings
from services.marketing.models import Recipient, Score, TicketState
from services.sales.app import create_app as create_sales
from services.sales.config import SalesSettings
from services.sales.models import Account, CustomerScore, SupportTicket
from shared import topics
from shared.contracts import analytics, support
from shared.customer_view import CustomerProfile, ProfileStatus, projection
from shared.events import CONTACT_CREATED, CONTACT_MERGED, CONTACT_UPDATED
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import (
    app_of,
    consumer_of,
    consumer_record,
    running,
    statements_per_batch,
    statements_run,
)


@dataclass(frozen=True)
class Service:
    create_app: Any
    settings: Any
    tickets: Any  # the model of its tickets' projection
    scores: Any  # of its customers' scores
    scores_subscription: str


SERVICES = {
    "sales": Service(create_sales, SalesSettings, SupportTicket, CustomerScore, "scores"),
    "marketing": Service(create_marketing, MarketingSettings, TicketState, Score, "analytics"),
}
# The services that keep rows of their own per contact (``contact_rows``), and the model.
CONTACT_ROWS = {
    "sales": (create_sales, SalesSettings, Account),
    "marketing": (create_marketing, MarketingSettings, Recipient),
    "analytics": (create_analytics, AnalyticsSettings, Profile),
}


@pytest.fixture
def no_consumers(
    database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> dict[str, Any]:
    """A service's settings with its consumers off: the tests hand them fetched batches."""
    return {**database, "kafka": kafka_settings, "auth": auth_settings, "run_consumers": False}


@pytest.fixture(params=list(SERVICES))
async def service(
    request: pytest.FixtureRequest, no_consumers: dict[str, Any]
) -> AsyncIterator[tuple[Service, FastAPI]]:
    service = SERVICES[request.param]
    async with running(service.create_app(service.settings(**no_consumers))) as http:
        yield service, app_of(http)


@pytest.fixture(params=list(CONTACT_ROWS))
async def contacts_subscriber(
    request: pytest.FixtureRequest, no_consumers: dict[str, Any]
) -> AsyncIterator[tuple[Any, FastAPI]]:
    """The model of a service's own rows of each contact, and the service."""
    create_app, settings, contact_rows = CONTACT_ROWS[request.param]
    async with running(create_app(settings(**no_consumers))) as http:
        yield contact_rows, app_of(http)


def opened(customer: uuid.UUID, ticket: uuid.UUID | None = None) -> dict[str, str | None]:
    return {
        "ticket_id": str(ticket or uuid.uuid4()),
        "customer_id": str(customer),
        "subject": "Invoice wrong",
        "channel": "email",
        "priority": "urgent",
        "category": None,
        "opened_at": "2026-11-20T10:00:00Z",
    }


def scored(customer: uuid.UUID, at: str, churn_risk: float = 0.5) -> dict[str, str | float]:
    return {
        "customer_id": str(customer),
        "churn_risk": churn_risk,
        "churn_level": "medium",
        "scored_at": at,
    }


def table(model: Any) -> str:
    return model.__tablename__  # type: ignore[no-any-return]


async def test_a_batch_of_ticket_events_runs_as_many_statements_whatever_its_size(service):
    # Each event looked its ticket up and its customer's survivor, and the session flushed the
    # ticket the event before had added: three statements or more an event (40 events: 123).
    what, app = service
    customers = [uuid.uuid4() for _ in range(4)]
    batches = [
        [
            consumer_record(topics.SUPPORT, offset, support.TICKET_OPENED, opened(customer))
            for offset, customer in enumerate(customers * (size // 4))
        ]
        for size in (4, 4, 40)  # the first opens a connection
    ]
    tables = (table(what.tickets), "customer_profiles")
    counts = await statements_per_batch(app, "support", batches, tables)
    assert counts[1] == counts[2]
    async with app.state.session_factory() as session:
        assert len(list(await session.scalars(select(what.tickets.ticket_id)))) == 48


async def test_a_batch_files_new_tickets_under_survivors_and_applies_their_later_events(
    service, caplog
):
    caplog.set_level(logging.INFO, logger="shared.consumer")
    what, app = service
    survivor, merged, erased = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with app.state.session_factory() as session:
        await projection.contact_merged(session, merged, survivor)
        await projection.contact_erased(session, erased)
        await session.commit()
    of_merged = uuid.uuid4()
    resolved = {
        "ticket_id": str(of_merged),
        "customer_id": str(merged),
        "agent_id": None,
        "resolved_at": "2026-11-21T10:00:00Z",
    }
    tickets = consumer_of(app, "support")
    await tickets.process(
        [
            consumer_record(topics.SUPPORT, 0, support.TICKET_OPENED, opened(merged, of_merged)),
            consumer_record(topics.SUPPORT, 1, support.TICKET_RESOLVED, resolved),
            consumer_record(topics.SUPPORT, 2, support.TICKET_OPENED, opened(erased)),
        ]
    )
    # In one transaction: a failed batch is applied again event by event, after a log line
    # (as when a new ticket's second event found it missing and added it again).
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    model = what.tickets
    async with app.state.session_factory() as session:
        rows = await session.execute(select(model.ticket_id, model.customer_id, model.status))
        assert set(rows) == {(of_merged, survivor, "resolved")}


async def test_a_batch_of_scores_runs_as_many_statements_whatever_its_size(service):
    what, app = service
    batches = [
        [
            consumer_record(
                topics.ANALYTICS,
                offset,
                analytics.CUSTOMER_SCORED,
                scored(uuid.uuid4(), "2026-12-04T09:00:00Z"),
            )
            for offset in range(size)
        ]
        for size in (4, 4, 40)  # the first opens a connection
    ]
    tables = (table(what.scores), "customer_profiles")
    counts = await statements_per_batch(app, what.scores_subscription, batches, tables)
    assert counts[1] == counts[2]


async def test_a_new_customers_scores_in_one_batch_keep_the_latest(service, caplog):
    caplog.set_level(logging.INFO, logger="shared.consumer")
    what, app = service
    customer = uuid.uuid4()
    later = scored(customer, "2026-12-04T10:00:00Z", churn_risk=0.9)
    earlier = scored(customer, "2026-12-04T09:00:00Z", churn_risk=0.1)
    scores = consumer_of(app, what.scores_subscription)
    await scores.process(
        [
            consumer_record(topics.ANALYTICS, 0, analytics.CUSTOMER_SCORED, later),
            consumer_record(topics.ANALYTICS, 1, analytics.CUSTOMER_SCORED, earlier),
        ]
    )
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    async with app.state.session_factory() as session:
        assert list(await session.scalars(select(what.scores.churn_risk))) == [0.9]


def snapshot(contact: uuid.UUID, first_name: str = "Ada") -> dict[str, str]:
    return {
        "contact_id": str(contact),
        "first_name": first_name,
        "email": f"{contact.hex[:12]}@example.com",
        "country": "DE",
        "created_at": "2026-12-01T09:00:00Z",
        "updated_at": "2026-12-01T09:00:00Z",
    }


async def test_a_batch_of_contact_events_reads_profiles_and_contact_rows_at_once(
    contacts_subscriber,
):
    # Each event read its contact's profile, and the service's row of the contact (sales'
    # account, marketing's recipient, analytics' profile), with a query each; and on
    # PostgreSQL took its contact's lock again (twice in marketing) after the batch's.
    contact_rows, app = contacts_subscriber
    batches = [
        [
            consumer_record(topics.CONTACTS, offset, CONTACT_CREATED, snapshot(uuid.uuid4()))
            for offset in range(size)
        ]
        for size in (4, 4, 40)  # the first opens a connection
    ]
    reads = ("FROM customer_profiles", f"FROM {table(contact_rows)}", "pg_advisory_xact_lock")
    counts = await statements_per_batch(app, "contacts", batches, reads)
    assert counts[1] == counts[2], counts
    async with app.state.session_factory() as session:
        assert len(list(await session.scalars(select(contact_rows)))) == 48


# A list of placeholders, SQLite's or asyncpg's: (?, ?, ?) or ($1, $2, $3); and rows of them.
_PLACEHOLDERS = re.compile(r"\((\?|\$\d+)(, (\?|\$\d+))*\)")
_ROWS = re.compile(r"\(\.\.\.\)(, \(\.\.\.\))+")


def shape(statement: str) -> str:
    """The statement with its lists of values, and of rows, of any length alike."""
    return _ROWS.sub("(...)*", _PLACEHOLDERS.sub("(...)", statement))


async def test_batches_of_every_size_run_a_few_lengths_of_each_statement(contacts_subscriber):
    # An IN list of each length, and a multi-row INSERT of each count, is an SQL text of its
    # own, which the database prepares and keeps (SQLite 128 a connection, asyncpg 100):
    # batches of 1 to 40 events made 40 texts of each lookup and of the processed events'
    # INSERT, all day long, each pushing a hot statement out of the cache.
    contact_rows, app = contacts_subscriber
    consumer = consumer_of(app, "contacts")
    offset = 0
    with statements_run(app.state.engine) as statements:
        for size in range(1, 41):
            await consumer.process(
                [
                    consumer_record(
                        topics.CONTACTS, offset + i, CONTACT_CREATED, snapshot(uuid.uuid4())
                    )
                    for i in range(size)
                ]
            )
            offset += size
    texts = Counter(shape(statement) for statement in set(statements))
    assert max(texts.values()) <= 7, texts.most_common(3)  # 1, 2, 4, ..., 64
    async with app.state.session_factory() as session:
        assert len(list(await session.scalars(select(contact_rows)))) == offset


async def test_a_batch_creating_updating_and_merging_contacts_applies_each_in_order(
    contacts_subscriber, caplog
):
    caplog.set_level(logging.INFO, logger="shared.consumer")
    _, app = contacts_subscriber
    merged, survivor = uuid.uuid4(), uuid.uuid4()
    merge = {"merged_id": str(merged), "survivor_id": str(survivor)}
    contacts = consumer_of(app, "contacts")
    await contacts.process(
        [
            consumer_record(topics.CONTACTS, 0, CONTACT_CREATED, snapshot(merged)),
            consumer_record(topics.CONTACTS, 1, CONTACT_CREATED, snapshot(survivor)),
            consumer_record(topics.CONTACTS, 2, CONTACT_UPDATED, snapshot(survivor, "Grace")),
            consumer_record(topics.CONTACTS, 3, CONTACT_MERGED, merge),
            # A snapshot of the merged contact after its merge changes nothing.
            consumer_record(topics.CONTACTS, 4, CONTACT_UPDATED, snapshot(merged, "Late")),
        ]
    )
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    async with app.state.session_factory() as session:
        profiles = await session.execute(
            select(CustomerProfile.contact_id, CustomerProfile.status, CustomerProfile.merged_into)
        )
        assert set(profiles) == {
            (merged, ProfileStatus.merged, survivor),
            (survivor, ProfileStatus.active, None),
        }
