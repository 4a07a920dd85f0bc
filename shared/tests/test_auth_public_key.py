"""Tokens verified by a public key instead of the shared secret: a PEM in the settings, or an
identity provider's JWKS URL (served here by a real local HTTP server)."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from jwt.algorithms import RSAAlgorithm
from pydantic import ValidationError

from shared.auth import Principal, mint_token, require_scope
from shared.settings import AuthSettings


def rsa_pair() -> tuple[str, str, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, pem, public


PRIVATE, PUBLIC_PEM, PUBLIC = rsa_pair()
OTHER_PRIVATE, _, _ = rsa_pair()


def app_with(settings: AuthSettings) -> httpx.AsyncClient:
    app = FastAPI()

    class State:
        auth = settings

    app.state.settings = State()

    @app.get("/")
    async def whoami(
        principal: Annotated[Principal, Depends(require_scope("sales:read"))],
    ) -> str:
        return principal.subject

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def jwks_url() -> Iterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(PUBLIC))
    body = json.dumps({"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()


class TestPublicKeyPem:
    SETTINGS = AuthSettings(algorithm="RS256", public_key=PUBLIC_PEM)

    async def test_token_signed_by_the_private_key_passes(self):
        token = mint_token(self.SETTINGS, subject="idp-user", private_key=PRIVATE)
        async with app_with(self.SETTINGS) as client:
            response = await client.get("/", headers=bearer(token))
        assert response.status_code == 200 and response.json() == "idp-user"

    async def test_token_signed_by_another_key_is_401(self):
        token = mint_token(self.SETTINGS, private_key=OTHER_PRIVATE)
        async with app_with(self.SETTINGS) as client:
            response = await client.get("/", headers=bearer(token))
        assert response.status_code == 401

    async def test_a_shared_secret_token_is_refused(self):
        """No algorithm confusion: an HS256 token never passes an RS256 service."""
        hs = AuthSettings(secret="a-test-secret-that-is-long-enough-for-hs256")
        async with app_with(self.SETTINGS) as client:
            response = await client.get("/", headers=bearer(mint_token(hs)))
        assert response.status_code == 401


class TestJwks:
    async def test_key_is_found_by_kid(self, jwks_url):
        settings = AuthSettings(algorithm="RS256", jwks_url=jwks_url)
        token = mint_token(settings, subject="sso", private_key=PRIVATE, key_id="key-1")
        async with app_with(settings) as client:
            response = await client.get("/", headers=bearer(token))
        assert response.status_code == 200 and response.json() == "sso"

    async def test_unknown_kid_or_wrong_key_is_401(self, jwks_url):
        settings = AuthSettings(algorithm="RS256", jwks_url=jwks_url)
        async with app_with(settings) as client:
            unknown = mint_token(settings, private_key=PRIVATE, key_id="key-2")
            forged = mint_token(settings, private_key=OTHER_PRIVATE, key_id="key-1")
            assert (await client.get("/", headers=bearer(unknown))).status_code == 401
            assert (await client.get("/", headers=bearer(forged))).status_code == 401

    async def test_scopes_still_apply(self, jwks_url):
        settings = AuthSettings(algorithm="RS256", jwks_url=jwks_url)
        token = mint_token(settings, scopes=["support:read"], private_key=PRIVATE, key_id="key-1")
        async with app_with(settings) as client:
            assert (await client.get("/", headers=bearer(token))).status_code == 403


class TestAudience:
    """An identity provider's access tokens name the API they are for (``aud``): a platform
    with CRM_JWT_AUDIENCE takes only those meant for it."""

    SETTINGS = AuthSettings(algorithm="RS256", public_key=PUBLIC_PEM, audience="crm-api")

    @staticmethod
    def token(**claims: object) -> str:
        now = int(time.time())
        base = {"sub": "sso", "scope": "sales:read", "iss": "crm-platform", "exp": now + 60}
        return jwt.encode({**base, **claims}, PRIVATE, algorithm="RS256")

    async def test_a_token_for_this_audience_passes(self):
        async with app_with(self.SETTINGS) as client:
            for aud in ("crm-api", ["other-api", "crm-api"]):
                response = await client.get("/", headers=bearer(self.token(aud=aud)))
                assert response.status_code == 200, (aud, response.text)

    async def test_a_token_for_another_audience_or_none_is_401(self):
        async with app_with(self.SETTINGS) as client:
            for token in (self.token(aud="billing-api"), self.token()):
                assert (await client.get("/", headers=bearer(token))).status_code == 401

    async def test_without_an_audience_a_token_naming_one_is_401(self):
        settings = AuthSettings(algorithm="RS256", public_key=PUBLIC_PEM)
        async with app_with(settings) as client:
            response = await client.get("/", headers=bearer(self.token(aud="billing-api")))
        assert response.status_code == 401

    def test_dev_tokens_carry_the_audience(self):
        settings = AuthSettings(secret="a-test-secret-that-is-long-enough-for-hs256", audience="a")
        claims = jwt.decode(
            mint_token(settings),
            "a-test-secret-that-is-long-enough-for-hs256",
            algorithms=["HS256"],
            audience="a",
        )
        assert claims["aud"] == "a"


class TestSettings:
    def test_public_key_algorithm_needs_a_key(self):
        with pytest.raises(ValidationError, match="CRM_JWT_PUBLIC_KEY or CRM_JWT_JWKS_URL"):
            AuthSettings(algorithm="RS256")

    def test_secret_algorithm_needs_the_secret(self, monkeypatch):
        monkeypatch.delenv("CRM_JWT_SECRET", raising=False)
        with pytest.raises(ValidationError, match="CRM_JWT_SECRET is required"):
            AuthSettings()

    @pytest.mark.parametrize(
        ("algorithm", "secret"),
        [
            ("HS256", "changeme"),
            ("HS256", "x" * 31),
            ("HS384", "x" * 47),
            ("HS512", "x" * 63),
        ],
    )
    def test_a_secret_shorter_than_the_hash_is_refused(self, algorithm, secret):
        """A short secret can be guessed offline from any one token, and then every token,
        with every scope, forged: RFC 7518 3.2 asks for at least the hash's size."""
        with pytest.raises(ValidationError, match="CRM_JWT_SECRET must be at least"):
            AuthSettings(algorithm=algorithm, secret=secret)

    @pytest.mark.parametrize(("algorithm", "length"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
    def test_a_secret_of_the_hash_size_is_taken(self, algorithm, length):
        settings = AuthSettings(algorithm=algorithm, secret="é" * (length // 2))  # 2 bytes each
        assert settings.secret is not None
