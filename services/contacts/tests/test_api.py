"""API tests of every contacts endpoint, against the running app and a real database."""

import asyncio
import json
import unicodedata
import uuid
from typing import Any

import httpx
import pytest

from services.contacts.service import NEAR_DUPLICATE_CANDIDATES
from services.contacts.tests.test_bad_input import outbox_values

Contact = dict[str, Any]
CSV = {"content-type": "text/csv"}
NDJSON = {"content-type": "application/x-ndjson"}


async def create(client: httpx.AsyncClient, **fields: Any) -> Contact:
    response = await client.post("/v1/contacts", json={"first_name": "Anna", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def get(client: httpx.AsyncClient, contact_id: str) -> Contact:
    response = await client.get(f"/v1/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def all_contacts(client: httpx.AsyncClient, **params: Any) -> list[Contact]:
    """Every contact the list returns, following next_cursor to the end."""
    items: list[Contact] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/contacts", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if (cursor := page["next_cursor"]) is None:
            return items


async def ids(client: httpx.AsyncClient, **params: Any) -> set[str]:
    return {c["id"] for c in await all_contacts(client, **params)}


def identities(contact: Contact) -> set[tuple[str, str]]:
    return {(i["kind"], i["value"]) for i in contact["identities"]}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()["error"]


async def import_file(client: httpx.AsyncClient, body: str, headers: dict[str, str]) -> Any:
    return await client.post("/v1/contacts/import", content=body.encode(), headers=headers)


class TestCreateContact:
    async def test_answers_201_with_the_normalised_contact(self, client):
        created = await create(
            client,
            last_name="Schmidt",
            email="  Anna.Schmidt@Example.COM ",
            country="de",
            phone="030 1234567",
            company="Acme",
            external_id="crm-1",
        )
        assert created["id"]
        assert created["email"] == "anna.schmidt@example.com"
        assert created["phone"] == "+49301234567"
        assert created["country"] == "DE"
        assert identities(created) == {
            ("email", "anna.schmidt@example.com"),
            ("phone", "+49301234567"),
        }
        assert created["possible_duplicates"] == []
        stored = await get(client, created["id"])
        assert {k: stored[k] for k in ("first_name", "last_name", "company", "external_id")} == {
            "first_name": "Anna",
            "last_name": "Schmidt",
            "company": "Acme",
            "external_id": "crm-1",
        }
        assert stored["created_at"].endswith("Z")

    async def test_an_exact_email_match_is_409_naming_the_existing_contact(self, client):
        existing = await create(client, email="anna@example.com")
        error = error_of(
            await client.post(
                "/v1/contacts", json={"first_name": "Someone", "email": "ANNA@example.com"}
            ),
            409,
        )
        assert error["existing_id"] == existing["id"]
        assert error["fields"][0]["field"] == "email"
        assert await ids(client) == {existing["id"]}

    async def test_the_same_phone_in_another_format_is_409(self, client):
        existing = await create(client, phone="+49 30 1234567")
        body = {"first_name": "Other", "country": "DE", "phone": "030/123 45 67"}
        error = error_of(await client.post("/v1/contacts", json=body), 409)
        assert error["existing_id"] == existing["id"]
        assert error["fields"][0]["field"] == "phone"
        assert await ids(client) == {existing["id"]}

    async def test_an_existing_external_id_is_409(self, client):
        existing = await create(client, external_id="crm-1")
        error = error_of(
            await client.post("/v1/contacts", json={"first_name": "Other", "external_id": "crm-1"}),
            409,
        )
        assert error["existing_id"] == existing["id"]

    async def test_a_contact_sent_again_with_its_id_is_created_once(self, client):
        # With neither e-mail, phone nor external id nothing else found the first: each retry
        # after a timeout made another contact, and its touches split between the two.
        body = {"contact_id": str(uuid.uuid4()), "first_name": "Anna", "last_name": "Berg"}
        sent = await asyncio.gather(*[client.post("/v1/contacts", json=body) for _ in range(4)])
        assert [r.status_code for r in sent] == [201] * 4
        assert {r.json()["id"] for r in sent} == {body["contact_id"]}
        assert await ids(client) == {body["contact_id"]}
        assert len(await outbox_values(client)) == 1
        other = error_of(await client.post("/v1/contacts", json={**body, "last_name": "Sand"}), 409)
        assert other["fields"][0]["field"] == "contact_id"
        assert len(await outbox_values(client)) == 1

    async def test_a_retry_with_the_id_and_e_mail_answers_the_contact_not_409(self, client):
        body = {"contact_id": str(uuid.uuid4()), "first_name": "Anna", "email": "a@example.com"}
        first = await create(client, **body)
        again = await client.post("/v1/contacts", json=body)
        assert again.status_code == 201 and again.json()["id"] == first["id"]

    async def test_a_retry_is_answered_with_the_possible_duplicates_too(self, client):
        # A retry is answered as the first time: it answered no possible duplicates, and a
        # client whose first answer timed out never saw them.
        anna = await create(client, last_name="Schmidt", company="Acme GmbH")
        body = {"contact_id": str(uuid.uuid4()), "first_name": "Ana", "last_name": "Schmidt"}
        first = await create(client, **body)
        again = await create(client, **body)
        assert again["id"] == first["id"]
        assert again["possible_duplicates"] == first["possible_duplicates"]
        assert [m["id"] for m in again["possible_duplicates"]] == [anna["id"]]

    async def test_a_near_match_is_created_and_returned_as_possible_duplicate(self, client):
        anna = await create(client, last_name="Schmidt", company="Acme GmbH")
        await create(client, first_name="Peter", last_name="Schmidt", company="Acme GmbH")
        ana = await create(client, first_name="Ana", last_name="Schmidt", company="ACME GmbH")
        [match] = ana["possible_duplicates"]
        assert match["id"] == anna["id"]
        assert match["score"] > 85
        assert (match["first_name"], match["last_name"]) == ("Anna", "Schmidt")
        assert ana["id"] in await ids(client)

    async def test_a_near_match_is_found_behind_many_namesakes(self, client):
        # More contacts share the surname than are compared: the ones that also share the
        # company, or the first name's initial, must be among them, whenever they were created.
        namesakes = "\n".join(f"Bert{n},Schmidt,Firm {n}" for n in range(NEAR_DUPLICATE_CANDIDATES))
        result = await import_file(client, f"first_name,last_name,company\n{namesakes}\n", CSV)
        assert result.json()["created"] == NEAR_DUPLICATE_CANDIDATES
        anna = await create(client, last_name="Schmidt", company="Acme GmbH")
        lone_anna = await create(client, first_name="Anna", last_name="Schmidt")

        ana = await create(client, first_name="Ana", last_name="Schmidt", company="ACME GmbH")
        assert [m["id"] for m in ana["possible_duplicates"]][:1] == [anna["id"]]
        ana_alone = await create(client, first_name="Ana", last_name="Schmidt")
        assert lone_anna["id"] in {m["id"] for m in ana_alone["possible_duplicates"]}

    @pytest.mark.parametrize(
        "spelling",
        [
            pytest.param(("Jose", "Garcia", "Cafe Central"), id="without-accents"),
            pytest.param(
                tuple(unicodedata.normalize("NFD", v) for v in ("José", "García", "Café Central")),
                id="decomposed",
            ),
        ],
    )
    async def test_the_same_name_spelt_another_way_is_a_possible_duplicate(self, client, spelling):
        jose = await create(client, first_name="José", last_name="García", company="Café Central")
        first, last, company = spelling
        other = await create(client, first_name=first, last_name=last, company=company)
        assert [(m["id"], m["score"]) for m in other["possible_duplicates"]] == [(jose["id"], 100)]
        pairs = (await client.get("/v1/contacts/duplicates")).json()["items"]
        assert {(p["contact_id"], p["duplicate_id"]) for p in pairs} == {
            tuple(sorted((jose["id"], other["id"])))
        }

    @pytest.mark.parametrize("last_name", ["O’Neil", "O Neil", "ONeil", "O-Neil", "oʼneil"])
    async def test_a_name_with_its_apostrophe_written_another_way_is_a_possible_duplicate(
        self, client, last_name
    ):
        # The apostrophe (typographic, left out or a space) was part of the blocking key:
        # O'Neil and O’Neil were never compared, so never suggested.
        sean = await create(client, first_name="Sean", last_name="O'Neil", company="Acme")
        other = await create(client, first_name="Sean", last_name=last_name)
        assert [m["id"] for m in other["possible_duplicates"]] == [sean["id"]]
        pairs = (await client.get("/v1/contacts/duplicates")).json()["items"]
        assert {(p["contact_id"], p["duplicate_id"]) for p in pairs} == {
            tuple(sorted((sean["id"], other["id"])))
        }

    async def test_a_name_longer_once_folded_is_created(self, client):
        # Its blocking key (ß is ss) overflowed the key's column: a 500 on PostgreSQL.
        body = {"last_name": "Strauß" * 16, "company": "\ufdfa" * 14}
        first = await create(client, **body)
        second = await create(client, **body)
        assert [m["id"] for m in second["possible_duplicates"]] == [first["id"]]

    async def test_names_are_stored_in_one_unicode_form(self, client):
        # A decomposed name (as macOS writes it) was not found by a search typed on a keyboard.
        decomposed = unicodedata.normalize("NFD", "Zoë")
        zoe = await create(client, first_name=decomposed, last_name="Brontë", company="Café")
        assert (zoe["first_name"], zoe["last_name"], zoe["company"]) == ("Zoë", "Brontë", "Café")
        assert await ids(client, q="zoë") == {zoe["id"]}
        assert await ids(client, q=unicodedata.normalize("NFD", "brontë")) == {zoe["id"]}


class TestUpdateContact:
    async def test_changes_only_the_fields_sent(self, client):
        contact = await create(client, last_name="Schmidt", company="Acme", country="DE")
        response = await client.patch(
            f"/v1/contacts/{contact['id']}", json={"company": "Globex", "last_name": None}
        )
        assert response.status_code == 200, response.text
        stored = await get(client, contact["id"])
        assert [stored[k] for k in ("first_name", "last_name", "company", "country")] == [
            "Anna",
            None,
            "Globex",
            "DE",
        ]
        assert stored["updated_at"] > contact["updated_at"]

    async def test_a_local_phone_is_read_in_the_stored_country(self, client):
        contact = await create(client, country="DE")
        response = await client.patch(
            f"/v1/contacts/{contact['id']}", json={"phone": "030 1234567"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["phone"] == "+49301234567"
        assert ("phone", "+49301234567") in identities(await get(client, contact["id"]))

    async def test_a_new_email_replaces_the_old_identity_and_frees_it(self, client):
        contact = await create(client, email="old@example.com")
        response = await client.patch(
            f"/v1/contacts/{contact['id']}", json={"email": "New@Example.com"}
        )
        assert response.status_code == 200, response.text
        assert identities(await get(client, contact["id"])) == {("email", "new@example.com")}
        await create(client, first_name="Other", email="old@example.com")

    async def test_another_contacts_email_is_409_and_changes_nothing(self, client):
        anna = await create(client, email="anna@example.com")
        bob = await create(client, first_name="Bob", email="bob@example.com")
        body = {"email": "anna@example.com", "company": "X"}
        error = error_of(await client.patch(f"/v1/contacts/{bob['id']}", json=body), 409)
        assert error["existing_id"] == anna["id"]
        assert await get(client, bob["id"]) == {
            k: v for k, v in bob.items() if k != "possible_duplicates"
        }

    async def test_an_update_that_changes_nothing_publishes_nothing(self, client):
        # It published crm.contact.updated.v1 and moved updated_at: a sync that writes a
        # contact back whenever it hears of a change never came to rest.
        contact = await create(
            client,
            last_name="Schmidt",
            email="anna@example.com",
            country="DE",
            phone="+49 30 1234567",
            preferences={"opted_out_channels": ["sms"]},
        )
        published = await outbox_values(client)
        same = {
            "first_name": "Anna",
            "last_name": "Schmidt",
            "email": "ANNA@example.com",
            "phone": "030 1234567",
            "company": None,
            "preferences": {"opted_out_channels": ["sms"]},
        }
        for body in ({}, same):
            response = await client.patch(f"/v1/contacts/{contact['id']}", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["updated_at"] == contact["updated_at"]
        response = await client.put(
            f"/v1/contacts/{contact['id']}/preferences", json={"opted_out_channels": ["sms"]}
        )
        assert response.status_code == 200, response.text
        assert await outbox_values(client) == published
        assert (await get(client, contact["id"]))["updated_at"] == contact["updated_at"]

    async def test_the_same_opt_outs_in_another_order_publish_nothing(self, client):
        # A set of channels, compared as a list: a sync writing them back in its own order
        # (or naming one twice) published an update each time.
        contact = await create(
            client, preferences={"opted_out_channels": ["sms", "email", "whatsapp"]}
        )
        published = await outbox_values(client)
        for channels in (["whatsapp", "sms", "email"], ["email", "email", "whatsapp", "sms"]):
            response = await client.put(
                f"/v1/contacts/{contact['id']}/preferences",
                json={"opted_out_channels": channels},
            )
            assert response.status_code == 200, response.text
            assert response.json()["opted_out_channels"] == ["email", "sms", "whatsapp"]
        assert await outbox_values(client) == published
        assert (await get(client, contact["id"]))["updated_at"] == contact["updated_at"]

    async def test_a_patch_of_some_preferences_keeps_the_others(self, client):
        # It replaced the whole object: a PATCH of the preferred channel alone reset the
        # others to their defaults, and the customer's SMS opt-out was lost.
        quiet = {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"}
        contact = await create(
            client,
            preferences={
                "opted_out_channels": ["sms"],
                "quiet_hours": quiet,
                "max_outbound_per_week": 2,
            },
        )
        response = await client.patch(
            f"/v1/contacts/{contact['id']}",
            json={"preferences": {"preferred_channel": "email", "quiet_hours": None}},
        )
        assert response.status_code == 200, response.text
        wanted = {
            "opted_out_channels": ["sms"],
            "preferred_channel": "email",
            "quiet_hours": None,
            "max_outbound_per_week": 2,
        }
        assert response.json()["preferences"] == wanted
        assert (await get(client, contact["id"]))["preferences"] == wanted
        published = await outbox_values(client)
        assert json.loads(published[-1])["data"]["preferences"] == wanted
        # The same few fields again change nothing and publish nothing.
        response = await client.patch(
            f"/v1/contacts/{contact['id']}", json={"preferences": {"preferred_channel": "email"}}
        )
        assert response.status_code == 200, response.text
        assert await outbox_values(client) == published

    async def test_null_preferences_are_the_defaults(self, client):
        contact = await create(client, preferences={"opted_out_channels": ["sms"]})
        response = await client.patch(f"/v1/contacts/{contact['id']}", json={"preferences": None})
        assert response.status_code == 200, response.text
        assert response.json()["preferences"]["opted_out_channels"] == []
        published = await outbox_values(client)
        response = await client.patch(f"/v1/contacts/{contact['id']}", json={"preferences": None})
        assert response.status_code == 200, response.text
        assert await outbox_values(client) == published


class TestListContacts:
    @pytest.fixture
    async def people(self, client) -> dict[str, str]:
        anna = await create(
            client,
            last_name="Schmidt",
            email="anna@example.com",
            phone="+49 30 1234567",
            company="Acme GmbH",
        )
        bob = await create(
            client,
            first_name="Bob",
            last_name="Jones",
            email="bj@globex.com",
            phone="+44 20 7946 0958",
            company="Globex",
        )
        carla = await create(client, first_name="Carla", last_name="Annaberg", company="Initech")
        return {"anna": anna["id"], "bob": bob["id"], "carla": carla["id"]}

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("bob", {"bob"}),  # first name, case-insensitive
            ("JONES", {"bob"}),  # last name
            ("anna", {"anna", "carla"}),  # first name of one, part of the last name of another
            ("Anna Schm", {"anna"}),  # first and last name
            ("globex.com", {"bob"}),  # e-mail
            ("anna@example", {"anna"}),
            ("30 1234567", {"anna"}),  # phone digits, formatted another way
            ("+442079460958", {"bob"}),
            # As the number is written at home (trunk prefix 0) or from abroad (00).
            ("030 1234567", {"anna"}),
            ("020 7946 0958", {"bob"}),
            ("0049 30 1234567", {"anna"}),
            ("initech", {"carla"}),  # company
            ("acme", {"anna"}),
            ("nobody", set()),
            # Searched for as written, not as LIKE's wildcards (which matched everyone).
            ("%", set()),
            ("_", set()),
            ("Ann_", set()),
        ],
    )
    async def test_q_searches_name_email_phone_and_company(self, client, people, q, expected):
        assert await ids(client, q=q) == {people[name] for name in expected}

    @pytest.mark.parametrize(
        "q", ["Anna Maria Schmidt", "anna maria schm", "Maria Schmidt", "Anna  Maria   Schmidt"]
    )
    async def test_q_finds_a_full_name_whose_first_name_has_two_words(self, client, q):
        # The query was split at its first space only: the first name "Anna" and the last
        # name "Maria Schmidt", and Anna Maria Schmidt was not found by her full name.
        anna_maria = await create(client, first_name="Anna Maria", last_name="Schmidt")
        await create(client, first_name="Maria", last_name="Schmitz")
        assert await ids(client, q=q) == {anna_maria["id"]}

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("ÉMILE", {"émile", "Émile"}),
            ("émile", {"émile", "Émile"}),
            ("ÉMILE ZOL", {"émile", "Émile"}),  # first and last name
            ("ØRSTED", {"Ørsted"}),  # company
            ("ørsted", {"Ørsted"}),
            ("ΑΘΗΝΆ", {"Αθηνά"}),
            ("ПЁТР", {"Пётр"}),
        ],
    )
    async def test_q_ignores_the_case_of_letters_beyond_ascii(self, client, q, expected):
        # SQLite's lower() and LIKE fold ASCII letters only: ÉMILE did not find émile there.
        people = {
            "émile": (await create(client, first_name="émile", last_name="zola"))["id"],
            "Émile": (await create(client, first_name="Émile", last_name="Zola"))["id"],
            "Ørsted": (await create(client, first_name="Ada", company="Ørsted A/S"))["id"],
            "Αθηνά": (await create(client, first_name="Αθηνά"))["id"],
            "Пётр": (await create(client, first_name="Пётр"))["id"],
        }
        assert await ids(client, q=q) == {people[name] for name in expected}

    async def test_cursor_paging_returns_every_contact_exactly_once(self, client):
        created = [(await create(client, first_name=f"Person{n}"))["id"] for n in range(7)]
        pages: list[list[str]] = []
        cursor = None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/contacts", params=params)).json()
            pages.append([c["id"] for c in page["items"]])
            if (cursor := page["next_cursor"]) is None:
                break
        assert [len(p) for p in pages] == [3, 3, 1]
        seen = [cid for page in pages for cid in page]
        assert seen == list(reversed(created))  # newest first, each exactly once

    async def test_an_exact_page_ends_with_a_null_cursor(self, client):
        for n in range(3):
            await create(client, first_name=f"Person{n}")
        page = (await client.get("/v1/contacts", params={"limit": 3})).json()
        assert len(page["items"]) == 3
        assert page["next_cursor"] is None


class TestDuplicates:
    async def test_lists_near_duplicate_pairs_with_a_score(self, client):
        anna = await create(client, last_name="Schmidt", company="Acme")
        ana = await create(client, first_name="Ana", last_name="Schmidt", company="Acme")
        await create(client, first_name="Peter", last_name="Schmidt", company="Acme")
        await create(client, first_name="Bob", last_name="Jones")
        response = await client.get("/v1/contacts/duplicates")
        assert response.status_code == 200, response.text
        [pair] = response.json()["items"]
        assert {pair["contact_id"], pair["duplicate_id"]} == {anna["id"], ana["id"]}
        assert 85 < pair["score"] <= 100
        assert response.json()["next_cursor"] is None

    async def test_min_score_filters_pairs(self, client):
        await create(client, last_name="Schmidt", company="Acme")
        await create(client, first_name="Ana", last_name="Schmidt", company="Acme")
        loose = (await client.get("/v1/contacts/duplicates", params={"min_score": 50})).json()
        strict = (await client.get("/v1/contacts/duplicates", params={"min_score": 99.5})).json()
        assert len(loose["items"]) == 1
        assert strict["items"] == []

    async def test_pairs_are_paged(self, client):
        for first in ("Anna", "Ana", "Anne"):
            await create(client, first_name=first, last_name="Schmidt")
        first = (
            await client.get("/v1/contacts/duplicates", params={"limit": 2, "min_score": 50})
        ).json()
        rest = (
            await client.get(
                "/v1/contacts/duplicates",
                params={"limit": 2, "min_score": 50, "cursor": first["next_cursor"]},
            )
        ).json()
        pairs = [(p["contact_id"], p["duplicate_id"]) for p in first["items"] + rest["items"]]
        assert len(pairs) == len(set(pairs)) == 3
        assert rest["next_cursor"] is None

    async def test_a_pair_merged_between_pages_hides_no_other_pair(self, client):
        # A steward merges the pairs of a page, then asks for the next: the cursor was an
        # offset into the list, which the merges had shortened, so pairs were skipped.
        for first, last in (("Anna", "Schmidt"), ("Ana", "Schmidt")):
            await create(client, first_name=first, last_name=last, company="Acme")
        for first in ("Peter", "Petra", "Pete"):
            await create(client, first_name=first, last_name="Jones")
        params = {"min_score": 50, "limit": 1000}
        every = (await client.get("/v1/contacts/duplicates", params=params)).json()["items"]
        assert len(every) == 4
        page = (await client.get("/v1/contacts/duplicates", params={**params, "limit": 1})).json()
        assert page["items"] == every[:1]
        [top] = page["items"]
        response = await client.post(
            f"/v1/contacts/{top['contact_id']}/merge", json={"duplicate_ids": [top["duplicate_id"]]}
        )
        assert response.status_code == 200, response.text
        rest = (
            await client.get(
                "/v1/contacts/duplicates",
                params={**params, "limit": 1, "cursor": page["next_cursor"]},
            )
        ).json()
        assert rest["items"] == [p for p in every[1:] if top["duplicate_id"] not in p.values()][:1]


class TestMergeContacts:
    async def test_survivor_keeps_the_duplicates_identities_and_consent(self, client):
        survivor = await create(
            client,
            last_name="Schmidt",
            email="anna@example.com",
            preferences={"max_outbound_per_week": 5},
        )
        duplicate = await create(
            client,
            first_name="Ana",
            last_name="Schmidt",
            email="anna.s@work.example",
            phone="+49 30 1234567",
            company="Acme",
            preferences={"opted_out_channels": ["sms"], "max_outbound_per_week": 2},
        )
        response = await client.post(
            f"/v1/contacts/{survivor['id']}/merge", json={"duplicate_ids": [duplicate["id"]]}
        )
        assert response.status_code == 200, response.text
        merged = await get(client, survivor["id"])
        assert identities(merged) == {
            ("email", "anna@example.com"),
            ("email", "anna.s@work.example"),
            ("phone", "+49301234567"),
        }
        assert (merged["first_name"], merged["email"]) == ("Anna", "anna@example.com")
        assert (merged["phone"], merged["company"]) == ("+49301234567", "Acme")  # filled in
        assert merged["preferences"]["opted_out_channels"] == ["sms"]
        assert merged["preferences"]["max_outbound_per_week"] == 2
        assert await ids(client) == {survivor["id"]}

    async def test_the_duplicate_answers_301_to_the_survivor(self, client):
        survivor = await create(client)
        duplicate = await create(client, first_name="Ana")
        await client.post(
            f"/v1/contacts/{survivor['id']}/merge", json={"duplicate_ids": [duplicate["id"]]}
        )
        response = await client.get(f"/v1/contacts/{duplicate['id']}")
        error = error_of(response, 301)
        assert error["merged_into"] == survivor["id"]
        assert response.headers["location"] == f"/v1/contacts/{survivor['id']}"

    async def test_a_merged_contact_cannot_be_changed(self, client):
        survivor = await create(client)
        duplicate = await create(client, first_name="Ana")
        await client.post(
            f"/v1/contacts/{survivor['id']}/merge", json={"duplicate_ids": [duplicate["id"]]}
        )
        error = error_of(
            await client.patch(f"/v1/contacts/{duplicate['id']}", json={"company": "X"}), 409
        )
        assert error["merged_into"] == survivor["id"]

    async def test_the_duplicates_identities_can_be_found_on_the_survivor_only(self, client):
        survivor = await create(client)
        duplicate = await create(client, first_name="Ana", email="ana@example.com")
        await client.post(
            f"/v1/contacts/{survivor['id']}/merge", json={"duplicate_ids": [duplicate["id"]]}
        )
        error = error_of(
            await client.post(
                "/v1/contacts", json={"first_name": "New", "email": "ana@example.com"}
            ),
            409,
        )
        assert error["existing_id"] == survivor["id"]

    async def test_merging_into_itself_is_422(self, client):
        contact = await create(client)
        error = error_of(
            await client.post(
                f"/v1/contacts/{contact['id']}/merge", json={"duplicate_ids": [contact["id"]]}
            ),
            422,
        )
        assert error["fields"][0]["field"] == "duplicate_ids"
        assert (await get(client, contact["id"]))["updated_at"] == contact["updated_at"]

    async def test_an_unknown_duplicate_is_422_and_merges_nothing(self, client):
        survivor = await create(client)
        other = await create(client, first_name="Ana", email="ana@example.com")
        unknown = "00000000-0000-4000-8000-000000000000"
        error = error_of(
            await client.post(
                f"/v1/contacts/{survivor['id']}/merge",
                json={"duplicate_ids": [other["id"], unknown]},
            ),
            422,
        )
        assert error["fields"][0]["field"] == "duplicate_ids"
        assert unknown in error["message"]
        assert await ids(client) == {survivor["id"], other["id"]}
        assert identities(await get(client, other["id"])) == {("email", "ana@example.com")}


class TestEraseContact:
    async def test_erasure_removes_the_contact_and_frees_its_email(self, client):
        contact = await create(client, last_name="Schmidt", email="anna@example.com")
        response = await client.delete(f"/v1/contacts/{contact['id']}")
        assert response.status_code == 204
        assert response.content == b""
        error_of(await client.get(f"/v1/contacts/{contact['id']}"), 404)
        error_of(await client.delete(f"/v1/contacts/{contact['id']}"), 404)
        assert await ids(client) == set()
        assert await ids(client, q="Schmidt") == set()
        reborn = await create(client, email="anna@example.com")
        assert reborn["id"] != contact["id"]

    async def test_erasing_a_survivor_erases_the_merged_records(self, client):
        survivor = await create(client)
        duplicate = await create(client, first_name="Ana")
        await client.post(
            f"/v1/contacts/{survivor['id']}/merge", json={"duplicate_ids": [duplicate["id"]]}
        )
        assert (await client.delete(f"/v1/contacts/{survivor['id']}")).status_code == 204
        error_of(await client.get(f"/v1/contacts/{duplicate['id']}"), 404)
        # Both erased events tell the erasure's time, the merged record's too (not its merge's).
        erased = [
            event["data"]
            for event in (json.loads(v) for v in await outbox_values(client) if v is not None)
            if event["type"] == "crm.contact.erased.v1"
        ]
        assert {e["contact_id"] for e in erased} == {survivor["id"], duplicate["id"]}
        assert len({e["erased_at"] for e in erased}) == 1

    async def test_a_merged_record_is_erased_through_its_survivor(self, client):
        survivor = await create(client)
        duplicate = await create(client, first_name="Ana")
        await client.post(
            f"/v1/contacts/{survivor['id']}/merge", json={"duplicate_ids": [duplicate["id"]]}
        )
        error = error_of(await client.delete(f"/v1/contacts/{duplicate['id']}"), 409)
        assert error["merged_into"] == survivor["id"]


class TestIdentities:
    async def test_adds_normalised_identities(self, client):
        contact = await create(client, country="DE")
        path = f"/v1/contacts/{contact['id']}/identities"
        for kind, value in [
            ("email", " Anna@Work.Example "),
            ("phone", "030 1234567"),
            ("whatsapp", "+44 20 7946 0958"),
            ("telegram", "@AnnaS"),
        ]:
            response = await client.post(path, json={"kind": kind, "value": value})
            assert response.status_code == 201, response.text
        assert identities(await get(client, contact["id"])) == {
            ("email", "anna@work.example"),
            ("phone", "+49301234567"),
            ("whatsapp", "+442079460958"),
            ("telegram", "annas"),
        }

    async def test_adding_an_identity_twice_keeps_one(self, client):
        contact = await create(client, email="anna@example.com")
        response = await client.post(
            f"/v1/contacts/{contact['id']}/identities",
            json={"kind": "email", "value": "ANNA@example.com"},
        )
        assert response.status_code == 201, response.text
        assert identities(response.json()) == {("email", "anna@example.com")}

    async def test_another_contacts_identity_is_409(self, client):
        anna = await create(client)
        bob = await create(client, first_name="Bob")
        await client.post(
            f"/v1/contacts/{anna['id']}/identities", json={"kind": "telegram", "value": "annas"}
        )
        error = error_of(
            await client.post(
                f"/v1/contacts/{bob['id']}/identities", json={"kind": "telegram", "value": "@AnnaS"}
            ),
            409,
        )
        assert error["existing_id"] == anna["id"]
        assert identities(await get(client, bob["id"])) == set()

    async def test_a_secondary_email_blocks_a_new_contact_with_it(self, client):
        anna = await create(client)
        await client.post(
            f"/v1/contacts/{anna['id']}/identities",
            json={"kind": "email", "value": "anna@work.example"},
        )
        error = error_of(
            await client.post(
                "/v1/contacts", json={"first_name": "X", "email": "anna@work.example"}
            ),
            409,
        )
        assert error["existing_id"] == anna["id"]


class TestPreferences:
    async def test_put_replaces_the_preferences(self, client):
        contact = await create(client, preferences={"preferred_channel": "sms"})
        wanted = {
            "opted_out_channels": ["email", "phone"],
            "preferred_channel": None,
            "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"},
            "max_outbound_per_week": 2,
        }
        response = await client.put(f"/v1/contacts/{contact['id']}/preferences", json=wanted)
        assert response.status_code == 200, response.text
        assert response.json() == wanted
        assert (await get(client, contact["id"]))["preferences"] == wanted


class TestContactPolicy:
    async def test_default_then_replaced(self, client):
        default = (await client.get("/v1/contact-policy")).json()
        assert default == {
            "max_outbound_per_week": 5,
            "quiet_hours": None,
            "block_marketing_on_ticket_priorities": ["high", "urgent"],
        }
        wanted = {
            "max_outbound_per_week": 3,
            "quiet_hours": {"start": "20:00", "end": "09:00", "timezone": "UTC"},
            "block_marketing_on_ticket_priorities": ["urgent"],
        }
        response = await client.put("/v1/contact-policy", json=wanted)
        assert response.status_code == 200, response.text
        assert response.json() == wanted
        assert (await client.get("/v1/contact-policy")).json() == wanted
        wanted["max_outbound_per_week"] = 0
        await client.put("/v1/contact-policy", json=wanted)
        assert (await client.get("/v1/contact-policy")).json()["max_outbound_per_week"] == 0
        # The policy went out on the shared test broker, where a later test's services may
        # still read the topic's last records: leave the default as the latest policy there.
        assert (await client.put("/v1/contact-policy", json=default)).status_code == 200


CONTACTS_CSV = (
    "external_id,first_name,last_name,email,phone,country,company\n"
    "c-1,Anna,Schmidt,anna@example.com,030 1234567,DE,Acme\n"
    "c-2,Bob,Jones,not-an-email,,,Globex\n"
    "c-3,Carla,Rossi,carla@example.com,,IT,\n"
)


class TestImport:
    async def test_a_merged_records_next_import_updates_its_survivor(self, client):
        # The source system keeps both records; a data steward merged them here. Before, the
        # merge dropped the merged record's external id, and each import created it again.
        source = "\n".join(
            json.dumps({"first_name": first, "last_name": "Berg", "external_id": ext})
            for first, ext in (("Anna", "erp-1"), ("Ana", "erp-2"))
        )
        first = (await import_file(client, source, NDJSON)).json()
        survivor, duplicate = first["ids"]
        merge = f"/v1/contacts/{survivor}/merge"
        assert (await client.post(merge, json={"duplicate_ids": [duplicate]})).status_code == 200
        again = (await import_file(client, source, NDJSON)).json()
        assert (again["created"], again["failed"]) == (0, 0)
        assert again["ids"] == [survivor, survivor]
        assert await ids(client) == {survivor}
        # Created by hand with that id: a 409 naming the survivor, where the record now lives.
        error = error_of(
            await client.post("/v1/contacts", json={"first_name": "A", "external_id": "erp-2"}),
            409,
        )
        assert (error["fields"][0]["field"], error["existing_id"]) == ("external_id", survivor)
        # Erased, the survivor frees its external id and its merged record's.
        assert (await client.delete(f"/v1/contacts/{survivor}")).status_code == 204
        for ext in ("erp-1", "erp-2"):
            created = await client.post(
                "/v1/contacts", json={"first_name": "B", "external_id": ext}
            )
            assert created.status_code == 201, created.text

    async def test_a_merge_moving_unique_values_to_the_survivor_succeeds(self, client):
        # Ids in this order: the survivor's row was updated first, taking the duplicate's
        # external id before the duplicate's row gave it up (a 500, for half of all ids).
        survivor = await create(
            client, first_name="Anna", contact_id="00000000-0000-4000-8000-000000000001"
        )
        duplicate = await create(
            client,
            first_name="Ana",
            external_id="erp-2",
            email="ana@example.com",
            contact_id="00000000-0000-4000-8000-000000000002",
        )
        merge = f"/v1/contacts/{survivor['id']}/merge"
        assert (await client.post(merge, json={"duplicate_ids": [duplicate["id"]]})).is_success
        # The survivor had no external id or e-mail: the merge gave it the duplicate's.
        merged = await get(client, survivor["id"])
        assert (merged["external_id"], merged["email"]) == ("erp-2", "ana@example.com")
        other = await create(client, first_name="Ola", external_id="erp-3")
        merge = f"/v1/contacts/{survivor['id']}/merge"
        assert (await client.post(merge, json={"duplicate_ids": [other["id"]]})).is_success
        patch = await client.patch(f"/v1/contacts/{survivor['id']}", json={"external_id": "erp-3"})
        assert patch.status_code == 200 and patch.json()["external_id"] == "erp-3"

    async def test_csv_keeps_good_rows_and_reports_bad_ones(self, client):
        response = await import_file(client, CONTACTS_CSV, CSV)
        assert response.status_code == 200, response.text
        result = response.json()
        counts = ("received", "created", "updated", "unchanged", "failed")
        assert [result[k] for k in counts] == [3, 2, 0, 0, 1]
        [error] = result["errors"]
        assert (error["row"], error["field"]) == (2, "email")
        assert result["ids"][1] is None
        contacts = {c["external_id"]: c for c in await all_contacts(client)}
        assert set(contacts) == {"c-1", "c-3"}
        assert [contacts["c-1"]["id"], contacts["c-3"]["id"]] == [
            result["ids"][0],
            result["ids"][2],
        ]
        assert contacts["c-1"]["phone"] == "+49301234567"
        assert identities(contacts["c-1"]) == {
            ("email", "anna@example.com"),
            ("phone", "+49301234567"),
        }

    async def test_a_csv_file_whose_lines_end_in_cr_is_read(self, client):
        # Excel for Mac's "CSV (Macintosh)" ends its lines with a lone CR: the import was a 500.
        response = await import_file(client, CONTACTS_CSV.replace("\n", "\r"), CSV)
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["created"], result["failed"]) == (2, 1)
        assert [(e["row"], e["field"]) for e in result["errors"]] == [(2, "email")]
        contacts = {c["external_id"]: c for c in await all_contacts(client)}
        assert (contacts["c-1"]["company"], contacts["c-3"]["country"]) == ("Acme", "IT")

    @pytest.mark.parametrize("delimiter", [";", "\t"], ids=["semicolon", "tab"])
    async def test_a_csv_file_delimited_by_semicolons_or_tabs_is_read(self, client, delimiter):
        # Excel set to a European locale writes "CSV" with semicolons (a comma is the decimal
        # sign there): the header was read as one unknown column, and the file refused.
        body = (
            "\ufeffexternal_id;first_name;last_name;email;phone;country;company\r\n"
            "c-1;Anna;Schmidt;anna@example.com;030 1234567;DE;Schmidt, Weber & Co\r\n"
            "c-2;Bob;Jones;not-an-email;;;Globex\r\n"
            '"c-3";"Carla";"Rossi";"carla@example.com";;"IT";"Rossi; Figli"\r\n'
        ).replace(";", delimiter)
        response = await import_file(client, body, CSV)
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["created"], result["failed"]) == (2, 1)
        assert [(e["row"], e["field"]) for e in result["errors"]] == [(2, "email")]
        contacts = {c["external_id"]: c for c in await all_contacts(client)}
        assert contacts["c-1"]["company"] == "Schmidt, Weber & Co"
        assert contacts["c-1"]["phone"] == "+49301234567"
        assert contacts["c-3"]["company"] == f"Rossi{delimiter} Figli"

    async def test_a_comma_delimited_file_with_semicolons_in_its_cells_is_read_by_commas(
        self, client
    ):
        body = 'first_name,company\nAnna,"Acme; Globex; Initech"\nBob,"a;b;c;d"\n'
        result = (await import_file(client, body, CSV)).json()
        assert result["created"] == 2
        companies = {c["company"] for c in await all_contacts(client)}
        assert companies == {"Acme; Globex; Initech", "a;b;c;d"}

    async def test_an_error_names_the_line_of_the_file_its_row_is_on(self, client):
        # Blank lines (and a cell over two lines) are no rows: the row number alone, the
        # row's place among the data rows, sent a reader of the file to the wrong line.
        body = (
            "first_name,email,company\r\n"  # line 1
            "\r\n"
            "Anna,anna@example.com,Acme\r\n"  # line 3, row 1
            "\r\n"
            "\r\n"
            'Bob,not-an-email,"Globex\r\nEurope"\r\n'  # lines 6-7, row 2
            "Carla,carla@example.com,Initech,extra\r\n"  # line 8, row 3
            "\r\n"
            "Dan,anna@example.com,Umbrella\r\n"  # line 10, row 4
        )
        result = (await import_file(client, body, CSV)).json()
        assert (result["received"], result["created"]) == (4, 1)
        assert [(e["row"], e["line"], e["field"]) for e in result["errors"]] == [
            (2, 6, "email"),
            (3, 8, "row"),
            (4, 10, "email"),
        ]
        lines = [
            "",
            json.dumps({"first_name": "Eve"}),  # line 2, row 1
            "   ",
            "{not json",  # line 4, row 2
            json.dumps({"last_name": "NoFirstName"}),  # line 5, row 3
        ]
        result = (await import_file(client, "\r\n".join(lines) + "\r\n", NDJSON)).json()
        assert [(e["row"], e["line"], e["field"]) for e in result["errors"]] == [
            (2, 4, "row"),
            (3, 5, "first_name"),
        ]

    async def test_a_row_of_empty_cells_is_a_blank_line(self, client):
        # Excel writes a row it holds formatting for but no values as delimiters alone: each
        # such row was a failed one ("first_name: Field required"), at the end of many files.
        body = "first_name;email;company\r\n;;\r\nAnna;anna@example.com;\r\n ; ;\r\n;;\r\n"
        result = (await import_file(client, body, CSV)).json()
        assert (result["received"], result["created"], result["failed"]) == (1, 1, 0)
        assert result["ids"][0] is not None

    async def test_blank_lines_before_the_csv_header_are_skipped(self, client):
        # The blank first line was read as a header naming no columns: every row, the real
        # header's too, failed with "more cells than columns".
        body = "\r\n\r\nfirst_name,email\r\nAnna,anna@example.com\r\nBob,not-an-email\r\n"
        result = (await import_file(client, body, CSV)).json()
        assert (result["received"], result["created"]) == (2, 1)
        assert [(e["row"], e["line"], e["field"]) for e in result["errors"]] == [(2, 5, "email")]

    @pytest.mark.parametrize(
        ("before", "delimiter"),
        [
            (";;;\r\n", ";"),
            ("\r\n;;\r\n", ";"),
            (",,,\r\n", ";"),
            (" ; ; \r\n", ","),
            ("\t\t\r\n", "\t"),
            ("\r\n", ";"),
            ('"";"";""\r\n', ";"),
        ],
        ids=["semicolons", "blank-then-semicolons", "commas", "spaced", "tabs", "blank", "quoted"],
    )
    async def test_rows_of_empty_cells_before_the_csv_header_are_skipped(
        self, client, before, delimiter
    ):
        # Excel keeps a row of empty cells above the header as ";;;": it was read as the
        # header (unknown column ''), or its delimiter taken for the file's, and the file
        # refused.
        rows = ["first_name;email;company", "Anna;anna@example.com;Acme", "Bob;nope;"]
        body = before + "".join(row.replace(";", delimiter) + "\r\n" for row in rows)
        response = await import_file(client, body, CSV)
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["received"], result["created"]) == (2, 1)
        header = before.count("\n") + 1
        assert [(e["row"], e["line"], e["field"]) for e in result["errors"]] == [
            (2, header + 2, "email")
        ]
        [anna] = await all_contacts(client)
        assert (anna["first_name"], anna["company"]) == ("Anna", "Acme")

    async def test_a_bad_rows_reason_reads_as_the_apis_422_does(self, client):
        # The row's reason carried pydantic's "Value error, " before the validator's message,
        # which the same value posted to /v1/contacts does not.
        result = (await import_file(client, CONTACTS_CSV, CSV)).json()
        posted = await client.post(
            "/v1/contacts", json={"first_name": "B", "email": "not-an-email"}
        )
        [error] = result["errors"]
        assert error["reason"] == posted.json()["error"]["fields"][0]["reason"]

    async def test_ndjson_keeps_good_rows_and_reports_bad_ones(self, client):
        lines = [
            json.dumps({"first_name": "Anna", "email": "anna@example.com", "external_id": "n-1"}),
            json.dumps({"last_name": "NoFirstName"}),
            "{not json",
            json.dumps(["a", "list"]),
            json.dumps({"first_name": "Dan", "phone": "+1 555 0000"}),
            json.dumps({"first_name": "Eve", "preferences": {"opted_out_channels": ["sms"]}}),
        ]
        response = await import_file(client, "\n".join(lines) + "\n", NDJSON)
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["received"], result["created"], result["failed"]) == (6, 2, 4)
        assert [(e["row"], e["field"]) for e in result["errors"]] == [
            (2, "first_name"),
            (3, "row"),
            (4, "row"),
            (5, "phone"),
        ]
        names = {c["first_name"]: c for c in await all_contacts(client)}
        assert set(names) == {"Anna", "Eve"}
        assert names["Eve"]["preferences"]["opted_out_channels"] == ["sms"]

    async def test_an_ndjson_line_is_split_at_line_feeds_only(self, client):
        # JSON may hold U+2028, U+2029 and U+0085 unescaped in a string (JavaScript's
        # JSON.stringify and ensure_ascii=False write them so): str.splitlines() split such
        # a line in two, and the file's two good rows were four malformed ones.
        lines = [
            {"first_name": "Anna", "company": "Acme\u2028Europe"},
            {"first_name": "Bob\u0085", "last_name": "Jones\u2029"},
        ]
        body = "\r\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\r"
        result = await import_file(client, body + json.dumps({"first_name": "Carl"}), NDJSON)
        result = result.json()
        assert (result["received"], result["created"], result["failed"]) == (3, 3, 0)
        companies = {c["first_name"]: c["company"] for c in await all_contacts(client)}
        assert companies["Anna"] == "Acme\u2028Europe"

    async def test_a_row_holding_u0000_is_reported_and_the_others_kept(self, client):
        # PostgreSQL cannot store U+0000 in text: the whole import was a 500 there.
        csv_file = "first_name,company\nAnna,Acme\nBob,Glo\x00bex\n"
        result = (await import_file(client, csv_file, CSV)).json()
        assert (result["created"], result["failed"]) == (1, 1)
        assert [(e["row"], e["field"]) for e in result["errors"]] == [(2, "company")]
        ndjson = (
            json.dumps({"first_name": "Ca\u0000rl"}) + "\n" + json.dumps({"first_name": "Dora"})
        )
        result = (await import_file(client, ndjson + "\n", NDJSON)).json()
        assert [(e["row"], e["field"]) for e in result["errors"]] == [(1, "first_name")]
        assert {c["first_name"] for c in await all_contacts(client)} == {"Anna", "Dora"}

    async def test_reimporting_the_same_file_creates_nothing(self, client):
        first = (await import_file(client, CONTACTS_CSV, CSV)).json()
        before = await all_contacts(client)
        again = (await import_file(client, CONTACTS_CSV, CSV)).json()
        assert (again["created"], again["updated"], again["unchanged"], again["failed"]) == (
            0,
            0,
            2,
            1,
        )
        assert again["ids"] == first["ids"]
        assert await all_contacts(client) == before

    async def test_a_changed_row_updates_the_contact_with_that_external_id(self, client):
        first = (await import_file(client, CONTACTS_CSV, CSV)).json()
        changed = CONTACTS_CSV.replace(
            "c-3,Carla,Rossi,carla@example.com,,IT,",
            "c-3,Carla,Rossi,carla@new.example,,IT,Initech",
        )
        result = (await import_file(client, changed, CSV)).json()
        assert (result["created"], result["updated"], result["unchanged"]) == (0, 1, 1)
        carla = await get(client, first["ids"][2])
        assert (carla["company"], carla["email"]) == ("Initech", "carla@new.example")
        assert identities(carla) == {("email", "carla@new.example")}
        assert len(await all_contacts(client)) == 2

    async def test_a_row_with_some_preferences_keeps_the_contacts_others(self, client):
        # As with the rest of the row, only what it holds changes: a row naming the preferred
        # channel reset the others, and the customer's SMS opt-out was lost.
        anna = await create(
            client,
            external_id="erp-1",
            preferences={"opted_out_channels": ["sms"], "max_outbound_per_week": 2},
        )
        row = {
            "external_id": "erp-1",
            "first_name": "Anna",
            "preferences": {"preferred_channel": "email"},
        }
        result = (await import_file(client, json.dumps(row) + "\n", NDJSON)).json()
        assert (result["updated"], result["failed"]) == (1, 0)
        assert (await get(client, anna["id"]))["preferences"] == {
            "opted_out_channels": ["sms"],
            "preferred_channel": "email",
            "quiet_hours": None,
            "max_outbound_per_week": 2,
        }
        again = (await import_file(client, json.dumps(row) + "\n", NDJSON)).json()
        assert (again["updated"], again["unchanged"]) == (0, 1)

    async def test_a_row_making_a_secondary_identity_primary_updates_the_contact(self, client):
        # The contact already holds the row's e-mail and phone as further identities: the
        # whole import was a 500 (the identity inserted a second time).
        first = (await import_file(client, CONTACTS_CSV, CSV)).json()
        anna_id = first["ids"][0]
        for kind, value in (("email", "anna@work.example"), ("phone", "+49 30 7654321")):
            response = await client.post(
                f"/v1/contacts/{anna_id}/identities", json={"kind": kind, "value": value}
            )
            assert response.status_code == 201, response.text
        changed = CONTACTS_CSV.replace(
            "anna@example.com,030 1234567", "anna@work.example,030 7654321"
        )
        response = await import_file(client, changed, CSV)
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["updated"], result["unchanged"], result["failed"]) == (1, 1, 1)
        anna = await get(client, anna_id)
        assert (anna["email"], anna["phone"]) == ("anna@work.example", "+49307654321")
        assert identities(anna) == {("email", "anna@work.example"), ("phone", "+49307654321")}

    async def test_rows_clashing_with_a_contact_or_an_earlier_row_are_reported(self, client):
        existing = await create(client, email="taken@example.com")
        body = (
            "first_name,email\nAnna,taken@example.com\nBob,bob@example.com\nBobby,BOB@example.com\n"
        )
        result = (await import_file(client, body, CSV)).json()
        assert result["created"] == 1
        assert [(e["row"], e["field"], e["existing_id"]) for e in result["errors"]] == [
            (1, "email", existing["id"]),
            (3, "email", None),
        ]
        assert "row 2" in result["errors"][1]["reason"]
        assert len(await all_contacts(client)) == 2

    async def test_more_than_the_maximum_rows_is_422_and_writes_nothing(self, client):
        rows = "".join(f"Person{n},p{n}@example.com\n" for n in range(10_001))
        error = error_of(await import_file(client, "first_name,email\n" + rows, CSV), 422)
        assert "10000" in error["message"]
        assert error["fields"][0]["field"] == "body"
        assert await all_contacts(client) == []

    async def test_an_unknown_csv_column_is_422_and_writes_nothing(self, client):
        error = error_of(await import_file(client, "first_name,shoe_size\nAnna,38\n", CSV), 422)
        assert error["fields"][0]["field"] == "header"
        assert "shoe_size" in error["message"]
        assert await all_contacts(client) == []

    async def test_a_column_named_twice_is_422_and_writes_nothing(self, client):
        # The last of the two silently won: the other column's values were dropped.
        body = "first_name,email, email\nAnna,anna@example.com,anna@work.example\n"
        error = error_of(await import_file(client, body, CSV), 422)
        assert error["fields"][0]["field"] == "header"
        assert "email" in error["message"]
        assert await all_contacts(client) == []

    @pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
    async def test_a_wrong_content_type_is_422_and_writes_nothing(self, client, content_type):
        body = json.dumps({"first_name": "Anna"}) + "\n"
        response = await import_file(client, body, {"content-type": content_type})
        assert error_of(response, 422)["fields"][0]["field"] == "content-type"
        assert await all_contacts(client) == []
