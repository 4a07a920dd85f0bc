"""Sales on the real broker: its events as CloudEvents keyed by customer id, and the
projections fed by other services' events (timeline, contacts, support, analytics, orders)."""

import uuid

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from sqlalchemy import func, select

from services.sales.tests.helpers import new_opportunity, outbox
from shared import topics
from shared.contracts import analytics, sales, support
from shared.events import (
    CONTACT_MERGED,
    CONTACT_UPDATED,
    INTERACTION_RECORDED,
    encode_event,
    utcnow,
)
from shared.models import ProcessedEvent
from shared.testing import TopicTail, app_of, eventually

pytestmark = pytest.mark.bus


def parse(record):  # the integrator's view: the CloudEvents SDK must read every message
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return from_structured(message, JSONFormat())


def keyed(key: str, event_type: str | None = None):
    def matches(record) -> bool:
        if record.key != key.encode() or record.value is None:
            return False
        return event_type is None or parse(record).get_type() == event_type

    return matches


async def produce(producer, topic: str, key: str, event_type: str, data: dict, source: str):
    _, value, headers = encode_event(event_type=event_type, source=source, data=data, subject=key)
    await producer.send_and_wait(
        topic, value=value, key=key.encode(), headers=list(headers.items())
    )


def touch(customer_id: str, department: str = "marketing", **fields) -> dict:
    return {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "department": department,
        "channel": "email",
        "direction": "outbound",
        "kind": "campaign_send",
        "subject": "Winter offer",
        "occurred_at": utcnow().isoformat(),
        **fields,
    }


class TestSalesEvents:
    async def test_activity_and_deal_events_are_cloudevents_keyed_by_customer(
        self, client, kafka_bootstrap
    ):
        customer = str(uuid.uuid4())
        async with (
            TopicTail(kafka_bootstrap, topics.SALES) as deals,
            TopicTail(kafka_bootstrap, topics.INTERACTIONS) as touches,
        ):
            opp = await new_opportunity(client, customer_id=customer, amount="4321.00")
            response = await client.post(
                "/v1/activities",
                json={
                    "customer_id": customer,
                    "kind": "meeting",
                    "channel": "in_person",
                    "direction": "outbound",
                    "subject": "Demo",
                    "opportunity_id": opp["id"],
                },
            )
            assert response.status_code == 201
            [opened] = await deals.collect(keyed(customer, sales.OPPORTUNITY_OPENED))
            [call] = await touches.collect(keyed(customer, INTERACTION_RECORDED))
        event = parse(opened)
        assert event.get_source() == sales.SOURCE and event.get_subject() == customer
        assert event.get_data()["amount"] == "4321.00"
        data = parse(call).get_data()
        assert data["kind"] == "meeting" and data["department"] == "sales"
        assert data["ref"] == {"type": "activity", "id": response.json()["id"]}
        assert b"4321" not in call.value  # deal amounts stay off the interactions topic


class TestProjections:
    async def test_timeline_and_weekly_limit_from_bus_touches(self, client, producer):
        customer = str(uuid.uuid4())
        await produce(
            producer,
            topics.CONTACTS,
            customer,
            CONTACT_UPDATED,
            {
                "contact_id": customer,
                "first_name": "Z",
                "preferences": {"max_outbound_per_week": 2},
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            },
            "/crm/contacts",
        )
        for department in ("marketing", "support"):
            await produce(
                producer,
                topics.INTERACTIONS,
                customer,
                INTERACTION_RECORDED,
                touch(customer, department),
                f"/crm/{department}",
            )

        async def two_touches() -> None:
            items = (await client.get(f"/v1/customers/{customer}/timeline")).json()["items"]
            assert {i["department"] for i in items} == {"marketing", "support"}

        await eventually(two_touches)

        async def over_budget() -> dict:
            check = await client.get(
                f"/v1/customers/{customer}/contact-check", params={"channel": "phone"}
            )
            # Membership, not equality: the broker is shared, and a company policy another test
            # published (quiet hours, say) may apply here too.
            assert "weekly_limit_reached" in check.json()["reasons"], check.text
            return check.json()

        await eventually(over_budget)
        logged = await client.post(
            "/v1/activities",
            json={
                "customer_id": customer,
                "kind": "call",
                "channel": "phone",
                "direction": "outbound",
            },
        )
        verdict = logged.json()["contact_check"]
        assert not verdict["allowed"] and "weekly_limit_reached" in verdict["reasons"]

    async def test_open_support_tickets_from_the_bus(self, client, producer):
        customer, ticket = str(uuid.uuid4()), str(uuid.uuid4())
        opened = {
            "ticket_id": ticket,
            "customer_id": customer,
            "subject": "Outage",
            "channel": "phone",
            "priority": "urgent",
            "category": None,
            "opened_at": utcnow().isoformat(),
        }
        await produce(
            producer, topics.SUPPORT, customer, support.TICKET_OPENED, opened, support.SOURCE
        )

        async def blocked() -> None:
            view = (await client.get(f"/v1/customers/{customer}")).json()
            assert [t["ticket_id"] for t in view["open_tickets"]] == [ticket]
            check = await client.get(
                f"/v1/customers/{customer}/contact-check",
                params={"channel": "email", "department": "marketing"},
            )
            # Membership, not equality: the broker is shared, and a company policy another test
            # published (quiet hours, which apply at night) may apply here too.
            assert "open_priority_ticket" in check.json()["reasons"], check.text

        await eventually(blocked)
        resolved = {
            "ticket_id": ticket,
            "customer_id": customer,
            "agent_id": None,
            "resolved_at": utcnow().isoformat(),
        }
        await produce(
            producer, topics.SUPPORT, customer, support.TICKET_RESOLVED, resolved, support.SOURCE
        )

        async def cleared() -> None:
            view = (await client.get(f"/v1/customers/{customer}")).json()
            assert view["open_tickets"] == []

        await eventually(cleared)

    async def test_scores_from_analytics(self, client, producer):
        customer = str(uuid.uuid4())
        score = {
            "customer_id": customer,
            "clv": "777.70",
            "churn_risk": 0.8,
            "churn_level": "high",
            "rfm_segment": "at_risk",
            "scored_at": utcnow().isoformat(),
        }
        await produce(
            producer, topics.ANALYTICS, customer, analytics.CUSTOMER_SCORED, score, analytics.SOURCE
        )

        async def listed() -> None:
            # Other tests' scores share the broker: look for this customer among them.
            high = await client.get("/v1/customers/key", params={"churn_level": "high"})
            low = await client.get("/v1/customers/key", params={"churn_level": "low"})
            assert customer in [c["customer_id"] for c in high.json()["items"]]
            assert customer not in [c["customer_id"] for c in low.json()["items"]]

        await eventually(listed)

    async def test_external_orders_recorded_once_and_republished(
        self, client, producer, kafka_bootstrap
    ):
        customer = str(uuid.uuid4())
        order = {
            "external_id": f"INV-{uuid.uuid4().hex[:6]}",
            "customer_id": customer,
            "amount": "99.90",
            "currency": "EUR",
            "status": "paid",
            "ordered_at": utcnow().isoformat(),
        }
        async with TopicTail(kafka_bootstrap, topics.SALES) as tail:
            for _ in range(2):  # the accounting system publishes it twice
                await produce(
                    producer,
                    topics.EXTERNAL_ORDERS,
                    customer,
                    sales.EXTERNAL_ORDER,
                    order,
                    "/accounting",
                )
            placed = await tail.collect(keyed(customer, sales.ORDER_PLACED))
            paid = await tail.collect(keyed(customer, sales.ORDER_PAID))

        async def both_taken_in() -> None:
            async with app_of(client).state.session_factory() as session:
                done = await session.scalar(
                    select(func.count()).where(ProcessedEvent.consumer == "sales.external-orders")
                )
            assert done == 2

        await eventually(both_taken_in)
        items = (await client.get("/v1/orders", params={"customer_id": customer})).json()
        assert [o["status"] for o in items["items"]] == ["paid"]
        published = [r.event_type for r in await outbox(client, topics.SALES)]
        assert published == [sales.ORDER_PLACED, sales.ORDER_PAID]
        assert len(placed) == 1 and len(paid) == 1
        assert parse(placed[0]).get_data()["external_id"] == order["external_id"]

    async def test_an_external_order_in_fractions_of_a_cent_is_dead_lettered(
        self, client, producer, kafka_bootstrap
    ):
        # Sales keeps amounts in cents: "99.999" was stored as 100.00 while crm.sales.v1 told
        # every subscriber 99.999, so the books and the bus disagreed.
        customer = str(uuid.uuid4())
        order = {
            "external_id": f"INV-{uuid.uuid4().hex[:6]}",
            "customer_id": customer,
            "amount": "99.999",
            "currency": "EUR",
            "ordered_at": utcnow().isoformat(),
        }
        good = {**order, "external_id": f"INV-{uuid.uuid4().hex[:6]}", "amount": "99.90"}
        async with (
            TopicTail(kafka_bootstrap, topics.DEAD_LETTER) as dead_letters,
            TopicTail(kafka_bootstrap, topics.SALES) as tail,
        ):
            for data in (order, good):  # the good one behind it, on the same partition
                await produce(
                    producer, topics.EXTERNAL_ORDERS, customer, sales.EXTERNAL_ORDER, data, "/acc"
                )
            [placed] = await tail.collect(keyed(customer, sales.ORDER_PLACED))
            [refused] = await dead_letters.collect(lambda r: r.key == customer.encode())
        assert b"amount" in dict(refused.headers)["dlq.error"]
        [stored] = (await client.get("/v1/orders", params={"customer_id": customer})).json()[
            "items"
        ]
        assert parse(placed).get_data()["amount"] == stored["amount"] == "99.90"

    async def test_merge_from_contacts_repoints_deals_and_timeline(self, client, producer):
        merged, survivor = str(uuid.uuid4()), str(uuid.uuid4())
        opp = await new_opportunity(client, customer_id=merged)
        await produce(
            producer,
            topics.INTERACTIONS,
            merged,
            INTERACTION_RECORDED,
            touch(merged),
            "/crm/marketing",
        )

        async def seen(customer: str) -> None:
            items = (await client.get(f"/v1/customers/{customer}/timeline")).json()["items"]
            assert len(items) == 1

        await eventually(lambda: seen(merged))
        await produce(
            producer,
            topics.CONTACTS,
            merged,
            CONTACT_MERGED,
            {"merged_id": merged, "survivor_id": survivor},
            "/crm/contacts",
        )

        async def moved() -> None:
            got = (await client.get(f"/v1/opportunities/{opp['id']}")).json()
            assert got["customer_id"] == survivor

        await eventually(moved)
        await seen(survivor)
