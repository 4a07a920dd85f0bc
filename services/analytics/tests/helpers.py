"""Shared helpers of the analytics tests: play the other services' events."""

import itertools
import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from shared import topics
from shared.consumer import EventConsumer
from shared.contracts import marketing, sales, support
from shared.events import (
    CONTACT_CREATED,
    CONTACT_ERASED,
    CONTACT_MERGED,
    INTERACTION_RECORDED,
)
from shared.models import OutboxMessage
from shared.testing import app_of, consumer_record


async def apply(client: httpx.AsyncClient, event_type: str, data: dict[str, Any]) -> None:
    """Apply another service's event the way the consumer does (without the broker), each in
    its own transaction."""
    await apply_many(client, [(event_type, data)])


async def deliver(
    client: httpx.AsyncClient, event_type: str, data: dict[str, Any], event_id: uuid.UUID
) -> None:
    """Apply an event under this CloudEvent id (``apply`` gives each delivery a new one): the
    same event delivered again, as the broker redelivers or a replay reads it."""
    (consumer,) = [
        c for c in app_of(client).state.consumers if c.subscription.topics[0] == _topic(event_type)
    ]
    topic = consumer.subscription.topics[0]
    await consumer.process([consumer_record(topic, 0, event_type, _json(data), event_id=event_id)])


def _topic(event_type: str) -> str:
    return _TOPICS.get(event_type) or (
        topics.INTERACTIONS if event_type == INTERACTION_RECORDED else topics.CONTACTS
    )


async def apply_many(client: httpx.AsyncClient, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Several events as the service's consumers apply a fetched batch (prefetch, handlers,
    processed-event records, one transaction per consumer), without the broker."""
    consumers = app_of(client).state.consumers
    offset = 0
    for consumer, run in itertools.groupby(items, key=lambda item: _consumer_of(consumers, item)):
        records = []
        for event_type, data in run:
            topic = consumer.subscription.topics[0]
            records.append(consumer_record(topic, offset, event_type, _json(data)))
            offset += 1
        await consumer.process(records)


# A department event goes to the consumer of its topic, as the bus delivers it, whether or not
# analytics has a handler for its type.
_TOPICS = {
    **dict.fromkeys(sales.EVENT_TYPES, topics.SALES),
    **dict.fromkeys(marketing.EVENT_TYPES, topics.MARKETING),
    **dict.fromkeys(support.EVENT_TYPES, topics.SUPPORT),
}


def _consumer_of(consumers: list[EventConsumer], item: tuple[str, dict[str, Any]]) -> EventConsumer:
    topic = _TOPICS.get(item[0])
    (consumer,) = [
        c for c in consumers if item[0] in c.subscription.handlers or topic in c.subscription.topics
    ]
    return consumer


def _json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v)
        for k, v in data.items()
    }


async def outbox(client: httpx.AsyncClient, topic: str | None = None) -> list[OutboxMessage]:
    async with app_of(client).state.session_factory() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if topic is not None:
            query = query.where(OutboxMessage.topic == topic)
        return list(await session.scalars(query))


# ---- event builders: (type, data) of the other departments' events ---------------------------


def opened(
    ticket: str, customer: str, at: str, priority: str = "normal", **fields: Any
) -> tuple[str, dict]:
    return support.TICKET_OPENED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "subject": "Printer",
        "channel": "email",
        "priority": priority,
        "category": None,
        "opened_at": at,
        **fields,
    }


def identified(ticket: str, customer: str, stand_in: str, at: str) -> tuple[str, dict]:
    return support.TICKET_CUSTOMER_IDENTIFIED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "previous_customer_id": stand_in,
        "identified_at": at,
    }


def assigned(ticket: str, customer: str, agent: str, at: str) -> tuple[str, dict]:
    return support.TICKET_ASSIGNED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "agent_id": agent,
        "previous_agent_id": None,
        "automatic": True,
        "assigned_at": at,
    }


def reassigned(ticket: str, customer: str, agent: str, at: str) -> tuple[str, dict]:
    return support.TICKET_REASSIGNED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "agent_id": agent,
        "previous_agent_id": None,
        "reason": "unanswered",
        "reassigned_at": at,
    }


def message(
    ticket: str, customer: str, author: str, at: str, message_id: str | None = None
) -> tuple[str, dict]:
    return support.TICKET_MESSAGE_ADDED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "message_id": message_id or str(uuid.uuid4()),
        "author_type": author,
        "author_id": None,
        "sent_at": at,
    }


def resolved(ticket: str, customer: str, agent: str | None, at: str) -> tuple[str, dict]:
    return support.TICKET_RESOLVED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "agent_id": agent,
        "resolved_at": at,
    }


def reopened(ticket: str, customer: str, at: str) -> tuple[str, dict]:
    return support.TICKET_REOPENED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "reopened_at": at,
    }


def closed(ticket: str, customer: str, at: str, **fields: Any) -> tuple[str, dict]:
    return support.TICKET_CLOSED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "closed_at": at,
        **fields,
    }


def rated(ticket: str, customer: str, agent: str | None, score: int, at: str) -> tuple[str, dict]:
    return support.TICKET_SATISFACTION_RATED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "agent_id": agent,
        "score": score,
        "rated_at": at,
    }


def breached(ticket: str, customer: str, target: str, at: str) -> tuple[str, dict]:
    return support.TICKET_SLA_BREACHED, {
        "ticket_id": ticket,
        "customer_id": customer,
        "agent_id": None,
        "priority": "high",
        "target": target,
        "detected_at": at,
    }


def order(customer: str, amount: str, at: str, **fields: Any) -> tuple[str, dict]:
    return sales.ORDER_PLACED, {
        "order_id": str(uuid.uuid4()),
        "customer_id": customer,
        "amount": amount,
        "currency": "EUR",
        "status": "placed",
        "ordered_at": at,
        **fields,
    }


def touch(customer: str, at: str, **fields: Any) -> tuple[str, dict]:
    return INTERACTION_RECORDED, {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer,
        "department": "sales",
        "channel": "phone",
        "direction": "inbound",
        "kind": "call",
        "subject": "Renewal",
        "occurred_at": at,
        "actor": "rep-7",
        **fields,
    }


def contact(customer: str, first: str = "Ada", **fields: Any) -> tuple[str, dict]:
    return CONTACT_CREATED, {
        "contact_id": customer,
        "first_name": first,
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "company": "Analytical Engines",
        "country": "GB",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        **fields,
    }


def merged(merged_id: str, survivor: str) -> tuple[str, dict]:
    return CONTACT_MERGED, {"merged_id": merged_id, "survivor_id": survivor}


def erased(customer: str) -> tuple[str, dict]:
    return CONTACT_ERASED, {"contact_id": customer, "erased_at": "2026-11-20T00:00:00Z"}
