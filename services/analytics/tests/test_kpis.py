"""The KPIs on hand-made event histories whose answers were worked out by hand (in the
comments), including tickets spanning the period's edges, reopened and re-assigned tickets,
tickets without an agent reply and events delivered twice."""

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.analytics.tests.helpers import (
    apply,
    apply_many,
    assigned,
    breached,
    closed,
    deliver,
    message,
    opened,
    rated,
    reassigned,
    reopened,
    resolved,
)
from shared.consumer import prune_processed
from shared.contracts import marketing, sales
from shared.testing import app_of

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"
NOV = {"from": "2026-11-01", "to": "2026-11-30"}
# A period still ahead, for the forecast (a period that has ended forecasts no open deal).
NOV_2099 = {"from": "2099-11-01", "to": "2099-11-30"}


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


@pytest.fixture
async def tickets(client):
    c = str(uuid.uuid4())
    t0, t1, t2, t3, t4, t5, t6, t7 = ids(8)
    m2 = str(uuid.uuid4())
    history = [
        # T0: opened before the period, resolved in it by A after 3 days; 2 messages.
        opened(t0, c, "2026-10-31T10:00:00Z"),
        assigned(t0, c, A, "2026-10-31T10:00:00Z"),
        message(t0, c, "agent", "2026-10-31T11:00:00Z"),
        message(t0, c, "customer", "2026-11-01T11:00:00Z"),
        resolved(t0, c, A, "2026-11-03T10:00:00Z"),
        # T1 (Monday): first response after 1800 s, resolved by A after 10800 s, CSAT 5.
        opened(t1, c, "2026-11-02T09:00:00Z"),
        assigned(t1, c, A, "2026-11-02T09:00:00Z"),
        message(t1, c, "customer", "2026-11-02T09:10:00Z"),
        message(t1, c, "agent", "2026-11-02T09:30:00Z"),
        message(t1, c, "agent", "2026-11-02T10:00:00Z"),
        resolved(t1, c, A, "2026-11-02T12:00:00Z"),
        rated(t1, c, A, 5, "2026-11-02T13:00:00Z"),
        # T2 (Monday): re-assigned from A to B, who answers after 7200 s and resolves after
        # 86400 s; CSAT 3. Its one message is delivered twice.
        opened(t2, c, "2026-11-02T15:00:00Z"),
        assigned(t2, c, A, "2026-11-02T15:00:00Z"),
        reassigned(t2, c, B, "2026-11-02T16:00:00Z"),
        message(t2, c, "agent", "2026-11-02T17:00:00Z", message_id=m2),
        message(t2, c, "agent", "2026-11-02T17:00:00Z", message_id=m2),
        resolved(t2, c, B, "2026-11-03T15:00:00Z"),
        rated(t2, c, B, 3, "2026-11-04T09:00:00Z"),
        # T3 (Wednesday): no agent reply, its first-response SLA breached.
        opened(t3, c, "2026-11-04T08:00:00Z", priority="high"),
        message(t3, c, "customer", "2026-11-04T08:00:00Z"),
        breached(t3, c, "first_response", "2026-11-04T12:00:00Z"),
        breached(t3, c, "first_response", "2026-11-04T12:00:00Z"),  # delivered twice
        # T4 (Thursday): answered after 3600 s, resolved by A, reopened by the customer,
        # resolved again by B: 86400 s from opening to the final resolution, credited to B.
        opened(t4, c, "2026-11-05T10:00:00Z"),
        assigned(t4, c, A, "2026-11-05T10:00:00Z"),
        message(t4, c, "agent", "2026-11-05T11:00:00Z"),
        resolved(t4, c, A, "2026-11-05T12:00:00Z"),
        message(t4, c, "customer", "2026-11-06T09:00:00Z"),
        reopened(t4, c, "2026-11-06T09:00:00Z"),
        assigned(t4, c, B, "2026-11-06T09:30:00Z"),
        resolved(t4, c, B, "2026-11-06T10:00:00Z"),
        # T5 (Monday 30th): opened in the period, answered after 3599 s, resolved and rated
        # after it.
        opened(t5, c, "2026-11-30T23:00:00Z"),
        message(t5, c, "agent", "2026-11-30T23:59:59Z"),
        resolved(t5, c, A, "2026-12-01T02:00:00Z"),
        rated(t5, c, A, 1, "2026-12-01T03:00:00Z"),
        # T6: after the period altogether.
        opened(t6, c, "2026-12-01T00:00:00Z"),
        resolved(t6, c, A, "2026-12-01T05:00:00Z"),
        # T7 (Saturday): resolved in the period, reopened and still open: not resolved.
        opened(t7, c, "2026-11-07T10:00:00Z"),
        resolved(t7, c, A, "2026-11-08T10:00:00Z"),
        reopened(t7, c, "2026-11-09T10:00:00Z"),
    ]
    # T1's resolution and rating arrive a second time (another event id: a republish).
    history += [
        resolved(t1, c, A, "2026-11-02T12:00:00Z"),
        rated(t1, c, A, 5, "2026-11-02T13:00:00Z"),
    ]
    for event_type, data in history:
        await apply(client, event_type, data)
    return {"customer": c, "tickets": [t0, t1, t2, t3, t4, t5, t6, t7]}


class TestSupportKpis:
    async def test_every_figure_matches_the_hand_computed_answer(self, client, tickets):
        response = await client.get("/v1/kpis/support", params=NOV)
        assert response.status_code == 200, response.text
        kpis = response.json()
        assert kpis["tickets_opened"] == 6  # T1 T2 T3 T4 T5 T7
        per_day = {d["date"]: d["count"] for d in kpis["requests_per_day"]}
        assert len(per_day) == 30 and sum(per_day.values()) == 6
        assert {d: n for d, n in per_day.items() if n} == {
            "2026-11-02": 2,
            "2026-11-04": 1,
            "2026-11-05": 1,
            "2026-11-07": 1,
            "2026-11-30": 1,
        }
        assert kpis["requests_per_weekday"] == [
            {"weekday": "Monday", "count": 3},
            {"weekday": "Tuesday", "count": 0},
            {"weekday": "Wednesday", "count": 1},
            {"weekday": "Thursday", "count": 1},
            {"weekday": "Friday", "count": 0},
            {"weekday": "Saturday", "count": 1},
            {"weekday": "Sunday", "count": 0},
        ]
        assert kpis["requests_per_month"] == [{"month": "2026-11", "count": 6}]
        # T1 1800, T2 7200, T4 3600, T5 3599 (T3 has no agent reply): 16199 / 4
        assert kpis["avg_first_response_seconds"] == 4049.75
        # Resolved in the period: T0 259200, T1 10800, T2 86400, T4 86400 -> 442800 / 4
        assert kpis["tickets_resolved"] == 4
        assert kpis["avg_resolution_seconds"] == 110700.0
        # Messages of T0 2, T1 3, T2 1 (delivered twice), T4 2 -> 8 / 4
        assert kpis["avg_exchanges_per_ticket"] == 2.0
        assert kpis["closed_per_agent"] == [
            {"agent_id": A, "closed": 2, "avg_csat": 5.0},  # T0 (unrated), T1 (5)
            {"agent_id": B, "closed": 2, "avg_csat": 3.0},  # T2 (3), T4 (re-assigned, unrated)
        ]
        # Ratings given in the period: T1 5 (counted once), T2 3; T5's is in December.
        assert kpis["avg_csat"] == 4.0
        assert kpis["ratings"] == 2
        assert kpis["sla_breaches"] == 1

    async def test_a_period_of_one_day(self, client, tickets):
        kpis = (
            await client.get("/v1/kpis/support", params={"from": "2026-11-03", "to": "2026-11-03"})
        ).json()
        assert kpis["tickets_opened"] == 0
        assert kpis["requests_per_day"] == [{"date": "2026-11-03", "count": 0}]
        assert kpis["requests_per_month"] == [{"month": "2026-11", "count": 0}]
        assert kpis["tickets_resolved"] == 2  # T0 and T2
        assert kpis["avg_resolution_seconds"] == (259200 + 86400) / 2
        assert kpis["avg_first_response_seconds"] is None
        assert kpis["avg_csat"] is None

    async def test_the_months_across_a_year_end(self, client, tickets):
        kpis = (
            await client.get("/v1/kpis/support", params={"from": "2026-10-15", "to": "2027-01-10"})
        ).json()
        assert kpis["requests_per_month"] == [
            {"month": "2026-10", "count": 1},
            {"month": "2026-11", "count": 6},
            {"month": "2026-12", "count": 1},
            {"month": "2027-01", "count": 0},
        ]
        assert kpis["tickets_opened"] == 8

    async def test_a_ticket_reopened_and_resolved_again_counts_once(self, client, tickets):
        c, t4 = tickets["customer"], tickets["tickets"][4]
        # The reopening and the second resolution delivered again change nothing.
        await apply(client, *reopened(t4, c, "2026-11-06T09:00:00Z"))
        await apply(client, *resolved(t4, c, B, "2026-11-06T10:00:00Z"))
        kpis = (await client.get("/v1/kpis/support", params=NOV)).json()
        assert kpis["tickets_resolved"] == 4
        assert kpis["avg_resolution_seconds"] == 110700.0


class TestSalesKpis:
    async def test_leads_conversion_pipeline_forecast_and_revenue(self, client):
        c1, c2 = ids(2)
        l1, l2, l3, l4 = ids(4)
        o1, o2, o3, o4 = ids(4)
        campaign = str(uuid.uuid4())

        def lead(lead_id, source, at, campaign_id=None):
            return sales.LEAD_CREATED, {
                "lead_id": lead_id,
                "source": source,
                "campaign_id": campaign_id,
                "created_at": at,
            }

        def opportunity(opp, customer, stage, amount, p, at, close=None, opened_at=None):
            data = {
                "opportunity_id": opp,
                "customer_id": customer,
                "owner": "rep-1",
                "stage": stage,
                "probability": p,
                "amount": amount,
                "currency": "EUR",
                "expected_close": close,
                "opened_at": opened_at or at,
            }
            if opened_at is None:
                return sales.OPPORTUNITY_OPENED, data
            return sales.OPPORTUNITY_STAGE_CHANGED, {**data, "from_stage": "x", "changed_at": at}

        await apply_many(
            client,
            [
                lead(l1, "web", "2026-11-02T10:00:00Z"),
                lead(l2, "web", "2026-11-03T10:00:00Z"),
                lead(l3, "campaign", "2026-11-04T10:00:00Z", campaign),
                lead(l4, "web", "2026-10-20T10:00:00Z"),  # before the period
                (
                    sales.LEAD_CONVERTED,
                    {
                        "lead_id": l1,
                        "customer_id": c1,
                        "source": "web",
                        "converted_at": "2026-11-05T10:00:00Z",
                    },
                ),
                # o1 won after 10 days, o2 lost, o3 open in proposal, o4 open in qualification
                opportunity(o1, c1, "proposal", "1000", 0.5, "2026-11-01T00:00:00Z"),
                opportunity(
                    o1,
                    c1,
                    "won",
                    "1200",
                    1.0,
                    "2026-11-11T00:00:00Z",
                    opened_at="2026-11-01T00:00:00Z",
                ),
                opportunity(o2, c2, "proposal", "500", 0.5, "2026-11-01T00:00:00Z"),
                opportunity(
                    o2,
                    c2,
                    "lost",
                    "500",
                    0.0,
                    "2026-11-06T00:00:00Z",
                    opened_at="2026-11-01T00:00:00Z",
                ),
                # An older stage change arriving late is ignored.
                opportunity(
                    o2,
                    c2,
                    "proposal",
                    "500",
                    0.5,
                    "2026-11-03T00:00:00Z",
                    opened_at="2026-11-01T00:00:00Z",
                ),
                opportunity(o3, c1, "proposal", "2000", 0.5, "2026-11-10T00:00:00Z", "2099-11-20"),
                opportunity(
                    o4, c2, "qualification", "400", 0.25, "2026-11-10T00:00:00Z", "2100-03-01"
                ),
                order_event(c1, "100.50", "2026-11-12T00:00:00Z"),
                order_event(c1, "200", "2026-11-20T00:00:00Z"),
                order_event(c2, "999", "2026-10-20T00:00:00Z"),  # before the period
            ],
        )
        kpis = (await client.get("/v1/kpis/sales", params=NOV)).json()
        assert kpis["leads"] == 3
        assert kpis["leads_by_source"] == [
            {"source": "web", "count": 2},
            {"source": "campaign", "count": 1},
        ]
        assert kpis["lead_conversion_rate"] == 0.3333  # l1 of l1 l2 l3
        assert kpis["win_rate"] == 0.5
        assert kpis["avg_sales_cycle_days"] == 10.0
        assert kpis["pipeline_per_stage"] == [
            {
                "stage": "proposal",
                "currency": "EUR",
                "count": 1,
                "value": "2000.00",
                "weighted_value": "1000.00",
            },
            {
                "stage": "qualification",
                "currency": "EUR",
                "count": 1,
                "value": "400.00",
                "weighted_value": "100.00",
            },
        ]
        # November 2026 has ended: no open deal can still close in it.
        assert kpis["weighted_forecast"] == []
        assert kpis["revenue_per_month"] == [
            {"month": "2026-11", "currency": "EUR", "revenue": "300.50"}
        ]
        # Only o3 is expected to close in November 2099.
        kpis = (await client.get("/v1/kpis/sales", params=NOV_2099)).json()
        assert kpis["weighted_forecast"] == [{"currency": "EUR", "value": "1000.00"}]

    async def test_a_deals_new_terms_count_and_older_ones_arriving_late_do_not(self, client):
        o, c = ids(2)
        await apply_many(
            client,
            [
                deal(o, c, "1000", "2099-12-20"),
                # The rep raises the amount and brings the close into November...
                deal(o, c, "5000", "2099-11-20", updated_at="2026-11-03T00:00:00Z"),
                # ...after an earlier change that arrives late.
                deal(o, c, "3000", "2099-12-01", updated_at="2026-11-02T00:00:00Z"),
            ],
        )
        kpis = (await client.get("/v1/kpis/sales", params=NOV_2099)).json()
        assert kpis["pipeline_per_stage"] == [
            {
                "stage": "proposal",
                "currency": "EUR",
                "count": 1,
                "value": "5000.00",
                "weighted_value": "2500.00",
            }
        ]
        assert kpis["weighted_forecast"] == [{"currency": "EUR", "value": "2500.00"}]

    async def test_a_deals_opening_delivered_again_does_not_undo_a_change_of_its_instant(
        self, client
    ):
        """Won in the instant it was opened, then the opening delivered again: under a new
        event id, and under its own once its processed-event record aged out. An event of
        the same instant as the one applied passed as newer (>=): the won deal was open in
        its first stage again, in the pipeline and out of the win rate."""
        o, c = ids(2)
        opening = deal(o, c, "1000", "2099-11-20")
        opening_id = uuid.uuid4()
        await deliver(client, *opening, opening_id)
        await apply(client, *stage_change(o, c, "proposal", "won", 1.0, "2026-11-01T00:00:00Z"))

        async def still_won() -> None:
            kpis = (await client.get("/v1/kpis/sales", params=NOV)).json()
            assert kpis["win_rate"] == 1.0 and kpis["pipeline_per_stage"] == []

        await still_won()
        await apply(client, *opening)
        await still_won()
        await prune_processed(app_of(client).state.session_factory, timedelta(0))
        await deliver(client, *opening, opening_id)
        await still_won()

    @pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
    async def test_changes_of_one_instant_leave_the_deal_as_sales_left_it(self, client, order):
        """Moved twice and given new terms in one instant (a clock that coarse), and those
        events delivered again in any order after the last: the deal is as the last left it,
        in negotiation at 5000. Before, the one applied last won, whatever it said."""
        o, c = ids(2)
        at = "2026-11-02T00:00:00Z"
        changes = [
            stage_change(o, c, "qualification", "proposal", 0.5, at),
            stage_change(o, c, "proposal", "negotiation", 0.75, at),
            deal(o, c, "5000", "2099-11-20", "negotiation", 0.75, updated_at=at),
        ]
        await apply_many(client, [deal(o, c, "1000", "2099-11-20", "qualification", 0.25)])
        await apply_many(client, changes)
        for n in order:
            await apply(client, *changes[n])  # each under a new event id, in a batch of its own
        kpis = (await client.get("/v1/kpis/sales", params=NOV_2099)).json()
        assert kpis["pipeline_per_stage"] == [
            {
                "stage": "negotiation",
                "currency": "EUR",
                "count": 1,
                "value": "5000.00",
                "weighted_value": "3750.00",
            }
        ]

    async def test_weighted_figures_round_each_deal_half_up_as_sales_does(self, client):
        o1, o2, o3, o4, c = ids(5)
        await apply_many(
            client,
            [
                # 2.15 * 0.5 = 1.075 -> 1.08 (sales' forecast says 1.08).
                deal(o1, c, "2.15", "2099-11-20"),
                # 0.05 * 0.1 = 0.005 -> 0.01 a deal, 0.03 for the three (not 0.015 -> 0.02).
                *(deal(o, c, "0.05", "2099-12-20", "prospecting", 0.1) for o in (o2, o3, o4)),
            ],
        )
        kpis = (await client.get("/v1/kpis/sales", params=NOV_2099)).json()
        weighted = {s["stage"]: s["weighted_value"] for s in kpis["pipeline_per_stage"]}
        assert weighted == {"proposal": "1.08", "prospecting": "0.03"}
        assert kpis["weighted_forecast"] == [{"currency": "EUR", "value": "1.08"}]
        december = {"from": "2099-12-01", "to": "2099-12-31"}
        kpis = (await client.get("/v1/kpis/sales", params=december)).json()
        assert kpis["weighted_forecast"] == [{"currency": "EUR", "value": "0.03"}]

    async def test_an_overdue_open_deal_counts_in_the_period_holding_today(self, client):
        """As in sales' forecast: a deal past its expected close slipped, it did not go away."""
        today = datetime.now(UTC).date()
        this_month = today.replace(day=1)
        last_month = (this_month - timedelta(days=1)).replace(day=1)
        o1, o2, c = ids(3)
        await apply_many(
            client,
            [
                deal(o1, c, "1000", str(last_month)),  # overdue: 500 weighted
                deal(o2, c, "100", "2099-11-20"),  # later: 50 weighted
            ],
        )
        now = {"from": str(this_month), "to": str(today)}
        kpis = (await client.get("/v1/kpis/sales", params=now)).json()
        assert kpis["weighted_forecast"] == [{"currency": "EUR", "value": "500.00"}]
        ended = {"from": str(last_month), "to": str(this_month - timedelta(days=1))}
        kpis = (await client.get("/v1/kpis/sales", params=ended)).json()
        assert kpis["weighted_forecast"] == []


def deal(opp, customer, amount, close, stage="proposal", p=0.5, updated_at=None):
    """An opportunity opened on 1 November; with ``updated_at``, its terms changed then."""
    data = {
        "opportunity_id": opp,
        "customer_id": customer,
        "owner": "rep-1",
        "stage": stage,
        "probability": p,
        "amount": amount,
        "currency": "EUR",
        "expected_close": close,
        "opened_at": "2026-11-01T00:00:00Z",
    }
    if updated_at is None:
        return sales.OPPORTUNITY_OPENED, data
    return sales.OPPORTUNITY_UPDATED, {**data, "updated_at": updated_at}


def stage_change(opp, customer, from_stage, stage, p, at, amount="1000"):
    """A deal opened on 1 November (as ``deal``) moved from ``from_stage`` to ``stage``."""
    return sales.OPPORTUNITY_STAGE_CHANGED, {
        **deal(opp, customer, amount, "2099-11-20", stage, p)[1],
        "from_stage": from_stage,
        "changed_at": at,
    }


def order_event(customer, amount, at, **fields):
    return sales.ORDER_PLACED, {
        "order_id": str(uuid.uuid4()),
        "customer_id": customer,
        "amount": amount,
        "currency": "EUR",
        "status": "placed",
        "ordered_at": at,
        **fields,
    }


class TestMarketingKpis:
    async def test_per_campaign_rates_suppressions_leads_revenue_and_cost(self, client):
        campaign = str(uuid.uuid4())
        c1, c2, c3, c4 = ids(4)
        s1, s2, s3, s4 = ids(4)

        def sent(send, customer):
            return marketing.MESSAGE_SENT, {
                "send_id": send,
                "campaign_id": campaign,
                "customer_id": customer,
                "channel": "email",
                "cost": "0.50",
                "sent_at": "2026-11-10T10:00:00Z",
            }

        def engaged(send, customer, kind):
            return marketing.ENGAGEMENT_RECORDED, {
                "send_id": send,
                "campaign_id": campaign,
                "customer_id": customer,
                "kind": kind,
                "occurred_at": "2026-11-10T12:00:00Z",
            }

        await apply_many(
            client,
            [
                (
                    marketing.CAMPAIGN_LAUNCHED,
                    {
                        "campaign_id": campaign,
                        "name": "Black Friday",
                        "channel": "email",
                        "budget": "100",
                        "cost_per_send": "0.50",
                        "launched_at": "2026-11-10T09:00:00Z",
                    },
                ),
                sent(s1, c1),
                sent(s2, c2),
                sent(s3, c3),
                sent(s4, c4),
                engaged(s1, c1, "opened"),
                engaged(s1, c1, "opened"),  # a second open counts once
                engaged(s2, c2, "clicked"),  # a click implies an open
                engaged(s3, c3, "delivered"),
                engaged(s4, c4, "unsubscribed"),
                (
                    marketing.MESSAGE_SUPPRESSED,
                    {
                        "campaign_id": campaign,
                        "customer_id": str(uuid.uuid4()),
                        "channel": "email",
                        "reasons": ["weekly_limit_reached", "quiet_hours"],
                        "suppressed_at": "2026-11-10T10:00:00Z",
                    },
                ),
                (
                    sales.LEAD_CREATED,
                    {
                        "lead_id": str(uuid.uuid4()),
                        "source": "campaign",
                        "campaign_id": campaign,
                        "created_at": "2026-11-11T10:00:00Z",
                    },
                ),
                order_event(c1, "80", "2026-11-12T00:00:00Z", campaign_id=campaign),
            ],
        )
        [item] = (await client.get("/v1/kpis/marketing", params=NOV)).json()["campaigns"]
        assert item["name"] == "Black Friday"
        assert item["sent"] == 4
        assert item["suppressed"] == 2
        assert item["suppressed_by_reason"] == {"quiet_hours": 1, "weekly_limit_reached": 1}
        assert item["open_rate"] == 0.5  # s1, s2
        assert item["click_rate"] == 0.25
        assert item["unsubscribe_rate"] == 0.25
        assert item["cost"] == "2.00"
        assert item["leads"] == 1
        assert item["cost_per_lead"] == "2.00"
        assert item["revenue"] == [{"currency": "EUR", "revenue": "80.00"}]


class TestArrivalOrder:
    @pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
    async def test_resolutions_and_reopenings_in_any_order(self, client, order):
        c, t = ids(2)
        events = [
            resolved(t, c, A, "2026-11-05T12:00:00Z"),
            reopened(t, c, "2026-11-06T09:00:00Z"),
            resolved(t, c, B, "2026-11-06T10:00:00Z"),
            message(t, c, "agent", "2026-11-05T11:00:00Z"),
        ]
        await apply(client, *opened(t, c, "2026-11-05T10:00:00Z"))
        for n in order:
            await apply(client, *events[n])
        kpis = (await client.get("/v1/kpis/support", params=NOV)).json()
        assert kpis["closed_per_agent"] == [{"agent_id": B, "closed": 1, "avg_csat": None}]
        assert kpis["avg_resolution_seconds"] == 86400.0
        assert kpis["avg_first_response_seconds"] == 3600.0

    @pytest.mark.parametrize("erasure_first", [False, True])
    async def test_a_close_for_the_customers_erasure_is_no_resolution(self, client, erasure_first):
        """Support closes an erased customer's unfinished tickets (``reason: erasure``): an
        unresolved one closed so is no resolution, nor one whose resolution a reopening undid
        (the close arriving before or after the rest); a ticket an agent resolved before
        the erasure keeps its resolution, credited to the agent."""
        c, unresolved, undone, done = ids(4)
        history = [
            opened(unresolved, c, "2026-11-05T10:00:00Z"),
            assigned(unresolved, c, A, "2026-11-05T10:00:00Z"),
            opened(undone, c, "2026-11-05T10:00:00Z"),
            resolved(undone, c, A, "2026-11-05T12:00:00Z"),
            reopened(undone, c, "2026-11-06T09:00:00Z"),
            opened(done, c, "2026-11-05T10:00:00Z"),
            resolved(done, c, B, "2026-11-05T11:00:00Z"),
        ]
        closes = [
            closed(t, c, "2026-11-07T10:00:00Z", reason="erasure")
            for t in (unresolved, undone, done)
        ]
        for event in closes + history if erasure_first else history + closes:
            await apply(client, *event)
        kpis = (await client.get("/v1/kpis/support", params=NOV)).json()
        assert kpis["tickets_resolved"] == 1
        assert kpis["closed_per_agent"] == [{"agent_id": B, "closed": 1, "avg_csat": None}]
        assert kpis["avg_resolution_seconds"] == 3600.0

    async def test_a_ticket_resolved_by_no_agent_is_credited_to_none(self, client):
        c, t, u = ids(3)
        await apply(client, *opened(t, c, "2026-11-05T10:00:00Z"))
        await apply(client, *resolved(t, c, A, "2026-11-05T12:00:00Z"))
        await apply(client, *opened(u, c, "2026-11-05T10:00:00Z"))  # never assigned
        await apply(client, *resolved(u, c, None, "2026-11-05T11:00:00Z"))
        kpis = (await client.get("/v1/kpis/support", params=NOV)).json()
        assert kpis["closed_per_agent"] == [
            {"agent_id": A, "closed": 1, "avg_csat": None},
            {"agent_id": None, "closed": 1, "avg_csat": None},
        ]
        assert kpis["tickets_resolved"] == 2
        assert kpis["avg_resolution_seconds"] == 5400.0  # 7200 and 3600

    async def test_a_closed_ticket_reopened_is_open_again(self, client):
        c, t = ids(2)
        await apply_many(
            client,
            [
                opened(t, c, "2026-11-05T10:00:00Z"),
                (
                    "crm.support.ticket_closed.v1",
                    {"ticket_id": t, "customer_id": c, "closed_at": "2026-11-05T11:00:00Z"},
                ),
            ],
        )
        view = (await client.get(f"/v1/customers/{c}/360")).json()
        assert view["open_tickets"] == []
        await apply(client, *reopened(t, c, "2026-11-06T09:00:00Z"))
        view = (await client.get(f"/v1/customers/{c}/360")).json()
        assert [o["ticket_id"] for o in view["open_tickets"]] == [t]

    async def test_an_older_reopening_delivered_again_is_not_counted_again(self, client):
        c, t = ids(2)
        await apply_many(
            client,
            [
                opened(t, c, "2026-11-05T09:00:00Z"),
                resolved(t, c, A, "2026-11-05T10:00:00Z"),
                reopened(t, c, "2026-11-05T11:00:00Z"),
                resolved(t, c, A, "2026-11-05T12:00:00Z"),
                reopened(t, c, "2026-11-05T13:00:00Z"),
            ],
        )
        # The first reopening again, under a new event id (each apply gets new ones).
        await apply(client, *reopened(t, c, "2026-11-05T11:00:00Z"))
        view = (await client.get(f"/v1/customers/{c}/360")).json()
        assert [(o["ticket_id"], o["reopen_count"]) for o in view["open_tickets"]] == [(t, 2)]

    async def test_a_close_older_than_a_reopening_arriving_after_it_leaves_the_ticket_open(
        self, client
    ):
        """Closed, then reopened; the reopening is applied first (the ticket's events before an
        unknown sender was identified travel on another partition than those after it). The
        older close arriving then closed the ticket again: out of the 360 and the churn
        factors, while support has it open."""
        c, t = ids(2)
        await apply_many(
            client,
            [
                opened(t, c, "2026-11-05T10:00:00Z"),
                reopened(t, c, "2026-11-06T09:00:00Z"),
                closed(t, c, "2026-11-05T11:00:00Z"),
            ],
        )
        view = (await client.get(f"/v1/customers/{c}/360")).json()
        assert [o["ticket_id"] for o in view["open_tickets"]] == [t]
        factors = {f["name"]: f["value"] for f in view["scores"]["factors"]}
        assert factors["open_tickets"] == 0.5
        # A close after the reopening still closes it.
        await apply(client, *closed(t, c, "2026-11-06T10:00:00Z"))
        view = (await client.get(f"/v1/customers/{c}/360")).json()
        assert view["open_tickets"] == []

    @pytest.mark.parametrize("ending", ["resolved", "closed"])
    @pytest.mark.parametrize("reopening_first", [False, True])
    async def test_a_reopening_undoes_a_resolution_or_close_of_its_instant(
        self, client, ending, reopening_first
    ):
        """Resolved (or closed) and reopened in one instant (times an agent or an import
        gave support): the ticket is open, in whichever order the events arrive. Before,
        the reopening undid only an older resolution, and a resolution was undone only when
        older: in the order support published them the ticket stayed resolved, in the other
        it was open."""
        c, t = ids(2)
        at = "2026-11-05T12:00:00Z"
        end = resolved(t, c, A, at) if ending == "resolved" else closed(t, c, at)
        events = [end, reopened(t, c, at)]
        await apply(client, *opened(t, c, "2026-11-05T10:00:00Z"))
        for e in reversed(events) if reopening_first else events:
            await apply(client, *e)
        view = (await client.get(f"/v1/customers/{c}/360")).json()
        assert [o["ticket_id"] for o in view["open_tickets"]] == [t]
        kpis = (await client.get("/v1/kpis/support", params=NOV)).json()
        assert kpis["tickets_resolved"] == 0

    async def test_a_resolution_without_its_opening_is_left_out_of_the_average(self, client):
        """A ticket whose opening analytics never saw (opened before the topic's retention,
        or not arrived yet) has no resolution time: it counts as resolved, not as resolved
        in 0 s. Before, 7200 s and an unknown time averaged 3600 s."""
        c, t, u = ids(3)
        await apply_many(
            client,
            [
                opened(t, c, "2026-11-05T10:00:00Z"),
                resolved(t, c, A, "2026-11-05T12:00:00Z"),
                resolved(u, c, A, "2026-11-05T12:00:00Z"),
            ],
        )
        kpis = (await client.get("/v1/kpis/support", params=NOV)).json()
        assert kpis["tickets_resolved"] == 2
        assert kpis["avg_resolution_seconds"] == 7200.0
