"""The strict value types: what JSON writes as a time or a day is read as one, in the years
taken, and nothing else is (pydantic alone reads 0 as 1970-01-01); where U+0000 is. Whole
numbers are tested on the weekly cap, which uses them (shared/tests/test_events.py)."""

from datetime import UTC, date, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.values import CalendarDay, UTCTime, parse_utc_time, where_nul

utc_time = TypeAdapter(UTCTime)
calendar_day = TypeAdapter(CalendarDay)


def test_a_time_with_an_offset_is_read_as_utc():
    assert utc_time.validate_python("2026-11-30T10:00:00+01:00") == datetime(
        2026, 11, 30, 9, tzinfo=UTC
    )


@pytest.mark.parametrize("value", [0, 1764493200, "1764493200", "2026-11-30", True])
def test_a_time_not_written_as_rfc_3339_text_is_refused(value):
    with pytest.raises(ValidationError, match="RFC 3339"):
        utc_time.validate_python(value)


@pytest.mark.parametrize(
    "value",
    [
        # Python's datetime ends at years 1 and 9999: the conversion raised an OverflowError.
        "0001-01-01T00:00:00+01:01",
        "9999-12-31T23:59:59-00:01",
        # A contact check counts a week back from its time: at 0001-01-01 that was a 500.
        "0001-01-01T00:00:00Z",
        "1899-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
        "2999-12-31T23:00:00-01:00",
    ],
)
def test_a_time_outside_the_years_1900_to_2999_is_refused(value):
    with pytest.raises(ValidationError, match="from 1900-01-01T00:00:00Z to before 3000"):
        utc_time.validate_python(value)


@pytest.mark.parametrize("value", ["1900-01-01T00:00:00Z", "2999-12-31T23:59:59.999999Z"])
def test_the_first_and_last_times_taken(value):
    assert utc_time.validate_python(value).year in (1900, 2999)


def test_a_time_read_by_hand_gets_the_same_check_and_reason():
    assert parse_utc_time("2026-11-30T10:00:00+01:00") == datetime(2026, 11, 30, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="^must be an RFC 3339 time"):
        parse_utc_time(0)
    with pytest.raises(ValueError, match="^must be from 1900"):
        parse_utc_time("0001-01-01T00:00:00Z")


def test_a_time_without_an_offset_is_refused():
    with pytest.raises(ValidationError, match="timezone"):
        utc_time.validate_python("2026-11-30T09:00:00")


def test_a_day_is_read_from_yyyy_mm_dd():
    assert calendar_day.validate_python("2026-11-30") == date(2026, 11, 30)


@pytest.mark.parametrize("value", [0, 86400, "20261130", "2026-11-30T00:00:00Z", "30.11.2026"])
def test_a_day_written_otherwise_is_refused(value):
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        calendar_day.validate_python(value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"items": [{"subject": "ok"}, {"subject": "a\x00"}]}, "items.1.subject"),
        ({"quiet_hours": {"timezone": "UTC\x00"}}, "quiet_hours.timezone"),
        ({"tags\x00": []}, "tags\x00"),  # a key
        ("\x00", "body"),
        ({"first_name": "Anna", "count": 3, "flags": [True, None, 2.5]}, None),
    ],
)
def test_where_nul_names_the_first_string_holding_it(value, where):
    assert where_nul(value) == where
