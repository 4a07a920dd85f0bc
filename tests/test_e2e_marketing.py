"""End to end through the real broker: contacts, support and marketing side by side, each with
its own database. Four customers created in contacts; one gets an urgent ticket in support, one
was already called five times this week by sales (the company's weekly limit). A campaign to all
four: those two are suppressed with their reasons, the other two receive the e-mail over real
SMTP. One of them unsubscribes through the link in the e-mail: contacts opts the channel out and
republishes, and every service's contact check then says so."""

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.contacts.app import create_app as create_contacts
from services.contacts.config import ContactsSettings
from services.marketing.app import create_app as create_marketing
from services.marketing.config import MarketingSettings
from services.marketing.tests.servers import Mailbox
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared import topics
from shared.events import INTERACTION_RECORDED, encode_event
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import app_of, eventually, isolated_database, running

pytestmark = pytest.mark.bus
FAMILY = "Test" + uuid.uuid4().hex[:8]  # this test's customers only (the broker is shared)
THIS_FAMILY = {"field": "last_name", "op": "eq", "value": FAMILY}


@pytest.fixture
async def contacts(
    database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ContactsSettings(**database, kafka=kafka_settings, auth=auth_settings)
    async with running(create_contacts(settings)) as http:
        yield http


@pytest.fixture
async def support(
    tmp_path: Any, kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    async with isolated_database(tmp_path, "support") as db:
        settings = SupportSettings(
            **db, kafka=kafka_settings, auth=auth_settings, run_scheduler=False
        )
        async with running(create_support(settings)) as http:
            yield http


@pytest.fixture
async def marketing(
    tmp_path: Any, kafka_settings: KafkaSettings, auth_settings: AuthSettings, mailbox: Mailbox
) -> AsyncIterator[httpx.AsyncClient]:
    async with isolated_database(tmp_path, "marketing") as db:
        settings = MarketingSettings(
            **db,
            kafka=kafka_settings,
            auth=auth_settings,
            smtp_port=mailbox.port,
            sender_poll_interval_s=0.05,
            public_base_url="https://crm.example.test",
        )
        async with running(create_marketing(settings)) as http:
            yield http


async def new_contact(contacts: httpx.AsyncClient, name: str) -> str:
    response = await contacts.post(
        "/v1/contacts",
        json={"first_name": name, "last_name": FAMILY, "email": f"{name.lower()}@example.com"},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def sales_call(producer, customer_id: str, hours_ago: int) -> None:
    """Sales' touch as sales publishes it on crm.interactions.v1."""
    data = {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "department": "sales",
        "channel": "phone",
        "direction": "outbound",
        "kind": "call",
        "subject": "Renewal",
        "occurred_at": (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat(),
    }
    _, value, headers = encode_event(
        event_type=INTERACTION_RECORDED, source="/crm/sales", data=data, subject=customer_id
    )
    await producer.send_and_wait(
        topics.INTERACTIONS,
        value=value,
        key=customer_id.encode(),
        headers=list(headers.items()),
    )


async def test_campaign_spares_customers_under_pressure(
    contacts, support, marketing, producer, mailbox
):
    ada, grace, linus, alan = [
        await new_contact(contacts, name) for name in ("Ada", "Grace", "Linus", "Alan")
    ]
    ticket = await support.post(
        "/v1/tickets",
        json={
            "customer_id": grace,
            "subject": "Invoice wrong for the third time",
            "description": "I was charged twice.",
            "channel": "email",
            "priority": "urgent",
        },
    )
    assert ticket.status_code == 201, ticket.text
    for hours_ago in range(5):
        await sales_call(producer, linus, hours_ago + 1)

    async def check(customer: str, channel: str = "email") -> dict:
        response = await marketing.get(
            f"/v1/customers/{customer}/contact-check", params={"channel": channel}
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def pressure_known() -> None:
        assert await check(grace) == {"allowed": False, "reasons": ["open_priority_ticket"]}
        assert await check(linus) == {"allowed": False, "reasons": ["weekly_limit_reached"]}
        assert await check(ada) == {"allowed": True, "reasons": []}
        count = await marketing.post("/v1/segments:preview", json={"rules": THIS_FAMILY})
        assert count.json()["count"] == 4

    await eventually(pressure_known, timeout=30)

    segment = await marketing.post(
        "/v1/segments",
        json={"name": "The family", "rules": THIS_FAMILY},
    )
    campaign = await marketing.post(
        "/v1/campaigns",
        json={
            "name": "Winter offer",
            "channel": "email",
            "segment_id": segment.json()["id"],
            "subject": "{first_name}, our winter offer",
            "template": "Hello {first_name}, https://shop.example.test/winter",
            "budget": "10",
            "cost_per_send": "0.01",
        },
    )
    assert campaign.status_code == 201, campaign.text
    campaign_id = campaign.json()["id"]
    launched = await marketing.post(f"/v1/campaigns/{campaign_id}/launch")
    assert launched.status_code == 202, launched.text
    assert launched.json()["queued"] == 2
    assert launched.json()["suppressed"] == {"open_priority_ticket": 1, "weekly_limit_reached": 1}

    async def delivered() -> dict:
        report = (await marketing.get(f"/v1/campaigns/{campaign_id}/report")).json()
        assert report["status"] == "completed" and report["sent"] == 2, report
        return report

    report = await eventually(delivered)
    assert report["suppressed_by_reason"] == {"open_priority_ticket": 1, "weekly_limit_reached": 1}
    assert report["spend"] == "0.02"
    recipients = sorted(rcpt for m in mailbox.messages for rcpt in m.rcpt_tos)
    assert recipients == ["ada@example.com", "alan@example.com"]

    # Ada unsubscribes with the one-click link of her e-mail.
    [mail] = [m for m in mailbox.messages if m.rcpt_tos == ["ada@example.com"]]
    link = re.search(
        r"List-Unsubscribe: <https://crm\.example\.test(/t/u/[^>]+)>", mail.content.decode()
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_of(marketing)), base_url="https://crm.example.test"
    ) as browser:
        response = await browser.post(link.group(1), content="List-Unsubscribe=One-Click")
        assert response.status_code == 200

    async def consent_everywhere() -> None:
        contact = (await contacts.get(f"/v1/contacts/{ada}")).json()
        assert contact["preferences"]["opted_out_channels"] == ["email"]
        in_support = await support.get(
            f"/v1/customers/{ada}/contact-check", params={"channel": "email"}
        )
        assert in_support.json() == {"allowed": False, "reasons": ["channel_opted_out"]}

    await eventually(consent_everywhere, timeout=30)
    del alan
