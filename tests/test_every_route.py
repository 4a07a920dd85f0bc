"""Every route of the five APIs needs a bearer token with its own department's scope: read for
reading, write for writing; a method a path does not take is a 405 listing those it does; and
a body over the size limit is a 413 before anything else.
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
    create_app: Callable[..., FastAPI]  # (auth, **settings)
    # Guards against reading no routes at all, which would make every test below pass.
    min_routes: int
    # POSTs that compute an answer without writing: they take the read scope.
    read_posts: frozenset[tuple[str, str]] = field(default_factory=frozenset)


SERVICES = [
    Service("contacts", lambda auth, **kw: create_contacts(ContactsSettings(auth=auth, **kw)), 12),
    Service("sales", lambda auth, **kw: create_sales(SalesSettings(auth=auth, **kw)), 28),
    Service(
        "marketing",
        lambda auth, **kw: create_marketing(MarketingSettings(auth=auth, **kw)),
        21,
        frozenset({("POST", "/v1/segments:preview")}),
    ),
    Service("support", lambda auth, **kw: create_support(SupportSettings(auth=auth, **kw)), 18),
    Service(
        "analytics", lambda auth, **kw: create_analytics(AnalyticsSettings(auth=auth, **kw)), 8
    ),
]


def app(service: Service, **settings: object) -> FastAPI:
    return service.create_app(AuthSettings(secret=TEST_JWT_SECRET), **settings)


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


SMALL_LIMIT = 1024


def too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert (error["code"], error["fields"][0]["field"]) == ("too_large", "body")
    assert str(SMALL_LIMIT) in error["message"]


@pytest.mark.parametrize(("service", "method", "path"), WRITES)
async def test_a_body_over_the_limit_is_refused_unread(service, method, path):
    transport = httpx.ASGITransport(app=app(service, max_request_bytes=SMALL_LIMIT))
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        # No token either: such a body is refused before anything else.
        too_large(await http.request(method, path, content=b"x" * (SMALL_LIMIT + 1)))


@pytest.mark.parametrize("service", SERVICES[:4], ids=[s.name for s in SERVICES[:4]])
async def test_a_body_without_a_length_is_cut_off_at_the_limit(service):
    async def chunks():  # sent chunked, with no Content-Length to judge it by
        for _ in range(8):
            yield b" " * (SMALL_LIMIT // 2)

    transport = httpx.ASGITransport(app=app(service, max_request_bytes=SMALL_LIMIT))
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        response = await http.post(
            "/v1/interactions:batch" if service.name != "contacts" else "/v1/contacts/import",
            content=chunks(),
            headers={"content-type": "application/json", **auth_headers()},
        )
    too_large(response)
