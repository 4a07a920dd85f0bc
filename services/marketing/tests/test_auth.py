"""Bearer tokens and scopes on every marketing route; health, metrics and the recipients'
tracking links stay open (the tracking links are signed instead)."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.marketing.app import create_app
from services.marketing.config import MarketingSettings
from services.marketing.tests.helpers import outbox
from shared.settings import AuthSettings
from shared.testing import TEST_JWT_SECRET, api_routes, auth_headers, running

SOME_ID = "00000000-0000-4000-8000-000000000000"
SEGMENT = {"name": "Germany", "rules": {"field": "country", "op": "eq", "value": "DE"}}


@pytest.fixture
async def anon(marketing_settings: MarketingSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client to the running app that sends no token unless a test gives one."""
    async with running(create_app(marketing_settings), authenticated=False) as http:
        yield http


def marketing_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the marketing API, read from the app itself."""
    routes = api_routes(
        create_app(MarketingSettings(auth=AuthSettings(secret=TEST_JWT_SECRET))), SOME_ID
    )
    assert len(routes) >= 21
    return routes


# A preview computes a count without writing: a POST for its body, read scope.
READ_POSTS = {("POST", "/v1/segments:preview")}
WRITES = [r for r in marketing_routes() if r[0] != "GET" and r not in READ_POSTS]
READS = [r for r in marketing_routes() if r[0] == "GET" or r in READ_POSTS]


@pytest.mark.parametrize(("method", "path"), marketing_routes())
async def test_every_route_needs_a_token(anon, method, path):
    response = await anon.request(method, path, json={})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), marketing_routes())
@pytest.mark.parametrize("scopes", [("support:read", "support:write"), ("sales:write",)])
async def test_other_departments_scopes_are_403(anon, method, path, scopes):
    response = await anon.request(method, path, json={}, headers=auth_headers(*scopes))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_read_scope_cannot_write(anon, method, path):
    response = await anon.request(method, path, json={}, headers=auth_headers("marketing:read"))
    assert response.status_code == 403
    assert "marketing:write" in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path"), READS)
async def test_write_scope_alone_cannot_read(anon, method, path):
    response = await anon.request(method, path, json={}, headers=auth_headers("marketing:write"))
    assert response.status_code == 403


async def test_scoped_tokens_work_and_forbidden_writes_write_nothing(anon):
    support = auth_headers("support:read", "support:write")
    assert (await anon.post("/v1/segments", json=SEGMENT, headers=support)).status_code == 403
    assert await outbox(anon) == []
    created = await anon.post("/v1/segments", json=SEGMENT, headers=auth_headers("marketing:write"))
    assert created.status_code == 201
    read = await anon.get(
        f"/v1/segments/{created.json()['id']}", headers=auth_headers("marketing:read")
    )
    assert read.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operations_are_open(anon, path):
    assert (await anon.get(path)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/t/o/x.y"),
        ("GET", "/t/c/x.y?u=https://a.test"),
        ("GET", "/t/u/x.y"),
        ("POST", "/t/u/x.y"),
    ],
)
async def test_tracking_links_need_no_token_but_a_signature(anon, method, path):
    response = await anon.request(method, path)
    assert response.status_code == 404  # not 401: checked by signature
    assert response.json()["error"]["code"] == "not_found"
