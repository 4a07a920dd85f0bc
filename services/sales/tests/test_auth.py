"""Sales' own scopes let requests through, and another department's token writes nothing;
health and metrics stay open. Every route's token and scope checks are in
tests/test_every_route.py."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.sales.app import create_app
from services.sales.config import SalesSettings
from services.sales.tests.helpers import outbox
from shared.testing import auth_headers, running

LEAD = {"name": "Ada", "email": "ada@example.com", "source": "web"}


@pytest.fixture
async def anon(sales_settings: SalesSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client to the running app that sends no token unless a test gives one."""
    async with running(create_app(sales_settings), authenticated=False) as http:
        yield http


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
