"""Bad input on every write endpoint: a 4xx naming the field, in the one error format, and
nothing written (no row, no event)."""

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.sales.models import Base
from services.sales.tests.helpers import apply, new_lead, new_opportunity, outbox
from shared.events import CONTACT_ERASED
from shared.pagination import encode_cursor
from shared.testing import app_of

# When something happened cannot be ahead of the server's clock.
NEXT_YEAR = f"{datetime.now(UTC).year + 1}-01-01T00:00:00Z"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
# A cursor whose timestamp has lost its time zone: a 422, not a failed query.
NAIVE_CURSOR = encode_cursor("2026-01-01T00:00:00", "00000000-0000-4000-8000-000000000000")
LEAD = {"name": "Ada", "email": "ada@example.com", "source": "web"}
OPPORTUNITY = {
    "customer_id": str(uuid.uuid4()),
    "title": "Deal",
    "amount": "10.00",
    "currency": "EUR",
    "owner": "rep",
}
ACTIVITY = {
    "customer_id": str(uuid.uuid4()),
    "kind": "call",
    "channel": "phone",
    "direction": "outbound",
}
ORDER = {"customer_id": str(uuid.uuid4()), "amount": "5", "currency": "EUR"}
TOUCH = {
    "customer_id": str(uuid.uuid4()),
    "channel": "phone",
    "direction": "outbound",
    "kind": "call",
}


async def everything(client: httpx.AsyncClient) -> list[Any]:
    """Every row of every sales table, and the outbox."""
    async with app_of(client).state.session_factory() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        ]
    leads = (await client.get("/v1/leads", params={"limit": 1000})).json()["items"]
    opportunities = (await client.get("/v1/opportunities", params={"limit": 1000})).json()
    orders = (await client.get("/v1/orders", params={"limit": 1000})).json()["items"]
    return [
        counts,
        leads,
        opportunities["items"],
        orders,
        [r.event_id for r in await outbox(client)],
    ]


def assert_error(response: httpx.Response, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if field is not None:
        assert field in [f["field"] for f in error["fields"]], error


@pytest.fixture
async def setup(client):
    lead = await new_lead(client)
    opportunity = await new_opportunity(client)
    order = (await client.post("/v1/orders", json=ORDER)).json()
    return {"lead": lead["id"], "opportunity": opportunity["id"], "order": order["id"]}


CASES = [
    ("POST", "/v1/leads", {**LEAD, "name": ""}, 422, "name"),
    ("POST", "/v1/leads", {**LEAD, "name": "x" * 201}, 422, "name"),
    ("POST", "/v1/leads", {k: v for k, v in LEAD.items() if k != "source"}, 422, "source"),
    ("POST", "/v1/leads", {**LEAD, "email": "no-at"}, 422, "email"),
    ("POST", "/v1/leads", {"name": "Ada", "source": "web"}, 422, None),
    ("POST", "/v1/leads", {**LEAD, "phone": "call me"}, 422, "phone"),
    # What contacts refuses, so that the lead could never become a contact.
    ("POST", "/v1/leads", {**LEAD, "phone": "((((((("}, 422, "phone"),
    ("POST", "/v1/leads", {**LEAD, "phone": "030 1234567"}, 422, "phone"),  # no country
    ("POST", "/v1/leads", {**LEAD, "email": "ada@example..com"}, 422, "email"),
    ("POST", "/v1/leads", {**LEAD, "country": "Germany"}, 422, "country"),
    # Not a code contacts takes: the lead could never become a contact.
    ("POST", "/v1/leads", {**LEAD, "country": "AA"}, 422, "country"),
    ("POST", "/v1/leads", {**LEAD, "segment": "huge"}, 422, "segment"),
    ("POST", "/v1/leads", {**LEAD, "campaign_id": "c-1"}, 422, "campaign_id"),
    ("POST", "/v1/leads", {**LEAD, "colour": "red"}, 422, "colour"),
    ("POST", "/v1/leads/{lead}/disqualify", {}, 422, "reason"),
    ("POST", "/v1/leads/{lead}/disqualify", {"reason": " "}, 422, "reason"),
    ("POST", f"/v1/leads/{UNKNOWN}/qualify", {}, 404, None),
    ("POST", f"/v1/leads/{UNKNOWN}/disqualify", {"reason": "x"}, 404, None),
    ("POST", "/v1/leads/not-an-id/qualify", {}, 422, "lead_id"),
    (
        "POST",
        "/v1/leads/{lead}/convert",
        {"opportunity": {"title": "t", "amount": "1", "currency": "EUR", "stage": "won"}},
        422,
        "opportunity.stage",
    ),
    (
        "POST",
        "/v1/leads/{lead}/convert",
        {"opportunity": {"title": "t", "amount": "-1", "currency": "EUR"}},
        422,
        "opportunity.amount",
    ),
    (
        "POST",
        "/v1/leads/{lead}/convert",
        {"opportunity": {"title": "t", "amount": "1", "currency": "EUR"}},
        422,
        "opportunity.owner",
    ),
    ("PUT", "/v1/assignment-rules", {"rules": [{"territory": "x"}]}, 422, "rules.0.owner"),
    (
        "PUT",
        "/v1/assignment-rules",
        {"rules": [{"owner": "a", "countries": ["DEU"]}]},
        422,
        "rules.0.countries.0",
    ),
    (
        "PUT",
        "/v1/assignment-rules",
        {"rules": [{"owner": "a", "countries": ["de", "XX"]}]},
        422,
        "rules.0.countries.1",
    ),
    ("PUT", "/v1/assignment-rules", {"rules": {}}, 422, "rules"),
    # A rule the ones before it cover was kept, and silently never applied.
    (
        "PUT",
        "/v1/assignment-rules",
        {"rules": [{"owner": "a"}, {"owner": "b", "source": "web"}, {"owner": "c"}]},
        422,
        "rules.1",
    ),
    ("POST", "/v1/opportunities", {**OPPORTUNITY, "amount": "1.005"}, 422, "amount"),
    ("POST", "/v1/opportunities", {**OPPORTUNITY, "amount": "lots"}, 422, "amount"),
    ("POST", "/v1/opportunities", {**OPPORTUNITY, "currency": "euro"}, 422, "currency"),
    ("POST", "/v1/opportunities", {**OPPORTUNITY, "expected_close": "soon"}, 422, "expected_close"),
    # A number is not read as Unix seconds, nor a midnight timestamp as its day.
    ("POST", "/v1/opportunities", {**OPPORTUNITY, "expected_close": 0}, 422, "expected_close"),
    (
        "POST",
        "/v1/opportunities",
        {**OPPORTUNITY, "expected_close": "2026-12-31T00:00:00Z"},
        422,
        "expected_close",
    ),
    (
        "POST",
        "/v1/opportunities",
        {k: v for k, v in OPPORTUNITY.items() if k != "owner"},
        422,
        "owner",
    ),
    ("POST", "/v1/opportunities", {**OPPORTUNITY, "stage": "dreaming"}, 422, "stage"),
    ("POST", "/v1/opportunities", {**OPPORTUNITY, "stage": "lost"}, 422, "stage"),
    ("POST", "/v1/opportunities/{opportunity}/stage", {"stage": "dreaming"}, 422, "stage"),
    ("POST", "/v1/opportunities/{opportunity}/stage", {"stage": "lost"}, 422, "reason"),
    ("POST", "/v1/opportunities/{opportunity}/stage", {"stage": "prospecting"}, 409, None),
    ("POST", f"/v1/opportunities/{UNKNOWN}/stage", {"stage": "won"}, 404, None),
    ("PATCH", "/v1/opportunities/{opportunity}", {"amount": None}, 422, "amount"),
    ("PATCH", "/v1/opportunities/{opportunity}", {"stage": "won"}, 422, "stage"),
    ("PATCH", "/v1/opportunities/{opportunity}", {"currency": "eur"}, 422, "currency"),
    ("PATCH", f"/v1/opportunities/{UNKNOWN}", {"title": "x"}, 404, None),
    ("DELETE", f"/v1/leads/{UNKNOWN}", None, 404, None),
    ("POST", "/v1/activities", {**ACTIVITY, "kind": "visit"}, 422, "kind"),
    ("POST", "/v1/activities", {**ACTIVITY, "channel": "pigeon"}, 422, "channel"),
    ("POST", "/v1/activities", {**ACTIVITY, "subject": "mail me: a@b.com"}, 422, "subject"),
    (
        "POST",
        "/v1/activities",
        {**ACTIVITY, "occurred_at": "2026-01-01T00:00:00"},
        422,
        "occurred_at",
    ),
    ("POST", "/v1/activities", {**ACTIVITY, "occurred_at": 0}, 422, "occurred_at"),
    # Its contact check counted a week back from year 1: a 500 (schemathesis' edge values).
    (
        "POST",
        "/v1/activities",
        {**ACTIVITY, "occurred_at": "0001-01-01T00:00:00Z"},
        422,
        "occurred_at",
    ),
    ("POST", "/v1/activities", {**ACTIVITY, "sentiment": "angry"}, 422, "sentiment"),
    ("POST", "/v1/activities", {**ACTIVITY, "opportunity_id": UNKNOWN}, 422, "opportunity_id"),
    (
        "POST",
        "/v1/activities",
        {**ACTIVITY, "opportunity_id": "{opportunity}"},
        422,
        "opportunity_id",
    ),
    ("POST", "/v1/activities:batch", {"items": []}, 422, "items"),
    ("POST", "/v1/activities:batch", {"items": [ACTIVITY] * 1001}, 422, "items"),
    (
        "POST",
        "/v1/activities:batch",
        {"items": [ACTIVITY, {**ACTIVITY, "kind": "x"}]},
        422,
        "items.1.kind",
    ),
    (
        "POST",
        "/v1/activities:batch",
        {"items": [ACTIVITY, {**ACTIVITY, "opportunity_id": UNKNOWN}]},
        422,
        "items.1.opportunity_id",
    ),
    ("POST", "/v1/orders", {**ORDER, "currency": "E"}, 422, "currency"),
    ("POST", "/v1/orders", {**ORDER, "ordered_at": NEXT_YEAR}, 422, "ordered_at"),
    ("POST", "/v1/activities", {**ACTIVITY, "occurred_at": NEXT_YEAR}, 422, "occurred_at"),
    ("POST", "/v1/orders", {**ORDER, "amount": "-5"}, 422, "amount"),
    ("POST", "/v1/orders", {**ORDER, "amount": "1000000000000"}, 422, "amount"),
    # The lines' total overflowed the order's own column on PostgreSQL: a 500.
    (
        "POST",
        "/v1/orders",
        {
            "customer_id": ORDER["customer_id"],
            "currency": "EUR",
            "lines": [{"sku": "a", "quantity": 1000, "unit_price": "999999999999.99"}],
        },
        422,
        "lines",
    ),
    ("POST", "/v1/orders", {"customer_id": ORDER["customer_id"], "currency": "EUR"}, 422, None),
    # An amount that is not its lines' total was taken, and counted as revenue.
    (
        "POST",
        "/v1/orders",
        {**ORDER, "amount": "11", "lines": [{"sku": "A", "quantity": 2, "unit_price": "5"}]},
        422,
        "amount",
    ),
    (
        "POST",
        "/v1/orders",
        {**ORDER, "lines": [{"sku": "A", "quantity": 0, "unit_price": "1"}]},
        422,
        "lines.0.quantity",
    ),
    (
        "POST",
        "/v1/orders",
        {**ORDER, "lines": [{"sku": "A", "quantity": True, "unit_price": "1"}]},
        422,
        "lines.0.quantity",
    ),
    ("POST", "/v1/orders/{order}/refunded", {}, 409, None),
    ("POST", "/v1/orders/{order}/paid", {"at": "yesterday"}, 422, "at"),
    ("POST", f"/v1/orders/{UNKNOWN}/paid", {}, 404, None),
    ("POST", "/v1/interactions", {**TOUCH, "direction": "sideways"}, 422, "direction"),
    ("POST", "/v1/interactions", {**TOUCH, "subject": "call +49 30 1234567"}, 422, "subject"),
    ("POST", "/v1/interactions:batch", {"items": []}, 422, "items"),
    ("POST", "/v1/interactions:batch", {"items": [TOUCH] * 1001}, 422, "items"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), CASES)
async def test_rejected_and_nothing_written(client, setup, method, path, body, status, field):
    if body and body.get("opportunity_id") == "{opportunity}":
        body = {**body, "opportunity_id": setup["opportunity"]}  # another customer's deal
    before = await everything(client)
    response = await client.request(method, path.format(**setup), json=body)
    assert_error(response, status, field)
    assert await everything(client) == before


async def test_malformed_json(client, setup):
    before = await everything(client)
    response = await client.post(
        "/v1/leads", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "body")
    assert await everything(client) == before


async def test_erased_customers_take_no_new_records(client, setup):
    erased = str(uuid.uuid4())
    await apply(client, CONTACT_ERASED, {"contact_id": erased, "erased_at": "2026-01-01T00:00:00Z"})
    before = await everything(client)
    for path, body in [
        ("/v1/opportunities", {**OPPORTUNITY, "customer_id": erased}),
        ("/v1/activities", {**ACTIVITY, "customer_id": erased}),
        ("/v1/orders", {**ORDER, "customer_id": erased}),
        ("/v1/leads", {**LEAD, "customer_id": erased}),
    ]:
        assert_error(await client.post(path, json=body), 409, "customer_id")
    for path, item in [("/v1/activities:batch", ACTIVITY), ("/v1/interactions:batch", TOUCH)]:
        items = [item, {**item, "customer_id": erased}]
        assert_error(await client.post(path, json={"items": items}), 409, "items.1.customer_id")
    assert await everything(client) == before


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/leads", {"limit": 0}, "limit"),
        ("/v1/leads", {"limit": 1001}, "limit"),
        ("/v1/leads", {"status": "hot"}, "status"),
        ("/v1/leads", {"cursor": "garbage"}, "cursor"),
        ("/v1/leads", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/orders", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/activities", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/leads", {"min_score": 101}, "min_score"),
        ("/v1/opportunities", {"stage": "dreaming"}, "stage"),
        ("/v1/opportunities", {"cursor": "garbage"}, "cursor"),
        ("/v1/opportunities", {"cursor": NAIVE_CURSOR}, "cursor"),
        ("/v1/forecast", {}, "period"),
        ("/v1/forecast", {"period": "2026-13"}, "period"),
        ("/v1/forecast", {"period": "9999-Q4"}, "period"),  # was a 500: no day after its end
        ("/v1/forecast", {"period": "0001-01"}, "period"),
        ("/v1/forecast", {"period": "2026-Q1", "currency": "eur"}, "currency"),
        ("/v1/pipeline", {"currency": "EURO"}, "currency"),
        ("/v1/orders", {"status": "shipped"}, "status"),
        ("/v1/activities", {"customer_id": "x"}, "customer_id"),
        ("/v1/customers/key", {"sort": "name"}, "sort"),
        ("/v1/customers/key", {"min_churn_risk": 2}, "min_churn_risk"),
        ("/v1/customers/key", {"cursor": "garbage"}, "cursor"),
        ("/v1/customers/key", {"cursor": encode_cursor("sNaN", UNKNOWN)}, "cursor"),
        ("/v1/customers/key", {"cursor": encode_cursor("NaN", UNKNOWN)}, "cursor"),
        ("/v1/customers/key", {"min_clv": "1e400"}, "min_clv"),  # was a 500 on PostgreSQL
        ("/v1/customers/key", {"min_clv": "0.001"}, "min_clv"),
        # Amounts no clv holds: PostgreSQL failed on them (a 500).
        ("/v1/customers/key", {"cursor": encode_cursor("1e-999999", UNKNOWN)}, "cursor"),
        ("/v1/customers/key", {"cursor": encode_cursor("1E+16", UNKNOWN)}, "cursor"),
        ("/v1/customers/key", {"cursor": encode_cursor("0.001", UNKNOWN)}, "cursor"),
        (
            "/v1/customers/key",
            {"sort": "churn_risk", "cursor": encode_cursor("inf", UNKNOWN)},
            "cursor",
        ),
        ("/v1/customers/not-an-id", {}, "customer_id"),
        ("/v1/customers/{customer}/timeline", {"limit": 1001}, "limit"),
        ("/v1/customers/{customer}/timeline", {"cursor": NAIVE_CURSOR}, "cursor"),
        (
            "/v1/customers/{customer}/timeline",
            {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            "since",
        ),  # reversed window
        ("/v1/customers/{customer}/contact-check", {}, "channel"),
        (
            "/v1/customers/{customer}/contact-check",
            {"channel": "email", "at": "0001-01-01T00:00:00Z"},
            "at",
        ),  # a week back from it was a 500
    ],
)
async def test_bad_queries(client, path, params, field):
    response = await client.get(path.format(customer=uuid.uuid4()), params=params)
    assert_error(response, 422, field)


async def test_an_erased_customers_records_take_no_free_text(client, setup):
    # Before, a rep could write a title or a reason back on an erased customer's deal or lead
    # (and the reason went on crm.sales.v1): what the erasure had blanked.
    customer = str(uuid.uuid4())
    lead = await new_lead(client, customer_id=customer)
    deal = await new_opportunity(client, customer_id=customer)
    await apply(
        client, CONTACT_ERASED, {"contact_id": customer, "erased_at": "2026-01-01T00:00:00Z"}
    )
    before = await everything(client)
    stage = f"/v1/opportunities/{deal['id']}/stage"
    for method, path, body, field in [
        ("PATCH", f"/v1/opportunities/{deal['id']}", {"title": "Bob Smith's renewal"}, "title"),
        ("PATCH", f"/v1/opportunities/{deal['id']}", {"title": "x", "amount": "5"}, "title"),
        ("POST", stage, {"stage": "lost", "reason": "Bob Smith moved to Oslo"}, "reason"),
        ("POST", stage, {"stage": "won", "reason": "Bob Smith said yes"}, "reason"),
        ("POST", stage, {"stage": "proposal", "reason": "Bob Smith asked"}, "reason"),
        ("POST", f"/v1/leads/{lead['id']}/disqualify", {"reason": "Bob Smith moved"}, "reason"),
    ]:
        response = await client.request(method, path, json=body)
        assert_error(response, 409, field)
        assert customer in response.json()["error"]["message"]
    assert await everything(client) == before
