import uuid
from datetime import UTC, datetime

import pytest

from shared.errors import InvalidInput
from shared.pagination import decode_cursor, decode_time_cursor, encode_cursor


class TestCursor:
    def test_round_trip(self):
        assert decode_cursor(encode_cursor("2026-11-24T10:00:00+00:00", 42), 2) == [
            "2026-11-24T10:00:00+00:00",
            "42",
        ]

    @pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", encode_cursor("only-one")])
    def test_a_foreign_cursor_is_a_422_on_the_cursor_field(self, cursor):
        with pytest.raises(InvalidInput) as error:
            decode_cursor(cursor, 2)
        assert error.value.field == "cursor"

    def test_a_time_cursor_round_trips(self):
        at, last_id = datetime(2026, 11, 24, 10, tzinfo=UTC), uuid.uuid4()
        assert decode_time_cursor(encode_cursor(at.isoformat(), last_id)) == (at, last_id)

    @pytest.mark.parametrize(
        "values",
        [
            ("yesterday", "00000000-0000-4000-8000-000000000000"),
            ("2026-11-24T10:00:00+00:00", "42"),
            ("2026-11-24T10:00:00", "00000000-0000-4000-8000-000000000000"),  # no time zone
            # Year 0 in UTC, where the database failed: a 500.
            ("0001-01-01T00:00:00+01:00", "00000000-0000-4000-8000-000000000000"),
            ("3000-01-01T00:00:00+00:00", "00000000-0000-4000-8000-000000000000"),
        ],
    )
    def test_a_time_cursor_that_is_not_ours_is_a_422(self, values):
        with pytest.raises(InvalidInput) as error:
            decode_time_cursor(encode_cursor(*values))
        assert error.value.field == "cursor"
