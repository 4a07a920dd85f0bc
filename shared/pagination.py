"""Cursor pages: ``{"items": [...], "next_cursor": ...}`` with ``limit`` up to 1,000."""

import base64
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from shared.errors import InvalidInput

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The values of a cursor made by ``encode_cursor``; a 422 on ``cursor`` otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("not a cursor returned by this API", field="cursor") from exc
    if not isinstance(values, list) or len(values) != size:
        raise InvalidInput("not a cursor returned by this API", field="cursor")
    return [str(v) for v in values]
