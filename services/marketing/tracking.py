"""Signed tracking links: open pixel, click redirect, one-click unsubscribe. Plain Python.

A token is ``<send id hex>.<signature>``; the signature (HMAC-SHA256, truncated to 128 bits)
covers the link kind, the send id and, for a click, the target URL, so a token cannot be
reused for another send, another kind or another destination.
"""

import base64
import hashlib
import hmac
import uuid
from enum import StrEnum
from urllib.parse import quote


class LinkKind(StrEnum):
    open = "o"
    click = "c"
    unsubscribe = "u"


class BadToken(ValueError):
    """The link was not made by this service (tampered, truncated or for something else)."""


def _signature(secret: str, kind: LinkKind, send_id: uuid.UUID, url: str) -> str:
    message = f"{kind.value}:{send_id.hex}:{url}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: str, kind: LinkKind, send_id: uuid.UUID, url: str = "") -> str:
    return f"{send_id.hex}.{_signature(secret, kind, send_id, url)}"


def verify(secret: str, kind: LinkKind, token: str, url: str = "") -> uuid.UUID:
    """The send id of a genuine token; BadToken otherwise."""
    raw_id, _, signature = token.partition(".")
    try:
        send_id = uuid.UUID(hex=raw_id)
    except ValueError as exc:
        raise BadToken("malformed tracking token") from exc
    # As bytes: compare_digest raises on a str that is not ASCII (a 500 for a forged link).
    expected = _signature(secret, kind, send_id, url)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise BadToken("tracking token signature does not match")
    return send_id


class Links:
    """The public links of one send."""

    def __init__(self, secret: str, base_url: str, send_id: uuid.UUID) -> None:
        self.secret = secret
        self.base = base_url.rstrip("/")
        self.send_id = send_id

    @property
    def open_pixel(self) -> str:
        return f"{self.base}/t/o/{sign(self.secret, LinkKind.open, self.send_id)}"

    @property
    def unsubscribe(self) -> str:
        return f"{self.base}/t/u/{sign(self.secret, LinkKind.unsubscribe, self.send_id)}"

    def click(self, url: str) -> str:
        token = sign(self.secret, LinkKind.click, self.send_id, url)
        return f"{self.base}/t/c/{token}?u={quote(url, safe='')}"
