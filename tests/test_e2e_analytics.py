"""End to end through the real broker: support and analytics side by side, each with its own
database. Tickets worked in support (opened, answered, re-assigned, resolved, rated, reopened)
reach analytics' support KPIs, the customer's 360 and scores."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.analytics.app import create_app as create_analytics
from services.analytics.config import AnalyticsSettings
from services.analytics.models import TicketFact
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared import topics
from shared.events import CONTACT_ERASED, encode_event, utcnow
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import app_of, eventually, isolated_database, running

pytestmark = pytest.mark.bus


@pytest.fixture
async def analytics_database(tmp_path: Any) -> AsyncIterator[dict[str, Any]]:
    async with isolated_database(tmp_path, "analytics") as settings:
        yield settings


@pytest.fixture
async def support(
    database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    settings = SupportSettings(
        **database, kafka=kafka_settings, auth=auth_settings, run_scheduler=False
    )
    async with running(create_support(settings)) as http:
        yield http


@pytest.fixture
async def analytics(
    analytics_database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    settings = AnalyticsSettings(**analytics_database, kafka=kafka_settings, auth=auth_settings)
    async with running(create_analytics(settings)) as http:
        yield http


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_support_work_reaches_the_kpis_and_the_360(support, analytics):
    customer = str(uuid.uuid4())
    # A team of its own, so routing picks one of these two agents and no other test's.
    team = "e2e-" + uuid.uuid4().hex[:8]
    ada = await ok(
        await support.post("/v1/agents", json={"name": "Ada", "team": team, "capacity": 5})
    )
    bob = await ok(
        await support.post("/v1/agents", json={"name": "Bob", "team": team, "capacity": 5})
    )
    now = utcnow().replace(microsecond=0)

    async def ticket(subject: str) -> str:
        body = {
            "customer_id": customer,
            "subject": subject,
            "description": "It broke.",
            "channel": "email",
            "priority": "high",
        }
        created = await ok(await support.post("/v1/tickets", json=body))
        return created["id"]

    first, second = await ticket("Printer"), await ticket("Scanner")
    await ok(await support.post(f"/v1/tickets/{first}/assign", json={"agent_id": ada["id"]}))
    await ok(
        await support.post(
            f"/v1/tickets/{first}/messages",
            json={"author_type": "agent", "author_id": ada["id"], "body": "On it."},
        )
    )
    # Re-assigned to Bob, who resolves it: credited to Bob.
    await ok(await support.post(f"/v1/tickets/{first}/assign", json={"agent_id": bob["id"]}))
    await ok(await support.post(f"/v1/tickets/{first}/resolve"))
    await ok(await support.post(f"/v1/tickets/{first}/satisfaction", json={"score": 4}))
    # The second is resolved by Ada, then reopened: not resolved any more.
    await ok(await support.post(f"/v1/tickets/{second}/assign", json={"agent_id": ada["id"]}))
    await ok(await support.post(f"/v1/tickets/{second}/resolve"))
    await ok(await support.post(f"/v1/tickets/{second}/reopen"))

    today = {"from": str(now.date() - timedelta(days=1)), "to": str(now.date() + timedelta(days=1))}

    async def kpis_show_it() -> dict[str, Any]:
        kpis = await ok(await analytics.get("/v1/kpis/support", params=today))
        agents = {a["agent_id"]: a for a in kpis["closed_per_agent"]}
        assert agents.get(bob["id"]) == {"agent_id": bob["id"], "closed": 1, "avg_csat": 4.0}
        assert ada["id"] not in agents  # her resolution was undone by the reopening
        assert kpis["tickets_opened"] >= 2
        return kpis

    await eventually(kpis_show_it, timeout=30)

    async def the_360_shows_it() -> dict[str, Any]:
        view = await ok(await analytics.get(f"/v1/customers/{customer}/360"))
        assert [t["ticket_id"] for t in view["open_tickets"]] == [second]
        assert view["touches_per_department"] == {"support": 3}  # 2 openings, 1 agent reply
        assert view["last_outbound"] and view["last_outbound"]["kind"] == "ticket_reply"
        factors = {f["name"]: f["value"] for f in view["scores"]["factors"]}
        assert factors["open_tickets"] == 0.5
        return view

    await eventually(the_360_shows_it, timeout=30)


async def test_an_erasure_closes_the_customers_open_ticket_everywhere(support, analytics, producer):
    # Contacts erases a customer with an open ticket. Before, support kept the ticket open (in
    # its queues and SLA sweep) and so did analytics, for a person who no longer exists.
    customer = str(uuid.uuid4())
    body = {
        "customer_id": customer,
        "subject": "Invoice",
        "description": "Wrong amount.",
        "channel": "email",
        "priority": "normal",
    }
    ticket = (await ok(await support.post("/v1/tickets", json=body)))["id"]

    async def open_in_analytics() -> None:
        view = await ok(await analytics.get(f"/v1/customers/{customer}/360"))
        assert [t["ticket_id"] for t in view["open_tickets"]] == [ticket]

    await eventually(open_in_analytics, timeout=30)
    erased = {"contact_id": customer, "erased_at": utcnow().isoformat()}
    _, value, headers = encode_event(
        event_type=CONTACT_ERASED, source="/crm/contacts", data=erased, subject=customer
    )
    await producer.send_and_wait(
        topics.CONTACTS, value=value, key=customer.encode(), headers=list(headers.items())
    )

    async def closed_everywhere() -> None:
        async with app_of(analytics).state.session_factory() as session:
            fact = await session.get(TicketFact, uuid.UUID(ticket))
            assert fact is not None and fact.customer_id is None  # an anonymous count now
            assert fact.closed_at is not None
        read = await ok(await support.get(f"/v1/tickets/{ticket}"))
        assert read["status"] == "closed"

    await eventually(closed_everywhere, timeout=30)
