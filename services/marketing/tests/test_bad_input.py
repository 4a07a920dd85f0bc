"""Bad input on every write endpoint: a 4xx naming the field, in the one error format, and
nothing written (no row, no event)."""

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.marketing.models import Base
from services.marketing.tests.helpers import new_campaign, new_contact, new_segment, outbox
from shared.pagination import encode_cursor
from shared.testing import app_of

UNKNOWN = "00000000-0000-4000-8000-000000000000"
NEXT_YEAR = f"{datetime.now(UTC).year + 1}-01-01T00:00:00Z"  # not yet happened
# A cursor whose timestamp has lost its time zone: a 422, not a failed query.
NAIVE_CURSOR = encode_cursor("2026-01-01T00:00:00", "00000000-0000-4000-8000-000000000000")
RULE = {"field": "country", "op": "eq", "value": "DE"}
SEGMENT = {"name": "Germany", "rules": RULE}
CAMPAIGN = {
    "name": "Spring",
    "channel": "email",
    "segment_id": "{segment}",
    "template": "Hi {{first_name}}",
    "budget": "10",
    "cost_per_send": "0.1",
}
TOUCH = {
    "customer_id": str(uuid.uuid4()),
    "channel": "email",
    "direction": "outbound",
    "kind": "newsletter",
}


async def everything(client: httpx.AsyncClient) -> list[Any]:
    """Row counts of every marketing table and the outbox event ids."""
    async with app_of(client).state.session_factory() as session:
        counts = {
            name: await session.scalar(select(func.count()).select_from(table))
            for name, table in Base.metadata.tables.items()
        }
    campaigns = (await client.get("/v1/campaigns", params={"limit": 1000})).json()
    return [counts, campaigns, [r.event_id for r in await outbox(client)]]


def assert_error(response: httpx.Response, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if field is not None:
        assert field in [f["field"] for f in error["fields"]], error


@pytest.fixture
async def setup(client):
    await new_contact(client)
    segment = await new_segment(client)
    campaign = await new_campaign(client, segment["id"])
    return {"segment": segment["id"], "campaign": campaign["id"], "unknown": UNKNOWN}


def campaign(**fields: Any) -> dict[str, Any]:
    return {**CAMPAIGN, **fields}


CASES = [
    ("POST", "/v1/segments", {**SEGMENT, "name": ""}, 422, "name"),
    ("POST", "/v1/segments", {**SEGMENT, "name": "mail ada@example.com"}, 422, "name"),
    ("POST", "/v1/segments", {**SEGMENT, "kind": "frozen"}, 422, "kind"),
    ("POST", "/v1/segments", {"name": "x"}, 422, "rules"),
    ("POST", "/v1/segments", {**SEGMENT, "rules": []}, 422, "rules"),
    ("POST", "/v1/segments", {**SEGMENT, "colour": "red"}, 422, "colour"),
    (
        "POST",
        "/v1/segments",
        {**SEGMENT, "rules": {"field": "shoe", "op": "eq", "value": 1}},
        422,
        "rules.field",
    ),
    (
        "POST",
        "/v1/segments",
        {**SEGMENT, "rules": {"and": [RULE, {"field": "orders_count", "op": "gt", "value": "x"}]}},
        422,
        "rules.and.1.value",
    ),
    (
        "POST",
        "/v1/segments",
        {**SEGMENT, "kind": "static", "rules": {"or": [RULE, {"field": "country", "op": "~"}]}},
        422,
        "rules.or.1.op",
    ),
    ("POST", "/v1/segments:preview", {"rules": {"not": []}}, 422, "rules.not"),
    ("POST", "/v1/segments:preview", {"rules": RULE, "x": 1}, 422, "x"),
    ("POST", "/v1/campaigns", campaign(name=""), 422, "name"),
    ("POST", "/v1/campaigns", campaign(channel="pigeon"), 422, "channel"),
    ("POST", "/v1/campaigns", campaign(segment_id="nope"), 422, "segment_id"),
    ("POST", "/v1/campaigns", campaign(segment_id=UNKNOWN), 422, "segment_id"),
    ("POST", "/v1/campaigns", campaign(template=""), 422, "template"),
    ("POST", "/v1/campaigns", campaign(template="Hi {email}"), 422, "template"),
    ("POST", "/v1/campaigns", campaign(template="Hi {first_name"), 422, "template"),
    ("POST", "/v1/campaigns", campaign(subject="{first_name.__class__}"), 422, "subject"),
    ("POST", "/v1/campaigns", campaign(budget="-1"), 422, "budget"),
    ("POST", "/v1/campaigns", campaign(budget="lots"), 422, "budget"),
    ("POST", "/v1/campaigns", campaign(cost_per_send="0.000001"), 422, "cost_per_send"),
    ("POST", "/v1/campaigns", campaign(scheduled_at="2026-01-01T00:00:00"), 422, "scheduled_at"),
    ("POST", "/v1/campaigns", campaign(scheduled_at=1893456000), 422, "scheduled_at"),
    ("POST", "/v1/campaigns", campaign(audience="all"), 422, "audience"),
    ("PATCH", "/v1/campaigns/{campaign}", {"budget": None}, 422, "budget"),
    ("PATCH", "/v1/campaigns/{campaign}", {"budget": "-5"}, 422, "budget"),
    ("PATCH", "/v1/campaigns/{campaign}", {"channel": "sms"}, 422, "channel"),
    ("PATCH", "/v1/campaigns/{unknown}", {"budget": "5"}, 404, None),
    ("POST", "/v1/campaigns/{unknown}/launch", None, 404, None),
    ("POST", "/v1/campaigns/{campaign}/tasks", {"title": "x"}, 422, "assignee"),
    ("POST", "/v1/campaigns/{campaign}/tasks", {"title": "", "assignee": "a"}, 422, "title"),
    (
        "POST",
        "/v1/campaigns/{campaign}/tasks",
        {"title": "x", "assignee": "a", "due_date": "soon"},
        422,
        "due_date",
    ),
    (
        "POST",
        "/v1/campaigns/{campaign}/tasks",
        {"title": "x", "assignee": "a", "due_date": 86400},  # Unix seconds
        422,
        "due_date",
    ),
    (
        "POST",
        "/v1/campaigns/{campaign}/tasks",
        {"title": "x", "assignee": "a", "status": "blocked"},
        422,
        "status",
    ),
    ("POST", "/v1/campaigns/{unknown}/tasks", {"title": "x", "assignee": "a"}, 404, None),
    ("PATCH", "/v1/campaigns/{campaign}/tasks/{unknown}", {"status": "done"}, 404, None),
    ("POST", "/v1/engagements", {"send_id": UNKNOWN, "kind": "opened"}, 422, "kind"),
    ("POST", "/v1/engagements", {"send_id": "x", "kind": "delivered"}, 422, "send_id"),
    (
        "POST",
        "/v1/engagements",
        {"send_id": UNKNOWN, "kind": "delivered", "occurred_at": NEXT_YEAR},
        422,
        "occurred_at",
    ),
    ("POST", "/v1/interactions", {**TOUCH, "channel": "pigeon"}, 422, "channel"),
    ("POST", "/v1/interactions", {**TOUCH, "subject": "call +49 151 1234567"}, 422, "subject"),
    (
        "POST",
        "/v1/interactions:batch",
        {"items": [TOUCH, {**TOUCH, "kind": ""}]},
        422,
        "items.1.kind",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), CASES)
async def test_rejected_and_nothing_written(client, setup, method, path, body, status, field):
    if body is not None and body.get("segment_id") == "{segment}":
        body = {**body, "segment_id": setup["segment"]}
    before = await everything(client)
    response = await client.request(method, path.format(**setup), json=body)
    assert_error(response, status, field)
    assert await everything(client) == before


async def test_malformed_json(client, setup):
    before = await everything(client)
    response = await client.post(
        "/v1/segments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "body")
    assert await everything(client) == before


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/segments", {"limit": 0}, "limit"),
        ("/v1/segments", {"limit": 1001}, "limit"),
        ("/v1/segments", {"cursor": "garbage"}, "cursor"),
        ("/v1/segments", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/segments/{segment}/members", {"cursor": "garbage"}, "cursor"),
        ("/v1/segments/{segment}/members", {"limit": 1001}, "limit"),
        ("/v1/campaigns", {"status": "lost"}, "status"),
        ("/v1/campaigns", {"cursor": "garbage"}, "cursor"),
        ("/v1/campaigns", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/campaigns/{campaign}/sends", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/campaigns/{campaign}/sends", {"status": "lost"}, "status"),
        ("/v1/campaigns/{campaign}/tasks", {"due_before": "soon"}, "due_before"),
        ("/v1/campaigns/{campaign}/tasks", {"due_before": "0"}, "due_before"),  # Unix seconds
        ("/v1/campaigns/not-an-id/report", {}, "campaign_id"),
        ("/v1/customers/{unknown}/timeline", {"limit": 1001}, "limit"),
        (
            "/v1/customers/{unknown}/timeline",
            {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            "since",
        ),  # reversed window
        ("/v1/customers/{unknown}/contact-check", {}, "channel"),
    ],
)
async def test_bad_queries(client, setup, path, params, field):
    response = await client.get(path.format(**setup), params=params)
    assert_error(response, 422, field)


@pytest.mark.parametrize(
    "path", ["/v1/segments/{unknown}", "/v1/campaigns/{unknown}", "/v1/campaigns/{unknown}/report"]
)
async def test_unknown_ids_are_404(client, setup, path):
    assert_error(await client.get(path.format(**setup)), 404, None)
