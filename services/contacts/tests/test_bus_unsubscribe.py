"""Contacts honours marketing's one-click unsubscribes (crm.marketing.v1 ``Unsubscribed``): the
channel joins the contact's opt-outs and the contact is republished for every service."""

import uuid

import pytest

from shared import topics
from shared.contracts.marketing import SOURCE, UNSUBSCRIBED
from shared.events import CONTACT_UPDATED, decode_event, encode_event
from shared.testing import TopicTail, eventually

pytestmark = pytest.mark.bus


async def unsubscribe(producer, customer_id: str, channel: str = "email") -> None:
    data = {
        "customer_id": customer_id,
        "channel": channel,
        "campaign_id": str(uuid.uuid4()),
        "unsubscribed_at": "2026-11-24T10:00:00Z",
    }
    _, value, headers = encode_event(
        event_type=UNSUBSCRIBED, source=SOURCE, data=data, subject=customer_id
    )
    await producer.send_and_wait(
        topics.MARKETING, value=value, key=customer_id.encode(), headers=list(headers.items())
    )


async def test_unsubscribe_opts_the_channel_out_and_republishes(client, producer, kafka_bootstrap):
    created = await client.post(
        "/v1/contacts",
        json={"first_name": "Grace", "preferences": {"opted_out_channels": ["sms"]}},
    )
    contact_id = created.json()["id"]

    async def opted_out() -> list[str]:
        body = (await client.get(f"/v1/contacts/{contact_id}")).json()
        channels = body["preferences"]["opted_out_channels"]
        assert "email" in channels, channels
        return channels

    async with TopicTail(kafka_bootstrap, topics.CONTACTS) as tail:
        await unsubscribe(producer, contact_id)
        assert sorted(await eventually(opted_out)) == ["email", "sms"]
        [record] = await tail.collect(
            lambda r: (
                r.key == contact_id.encode()
                and r.value is not None
                and decode_event(r.value).type == CONTACT_UPDATED
            )
        )
    republished = decode_event(record.value).data
    assert sorted(republished["preferences"]["opted_out_channels"]) == ["email", "sms"]

    # A second unsubscribe (or a replay) changes nothing and republishes nothing.
    async with TopicTail(kafka_bootstrap, topics.CONTACTS) as tail:
        await unsubscribe(producer, contact_id)
        await unsubscribe(producer, contact_id, channel="whatsapp")
        await eventually(
            lambda: _has(client, contact_id, "whatsapp"),
        )
        updates = await tail.collect(lambda r: r.key == contact_id.encode())
    assert len(updates) == 1  # only the whatsapp opt-out


async def _has(client, contact_id: str, channel: str) -> None:
    body = (await client.get(f"/v1/contacts/{contact_id}")).json()
    assert channel in body["preferences"]["opted_out_channels"]


async def test_unknown_customer_is_ignored(client, producer):
    await unsubscribe(producer, str(uuid.uuid4()))
    created = await client.post("/v1/contacts", json={"first_name": "Ada"})
    contact_id = created.json()["id"]
    await unsubscribe(producer, contact_id)

    async def processed() -> None:
        await _has(client, contact_id, "email")

    await eventually(processed)  # the unknown id before it did not stop the consumer
