"""How the APIs and the bus read times, days and counts: strictly as JSON writes them.

Alone, pydantic is lax in ways a CRM cannot take: it reads a number, or a string of digits, as
Unix seconds (a touch sent with "occurred_at": 0 was filed on 1970-01-01), true/false as 1/0
and "5" as 5. These annotations refuse all of that with a reason that names the rule.
"""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339_START.match(value)):
        return value
    raise ValueError("must be an RFC 3339 time with a UTC offset, e.g. 2026-11-30T09:00:00Z")


def _iso_day(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
        return value
    raise ValueError("must be a day written YYYY-MM-DD")


def _a_number(value: Any) -> Any:
    # 2.0 stays valid: JSON Schema's integers include it.
    if isinstance(value, bool | str):
        raise ValueError("must be a whole number")
    return value


# Before a datetime type: only a time written as text (or a datetime) is taken.
RFC3339_TEXT = BeforeValidator(_rfc3339_text)

# For a count or a limit, after its bounds: Annotated[int, Field(ge=..., le=...), WHOLE_NUMBER]
# (bounds first, or the JSON Schema of an optional one loses them).
WHOLE_NUMBER = BeforeValidator(_a_number)

# A time in a request: RFC 3339 text, stored and shown as UTC whatever offset the client sent.
UTCTime = Annotated[
    AwareDatetime, RFC3339_TEXT, AfterValidator(lambda value: value.astimezone(UTC))
]

# A calendar day in a query or a request body: YYYY-MM-DD and nothing else.
CalendarDay = Annotated[date, BeforeValidator(_iso_day)]
