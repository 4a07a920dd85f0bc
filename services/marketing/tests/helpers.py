"""Shared helpers of the marketing tests."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from services.marketing import consumers
from shared.events import CONTACT_CREATED, INTERACTION_RECORDED, Envelope
from shared.models import OutboxMessage
from shared.testing import app_of

NOW = datetime.now(UTC)


async def apply(client: httpx.AsyncClient, event_type: str, data: dict[str, Any]) -> None:
    """Apply another service's event the way the consumer does (without the broker)."""
    handlers = {t: h for s in consumers.SUBSCRIPTIONS for t, h in s.handlers.items()}
    envelope = Envelope(id=str(uuid.uuid4()), source="/crm/test", type=event_type, data=data)
    async with app_of(client).state.session_factory() as session:
        await handlers[event_type](session, envelope)
        await session.commit()


def snapshot(contact_id: str | None = None, **fields: Any) -> dict[str, Any]:
    contact_id = contact_id or str(uuid.uuid4())
    return {
        "contact_id": contact_id,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"ada.{contact_id[:8]}@example.com",
        "phone": "+4915112345678",
        "country": "DE",
        "identities": [],
        "preferences": {},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        **fields,
    }


async def new_contact(client: httpx.AsyncClient, **fields: Any) -> str:
    data = snapshot(**fields)
    await apply(client, CONTACT_CREATED, data)
    return data["contact_id"]


async def touch(
    client: httpx.AsyncClient,
    customer_id: str,
    *,
    kind: str = "call",
    department: str = "sales",
    direction: str = "outbound",
    channel: str = "phone",
    at: datetime | None = None,
) -> None:
    """Another department's touch, as the interactions consumer records it."""
    await apply(
        client,
        INTERACTION_RECORDED,
        {
            "interaction_id": str(uuid.uuid4()),
            "customer_id": customer_id,
            "department": department,
            "channel": channel,
            "direction": direction,
            "kind": kind,
            "occurred_at": (at or NOW - timedelta(hours=1)).isoformat(),
        },
    )


async def new_segment(
    client: httpx.AsyncClient, rules: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    body = {
        "name": "Germany",
        "rules": rules or {"field": "country", "op": "eq", "value": "DE"},
        **fields,
    }
    response = await client.post("/v1/segments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def new_campaign(client: httpx.AsyncClient, segment_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Spring sale",
        "channel": "email",
        "segment_id": segment_id,
        "subject": "Hello {first_name}",
        "template": "Hi {first_name}, see https://shop.example.test/spring",
        "budget": "100",
        "cost_per_send": "0.10",
        **fields,
    }
    response = await client.post("/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def launch(client: httpx.AsyncClient, campaign_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/campaigns/{campaign_id}/launch")
    assert response.status_code == 202, response.text
    return response.json()


async def deliver(client: httpx.AsyncClient) -> int:
    """Run the sender until nothing is queued; the number of sends it handled."""
    sender = app_of(client).state.sender
    total = 0
    while handled := await sender.deliver_batch():
        total += handled
    return total


async def report(client: httpx.AsyncClient, campaign_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/campaigns/{campaign_id}/report")
    assert response.status_code == 200, response.text
    return response.json()


async def sends(client: httpx.AsyncClient, campaign_id: str, **params: Any) -> list[dict]:
    response = await client.get(
        f"/v1/campaigns/{campaign_id}/sends", params={"limit": 1000, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def outbox(client: httpx.AsyncClient, topic: str | None = None) -> list[OutboxMessage]:
    async with app_of(client).state.session_factory() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if topic is not None:
            query = query.where(OutboxMessage.topic == topic)
        return list(await session.scalars(query))


def event_types(rows: list[OutboxMessage]) -> list[str]:
    return [r.event_type for r in rows]
