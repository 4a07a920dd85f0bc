"""End to end through the real broker: contacts and support side by side, each with its own
database. A contact created in contacts, a ticket opened for it in support, the ticket touch in
support's timeline (and in contacts' activity), then the contact's erasure applied by support."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.contacts.app import create_app as create_contacts
from services.contacts.config import ContactsSettings
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared.settings import AuthSettings, KafkaSettings
from shared.testing import eventually, isolated_database, running

pytestmark = pytest.mark.bus


@pytest.fixture
async def support_database(tmp_path: Any) -> AsyncIterator[dict[str, Any]]:
    """A second isolated database, for support."""
    async with isolated_database(tmp_path, "support") as settings:
        yield settings


@pytest.fixture
async def contacts(
    database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ContactsSettings(**database, kafka=kafka_settings, auth=auth_settings)
    async with running(create_contacts(settings)) as http:
        yield http


@pytest.fixture
async def support(
    support_database: dict[str, Any], kafka_settings: KafkaSettings, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    settings = SupportSettings(**support_database, kafka=kafka_settings, auth=auth_settings)
    async with running(create_support(settings)) as http:
        yield http


async def test_ticket_for_a_new_contact_shows_in_the_timeline(contacts, support):
    created = await contacts.post(
        "/v1/contacts",
        json={
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "grace@navy.mil",
            "preferences": {"opted_out_channels": ["sms"]},
        },
    )
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]

    async def preferences_known() -> None:
        check = await support.get(
            f"/v1/customers/{contact_id}/contact-check", params={"channel": "sms"}
        )
        assert check.json() == {"allowed": False, "reasons": ["channel_opted_out"]}

    await eventually(preferences_known)

    ticket = await support.post(
        "/v1/tickets",
        json={
            "customer_id": contact_id,
            "subject": "Compiler crashes",
            "description": "The A-0 compiler stops at line 3.",
            "channel": "email",
            "priority": "high",
        },
    )
    assert ticket.status_code == 201, ticket.text
    ticket_id = ticket.json()["id"]

    async def in_timeline() -> list[dict]:
        response = await support.get(f"/v1/customers/{contact_id}/timeline")
        items = response.json()["items"]
        assert [i["kind"] for i in items] == ["ticket_opened"], items
        return items

    [touch] = await eventually(in_timeline)
    assert touch["department"] == "support" and touch["direction"] == "inbound"
    assert touch["ref"] == {"type": "ticket", "id": ticket_id}

    async def contacts_saw_it() -> None:
        activity = (await contacts.get(f"/v1/contacts/{contact_id}")).json()["activity"]
        assert activity["interactions_total"] == 1

    await eventually(contacts_saw_it)

    erased = await contacts.delete(f"/v1/contacts/{contact_id}")
    assert erased.status_code == 204

    async def erased_in_support() -> None:
        assert (await support.get(f"/v1/customers/{contact_id}/timeline")).json()["items"] == []
        read = (await support.get(f"/v1/tickets/{ticket_id}")).json()
        assert read["description"] == "[erased]"
        assert read["status"] == "closed"  # nothing more is done for the person

    await eventually(erased_in_support)


async def test_a_touch_sent_again_is_counted_once(contacts, support):
    # A client retrying POST /v1/interactions sends the touch's interaction_id again: contacts
    # counted every copy (and so did analytics), while the timelines showed one.
    created = await contacts.post("/v1/contacts", json={"first_name": "Ada"})
    contact_id = created.json()["id"]
    touch = {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": contact_id,
        "channel": "phone",
        "direction": "inbound",
        "kind": "call",
        "occurred_at": "2026-11-30T09:00:00Z",
    }
    last = {**touch, "interaction_id": str(uuid.uuid4()), "occurred_at": "2026-11-30T10:00:00Z"}
    for _ in range(2):
        assert (await support.post("/v1/interactions", json=touch)).status_code == 201
    batch = await support.post("/v1/interactions:batch", json={"items": [touch, last]})
    assert batch.status_code == 201, batch.text

    # The last touch follows the copies on the customer's partition: once contacts has it,
    # it has seen all of them.
    async def last_counted() -> dict[str, Any]:
        activity = (await contacts.get(f"/v1/contacts/{contact_id}")).json()["activity"]
        assert activity["last_interaction_at"] == last["occurred_at"]
        return activity

    activity = await eventually(last_counted)
    assert activity["interactions_total"] == 2


async def test_a_conversation_before_the_contact_existed_joins_their_history(contacts, support):
    # A new customer writes on WhatsApp before anyone has made them a contact: the ticket is
    # filed under a stand-in id and its touches wait. Before, they waited for good: once
    # contacts learned the number, support moved its ticket and told no one, and the
    # conversation that brought the customer was in no other department's history.
    sender = {"kind": "whatsapp", "value": "4930901820"}  # as WhatsApp's webhooks send it
    first = await support.post(
        "/v1/inbound", json={"channel": "whatsapp", "sender": sender, "body": "Is it in stock?"}
    )
    assert first.status_code == 201, first.text
    assert first.json()["unknown_customer"] is True
    reply = await support.post(
        "/v1/inbound", json={"channel": "whatsapp", "sender": sender, "body": "The blue one"}
    )
    assert reply.json()["threaded"] is True

    created = await contacts.post("/v1/contacts", json={"first_name": "Lin", "country": "DE"})
    contact_id = created.json()["id"]
    added = await contacts.post(
        f"/v1/contacts/{contact_id}/identities", json={"kind": "whatsapp", "value": "+4930901820"}
    )
    assert added.status_code == 201, added.text

    async def in_their_history() -> None:
        activity = (await contacts.get(f"/v1/contacts/{contact_id}")).json()["activity"]
        assert activity["interactions_total"] == 2  # the ticket opened, the reply
        timeline = (await support.get(f"/v1/customers/{contact_id}/timeline")).json()["items"]
        assert sorted(i["kind"] for i in timeline) == ["ticket_opened", "ticket_reply"]

    await eventually(in_their_history)
    ticket = (await support.get(f"/v1/tickets/{first.json()['ticket_id']}")).json()
    assert ticket["customer_id"] == contact_id and ticket["unknown_customer"] is False
