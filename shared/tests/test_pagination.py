import pytest

from shared.errors import InvalidInput
from shared.pagination import decode_cursor, encode_cursor


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
