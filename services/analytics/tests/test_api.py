"""The customer 360, scores and segments, merges and erasures, through the API and a real DB."""

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import facts, rows
from services.analytics.app import create_app
from services.analytics.config import AnalyticsSettings
from services.analytics.models import CustomerScore, OrderFact, TicketFact
from services.analytics.tests.helpers import (
    apply,
    apply_many,
    assigned,
    breached,
    contact,
    deliver,
    erased,
    identified,
    merged,
    message,
    opened,
    order,
    outbox,
    rated,
    reopened,
    resolved,
    touch,
)
from shared import topics
from shared.consumer import prune_processed
from shared.contracts import sales, support
from shared.contracts.analytics import CUSTOMER_SCORED
from shared.events import Envelope, InteractionRecorded, decode_event, utcnow
from shared.testing import (
    app_of,
    one_write_waits_for_another,
    postgres_only,
    running,
    until_a_transaction_waits_for_a_lock,
)


def opportunity(customer: str, stage: str = "proposal") -> tuple[str, dict]:
    return sales.OPPORTUNITY_OPENED, {
        "opportunity_id": str(uuid.uuid4()),
        "customer_id": customer,
        "owner": "rep-1",
        "stage": stage,
        "probability": 0.5,
        "amount": "1000",
        "currency": "EUR",
        "expected_close": "2026-12-15",
        "opened_at": "2026-11-01T00:00:00Z",
    }


def applying(client, event_type: str, data: dict) -> Callable[[AsyncSession], Awaitable[None]]:
    """The event applied as its consumer applies a batch of one, in the session given."""
    [consumer] = [
        c for c in app_of(client).state.consumers if event_type in c.subscription.handlers
    ]
    subscription = consumer.subscription
    envelope = Envelope(id=str(uuid.uuid4()), source="/crm/test", type=event_type, data=data)

    async def apply_in(session: AsyncSession) -> None:
        if subscription.prefetch is not None:
            await subscription.prefetch(session, [envelope])
        await subscription.handlers[event_type](session, envelope)
        if subscription.finish is not None:
            await subscription.finish(session)

    return apply_in


async def scored(client) -> set[str]:
    """The customers analytics keeps scores for."""
    async with app_of(client).state.session_factory() as session:
        return {str(c) for c in await session.scalars(select(CustomerScore.customer_id))}


async def a_customer(client) -> tuple[str, str]:
    customer, ticket = str(uuid.uuid4()), str(uuid.uuid4())
    await apply_many(
        client,
        [
            contact(customer),
            touch(customer, "2026-11-20T10:00:00Z"),
            touch(
                customer,
                "2026-11-21T10:00:00Z",
                department="support",
                channel="email",
                kind="ticket_opened",
                sentiment="negative",
            ),
            touch(
                customer,
                "2026-11-22T10:00:00Z",
                department="marketing",
                channel="email",
                direction="outbound",
                kind="campaign_send",
                actor=None,
            ),
            opened(ticket, customer, "2026-11-21T10:00:00Z", priority="high"),
            breached(ticket, customer, "first_response", "2026-11-21T14:00:00Z"),
            opportunity(customer),
            order(customer, "250.00", "2026-11-10T00:00:00Z"),
        ],
    )
    return customer, ticket


async def scored_events(client, customer: str) -> list[dict]:
    rows = await outbox(client, topics.ANALYTICS)
    events = [decode_event(r.value) for r in rows if r.key == customer]
    assert all(e.type == CUSTOMER_SCORED and e.subject == customer for e in events)
    return [e.data for e in events]


def _factor(scores: dict, name: str) -> float:
    [value] = [f["value"] for f in scores["factors"] if f["name"] == name]
    return float(value)


class TestCustomer360:
    async def test_everything_about_one_customer(self, client):
        customer, ticket = await a_customer(client)
        response = await client.get(f"/v1/customers/{customer}/360")
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["customer_id"] == customer
        assert view["profile"] == {
            "name": "Ada Lovelace",
            "company": "Analytical Engines",
            "country": "GB",
        }
        assert "ada@example.com" not in json.dumps(view)
        assert [t["kind"] for t in view["touches"]["items"]] == [
            "campaign_send",
            "ticket_opened",
            "call",
        ]
        assert view["touches_per_channel"] == {"email": 2, "phone": 1}
        assert view["touches_per_department"] == {"marketing": 1, "sales": 1, "support": 1}
        assert view["last_inbound"]["kind"] == "ticket_opened"
        assert view["last_outbound"]["kind"] == "campaign_send"
        [open_ticket] = view["open_tickets"]
        assert open_ticket["ticket_id"] == ticket
        assert open_ticket["priority"] == "high" and open_ticket["sla_breaches"] == 1
        [opp] = view["open_opportunities"]
        assert opp["stage"] == "proposal" and opp["amount"] == "1000.00"
        [placed] = view["orders"]
        assert placed["amount"] == "250.00" and placed["status"] == "placed"
        scores = view["scores"]
        assert scores["frequency"] == 1 and scores["monetary"] == "250.00"
        factors = {f["name"]: f["value"] for f in scores["factors"]}
        assert factors["open_tickets"] == 0.5
        assert factors["breached_tickets"] == 1.0
        assert factors["negative_sentiment"] == 1.0

    async def test_touches_are_paged_and_filtered(self, client):
        customer, _ = await a_customer(client)
        first = (await client.get(f"/v1/customers/{customer}/360", params={"limit": 2})).json()
        assert len(first["touches"]["items"]) == 2 and first["touches"]["next_cursor"]
        rest = (
            await client.get(
                f"/v1/customers/{customer}/360",
                params={"limit": 2, "cursor": first["touches"]["next_cursor"]},
            )
        ).json()
        assert [t["kind"] for t in rest["touches"]["items"]] == ["call"]
        assert rest["touches"]["next_cursor"] is None
        for params, kinds in [
            ({"department": "support"}, ["ticket_opened"]),
            ({"channel": "phone"}, ["call"]),
            ({"kind": "campaign_send"}, ["campaign_send"]),
            ({"since": "2026-11-21T00:00:00Z", "until": "2026-11-22T00:00:00Z"}, ["ticket_opened"]),
        ]:
            view = (await client.get(f"/v1/customers/{customer}/360", params=params)).json()
            assert [t["kind"] for t in view["touches"]["items"]] == kinds, params

    async def test_an_unknown_customer_has_an_empty_360(self, client):
        customer = str(uuid.uuid4())
        view = (await client.get(f"/v1/customers/{customer}/360")).json()
        assert view["profile"] is None and view["touches"]["items"] == []
        assert view["orders"] == [] and view["scores"]["frequency"] == 0


class TestScores:
    async def test_scores_are_published_when_they_change_and_only_then(self, client):
        customer = str(uuid.uuid4())
        placed = order(customer, "120.00", "2026-11-20T00:00:00Z")
        await apply(client, *placed)
        [first] = await scored_events(client, customer)
        assert first["customer_id"] == customer
        assert first["frequency"] == 1 and first["monetary"] == "120.00"
        assert first["rfm_segment"] == "new"
        assert {f["name"] for f in first["factors"]} >= {"days_since_last_activity"}
        await apply(client, *placed)  # the same order again: nothing changed
        assert len(await scored_events(client, customer)) == 1
        second = order(customer, "80.00", "2026-11-21T00:00:00Z")
        await apply(client, *second)
        events = await scored_events(client, customer)
        assert len(events) == 2 and events[-1]["frequency"] == 2
        await apply(client, *second)  # unchanged against the stored scores, updated just now
        assert len(await scored_events(client, customer)) == 2

    async def test_churn_factors_count_each_windows_touches_and_the_last_inbound_ever(self, client):
        """Only the windows' touches are read for the counts; the last inbound touch, which
        may be older than every window, is still found."""
        customer = str(uuid.uuid4())

        def days_ago(days: int) -> str:
            return (utcnow() - timedelta(days=days, hours=1)).isoformat()

        async def factors() -> dict[str, float]:
            scores = (await client.get(f"/v1/customers/{customer}/scores")).json()
            return {f["name"]: f["value"] for f in scores["factors"]}

        await apply_many(
            client,
            [
                touch(customer, days_ago(400)),
                touch(customer, days_ago(150)),  # before every window
                touch(customer, days_ago(1), direction="outbound", sentiment="positive"),
            ],
        )
        lapsed = await factors()
        assert lapsed["days_since_last_activity"] == round(150 / 180, 4)
        assert lapsed["negative_sentiment"] == 0.0 and lapsed["falling_engagement"] == 0.0
        await apply_many(
            client,
            [
                touch(customer, days_ago(100)),  # the three windows before the recent one
                touch(customer, days_ago(60)),
                touch(customer, days_ago(10), direction="outbound", sentiment="negative"),
            ],
        )
        current = await factors()
        assert current["days_since_last_activity"] == round(60 / 180, 4)
        assert current["negative_sentiment"] == 0.5  # one of the window's two
        assert current["falling_engagement"] == 1.0  # none recent, two before

    async def test_scores_endpoint_and_rfm_segments(self, client):
        customer = str(uuid.uuid4())
        await apply(client, *order(customer, "120.00", "2026-11-20T00:00:00Z"))
        scores = (await client.get(f"/v1/customers/{customer}/scores")).json()
        assert scores["rfm_segment"] == "new" and scores["churn_level"] in ("low", "medium")
        assert len(scores["factors"]) == 5
        segments = (await client.get("/v1/segments/rfm")).json()["segments"]
        assert {"segment": "new", "customers": 1} in segments
        members = (await client.get("/v1/segments/rfm/new/customers")).json()
        assert [m["customer_id"] for m in members["items"]] == [customer]
        assert (await client.get("/v1/segments/rfm/champions/customers")).json()["items"] == []

    async def test_money_is_in_the_reporting_currency_and_never_mixed(self, client):
        """A customer's EUR and USD orders: monetary and CLV count the EUR ones only (the
        reporting currency by default), the USD ones count in frequency and recency and their
        total is reported apart. Summing 100 EUR and 900 USD gave a monetary of 1000."""
        customer = str(uuid.uuid4())
        await apply_many(
            client,
            [
                order(customer, "100.00", "2026-11-20T00:00:00Z"),
                order(customer, "900.00", "2026-11-21T00:00:00Z", currency="USD"),
            ],
        )
        scores = (await client.get(f"/v1/customers/{customer}/scores")).json()
        assert scores["currency"] == "EUR" and scores["monetary"] == "100.00"
        assert scores["monetary_other_currencies"] == {"USD": "900.00"}
        assert scores["frequency"] == 2
        # 100 spent, 100 a year expected over two years, discounted by the risk
        assert Decimal(scores["clv"]) <= Decimal("300.00")
        [published] = await scored_events(client, customer)
        for name in ("currency", "monetary", "monetary_other_currencies", "clv", "frequency"):
            assert published[name] == scores[name]
        segment = scores["rfm_segment"]
        [member] = (await client.get(f"/v1/segments/rfm/{segment}/customers")).json()["items"]
        assert member["monetary"] == "100.00" and member["currency"] == "EUR"

    async def test_the_reporting_currency_is_a_setting(self, analytics_settings):
        settings = analytics_settings.model_copy(update={"reporting_currency": "USD"})
        async with running(create_app(settings)) as client:
            customer = str(uuid.uuid4())
            await apply_many(
                client,
                [
                    order(customer, "100.00", "2026-11-20T00:00:00Z"),
                    order(customer, "900.00", "2026-11-21T00:00:00Z", currency="USD"),
                ],
            )
            scores = (await client.get(f"/v1/customers/{customer}/scores")).json()
            [published] = await scored_events(client, customer)
        assert scores["currency"] == published["currency"] == "USD"
        assert scores["monetary"] == published["monetary"] == "900.00"
        assert scores["monetary_other_currencies"] == {"EUR": "100.00"}

    def test_a_reporting_currency_not_iso_4217_is_refused_at_start(self, auth_settings):
        with pytest.raises(ValidationError, match="reporting_currency"):
            AnalyticsSettings(auth=auth_settings, reporting_currency="eur")


class TestMergesAndErasures:
    async def test_a_merge_moves_every_fact_to_the_survivor(self, client):
        loser, _ = await a_customer(client)
        survivor = str(uuid.uuid4())
        await apply_many(
            client, [contact(survivor, "Augusta"), order(survivor, "10", "2026-11-01T00:00:00Z")]
        )
        await apply(client, *merged(loser, survivor))
        view = (await client.get(f"/v1/customers/{loser}/360")).json()
        assert view["customer_id"] == survivor
        assert view["profile"]["name"] == "Augusta Lovelace"
        assert len(view["touches"]["items"]) == 3
        assert len(view["orders"]) == 2 and len(view["open_tickets"]) == 1
        assert view["scores"]["frequency"] == 2
        # Facts of the merged id arriving late are filed under the survivor.
        await apply(client, *order(loser, "5", "2026-11-23T00:00:00Z"))
        view = (await client.get(f"/v1/customers/{survivor}/360")).json()
        assert len(view["orders"]) == 3

    async def test_an_unknown_senders_ticket_moves_to_the_contact_they_turn_out_to_be(self, client):
        customer, stand_in, ticket = (str(uuid.uuid4()) for _ in range(3))
        # Opened as support published it before it flagged a stand-in id: analytics cannot
        # tell the id from a contact it has not heard of yet, and scores it as before.
        await apply_many(
            client, [contact(customer), opened(ticket, stand_in, "2026-11-20T10:00:00Z")]
        )
        assert await scored(client) >= {stand_in}  # an open ticket counts in a score
        await apply(client, *identified(ticket, customer, stand_in, "2026-11-21T10:00:00Z"))
        # Before, the ticket stayed under the stand-in id, in no customer's 360.
        view = (await client.get(f"/v1/customers/{customer}/360")).json()
        assert [t["ticket_id"] for t in view["open_tickets"]] == [ticket]
        # And the stand-in kept a score of its own: it scored no customer.
        assert stand_in not in await scored(client) and customer in await scored(client)

    async def test_an_unknown_senders_ticket_scores_no_one_until_identified(self, client):
        customer, stand_in, ticket = (str(uuid.uuid4()) for _ in range(3))
        # Every event of the ticket that rescores its customer, under the stand-in id, in a
        # later batch than the one that opened it.
        await apply(
            client, *opened(ticket, stand_in, "2026-11-20T10:00:00Z", unknown_customer=True)
        )
        await apply_many(
            client,
            [
                message(ticket, stand_in, "agent", "2026-11-20T11:00:00Z"),
                breached(ticket, stand_in, "resolution", "2026-11-20T12:00:00Z"),
                resolved(ticket, stand_in, None, "2026-11-20T13:00:00Z"),
                reopened(ticket, stand_in, "2026-11-20T14:00:00Z"),
            ],
        )
        # Before, the stand-in id was scored like a customer and its scores published: sales
        # and marketing kept one arriving after the sender was identified, of no customer.
        assert stand_in not in await scored(client)
        assert await scored_events(client, stand_in) == []
        kpis = (
            await client.get("/v1/kpis/support", params={"from": "2026-11-01", "to": "2026-11-30"})
        ).json()
        assert kpis["tickets_opened"] == 1 and kpis["sla_breaches"] == 1  # a ticket all the same
        # Identified, the ticket counts for the contact as any of theirs, and its later events
        # rescore them.
        await apply_many(
            client,
            [contact(customer), identified(ticket, customer, stand_in, "2026-11-21T10:00:00Z")],
        )
        view = (await client.get(f"/v1/customers/{customer}/360")).json()
        assert [t["ticket_id"] for t in view["open_tickets"]] == [ticket]
        [first] = await scored_events(client, customer)
        assert _factor(first, "open_tickets") > 0 and _factor(first, "breached_tickets") > 0
        await apply(client, *resolved(ticket, customer, None, "2026-11-22T10:00:00Z"))
        last = (await scored_events(client, customer))[-1]
        assert _factor(last, "open_tickets") == 0
        assert stand_in not in await scored(client)
        assert await scored_events(client, stand_in) == []

    async def test_an_event_from_before_the_identification_leaves_the_ticket_with_the_contact(
        self, client
    ):
        """The ticket's events under the stand-in id delivered again after the sender was
        identified: under a new event id, and under their own once their processed-event
        records aged out. Before, each filed the ticket under the stand-in again (and the
        opening flagged it unknown again): the contact's 360 had no open ticket, their
        open-ticket factor fell to 0 and the ticket's later events rescored no one."""
        customer, stand_in, ticket = (str(uuid.uuid4()) for _ in range(3))
        opening = opened(ticket, stand_in, "2026-11-20T10:00:00Z", unknown_customer=True)
        opening_id = uuid.uuid4()
        before = [
            assigned(ticket, stand_in, str(uuid.uuid4()), "2026-11-20T10:01:00Z"),
            message(ticket, stand_in, "agent", "2026-11-20T11:00:00Z"),
            breached(ticket, stand_in, "resolution", "2026-11-20T12:00:00Z"),
        ]
        await apply(client, *contact(customer))
        await deliver(client, *opening, opening_id)
        await apply_many(client, before)
        await apply(client, *identified(ticket, customer, stand_in, "2026-11-21T10:00:00Z"))

        async def still_the_contacts() -> None:
            view = (await client.get(f"/v1/customers/{customer}/360")).json()
            assert [t["ticket_id"] for t in view["open_tickets"]] == [ticket]
            assert _factor(view["scores"], "open_tickets") > 0
            assert stand_in not in await scored(client)

        await apply(client, *opening)  # under a new event id
        await still_the_contacts()
        await apply_many(client, before)
        await still_the_contacts()
        await prune_processed(app_of(client).state.session_factory, timedelta(0))
        await deliver(client, *opening, opening_id)  # under its own
        await still_the_contacts()
        # Its later events still rescore the contact: the ticket is not flagged unknown again.
        await apply(client, *resolved(ticket, customer, None, "2026-11-22T10:00:00Z"))
        last = (await scored_events(client, customer))[-1]
        assert _factor(last, "open_tickets") == 0
        assert await scored_events(client, stand_in) == []

    async def test_an_erasure_leaves_only_anonymous_counts(self, client):
        customer, ticket = await a_customer(client)
        await apply(client, *erased(customer))
        response = await client.get(f"/v1/customers/{customer}/360")
        assert response.status_code == 404
        assert (await client.get(f"/v1/customers/{customer}/scores")).status_code == 404
        async with app_of(client).state.session_factory() as session:
            fact = await session.get(TicketFact, uuid.UUID(ticket))
            assert fact is not None and fact.customer_id is None
            owners = await session.scalars(select(TicketFact.customer_id))
            assert uuid.UUID(customer) not in set(owners)
        kpis = (
            await client.get("/v1/kpis/support", params={"from": "2026-11-01", "to": "2026-11-30"})
        ).json()
        assert kpis["tickets_opened"] == 1 and kpis["sla_breaches"] == 1
        usage = (
            await client.get("/v1/kpis/usage", params={"from": "2026-11-01", "to": "2026-11-30"})
        ).json()
        assert sum(d["touches"] for d in usage["per_department"]) == 3
        # A late event about the erased customer is counted without them.
        await apply(client, *order(customer, "5", "2026-11-23T00:00:00Z"))
        sales_kpis = (
            await client.get("/v1/kpis/sales", params={"from": "2026-11-01", "to": "2026-11-30"})
        ).json()
        assert sales_kpis["revenue_per_month"][0]["revenue"] == "255.00"
        segments = (await client.get("/v1/segments/rfm")).json()["segments"]
        assert sum(s["customers"] for s in segments) == 0

    async def test_an_erasure_committed_while_a_batch_runs_is_not_undone_by_it(self, client):
        """A support batch has read a ticket's row (and its customer) when the customer's
        erasure commits; the batch then writes what it changed, not the old id back."""
        customer, ticket = await a_customer(client)
        factory = app_of(client).state.session_factory
        async with factory() as batch:
            await rows.load_owners(batch, [uuid.UUID(customer)])
            await rows.load(batch, TicketFact, [uuid.UUID(ticket)])
            _, data = rated(ticket, customer, None, 5, "2026-11-23T00:00:00Z")
            await facts.satisfaction_rated(batch, support.TicketSatisfactionRated(**data))
            await apply(client, *erased(customer))  # commits meanwhile
            await rows.write(batch)
            await batch.commit()
        async with factory() as session:
            fact = await session.get(TicketFact, uuid.UUID(ticket))
            assert fact is not None and fact.csat == 5 and fact.customer_id is None

    async def test_an_erasure_waits_for_a_batch_filing_a_new_fact_of_its_customer(self, client):
        """A support batch files a new ticket of a customer whose erasure arrives meanwhile:
        the erasure waits for the batch (the customers' locks) and then anonymises the ticket,
        instead of re-pointing the facts before the batch commits one under the erased id."""
        customer, _ = await a_customer(client)
        ticket = str(uuid.uuid4())
        event_type, data = opened(ticket, customer, "2026-11-24T09:00:00Z")
        event = Envelope(id=str(uuid.uuid4()), source="/crm/test", type=event_type, data=data)
        factory = app_of(client).state.session_factory
        async with factory() as batch:
            await rows.prefetch_support(batch, [event])
            await facts.ticket_opened(batch, support.TicketOpened(**data))
            erasure = asyncio.create_task(apply(client, *erased(customer)))
            await asyncio.sleep(0.3)  # time enough for the erasure, were it not held off
            assert not erasure.done()
            await rows.write(batch)
            await batch.commit()
        await erasure
        async with factory() as session:
            fact = await session.get(TicketFact, uuid.UUID(ticket))
            assert fact is not None and fact.customer_id is None


class TestUsage:
    async def test_touches_per_department_and_agent_per_day(self, client):
        c = str(uuid.uuid4())
        call = touch(c, "2026-11-20T10:00:00Z")
        await apply_many(
            client,
            [
                call,
                call,  # the same touch again: counted once
                touch(c, "2026-11-20T11:00:00Z", actor="rep-8"),
                touch(c, "2026-11-20T12:00:00Z", department="support", actor="agent-1"),
                touch(c, "2026-11-21T09:00:00Z", department="marketing", actor=None),
            ],
        )
        usage = (
            await client.get("/v1/kpis/usage", params={"from": "2026-11-20", "to": "2026-11-21"})
        ).json()
        assert usage["per_department"] == [
            {"date": "2026-11-20", "department": "sales", "touches": 2},
            {"date": "2026-11-20", "department": "support", "touches": 1},
            {"date": "2026-11-21", "department": "marketing", "touches": 1},
        ]
        assert usage["per_agent"] == [
            {"date": "2026-11-20", "department": "sales", "actor": "rep-7", "touches": 1},
            {"date": "2026-11-20", "department": "sales", "actor": "rep-8", "touches": 1},
            {"date": "2026-11-20", "department": "support", "actor": "agent-1", "touches": 1},
        ]

    @postgres_only
    async def test_replicas_counting_the_same_day_at_once_add_up(self, client):
        """Replicas consume different partitions, so they count touches into the same daily
        row in concurrent transactions: the second waits for the first and adds to its count
        (instead of failing on the row the first inserted, or overwriting its count)."""
        factory = app_of(client).state.session_factory
        one, other = (
            InteractionRecorded.model_validate(touch(str(uuid.uuid4()), "2026-11-25T10:00:00Z")[1])
            for _ in range(2)
        )
        async with factory() as first, factory() as second:
            await facts.touches_recorded(first, [one])  # the day's row inserted, not committed
            second_done = asyncio.create_task(facts.touches_recorded(second, [other]))
            await until_a_transaction_waits_for_a_lock(first)  # the second, on the first
            await first.commit()
            await second_done
            await second.commit()
        usage = (
            await client.get("/v1/kpis/usage", params={"from": "2026-11-25", "to": "2026-11-25"})
        ).json()
        assert usage["per_department"] == [
            {"date": "2026-11-25", "department": "sales", "touches": 2}
        ]

    @postgres_only
    async def test_an_order_of_a_merged_customer_follows_its_survivors_merge(self, client):
        first, second, last = (str(uuid.uuid4()) for _ in range(3))
        await apply(client, *merged(first, second))  # earlier
        late = order(first, "5", "2026-11-23T00:00:00Z")
        # The order took first's lock only, and was filed under second while second's merge,
        # which locks second, moved second's facts: it stayed under second, in no 360.
        await one_write_waits_for_another(
            app_of(client).state.session_factory,
            applying(client, *merged(second, last)),
            applying(client, *late),
        )
        async with app_of(client).state.session_factory() as session:
            owner = await session.scalar(
                select(OrderFact.customer_id).where(OrderFact.order_id == late[1]["order_id"])
            )
        assert str(owner) == last

    async def test_touches_of_an_erased_customer_still_count_anonymously(self, client):
        c = str(uuid.uuid4())
        await apply_many(client, [contact(c), touch(c, "2026-11-20T10:00:00Z")])
        await apply(client, *erased(c))
        await apply(client, *touch(c, "2026-11-20T11:00:00Z"))  # late: kept nowhere, counted
        usage = (
            await client.get("/v1/kpis/usage", params={"from": "2026-11-20", "to": "2026-11-20"})
        ).json()
        assert usage["per_department"] == [
            {"date": "2026-11-20", "department": "sales", "touches": 2}
        ]
        assert (await client.get(f"/v1/customers/{c}/360")).status_code == 404

    async def test_a_touch_of_an_erased_customer_delivered_again_counts_once(self, client):
        """The timeline's row of a touch is what told a replayed touch from a new one, and the
        erasure deletes it: a touch counted before the erasure counted again when it came back
        after it, under its own event id once the runner's processed-event records of it had
        aged out (as a replay or a late redelivery finds them), or under another one."""
        c = str(uuid.uuid4())
        before, late = touch(c, "2026-11-20T10:00:00Z"), touch(c, "2026-11-20T11:00:00Z")
        before_id, late_id = uuid.uuid4(), uuid.uuid4()
        await apply(client, *contact(c))
        await deliver(client, *before, before_id)
        await apply(client, *erased(c))
        await deliver(client, *late, late_id)  # late: first seen after the erasure, counted
        await prune_processed(app_of(client).state.session_factory, timedelta(0))
        for event, event_id in ((before, before_id), (late, late_id)):
            await deliver(client, *event, event_id)
            await apply(client, *event)  # under another event id
        usage = (
            await client.get("/v1/kpis/usage", params={"from": "2026-11-20", "to": "2026-11-20"})
        ).json()
        assert usage["per_department"] == [
            {"date": "2026-11-20", "department": "sales", "touches": 2}
        ]
        assert (await client.get(f"/v1/customers/{c}/360")).status_code == 404
