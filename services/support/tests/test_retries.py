"""Requests sent again with the client's id (a retry after a timeout, a webhook delivered
twice, possibly at the same moment as the first) change and publish once."""

import asyncio
import uuid

import httpx

from services.support.tests.helpers import new_ticket, outbox
from shared.contracts import support


async def published(client: httpx.AsyncClient, event_type: str) -> int:
    return len([m for m in await outbox(client) if m.event_type == event_type])


async def all_at_once(client: httpx.AsyncClient, path: str, body: dict) -> list[dict]:
    responses = await asyncio.gather(*[client.post(path, json=body) for _ in range(4)])
    assert [r.status_code for r in responses] == [201] * 4, responses[0].text
    return [r.json() for r in responses]


async def test_a_ticket_sent_again_with_its_id_is_opened_once(client):
    body = {
        "ticket_id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()),
        "subject": "Printer",
        "description": "It prints blank pages.",
        "channel": "email",
    }
    answers = await all_at_once(client, "/v1/tickets", body)
    assert {a["id"] for a in answers} == {body["ticket_id"]}
    assert await published(client, support.TICKET_OPENED) == 1
    other = await client.post("/v1/tickets", json={**body, "subject": "Scanner"})
    assert other.status_code == 409
    assert other.json()["error"]["fields"][0]["field"] == "ticket_id"


async def test_a_message_sent_again_with_its_id_is_added_once(client):
    ticket = await new_ticket(client)
    path = f"/v1/tickets/{ticket['id']}/messages"
    body = {"message_id": str(uuid.uuid4()), "author_type": "customer", "body": "Any news?"}
    answers = await all_at_once(client, path, body)
    assert {a["id"] for a in answers} == {body["message_id"]}
    assert await published(client, support.TICKET_MESSAGE_ADDED) == 1
    assert len((await client.get(path)).json()) == 1
    elsewhere = await client.post(
        f"/v1/tickets/{(await new_ticket(client))['id']}/messages", json=body
    )
    assert elsewhere.status_code == 409
    assert elsewhere.json()["error"]["fields"][0]["field"] == "message_id"


async def test_an_inbound_message_delivered_again_is_received_once(client):
    message = {
        "channel": "email",
        "sender": {"kind": "email", "value": "new@example.com"},
        "body": "Help",
    }
    opening = {**message, "message_id": str(uuid.uuid4())}
    first = await all_at_once(client, "/v1/inbound", opening)
    assert {a["ticket_id"] for a in first} == {opening["message_id"]}  # it opened the ticket
    assert [a["threaded"] for a in first] == [False] * 4
    reply = {**message, "message_id": str(uuid.uuid4()), "body": "Still broken"}
    second = await all_at_once(client, "/v1/inbound", reply)
    assert {(a["ticket_id"], a["message_id"]) for a in second} == {
        (opening["message_id"], reply["message_id"])
    }
    assert [a["threaded"] for a in second] == [True] * 4
    assert await published(client, support.TICKET_OPENED) == 1
    assert await published(client, support.TICKET_MESSAGE_ADDED) == 1
    someone_else = {**reply, "sender": {"kind": "email", "value": "other@example.com"}}
    taken = await client.post("/v1/inbound", json=someone_else)
    assert taken.status_code == 409
    assert taken.json()["error"]["fields"][0]["field"] == "message_id"
