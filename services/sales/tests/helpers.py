"""Shared helpers of the sales tests."""

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from services.sales import consumers
from services.sales.contacts_client import ContactsClient
from shared.embedded_broker import free_port
from shared.events import Envelope
from shared.models import OutboxMessage
from shared.testing import app_of


async def new_lead(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Grace Hopper",
        "company": "Navy Labs",
        "email": f"grace.{uuid.uuid4().hex[:8]}@example.com",
        "source": "web",
        **fields,
    }
    response = await client.post("/v1/leads", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def new_opportunity(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "customer_id": str(uuid.uuid4()),
        "title": "Fleet licence",
        "amount": "1000.00",
        "currency": "EUR",
        "expected_close": "2026-12-15",
        "owner": "rep-1",
        **fields,
    }
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/v1/opportunities", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def outbox(client: httpx.AsyncClient, topic: str | None = None) -> list[OutboxMessage]:
    async with app_of(client).state.session_factory() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if topic is not None:
            query = query.where(OutboxMessage.topic == topic)
        return list(await session.scalars(query))


async def apply(client: httpx.AsyncClient, event_type: str, data: dict[str, Any]) -> None:
    """Apply another service's event the way the consumer does (without the broker)."""
    handlers = {t: h for s in consumers.SUBSCRIPTIONS for t, h in s.handlers.items()}
    envelope = Envelope(id=str(uuid.uuid4()), source="/crm/test", type=event_type, data=data)
    async with app_of(client).state.session_factory() as session:
        await handlers[event_type](session, envelope)
        await session.commit()


class Blips(httpx.ASGITransport):
    """The network between sales and contacts failing a few times: before the request reaches
    contacts (``lost_requests``) or after contacts handled it (``lost_responses``)."""

    def __init__(self, app: Any, *, lost_requests: int = 0, lost_responses: int = 0) -> None:
        super().__init__(app=app)
        self.lost_requests = lost_requests
        self.lost_responses = lost_responses

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.lost_requests > 0:
            self.lost_requests -= 1
            raise httpx.ConnectError("connection refused", request=request)
        response = await super().handle_async_request(request)
        if self.lost_responses > 0:
            self.lost_responses -= 1
            raise httpx.ReadError("connection reset", request=request)
        return response


def connect(sales: httpx.AsyncClient, contacts: httpx.AsyncClient | None, **blips: int) -> None:
    """Point sales' contacts client at the running contacts app, or (None) at a dead port."""
    app = app_of(sales)
    auth = app.state.settings.auth
    if contacts is None:
        client = ContactsClient(f"http://127.0.0.1:{free_port()}", auth=auth)
    else:
        transport = Blips(app_of(contacts), **blips)
        client = ContactsClient("http://contacts", auth=auth, transport=transport)
    app.state.contacts = client
