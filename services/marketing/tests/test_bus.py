"""Marketing on the real broker: its projections fed by other services' events, and a launch's
events as CloudEvents keyed by the customer, delivered by the background sender."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

from services.marketing.tests.helpers import new_campaign, new_segment, snapshot
from shared import topics
from shared.contracts import analytics, sales, support
from shared.events import CONTACT_CREATED, CONTACT_ERASED, INTERACTION_RECORDED, encode_event
from shared.testing import TopicTail, eventually

pytestmark = pytest.mark.bus
NOW = datetime.now(UTC)


def parse(record):  # the integrator's view: the CloudEvents SDK must read every message
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return from_structured(message, JSONFormat())


async def produce(producer, topic: str, key: str, event_type: str, data: dict, source: str):
    _, value, headers = encode_event(event_type=event_type, source=source, data=data, subject=key)
    await producer.send_and_wait(
        topic, value=value, key=key.encode(), headers=list(headers.items())
    )


async def contact_created(producer, **fields) -> str:
    data = snapshot(**fields)
    await produce(
        producer, topics.CONTACTS, data["contact_id"], CONTACT_CREATED, data, "/crm/contacts"
    )
    return data["contact_id"]


async def count(client, rules: dict) -> int:
    response = await client.post("/v1/segments:preview", json={"rules": rules})
    assert response.status_code == 200, response.text
    return response.json()["count"]


def counts(client, rules: dict, expected: int):
    async def check() -> None:
        assert await count(client, rules) == expected

    return check


class TestProjections:
    async def test_contacts_tickets_orders_and_scores(self, client, producer):
        family = "Bus" + uuid.uuid4().hex[:8]  # the broker is shared by every test
        customer = await contact_created(producer, country="PT", last_name=family)
        portugal = {
            "and": [
                {"field": "country", "op": "eq", "value": "PT"},
                {"field": "last_name", "op": "eq", "value": family},
            ]
        }
        await eventually(counts(client, portugal, 1))

        ticket = {
            "ticket_id": str(uuid.uuid4()),
            "customer_id": customer,
            "subject": "Broken",
            "channel": "email",
            "priority": "urgent",
            "category": None,
            "opened_at": NOW.isoformat(),
        }
        await produce(
            producer, topics.SUPPORT, customer, support.TICKET_OPENED, ticket, support.SOURCE
        )

        async def blocked() -> None:
            response = await client.get(
                f"/v1/customers/{customer}/contact-check", params={"channel": "email"}
            )
            # Membership: a company policy another test published (quiet hours, say) on the
            # shared broker may add its own reason.
            verdict = response.json()
            assert not verdict["allowed"] and "open_priority_ticket" in verdict["reasons"]

        await eventually(blocked)
        order = {
            "order_id": str(uuid.uuid4()),
            "customer_id": customer,
            "amount": "10.00",
            "currency": "EUR",
            "status": "placed",
            "ordered_at": (NOW - timedelta(days=100)).isoformat(),
        }
        await produce(producer, topics.SALES, customer, sales.ORDER_PLACED, order, sales.SOURCE)
        scored = {
            "customer_id": customer,
            "churn_risk": 0.9,
            "churn_level": "high",
            "scored_at": NOW.isoformat(),
        }
        await produce(
            producer,
            topics.ANALYTICS,
            customer,
            analytics.CUSTOMER_SCORED,
            scored,
            analytics.SOURCE,
        )
        lapsed_and_churning = {
            "and": [
                portugal,
                {"field": "last_purchase_at", "op": "older_than_days", "value": 90},
                {"field": "churn_level", "op": "eq", "value": "high"},
            ]
        }
        await eventually(counts(client, lapsed_and_churning, 1))

        await produce(
            producer,
            topics.CONTACTS,
            customer,
            CONTACT_ERASED,
            {"contact_id": customer, "erased_at": NOW.isoformat()},
            "/crm/contacts",
        )
        await eventually(counts(client, portugal, 0))


class TestLaunchOnTheBus:
    async def test_sends_are_cloudevents_and_touches_come_back_to_the_timeline(
        self, client, producer, kafka_bootstrap, mailbox
    ):
        family = "Bus" + uuid.uuid4().hex[:8]
        customer = await contact_created(producer, last_name=family)
        iceland = {"field": "last_name", "op": "eq", "value": family}
        await eventually(counts(client, iceland, 1))
        segment = await new_segment(client, iceland)
        async with (
            TopicTail(kafka_bootstrap, topics.MARKETING) as domain,
            TopicTail(kafka_bootstrap, topics.INTERACTIONS) as touches,
        ):
            campaign = await new_campaign(client, segment["id"])
            response = await client.post(f"/v1/campaigns/{campaign['id']}/launch")
            assert response.status_code == 202
            [sent] = await domain.collect(
                lambda r: (
                    r.key == customer.encode()
                    and parse(r).get_type() == "crm.marketing.message_sent.v1"
                )
            )
            [touch] = await touches.collect(lambda r: r.key == customer.encode())
            lifecycle = await domain.collect(lambda r: r.key == campaign["id"].encode(), count=3)
        assert [parse(r).get_type() for r in lifecycle] == [
            "crm.marketing.campaign_created.v1",
            "crm.marketing.campaign_launched.v1",
            "crm.marketing.campaign_completed.v1",
        ]
        event = parse(sent)
        assert dict(sent.headers)["content-type"] == b"application/cloudevents+json"
        assert event.get_source() == "/crm/marketing" and event.get_subject() == customer
        assert event.get_data()["campaign_id"] == campaign["id"]
        interaction = parse(touch)
        assert interaction.get_type() == INTERACTION_RECORDED
        data = interaction.get_data()
        assert (data["kind"], data["direction"], data["department"]) == (
            "campaign_send",
            "outbound",
            "marketing",
        )
        assert "@" not in str(data)  # no e-mail address on the shared topic
        assert len(mailbox.messages) == 1

        async def in_timeline() -> None:
            response = await client.get(f"/v1/customers/{customer}/timeline")
            kinds = [i["kind"] for i in response.json()["items"]]
            assert kinds == ["campaign_send"], kinds

        await eventually(in_timeline)
