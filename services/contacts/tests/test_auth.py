"""Which tokens contacts accepts, and that a refused one writes nothing; health and metrics stay
open. Every route's token and scope checks are in tests/test_every_route.py."""

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.contacts.app import create_app
from services.contacts.config import ContactsSettings
from shared.auth import mint_token
from shared.db import create_engine
from shared.events import utcnow
from shared.settings import AuthSettings
from shared.testing import TEST_JWT_SECRET, app_of, auth_headers, running

SOME_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def anon(contacts_settings: ContactsSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client to the running app that sends no token unless a test gives one."""
    async with running(create_app(contacts_settings), authenticated=False) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(**overrides: object) -> dict[str, object]:
    now = utcnow()
    return {
        "sub": "tester",
        "scope": "contacts:read contacts:write",
        "iss": "crm-platform",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        **overrides,
    }


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def contact_count(client: httpx.AsyncClient) -> int:
    response = await client.get("/v1/contacts", headers=auth_headers("contacts:read"))
    return len(response.json()["items"])


class TestMissingOrBadToken:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({"Authorization": "Bearer not-a-jwt"}, id="malformed"),
            pytest.param({"Authorization": "Bearer "}, id="empty"),
            pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
            pytest.param(
                {"Authorization": auth_headers()["Authorization"].split()[1]}, id="no-scheme"
            ),
            pytest.param(
                bearer(mint_token(AuthSettings(secret="another-secret-" + "x" * 32))),
                id="wrong-signature",
            ),
            pytest.param(
                bearer(mint_token(AuthSettings(secret=TEST_JWT_SECRET), ttl=timedelta(minutes=-1))),
                id="expired",
            ),
            pytest.param(
                bearer(jwt.encode(claims(iss="someone-else"), TEST_JWT_SECRET)), id="wrong-issuer"
            ),
            pytest.param(
                bearer(
                    jwt.encode({k: v for k, v in claims().items() if k != "exp"}, TEST_JWT_SECRET)
                ),
                id="no-expiry",
            ),
            pytest.param(bearer(jwt.encode(claims(), None, algorithm="none")), id="unsigned"),
            pytest.param(
                bearer(jwt.encode(claims(scope=["contacts:read"]), TEST_JWT_SECRET)),
                id="scope-not-a-string",
            ),
        ],
    )
    async def test_a_bad_token_is_401_and_writes_nothing(self, anon, headers):
        assert_unauthorized(await anon.get("/v1/contacts", headers=headers))
        assert_unauthorized(
            await anon.post("/v1/contacts", json={"first_name": "Anna"}, headers=headers)
        )
        assert await contact_count(anon) == 0

    async def test_a_valid_token_is_accepted(self, anon):
        token = jwt.encode(claims(), TEST_JWT_SECRET)
        response = await anon.post(
            "/v1/contacts", json={"first_name": "Anna"}, headers=bearer(token)
        )
        assert response.status_code == 201, response.text


class TestScopes:
    async def test_read_scope_reads_but_cannot_write(self, anon, client):
        contact = (await client.post("/v1/contacts", json={"first_name": "Anna"})).json()
        path = f"/v1/contacts/{contact['id']}"
        reader = auth_headers("contacts:read")
        assert (await anon.get("/v1/contacts", headers=reader)).status_code == 200
        assert (await anon.get(path, headers=reader)).json()["first_name"] == "Anna"
        for method, target, body in [
            ("POST", "/v1/contacts", {"first_name": "Bob"}),
            ("PATCH", path, {"first_name": "Bob"}),
            ("DELETE", path, None),
            ("PUT", "/v1/contact-policy", {"max_outbound_per_week": 1}),
        ]:
            response = await anon.request(method, target, json=body, headers=reader)
            assert response.status_code == 403, (method, target, response.text)
            assert response.json()["error"]["code"] == "forbidden"
            assert "contacts:write" in response.json()["error"]["message"]
        assert [c["first_name"] for c in (await client.get("/v1/contacts")).json()["items"]] == [
            "Anna"
        ]
        assert (await client.get("/v1/contact-policy")).json()["max_outbound_per_week"] == 5

    @pytest.mark.parametrize("scopes", [("sales:write",), ("sales:read", "support:write")])
    async def test_other_departments_scopes_are_403(self, anon, scopes):
        headers = auth_headers(*scopes)
        assert (await anon.get("/v1/contacts", headers=headers)).status_code == 403
        response = await anon.post("/v1/contacts", json={"first_name": "Anna"}, headers=headers)
        assert response.status_code == 403
        assert await contact_count(anon) == 0


class TestOperations:
    @pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
    async def test_open_without_a_token(self, anon, path):
        assert (await anon.get(path)).status_code == 200

    async def test_readyz_reports_database_and_broker(self, anon):
        assert (await anon.get("/readyz")).json() == {
            "ready": True,
            "checks": {"database": "ok", "broker": "ok"},
        }

    async def test_readyz_names_no_host_or_user_of_a_database_it_cannot_reach(self, anon):
        # Open to anyone: the reason is the kind of failure, the detail goes to the log.
        app = app_of(anon)
        working = app.state.engine
        app.state.engine = create_engine("postgresql+asyncpg://crm_owner@127.0.0.1:1/crm")
        try:
            response = await anon.get("/readyz")
        finally:
            await app.state.engine.dispose()
            app.state.engine = working
        assert response.status_code == 503
        database = response.json()["checks"]["database"]
        assert database.startswith("unavailable: ")
        assert "crm_owner" not in database and "127.0.0.1" not in database

    async def test_metrics_count_requests_by_route_template(self, anon):
        def served() -> float:
            return sum(
                sample.value
                for family in text_string_to_metric_families(metrics_text)
                if family.name == "crm_http_request_duration_seconds"
                for sample in family.samples
                if sample.name.endswith("_count")
                and sample.labels
                == {
                    "service": "contacts",
                    "method": "GET",
                    "route": "/v1/contacts/{contact_id}",
                    "status": "401",
                }
            )

        metrics_text = (await anon.get("/metrics")).text
        assert "crm_http_request_duration_seconds" in metrics_text
        before = served()
        await anon.get(f"/v1/contacts/{SOME_ID}")
        metrics_text = (await anon.get("/metrics")).text
        assert served() == before + 1
