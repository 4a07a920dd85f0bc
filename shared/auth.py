"""Bearer-token auth: HS256 JWTs whose ``scope`` claim lists ``<service>:read|write`` scopes."""

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
) -> str:
    now = utcnow()
    claims = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iss": settings.issuer,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, settings.secret.get_secret_value(), algorithm=settings.algorithm)


@functools.lru_cache(maxsize=4096)
def _verified_claims(token: str, secret: str, algorithm: str, issuer: str) -> dict[str, Any]:
    """Signature check once per token (a client sends the same token on every request)."""
    return jwt.decode(
        token, secret, algorithms=[algorithm], issuer=issuer, options={"require": ["exp", "sub"]}
    )


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
        claims = _verified_claims(
            credentials.credentials,
            settings.secret.get_secret_value(),
            settings.algorithm,
            settings.issuer,
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
