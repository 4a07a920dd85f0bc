"""A poison message goes to the dead-letter topic and the partition moves on; a broker outage
while writes continue: the APIs keep answering 201 and the backlog drains afterwards."""

import asyncio
import contextlib
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.embedded_broker import free_port, start_broker, stop_broker
from shared.events import INTERACTION_RECORDED, encode_event
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings
from shared.testing import BrokerProxy, TopicTail, eventually

from .harness import Platform
from .workload import create_contacts, reconcile, touch


def header(record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode()
    return None


def sample(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in metrics.items()
        if key.split("{")[0] == name and all(w in key for w in wanted)
    )


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    platform: Platform, client, producer: AIOKafkaProducer
) -> None:
    support_db = await platform.database("support")
    support = await platform.service("support", support_db).start()
    customer = uuid.uuid4()
    key = str(customer).encode()
    _, valid_envelope_bad_data, headers = encode_event(
        event_type=INTERACTION_RECORDED,
        source="/crm/test",
        data={"customer_id": "not-a-uuid", "department": "nowhere"},
        subject=str(customer),
    )
    async with TopicTail(platform.bootstrap, topics.DEAD_LETTER) as dead_letters:
        # Both on the customer's partition, ahead of a good touch of the same customer.
        unparsable = await producer.send_and_wait(topics.INTERACTIONS, b"{not json", key=key)
        invalid = await producer.send_and_wait(
            topics.INTERACTIONS,
            valid_envelope_bad_data,
            key=key,
            headers=[(k, v) for k, v in headers.items()],
        )
        good = touch(customer, 0)
        response = await client.post(f"{support.url}/v1/interactions", json=good)
        assert response.status_code == 201, response.text

        async def good_touch_applied() -> None:
            page = await client.get(f"{support.url}/v1/customers/{customer}/timeline")
            assert [i["interaction_id"] for i in page.json()["items"]] == [good["interaction_id"]]

        await eventually(good_touch_applied, timeout=30)
        poisoned = {(unparsable.partition, unparsable.offset), (invalid.partition, invalid.offset)}
        records = await dead_letters.collect(
            lambda r: (
                header(r, "dlq.topic") == topics.INTERACTIONS
                and (int(header(r, "dlq.partition")), int(header(r, "dlq.offset"))) in poisoned
            ),
            count=2,
            timeout=30,
        )
    assert {r.value for r in records} == {b"{not json", valid_envelope_bad_data}
    for record in records:
        assert header(record, "dlq.consumer") == "support.timeline"
        assert header(record, "dlq.error")
        assert record.key == key
    metrics = await support.metrics()
    assert sample(metrics, "crm_events_dead_lettered_total", consumer="support.timeline") == 2
    # The poison is not "processed": the projection holds exactly the touches of the outbox.
    await reconcile([support_db], {"support": support_db})


async def outage(platform: Platform, client, seconds: float) -> None:
    """Contacts and support behind a proxy to their own broker; the proxy goes away for
    ``seconds`` while writes continue at a steady pace through both APIs."""
    broker_port, proxy_port = free_port(), free_port()
    broker = start_broker(broker_port, advertised_port=proxy_port)
    proxy = BrokerProxy(proxy_port, broker_port)
    await proxy.start()
    bootstrap = f"127.0.0.1:{proxy_port}"
    try:
        await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap))
        contacts_db, support_db = (
            await platform.database("contacts"),
            await platform.database("support"),
        )
        contacts = platform.service("contacts", contacts_db, bootstrap=bootstrap)
        support = platform.service("support", support_db, bootstrap=bootstrap)
        await asyncio.gather(contacts.start(), support.start())
        customers = await create_contacts(client, contacts.url, 5)
        statuses: list[int] = []
        stop = asyncio.Event()

        async def writer(index: int) -> None:
            count = 0
            while not stop.is_set():
                count += 1
                if index == 0 and count % 5 == 0:
                    response = await client.post(
                        f"{contacts.url}/v1/contacts", json={"first_name": f"Out{count}"}
                    )
                else:
                    body = touch(customers[(index + count) % len(customers)], count)
                    response = await client.post(f"{support.url}/v1/interactions", json=body)
                statuses.append(response.status_code)
                await asyncio.sleep(0.05)

        writers = [asyncio.create_task(writer(i)) for i in range(4)]
        await asyncio.sleep(1)
        await proxy.stop()
        cut_at = time.monotonic()
        await asyncio.sleep(seconds)
        during = len(statuses)
        backlog = await support.metrics()
        await proxy.start()
        await asyncio.sleep(1)
        stop.set()
        await asyncio.gather(*writers)
        assert during > 10 and set(statuses) == {201}, "an API stopped accepting writes"
        # The relay saw the backlog grow while the broker was away.
        assert sample(backlog, "crm_outbox_backlog", service="support") > 0
        await reconcile(
            [contacts_db, support_db],
            {"support": support_db, "contacts": contacts_db},
            wait_s=max(60, seconds * 2),
        )
        recovered = time.monotonic() - cut_at - seconds
        print(f"outage {seconds}s: {len(statuses)} writes, all 201; drained {recovered:.1f}s after")

        async def caught_up() -> None:
            for service in (contacts, support):
                metrics = await service.metrics()
                assert sample(metrics, "crm_outbox_backlog") == 0
                lags = [v for k, v in metrics.items() if k.startswith("crm_consumer_lag_seconds")]
                assert lags and max(lags) < 1.0, f"{service.service} lag {lags}"

        await eventually(caught_up, timeout=30, interval=0.5)
    finally:
        with contextlib.suppress(Exception):
            await proxy.stop()
        for process in platform.processes:
            process.stop()
        stop_broker(broker)


async def test_broker_unavailable_for_seconds_while_writes_continue(platform, client) -> None:
    await outage(platform, client, 5)


@pytest.mark.slow
async def test_broker_unavailable_for_a_minute_while_writes_continue(platform, client) -> None:
    await outage(platform, client, 60)
