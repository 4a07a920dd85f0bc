"""Shared helpers of the support tests."""

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from shared.consumer import Handler
from shared.events import Envelope
from shared.models import OutboxMessage
from shared.testing import app_of


async def new_agent(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Ada", "team": "billing", "capacity": 5, **fields}
    response = await client.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def new_ticket(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "customer_id": str(uuid.uuid4()),
        "subject": "Printer does not print",
        "description": "Since the update the X-200 prints blank pages.",
        "channel": "email",
        "priority": "normal",
        **fields,
    }
    response = await client.post("/v1/tickets", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def outbox(client: httpx.AsyncClient, topic: str | None = None) -> list[OutboxMessage]:
    async with app_of(client).state.session_factory() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if topic is not None:
            query = query.where(OutboxMessage.topic == topic)
        return list(await session.scalars(query))


def event_handlers(client: httpx.AsyncClient) -> dict[str, Handler]:
    """The running service's event handlers, by event type (built with its settings)."""
    return {
        t: h for c in app_of(client).state.consumers for t, h in c.subscription.handlers.items()
    }


async def apply(client: httpx.AsyncClient, event_type: str, data: dict[str, Any]) -> None:
    """Apply another service's event the way the consumer does (without the broker)."""
    envelope = Envelope(id=str(uuid.uuid4()), source="/crm/test", type=event_type, data=data)
    async with app_of(client).state.session_factory() as session:
        await event_handlers(client)[event_type](session, envelope)
        await session.commit()
