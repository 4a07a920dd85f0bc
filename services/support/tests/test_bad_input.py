"""Bad input on every write endpoint: a 4xx naming the field, in the one error format, and
nothing written (no row, no event)."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema
import pytest

from services.support.tests.helpers import new_agent, new_ticket, outbox
from shared.pagination import encode_cursor
from shared.testing import app_of

UNKNOWN = "00000000-0000-4000-8000-000000000000"
# A cursor whose timestamp has lost its time zone: a 422, not a failed query.
NAIVE_CURSOR = encode_cursor("2026-01-01T00:00:00", "00000000-0000-4000-8000-000000000000")
TICKET = {
    "customer_id": str(uuid.uuid4()),
    "subject": "Broken",
    "description": "It is broken.",
    "channel": "email",
}
# When something happened cannot be ahead of the server's clock: a touch dated next year sat
# at the top of its customer's timeline until then.
NEXT_YEAR = f"{datetime.now(UTC).year + 1}-01-01T00:00:00Z"
TOUCH = {
    "customer_id": str(uuid.uuid4()),
    "channel": "phone",
    "direction": "outbound",
    "kind": "call",
}


async def everything(client: httpx.AsyncClient) -> list[Any]:
    tickets = (await client.get("/v1/tickets", params={"limit": 1000})).json()["items"]
    details = [(await client.get(f"/v1/tickets/{t['id']}")).json() for t in tickets]
    agents = (await client.get("/v1/agents")).json()
    teams = (await client.get("/v1/teams")).json()
    return [details, agents, teams, [r.event_id for r in await outbox(client)]]


def assert_error(response: httpx.Response, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if field is not None:
        assert field in [f["field"] for f in error["fields"]], error


@pytest.fixture
async def setup(client):
    agent = await new_agent(client)
    ticket = await new_ticket(client)
    return {"agent": agent["id"], "ticket": ticket["id"]}


CASES = [
    ("POST", "/v1/tickets", {**TICKET, "customer_id": "nope"}, 422, "customer_id"),
    ("POST", "/v1/tickets", {**TICKET, "subject": ""}, 422, "subject"),
    ("POST", "/v1/tickets", {**TICKET, "subject": "x" * 501}, 422, "subject"),
    ("POST", "/v1/tickets", {**TICKET, "channel": "pigeon"}, 422, "channel"),
    ("POST", "/v1/tickets", {**TICKET, "priority": "asap"}, 422, "priority"),
    ("POST", "/v1/tickets", {**TICKET, "opened_at": "2026-01-01T00:00:00"}, 422, "opened_at"),
    ("POST", "/v1/tickets", {**TICKET, "attributes": []}, 422, "attributes"),
    ("POST", "/v1/tickets", {**TICKET, "attributes": {"x": "a" * 501}}, 422, "attributes.x"),
    ("POST", "/v1/tickets", {**TICKET, "attributes": {"x": {"y": 1}}}, 422, "attributes.x"),
    ("POST", "/v1/tickets", {**TICKET, "attributes": {"": 1}}, 422, "attributes"),
    ("POST", "/v1/tickets", {**TICKET, "colour": "red"}, 422, "colour"),
    (
        "POST",
        "/v1/tickets",
        {k: v for k, v in TICKET.items() if k != "description"},
        422,
        "description",
    ),
    ("POST", "/v1/agents", {"name": "A", "team": "t", "capacity": -1}, 422, "capacity"),
    ("POST", "/v1/agents", {"name": "", "team": "t"}, 422, "name"),
    ("POST", "/v1/agents", {"name": "A"}, 422, "team"),
    ("POST", "/v1/agents", {"name": "A", "team": "t", "email": "no-at"}, 422, "email"),
    ("PATCH", "/v1/agents/{agent}", {"available": None}, 422, "available"),
    ("PATCH", "/v1/agents/{agent}", {"capacity": 1001}, 422, "capacity"),
    # JSON true/false is not a number, nor 0/1 a yes or no (pydantic alone converts both).
    ("POST", "/v1/agents", {"name": "A", "team": "t", "capacity": True}, 422, "capacity"),
    ("PATCH", "/v1/agents/{agent}", {"available": 0}, 422, "available"),
    ("PATCH", "/v1/agents/{agent}", {"available": "yes"}, 422, "available"),
    ("PATCH", f"/v1/agents/{UNKNOWN}", {"available": False}, 404, None),
    ("PUT", "/v1/teams/t", {"categories": "refund"}, 422, "categories"),
    (
        "POST",
        "/v1/tickets/{ticket}/messages",
        {"author_type": "bot", "body": "x"},
        422,
        "author_type",
    ),
    ("POST", "/v1/tickets/{ticket}/messages", {"author_type": "agent", "body": "x"}, 422, None),
    ("POST", "/v1/tickets/{ticket}/messages", {"author_type": "customer", "body": ""}, 422, "body"),
    (
        "POST",
        "/v1/tickets/{ticket}/messages",
        {"author_type": "agent", "author_id": UNKNOWN, "body": "x"},
        422,
        "author_id",
    ),
    (
        "POST",
        f"/v1/tickets/{UNKNOWN}/messages",
        {"author_type": "customer", "body": "x"},
        404,
        None,
    ),
    ("POST", "/v1/tickets/{ticket}/assign", {"agent_id": UNKNOWN}, 422, "agent_id"),
    ("POST", "/v1/tickets/{ticket}/assign", {}, 422, "agent_id"),
    ("POST", "/v1/tickets/{ticket}/resolve", {"at": "yesterday"}, 422, "at"),
    ("POST", "/v1/tickets/{ticket}/resolve", {"at": NEXT_YEAR}, 422, "at"),
    # Before the ticket was opened (now): a negative resolution time in every KPI.
    ("POST", "/v1/tickets/{ticket}/resolve", {"at": "2020-01-01T00:00:00Z"}, 422, "at"),
    ("POST", "/v1/tickets", {**TICKET, "opened_at": NEXT_YEAR}, 422, "opened_at"),
    (
        "POST",
        "/v1/tickets/{ticket}/messages",
        {"author_type": "customer", "body": "x", "sent_at": NEXT_YEAR},
        422,
        "sent_at",
    ),
    (
        "POST",
        "/v1/inbound",
        {
            "channel": "email",
            "sender": {"kind": "email", "value": "ann@example.com"},
            "body": "x",
            "received_at": NEXT_YEAR,
        },
        422,
        "received_at",
    ),
    ("POST", "/v1/interactions", {**TOUCH, "occurred_at": NEXT_YEAR}, 422, "occurred_at"),
    (
        "POST",
        "/v1/interactions:batch",
        {"items": [TOUCH, {**TOUCH, "occurred_at": NEXT_YEAR}]},
        422,
        "items.1.occurred_at",
    ),
    ("POST", "/v1/tickets/{ticket}/satisfaction", {"score": 6}, 422, "score"),
    ("POST", "/v1/tickets/{ticket}/satisfaction", {"score": 0}, 422, "score"),
    ("POST", "/v1/tickets/{ticket}/satisfaction", {"score": True}, 422, "score"),
    ("POST", "/v1/tickets/{ticket}/satisfaction", {"score": "5"}, 422, "score"),
    ("PUT", "/v1/sla-policies/urgent", {"resolution_minutes": True}, 422, "resolution_minutes"),
    ("POST", "/v1/interactions", {**TOUCH, "direction": "sideways"}, 422, "direction"),
    ("POST", "/v1/interactions", {**TOUCH, "subject": "mail anna@example.com"}, 422, "subject"),
    ("POST", "/v1/interactions", {**TOUCH, "actor": "+49 30 1234567"}, 422, "actor"),
    (
        "POST",
        "/v1/interactions",
        {**TOUCH, "occurred_at": "2026-13-01T00:00:00Z"},
        422,
        "occurred_at",
    ),
    ("POST", "/v1/interactions:batch", {"items": []}, 422, "items"),
    ("POST", "/v1/interactions:batch", {"items": [TOUCH] * 1001}, 422, "items"),
    # PostgreSQL cannot store U+0000 in text: the batch was a 500 there.
    (
        "POST",
        "/v1/interactions:batch",
        {"items": [TOUCH, {**TOUCH, "subject": "Refund\u0000"}]},
        422,
        "items.1.subject",
    ),
    (
        "POST",
        "/v1/tickets/{ticket}/messages",
        {"author_type": "customer", "body": "\u0000"},
        422,
        "body",
    ),
    (
        "POST",
        "/v1/interactions:batch",
        {"items": [TOUCH, {**TOUCH, "kind": ""}]},
        422,
        "items.1.kind",
    ),
    # A number, or a string of digits, is not read as Unix seconds (a touch filed in 1970).
    ("POST", "/v1/interactions", {**TOUCH, "occurred_at": 0}, 422, "occurred_at"),
    ("POST", "/v1/interactions", {**TOUCH, "occurred_at": "1764460800"}, 422, "occurred_at"),
    (
        "POST",
        "/v1/interactions:batch",
        {"items": [TOUCH, {**TOUCH, "occurred_at": 1764460800.5}]},
        422,
        "items.1.occurred_at",
    ),
    # In UTC this is in year 0, where Python's datetime ends: it was a 500 (schemathesis).
    (
        "POST",
        "/v1/interactions",
        {**TOUCH, "occurred_at": "0001-01-01T00:00:00+01:01"},
        422,
        "occurred_at",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), CASES)
async def test_rejected_and_nothing_written(client, setup, method, path, body, status, field):
    before = await everything(client)
    response = await client.request(method, path.format(**setup), json=body)
    assert_error(response, status, field)
    assert await everything(client) == before


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_attributes_that_are_not_finite_numbers(client, setup, number):
    # Python's JSON reader takes these; PostgreSQL's JSON column refused them (a 500).
    before = await everything(client)
    body = json.dumps({**TICKET, "attributes": {"x": "N"}}).replace('"N"', number)
    response = await client.post(
        "/v1/tickets", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "attributes.x")
    assert await everything(client) == before


async def test_malformed_json(client, setup):
    before = await everything(client)
    response = await client.post(
        "/v1/tickets", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "body")
    assert await everything(client) == before


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/tickets", {"limit": 0}, "limit"),
        ("/v1/tickets", {"limit": 1001}, "limit"),
        ("/v1/tickets", {"status": "lost"}, "status"),
        ("/v1/tickets", {"cursor": "garbage"}, "cursor"),
        ("/v1/tickets", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/customers/{customer}/timeline", {"limit": 1001}, "limit"),
        ("/v1/customers/{customer}/timeline", {"cursor": "garbage"}, "cursor"),
        ("/v1/customers/{customer}/timeline", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/customers/{customer}/timeline", {"since": "0"}, "since"),  # Unix seconds
        ("/v1/customers/{customer}/timeline", {"until": "9999-12-31T23:59:59-00:01"}, "until"),
        ("/v1/customers/{customer}/contact-check", {"channel": "email", "at": "0"}, "at"),
        (
            "/v1/customers/{customer}/timeline",
            {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            "since",
        ),  # reversed window
        ("/v1/customers/{customer}/contact-check", {}, "channel"),
        (
            "/v1/customers/{customer}/contact-check",
            {"channel": "fax", "department": "hr"},
            "department",
        ),
        ("/v1/customers/not-an-id/timeline", {}, "customer_id"),
    ],
)
async def test_bad_queries(client, path, params, field):
    response = await client.get(path.format(customer=uuid.uuid4()), params=params)
    assert_error(response, 422, field)


async def test_erased_customer_in_a_batch_names_the_item(client):
    from services.support.tests.helpers import apply
    from shared.events import CONTACT_ERASED

    erased = str(uuid.uuid4())
    await apply(client, CONTACT_ERASED, {"contact_id": erased, "erased_at": "2026-01-01T00:00:00Z"})
    before = await everything(client)
    response = await client.post(
        "/v1/interactions:batch", json={"items": [TOUCH, {**TOUCH, "customer_id": erased}]}
    )
    assert_error(response, 409, "items.1.customer_id")
    assert await everything(client) == before


async def test_error_bodies_are_the_documented_ones(client):
    """An integrator's client, generated from the OpenAPI document, can read every refusal."""
    document = app_of(client).openapi()
    error_schema = {"$ref": "#/components/schemas/ErrorResponse", **document}
    refusals = [
        await client.get("/v1/tickets", headers={"Authorization": "Bearer not-a-token"}),
        await client.get(f"/v1/tickets/{UNKNOWN}"),
        await client.post("/v1/tickets", json={"subject": ""}),
        await client.get("/v1/tickets", params={"cursor": NAIVE_CURSOR}),
    ]
    assert [r.status_code for r in refusals] == [401, 404, 422, 422]
    for response in refusals:
        jsonschema.validate(response.json(), error_schema)
