"""The marketing API on a real database: segments, campaigns and tasks, launches under the
contact policy and the budget, delivery over real SMTP and webhooks, the report."""

import asyncio
import email
import email.policy
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from services.marketing import audience
from services.marketing import launch as launch_module
from services.marketing.channels import DeliveryResult, OutgoingMessage
from services.marketing.models import Lead, Order, Score, TicketState
from services.marketing.sender import Sender
from services.marketing.tests.helpers import (
    NOW,
    apply,
    deliver,
    event_types,
    launch,
    new_campaign,
    new_contact,
    new_segment,
    outbox,
    report,
    sends,
    snapshot,
    touch,
)
from shared import topics
from shared.contracts import analytics, marketing, sales, support
from shared.events import (
    CONTACT_ERASED,
    CONTACT_MERGED,
    CONTACT_POLICY_UPDATED,
    CONTACT_UPDATED,
    decode_event,
)
from shared.testing import app_of, eventually

GERMANY = {"field": "country", "op": "eq", "value": "DE"}


def parse_mail(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


@pytest.fixture(params=[None, 1, 2], ids=["one chunk", "chunks of 1", "chunks of 2"])
def facts_chunk(request, monkeypatch):
    """Customers judged ``audience.FACTS_CHUNK`` at a time: the same members in the same order
    whether every customer fits one chunk or each chunk holds one or two of them."""
    if request.param:
        monkeypatch.setattr(audience, "FACTS_CHUNK", request.param)


@pytest.fixture(params=[None, 2], ids=["one chunk", "chunks of 2"])
def launch_chunk(request, monkeypatch):
    """Members launched ``launch.CHUNK`` at a time: the same sends, budget and events whether
    a launch's members fit one chunk or not."""
    if request.param:
        monkeypatch.setattr(launch_module, "CHUNK", request.param)


class TestSegments:
    async def test_dynamic_segment_members_follow_the_data(self, client):
        ada = await new_contact(client, country="DE")
        await new_contact(client, country="FR")
        segment = await new_segment(client, GERMANY)
        assert segment["kind"] == "dynamic" and segment["member_count"] is None
        members = await client.get(f"/v1/segments/{segment['id']}/members")
        assert [m["customer_id"] for m in members.json()["items"]] == [ada]
        late = await new_contact(client, country="DE")
        count = await client.get(f"/v1/segments/{segment['id']}/count")
        assert count.json() == {"count": 2}
        members = await client.get(f"/v1/segments/{segment['id']}/members")
        assert {m["customer_id"] for m in members.json()["items"]} == {ada, late}

    async def test_static_segment_is_a_snapshot(self, client, facts_chunk):
        ada = await new_contact(client, country="DE")
        segment = await new_segment(client, GERMANY, kind="static")
        assert segment["member_count"] == 1
        await new_contact(client, country="DE")
        count = await client.get(f"/v1/segments/{segment['id']}/count")
        assert count.json() == {"count": 1}
        got = (await client.get(f"/v1/segments/{segment['id']}")).json()
        assert got["member_count"] == 1 and got["rules"] == GERMANY
        members = (await client.get(f"/v1/segments/{segment['id']}/members")).json()
        assert [m["customer_id"] for m in members["items"]] == [ada]

    async def test_a_segment_sent_again_with_its_id_is_created_once(self, client):
        await new_contact(client, country="DE")
        body = {"segment_id": str(uuid.uuid4()), "name": "DE", "kind": "static", "rules": GERMANY}
        sent = await asyncio.gather(*[client.post("/v1/segments", json=body) for _ in range(4)])
        assert [r.status_code for r in sent] == [201] * 4
        assert {(r.json()["id"], r.json()["member_count"]) for r in sent} == {
            (body["segment_id"], 1)
        }
        assert len((await client.get("/v1/segments")).json()["items"]) == 1
        other = await client.post("/v1/segments", json={**body, "name": "Deutschland"})
        assert other.status_code == 409
        assert other.json()["error"]["fields"][0]["field"] == "segment_id"

    @pytest.mark.parametrize("kind", ["dynamic", "static"])
    async def test_members_are_paged(self, client, facts_chunk, kind, monkeypatch):
        ids = sorted([await new_contact(client) for _ in range(5)])
        others = [await new_contact(client, country="FR") for _ in range(5)]
        segment = await new_segment(client, GERMANY, kind=kind)
        judged: list[int] = []  # customers whose facts a page read
        facts = audience.facts

        async def counted(*args, **kwargs):
            found = await facts(*args, **kwargs)
            judged.append(len(found))
            return found

        monkeypatch.setattr(audience, "facts", counted)
        seen, cursor = [], None
        for _ in range(len(ids)):  # a cursor that does not move on ends here, not never
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(f"/v1/segments/{segment['id']}/members", params=params)).json()
            assert len(page["items"]) <= 2
            seen += [m["customer_id"] for m in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
            if audience.FACTS_CHUNK < len(ids + others):  # the rest of the customers unread
                assert sum(judged) < len(ids + others), judged
            judged.clear()
        assert seen == ids and cursor is None

    async def test_rules_over_orders_scores_and_touches(self, client, facts_chunk):
        lapsed = await new_contact(client)
        recent = await new_contact(client)
        churning = await new_contact(client)
        opener = await new_contact(client)
        await apply(client, sales.ORDER_PLACED, order(lapsed, NOW - timedelta(days=200)))
        await apply(client, sales.ORDER_PLACED, order(recent, NOW - timedelta(days=5)))
        await apply(client, analytics.CUSTOMER_SCORED, score(churning, "high"))
        await apply(client, analytics.CUSTOMER_SCORED, score(recent, "low"))
        await touch(client, opener, kind="email_open", department="marketing", direction="inbound")

        async def preview(rules: dict) -> int:
            response = await client.post("/v1/segments:preview", json={"rules": rules})
            assert response.status_code == 200, response.text
            return response.json()["count"]

        older = {"field": "last_purchase_at", "op": "older_than_days", "value": 90}
        assert await preview(older) == 1
        assert await preview({"field": "churn_level", "op": "eq", "value": "high"}) == 1
        assert await preview({"field": "last_email_open_at", "op": "within_days", "value": 30}) == 1
        assert await preview({"field": "orders_count", "op": "gte", "value": 1}) == 2
        either = {
            "or": [older, {"field": "churn_level", "op": "eq", "value": "high"}],
        }
        assert await preview(either) == 2
        assert await preview({"and": [GERMANY, {"not": either}]}) == 2

    async def test_segments_are_listed_newest_first(self, client):
        first = await new_segment(client, name="First")
        second = await new_segment(client, name="Second")
        page = (await client.get("/v1/segments", params={"limit": 1})).json()
        assert [s["id"] for s in page["items"]] == [second["id"]]
        rest = (await client.get("/v1/segments", params={"cursor": page["next_cursor"]})).json()
        assert [s["id"] for s in rest["items"]] == [first["id"]]


class TestTotalSpent:
    @pytest.fixture(params=["EUR", "USD"])
    def marketing_settings(self, request, marketing_settings):
        return marketing_settings.model_copy(update={"reporting_currency": request.param})

    async def test_adds_up_the_orders_in_the_reporting_currency_only(
        self, client, marketing_settings
    ):
        currency = marketing_settings.reporting_currency
        other = "JPY"
        mixed, single = await new_contact(client), await new_contact(client)
        for customer, amount, in_currency in (
            (mixed, "600.00", currency),
            (mixed, "600.00", other),
            (single, "1200.00", currency),
        ):
            placed = {**order(customer, NOW, amount=amount), "currency": in_currency}
            await apply(client, sales.ORDER_PLACED, placed)
        refunded = {**order(mixed, NOW, amount="5000.00"), "currency": currency}
        await apply(client, sales.ORDER_PLACED, refunded)
        await apply(client, sales.ORDER_REFUNDED, {**refunded, "refunded_at": NOW.isoformat()})

        async def count(op: str, value: float, field: str = "total_spent") -> int:
            rule = {"field": field, "op": op, "value": value}
            response = await client.post("/v1/segments:preview", json={"rules": rule})
            assert response.status_code == 200, response.text
            return response.json()["count"]

        assert await count("gt", 1000) == 1  # single's 1,200, not mixed's 600 + 600 ¥
        assert await count("lte", 600) == 1  # mixed: the refund not counted either
        assert await count("gte", 600) == 2
        assert await count("eq", 2, field="orders_count") == 1  # in any currency


def order(customer_id: str, at: datetime, campaign_id: str | None = None, amount="50.00"):
    return {
        "order_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "amount": amount,
        "currency": "EUR",
        "status": "placed",
        "campaign_id": campaign_id,
        "ordered_at": at.isoformat(),
    }


def score(customer_id: str, level: str):
    return {
        "customer_id": customer_id,
        "churn_risk": 0.9 if level == "high" else 0.1,
        "churn_level": level,
        "rfm_segment": "at_risk",
        "scored_at": NOW.isoformat(),
    }


class TestProjections:
    async def test_the_largest_amounts_sales_and_analytics_send_fit(self, client):
        # On PostgreSQL the Numeric(14, 4) columns (below 10^10) overflowed: the consumer
        # dead-lettered a sales order of 999,999,999,999.99 and a CLV of 10^11.
        customer = str(uuid.uuid4())
        await apply(client, sales.ORDER_PLACED, order(customer, NOW, amount="999999999999.99"))
        scored = {**score(customer, "low"), "clv": "99999999999.99"}
        await apply(client, analytics.CUSTOMER_SCORED, scored)
        async with app_of(client).state.session_factory() as session:
            assert await session.scalar(select(Order.amount)) == Decimal("999999999999.99")
            assert await session.scalar(select(Score.clv)) == Decimal("99999999999.99")


class TestCampaigns:
    async def test_create_publishes_campaign_created(self, client):
        segment = await new_segment(client)
        campaign = await new_campaign(client, segment["id"])
        assert campaign["status"] == "draft" and campaign["budget"] == "100"
        got = await client.get(f"/v1/campaigns/{campaign['id']}")
        assert got.json()["name"] == "Spring sale"
        [row] = await outbox(client, topics.MARKETING)
        assert row.event_type == "crm.marketing.campaign_created.v1"
        assert row.key == campaign["id"]

    async def test_a_campaign_sent_again_with_its_id_is_created_once(self, client):
        await new_contact(client, country="DE")
        segment = await new_segment(client)
        campaign_id = str(uuid.uuid4())
        # Before, each retry created another campaign, and launching them mailed each member
        # once per copy.
        created = await asyncio.gather(
            *[new_campaign(client, segment["id"], campaign_id=campaign_id) for _ in range(4)]
        )
        assert {c["id"] for c in created} == {campaign_id}
        assert event_types(await outbox(client, topics.MARKETING)) == [
            "crm.marketing.campaign_created.v1"
        ]
        assert len((await client.get("/v1/campaigns")).json()["items"]) == 1
        other = await client.post(
            "/v1/campaigns",
            json={
                "campaign_id": campaign_id,
                "name": "Summer sale",
                "channel": "email",
                "segment_id": segment["id"],
                "template": "Hi {first_name}",
                "budget": "100",
                "cost_per_send": "0.10",
            },
        )
        assert other.status_code == 409
        assert other.json()["error"]["fields"][0]["field"] == "campaign_id"

    async def test_update_and_list(self, client):
        segment = await new_segment(client)
        campaign = await new_campaign(client, segment["id"])
        at = (NOW + timedelta(days=1)).isoformat()
        response = await client.patch(
            f"/v1/campaigns/{campaign['id']}", json={"budget": "5", "scheduled_at": at}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "scheduled"
        listed = (await client.get("/v1/campaigns", params={"status": "scheduled"})).json()
        assert [c["id"] for c in listed["items"]] == [campaign["id"]]
        assert (await client.get("/v1/campaigns", params={"status": "draft"})).json()["items"] == []

    async def test_tasks(self, client):
        segment = await new_segment(client)
        campaign = await new_campaign(client, segment["id"])
        base = f"/v1/campaigns/{campaign['id']}/tasks"
        later = await client.post(
            base, json={"title": "Write copy", "assignee": "eve", "due_date": "2026-12-10"}
        )
        sooner = await client.post(
            base, json={"title": "Design banner", "assignee": "bob", "due_date": "2026-12-01"}
        )
        assert later.status_code == sooner.status_code == 201
        assert later.json()["status"] == "todo"
        tasks = (await client.get(base)).json()["items"]
        assert [t["title"] for t in tasks] == ["Design banner", "Write copy"]
        eves = (await client.get(base, params={"assignee": "eve"})).json()["items"]
        assert [t["id"] for t in eves] == [later.json()["id"]]
        done = await client.patch(f"{base}/{sooner.json()['id']}", json={"status": "done"})
        assert done.status_code == 200 and done.json()["status"] == "done"
        other = await new_campaign(client, segment["id"])
        wrong = await client.patch(
            f"/v1/campaigns/{other['id']}/tasks/{sooner.json()['id']}", json={"status": "done"}
        )
        assert wrong.status_code == 404


class TestLaunch:
    async def test_the_report_counts_every_reason_of_every_suppressed_send(self, client):
        for _ in range(2):
            await new_contact(client, email=None)
        await new_contact(client, email=None, preferences={"opted_out_channels": ["email"]})
        await new_contact(client, preferences={"opted_out_channels": ["email"]})
        await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        assert (await launch(client, campaign["id"]))["queued"] == 1
        got = await report(client, campaign["id"])
        assert got["suppressed"] == 4
        assert got["suppressed_by_reason"] == {"no_address": 3, "channel_opted_out": 2}

    async def test_each_suppression_reason(self, client):
        fine = await new_contact(client)
        opted_out = await new_contact(client, preferences={"opted_out_channels": ["email"]})
        quiet = await new_contact(
            client,
            preferences={"quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}},
        )
        busy = await new_contact(client)
        for _ in range(5):  # the company default: at most 5 outbound touches a week
            await touch(client, busy)
        ticket = await new_contact(client)
        await apply(client, support.TICKET_OPENED, ticket_opened(ticket, "urgent"))
        normal_ticket = await new_contact(client)
        await apply(client, support.TICKET_OPENED, ticket_opened(normal_ticket, "normal"))
        no_email = await new_contact(client, email=None)

        campaign = await new_campaign(client, (await new_segment(client))["id"])
        result = await launch(client, campaign["id"])
        assert result["queued"] == 2
        assert result["suppressed"] == {
            "channel_opted_out": 1,
            "quiet_hours": 1,
            "weekly_limit_reached": 1,
            "open_priority_ticket": 1,
            "no_address": 1,
        }
        by_customer = {s["customer_id"]: s for s in await sends(client, campaign["id"])}
        assert by_customer[fine]["status"] == by_customer[normal_ticket]["status"] == "queued"
        assert by_customer[opted_out]["reasons"] == ["channel_opted_out"]
        assert by_customer[quiet]["reasons"] == ["quiet_hours"]
        assert by_customer[busy]["reasons"] == ["weekly_limit_reached"]
        assert by_customer[ticket]["reasons"] == ["open_priority_ticket"]
        assert by_customer[no_email]["reasons"] == ["no_address"]
        suppressed = [
            r
            for r in await outbox(client, topics.MARKETING)
            if r.event_type == "crm.marketing.message_suppressed.v1"
        ]
        assert sorted(r.key for r in suppressed) == sorted(
            [opted_out, quiet, busy, ticket, no_email]
        )

    async def test_an_unknown_senders_urgent_ticket_holds_back_the_contact_they_turn_out_to_be(
        self, client
    ):
        contact, stand_in = await new_contact(client), str(uuid.uuid4())
        ticket = ticket_opened(stand_in, "urgent")
        await apply(client, support.TICKET_OPENED, ticket)
        await apply(
            client,
            support.TICKET_CUSTOMER_IDENTIFIED,
            {
                "ticket_id": ticket["ticket_id"],
                "customer_id": contact,
                "previous_customer_id": stand_in,
                "identified_at": "2026-11-21T10:00:00Z",
            },
        )
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        result = await launch(client, campaign["id"])
        # Before, the ticket stayed under the stand-in id and the contact was mailed.
        assert result["queued"] == 0
        assert result["suppressed"] == {"open_priority_ticket": 1}

    async def test_an_unknown_sender_erased_before_being_identified_leaves_nothing(self, client):
        contact, stand_in = await new_contact(client), str(uuid.uuid4())
        ticket = ticket_opened(stand_in, "urgent")
        await apply(client, support.TICKET_OPENED, ticket)
        await apply(client, analytics.CUSTOMER_SCORED, score(stand_in, "high"))
        await apply(client, CONTACT_ERASED, {"contact_id": contact, "erased_at": NOW.isoformat()})
        identified = {"ticket_id": ticket["ticket_id"], "customer_id": contact}
        identified |= {"previous_customer_id": stand_in, "identified_at": NOW.isoformat()}
        await apply(client, support.TICKET_CUSTOMER_IDENTIFIED, identified)
        # Before, the ticket and the stand-in's score stayed under the stand-in id.
        async with app_of(client).state.session_factory() as session:
            assert await session.get(TicketState, uuid.UUID(ticket["ticket_id"])) is None
            assert await session.get(Score, uuid.UUID(stand_in)) is None

    async def test_a_resolved_ticket_no_longer_blocks(self, client):
        customer = await new_contact(client)
        opened = ticket_opened(customer, "high")
        await apply(client, support.TICKET_OPENED, opened)
        check = await client.get(
            f"/v1/customers/{customer}/contact-check", params={"channel": "email"}
        )
        assert check.json() == {"allowed": False, "reasons": ["open_priority_ticket"]}
        await apply(
            client,
            support.TICKET_RESOLVED,
            {
                "ticket_id": opened["ticket_id"],
                "customer_id": customer,
                "agent_id": None,
                "resolved_at": (NOW + timedelta(minutes=1)).isoformat(),
            },
        )
        check = await client.get(
            f"/v1/customers/{customer}/contact-check", params={"channel": "email"}
        )
        assert check.json() == {"allowed": True, "reasons": []}

    async def test_marketing_own_recent_sends_count_as_touches(self, client):
        customer = await new_contact(client)
        segment = await new_segment(client)
        await apply(
            client, CONTACT_POLICY_UPDATED, {"max_outbound_per_week": 1, "quiet_hours": None}
        )
        first = await new_campaign(client, segment["id"])
        assert (await launch(client, first["id"]))["queued"] == 1
        second = await new_campaign(client, segment["id"])
        result = await launch(client, second["id"])
        assert result["queued"] == 0 and result["suppressed"] == {"weekly_limit_reached": 1}
        del customer

    async def test_budget_is_never_exceeded(self, client, launch_chunk):
        for _ in range(5):
            await new_contact(client)
        segment = await new_segment(client)
        campaign = await new_campaign(client, segment["id"], budget="0.35", cost_per_send="0.10")
        result = await launch(client, campaign["id"])
        assert result["queued"] == 3
        assert result["suppressed"] == {"budget_exhausted": 2}
        assert result["budget_remaining"] == "0.05"
        await deliver(client)
        got = await report(client, campaign["id"])
        assert got["sent"] == 3 and got["spend"] == "0.3"
        assert got["suppressed_by_reason"] == {"budget_exhausted": 2}
        # A bigger budget lets a re-launch reach the rest, and nobody twice.
        await client.patch(f"/v1/campaigns/{campaign['id']}", json={"budget": "1"})
        again = await launch(client, campaign["id"])
        assert again["queued"] == 2 and again["already_handled"] == 3
        await deliver(client)
        got = await report(client, campaign["id"])
        assert got["sent"] == 5 and got["suppressed"] == 0 and got["spend"] == "0.5"

    async def test_relaunch_never_sends_twice(self, client, launch_chunk, mailbox):
        for _ in range(3):
            await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        assert (await launch(client, campaign["id"]))["queued"] == 3
        await deliver(client)
        again = await launch(client, campaign["id"])
        assert again["queued"] == 0 and again["already_handled"] == 3
        assert await deliver(client) == 0
        late = await new_contact(client)
        third = await launch(client, campaign["id"])
        assert third["queued"] == 1 and third["already_handled"] == 3
        await deliver(client)
        assert len(mailbox.messages) == 4
        assert sorted(s["customer_id"] for s in await sends(client, campaign["id"]))
        assert late in {s["customer_id"] for s in await sends(client, campaign["id"])}
        sent = [
            r
            for r in await outbox(client, topics.MARKETING)
            if r.event_type == "crm.marketing.message_sent.v1"
        ]
        assert len(sent) == 4 and len({r.key for r in sent}) == 4

    async def test_suppressed_member_is_checked_again_on_relaunch(self, client):
        customer = await new_contact(
            client,
            preferences={"quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}},
        )
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        assert (await launch(client, campaign["id"]))["suppressed"] == {"quiet_hours": 1}
        # Suppressed, not deferred (docs/marketing.md): nothing waits, the campaign is done.
        assert (await client.get(f"/v1/campaigns/{campaign['id']}")).json()["status"] == "completed"
        await new_contact(client, contact_id=customer)  # quiet hours lifted
        assert (await launch(client, campaign["id"]))["queued"] == 1
        assert (await client.get(f"/v1/campaigns/{campaign['id']}")).json()["status"] == "sending"

    async def test_unknown_campaign(self, client):
        response = await client.post(f"/v1/campaigns/{uuid.uuid4()}/launch")
        assert response.status_code == 404


def ticket_opened(customer_id: str, priority: str) -> dict:
    return {
        "ticket_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "subject": "Broken",
        "channel": "email",
        "priority": priority,
        "category": None,
        "opened_at": NOW.isoformat(),
    }


def opted_out(customer: str) -> tuple[str, dict]:
    return CONTACT_UPDATED, snapshot(customer, preferences={"opted_out_channels": ["email"]})


def quiet_all_day(customer: str) -> tuple[str, dict]:
    quiet = {"start": "00:00", "end": "23:59", "timezone": "UTC"}
    return CONTACT_UPDATED, snapshot(customer, preferences={"quiet_hours": quiet})


def urgent_ticket(customer: str) -> tuple[str, dict]:
    return support.TICKET_OPENED, ticket_opened(customer, "urgent")


def no_touch_this_week(customer: str) -> tuple[str, dict]:
    return CONTACT_POLICY_UPDATED, {"max_outbound_per_week": 0, "quiet_hours": None}


class TestCheckedAgainAtDelivery:
    """A send waits in the queue (a large campaign's for minutes); what changed meanwhile
    counts. Before, only the launch checked: every one of these was delivered."""

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            (opted_out, "channel_opted_out"),
            (quiet_all_day, "quiet_hours"),
            (urgent_ticket, "open_priority_ticket"),
            (no_touch_this_week, "weekly_limit_reached"),
        ],
    )
    async def test_a_change_after_the_launch_holds_the_send_back(
        self, client, mailbox, change, reason
    ):
        customer = await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        assert (await launch(client, campaign["id"]))["queued"] == 1
        await apply(client, *change(customer))
        assert await deliver(client) == 1
        assert mailbox.messages == []
        [send] = await sends(client, campaign["id"])
        assert (send["status"], send["reasons"]) == ("suppressed", [reason])
        suppressed = [
            r
            for r in await outbox(client, topics.MARKETING)
            if r.event_type == "crm.marketing.message_suppressed.v1"
        ]
        assert [r.key for r in suppressed] == [customer]
        assert (await report(client, campaign["id"]))["sent"] == 0

    async def test_another_departments_touches_up_to_the_limit_hold_the_send_back(
        self, client, mailbox
    ):
        customer = await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        assert (await launch(client, campaign["id"]))["queued"] == 1
        for _ in range(5):  # the company default: at most 5 outbound touches a week
            await touch(client, customer)
        await deliver(client)
        assert mailbox.messages == []

    async def test_two_campaigns_in_one_batch_count_each_other_not_themselves(
        self, client, mailbox
    ):
        await apply(
            client, CONTACT_POLICY_UPDATED, {"max_outbound_per_week": 2, "quiet_hours": None}
        )
        await new_contact(client)
        segment = (await new_segment(client))["id"]
        for name in ("A", "B"):
            campaign = await new_campaign(client, segment, name=name)
            assert (await launch(client, campaign["id"]))["queued"] == 1
        assert await app_of(client).state.sender.deliver_batch() == 2  # one batch, both
        assert len(mailbox.messages) == 2  # two touches: the limit, not over it

    async def test_the_contact_check_counts_the_sends_still_queued(self, client):
        await apply(
            client, CONTACT_POLICY_UPDATED, {"max_outbound_per_week": 1, "quiet_hours": None}
        )
        customer = await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        assert (await launch(client, campaign["id"]))["queued"] == 1
        check = await client.get(
            f"/v1/customers/{customer}/contact-check", params={"channel": "sms"}
        )
        # Before, the check marketing serves saw only the timeline: allowed, while a launch
        # now would suppress the customer for the queued send.
        assert check.json() == {"allowed": False, "reasons": ["weekly_limit_reached"]}

    async def test_a_send_is_not_counted_against_itself(self, client, mailbox):
        await apply(
            client, CONTACT_POLICY_UPDATED, {"max_outbound_per_week": 1, "quiet_hours": None}
        )
        await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        assert (await launch(client, campaign["id"]))["queued"] == 1
        await deliver(client)
        assert len(mailbox.messages) == 1


class TestDelivery:
    async def test_email_arrives_personalised_with_signed_links(self, client, mailbox):
        ada = await new_contact(client, first_name="Ada")
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        assert await deliver(client) == 1
        [envelope] = mailbox.messages
        assert envelope.rcpt_tos == [f"ada.{ada[:8]}@example.com"]
        message = parse_mail(envelope)
        assert message["Subject"] == "Hello Ada"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Unsubscribe"].startswith("<https://crm.example.test/t/u/")
        text = message.get_body(("plain",)).get_content()
        assert text.startswith("Hi Ada, see https://crm.example.test/t/c/")
        assert "u=https%3A%2F%2Fshop.example.test%2Fspring" in text
        html = message.get_body(("html",)).get_content()
        assert "https://crm.example.test/t/o/" in html
        [send] = await sends(client, campaign["id"])
        assert send["status"] == "sent" and send["attempts"] == 1
        types = event_types(await outbox(client))
        assert "crm.marketing.message_sent.v1" in types
        touches = await outbox(client, topics.INTERACTIONS)
        assert [t.key for t in touches] == [ada]
        assert (await client.get(f"/v1/campaigns/{campaign['id']}")).json()["status"] == (
            "completed"
        )
        assert "crm.marketing.campaign_completed.v1" in types

    async def test_a_link_in_a_name_gets_no_signed_redirect(self, client, mailbox):
        """A name is whatever a sign-up form took. Its URL was made a signed click link, and
        that link (on the service's own domain) redirected anyone to the URL: an open
        redirect for whoever signed up as "https://evil.test"."""
        await new_contact(client, first_name="https://evil.test/login")
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        await deliver(client)
        text = parse_mail(mailbox.messages[0]).get_body(("plain",)).get_content()
        assert "evil.test" not in "".join(re.findall(r"/t/c/\S+", text))
        assert "u=https%3A%2F%2Fshop.example.test%2Fspring" in text  # the template's still is

    async def test_a_link_ending_a_sentence_leads_where_it_reads(self, client, mailbox):
        """The full stop (or comma, or closing bracket) after a link was taken into it: the
        click went to https://shop.example.test/spring., a page the shop does not have."""
        await new_contact(client)
        template = "Sale: https://shop.example.test/spring. (Or https://shop.example.test/a), bye"
        campaign = await new_campaign(client, (await new_segment(client))["id"], template=template)
        await launch(client, campaign["id"])
        await deliver(client)
        text = parse_mail(mailbox.messages[0]).get_body(("plain",)).get_content()
        targets = [unquote(u) for u in re.findall(r"/t/c/\S+?\?u=([\w%.-]*[\w%-])", text)]
        assert targets == ["https://shop.example.test/spring", "https://shop.example.test/a"]
        assert ". (Or " in text and "), bye" in text

    async def test_names_cannot_inject_headers_and_may_be_any_script(self, client, mailbox):
        await new_contact(client, first_name="Zoë\r\nBcc: evil@attacker.test")
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        await deliver(client)
        [envelope] = mailbox.messages
        assert len(envelope.rcpt_tos) == 1
        message = parse_mail(envelope)
        assert message["Bcc"] is None
        assert message["Subject"] == "Hello Zoë Bcc: evil@attacker.test"

    async def test_a_refused_recipient_is_reported_failed(self, client, mailbox):
        ada = await new_contact(client)
        await new_contact(client)
        address = f"ada.{ada[:8]}@example.com"
        mailbox.refuse.add(address)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        await deliver(client)
        by_customer = {s["customer_id"]: s for s in await sends(client, campaign["id"])}
        failed = by_customer.pop(ada)
        assert failed["status"] == "failed" and "550" in failed["error"]
        assert failed["attempts"] == 1  # a permanent refusal is not retried
        assert [s["status"] for s in by_customer.values()] == ["sent"]
        got = await report(client, campaign["id"])
        assert (got["sent"], got["failed"], got["spend"]) == (1, 1, "0.1")
        failed_events = [
            r
            for r in await outbox(client, topics.MARKETING)
            if r.event_type == "crm.marketing.message_failed.v1"
        ]
        assert [r.key for r in failed_events] == [ada]
        # The server quoted the address; the error kept and published names no one.
        assert address not in failed["error"] and b"@example.com" not in failed_events[0].value

    async def test_an_erasure_clears_the_error_of_a_failed_send(self, client, mailbox):
        ada = await new_contact(client, first_name="Ada")
        mailbox.refuse.add(f"ada.{ada[:8]}@example.com")
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        await deliver(client)
        await apply(client, CONTACT_ERASED, {"contact_id": ada, "erased_at": NOW.isoformat()})
        [send] = await sends(client, campaign["id"])
        assert (send["status"], send["error"]) == ("failed", None)

    async def test_smtp_server_down_fails_after_retries(self, client, mailbox):
        await new_contact(client)
        app_of(client).state.sender.settings.smtp_port = 1  # nothing listens there
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        await deliver(client)
        [send] = await sends(client, campaign["id"])
        assert send["status"] == "failed" and send["attempts"] == 3

    async def test_sms_webhook_is_retried_until_it_accepts(self, client, webhook):
        customer = await new_contact(client, phone="+4915100000001")
        webhook.answers = [503, 500]
        campaign = await new_campaign(
            client, (await new_segment(client))["id"], channel="sms", template="Hi {first_name}"
        )
        await launch(client, campaign["id"])
        await deliver(client)
        [body] = webhook.accepted
        assert body["to"] == "+4915100000001" and body["text"] == "Hi Ada"
        assert body["customer_id"] == customer and body["channel"] == "sms"
        [send] = await sends(client, campaign["id"])
        assert send["status"] == "sent" and send["attempts"] == 3

    async def test_webhook_refusal_is_reported(self, client, webhook):
        await new_contact(client)
        webhook.answers = [400]
        campaign = await new_campaign(
            client, (await new_segment(client))["id"], channel="whatsapp", template="Hi"
        )
        await launch(client, campaign["id"])
        await deliver(client)
        [send] = await sends(client, campaign["id"])
        assert send["status"] == "failed" and "400" in send["error"] and send["attempts"] == 1

    async def test_a_refusal_quoting_the_number_in_another_form_names_no_one(self, client, webhook):
        """Providers quote the recipient as they write numbers (without the +, with spaces):
        the error kept on the send and published with message_failed names no number."""
        customer = await new_contact(client, phone="+4915100000001")
        webhook.answers = [400]
        webhook.refusal = b'{"error": "4915100000001 (+49 151 00000001) is not a mobile number"}'
        campaign = await new_campaign(
            client, (await new_segment(client))["id"], channel="sms", template="Hi"
        )
        await launch(client, campaign["id"])
        await deliver(client)
        [send] = await sends(client, campaign["id"])
        assert send["status"] == "failed" and "not a mobile number" in send["error"]
        assert "00000001" not in send["error"]
        [failed] = [
            r
            for r in await outbox(client, topics.MARKETING)
            if r.event_type == "crm.marketing.message_failed.v1"
        ]
        assert failed.key == customer
        assert b"00000001" not in failed.value

    async def test_a_channel_without_provider_fails_every_send_visibly(self, client):
        await new_contact(client, identities=[{"kind": "telegram", "value": "@ada"}])
        campaign = await new_campaign(
            client, (await new_segment(client))["id"], channel="telegram", template="Hi"
        )
        assert (await launch(client, campaign["id"]))["queued"] == 1
        await deliver(client)
        [send] = await sends(client, campaign["id"])
        assert send["status"] == "failed" and "no provider" in send["error"]

    async def test_scheduled_campaign_launches_when_due(self, client, mailbox):
        await new_contact(client)
        at = NOW + timedelta(hours=1)
        campaign = await new_campaign(
            client, (await new_segment(client))["id"], scheduled_at=at.isoformat()
        )
        sender = app_of(client).state.sender
        assert await sender.launch_due(NOW) == 0
        assert await sender.launch_due(at + timedelta(seconds=1)) == 1
        await deliver(client)
        assert len(mailbox.messages) == 1
        got = (await client.get(f"/v1/campaigns/{campaign['id']}")).json()
        assert got["status"] == "completed"

    async def test_a_failing_scheduled_launch_holds_back_neither_others_nor_sends(
        self, client, mailbox, monkeypatch
    ):
        """A campaign whose launch keeps failing (say a segment rule a later version no longer
        reads) stays scheduled and is tried again after the retry wait, not every round; the
        other due campaign launches, and the sender delivers."""
        await new_contact(client)
        segment = (await new_segment(client))["id"]
        at = (NOW + timedelta(hours=1)).isoformat()
        broken = await new_campaign(client, segment, name="Broken", scheduled_at=at)
        working = await new_campaign(client, segment, name="Working", scheduled_at=at)
        real_launch = launch_module.launch

        broken_tries = []

        async def launch_failing_for_broken(session, campaign_id, now=None):
            if str(campaign_id) == broken["id"]:
                broken_tries.append(now)
                raise RuntimeError("segment rule no longer readable")
            return await real_launch(session, campaign_id, now)

        monkeypatch.setattr(launch_module, "launch", launch_failing_for_broken)
        sender = app_of(client).state.sender
        assert await sender.launch_due(NOW + timedelta(hours=2)) == 1
        await deliver(client)
        assert len(mailbox.messages) == 1
        read = {c["id"]: c["status"] for c in (await client.get("/v1/campaigns")).json()["items"]}
        assert read == {broken["id"]: "scheduled", working["id"]: "completed"}
        wait = timedelta(seconds=sender.settings.launch_retry_wait_s)
        assert await sender.launch_due(NOW + timedelta(hours=2) + wait / 2) == 0
        assert len(broken_tries) == 1
        assert await sender.launch_due(NOW + timedelta(hours=2) + wait) == 0
        assert len(broken_tries) == 2

        runner = asyncio.create_task(sender.run())  # the loop: sends go on beside the failure
        try:
            queued = await new_campaign(client, segment, name="Now")
            await launch(client, queued["id"])

            async def both_delivered() -> None:
                assert len(mailbox.messages) == 2

            await eventually(both_delivered)
        finally:
            runner.cancel()


class TestCancel:
    async def cancel(self, client, campaign_id: str, status: int = 200) -> dict:
        response = await client.post(f"/v1/campaigns/{campaign_id}/cancel")
        assert response.status_code == status, response.text
        return response.json()

    async def test_queued_sends_are_withdrawn_and_those_being_handed_over_finish(self, client):
        for _ in range(3):
            await new_contact(client)
        campaign_id = (await new_campaign(client, (await new_segment(client))["id"]))["id"]
        await launch(client, campaign_id)
        handed_over: list[OutgoingMessage] = []
        answers: list[dict] = []

        class CancelledWhileDelivering:
            """The marketer cancels while the sender hands the first send over."""

            async def deliver(self, messages: list[OutgoingMessage]) -> list[DeliveryResult]:
                answers.append(await TestCancel.cancel(self, client, campaign_id))
                handed_over.extend(messages)
                return [DeliveryResult(m.send_id, ok=True, attempts=1) for m in messages]

        app = app_of(client)
        settings = app.state.settings.model_copy(update={"sender_batch_size": 1})
        sender = Sender(app.state.session_factory, settings, {"email": CancelledWhileDelivering()})
        assert await sender.deliver_batch() == 1
        assert answers[0]["status"] == "cancelled"
        assert await deliver(client) == 0  # nothing left to send
        assert len(handed_over) == 1
        by_status = sorted((s["status"], s["reasons"]) for s in await sends(client, campaign_id))
        assert by_status == [("sent", []), *[("suppressed", ["campaign_cancelled"])] * 2]
        got = await report(client, campaign_id)
        assert got["status"] == "cancelled"  # recording the last send did not complete it
        assert (got["queued"], got["sent"], got["suppressed"]) == (0, 1, 2)
        assert got["suppressed_by_reason"] == {"campaign_cancelled": 2}
        assert got["spend"] == "0.1"
        rows = await outbox(client, topics.MARKETING)
        assert "crm.marketing.campaign_completed.v1" not in event_types(rows)
        [cancelled] = [
            decode_event(r.value) for r in rows if r.event_type == marketing.CAMPAIGN_CANCELLED
        ]
        assert cancelled.data["campaign_id"] == campaign_id and cancelled.data["withdrawn"] == 2
        withdrawn = [
            decode_event(r.value).data for r in rows if r.event_type == marketing.MESSAGE_SUPPRESSED
        ]
        assert [w["reasons"] for w in withdrawn] == [["campaign_cancelled"]] * 2

    async def test_a_cancelled_campaign_is_not_sent_nor_launched_again(self, client, mailbox):
        await new_contact(client)
        campaign_id = (await new_campaign(client, (await new_segment(client))["id"]))["id"]
        await launch(client, campaign_id)
        await self.cancel(client, campaign_id)
        assert await deliver(client) == 0 and mailbox.messages == []
        before = await outbox(client)
        response = await client.post(f"/v1/campaigns/{campaign_id}/launch")
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "invalid_transition"
        assert "cancelled" in response.json()["error"]["message"]
        [send] = await sends(client, campaign_id)
        assert (send["status"], send["reasons"]) == ("suppressed", ["campaign_cancelled"])
        assert len(await outbox(client)) == len(before)

    async def test_cancelling_twice_changes_nothing_the_second_time(self, client):
        await new_contact(client)
        campaign_id = (await new_campaign(client, (await new_segment(client))["id"]))["id"]
        await launch(client, campaign_id)
        first = await self.cancel(client, campaign_id)
        assert first["cancelled_at"] is not None and first["completed_at"] is None
        before = await outbox(client)
        assert await self.cancel(client, campaign_id) == first  # cancelled_at too
        assert len(await outbox(client)) == len(before)

    async def test_a_scheduled_campaign_cancelled_is_never_launched(self, client, mailbox):
        await new_contact(client)
        soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        segment = await new_segment(client)
        campaign_id = (await new_campaign(client, segment["id"], scheduled_at=soon))["id"]
        assert (await self.cancel(client, campaign_id))["status"] == "cancelled"
        sender = app_of(client).state.sender
        assert await sender.launch_due(datetime.now(UTC) + timedelta(hours=1)) == 0
        assert await sends(client, campaign_id) == []
        types = event_types(await outbox(client, topics.MARKETING))
        assert types.count(marketing.CAMPAIGN_CANCELLED) == 1
        assert marketing.CAMPAIGN_LAUNCHED not in types

    async def test_a_completed_campaign_has_nothing_to_cancel(self, client, mailbox):
        await new_contact(client)
        campaign_id = (await new_campaign(client, (await new_segment(client))["id"]))["id"]
        await launch(client, campaign_id)
        await deliver(client)
        error = (await self.cancel(client, campaign_id, 409))["error"]
        assert error["code"] == "invalid_transition"
        assert error["campaign_status"] == "completed"
        assert (await report(client, campaign_id))["status"] == "completed"

    async def test_unknown_campaign(self, client):
        await self.cancel(client, str(uuid.uuid4()), 404)


class TestContactsChanges:
    async def test_erasure_drops_the_recipient_and_cancels_queued_sends(self, client, mailbox):
        customer = await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        await apply(client, CONTACT_ERASED, {"contact_id": customer, "erased_at": NOW.isoformat()})
        await deliver(client)
        assert mailbox.messages == []
        [send] = await sends(client, campaign["id"])
        assert send["status"] == "suppressed" and send["reasons"] == ["customer_erased"]
        segment = await new_segment(client)
        assert (await client.get(f"/v1/segments/{segment['id']}/count")).json()["count"] == 0

    async def test_merge_moves_records_to_the_survivor(self, client, mailbox):
        survivor = await new_contact(client)
        merged = await new_contact(client)
        await apply(client, support.TICKET_OPENED, ticket_opened(merged, "urgent"))
        segment = await new_segment(client, kind="static")
        assert segment["member_count"] == 2
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        members = (await client.get(f"/v1/segments/{segment['id']}/members")).json()["items"]
        assert [m["customer_id"] for m in members] == [survivor]
        assert (await client.get(f"/v1/segments/{segment['id']}")).json()["member_count"] == 1
        campaign = await new_campaign(client, segment["id"])
        result = await launch(client, campaign["id"])  # the merged contact's ticket now blocks
        assert result["suppressed"] == {"open_priority_ticket": 1}

    async def test_a_person_reached_as_the_merged_contact_is_not_sent_to_again(
        self, client, mailbox
    ):
        first, second = await new_contact(client), await new_contact(client)
        campaign = await new_campaign(
            client, (await new_segment(client))["id"], budget="0.10", cost_per_send="0.10"
        )
        await launch(client, campaign["id"])  # the budget pays for one: the other waits
        await deliver(client)
        status = {s["customer_id"]: s["status"] for s in await sends(client, campaign["id"])}
        reached = first if status[first] == "sent" else second
        survivor = second if reached == first else first
        await apply(client, CONTACT_MERGED, {"merged_id": reached, "survivor_id": survivor})
        raised = await client.patch(f"/v1/campaigns/{campaign['id']}", json={"budget": "10"})
        assert raised.status_code == 200, raised.text
        # Before, the survivor's suppressed send stayed and was checked again: a second mail.
        assert (await launch(client, campaign["id"]))["queued"] == 0
        await deliver(client)
        assert len(mailbox.messages) == 1
        [send] = await sends(client, campaign["id"])
        assert (send["customer_id"], send["status"]) == (survivor, "sent")

    async def test_a_ticket_of_the_merged_contact_arriving_after_the_merge_counts(self, client):
        # Tickets come on support's topic, the merge on contacts': either may be applied first.
        survivor = await new_contact(client)
        merged = await new_contact(client)
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        await apply(client, support.TICKET_OPENED, ticket_opened(merged, "urgent"))
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        result = await launch(client, campaign["id"])
        assert result["suppressed"] == {"open_priority_ticket": 1}

    async def test_late_events_of_an_erased_customer_leave_nothing_of_them(self, client):
        customer = await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        converted = {
            "lead_id": str(uuid.uuid4()),
            "customer_id": customer,
            "source": "campaign",
            "campaign_id": campaign["id"],
            "converted_at": NOW.isoformat(),
        }
        await apply(client, sales.LEAD_CONVERTED, converted)  # before the erasure
        await apply(client, CONTACT_ERASED, {"contact_id": customer, "erased_at": NOW.isoformat()})
        await apply(client, sales.LEAD_CONVERTED, {**converted, "lead_id": str(uuid.uuid4())})
        placed = order(customer, NOW)
        await apply(client, support.TICKET_OPENED, ticket_opened(customer, "urgent"))
        await apply(client, sales.ORDER_PLACED, placed)
        await apply(client, sales.ORDER_PAID, {**placed, "paid_at": NOW.isoformat()})
        await apply(client, analytics.CUSTOMER_SCORED, score(customer, "high"))
        async with app_of(client).state.session_factory() as session:
            for model in (TicketState, Order, Score, Lead):
                rows = await session.scalars(select(model.customer_id))
                assert str(customer) not in {str(c) for c in rows}, model.__name__
        assert (await report(client, campaign["id"]))["converted_leads"] == 2


class TestReport:
    async def test_conversions_from_sales_events(self, client):
        customer = await new_contact(client)
        campaign = await new_campaign(client, (await new_segment(client))["id"])
        await launch(client, campaign["id"])
        await deliver(client)
        for amount, currency in (("80.00", "EUR"), ("80.00", "EUR"), ("25.50", "USD")):
            placed = order(customer, NOW, campaign["id"], amount=amount)
            await apply(client, sales.ORDER_PLACED, {**placed, "currency": currency})
        await apply(client, sales.ORDER_PLACED, order(customer, NOW))  # not from the campaign
        refunded = order(customer, NOW, campaign["id"], amount="999.00")
        await apply(client, sales.ORDER_PLACED, refunded)
        await apply(client, sales.ORDER_REFUNDED, {**refunded, "refunded_at": NOW.isoformat()})
        await apply(
            client,
            sales.LEAD_CREATED,
            {
                "lead_id": str(uuid.uuid4()),
                "source": "campaign",
                "campaign_id": campaign["id"],
                "created_at": NOW.isoformat(),
            },
        )
        got = await report(client, campaign["id"])
        assert got["converted_orders"] == 3
        assert got["order_revenue_by_currency"] == {"EUR": "160", "USD": "25.5"}
        assert got["converted_leads"] == 1
        assert got["targeted"] == 1 and got["sent"] == 1


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)
