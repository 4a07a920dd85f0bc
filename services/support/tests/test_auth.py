"""Bearer tokens and scopes on every support route; health and metrics stay open."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.support.app import create_app
from services.support.config import SupportSettings
from services.support.tests.helpers import outbox
from shared.settings import AuthSettings
from shared.testing import TEST_JWT_SECRET, api_routes, auth_headers, running

SOME_ID = "00000000-0000-4000-8000-000000000000"
TICKET = {
    "customer_id": SOME_ID,
    "subject": "Broken",
    "description": "It is broken.",
    "channel": "email",
}


@pytest.fixture
async def anon(support_settings: SupportSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client to the running app that sends no token unless a test gives one."""
    async with running(create_app(support_settings), authenticated=False) as http:
        yield http


def support_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the support API, read from the app itself."""
    routes = api_routes(
        create_app(SupportSettings(auth=AuthSettings(secret=TEST_JWT_SECRET))), SOME_ID
    )
    assert len(routes) >= 18
    return routes


WRITES = [r for r in support_routes() if r[0] != "GET"]
READS = [r for r in support_routes() if r[0] == "GET"]


@pytest.mark.parametrize(("method", "path"), support_routes())
async def test_every_route_needs_a_token(anon, method, path):
    response = await anon.request(method, path, json={})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), support_routes())
@pytest.mark.parametrize("scopes", [("contacts:read", "contacts:write"), ("sales:write",)])
async def test_other_departments_scopes_are_403(anon, method, path, scopes):
    response = await anon.request(method, path, json={}, headers=auth_headers(*scopes))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_read_scope_cannot_write(anon, method, path):
    response = await anon.request(method, path, json={}, headers=auth_headers("support:read"))
    assert response.status_code == 403
    assert "support:write" in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path"), READS)
async def test_write_scope_alone_cannot_read(anon, method, path):
    response = await anon.request(method, path, headers=auth_headers("support:write"))
    assert response.status_code == 403


async def test_scoped_tokens_work_and_forbidden_writes_write_nothing(anon):
    contacts_only = auth_headers("contacts:read", "contacts:write")
    assert (await anon.post("/v1/tickets", json=TICKET, headers=contacts_only)).status_code == 403
    assert await outbox(anon) == []
    writer = auth_headers("support:write")
    created = await anon.post("/v1/tickets", json=TICKET, headers=writer)
    assert created.status_code == 201
    reader = auth_headers("support:read")
    read = await anon.get(f"/v1/tickets/{created.json()['id']}", headers=reader)
    assert read.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operations_are_open(anon, path):
    assert (await anon.get(path)).status_code == 200
