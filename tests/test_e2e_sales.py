"""End to end through the real broker: contacts, sales and support side by side, each with its
own database. A lead converted in sales becomes a contact in contacts (HTTP, no duplicate);
contacts' preferences reach sales over the bus; a ticket support opens shows in sales' view
and timeline; sales' outbound call shows in support's timeline."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.contacts.app import create_app as create_contacts
from services.contacts.config import ContactsSettings
from services.sales.app import create_app as create_sales
from services.sales.config import SalesSettings
from services.sales.contacts_client import ContactsClient
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import app_of, eventually, isolated_database, running

pytestmark = pytest.mark.bus


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
    async with isolated_database(tmp_path, "support") as database:
        settings = SupportSettings(**database, kafka=kafka_settings, auth=auth_settings)
        async with running(create_support(settings)) as http:
            yield http


@pytest.fixture
async def sales(
    tmp_path: Any,
    kafka_settings: KafkaSettings,
    auth_settings: AuthSettings,
    contacts: httpx.AsyncClient,
) -> AsyncIterator[httpx.AsyncClient]:
    async with isolated_database(tmp_path, "sales") as database:
        settings = SalesSettings(**database, kafka=kafka_settings, auth=auth_settings)
        async with running(create_sales(settings)) as http:
            # Sales' contacts URL points at the running contacts app.
            transport = httpx.ASGITransport(app=app_of(contacts))
            app_of(http).state.contacts = ContactsClient(
                "http://contacts", auth=auth_settings, transport=transport
            )
            yield http


async def test_lead_to_customer_seen_by_every_department(contacts, sales, support):
    lead = await sales.post(
        "/v1/leads",
        json={"name": "Grace Hopper", "email": "grace@navy.mil", "source": "event"},
    )
    assert lead.status_code == 201, lead.text
    converted = await sales.post(f"/v1/leads/{lead.json()['id']}/convert")
    assert converted.status_code == 200, converted.text
    customer = converted.json()["customer_id"]
    contact = (await contacts.get(f"/v1/contacts/{customer}")).json()
    assert contact["email"] == "grace@navy.mil"

    # Converting a second lead with the same e-mail finds the same contact.
    twin = await sales.post(
        "/v1/leads", json={"name": "G. Hopper", "email": "grace@navy.mil", "source": "web"}
    )
    again = await sales.post(f"/v1/leads/{twin.json()['id']}/convert")
    assert again.json()["customer_id"] == customer and again.json()["created_contact"] is False
    assert len((await contacts.get("/v1/contacts")).json()["items"]) == 1

    # The customer opts out of SMS in contacts: sales learns it over the bus.
    updated = await contacts.patch(
        f"/v1/contacts/{customer}", json={"preferences": {"opted_out_channels": ["sms"]}}
    )
    assert updated.status_code == 200, updated.text

    async def sales_knows_preferences() -> None:
        check = await sales.get(
            f"/v1/customers/{customer}/contact-check", params={"channel": "sms"}
        )
        assert check.json() == {"allowed": False, "reasons": ["channel_opted_out"]}

    await eventually(sales_knows_preferences)

    # Support opens an urgent ticket: sales sees it in the timeline and in the rep's view.
    ticket = await support.post(
        "/v1/tickets",
        json={
            "customer_id": customer,
            "subject": "Invoice is wrong",
            "description": "Charged twice.",
            "channel": "email",
            "priority": "urgent",
        },
    )
    assert ticket.status_code == 201, ticket.text

    async def sales_sees_the_ticket() -> None:
        items = (await sales.get(f"/v1/customers/{customer}/timeline")).json()["items"]
        assert [(i["department"], i["kind"]) for i in items] == [("support", "ticket_opened")]
        view = (await sales.get(f"/v1/customers/{customer}")).json()
        assert [t["priority"] for t in view["open_tickets"]] == ["urgent"]

    await eventually(sales_sees_the_ticket)

    # Sales' outbound call shows in support's timeline.
    call = await sales.post(
        "/v1/activities",
        json={
            "customer_id": customer,
            "kind": "call",
            "channel": "phone",
            "direction": "outbound",
            "subject": "Sorry about the invoice",
            "sentiment": "positive",
        },
    )
    assert call.status_code == 201, call.text
    assert call.json()["contact_check"]["allowed"] is True

    async def support_sees_the_call() -> None:
        items = (await support.get(f"/v1/customers/{customer}/timeline")).json()["items"]
        calls = [i for i in items if i["department"] == "sales"]
        assert [(c["kind"], c["ref"]["id"]) for c in calls] == [("call", call.json()["id"])]

    await eventually(support_sees_the_call)
