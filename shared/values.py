"""How the APIs and the bus read times, days, counts and strings: strictly as JSON writes them,
and within what the platform can store and count with.

Alone, pydantic is lax in ways a CRM cannot take: it reads a number, or a string of digits, as
Unix seconds (a touch sent with "occurred_at": 0 was filed on 1970-01-01), true/false as 1/0
and "5" as 5. These annotations refuse all of that with a reason that names the rule, as they
refuse times and days outside the years 1900-2999; ``where_nul`` finds the U+0000 that
PostgreSQL cannot store.
"""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
)

# The years of the times and days the CRM takes. Python's datetime ends at years 1 and 9999,
# and the platform counts back and forward from a time or a day (a contact check's week, a
# forecast's quarter, a KPI period's next midnight): a touch at 0001-01-01 and a forecast for
# 9999-Q4 were 500s.
FIRST_YEAR = 1900
LAST_YEAR = 2999
_EARLIEST = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
_LATEST = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)

# The most money one record holds: a deal's amount, an order's total, a unit price. The
# services keep money in columns of 18 digits and more, where sums of such amounts (a
# customer's spend, their CLV) must fit too: a sales amount of 10^16 - 0.01 overflowed
# marketing's column and analytics' sums, and their consumers dead-lettered the order.
MAX_AMOUNT = Decimal("999999999999.99")

# The currency a service adds amounts up in where orders come in several (analytics' scores,
# marketing's total_spent): there are no exchange rates, so amounts in any other currency are
# never added to them. Sales' default currency is the same.
DEFAULT_REPORTING_CURRENCY = "EUR"

_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339_START.match(value)):
        return value
    raise ValueError("must be an RFC 3339 time with a UTC offset, e.g. 2026-11-30T09:00:00Z")


def _as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a ValueError where that falls outside the years taken."""
    out_of_range = (
        f"must be from {_EARLIEST:%Y-%m-%dT%H:%M:%SZ} to before {_LATEST:%Y-%m-%dT%H:%M:%SZ}"
    )
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise ValueError(out_of_range) from None
    if not _EARLIEST <= value < _LATEST:
        raise ValueError(out_of_range)
    return value


def _iso_day(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
        return value
    raise ValueError("must be a day written YYYY-MM-DD")


def _day_in_range(value: date) -> date:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be from {FIRST_YEAR}-01-01 to {LAST_YEAR}-12-31")
    return value


def _a_number(value: Any) -> Any:
    # 2.0 stays valid: JSON Schema's integers include it.
    if isinstance(value, bool | str):
        raise ValueError("must be a whole number")
    return value


# A time in a request or an integrator's event: RFC 3339 text in the years 1900-2999, stored
# and shown as UTC whatever offset the client sent.
UTCTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_as_utc)]

_UTC_TIME: TypeAdapter[datetime] = TypeAdapter(UTCTime)

# How far ahead of the server's clock a time that says when something happened may be: a
# client's clock and the server's differ a little.
CLOCK_SKEW = timedelta(minutes=5)


def _not_ahead(value: datetime) -> datetime:
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("must not be in the future: it says when this happened")
    return value


# When something happened (a touch, an order, a message, a status change): a ``UTCTime`` not
# in the future. A touch dated next year sat at the top of its customer's timeline and in every
# department's recent-touch windows until then.
HappenedAt = Annotated[
    UTCTime,
    AfterValidator(_not_ahead),
    Field(description="when it happened (RFC 3339): at most 5 minutes ahead of the server's clock"),
]


def parse_utc_time(value: Any) -> datetime:
    """``UTCTime`` for a value read out of JSON by hand (a segment rule's time); a ValueError
    with the reason otherwise."""
    try:
        return _UTC_TIME.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


# A calendar day in a query or a request body: YYYY-MM-DD in the years 1900-2999.
CalendarDay = Annotated[date, BeforeValidator(_iso_day), AfterValidator(_day_in_range)]

# PostgreSQL's text and jsonb cannot hold U+0000: a string carrying it was a 500 there (and kept
# on SQLite). Every string the APIs take is checked for it (shared.app, contacts' import).
NUL = "\x00"
NUL_REASON = "must not contain the character U+0000 (NUL)"


def where_nul(value: Any, path: tuple[str | int, ...] = ()) -> str | None:
    """Where the first string (a value or a key) holding U+0000 is in decoded JSON, as a dotted
    path (``items.1.subject``; ``body`` for the whole), or None where there is none."""
    if isinstance(value, str):
        return (".".join(map(str, path)) or "body") if NUL in value else None
    if isinstance(value, dict):
        children: Any = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for key, item in children:
        found = where_nul(key, (*path, key)) or where_nul(item, (*path, key))
        if found is not None:
            return found
    return None


# For a count or a limit, after its bounds: Annotated[int, Field(ge=..., le=...), WHOLE_NUMBER]
# (bounds first, or the JSON Schema of an optional one loses them).
WHOLE_NUMBER = BeforeValidator(_a_number)
