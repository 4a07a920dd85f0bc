"""Tickets, agents and teams through the API on a real database; events land in the outbox."""

import json
import uuid
from datetime import datetime, timedelta

from services.support.tests.helpers import apply, new_agent, new_ticket, outbox
from shared import topics
from shared.events import CONTACT_ERASED


def event_types(rows) -> list[str]:
    return [row.event_type for row in rows]


class TestAgents:
    async def test_create_read_update(self, client):
        agent = await new_agent(client, email="ada@support.example", skills=["printers"])
        assert agent["available"] is True and agent["open_tickets"] == 0
        read = await client.get(f"/v1/agents/{agent['id']}")
        assert read.json() == agent
        patched = await client.patch(f"/v1/agents/{agent['id']}", json={"available": False})
        assert patched.status_code == 200
        assert patched.json()["available"] is False
        listed = await client.get("/v1/agents", params={"team": "billing"})
        assert [a["id"] for a in listed.json()["items"]] == [agent["id"]]
        assert (await client.get("/v1/agents", params={"team": "tech"})).json()["items"] == []

    async def test_unknown_agent(self, client):
        response = await client.get(f"/v1/agents/{uuid.uuid4()}")
        assert response.status_code == 404


class TestTeams:
    async def test_team_owns_categories(self, client):
        response = await client.put("/v1/teams/billing", json={"categories": ["invoice", "refund"]})
        assert response.status_code == 200
        assert response.json() == {"name": "billing", "categories": ["invoice", "refund"]}
        await client.put("/v1/teams/billing", json={"categories": ["refund"]})
        teams = (await client.get("/v1/teams")).json()
        assert teams == [{"name": "billing", "categories": ["refund"]}]

    async def test_category_of_another_team_is_a_conflict(self, client):
        await client.put("/v1/teams/billing", json={"categories": ["refund"]})
        response = await client.put("/v1/teams/tech", json={"categories": ["refund"]})
        assert response.status_code == 409
        assert response.json()["error"]["fields"][0]["field"] == "categories"


class TestOpenTicket:
    async def test_open_without_agents_stays_open(self, client):
        ticket = await new_ticket(client, attributes={"product_model": "X-200"})
        assert ticket["status"] == "open" and ticket["agent_id"] is None
        assert ticket["attributes"] == {"product_model": "X-200"}
        read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        assert read["id"] == ticket["id"] and read["messages"] == []
        rows = await outbox(client)
        assert event_types(rows) == ["crm.support.ticket_opened.v1", "crm.interaction.recorded.v1"]
        assert {r.key for r in rows} == {ticket["customer_id"]}
        touch = json.loads(rows[1].value)["data"]
        assert touch["kind"] == "ticket_opened" and touch["direction"] == "inbound"
        assert touch["department"] == "support" and touch["channel"] == "email"
        assert touch["ref"] == {"type": "ticket", "id": ticket["id"]}
        assert touch["interaction_id"] == ticket["id"]

    async def test_routed_to_least_loaded_agent_of_the_categorys_team(self, client):
        await client.put("/v1/teams/tech", json={"categories": ["printers"]})
        busy = await new_agent(client, name="Busy", team="tech", capacity=5)
        free = await new_agent(client, name="Free", team="tech", capacity=5)
        await new_agent(client, name="Other team", team="billing")
        await new_agent(client, name="Away", team="tech", available=False)
        first = await new_ticket(client, category="printers")
        assert first["agent_id"] in (busy["id"], free["id"])
        second = await new_ticket(client, category="printers")
        assert {first["agent_id"], second["agent_id"]} == {busy["id"], free["id"]}
        assert second["status"] == "pending"
        counts = (await client.get("/v1/agents", params={"team": "tech"})).json()["items"]
        assert sorted(a["open_tickets"] for a in counts) == [0, 1, 1]
        assigned = [r for r in await outbox(client) if r.event_type.endswith("assigned.v1")]
        assert json.loads(assigned[0].value)["data"]["automatic"] is True

    async def test_routing_rules_by_priority_and_channel(self, client):
        await client.put("/v1/teams/tech", json={"categories": ["printers"]})
        tech = await new_agent(client, name="Tech", team="tech")
        vip = await new_agent(client, name="Vip", team="vip")
        phone = await new_agent(client, name="Phone", team="phone-desk")
        routing = {
            "rules": [
                {"team": "vip", "priority": "urgent"},
                {"team": "phone-desk", "channel": "phone"},
            ]
        }
        response = await client.put("/v1/routing-rules", json=routing)
        assert response.status_code == 200, response.text
        assert (await client.get("/v1/routing-rules")).json()["rules"][1] == {
            "team": "phone-desk",
            "category": None,
            "channel": "phone",
            "priority": None,
        }
        urgent = await new_ticket(client, category="printers", channel="phone", priority="urgent")
        by_phone = await new_ticket(client, category="printers", channel="phone")
        by_email = await new_ticket(client, category="printers")
        assert urgent["agent_id"] == vip["id"]
        assert by_phone["agent_id"] == phone["id"]
        assert by_email["agent_id"] == tech["id"]  # no rule matches: the category's team

    async def test_bad_routing_rule_changes_nothing(self, client):
        await client.put("/v1/routing-rules", json={"rules": [{"team": "vip"}]})
        response = await client.put(
            "/v1/routing-rules", json={"rules": [{"team": "x", "channel": "pigeon"}]}
        )
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "rules.0.channel"
        assert (await client.get("/v1/routing-rules")).json() == {
            "rules": [{"team": "vip", "category": None, "channel": None, "priority": None}]
        }

    async def test_full_agents_get_nothing(self, client):
        await new_agent(client, capacity=1)
        assert (await new_ticket(client))["status"] == "pending"
        assert (await new_ticket(client))["status"] == "open"

    async def test_only_open_tickets_count_against_capacity(self, client):
        """Resolved and closed tickets free the agent; another agent's load is not theirs."""
        await client.put("/v1/teams/tech", json={"categories": ["printers"]})
        agent = await new_agent(client, team="tech", capacity=1)
        other = await new_agent(client, team="billing", capacity=1)
        first = await new_ticket(client, category="printers")
        assert first["agent_id"] == agent["id"]
        resolved = await client.post(f"/v1/tickets/{first['id']}/resolve", json={})
        assert resolved.json()["status"] == "resolved"
        second = await new_ticket(client, category="printers")
        assert second["agent_id"] == agent["id"]
        await client.post(f"/v1/tickets/{second['id']}/resolve", json={})
        closed = await client.post(f"/v1/tickets/{second['id']}/close")
        assert closed.json()["status"] == "closed"
        third = await new_ticket(client, category="printers")
        assert third["agent_id"] == agent["id"]
        assert (await new_ticket(client, category="printers"))["agent_id"] is None  # full
        agents = {
            a["id"]: a["open_tickets"] for a in (await client.get("/v1/agents")).json()["items"]
        }
        assert agents == {agent["id"]: 1, other["id"]: 0}

    async def test_opened_at_for_imported_history(self, client):
        ticket = await new_ticket(client, opened_at="2025-01-02T03:04:05+01:00")
        assert ticket["opened_at"] == "2025-01-02T02:04:05Z"

    async def test_pii_in_subject_stays_off_the_bus(self, client):
        ticket = await new_ticket(client, subject="Call me on +49 30 1234567, anna@example.com")
        assert "anna@example.com" in ticket["subject"]  # kept in support's own record
        for row in await outbox(client):
            assert b"anna@example.com" not in row.value and b"1234567" not in row.value


class TestLifecycle:
    async def test_open_assign_message_resolve_rate_close(self, client):
        agent = await new_agent(client, available=False)
        ticket = await new_ticket(client, opened_at="2026-11-24T09:00:00Z")  # before its `at`
        tid = ticket["id"]
        assigned = await client.post(f"/v1/tickets/{tid}/assign", json={"agent_id": agent["id"]})
        assert assigned.status_code == 200 and assigned.json()["status"] == "pending"
        reply = await client.post(
            f"/v1/tickets/{tid}/messages",
            json={"author_type": "agent", "author_id": agent["id"], "body": "Try a reset."},
        )
        assert reply.status_code == 201
        answer = await client.post(
            f"/v1/tickets/{tid}/messages", json={"author_type": "customer", "body": "Works!"}
        )
        assert answer.status_code == 201
        resolved = await client.post(
            f"/v1/tickets/{tid}/resolve", json={"at": "2026-11-24T10:00:00Z"}
        )
        assert resolved.json()["status"] == "resolved"
        assert resolved.json()["resolved_at"] == "2026-11-24T10:00:00Z"
        rated = await client.post(
            f"/v1/tickets/{tid}/satisfaction", json={"score": 5, "comment": "Fast!"}
        )
        assert rated.status_code == 200 and rated.json()["satisfaction_score"] == 5
        closed = await client.post(f"/v1/tickets/{tid}/close")
        assert closed.json()["status"] == "closed"

        final = (await client.get(f"/v1/tickets/{tid}")).json()
        assert [m["body"] for m in final["messages"]] == ["Try a reset.", "Works!"]
        assert final["first_response_at"] == final["messages"][0]["sent_at"]
        assert event_types(await outbox(client, topics.SUPPORT)) == [
            "crm.support.ticket_opened.v1",
            "crm.support.ticket_assigned.v1",
            "crm.support.ticket_message_added.v1",
            "crm.support.ticket_message_added.v1",
            "crm.support.ticket_resolved.v1",
            "crm.support.ticket_satisfaction_rated.v1",
            "crm.support.ticket_closed.v1",
        ]
        closed_event = json.loads((await outbox(client, topics.SUPPORT))[-1].value)["data"]
        assert closed_event["reason"] == "agent"  # not the customer's erasure
        touches = [json.loads(r.value)["data"] for r in await outbox(client, topics.INTERACTIONS)]
        assert [(t["kind"], t["direction"], t["actor"]) for t in touches] == [
            ("ticket_opened", "inbound", None),
            ("ticket_reply", "outbound", agent["id"]),
            ("ticket_reply", "inbound", None),
        ]
        for row in await outbox(client):
            assert b"Try a reset" not in row.value and b"Fast!" not in row.value

    async def test_reopen_and_customer_reply_on_resolved(self, client):
        ticket = await new_ticket(client)
        tid = ticket["id"]
        await client.post(f"/v1/tickets/{tid}/resolve")
        reopened = await client.post(f"/v1/tickets/{tid}/reopen")
        assert reopened.json()["status"] == "open" and reopened.json()["resolved_at"] is None
        await client.post(f"/v1/tickets/{tid}/resolve")
        await client.post(
            f"/v1/tickets/{tid}/messages", json={"author_type": "customer", "body": "Again!"}
        )
        read = (await client.get(f"/v1/tickets/{tid}")).json()
        assert read["status"] == "open" and read["resolved_at"] is None
        types = event_types(await outbox(client, topics.SUPPORT))
        assert types.count("crm.support.ticket_reopened.v1") == 2

    async def test_an_erased_customers_ticket_takes_no_more_of_what_they_say(self, client):
        ticket = await new_ticket(client)
        tid = ticket["id"]
        await client.post(f"/v1/tickets/{tid}/resolve")
        erased = {"contact_id": ticket["customer_id"], "erased_at": "2026-11-24T00:00:00Z"}
        await apply(client, CONTACT_ERASED, erased)
        before = len(await outbox(client))
        # Before, the message was stored in full and published under the erased id.
        said = {"author_type": "customer", "body": "I'm Bob Smith, call me on +49 30 1234567"}
        rating = {"score": 1, "comment": "Bob Smith is not happy"}
        for path, body in (("messages", said), ("satisfaction", rating)):
            refused = await client.post(f"/v1/tickets/{tid}/{path}", json=body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["fields"][0]["field"] == "ticket_id"
        assert len(await outbox(client)) == before
        read = (await client.get(f"/v1/tickets/{tid}")).json()
        assert read["satisfaction_comment"] is None
        assert all("Bob" not in m["body"] for m in read["messages"])

    async def test_a_reply_written_before_the_resolution_reopens_after_it(self, client):
        """An e-mail sent before the agent resolved the ticket, delivered after: the reopening
        is published later than the resolution, so consumers do not keep it resolved."""
        ticket = await new_ticket(client)
        tid = ticket["id"]
        resolved = (await client.post(f"/v1/tickets/{tid}/resolve")).json()["resolved_at"]
        sent_at = datetime.fromisoformat(resolved) - timedelta(minutes=1)
        reply = await client.post(
            f"/v1/tickets/{tid}/messages",
            json={
                "author_type": "customer",
                "body": "Still broken",
                "sent_at": sent_at.isoformat(),
            },
        )
        assert reply.status_code == 201
        changes = {
            r.event_type: json.loads(r.value)["data"] for r in await outbox(client, topics.SUPPORT)
        }
        reopened_at = changes["crm.support.ticket_reopened.v1"]["reopened_at"]
        assert datetime.fromisoformat(reopened_at) > datetime.fromisoformat(resolved)
        assert changes["crm.support.ticket_message_added.v1"]["sent_at"] == reply.json()["sent_at"]

    async def test_illegal_transitions_are_409_and_change_nothing(self, client):
        ticket = await new_ticket(client)
        tid = ticket["id"]
        before = len(await outbox(client))
        for path, body in (
            ("close", None),
            ("reopen", None),
            ("satisfaction", {"score": 3}),
        ):
            response = await client.post(f"/v1/tickets/{tid}/{path}", json=body)
            assert response.status_code == 409, (path, response.text)
            assert response.json()["error"]["code"] == "invalid_transition"
        await client.post(f"/v1/tickets/{tid}/resolve")
        await client.post(f"/v1/tickets/{tid}/close")
        after_close = len(await outbox(client))
        response = await client.post(
            f"/v1/tickets/{tid}/messages", json={"author_type": "customer", "body": "hello?"}
        )
        assert response.status_code == 409
        assert len(await outbox(client)) == after_close == before + 2
        assert (await client.get(f"/v1/tickets/{tid}")).json()["messages"] == []


class TestListTickets:
    async def test_filters_and_pages(self, client):
        customer = str(uuid.uuid4())
        agent = await new_agent(client, available=False)
        made = [
            await new_ticket(client, customer_id=customer, opened_at=f"2026-01-0{d}T00:00:00Z")
            for d in range(1, 6)
        ]
        await new_ticket(client, priority="urgent")
        await client.post(f"/v1/tickets/{made[0]['id']}/assign", json={"agent_id": agent["id"]})

        seen, cursor = [], None
        while True:
            params = {"customer_id": customer, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/tickets", params=params)).json()
            seen += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [t["id"] for t in reversed(made)]  # newest first
        by_agent = (await client.get("/v1/tickets", params={"agent_id": agent["id"]})).json()
        assert [t["id"] for t in by_agent["items"]] == [made[0]["id"]]
        pending = (await client.get("/v1/tickets", params={"status": "pending"})).json()
        assert [t["id"] for t in pending["items"]] == [made[0]["id"]]
        urgent = (await client.get("/v1/tickets", params={"priority": "urgent"})).json()
        assert len(urgent["items"]) == 1

    async def test_unknown_ticket(self, client):
        assert (await client.get(f"/v1/tickets/{uuid.uuid4()}")).status_code == 404
        response = await client.post(f"/v1/tickets/{uuid.uuid4()}/resolve")
        assert response.status_code == 404
