"""Cursor pages: ``{"items": [...], "next_cursor": ...}`` with ``limit`` up to 1,000."""

import base64
import json
import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, or_

from shared.errors import InvalidInput
from shared.values import parse_utc_time

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


def after_row(column: Any, value: Any, id_column: Any, last_id: Any) -> ColumnElement[bool]:
    """Rows after (value, last_id) in a list ordered by (column, id), both descending."""
    return or_(column < value, and_(column == value, id_column < last_id))


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A (timestamp, id) cursor's values; a 422 on ``cursor`` for anything else, a timestamp
    without its time zone included (the columns hold UTC-aware times)."""
    at_raw, id_raw = decode_cursor(cursor, 2)
    try:
        # As the APIs take a time: 0001-01-01T00:00:00+01:00 failed in the database (a 500).
        at, last_id = parse_utc_time(at_raw), uuid.UUID(id_raw)
    except ValueError as exc:
        raise InvalidInput("not a cursor returned by this API", field="cursor") from exc
    return at, last_id


def page_after(query: Any, column: Any, id_column: Any, cursor: str | None) -> Any:
    """``query`` (newest first by (column, id)) restricted to the rows after the cursor's."""
    if cursor is None:
        return query
    at, last_id = decode_time_cursor(cursor)
    return query.where(after_row(column, at, id_column, last_id))


def cut_page(rows: list[Any], limit: int, at: str, id_: str = "id") -> tuple[list[Any], str | None]:
    """The first ``limit`` of ``limit + 1`` rows fetched, and the cursor to the next page
    (None on the last), made of the last row's ``at`` and ``id_`` attributes."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(getattr(rows[-1], at).isoformat(), getattr(rows[-1], id_))
