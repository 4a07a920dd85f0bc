"""GET /v1/contacts/duplicates answers what scoring every pair of every block answers.

The service counts blocks in the database, loads only their members (whole blocks,
ROWS_PER_READ contacts at a time) and scores only the pairs whose names come near the
threshold (rules.look_alikes); this compares its pages with the straightforward computation
over every active contact, on a seeded random contact base
with blocks just below, at and just above MAX_BLOCK, sizes that merges and erasures changed,
contacts sharing both keys and names that fold to nothing."""

import json
import random
from collections import defaultdict
from itertools import combinations
from typing import Any

import httpx
import pytest

from services.contacts import duplicates, rules
from services.contacts.duplicates import MAX_BLOCK
from services.contacts.tests.test_api import all_contacts

FIRST = ["Anna", "Ana", "Anne", "Peter", "Petra", "Pete", "José", "JOSE", "Seán", "Sean", "Mary"]
FIRST += ["Marie", "Bob", "Robert", "Zoë", "Zoe", "Liam", "—", "A.", "Jean-Luc", "Jean Luc"]
LAST = ["Schmidt", "Schmid", "O'Neil", "O Neil", "ONeil", "García", "Garcia", "Smith-Jones"]
LAST += ["Smith Jones", "Van der Berg", "Vanderberg", "Weber", "Webber", "Ng", "!!!", None]
COMPANY = ["Acme GmbH", "ACME GmbH", "Acme", "Globex Inc.", "Globex", "Initech", "Umbrella AG"]
COMPANY += ["Umbrella", "&", "Hooli", "Hooli Inc", "Stark Industries", None, None, None]


def people(seed: int) -> list[dict[str, Any]]:
    """Rows for the import: whole blocks at the MAX_BLOCK edges, and a random mix."""
    rng = random.Random(seed)

    def person(**fixed: Any) -> dict[str, Any]:
        row = {
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST),
            "company": rng.choice(COMPANY),
            **fixed,
        }
        return {k: v for k, v in row.items() if v is not None}

    rows = [person(last_name="Kowalski") for _ in range(MAX_BLOCK + 1)]  # 200 after a merge
    rows += [person(last_name="Nakamura") for _ in range(MAX_BLOCK + 2)]  # 201 after an erasure
    rows += [person(last_name="Lindqvist") for _ in range(MAX_BLOCK - 1)]
    rows += [person(company="Vandelay Industries") for _ in range(MAX_BLOCK)]
    rows += [person(company="Wayne Enterprises") for _ in range(MAX_BLOCK + 1)]
    rows += [person() for _ in range(400)]
    rng.shuffle(rows)
    return rows


def every_pair_scored(contacts: list[dict[str, Any]]) -> list[list[Any]]:
    """Every pair of every block of 2 to MAX_BLOCK active contacts, scored one by one, best
    first."""
    blocks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for contact in contacts:
        for kind in ("last_name", "company"):
            if key := rules.blocking_key(contact[kind]):
                blocks[(kind, key)].append(contact)
    scores: dict[tuple[str, str], float] = {}
    for members in blocks.values():
        if len(members) > MAX_BLOCK:
            continue
        for a, b in combinations(members, 2):
            pair = (min(a["id"], b["id"]), max(a["id"], b["id"]))
            scores[pair] = rules.similarity(
                rules.Person(a["first_name"], a["last_name"], a["company"]),
                rules.Person(b["first_name"], b["last_name"], b["company"]),
            )
    return sorted(([a, b, s] for (a, b), s in scores.items()), key=lambda p: (-p[2], p[0], p[1]))


async def every_pair(client: httpx.AsyncClient, params: dict[str, Any]) -> list[list[Any]]:
    """Every pair the API lists, following next_cursor to the end."""
    found: list[list[Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/contacts/duplicates", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found += [[p["contact_id"], p["duplicate_id"], p["score"]] for p in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            return found


@pytest.fixture
async def contact_base(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    body = "\n".join(json.dumps(row) for row in people(seed=20240611))
    response = await client.post(
        "/v1/contacts/import", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["errors"] == []
    contacts = await all_contacts(client, limit=1000)
    by_last = defaultdict(list)
    for contact in contacts:
        by_last[contact["last_name"]].append(contact["id"])
    survivor, duplicate = by_last["Kowalski"][:2]
    response = await client.post(
        f"/v1/contacts/{survivor}/merge", json={"duplicate_ids": [duplicate]}
    )
    assert response.status_code == 200, response.text
    response = await client.delete(f"/v1/contacts/{by_last['Nakamura'][0]}")
    assert response.status_code == 204, response.text
    return await all_contacts(client, limit=1000)


def blocks_at_the_edges(contacts: list[dict[str, Any]]) -> None:
    """The cases the comparison is meant to cover are in the data."""
    sizes: dict[tuple[str, str | None], int] = defaultdict(int)
    both = 0
    for contact in contacts:
        keys = [(kind, rules.blocking_key(contact[kind])) for kind in ("last_name", "company")]
        for key in keys:
            sizes[key] += 1
        both += all(key for _, key in keys)
    # A merged record keeps its names (and so its keys), an erased one does not.
    assert sizes[("last_name", "kowalski")] == MAX_BLOCK  # 201 less a merged one
    assert sizes[("last_name", "nakamura")] == MAX_BLOCK + 1  # 202 less an erased one
    assert sizes[("last_name", "lindqvist")] == MAX_BLOCK - 1
    assert sizes[("company", "vandelayindustries")] == MAX_BLOCK
    assert sizes[("company", "wayneenterprises")] == MAX_BLOCK + 1
    assert both > 500  # contacts sharing both keys with others: pairs in two blocks
    assert any(not rules.folded(c["last_name"] or "") for c in contacts)  # a name folding to ""


@pytest.fixture(params=[None, 1, 250], ids=["one read", "a block a read", "reads of 250"])
def rows_per_read(request, monkeypatch):
    """Blocks read ``duplicates.ROWS_PER_READ`` contacts at a time: the same pairs whether
    every block fits one read, each read holds one block, or reads end between blocks."""
    if request.param:
        monkeypatch.setattr(duplicates, "ROWS_PER_READ", request.param)


class TestDuplicatePairs:
    async def test_pages_hold_what_scoring_every_pair_of_every_block_gives(
        self, client, contact_base, rows_per_read
    ):
        blocks_at_the_edges(contact_base)
        scored = every_pair_scored(contact_base)
        # 85 is the default threshold; at 20 any pair may pass, at 100 only equal names.
        for min_score in (None, 75, 93.3, 100):
            threshold = 85 if min_score is None else min_score
            expected = [pair for pair in scored if pair[2] >= threshold]
            params = {"limit": 1000} | ({} if min_score is None else {"min_score": min_score})
            assert len(expected) > 50, min_score
            assert await every_pair(client, params) == expected, min_score
        response = await client.get("/v1/contacts/duplicates", params={"min_score": 20})
        page = [[p["contact_id"], p["duplicate_id"], p["score"]] for p in response.json()["items"]]
        assert page == [pair for pair in scored if pair[2] >= 20][:50]
