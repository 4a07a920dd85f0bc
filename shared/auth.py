"""Bearer-token auth: JWTs whose ``scope`` claim lists ``<service>:read|write`` scopes, verified
with the shared secret (HS256) or a public key (a PEM, or an identity provider's JWKS URL)."""

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.events import utcnow
from shared.settings import AuthSettings

SERVICES = ("contacts", "sales", "marketing", "support", "analytics")
ALL_SCOPES = tuple(f"{service}:{action}" for service in SERVICES for action in ("read", "write"))

_bearer = HTTPBearer(auto_error=False)


def mint_token(
    settings: AuthSettings,
    *,
    subject: str = "dev",
    scopes: Iterable[str] = ALL_SCOPES,
    ttl: timedelta = timedelta(hours=12),
    private_key: str | None = None,
    key_id: str | None = None,
) -> str:
    """A token for local use: signed with the shared secret, or ``private_key`` (PEM) for the
    public-key algorithms."""
    now = utcnow()
    claims = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iss": settings.issuer,
        "iat": now,
        "exp": now + ttl,
    }
    if settings.audience:
        claims["aud"] = settings.audience
    if private_key is None:
        if settings.secret is None:
            raise ValueError(f"{settings.algorithm} tokens need a private key")
        private_key = settings.secret.get_secret_value()
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(claims, private_key, algorithm=settings.algorithm, headers=headers)


@functools.lru_cache(maxsize=4096)
def _verified_claims(
    token: str, key: Any, algorithm: str, issuer: str, audience: str | None
) -> dict[str, Any]:
    """Signature check once per token (a client sends the same token on every request)."""
    required = ["exp", "sub", "aud"] if audience else ["exp", "sub"]
    return jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        issuer=issuer,
        audience=audience,
        options={"require": required},
    )


@functools.lru_cache(maxsize=8)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    # PyJWKClient caches the key set (5 minutes) and each key by its kid.
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)


async def _verification_key(settings: AuthSettings, token: str) -> Any:
    if settings.jwks_url:
        # A blocking HTTP fetch when the key is not cached yet: keep it off the event loop.
        client = _jwks_client(settings.jwks_url)
        return await asyncio.to_thread(client.get_signing_key_from_jwt, token)  # a PyJWK
    if settings.public_key:
        return settings.public_key
    assert settings.secret is not None  # AuthSettings validates this
    return settings.secret.get_secret_value()


class Principal:
    def __init__(self, subject: str, scopes: frozenset[str]) -> None:
        self.subject = subject
        self.scopes = scopes


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=reason, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("a bearer token is required")
    settings: AuthSettings = request.app.state.settings.auth
    try:
        key = await _verification_key(settings, credentials.credentials)
        claims = _verified_claims(
            credentials.credentials,
            key,
            settings.algorithm,
            settings.issuer,
            settings.audience or None,  # an empty variable: none
        )
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    if claims["exp"] <= time.time():  # a cached token may have expired since
        raise _unauthorized("invalid token: Signature has expired")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise _unauthorized("invalid token: scope must be a space-separated string")
    return Principal(subject=str(claims["sub"]), scopes=frozenset(scope.split()))


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the request through only with ``scope`` in the token.

    Async on purpose: FastAPI runs sync dependencies in a thread pool, a hand-off per request.
    """

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if scope not in principal.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"missing scope {scope}")
        return principal

    return check
