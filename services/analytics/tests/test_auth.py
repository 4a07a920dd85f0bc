"""Every analytics route needs a bearer token with analytics:read; health and metrics are open."""

import uuid

import pytest

from services.analytics.app import create_app
from shared.testing import auth_headers, running

ROUTES = [
    "/v1/kpis/support?from=2026-11-01&to=2026-11-30",
    "/v1/kpis/sales?from=2026-11-01&to=2026-11-30",
    "/v1/kpis/marketing?from=2026-11-01&to=2026-11-30",
    "/v1/kpis/usage?from=2026-11-01&to=2026-11-30",
    f"/v1/customers/{uuid.uuid4()}/360",
    f"/v1/customers/{uuid.uuid4()}/scores",
    "/v1/segments/rfm",
    "/v1/segments/rfm/new/customers",
    "/dashboard",
]


@pytest.fixture
async def anonymous(analytics_settings):
    async with running(create_app(analytics_settings), authenticated=False) as http:
        yield http


@pytest.mark.parametrize("path", ROUTES)
async def test_a_token_is_required(anonymous, path):
    response = await anonymous.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ROUTES)
async def test_the_read_scope_is_required(anonymous, path):
    response = await anonymous.get(path, headers=auth_headers("support:read", "analytics:write"))
    assert response.status_code == 403
    assert "analytics:read" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ROUTES)
async def test_the_read_scope_is_enough(anonymous, path):
    response = await anonymous.get(path, headers=auth_headers("analytics:read"))
    assert response.status_code == 200, response.text


async def test_a_bad_token_is_refused(anonymous):
    response = await anonymous.get(ROUTES[0], headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_operations_are_open(anonymous, path):
    assert (await anonymous.get(path)).status_code == 200
