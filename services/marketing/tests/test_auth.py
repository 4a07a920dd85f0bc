"""Marketing's own scopes let requests through, and another department's token writes nothing;
health, metrics and the recipients' tracking links stay open (the tracking links are signed
instead). Every route's token and scope checks are in tests/test_every_route.py."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.marketing.app import create_app
from services.marketing.config import MarketingSettings
from services.marketing.tests.helpers import outbox
from shared.testing import auth_headers, running

SEGMENT = {"name": "Germany", "rules": {"field": "country", "op": "eq", "value": "DE"}}


@pytest.fixture
async def anon(marketing_settings: MarketingSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client to the running app that sends no token unless a test gives one."""
    async with running(create_app(marketing_settings), authenticated=False) as http:
        yield http


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
