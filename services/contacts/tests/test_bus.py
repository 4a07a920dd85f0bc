"""Contacts on the real broker: its events, the outbox through an outage, its consumer."""

import asyncio
import json
import signal
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, from_structured
from cloudevents.core.formats.json import JSONFormat

from services.contacts.app import create_app
from services.contacts.config import ContactsSettings
from shared import topics
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.events import INTERACTION_RECORDED, encode_event
from shared.testing import BrokerProxy, TopicTail, app_of, eventually, outbox_drained, running

pytestmark = pytest.mark.bus


def parse(record):  # the integrator's view: the CloudEvents SDK must read every message
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return from_structured(message, JSONFormat())


def keyed(contact_id: str, event_type: str | None = None):
    def matches(record) -> bool:
        if record.key != contact_id.encode():
            return False
        return event_type is None or (
            record.value is not None and parse(record).get_type() == event_type
        )

    return matches


async def create(client: httpx.AsyncClient, **fields) -> str:
    body = {"first_name": "Grace", "last_name": "Hopper", **fields}
    response = await client.post("/v1/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


class TestContactEvents:
    async def test_every_change_is_a_cloudevent_keyed_by_contact_id(self, client, kafka_bootstrap):
        async with TopicTail(kafka_bootstrap, topics.CONTACTS) as tail:
            contact_id = await create(client, email="grace@navy.mil")
            patched = await client.patch(f"/v1/contacts/{contact_id}", json={"company": "US Navy"})
            assert patched.status_code == 200
            prefs = await client.put(
                f"/v1/contacts/{contact_id}/preferences", json={"opted_out_channels": ["sms"]}
            )
            assert prefs.status_code == 200
            records = await tail.collect(keyed(contact_id), count=3)

        events = [parse(r) for r in records]
        assert [e.get_type() for e in events] == [
            "crm.contact.created.v1",
            "crm.contact.updated.v1",
            "crm.contact.updated.v1",
        ]
        for record, event in zip(records, events, strict=True):
            assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
            assert event.get_subject() == contact_id
            assert event.get_source() == "/crm/contacts"
            assert event.get_specversion() == "1.0"
            assert uuid.UUID(event.get_id())
            assert event.get_time().tzinfo is not None
        assert events[0].get_data()["email"] == "grace@navy.mil"
        assert events[1].get_data()["company"] == "US Navy"
        assert events[2].get_data()["preferences"]["opted_out_channels"] == ["sms"]

    async def test_merge_publishes_merged_keyed_by_the_duplicate(self, client, kafka_bootstrap):
        survivor = await create(client, email="g.hopper@navy.mil")
        duplicate = await create(client, first_name="G.", phone="+12025550143")
        async with TopicTail(kafka_bootstrap, topics.CONTACTS) as tail:
            merged = await client.post(
                f"/v1/contacts/{survivor}/merge", json={"duplicate_ids": [duplicate]}
            )
            assert merged.status_code == 200, merged.text
            [merge_record] = await tail.collect(keyed(duplicate, "crm.contact.merged.v1"))
            [update_record] = await tail.collect(keyed(survivor, "crm.contact.updated.v1"))
        merge_event = parse(merge_record)
        assert merge_event.get_type() == "crm.contact.merged.v1"
        assert merge_event.get_data() == {"merged_id": duplicate, "survivor_id": survivor}
        survivor_state = parse(update_record).get_data()
        assert survivor_state["phone"] == "+12025550143"  # taken over from the duplicate

    async def test_erasure_publishes_erased_then_a_tombstone(self, client, kafka_bootstrap):
        contact_id = await create(client, email="erase.me@example.com")
        async with TopicTail(kafka_bootstrap, topics.CONTACTS) as tail:
            assert (await client.delete(f"/v1/contacts/{contact_id}")).status_code == 204
            erased = (await tail.collect(keyed(contact_id, "crm.contact.erased.v1")))[0]
            tombstone = (await tail.collect(lambda r: keyed(contact_id)(r) and r.value is None))[0]
            assert tail.records.index(erased) < tail.records.index(tombstone)
        assert parse(erased).get_type() == "crm.contact.erased.v1"
        assert "erase.me" not in erased.value.decode()
        assert tombstone.value is None
        # Compaction removes the erased event: the tombstone's headers (CloudEvents binary
        # mode, no data) still say which erasure, under its id, with its time.
        message = KafkaMessage(headers=dict(tombstone.headers), key=None, value=b"")
        ended = from_binary(message, JSONFormat())
        event = parse(erased)
        assert (ended.get_id(), ended.get_type(), ended.get_source(), ended.get_subject()) == (
            event.get_id(),
            "crm.contact.erased.v1",
            "/crm/contacts",
            contact_id,
        )
        erased_at = datetime.fromisoformat(event.get_data()["erased_at"])
        assert ended.get_time() == event.get_time() == erased_at

    async def test_a_refused_write_publishes_nothing(self, client, kafka_bootstrap):
        await create(client, email="taken@example.com")
        await outbox_drained(client)
        async with TopicTail(kafka_bootstrap, topics.CONTACTS) as tail:
            refused = await client.post(
                "/v1/contacts", json={"first_name": "X", "email": "taken@example.com"}
            )
            assert refused.status_code == 409
            marker = await create(client, first_name="Marker")
            await tail.collect(keyed(marker))
        # Other tests share the topic: look for anything about the refused contact.
        assert [r for r in tail.records if r.value and b"taken@example.com" in r.value] == []


class TestOutboxDuringBrokerOutage:
    async def test_writes_accepted_while_the_broker_is_down_are_published_when_it_returns(
        self, contacts_settings: ContactsSettings
    ):
        # A broker of this test's own behind a proxy: cutting the proxy is the outage,
        # and the broker keeps its log (as Apache Kafka would) for when it comes back.
        broker_port, proxy_port = free_port(), free_port()
        broker = start_broker(broker_port, advertised_port=proxy_port)
        proxy = BrokerProxy(proxy_port, broker_port)
        await proxy.start()
        settings = contacts_settings.model_copy(
            update={
                "kafka": contacts_settings.kafka.model_copy(
                    update={"bootstrap_servers": f"127.0.0.1:{proxy_port}"}
                )
            }
        )
        try:
            async with running(create_app(settings)) as client:
                await create(client, first_name="Before")
                await outbox_drained(client)
                await proxy.stop()
                during = [await create(client, first_name=f"During{i}") for i in range(20)]
                await asyncio.sleep(1)  # the relay tries, and fails, meanwhile
                backlog = await _pending(client)
                await proxy.start()
                await outbox_drained(client)
            async with TopicTail(f"127.0.0.1:{proxy_port}", topics.CONTACTS) as tail:
                await tail.consumer.seek_to_beginning()
                records = await tail.collect(
                    lambda r: r.key is not None and r.key.decode() in during, count=len(during)
                )
        finally:
            await proxy.stop()
            stop_broker(broker)
        assert backlog == len(during)  # every accepted write waited in the outbox
        assert sorted(r.key.decode() for r in records) == sorted(during)  # each exactly once


class TestReadinessWhenTheBrokerStops:
    async def test_readyz_reports_the_broker_unavailable_once_it_has_stopped(
        self, contacts_settings: ContactsSettings
    ):
        # A broker of this test's own, stopped for good. Each /readyz makes a metadata round
        # trip (shared.bus.Bus.ping), so no cached connection state can answer for a dead one.
        port = free_port()
        broker = start_broker(port)
        kafka = contacts_settings.kafka.model_copy(
            update={"bootstrap_servers": f"127.0.0.1:{port}"}
        )
        settings = contacts_settings.model_copy(update={"kafka": kafka})
        try:
            async with running(create_app(settings)) as client:
                await create(client)  # the relay and the consumer hold connections
                assert (await client.get("/readyz")).json()["checks"]["broker"] == "ok"
                # Returns once the process has exited: the broker answers on its open
                # connections (and takes new ones) for a few seconds after SIGTERM.
                await asyncio.to_thread(stop_broker, broker)
                response = await client.get("/readyz")
        finally:
            stop_broker(broker)
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["database"] == "ok"
        assert checks["broker"].startswith("unavailable: ")


class TestLivenessWhenAWorkerEnds:
    async def test_healthz_fails_naming_a_worker_that_ended_before_shutdown(
        self, contacts_settings: ContactsSettings
    ):
        async with running(create_app(contacts_settings)) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            # As when a library's cancellation escapes the consumer loop's retries: the task
            # ends, while the API goes on taking writes that nothing would apply.
            (consumer,) = [
                task
                for task in app_of(client).state.workers
                if task.get_name().endswith("consumer")
            ]
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json() == {"status": "failing", "ended": ["contacts.consumer"]}

    async def test_a_served_process_stops_itself_for_its_supervisor_to_restart_it(
        self, contacts_settings: ContactsSettings
    ):
        """Under `crm serve` (exit_when_a_worker_ends), Docker's restart policy and `crm up`
        restart a process that exits; a failing /healthz alone only Kubernetes acted on."""
        settings = contacts_settings.model_copy(update={"exit_when_a_worker_ends": True})
        signalled = asyncio.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: signalled.set())
        try:
            async with running(create_app(settings)) as client:
                (relay,) = [
                    task
                    for task in app_of(client).state.workers
                    if task.get_name().endswith("relay")
                ]
                assert not signalled.is_set()
                relay.cancel()
                await asyncio.wait_for(signalled.wait(), 10)
                assert (await client.get("/healthz")).json()["ended"] == ["contacts.relay"]
        finally:
            signal.signal(signal.SIGINT, previous)


async def _pending(client: httpx.AsyncClient) -> int:
    from sqlalchemy import func, select

    from shared.models import OutboxMessage

    async with app_of(client).state.session_factory() as session:
        return await session.scalar(
            select(func.count()).where(OutboxMessage.published_at.is_(None))
        )


async def _metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + "{") and 'service="contacts"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


def interaction(
    customer_id: str,
    direction: str = "outbound",
    event_id: uuid.UUID | None = None,
    occurred_at: str = "2026-11-20T10:00:00Z",
) -> tuple[bytes, bytes, list]:
    data = {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "department": "sales",
        "channel": "phone",
        "direction": direction,
        "kind": "call",
        "subject": "Renewal",
        "occurred_at": occurred_at,
        "actor": "rep-7",
        "ref": {"type": "activity", "id": "a-1"},
    }
    _, value, headers = encode_event(
        event_type=INTERACTION_RECORDED,
        source="/crm/sales",
        data=data,
        subject=customer_id,
        event_id=event_id,
    )
    return customer_id.encode(), value, list(headers.items())


async def send(producer, key: bytes, value: bytes | None, headers: list | None = None) -> None:
    await producer.send_and_wait(topics.INTERACTIONS, value=value, key=key, headers=headers or [])


async def activity(client: httpx.AsyncClient, contact_id: str) -> dict:
    response = await client.get(f"/v1/contacts/{contact_id}")
    assert response.status_code == 200
    return response.json()["activity"]


class TestInteractionsConsumer:
    async def test_a_touch_from_another_department_updates_last_contacted(self, client, producer):
        contact_id = await create(client)
        await send(
            producer, *interaction(contact_id, "inbound", occurred_at="2026-11-21T09:30:00Z")
        )

        async def touched():
            found = await activity(client, contact_id)
            assert found["interactions_total"] == 1
            return found

        found = await eventually(touched)
        assert found["last_inbound_at"] == "2026-11-21T09:30:00Z"
        assert found["last_outbound_at"] is None

    async def test_a_redelivered_event_changes_nothing(self, client, producer):
        contact_id = await create(client)
        event_id = uuid.uuid4()
        key, value, headers = interaction(contact_id, event_id=event_id)
        for _ in range(3):  # the same event id delivered three times
            await send(producer, key, value, headers)
        marker = interaction(contact_id, occurred_at="2026-11-22T08:00:00Z")
        await send(producer, *marker)

        async def both_applied():
            found = await activity(client, contact_id)
            assert found["last_outbound_at"] == "2026-11-22T08:00:00Z"
            return found

        assert (await eventually(both_applied))["interactions_total"] == 2

    async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(
        self, client, producer, kafka_bootstrap
    ):
        contact_id = await create(client)
        key = contact_id.encode()
        not_json = b"\x00not a cloudevent"
        bad_data = json.dumps(
            {  # a valid envelope whose data breaks the contract
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/crm/sales",
                "type": INTERACTION_RECORDED,
                "datacontenttype": "application/json",
                "time": datetime.now(UTC).isoformat(),
                "data": {"customer_id": "not-a-uuid"},
            }
        ).encode()
        async with TopicTail(kafka_bootstrap, topics.DEAD_LETTER) as dead_letters:
            await send(producer, key, not_json)
            await send(producer, key, bad_data)
            await send(producer, *interaction(contact_id))  # behind the poison, same partition
            found = await eventually(lambda: _total_is(client, contact_id, 1))
            poisoned = await dead_letters.collect(lambda r: r.key == key, count=2)
        assert found == 1
        assert [r.value for r in poisoned] == [not_json, bad_data]
        for record in poisoned:
            headers = dict(record.headers)
            assert headers["dlq.topic"] == topics.INTERACTIONS.encode()
            assert int(headers["dlq.offset"]) >= 0
            assert int(headers["dlq.partition"]) >= 0
            assert headers["dlq.consumer"] == b"contacts.interactions"
            assert headers["dlq.error"]
        assert b"customer_id" in dict(poisoned[1].headers)["dlq.error"]
        assert await _metric_sum(client, "crm_events_dead_lettered_total") >= 2

    async def test_touches_of_a_merged_contact_count_for_the_survivor(self, client, producer):
        survivor = await create(client, email="one@example.com")
        duplicate = await create(client, email="two@example.com")
        await send(producer, *interaction(duplicate, occurred_at="2026-11-01T10:00:00Z"))
        await eventually(lambda: _total_is(client, duplicate, 1))
        merged = await client.post(
            f"/v1/contacts/{survivor}/merge", json={"duplicate_ids": [duplicate]}
        )
        assert merged.status_code == 200
        assert merged.json()["activity"]["interactions_total"] == 1  # folded in by the merge
        await send(producer, *interaction(duplicate, occurred_at="2026-11-02T10:00:00Z"))
        await eventually(lambda: _total_is(client, survivor, 2))

    async def test_touches_of_an_erased_contact_are_not_kept(
        self, client, producer, contacts_settings
    ):
        contact_id = await create(client)
        assert (await client.delete(f"/v1/contacts/{contact_id}")).status_code == 204
        other = await create(client, first_name="Other", email="other@example.com")
        await send(producer, *interaction(contact_id))
        await send(producer, *interaction(other))
        await eventually(lambda: _total_is(client, other, 1))
        async with app_of(client).state.session_factory() as session:
            from services.contacts.models import ContactActivity

            assert await session.get(ContactActivity, uuid.UUID(contact_id)) is None


async def _total_is(client: httpx.AsyncClient, contact_id: str, expected: int) -> int:
    found = (await activity(client, contact_id))["interactions_total"]
    assert found == expected, found
    return found


async def _metric_sum(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and 'service="contacts"' in line
    )


__all__ = ["asyncio"]
