"""Support's own scopes let requests through, and another department's token writes nothing;
health and metrics stay open. Every route's token and scope checks are in
tests/test_every_route.py."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.support.app import create_app
from services.support.config import SupportSettings
from services.support.tests.helpers import outbox
from shared.testing import auth_headers, running

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
