"""Support on the real broker: its events as CloudEvents keyed by customer id, and the
timeline and contacts projections fed by other services' events."""

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

from services.support.tests.helpers import new_agent, new_ticket
from shared import topics
from shared.events import (
    CONTACT_ERASED,
    CONTACT_MERGED,
    CONTACT_UPDATED,
    INTERACTION_RECORDED,
    encode_event,
)
from shared.testing import TopicTail, eventually

pytestmark = pytest.mark.bus


def parse(record):  # the integrator's view: the CloudEvents SDK must read every message
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return from_structured(message, JSONFormat())


def keyed(customer_id: str, event_type: str | None = None):
    def matches(record) -> bool:
        if record.key != customer_id.encode() or record.value is None:
            return False
        return event_type is None or parse(record).get_type() == event_type

    return matches


async def produce(producer, topic: str, key: str, event_type: str, data: dict, source: str):
    _, value, headers = encode_event(event_type=event_type, source=source, data=data, subject=key)
    await producer.send_and_wait(
        topic, value=value, key=key.encode(), headers=list(headers.items())
    )


def sales_call(customer_id: str, occurred_at: str = "2026-11-21T09:30:00Z") -> dict:
    return {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "department": "sales",
        "channel": "phone",
        "direction": "outbound",
        "kind": "call",
        "subject": "Renewal",
        "occurred_at": occurred_at,
        "actor": "rep-7",
        "ref": {"type": "activity", "id": "a-1"},
    }


async def timeline(client: httpx.AsyncClient, customer_id: str) -> list[dict]:
    response = await client.get(f"/v1/customers/{customer_id}/timeline")
    assert response.status_code == 200
    return response.json()["items"]


def has(count: int, client: httpx.AsyncClient, customer_id: str):
    async def check() -> list[dict]:
        items = await timeline(client, customer_id)
        assert len(items) == count, items
        return items

    return check


class TestSupportEvents:
    async def test_ticket_touches_are_cloudevents_keyed_by_customer(self, client, kafka_bootstrap):
        customer = str(uuid.uuid4())
        agent = await new_agent(client)
        async with (
            TopicTail(kafka_bootstrap, topics.INTERACTIONS) as touches,
            TopicTail(kafka_bootstrap, topics.SUPPORT) as domain,
        ):
            ticket = await new_ticket(client, customer_id=customer, channel="whatsapp")
            reply = await client.post(
                f"/v1/tickets/{ticket['id']}/messages",
                json={"author_type": "agent", "author_id": agent["id"], "body": "On it"},
            )
            assert reply.status_code == 201
            records = await touches.collect(keyed(customer), count=2)
            support = await domain.collect(keyed(customer), count=3)

        events = [parse(r) for r in records]
        for record, event in zip(records, events, strict=True):
            assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
            assert event.get_type() == INTERACTION_RECORDED
            assert event.get_source() == "/crm/support"
            assert event.get_subject() == customer
        opened, answered = (e.get_data() for e in events)
        assert (opened["kind"], opened["direction"]) == ("ticket_opened", "inbound")
        assert (answered["kind"], answered["direction"]) == ("ticket_reply", "outbound")
        assert opened["channel"] == answered["channel"] == "whatsapp"
        assert answered["ref"] == {"type": "ticket", "id": ticket["id"]}
        assert [parse(r).get_type() for r in support] == [
            "crm.support.ticket_opened.v1",
            "crm.support.ticket_assigned.v1",
            "crm.support.ticket_message_added.v1",
        ]

    async def test_own_ticket_touch_reaches_the_timeline(self, client):
        customer = str(uuid.uuid4())
        ticket = await new_ticket(client, customer_id=customer)
        [item] = await eventually(has(1, client, customer))
        assert item["kind"] == "ticket_opened" and item["ref"]["id"] == ticket["id"]


class TestProjections:
    async def test_another_departments_touch_appears_in_the_timeline(self, client, producer):
        customer = str(uuid.uuid4())
        call = sales_call(customer)
        await produce(
            producer, topics.INTERACTIONS, customer, INTERACTION_RECORDED, call, "/crm/sales"
        )
        [item] = await eventually(has(1, client, customer))
        assert item["interaction_id"] == call["interaction_id"]
        assert item["department"] == "sales" and item["occurred_at"] == "2026-11-21T09:30:00Z"

    async def test_merge_is_applied(self, client, producer):
        survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
        touch = sales_call(merged)
        await produce(
            producer, topics.INTERACTIONS, merged, INTERACTION_RECORDED, touch, "/crm/sales"
        )
        ticket = await new_ticket(client, customer_id=merged)
        await eventually(has(2, client, merged))
        await produce(
            producer,
            topics.CONTACTS,
            merged,
            CONTACT_MERGED,
            {"merged_id": merged, "survivor_id": survivor},
            "/crm/contacts",
        )

        async def repointed() -> None:
            items = await timeline(client, survivor)
            assert {i["customer_id"] for i in items} == {survivor} and len(items) == 2
            moved = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
            assert moved["customer_id"] == survivor

        await eventually(repointed)

    async def test_erasure_is_applied(self, client, producer):
        customer = str(uuid.uuid4())
        now = datetime.now(UTC).isoformat()
        snapshot = {
            "contact_id": customer,
            "first_name": "Anna",
            "email": "anna@example.com",
            "preferences": {"opted_out_channels": ["sms"]},
            "created_at": now,
            "updated_at": now,
        }
        await produce(
            producer, topics.CONTACTS, customer, CONTACT_UPDATED, snapshot, "/crm/contacts"
        )
        call = sales_call(customer)
        await produce(
            producer, topics.INTERACTIONS, customer, INTERACTION_RECORDED, call, "/crm/sales"
        )
        ticket = await new_ticket(client, customer_id=customer)
        await eventually(has(2, client, customer))

        async def opted_out() -> None:
            check = await client.get(
                f"/v1/customers/{customer}/contact-check", params={"channel": "sms"}
            )
            # Membership, not equality: the broker is shared, and a company policy another test
            # published (quiet hours, which apply at night) may apply here too.
            assert "channel_opted_out" in check.json()["reasons"], check.text

        await eventually(opted_out)
        await produce(
            producer,
            topics.CONTACTS,
            customer,
            CONTACT_ERASED,
            {"contact_id": customer, "erased_at": now},
            "/crm/contacts",
        )

        async def erased() -> None:
            assert await timeline(client, customer) == []
            read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
            assert read["subject"] == read["description"] == "[erased]"
            assert read["status"] == "closed"  # out of the queues and the SLA sweep

        await eventually(erased)
