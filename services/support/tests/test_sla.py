"""SLA policies and the scheduler: re-assignment of unattended tickets and breach flags,
driven by a controlled clock (``sla.sweep(session, now)``), never by sleeping."""

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from services.support import rules, sla
from services.support.app import create_app
from services.support.config import SupportSettings
from services.support.models import Ticket
from services.support.tests.helpers import new_agent, new_ticket, outbox
from shared import topics
from shared.testing import app_of, running

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
POLICY = rules.SlaPolicy(
    first_response_minutes=60, resolution_minutes=480, reassign_after_minutes=15
)
CLOCK = rules.SlaClock(
    status="pending",
    opened_at=T0,
    assigned_at=T0,
    agent_replied_at=None,
    first_response_at=None,
    resolved_at=None,
    first_response_breached=False,
    resolution_breached=False,
)


class TestSlaRules:
    def test_nothing_due_early(self):
        assert rules.sla_check(CLOCK, POLICY, T0 + timedelta(minutes=14)) == rules.SlaVerdict()

    def test_unanswered_ticket_is_reassigned(self):
        verdict = rules.sla_check(CLOCK, POLICY, T0 + timedelta(minutes=15))
        assert verdict == rules.SlaVerdict(reassign=True)

    def test_an_answer_since_assignment_stops_reassignment(self):
        answered = replace(CLOCK, agent_replied_at=T0 + timedelta(minutes=5))
        assert not rules.sla_check(answered, POLICY, T0 + timedelta(minutes=30)).reassign
        reassigned_later = replace(answered, assigned_at=T0 + timedelta(minutes=10))
        assert rules.sla_check(reassigned_later, POLICY, T0 + timedelta(minutes=30)).reassign

    def test_breaches_are_reported_once(self):
        late = T0 + timedelta(hours=9)
        assert rules.sla_check(CLOCK, POLICY, late) == rules.SlaVerdict(True, True, True)
        flagged = replace(CLOCK, first_response_breached=True, resolution_breached=True)
        assert rules.sla_check(flagged, POLICY, late) == rules.SlaVerdict(reassign=True)

    def test_first_response_met(self):
        answered = replace(CLOCK, first_response_at=T0 + timedelta(minutes=30))
        assert not rules.sla_check(
            answered, POLICY, T0 + timedelta(hours=2)
        ).first_response_breached

    @pytest.mark.parametrize("status", ["resolved", "closed"])
    def test_tickets_finished_in_time_are_left_alone(self, status):
        finished = replace(CLOCK, status=status, resolved_at=T0 + timedelta(minutes=30))
        assert rules.sla_check(finished, POLICY, T0 + timedelta(days=9)) == rules.SlaVerdict()

    def test_an_answer_after_the_target_is_a_breach(self):
        """Answered late before any sweep flagged it: still a breach (once)."""
        late = replace(CLOCK, first_response_at=T0 + timedelta(minutes=61))
        verdict = rules.sla_check(late, POLICY, T0 + timedelta(minutes=62))
        assert verdict.first_response_breached and not verdict.resolution_breached
        in_time = replace(CLOCK, first_response_at=T0 + timedelta(minutes=60))
        assert not rules.sla_check(in_time, POLICY, T0 + timedelta(hours=2)).first_response_breached
        flagged = replace(late, first_response_breached=True)
        assert not rules.sla_check(flagged, POLICY, T0 + timedelta(hours=2)).first_response_breached

    @pytest.mark.parametrize("status", ["resolved", "closed"])
    def test_a_resolution_after_the_target_is_a_breach(self, status):
        late = replace(
            CLOCK,
            status=status,
            first_response_at=T0 + timedelta(minutes=5),
            resolved_at=T0 + timedelta(hours=9),
        )
        verdict = rules.sla_check(late, POLICY, T0 + timedelta(days=9))
        assert verdict == rules.SlaVerdict(resolution_breached=True)
        flagged = replace(late, resolution_breached=True)
        assert rules.sla_check(flagged, POLICY, T0 + timedelta(days=9)) == rules.SlaVerdict()

    def test_a_resolution_ends_the_wait_for_a_first_answer(self):
        resolved = replace(CLOCK, status="resolved", resolved_at=T0 + timedelta(minutes=90))
        verdict = rules.sla_check(resolved, POLICY, T0 + timedelta(days=9))
        assert verdict == rules.SlaVerdict(first_response_breached=True)
        in_time = replace(resolved, resolved_at=T0 + timedelta(minutes=30))
        assert rules.sla_check(in_time, POLICY, T0 + timedelta(days=9)) == rules.SlaVerdict()

    def test_a_reopened_ticket_is_unresolved_again(self):
        # An active ticket is not resolved, whatever an earlier resolution left behind.
        reopened = replace(CLOCK, status="open", assigned_at=None, resolved_at=T0)
        verdict = rules.sla_check(reopened, POLICY, T0 + timedelta(hours=9))
        assert verdict == rules.SlaVerdict(first_response_breached=True, resolution_breached=True)

    def test_no_targets_no_verdicts(self):
        assert (
            rules.sla_check(CLOCK, rules.SlaPolicy(), T0 + timedelta(days=9)) == rules.SlaVerdict()
        )


async def sweep_at(client, now, batch=500):
    return await sla.sweep(app_of(client).state.session_factory, now, batch)


class TestSweep:
    async def test_policies_api(self, client):
        body = {
            "first_response_minutes": 60,
            "resolution_minutes": 480,
            "reassign_after_minutes": 15,
        }
        response = await client.put("/v1/sla-policies/urgent", json=body)
        assert response.status_code == 200
        assert response.json() == {**body, "priority": "urgent"}
        assert (await client.get("/v1/sla-policies")).json() == [{**body, "priority": "urgent"}]
        bad = await client.put("/v1/sla-policies/urgent", json={"resolution_minutes": 0})
        assert bad.status_code == 422
        assert (await client.put("/v1/sla-policies/whenever", json={})).status_code == 422

    async def test_unanswered_ticket_moves_to_another_free_agent(self, client):
        await client.put(
            "/v1/sla-policies/high",
            json={"reassign_after_minutes": 15, "first_response_minutes": 60},
        )
        first = await new_agent(client, name="First")
        ticket = await new_ticket(client, priority="high")
        assert ticket["agent_id"] == first["id"]
        # Opened and assigned an hour ago: the agent's answer below is dated before now (a
        # time ahead of the server's clock is refused).
        assigned_at = datetime.now(UTC) - timedelta(hours=1)
        async with app_of(client).state.session_factory() as session:
            await session.execute(
                update(Ticket)
                .where(Ticket.id == uuid.UUID(ticket["id"]))
                .values(opened_at=assigned_at, assigned_at=assigned_at)
            )
            await session.commit()
        second = await new_agent(client, name="Second")

        early = await sweep_at(client, assigned_at + timedelta(minutes=14))
        assert early.reassigned == 0
        moved = await sweep_at(client, assigned_at + timedelta(minutes=15))
        assert moved.reassigned == 1
        read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        assert read["agent_id"] == second["id"]

        # The new agent answers in time: no further move, then the first-response SLA is met.
        answer = await client.post(
            f"/v1/tickets/{ticket['id']}/messages",
            json={
                "author_type": "agent",
                "author_id": second["id"],
                "body": "Looking into it",
                "sent_at": (assigned_at + timedelta(minutes=20)).isoformat(),
            },
        )
        assert answer.status_code == 201, answer.text
        later = await sweep_at(client, assigned_at + timedelta(hours=5))
        assert later.reassigned == 0 and later.breaches == 0

        events = [r for r in await outbox(client, topics.SUPPORT)]
        [reassigned] = [r for r in events if r.event_type == "crm.support.ticket_reassigned.v1"]
        data = json.loads(reassigned.value)["data"]
        assert data["previous_agent_id"] == first["id"] and data["agent_id"] == second["id"]
        assert reassigned.key == ticket["customer_id"]

    async def test_an_earlier_answer_arriving_late_does_not_undo_a_later_one(self, client):
        """An agent's message dated before their last answer (a reply synced late from a mail
        client, an import) took the ticket's last answer back to its date: before the
        assignment, so the sweep moved a ticket its agent had answered."""
        await client.put("/v1/sla-policies/normal", json={"reassign_after_minutes": 15})
        agent = await new_agent(client, name="First")
        ticket = await new_ticket(client)
        assigned_at = datetime.now(UTC) - timedelta(hours=1)
        async with app_of(client).state.session_factory() as session:
            await session.execute(
                update(Ticket)
                .where(Ticket.id == uuid.UUID(ticket["id"]))
                .values(opened_at=assigned_at - timedelta(minutes=30), assigned_at=assigned_at)
            )
            await session.commit()
        await new_agent(client, name="Second")
        for minutes in (5, -20):  # answered since the assignment; then the earlier answer
            answer = await client.post(
                f"/v1/tickets/{ticket['id']}/messages",
                json={
                    "author_type": "agent",
                    "author_id": agent["id"],
                    "body": "Looking into it",
                    "sent_at": (assigned_at + timedelta(minutes=minutes)).isoformat(),
                },
            )
            assert answer.status_code == 201, answer.text

        assert (await sweep_at(client, assigned_at + timedelta(minutes=30))).reassigned == 0
        read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        assert read["agent_id"] == agent["id"]
        assert read["first_response_at"] == read["messages"][0]["sent_at"]  # the earlier one

    async def test_nobody_free_means_it_stays_and_breaches_are_flagged_once(self, client):
        await client.put(
            "/v1/sla-policies/urgent",
            json={
                "reassign_after_minutes": 5,
                "first_response_minutes": 30,
                "resolution_minutes": 60,
            },
        )
        only = await new_agent(client)
        ticket = await new_ticket(client, priority="urgent")
        opened = datetime.fromisoformat(ticket["opened_at"])
        result = await sweep_at(client, opened + timedelta(hours=2))
        assert (result.reassigned, result.breaches) == (0, 2)
        again = await sweep_at(client, opened + timedelta(hours=3))
        assert (again.reassigned, again.breaches) == (0, 0)
        read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        assert read["agent_id"] == only["id"]
        assert read["first_response_breached_at"] is not None
        breaches = [
            json.loads(r.value)["data"]["target"]
            for r in await outbox(client, topics.SUPPORT)
            if r.event_type == "crm.support.ticket_sla_breached.v1"
        ]
        assert sorted(breaches) == ["first_response", "resolution"]

    async def test_a_sweep_reaches_every_ticket_however_long_the_backlog(self, client):
        """Tickets already flagged stay active: a sweep that took only the oldest batch would
        check them again each time and never reach the newer ones."""
        await client.put("/v1/sla-policies/high", json={"first_response_minutes": 30})
        tickets = [await new_ticket(client, priority="high") for _ in range(5)]
        newest = max(datetime.fromisoformat(t["opened_at"]) for t in tickets)
        result = await sweep_at(client, newest + timedelta(hours=1), batch=2)
        assert (result.reassigned, result.breaches) == (0, 5)
        for ticket in tickets:
            read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
            assert read["first_response_breached_at"] is not None
        again = await sweep_at(client, newest + timedelta(hours=2), batch=2)
        assert (again.reassigned, again.breaches) == (0, 0)

    @pytest.mark.parametrize("policy", [True, False], ids=["with-policy", "no-policy"])
    async def test_a_ticket_nobody_was_free_for_is_assigned_by_the_sweep(self, client, policy):
        """Filed while no agent was free, the ticket waits for the sweep (docs/support.md,
        "Routing"), which assigns it as filing it would have: a turn of the routing, the
        ticket pending, ``ticket_assigned`` (automatic). Also for a priority with no SLA policy:
        the wait for an agent is no SLA target."""
        if policy:
            await client.put("/v1/sla-policies/normal", json={"reassign_after_minutes": 15})
        busy = await new_agent(client, name="Busy", capacity=1)
        first = await new_ticket(client)
        waiting = [await new_ticket(client) for _ in range(2)]
        assert first["agent_id"] == busy["id"]
        assert [t["agent_id"] for t in waiting] == [None, None]
        later = datetime.fromisoformat(waiting[-1]["opened_at"]) + timedelta(minutes=1)
        assert (await sweep_at(client, later)).assigned == 0  # still nobody free

        free = await new_agent(client, name="Free", capacity=1)
        swept = await sweep_at(client, later)
        assert (swept.assigned, swept.reassigned) == (1, 0)  # the oldest, up to capacity
        oldest, newest = [(await client.get(f"/v1/tickets/{t['id']}")).json() for t in waiting]
        assert (oldest["status"], oldest["agent_id"]) == ("pending", free["id"])
        assert (newest["status"], newest["agent_id"]) == ("open", None)
        assigned = [
            json.loads(r.value)["data"]
            for r in await outbox(client, topics.SUPPORT)
            if r.event_type == "crm.support.ticket_assigned.v1"
        ]
        assert datetime.fromisoformat(assigned[-1].pop("assigned_at")) == later
        assert assigned[-1] == {
            "ticket_id": oldest["id"],
            "customer_id": oldest["customer_id"],
            "agent_id": free["id"],
            "previous_agent_id": None,
            "automatic": True,
        }
        assert len(assigned) == 2  # the first ticket's at filing, the oldest waiting one's

    async def test_other_priorities_and_resolved_tickets_are_ignored(self, client):
        await client.put("/v1/sla-policies/urgent", json={"resolution_minutes": 1})
        normal = await new_ticket(client, priority="normal")
        done = await new_ticket(client, priority="urgent")
        await client.post(f"/v1/tickets/{done['id']}/resolve")
        result = await sweep_at(
            client, datetime.fromisoformat(normal["opened_at"]) + timedelta(days=1)
        )
        assert (result.reassigned, result.breaches) == (0, 0)


class TestLateAnswers:
    """An answer or resolution after its target, before a sweep flagged it (the sweep runs
    every few seconds, may be down, and an imported ticket may be overdue when filed): one
    breach per target, flagged by the answer or resolution, never again by a sweep."""

    async def test_late_answer_and_resolution_are_breached_once(self, client):
        await client.put(
            "/v1/sla-policies/high", json={"first_response_minutes": 60, "resolution_minutes": 240}
        )
        await client.put("/v1/sla-policies/urgent", json={"resolution_minutes": 120})
        agent = await new_agent(client)
        opened_at = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
        answered = await new_ticket(client, priority="high", opened_at=opened_at)
        reply = await client.post(
            f"/v1/tickets/{answered['id']}/messages",
            json={"author_type": "agent", "author_id": agent["id"], "body": "Looking into it"},
        )
        assert reply.status_code == 201
        read = (await client.get(f"/v1/tickets/{answered['id']}")).json()
        assert read["first_response_breached_at"] is not None
        assert read["resolution_breached_at"] is None  # 3 of 4 hours: not due yet
        resolved = await new_ticket(client, priority="urgent", opened_at=opened_at)
        read = (await client.post(f"/v1/tickets/{resolved['id']}/resolve")).json()
        assert read["resolution_breached_at"] is not None

        swept = await sweep_at(client, datetime.now(UTC))
        assert swept.breaches == 0
        breaches = [
            json.loads(r.value)["data"]
            for r in await outbox(client, topics.SUPPORT)
            if r.event_type == "crm.support.ticket_sla_breached.v1"
        ]
        assert [(b["ticket_id"], b["target"]) for b in breaches] == [
            (answered["id"], "first_response"),
            (resolved["id"], "resolution"),
        ]

    async def test_a_breach_the_sweep_flagged_first_is_not_flagged_again(self, client):
        await client.put(
            "/v1/sla-policies/high", json={"first_response_minutes": 60, "resolution_minutes": 120}
        )
        agent = await new_agent(client)
        opened_at = datetime.now(UTC) - timedelta(hours=3)
        ticket = await new_ticket(client, priority="high", opened_at=opened_at.isoformat())
        tid = ticket["id"]
        swept = await sweep_at(client, opened_at + timedelta(hours=2, minutes=1))
        assert swept.breaches == 2
        flagged = (await client.get(f"/v1/tickets/{tid}")).json()
        await client.post(
            f"/v1/tickets/{tid}/messages",
            json={"author_type": "agent", "author_id": agent["id"], "body": "Sorry for the wait"},
        )
        resolved = (await client.post(f"/v1/tickets/{tid}/resolve")).json()
        for target in ("first_response", "resolution"):
            key = f"{target}_breached_at"
            assert resolved[key] == flagged[key]
        breaches = [
            r
            for r in await outbox(client, topics.SUPPORT)
            if r.event_type == "crm.support.ticket_sla_breached.v1"
        ]
        assert len(breaches) == 2

    async def test_answered_and_resolved_in_time_no_breach(self, client):
        await client.put(
            "/v1/sla-policies/high", json={"first_response_minutes": 60, "resolution_minutes": 120}
        )
        agent = await new_agent(client)
        ticket = await new_ticket(client, priority="high")
        tid = ticket["id"]
        await client.post(
            f"/v1/tickets/{tid}/messages",
            json={"author_type": "agent", "author_id": agent["id"], "body": "Done"},
        )
        resolved = (await client.post(f"/v1/tickets/{tid}/resolve")).json()
        assert resolved["first_response_breached_at"] is None
        assert resolved["resolution_breached_at"] is None
        types = [r.event_type for r in await outbox(client, topics.SUPPORT)]
        assert "crm.support.ticket_sla_breached.v1" not in types


async def test_the_scheduler_runs_in_the_service(support_settings: SupportSettings):
    settings = support_settings.model_copy(
        update={"run_scheduler": True, "sla_sweep_interval_s": 0.05}
    )
    app = create_app(settings)
    async with running(app):
        task = app.state.sla_scheduler
        assert task is not None and not task.done()
    assert task.done()
