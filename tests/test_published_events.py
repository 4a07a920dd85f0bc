"""The bus contract as integrators read it: every event type the five services publish, taken
off the real broker after a full path through the outbox and the relay, against the published
JSON Schema (docs/schemas/), with the CloudEvents envelope, the header and the key the docs
(docs/events.md) promise. One platform run makes every type at least once."""

import asyncio
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

from services.support import sla
from shared import contract_docs, events, topics
from shared.contact_rules import contains_contact_details
from shared.contracts import marketing, sales, support
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings
from shared.testing import app_of, eventually, outbox_drained

pytestmark = pytest.mark.bus

FAMILY = "Contract" + uuid.uuid4().hex[:8]  # this test's contacts
SCHEMAS = contract_docs.event_schemas()
# RFC 3339 date-time: a full time with seconds and its zone (jsonschema checks "date-time" only
# with an optional package, so the format is checked here).
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
FORMATS = jsonschema.FormatChecker()
# The free-text fields of crm.interactions.v1 and crm.sales.v1, which a person writes.
FREE_TEXT = ("subject", "outcome", "reason")


@FORMATS.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(RFC3339.match(value)) and datetime.fromisoformat(value).tzinfo is not None


# ---- the platform ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    """A broker of this test's own, so every record on it is this test's. On the shared one,
    earlier tests' records were read as this one's: poison messages, and records under keys
    set on purpose (the embedded broker answers "the end" with the start of a partition's last
    batch, so seeking there does not skip them)."""
    port = free_port()
    broker = start_broker(port)
    try:
        bootstrap = f"127.0.0.1:{port}"
        asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=bootstrap)))
        yield bootstrap
    finally:
        stop_broker(broker)


class BusTail:
    """Every topic of the platform, read from its start: the test's broker is its own."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        self.records: list[ConsumerRecord] = []

    async def __aenter__(self) -> "BusTail":
        await self.consumer.start()
        partitions = []
        for spec in topics.ALL_TOPICS:
            found = self.consumer.partitions_for_topic(spec.name)
            if not found:
                await self.consumer._client.force_metadata_update()  # noqa: SLF001
                found = self.consumer.partitions_for_topic(spec.name)
            assert found, f"topic {spec.name} does not exist"
            partitions += [TopicPartition(spec.name, p) for p in sorted(found)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def read_to_end(self) -> list[ConsumerRecord]:
        """Everything published so far, up to the topics' ends as they are now."""
        ends = await self.consumer.end_offsets(list(self.consumer.assignment()))
        for tp, end in ends.items():
            while await self.consumer.position(tp) < end:
                for batch in (await self.consumer.getmany(tp, timeout_ms=100)).values():
                    self.records.extend(batch)
        return self.records


def published(records: list[ConsumerRecord], event_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(r.value)["data"]
        for r in records
        if r.value is not None and json.loads(r.value)["type"] == event_type
    ]


# ---- the checks -----------------------------------------------------------------------------


def expected_key(event: dict[str, Any], lead_customers: dict[str, set[str]]) -> set[str]:
    """The keys docs/events.md allows for this event."""
    data, event_type = event["data"], event["type"]
    if event_type in (events.CONTACT_CREATED, events.CONTACT_UPDATED, events.CONTACT_ERASED):
        return {data["contact_id"]}
    if event_type == events.CONTACT_MERGED:
        return {data["merged_id"]}  # the merged (losing) id
    if event_type == events.CONTACT_POLICY_UPDATED:
        return {events.CONTACT_POLICY_KEY}
    if event_type == support.TICKET_CUSTOMER_IDENTIFIED:
        return {data["previous_customer_id"]}  # follows the ticket's earlier events
    if event_type.startswith("crm.marketing.campaign_"):
        return {data["campaign_id"]}  # campaign-wide
    if "customer_id" in data:
        return {data["customer_id"]}
    if event_type.startswith("crm.sales.lead_"):
        # A lead's id before conversion, its customer's after.
        return {data["lead_id"], *lead_customers.get(data["lead_id"], ())}
    raise AssertionError(f"no key documented for {event_type}")


def contract_violations(records: list[ConsumerRecord]) -> list[str]:
    """Every way a published record differs from what docs/ promise, in words."""
    problems = []
    lead_customers: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.value is not None and json.loads(r.value)["type"] == sales.LEAD_CONVERTED:
            data = json.loads(r.value)["data"]
            lead_customers[data["lead_id"]].add(data["customer_id"])
    erased: dict[str | None, str] = {}  # key -> the erased event's id
    for r in records:
        where = f"{r.topic}@{r.partition}:{r.offset}"
        key = r.key.decode() if r.key is not None else None
        if r.value is None:  # a tombstone: after an erasure on the compacted topic only
            if r.topic != topics.CONTACTS or key not in erased:
                problems.append(f"{where}: a tombstone for {key} without an erasure before it")
            else:  # compaction removes the erased event: the tombstone must say which it was
                try:
                    ended = events.decode_erasure_tombstone(r.key, r.headers)
                except events.MalformedEvent as exc:
                    problems.append(f"{where}: a tombstone for {key}: {exc}")
                    continue
                if ended is None or ended.id != erased[key]:
                    problems.append(f"{where}: a tombstone for {key} without its erasure's id")
            continue
        headers = dict(r.headers)
        if headers.get("content-type") != b"application/cloudevents+json":
            problems.append(f"{where}: content-type header {headers.get('content-type')!r}")
        try:
            from_structured(KafkaMessage(headers=headers, key=r.key, value=r.value), JSONFormat())
        except Exception as exc:  # noqa: BLE001 (any failure of the SDK is the finding)
            problems.append(f"{where}: the CloudEvents SDK cannot read it: {exc!r}")
        event = json.loads(r.value)
        event_type = event.get("type")
        schema = SCHEMAS.get(event_type)
        if schema is None:
            problems.append(f"{where}: type {event_type!r} has no published schema")
            continue
        where = f"{where} {event_type}"
        if r.topic not in {
            t for t, types in contract_docs.TOPIC_EVENT_TYPES.items() if event_type in types
        }:
            problems.append(f"{where}: not documented on {r.topic}")
        for error in jsonschema.Draft202012Validator(schema, format_checker=FORMATS).iter_errors(
            event
        ):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: {path}: {error.message}")
        documented = set(schema["properties"]["data"]["properties"])
        if undocumented := set(event.get("data", {})) - documented:
            problems.append(f"{where}: undocumented data fields {sorted(undocumented)}")
        if r.topic in (topics.INTERACTIONS, topics.SALES):  # never an address or a number
            for field in FREE_TEXT:
                if contains_contact_details(str(event.get("data", {}).get(field) or "")):
                    problems.append(f"{where}: contact details in {field}")
        if not str(event.get("time", "")).endswith("Z"):
            problems.append(f"{where}: time {event.get('time')!r} is not in UTC")
        try:
            allowed = expected_key(event, lead_customers)
        except (AssertionError, KeyError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        if key not in allowed:
            problems.append(f"{where}: key {key!r}, documented {sorted(allowed)}")
        if "subject" in event and event["subject"] != key:
            problems.append(f"{where}: subject {event['subject']!r} is not the key {key!r}")
        if event_type == events.CONTACT_ERASED:
            erased[key] = event["id"]
    return problems


class TestTheChecks:
    """The checks find what they are for (no broker needed)."""

    @staticmethod
    def record(topic: str, key: str, event: dict[str, Any] | None, **headers: bytes):
        value = json.dumps(event).encode() if event is not None else None
        header_list = list(({"content-type": b"application/cloudevents+json"} | headers).items())
        return ConsumerRecord(topic, 0, 0, 0, 0, key.encode(), value, None, 0, 0, header_list)

    @staticmethod
    def envelope(event_type: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/crm/support",
            "type": event_type,
            "time": "2026-11-24T16:21:01Z",
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        }

    def closed(self, customer: str, **changes: Any) -> dict[str, Any]:
        data = {
            "ticket_id": str(uuid.uuid4()),
            "customer_id": customer,
            "closed_at": "2026-11-24T16:21:01Z",
        }
        return self.envelope(support.TICKET_CLOSED, customer, data | changes)

    def test_a_conforming_event_passes(self):
        customer = str(uuid.uuid4())
        assert (
            contract_violations([self.record(topics.SUPPORT, customer, self.closed(customer))])
            == []
        )

    def test_a_time_without_a_zone_is_found(self):
        customer = str(uuid.uuid4())
        event = self.closed(customer, closed_at="2026-11-24T16:21:01")
        [problem] = contract_violations([self.record(topics.SUPPORT, customer, event)])
        assert "closed_at" in problem

    def test_a_wrong_key_an_extra_field_and_a_stray_tombstone_are_found(self):
        customer = str(uuid.uuid4())
        event = self.closed(customer, note="x")
        problems = contract_violations(
            [
                self.record(topics.SUPPORT, str(uuid.uuid4()), event),
                self.record(topics.CONTACTS, customer, None),
            ]
        )
        assert len(problems) == 4, problems  # key, subject, field, tombstone

    def test_a_tombstone_that_does_not_carry_its_erasure_is_found(self):
        customer = str(uuid.uuid4())
        erasure = self.envelope(
            events.CONTACT_ERASED,
            customer,
            {"contact_id": customer, "erased_at": "2026-11-24T16:21:01Z"},
        )
        erasure["source"] = "/crm/contacts"
        [problem] = contract_violations(
            [
                self.record(topics.CONTACTS, customer, erasure),
                self.record(topics.CONTACTS, customer, None),
            ]
        )
        assert "without its erasure's id" in problem


# ---- the run --------------------------------------------------------------------------------


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


async def test_every_published_event_matches_its_published_schema(
    platform, mailbox, kafka_bootstrap, producer: AIOKafkaProducer
):
    contacts, sales_api, marketing_api = (
        platform["contacts"],
        platform["sales"],
        platform["marketing"],
    )
    support_api = platform["support"]
    async with BusTail(kafka_bootstrap) as bus:
        # contacts: created, updated, merged, erased (+ tombstone), the policy.
        async def contact(name: str, **fields: Any) -> str:
            body = {"first_name": name, "last_name": FAMILY, **fields}
            return (await ok(await contacts.post("/v1/contacts", json=body)))["id"]

        ada = await contact("Ada", email="ada@example.com")
        alan = await contact("Alan", email="alan@example.com")
        await ok(
            await contacts.patch(f"/v1/contacts/{ada}", json={"company": "Analytical Engines"})
        )
        twin = await contact("Ada", email="ada.twin@example.com")
        await ok(await contacts.post(f"/v1/contacts/{ada}/merge", json={"duplicate_ids": [twin]}))
        gone = await contact("Gone")
        assert (await contacts.delete(f"/v1/contacts/{gone}")).status_code == 204
        await ok(await contacts.put("/v1/contact-policy", json={"max_outbound_per_week": 5}))

        # sales: a lead's life, a deal's, an order's; an integrator's order.
        lead = await ok(
            await sales_api.post(
                "/v1/leads",
                json={"name": "Lin Lee", "email": f"lin.{FAMILY}@example.com", "source": "web"},
            )
        )
        await ok(await sales_api.post(f"/v1/leads/{lead['id']}/qualify"))
        lost = await ok(
            await sales_api.post(
                "/v1/leads", json={"name": "Lost", "email": "lost@example.com", "source": "web"}
            )
        )
        await ok(
            await sales_api.post(
                f"/v1/leads/{lost['id']}/disqualify",
                json={"reason": "no budget, ask again on +49 30 901820"},
            )
        )
        converted = await ok(
            await sales_api.post(
                f"/v1/leads/{lead['id']}/convert",
                json={
                    "opportunity": {
                        "title": "Printers",
                        "amount": "1200.50",
                        "owner": "rep-1",
                        "currency": "EUR",
                    }
                },
            )
        )
        lin = converted["customer_id"]
        deal = converted["opportunity"]["id"]
        await ok(await sales_api.patch(f"/v1/opportunities/{deal}", json={"amount": "1300"}))
        await ok(await sales_api.post(f"/v1/opportunities/{deal}/stage", json={"stage": "won"}))
        order = await ok(
            await sales_api.post(
                "/v1/orders", json={"customer_id": lin, "amount": "99.90", "currency": "EUR"}
            )
        )
        await ok(await sales_api.post(f"/v1/orders/{order['id']}/paid"))
        await ok(await sales_api.post(f"/v1/orders/{order['id']}/refunded"))
        await ok(
            await sales_api.post(
                "/v1/activities",
                json={
                    "customer_id": ada,
                    "kind": "call",
                    "channel": "phone",
                    "direction": "outbound",
                    "sentiment": "positive",
                    "outcome": "renewal agreed",
                },
            )
        )
        _, value, headers = events.encode_event(
            event_type=sales.EXTERNAL_ORDER,
            source="/acme/accounting",
            subject=ada,
            data={
                "external_id": "INV-" + uuid.uuid4().hex,
                "customer_id": ada,
                "amount": "129.90",
                "currency": "EUR",
                "status": "paid",
                "ordered_at": "2026-11-24T10:00:00+01:00",
            },
        )
        await producer.send_and_wait(
            topics.EXTERNAL_ORDERS, value, key=ada.encode(), headers=list(headers.items())
        )

        # support: a ticket's whole life, the SLA sweep, an unknown sender identified later.
        await ok(
            await support_api.put(
                "/v1/sla-policies/urgent",
                json={
                    "reassign_after_minutes": 5,
                    "first_response_minutes": 30,
                    "resolution_minutes": 60,
                },
            )
        )
        first = await ok(await support_api.post("/v1/agents", json={"name": "First", "team": "t"}))
        ticket = await ok(
            await support_api.post(
                "/v1/tickets",
                json={
                    "customer_id": alan,
                    "subject": "Invoice wrong",
                    "description": "Charged twice.",
                    "channel": "email",
                    "priority": "urgent",
                },
            )
        )
        await ok(
            await support_api.post(
                f"/v1/tickets/{ticket['id']}/assign", json={"agent_id": first["id"]}
            )
        )
        await ok(await support_api.post("/v1/agents", json={"name": "Second", "team": "t"}))
        swept = await sla.sweep(
            app_of(support_api).state.session_factory, datetime.now(UTC) + timedelta(hours=2)
        )
        assert swept.reassigned == 1 and swept.breaches == 2, swept
        await ok(
            await support_api.post(
                f"/v1/tickets/{ticket['id']}/messages",
                json={"author_type": "customer", "body": "Any news?"},
            )
        )
        await ok(await support_api.post(f"/v1/tickets/{ticket['id']}/resolve"))
        await ok(await support_api.post(f"/v1/tickets/{ticket['id']}/reopen"))
        await ok(await support_api.post(f"/v1/tickets/{ticket['id']}/resolve"))
        await ok(
            await support_api.post(f"/v1/tickets/{ticket['id']}/satisfaction", json={"score": 4})
        )
        await ok(await support_api.post(f"/v1/tickets/{ticket['id']}/close"))
        sender = {"kind": "whatsapp", "value": "49309" + str(uuid.uuid4().int)[:6]}
        await ok(
            await support_api.post(
                "/v1/inbound", json={"channel": "whatsapp", "sender": sender, "body": "Hello?"}
            )
        )
        lin_contact = await contact("Lin", email="lin@example.com")
        await ok(
            await contacts.post(
                f"/v1/contacts/{lin_contact}/identities",
                json={"kind": "whatsapp", "value": "+" + sender["value"]},
            )
        )
        await ok(
            await support_api.post(
                "/v1/interactions",
                json={
                    "customer_id": alan,
                    "channel": "chat",
                    "direction": "inbound",
                    "kind": "chat",
                },
            )
        )

        # marketing: a campaign to the family (one refused, one held back), its engagement.
        async def family_known() -> None:
            preview = await marketing_api.post(
                "/v1/segments:preview",
                json={"rules": {"field": "last_name", "op": "eq", "value": FAMILY}},
            )
            assert preview.json()["count"] == 3  # Ada, Alan, Lin (the twin merged, Gone erased)
            check = await marketing_api.get(
                f"/v1/customers/{alan}/contact-check", params={"channel": "email"}
            )
            assert check.json()["reasons"] == ["open_priority_ticket"]

        # Alan's urgent ticket is closed by now; a second one holds his campaign mail back.
        await ok(
            await support_api.post(
                "/v1/tickets",
                json={
                    "customer_id": alan,
                    "subject": "Still wrong",
                    "description": "Again.",
                    "channel": "email",
                    "priority": "urgent",
                },
            )
        )
        await eventually(family_known, timeout=30)
        mailbox.refuse.add("ada@example.com")
        segment = await ok(
            await marketing_api.post(
                "/v1/segments",
                json={
                    "name": "Family",
                    "rules": {"field": "last_name", "op": "eq", "value": FAMILY},
                },
            )
        )
        campaign = await ok(
            await marketing_api.post(
                "/v1/campaigns",
                json={
                    "name": "Winter offer",
                    "channel": "email",
                    "segment_id": segment["id"],
                    "subject": "Winter",
                    "template": "Hello {first_name}",
                    "budget": "10",
                    "cost_per_send": "0.01",
                },
            )
        )
        await ok(await marketing_api.post(f"/v1/campaigns/{campaign['id']}/launch"))
        # A second campaign to the family, cancelled before it was launched.
        spare = await ok(
            await marketing_api.post(
                "/v1/campaigns",
                json={
                    "name": "Spring offer",
                    "channel": "email",
                    "segment_id": segment["id"],
                    "template": "Hello {first_name}",
                    "budget": "10",
                    "cost_per_send": "0.01",
                },
            )
        )
        await ok(await marketing_api.post(f"/v1/campaigns/{spare['id']}/cancel"))

        async def completed() -> None:
            report = (await marketing_api.get(f"/v1/campaigns/{campaign['id']}/report")).json()
            assert report["status"] == "completed", report

        await eventually(completed, timeout=30)
        await outbox_drained(marketing_api)
        [sent] = published(await bus.read_to_end(), marketing.MESSAGE_SENT)
        await ok(
            await marketing_api.post(
                "/v1/engagements", json={"send_id": sent["send_id"], "kind": "delivered"}
            )
        )
        [mail] = mailbox.messages
        link = re.search(
            r"List-Unsubscribe: <https://crm\.example\.test(/t/u/[^>]+)>", mail.content.decode()
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app_of(marketing_api)),
            base_url="https://crm.example.test",
        ) as browser:
            response = await browser.post(link.group(1), content="List-Unsubscribe=One-Click")
            assert response.status_code == 200

        # analytics scores the customers it heard of: every type is on the bus once it did.

        async def every_type_published() -> list[ConsumerRecord]:
            for service in platform.values():
                await outbox_drained(service)
            records = await bus.read_to_end()
            seen = {json.loads(r.value)["type"] for r in records if r.value is not None}
            assert set(SCHEMAS) <= seen, sorted(set(SCHEMAS) - seen)
            return records

        records = await eventually(every_type_published, timeout=60)

    assert contract_violations(records) == []
