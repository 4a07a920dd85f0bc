"""Every bad input: a 4xx naming the field and the reason."""

import uuid

import pytest

from shared.pagination import encode_cursor

KPIS = ["/v1/kpis/support", "/v1/kpis/sales", "/v1/kpis/marketing", "/v1/kpis/usage"]


def field_of(response) -> str:
    [error] = response.json()["error"]["fields"]
    return error["field"]


@pytest.mark.parametrize("path", KPIS)
class TestPeriods:
    async def test_from_after_to(self, client, path):
        response = await client.get(path, params={"from": "2026-11-02", "to": "2026-11-01"})
        assert response.status_code == 422
        assert field_of(response) == "from"
        assert "after" in response.json()["error"]["message"]

    @pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "2026-11-31", ""])
    async def test_not_a_date(self, client, path, bad):
        response = await client.get(path, params={"from": bad, "to": "2026-11-30"})
        assert response.status_code == 422
        assert field_of(response) == "from"

    @pytest.mark.parametrize("bad", ["0", "86400", "1764460800", "2026-11-30T00:00:00Z"])
    async def test_a_day_is_written_as_a_date(self, client, path, bad):
        # Unix seconds at a midnight would otherwise read as that day.
        response = await client.get(path, params={"from": "1970-01-01", "to": bad})
        assert response.status_code == 422
        assert field_of(response) == "to"
        assert "YYYY-MM-DD" in response.json()["error"]["message"]

    async def test_missing_bounds(self, client, path):
        response = await client.get(path, params={"from": "2026-11-01"})
        assert response.status_code == 422
        assert field_of(response) == "to"

    async def test_a_period_too_long(self, client, path):
        response = await client.get(path, params={"from": "2000-01-01", "to": "2026-01-01"})
        assert response.status_code == 422
        assert field_of(response) == "to"

    @pytest.mark.parametrize(
        ("first", "last", "field"),
        [
            # The period ends at the next day's midnight, which no date can hold.
            ("2026-01-01", "9999-12-31", "to"),
            ("2999-12-01", "3000-01-01", "to"),
            ("1899-12-31", "1900-01-01", "from"),
        ],
    )
    async def test_a_day_outside_the_years_1900_to_2999(self, client, path, first, last, field):
        response = await client.get(path, params={"from": first, "to": last})
        assert response.status_code == 422
        assert field_of(response) == field
        assert "from 1900-01-01 to 2999-12-31" in response.json()["error"]["message"]


class TestDashboardPeriods:
    @pytest.mark.parametrize("path", ["/dashboard", "/dashboard/figures"])
    @pytest.mark.parametrize(
        ("params", "status", "field"),
        [
            ({"to": "1900-01-01"}, 200, None),  # the default period starts before 1900
            ({"to": "0001-01-01"}, 422, "to"),
            ({"to": "9999-12-31"}, 422, "to"),
            ({"from": "2026-11-02", "to": "2026-11-01"}, 422, "from"),
            ({"from": "0"}, 422, "from"),  # Unix seconds, not a day
        ],
    )
    async def test_the_years_taken(self, client, path, params, status, field):
        response = await client.get(path, params=params)
        assert response.status_code == status, response.text
        if field:
            assert field_of(response) == field


class TestCustomerRoutes:
    @pytest.mark.parametrize("path", ["/v1/customers/not-a-uuid/360", "/v1/customers/42/scores"])
    async def test_customer_id_must_be_a_uuid(self, client, path):
        response = await client.get(path)
        assert response.status_code == 422
        assert field_of(response) == "customer_id"

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"limit": 0}, "limit"),
            ({"limit": 1001}, "limit"),
            ({"cursor": "garbage"}, "cursor"),
            (
                {"cursor": encode_cursor("2026-01-01T00:00:00", uuid.uuid4())},
                "cursor",
            ),  # a timestamp without its zone
            ({"department": "finance"}, "department"),
            ({"channel": "pigeon"}, "channel"),
            ({"since": "2026-11-01T00:00:00"}, "since"),  # no time zone
            ({"until": "1764460800"}, "until"),  # Unix seconds
            (
                {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
                "since",
            ),  # reversed window
        ],
    )
    async def test_bad_360_parameters(self, client, params, field):
        response = await client.get(f"/v1/customers/{uuid.uuid4()}/360", params=params)
        assert response.status_code == 422, response.text
        assert field_of(response) == field

    async def test_unknown_segment(self, client):
        response = await client.get("/v1/segments/rfm/vips/customers")
        assert response.status_code == 404
        assert "champions" in response.json()["error"]["message"]

    async def test_bad_segment_cursor(self, client):
        response = await client.get("/v1/segments/rfm/new/customers", params={"cursor": "x"})
        assert response.status_code == 422
        assert field_of(response) == "cursor"
