"""Similar-case retrieval (a small labelled set: the right answer must rank first) and macros."""

import uuid

import pytest

from services.support import rules
from services.support.tests.helpers import new_agent, new_ticket

# (subject, description, category, attributes, the agent's fix)
SOLVED = [
    (
        "Printer prints blank pages",
        "After the firmware update the X-200 printer only prints blank pages.",
        "printers",
        {"product_model": "X-200"},
        "Roll back firmware to 2.1 and clean the print head.",
    ),
    (
        "Paper jam in tray 2",
        "The X-200 keeps jamming paper from tray 2.",
        "printers",
        {"product_model": "X-200"},
        "Replace the tray 2 pickup roller.",
    ),
    (
        "Invoice charged twice",
        "My credit card was charged twice for invoice 1042.",
        "billing",
        {},
        "Refunded the duplicate charge.",
    ),
    (
        "Cannot log in to the portal",
        "Password reset e-mail never arrives, cannot log in.",
        "accounts",
        {},
        "Whitelisted our mail domain; reset link resent.",
    ),
    (
        "Router drops wifi every hour",
        "The R-9 router disconnects wifi clients every hour.",
        "network",
        {"product_model": "R-9"},
        "Disable band steering in the R-9 settings.",
    ),
]

QUERIES = [
    # (new ticket, index of the case that must rank first)
    (
        (
            "Blank pages since update",
            "X-200 prints nothing but white pages",
            "printers",
            {"product_model": "X-200"},
        ),
        0,
    ),
    (("Paper stuck", "paper jams all the time from tray 2", "printers", {}), 1),
    (("Double charge on my card", "charged twice for the same invoice", None, {}), 2),
    (("Login problem", "I never get the password reset mail", None, {}), 3),
    (("wifi keeps dropping", "clients lose wifi, router R-9", None, {"product_model": "R-9"}), 4),
]


def case(index: int, subject: str, description: str, category, attributes) -> rules.Case:
    return rules.Case(uuid.UUID(int=index + 1), f"{subject}\n{description}", category, attributes)


class TestRankSimilar:
    @pytest.mark.parametrize(("query", "expected"), QUERIES)
    def test_right_case_ranks_first(self, query, expected):
        cases = [case(i, s, d, c, a) for i, (s, d, c, a, _) in enumerate(SOLVED)]
        target = case(99, *query)
        ranked = rules.rank_similar(target, cases, limit=5)
        assert ranked[0][0] == uuid.UUID(int=expected + 1), ranked

    def test_nothing_in_common_is_not_returned(self):
        cases = [case(0, "alpha", "beta", None, {})]
        assert rules.rank_similar(case(9, "gamma", "delta", None, {}), cases, 5) == []

    def test_limit_and_self_excluded(self):
        cases = [case(i, "printer jam", "tray", None, {}) for i in range(4)]
        ranked = rules.rank_similar(cases[0], cases, limit=2)
        assert len(ranked) == 2 and cases[0].id not in [tid for tid, _ in ranked]


async def test_similar_endpoint_returns_how_it_was_solved(client):
    agent = await new_agent(client, capacity=100)
    ids = []
    for subject, description, category, attributes, fix in SOLVED:
        ticket = await new_ticket(
            client,
            subject=subject,
            description=description,
            category=category,
            attributes=attributes,
        )
        await client.post(
            f"/v1/tickets/{ticket['id']}/messages",
            json={"author_type": "agent", "author_id": agent["id"], "body": fix},
        )
        await client.post(f"/v1/tickets/{ticket['id']}/resolve")
        ids.append(ticket["id"])
    unresolved = await new_ticket(client, subject="Blank pages", description="X-200 blank pages")
    (subject, description, category, attributes), _ = QUERIES[0]
    query = await new_ticket(
        client, subject=subject, description=description, category=category, attributes=attributes
    )
    response = await client.get(f"/v1/tickets/{query['id']}/similar", params={"limit": 3})
    assert response.status_code == 200
    items = response.json()["items"]
    assert items[0]["ticket_id"] == ids[0]
    assert items[0]["resolution"] == SOLVED[0][4]
    assert unresolved["id"] not in [i["ticket_id"] for i in items]
    assert len(items) <= 3
    assert (await client.get(f"/v1/tickets/{uuid.uuid4()}/similar")).status_code == 404
    assert (await client.get(f"/v1/tickets/{query['id']}/similar?limit=51")).status_code == 422


async def test_macros(client):
    body = {"name": "Firmware rollback", "body": "Please roll back to 2.1.", "category": "printers"}
    created = await client.post("/v1/macros", json=body)
    assert created.status_code == 201
    macro = created.json()
    assert (await client.get(f"/v1/macros/{macro['id']}")).json() == macro
    duplicate = await client.post("/v1/macros", json=body)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["fields"][0]["field"] == "name"
    bad = await client.post("/v1/macros", json={"name": "x", "body": ""})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "body"
    assert [m["id"] for m in (await client.get("/v1/macros")).json()["items"]] == [macro["id"]]
    assert (await client.get("/v1/macros", params={"category": "billing"})).json()["items"] == []
    assert (await client.delete(f"/v1/macros/{macro['id']}")).status_code == 204
    assert (await client.get(f"/v1/macros/{macro['id']}")).status_code == 404
