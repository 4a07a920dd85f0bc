"""Analytics' pure rules: RFM scores and segments, churn factors, CLV, the KPI calendar."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from services.analytics import rules
from services.analytics.rules import Order, ScoreInputs

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


class TestRfmScores:
    @pytest.mark.parametrize(
        ("days", "score"), [(0, 5), (30, 5), (31, 4), (90, 4), (180, 3), (365, 2), (366, 1)]
    )
    def test_recency(self, days, score):
        assert rules.recency_score(days) == score

    @pytest.mark.parametrize(("orders", "score"), [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (10, 5)])
    def test_frequency(self, orders, score):
        assert rules.frequency_score(orders) == score

    @pytest.mark.parametrize(
        ("amount", "score"),
        [("0", 1), ("99.99", 1), ("100", 2), ("999.99", 3), ("1000", 4), ("5000", 5)],
    )
    def test_monetary(self, amount, score):
        assert rules.monetary_score(Decimal(amount)) == score

    @pytest.mark.parametrize(
        ("rfm", "segment"),
        [
            ((5, 5, 1), "champions"),
            ((4, 4, 5), "champions"),
            ((5, 1, 1), "new"),
            ((4, 2, 1), "potential_loyalist"),
            ((3, 3, 1), "loyal"),
            ((3, 1, 5), "needs_attention"),
            ((2, 3, 1), "at_risk"),
            ((1, 1, 4), "at_risk"),
            ((1, 2, 3), "hibernating"),
        ],
    )
    def test_segments(self, rfm, segment):
        assert rules.rfm_segment(*rfm) == segment
        assert segment in rules.SEGMENTS


class TestChurnRisk:
    def test_a_customer_never_active_is_fully_lapsed_only(self):
        scores = rules.score(ScoreInputs(now=NOW))
        factors = {f.name: f.value for f in scores.factors}
        assert factors == {
            "days_since_last_activity": 1.0,
            "negative_sentiment": 0.0,
            "open_tickets": 0.0,
            "breached_tickets": 0.0,
            "falling_engagement": 0.0,
        }
        assert scores.churn_risk == 0.35
        assert scores.churn_level == "medium"
        assert scores.rfm_segment is None and scores.recency_days is None
        assert scores.clv == Decimal("0.00")

    def test_every_factor_worked_out_by_hand(self):
        inputs = ScoreInputs(
            now=NOW,
            last_activity_at=ago(90),  # 90 / 180 = 0.5
            sentiments=4,
            negative=1,  # 0.25
            open_tickets=1,  # 1 / 2 = 0.5
            breached_tickets=1,  # 1.0
            inbound_recent=1,
            inbound_before=6,  # 2 per window before, 1 now: fell by 0.5
        )
        scores = rules.score(inputs)
        assert [(f.name, f.value, f.weight) for f in scores.factors] == [
            ("days_since_last_activity", 0.5, 0.35),
            ("negative_sentiment", 0.25, 0.2),
            ("open_tickets", 0.5, 0.15),
            ("breached_tickets", 1.0, 0.15),
            ("falling_engagement", 0.5, 0.15),
        ]
        # .175 + .05 + .075 + .15 + .075
        assert scores.churn_risk == 0.525
        assert scores.churn_level == "medium"

    def test_an_active_happy_customer_is_low_risk(self):
        inputs = ScoreInputs(
            now=NOW, last_activity_at=ago(1), sentiments=3, inbound_recent=5, inbound_before=3
        )
        scores = rules.score(inputs)
        assert scores.churn_risk == 0.002  # 1 / 180 = 0.0056, x 0.35; engagement rose
        assert scores.churn_level == "low"

    def test_everything_wrong_is_high_risk_capped_at_one(self):
        inputs = ScoreInputs(
            now=NOW,
            last_activity_at=ago(400),
            sentiments=2,
            negative=2,
            open_tickets=5,
            breached_tickets=3,
            inbound_recent=0,
            inbound_before=9,
        )
        scores = rules.score(inputs)
        assert scores.churn_risk == 1.0
        assert scores.churn_level == "high"

    @pytest.mark.parametrize(("risk", "level"), [(0.29, "low"), (0.3, "medium"), (0.6, "high")])
    def test_levels(self, risk, level):
        assert rules.churn_level(risk) == level


class TestClvAndRfm:
    def test_clv_is_spend_plus_expected_spend_discounted_by_risk(self):
        orders = [Order(ago(730), Decimal(100), "EUR"), Order(ago(10), Decimal(300), "EUR")]
        # spent 400; average 200; 2 orders over 2 years = 1 a year; 2-year horizon; risk 0.25
        assert rules.clv(orders, NOW, 0.25) == Decimal("700.00")

    def test_tenure_counts_at_least_one_year(self):
        orders = [Order(ago(10), Decimal("50.00"), "EUR")]
        # 50 + 50 x 1 a year x 2 years x (1 - 0)
        assert rules.clv(orders, NOW, 0.0) == Decimal("150.00")

    def test_scores_from_orders(self):
        orders = [Order(ago(d), Decimal(300), "EUR") for d in (5, 40, 100, 200, 300)]
        scores = rules.score(ScoreInputs(now=NOW, orders=orders, last_activity_at=ago(5)))
        assert scores.recency_days == 5
        assert scores.frequency == 5
        assert scores.monetary == Decimal("1500.00")
        assert scores.rfm_segment == "champions"  # R 5, F 4, M 4

    def test_money_counts_the_reporting_currency_only(self):
        """No exchange rates: EUR and USD amounts are never added up. Every order counts in
        recency and frequency; monetary and CLV are in the reporting currency, from its orders;
        the other currencies' totals are reported apart."""
        eur = Order(ago(10), Decimal(100), "EUR")
        usd = [Order(ago(5), Decimal(900), "USD"), Order(ago(3), Decimal(50), "USD")]
        inputs = ScoreInputs(now=NOW, orders=[eur, *usd], last_activity_at=ago(3), currency="EUR")
        scores = rules.score(inputs)
        assert scores.frequency == 3 and scores.recency_days == 3
        assert scores.currency == "EUR"
        assert scores.monetary == Decimal("100.00")  # not 1050
        assert scores.monetary_other_currencies == {"USD": Decimal("950.00")}
        assert scores.clv == rules.clv([eur], NOW, scores.churn_risk)
        in_dollars = rules.score(ScoreInputs(now=NOW, orders=[eur, *usd], currency="USD"))
        assert in_dollars.monetary == Decimal("950.00")
        assert in_dollars.monetary_other_currencies == {"EUR": Decimal("100.00")}


class TestCalendar:
    def test_days_and_months_inclusive(self):
        assert rules.days(date(2026, 2, 27), date(2026, 3, 1)) == [
            date(2026, 2, 27),
            date(2026, 2, 28),
            date(2026, 3, 1),
        ]
        assert rules.months(date(2026, 11, 30), date(2027, 2, 1)) == [
            "2026-11",
            "2026-12",
            "2027-01",
            "2027-02",
        ]

    def test_ratio(self):
        assert rules.ratio(1, 3) == 0.3333
        assert rules.ratio(1, 0) is None


class TestPipeline:
    @pytest.mark.parametrize(
        ("amount", "probability", "weighted"),
        [
            ("2.15", 0.5, "1.08"),
            ("0.05", 0.1, "0.01"),
            ("333.33", 0.5, "166.67"),
            ("0", 0.8, "0.00"),
        ],
    )
    def test_a_deals_weighted_amount_rounds_half_up_once(self, amount, probability, weighted):
        assert rules.weighted(Decimal(amount), probability) == Decimal(weighted)

    @pytest.mark.parametrize(
        ("applied", "stage", "from_stage", "opening", "follows"),
        [
            ("won", "proposal", None, True, False),  # the opening again, after a change
            ("proposal", "proposal", None, True, False),  # or after itself
            ("proposal", "won", "proposal", False, True),  # moves on from the applied stage
            ("won", "won", "proposal", False, False),  # the same change again
            ("negotiation", "proposal", "qualification", False, False),  # an earlier move
            ("negotiation", "negotiation", None, False, True),  # new terms in that stage
            ("won", "negotiation", None, False, False),  # terms from before the close
        ],
    )
    def test_an_event_of_the_applied_instant_follows_it_by_what_it_says(
        self, applied, stage, from_stage, opening, follows
    ):
        assert rules.follows_in_its_instant(applied, stage, from_stage, opening=opening) is follows
