"""analytics:read is enough for every analytics route, and the dashboard needs it too; health and
metrics are open. Every API route's token and scope checks are in
tests/test_every_route.py."""

import uuid

import pytest

from services.analytics.app import create_app
from services.analytics.config import AnalyticsSettings
from shared.settings import AuthSettings
from shared.testing import TEST_JWT_SECRET, api_paths, auth_headers, running

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


async def test_the_dashboard_needs_a_token_with_the_read_scope(anonymous):
    response = await anonymous.get("/dashboard")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    response = await anonymous.get(
        "/dashboard", headers=auth_headers("support:read", "analytics:write")
    )
    assert response.status_code == 403
    assert "analytics:read" in response.json()["error"]["message"]


def test_every_api_route_is_listed_here():
    app = create_app(AnalyticsSettings(auth=AuthSettings(secret=TEST_JWT_SECRET)))
    listed = {route.split("?")[0] for route in ROUTES if route.startswith("/v1/")}
    assert len(listed) == len(api_paths(app, "some-id"))


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
