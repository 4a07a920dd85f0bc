"""Every route of the five APIs needs a bearer token with its own department's scope: read for
reading, write for writing; and a method a path does not take is a 405 listing those it does.
The routes are read from each app's OpenAPI document, so a new route is checked without being
listed. The apps run without their lifespan (no database, no broker): the token is judged
before a request reaches either."""

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from services.analytics.app import create_app as create_analytics
from services.analytics.config import AnalyticsSettings
from services.contacts.app import create_app as create_contacts
from services.contacts.config import ContactsSettings
from services.marketing.app import create_app as create_marketing
from services.marketing.config import MarketingSettings
from services.sales.app import create_app as create_sales
from services.sales.config import SalesSettings
from services.support.app import create_app as create_support
from services.support.config import SupportSettings
from shared.settings import AuthSettings
from shared.testing import TEST_JWT_SECRET, api_paths, api_routes, auth_headers

SOME_ID = "00000000-0000-4000-8000-000000000000"
DEPARTMENTS = ("contacts", "sales", "marketing", "support", "analytics")


@dataclass(frozen=True)
class Service:
    name: str
    create_app: Callable[[AuthSettings], FastAPI]
    # Guards against reading no routes at all, which would make every test below pass.
    min_routes: int
    # POSTs that compute an answer without writing: they take the read scope.
    read_posts: frozenset[tuple[str, str]] = field(default_factory=frozenset)


SERVICES = [
    Service("contacts", lambda auth: create_contacts(ContactsSettings(auth=auth)), 12),
    Service("sales", lambda auth: create_sales(SalesSettings(auth=auth)), 28),
    Service(
        "marketing",
        lambda auth: create_marketing(MarketingSettings(auth=auth)),
        21,
        frozenset({("POST", "/v1/segments:preview")}),
    ),
    Service("support", lambda auth: create_support(SupportSettings(auth=auth)), 18),
    Service("analytics", lambda auth: create_analytics(AnalyticsSettings(auth=auth)), 8),
]


def app(service: Service) -> FastAPI:
    return service.create_app(AuthSettings(secret=TEST_JWT_SECRET))


def routes(service: Service) -> list[tuple[str, str]]:
    found = api_routes(app(service), SOME_ID)
    assert len(found) >= service.min_routes, (service.name, found)
    return found


def cases(keep: Callable[[Service, str, str], bool]) -> list[pytest.param]:
    return [
        pytest.param(service, method, path, id=f"{service.name}-{method}-{path}")
        for service in SERVICES
        for method, path in routes(service)
        if keep(service, method, path)
    ]


def reads(service: Service, method: str, path: str) -> bool:
    return method == "GET" or (method, path) in service.read_posts


EVERY_ROUTE = cases(lambda service, method, path: True)
READS = cases(reads)
WRITES = cases(lambda service, method, path: not reads(service, method, path))


async def ask(service: Service, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        return await http.request(method, path, json={}, **kwargs)


def assert_forbidden(response: httpx.Response, missing_scope: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert missing_scope in error["message"]


@pytest.mark.parametrize(("service", "method", "path"), EVERY_ROUTE)
async def test_every_route_needs_a_token(service, method, path):
    response = await ask(service, method, path)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("service", "method", "path"), EVERY_ROUTE)
async def test_every_other_departments_scopes_are_403(service, method, path):
    others = [d for d in DEPARTMENTS if d != service.name]
    scopes = [f"{d}:{access}" for d in others for access in ("read", "write")]
    response = await ask(service, method, path, headers=auth_headers(*scopes))
    assert_forbidden(response, f"{service.name}:")


@pytest.mark.parametrize(("service", "method", "path"), WRITES)
async def test_the_read_scope_cannot_write(service, method, path):
    headers = auth_headers(f"{service.name}:read")
    response = await ask(service, method, path, headers=headers)
    assert_forbidden(response, f"{service.name}:write")


@pytest.mark.parametrize(("service", "method", "path"), READS)
async def test_the_write_scope_alone_cannot_read(service, method, path):
    headers = auth_headers(f"{service.name}:write")
    response = await ask(service, method, path, headers=headers)
    assert_forbidden(response, f"{service.name}:read")


@pytest.mark.parametrize("service", SERVICES, ids=[service.name for service in SERVICES])
async def test_a_405_names_every_method_of_the_resource(service):
    # RFC 9110: a 405's Allow lists the resource's methods, not those of one of its routes.
    for path, documented in api_paths(app(service), SOME_ID).items():
        probe = next(m for m in ("PUT", "DELETE", "PATCH", "POST", "GET") if m not in documented)
        response = await ask(service, probe, path)
        assert response.status_code == 405, (probe, path)
        assert set(response.headers["allow"].split(", ")) == documented, (probe, path)
        assert response.json()["error"]["code"] == "method_not_allowed"
