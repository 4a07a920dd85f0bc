"""Cursor pages of sales' lists: newest first by a timestamp, then the id."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_

from shared.errors import InvalidInput
from shared.pagination import decode_cursor, encode_cursor


def page_after(query: Any, column: Any, id_column: Any, cursor: str | None) -> Any:
    """Newest first by (column, id), after the cursor's row."""
    if cursor is None:
        return query
    at_raw, id_raw = decode_cursor(cursor, 2)
    try:
        at, last_id = datetime.fromisoformat(at_raw), uuid.UUID(id_raw)
    except ValueError as exc:
        raise InvalidInput("not a cursor returned by this API", field="cursor") from exc
    return query.where(or_(column < at, and_(column == at, id_column < last_id)))


def cut(rows: list[Any], limit: int, at: str, id_: str = "id") -> tuple[list[Any], str | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(getattr(rows[-1], at).isoformat(), getattr(rows[-1], id_))
