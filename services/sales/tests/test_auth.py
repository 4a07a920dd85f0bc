"""Bearer tokens and scopes on every sales route; health and metrics stay open."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.sales.app import create_app
from services.sales.config import SalesSettings
from services.sales.tests.helpers import outbox
from shared.settings import AuthSettings
from shared.testing import TEST_JWT_SECRET, api_routes, auth_headers, running

SOME_ID = "00000000-0000-4000-8000-000000000000"
LEAD = {"name": "Ada", "email": "ada@example.com", "source": "web"}


@pytest.fixture
async def anon(sales_settings: SalesSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client to the running app that sends no token unless a test gives one."""
    async with running(create_app(sales_settings), authenticated=False) as http:
        yield http


def sales_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the sales API, read from the app itself."""
    routes = api_routes(
        create_app(SalesSettings(auth=AuthSettings(secret=TEST_JWT_SECRET))), SOME_ID
    )
    assert len(routes) >= 28
    return routes


WRITES = [r for r in sales_routes() if r[0] != "GET"]
READS = [r for r in sales_routes() if r[0] == "GET"]


@pytest.mark.parametrize(("method", "path"), sales_routes())
async def test_every_route_needs_a_token(anon, method, path):
    response = await anon.request(method, path, json={})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), sales_routes())
@pytest.mark.parametrize("scopes", [("contacts:read", "contacts:write"), ("support:write",)])
async def test_other_departments_scopes_are_403(anon, method, path, scopes):
    response = await anon.request(method, path, json={}, headers=auth_headers(*scopes))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_read_scope_cannot_write(anon, method, path):
    response = await anon.request(method, path, json={}, headers=auth_headers("sales:read"))
    assert response.status_code == 403
    assert "sales:write" in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path"), READS)
async def test_write_scope_alone_cannot_read(anon, method, path):
    response = await anon.request(method, path, headers=auth_headers("sales:write"))
    assert response.status_code == 403


async def test_scoped_tokens_work_and_forbidden_writes_write_nothing(anon):
    support_only = auth_headers("support:read", "support:write")
    assert (await anon.post("/v1/leads", json=LEAD, headers=support_only)).status_code == 403
    assert await outbox(anon) == []
    created = await anon.post("/v1/leads", json=LEAD, headers=auth_headers("sales:write"))
    assert created.status_code == 201
    reader = auth_headers("sales:read")
    read = await anon.get(f"/v1/leads/{created.json()['id']}", headers=reader)
    assert read.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operations_are_open(anon, path):
    assert (await anon.get(path)).status_code == 200
