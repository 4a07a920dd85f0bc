"""Bad input on every write endpoint: a 4xx naming the field, in the one error format, and no
change at all (checked by reading everything back afterwards)."""

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared import outbox
from shared.models import OutboxMessage
from shared.pagination import encode_cursor
from shared.testing import app_of

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
LONG_EMAIL = "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com"  # 260 characters


@pytest.fixture
async def anna(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post(
        "/v1/contacts",
        json={
            "first_name": "Anna",
            "last_name": "Schmidt",
            "email": "anna@example.com",
            "country": "DE",
            "phone": "+49 30 1234567",
            "company": "Acme",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def everything(client: httpx.AsyncClient) -> list[Any]:
    """All that the write endpoints can change, as the API shows it."""
    contacts = (await client.get("/v1/contacts", params={"limit": 1000})).json()
    details = [(await client.get(f"/v1/contacts/{c['id']}")).json() for c in contacts["items"]]
    policy = (await client.get("/v1/contact-policy")).json()
    return [contacts, details, policy]


def assert_error(response: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    """The one error format; ``field`` must be among the fields named."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert error["status"] == status
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    for entry in error["fields"]:
        assert set(entry) == {"field", "reason"} and entry["reason"]
    if field is not None:
        assert field in [f["field"] for f in error["fields"]], error
    return error


async def assert_rejected(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    status: int,
    field: str | None,
    **request: Any,
) -> dict[str, Any]:
    """Send the request; it must be refused with ``status`` naming ``field``, changing nothing."""
    before = await everything(client)
    error = assert_error(await client.request(method, path, **request), status, field)
    assert await everything(client) == before
    return error


# Field values that are wrong for the contact create and update schemas: (fields, named field).
BAD_FIELDS = [
    pytest.param({"first_name": 123}, "first_name", id="first_name-number"),
    pytest.param({"first_name": ["Anna"]}, "first_name", id="first_name-list"),
    pytest.param({"email": 42}, "email", id="email-number"),
    pytest.param({"company": {"name": "Acme"}}, "company", id="company-object"),
    pytest.param({"country": True}, "country", id="country-bool"),
    pytest.param({"preferences": "none"}, "preferences", id="preferences-string"),
    pytest.param(
        {"preferences": {"max_outbound_per_week": "lots"}},
        "preferences.max_outbound_per_week",
        id="preferences-cap-string",
    ),
    pytest.param(
        {"preferences": {"opted_out_channels": ["pigeon"]}},
        "preferences.opted_out_channels.0",
        id="preferences-unknown-channel",
    ),
    # A misspelt time zone was kept, and the contact check read it as UTC: the customer's
    # quiet hours fell hours off their night.
    pytest.param(
        {
            "preferences": {
                "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Berln"}
            }
        },
        "preferences.quiet_hours.timezone",
        id="preferences-unknown-time-zone",
    ),
    pytest.param({"nickname": "Annie"}, "nickname", id="unknown-field"),
    pytest.param({"first_name": ""}, "first_name", id="first_name-empty"),
    pytest.param({"first_name": "   "}, "first_name", id="first_name-blank"),
    pytest.param({"first_name": "A" * 101}, "first_name", id="first_name-101"),
    pytest.param({"last_name": "S" * 101}, "last_name", id="last_name-101"),
    pytest.param({"company": "C" * 201}, "company", id="company-201"),
    pytest.param({"external_id": "x" * 129}, "external_id", id="external_id-129"),
    pytest.param({"contact_id": "c-1"}, "contact_id", id="contact_id-not-an-id"),
    pytest.param({"email": LONG_EMAIL}, "email", id="email-over-254"),
    pytest.param({"email": "not-an-email"}, "email", id="email-no-at"),
    pytest.param({"email": "anna@"}, "email", id="email-no-domain"),
    pytest.param({"email": "anna@example"}, "email", id="email-no-tld"),
    pytest.param({"phone": "not a phone"}, "phone", id="phone-letters"),
    pytest.param({"phone": "+1 555 0000"}, "phone", id="phone-no-such-number"),
    pytest.param({"phone": "12"}, "phone", id="phone-too-short"),
    pytest.param({"phone": "1" * 33}, "phone", id="phone-too-long"),
    pytest.param({"country": "XX"}, "country", id="country-unknown"),
    pytest.param({"country": "DEU"}, "country", id="country-alpha3"),
    # PostgreSQL cannot store U+0000 in text: it was a 500 there, and kept on SQLite.
    pytest.param({"first_name": "An\u0000na"}, "first_name", id="first_name-nul"),
    pytest.param({"company": "Acme\u0000"}, "company", id="company-nul"),
]


class TestCreateContact:
    @pytest.mark.parametrize(("fields", "named"), BAD_FIELDS)
    async def test_bad_field(self, client, anna, fields, named):
        body = {"first_name": "Bob", **fields}
        await assert_rejected(client, "POST", "/v1/contacts", 422, named, json=body)

    @pytest.mark.parametrize("body", [{}, {"last_name": "Jones"}, {"first_name": None}])
    async def test_first_name_is_required(self, client, anna, body):
        await assert_rejected(client, "POST", "/v1/contacts", 422, "first_name", json=body)

    async def test_a_local_phone_needs_a_country(self, client, anna):
        body = {"first_name": "Bob", "phone": "030 7654321"}
        error = await assert_rejected(client, "POST", "/v1/contacts", 422, "phone", json=body)
        assert "country" in error["message"]
        assert error["fields"][0]["reason"] == (
            "not a valid phone number: a local number: use +<country code> or set country"
        )


class TestUpdateContact:
    @pytest.mark.parametrize(("fields", "named"), BAD_FIELDS)
    async def test_bad_field(self, client, anna, fields, named):
        path = f"/v1/contacts/{anna['id']}"
        await assert_rejected(client, "PATCH", path, 422, named, json=fields)

    async def test_first_name_cannot_be_removed(self, client, anna):
        path = f"/v1/contacts/{anna['id']}"
        body = {"first_name": None}
        error = await assert_rejected(client, "PATCH", path, 422, "first_name", json=body)
        assert error["fields"] == [
            {"field": "first_name", "reason": "first_name cannot be removed"}
        ]

    async def test_a_bad_field_among_good_ones_changes_nothing(self, client, anna):
        path = f"/v1/contacts/{anna['id']}"
        body = {"company": "Globex", "email": "new@example.com", "phone": "nope"}
        await assert_rejected(client, "PATCH", path, 422, "phone", json=body)


def write_requests(contact_id: str) -> list[tuple[str, str]]:
    """Every write endpoint that takes a JSON body, as (method, path)."""
    return [
        ("POST", "/v1/contacts"),
        ("PATCH", f"/v1/contacts/{contact_id}"),
        ("POST", f"/v1/contacts/{contact_id}/merge"),
        ("POST", f"/v1/contacts/{contact_id}/identities"),
        ("PUT", f"/v1/contacts/{contact_id}/preferences"),
        ("PUT", "/v1/contact-policy"),
    ]


class TestBodies:
    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b'{"first_name": ', id="truncated"),
            pytest.param(b"{first_name: 'Anna'}", id="not-json"),
            pytest.param(b"\xff\xfe", id="not-utf8"),
            pytest.param(b"", id="empty"),
            pytest.param(b'[{"first_name": "Anna"}]', id="array"),
            pytest.param(b'"Anna"', id="string"),
            pytest.param(b"42", id="number"),
            pytest.param(b"null", id="null"),
        ],
    )
    async def test_malformed_or_non_object_json(self, client, anna, raw):
        for method, path in write_requests(anna["id"]):
            await assert_rejected(
                client,
                method,
                path,
                422,
                "body",
                content=raw,
                headers={"content-type": "application/json"},
            )

    async def test_json_nested_too_deeply_to_read(self, client, anna):
        # FastAPI answers 400 where Python's JSON reader gives up; the body named no field.
        raw = b'{"first_name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        for method, path in write_requests(anna["id"]):
            error = await assert_rejected(
                client,
                method,
                path,
                400,
                "body",
                content=raw,
                headers={"content-type": "application/json"},
            )
            assert error["code"] == "invalid_input"

    @pytest.mark.parametrize(
        ("endpoint", "body", "named"),
        [
            ("merge", {}, "duplicate_ids"),
            ("merge", {"duplicate_ids": []}, "duplicate_ids"),
            ("merge", {"duplicate_ids": "all"}, "duplicate_ids"),
            ("merge", {"duplicate_ids": ["not-a-uuid"]}, "duplicate_ids.0"),
            ("merge", {"duplicate_ids": [UNKNOWN_ID] * 51}, "duplicate_ids"),
            ("merge", {"duplicate_ids": [UNKNOWN_ID], "keep": "newest"}, "keep"),
            ("identities", {"value": "anna@work.example"}, "kind"),
            ("identities", {"kind": "pager", "value": "123"}, "kind"),
            ("identities", {"kind": "email"}, "value"),
            ("identities", {"kind": "email", "value": ""}, "value"),
            ("identities", {"kind": "email", "value": "x" * 255}, "value"),
            ("identities", {"kind": "email", "value": "not-an-email"}, "value"),
            ("identities", {"kind": "phone", "value": "not a phone"}, "value"),
            ("identities", {"kind": "whatsapp", "value": "+1 555 0000"}, "value"),
            ("identities", {"kind": "email", "value": "a@b.example", "primary": True}, "primary"),
            ("identities", {"kind": "telegram", "value": "bo\u0000b"}, "value"),
            # Kept as an empty Telegram handle, which the next contact's "@" then clashed with.
            ("identities", {"kind": "telegram", "value": "@"}, "value"),
            ("preferences", {"opted_out_channels": ["pigeon"]}, "opted_out_channels.0"),
            ("preferences", {"opted_out_channels": "email"}, "opted_out_channels"),
            ("preferences", {"max_outbound_per_week": -1}, "max_outbound_per_week"),
            ("preferences", {"max_outbound_per_week": 1001}, "max_outbound_per_week"),
            # JSON true/false is not a count (pydantic alone reads false as 0).
            ("preferences", {"max_outbound_per_week": False}, "max_outbound_per_week"),
            (
                "preferences",
                {"quiet_hours": {"start": "25:00", "end": "08:00"}},
                "quiet_hours.start",
            ),
            ("preferences", {"quiet_hours": {"start": "21:00"}}, "quiet_hours.end"),
            (
                "preferences",
                {"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"}},
                "quiet_hours.timezone",
            ),
            (
                "preferences",
                {"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "../UTC"}},
                "quiet_hours.timezone",
            ),
            (
                "preferences",
                {"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe"}},
                "quiet_hours.timezone",
            ),
            ("preferences", {"colour": "blue"}, "colour"),
            ("policy", {"max_outbound_per_week": 5000}, "max_outbound_per_week"),
            ("policy", {"max_outbound_per_week": "five"}, "max_outbound_per_week"),
            ("policy", {"max_outbound_per_week": True}, "max_outbound_per_week"),
            (
                "policy",
                {"block_marketing_on_ticket_priorities": "urgent"},
                "block_marketing_on_ticket_priorities",
            ),
            ("policy", {"quiet_hours": {"start": "9am", "end": "5pm"}}, "quiet_hours.start"),
            ("policy", {"enabled": False}, "enabled"),
            (
                "policy",
                {"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Berlin"}},
                "quiet_hours.timezone",
            ),
            (
                "policy",
                {"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "UTC\u0000"}},
                "quiet_hours.timezone",
            ),
        ],
    )
    async def test_bad_field_on_other_endpoints(self, client, anna, endpoint, body, named):
        method, path = {
            "merge": ("POST", f"/v1/contacts/{anna['id']}/merge"),
            "identities": ("POST", f"/v1/contacts/{anna['id']}/identities"),
            "preferences": ("PUT", f"/v1/contacts/{anna['id']}/preferences"),
            "policy": ("PUT", "/v1/contact-policy"),
        }[endpoint]
        await assert_rejected(client, method, path, 422, named, json=body)


# Every route with a contact id in its path, with a body that would be valid.
def id_routes(other_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/v1/contacts/{}", None),
        ("PATCH", "/v1/contacts/{}", {"company": "Globex"}),
        ("DELETE", "/v1/contacts/{}", None),
        ("POST", "/v1/contacts/{}/merge", {"duplicate_ids": [other_id]}),
        ("POST", "/v1/contacts/{}/identities", {"kind": "telegram", "value": "bob"}),
        ("PUT", "/v1/contacts/{}/preferences", {"opted_out_channels": ["sms"]}),
    ]


class TestPathIds:
    async def test_unknown_ids_are_404(self, client, anna):
        for method, template, body in id_routes(anna["id"]):
            path = template.format(UNKNOWN_ID)
            error = await assert_rejected(client, method, path, 404, None, json=body)
            assert error["code"] == "not_found"
            assert UNKNOWN_ID in error["message"]

    @pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", f"{UNKNOWN_ID}0"])
    async def test_an_id_that_is_not_a_uuid_is_422(self, client, anna, bad_id):
        for method, template, body in id_routes(anna["id"]):
            path = template.format(bad_id)
            await assert_rejected(client, method, path, 422, "contact_id", json=body)

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("PATCH", "/v1/contacts/duplicates", "GET"),
            ("DELETE", "/v1/contacts/duplicates", "GET"),
            ("GET", "/v1/contacts/import", "POST"),
            ("PATCH", "/v1/contacts/import", "POST"),
            ("DELETE", "/v1/contacts/import", "POST"),
        ],
    )
    async def test_a_method_a_fixed_path_lacks_is_405_not_a_bad_contact_id(
        self, client, anna, method, path, allowed
    ):
        # /v1/contacts/{contact_id} took these, and answered 422: "contact_id: not a UUID".
        before = await everything(client)
        response = await client.request(method, path, json={"company": "X"})
        assert_error(response, 405, None)
        assert response.headers["allow"] == allowed
        assert await everything(client) == before


class TestQueryParameters:
    @pytest.mark.parametrize(
        ("path", "params", "named"),
        [
            ("/v1/contacts", {"limit": 0}, "limit"),
            ("/v1/contacts", {"limit": 1001}, "limit"),
            ("/v1/contacts", {"limit": "ten"}, "limit"),
            ("/v1/contacts", {"q": "x" * 201}, "q"),
            ("/v1/contacts", {"q": "Anna\u0000"}, "q"),
            ("/v1/contacts", {"cursor": "garbage"}, "cursor"),
            ("/v1/contacts", {"cursor": "!!!"}, "cursor"),
            ("/v1/contacts", {"cursor": "x" * 501}, "cursor"),
            ("/v1/contacts", {"cursor": encode_cursor("yesterday", UNKNOWN_ID)}, "cursor"),
            ("/v1/contacts", {"cursor": encode_cursor("2026-01-01T00:00:00+00:00", "x")}, "cursor"),
            (
                "/v1/contacts",
                {"cursor": encode_cursor("2026-01-01T00:00:00", UNKNOWN_ID)},
                "cursor",
            ),  # a timestamp without its zone
            ("/v1/contacts", {"cursor": encode_cursor("a", "b", "c")}, "cursor"),
            (
                "/v1/contacts",
                {"cursor": encode_cursor("0001-01-01T00:00:00+01:00", UNKNOWN_ID)},
                "cursor",
            ),  # year 0 in UTC: the database failed (a 500)
            ("/v1/contacts/duplicates", {"limit": 0}, "limit"),
            ("/v1/contacts/duplicates", {"limit": 1001}, "limit"),
            ("/v1/contacts/duplicates", {"cursor": "garbage"}, "cursor"),
            ("/v1/contacts/duplicates", {"cursor": -1}, "cursor"),
            ("/v1/contacts/duplicates", {"cursor": encode_cursor("high", "a", "b")}, "cursor"),
            ("/v1/contacts/duplicates", {"cursor": encode_cursor("nan", "a", "b")}, "cursor"),
            ("/v1/contacts/duplicates", {"min_score": 101}, "min_score"),
        ],
    )
    async def test_bad_list_parameters_are_422(self, client, anna, path, params, named):
        assert_error(await client.get(path, params=params), 422, named)

    @pytest.mark.parametrize("limit", [1, 1000])
    async def test_the_limits_themselves_are_allowed(self, client, anna, limit):
        response = await client.get("/v1/contacts", params={"limit": limit})
        assert response.status_code == 200
        assert [c["id"] for c in response.json()["items"]] == [anna["id"]]


class TestImport:
    @pytest.mark.parametrize(
        ("content_type", "body", "named"),
        [
            ("application/json", b'{"first_name": "Bob"}', "content-type"),
            ("text/plain", b"first_name\nBob\n", "content-type"),
            ("text/csv", b"first_name,shoe_size\nBob,44\n", "header"),
            ("text/csv", b"first_name,email\n", "body"),  # no data rows
            ("text/csv", b"", "body"),
            ("text/csv", "first_name\nJürgen\n".encode("latin-1"), "body"),  # not UTF-8
            ("application/x-ndjson", b"\n\n", "body"),
            # A cell larger than Python's CSV reader takes: the import was a 500.
            ("text/csv", b"first_name,company\nAnna," + b"x" * 200_000 + b"\n", "body"),
        ],
    )
    async def test_a_file_that_cannot_be_read_is_422_and_writes_nothing(
        self, client, anna, content_type, body, named
    ):
        await assert_rejected(
            client,
            "POST",
            "/v1/contacts/import",
            422,
            named,
            content=body,
            headers={"content-type": content_type},
        )


async def outbox_values(client: httpx.AsyncClient) -> list[bytes]:
    async with app_of(client).state.session_factory() as session:
        rows = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [row.value for row in rows]


async def test_a_change_whose_event_the_bus_would_refuse_is_413_and_changes_nothing(
    client, anna, monkeypatch
):
    # Kafka refuses a record over about 1 MB, and the relay publishes in order: it would
    # retry that row forever, and no contact event after it would reach anyone. A contact
    # with thousands of identities gets there; a lower limit gets there with one.
    [created] = await outbox_values(client)
    monkeypatch.setattr(outbox, "MAX_EVENT_BYTES", len(created) + 100)
    error = await assert_rejected(
        client,
        "POST",
        f"/v1/contacts/{anna['id']}/identities",
        413,
        None,
        json={"kind": "social", "value": "x" * 200},
    )
    assert "contact.updated event" in error["message"]
    assert await outbox_values(client) == [created]
    small = await client.post(
        f"/v1/contacts/{anna['id']}/identities", json={"kind": "social", "value": "anna"}
    )
    assert small.status_code == 201, small.text
