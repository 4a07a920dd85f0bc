"""Sales' pure domain rules: lead states, scoring, territories, the pipeline, forecast
arithmetic and order states."""

from datetime import date
from decimal import Decimal

import pytest

from services.sales import rules
from services.sales.config import DEFAULT_PIPELINE, SalesSettings
from services.sales.rules import (
    AssignmentRule,
    Deal,
    LeadAction,
    LeadProfile,
    LeadStatus,
    OrderStatus,
    Pipeline,
    Touch,
)
from shared.errors import InvalidInput, InvalidTransition
from shared.settings import AuthSettings
from shared.testing import TEST_JWT_SECRET

PIPELINE = Pipeline(DEFAULT_PIPELINE)


def profile(**fields) -> LeadProfile:
    base = {
        "source": "web",
        "company": None,
        "email": None,
        "phone": None,
        "country": None,
        "segment": None,
    }
    return LeadProfile(**{**base, **fields})


class TestLeadStates:
    @pytest.mark.parametrize(
        ("current", "action", "expected"),
        [
            (LeadStatus.new, LeadAction.qualify, LeadStatus.qualified),
            (LeadStatus.new, LeadAction.disqualify, LeadStatus.disqualified),
            (LeadStatus.new, LeadAction.convert, LeadStatus.converted),
            (LeadStatus.qualified, LeadAction.convert, LeadStatus.converted),
            (LeadStatus.qualified, LeadAction.disqualify, LeadStatus.disqualified),
            (LeadStatus.disqualified, LeadAction.qualify, LeadStatus.qualified),
        ],
    )
    def test_allowed(self, current, action, expected):
        assert rules.next_lead_status(current, action) == expected

    @pytest.mark.parametrize(
        ("current", "action"),
        [
            (LeadStatus.qualified, LeadAction.qualify),
            (LeadStatus.disqualified, LeadAction.convert),
            (LeadStatus.disqualified, LeadAction.disqualify),
            (LeadStatus.converted, LeadAction.qualify),
            (LeadStatus.converted, LeadAction.disqualify),
            (LeadStatus.converted, LeadAction.convert),
        ],
    )
    def test_illegal(self, current, action):
        with pytest.raises(InvalidTransition):
            rules.next_lead_status(current, action)


class TestScoring:
    def test_bare_web_lead_scores_low(self):
        assert rules.fit_score(profile()) == 6

    def test_unknown_source_still_counts_a_little(self):
        assert rules.fit_score(profile(source="cold-list")) == 3

    def test_complete_enterprise_referral_is_the_best_fit(self):
        best = profile(
            source="referral",
            segment="enterprise",
            company="ACME",
            email="a@b.c",
            phone="+1",
            country="US",
        )
        assert rules.fit_score(best) == rules.MAX_FIT

    def test_fit_never_exceeds_its_cap(self):
        assert (
            rules.fit_score(
                profile(
                    source="referral",
                    segment="enterprise",
                    company="A",
                    email="e",
                    phone="p",
                    country="c",
                )
            )
            <= 50
        )

    def test_engagement_weighs_what_the_customer_did(self):
        assert rules.engagement_score([Touch("campaign_send", "outbound")]) == 1
        assert rules.engagement_score([Touch("link_click", "outbound")]) == 5
        assert rules.engagement_score([Touch("ticket_opened", "inbound")]) == 6
        assert rules.engagement_score([Touch("call", "inbound", "positive")]) == 9
        assert rules.engagement_score([Touch("call", "outbound", "negative")]) == 0

    def test_engagement_reads_the_kinds_marketing_publishes(self):
        # Before, an unsubscribe counted as the customer reaching out (6 points: the lead's
        # score rose), and a reply to a campaign only as much, not as the reply it is.
        opened = [Touch("email_open", "inbound")] * 3
        assert rules.engagement_score([*opened, Touch("unsubscribe", "inbound")]) < (
            rules.engagement_score(opened)
        )
        assert rules.engagement_score([Touch("campaign_reply", "inbound")]) == (
            rules.engagement_score([Touch("reply", "inbound")])
        )

    def test_engagement_is_capped_and_never_negative(self):
        assert rules.engagement_score([Touch("meeting", "inbound")] * 20) == 50
        assert rules.engagement_score([Touch("call", "outbound", "negative")] * 5) == 0

    def test_score_is_fit_plus_engagement(self):
        score, fit, engagement = rules.lead_score(profile(company="A"), [Touch("reply", "inbound")])
        assert (score, fit, engagement) == (22, 14, 8)


class TestTerritories:
    RULES = [
        AssignmentRule(
            owner="anna", territory="DACH-ent", countries=("DE", "AT"), segment="enterprise"
        ),
        AssignmentRule(owner="pat", source="partner"),
        AssignmentRule(owner="ben", territory="DACH", countries=("DE", "AT")),
    ]

    def test_first_matching_rule_wins(self):
        assert (
            rules.assign(self.RULES, country="DE", segment="enterprise", source="web").owner
            == "anna"
        )
        assert rules.assign(self.RULES, country="de", segment="smb", source="web").owner == "ben"
        assert rules.assign(self.RULES, country="DE", segment=None, source="partner").owner == "pat"

    def test_no_match_leaves_the_lead_unassigned(self):
        assert rules.assign(self.RULES, country="FR", segment="smb", source="web") is None
        assert rules.assign(self.RULES, country=None, segment=None, source="web") is None
        assert rules.assign([], country="DE", segment=None, source="web") is None


class TestUnreachableRules:
    @pytest.mark.parametrize(
        ("given", "field", "covered_by"),
        [
            # A catch-all before anything else.
            ([AssignmentRule("all"), AssignmentRule("de", countries=("DE",))], "rules.1", [0]),
            # The same conditions twice: the second owner never gets a lead.
            (
                [AssignmentRule("a", source="web"), AssignmentRule("b", source="web")],
                "rules.1",
                [0],
            ),
            # A wider country list before a narrower one.
            (
                [
                    AssignmentRule("x", segment="smb"),
                    AssignmentRule("dach", countries=("DE", "AT", "CH")),
                    AssignmentRule("de-ent", countries=("DE",), segment="enterprise"),
                ],
                "rules.2",
                [1],
            ),
            # Its countries shared out among the rules before it.
            (
                [
                    AssignmentRule("de", countries=("DE",)),
                    AssignmentRule("fr-web", countries=("FR",), source="web"),
                    AssignmentRule("at", countries=("AT", "CH")),
                    AssignmentRule("dach-web", countries=("DE", "AT"), source="web"),
                ],
                "rules.3",
                [0, 2],
            ),
        ],
    )
    def test_a_rule_the_ones_before_it_cover_is_refused(self, given, field, covered_by):
        with pytest.raises(InvalidInput) as refused:
            rules.check_reachable(given)
        assert refused.value.field == field
        assert refused.value.details == {"covered_by": [f"rules.{i}" for i in covered_by]}
        for i in covered_by:
            assert f"rules.{i} (owner {given[i].owner!r})" in refused.value.message

    @pytest.mark.parametrize(
        "given",
        [
            TestTerritories.RULES,
            [],
            # Narrower first, wider after: each takes some leads.
            [
                AssignmentRule("de-ent", countries=("DE",), segment="enterprise"),
                AssignmentRule("de", countries=("DE",)),
                AssignmentRule("all"),
            ],
            # A rule naming a source does not take the leads of other sources, nor accounts.
            [AssignmentRule("web", source="web"), AssignmentRule("all")],
            [AssignmentRule("smb", segment="smb"), AssignmentRule("any", source="web")],
            # Countries shared out, but one left over (FR).
            [
                AssignmentRule("de", countries=("DE",)),
                AssignmentRule("at", countries=("AT",)),
                AssignmentRule("dach-fr", countries=("DE", "AT", "FR")),
            ],
        ],
    )
    def test_rules_that_each_may_apply_are_taken(self, given):
        rules.check_reachable(given)


class TestPipeline:
    def test_stages_and_probabilities(self):
        assert PIPELINE.open_stages == ["prospecting", "qualification", "proposal", "negotiation"]
        assert PIPELINE.first == "prospecting"
        assert PIPELINE.probability("negotiation") == Decimal("0.80")

    def test_open_deals_move_forward_backward_and_close(self):
        assert PIPELINE.move("proposal", "qualification", None) == "qualification"
        assert PIPELINE.move("prospecting", "won", None) == "won"
        assert PIPELINE.move("negotiation", "lost", "budget cut") == "lost"

    @pytest.mark.parametrize("closed", ["won", "lost"])
    def test_closed_deals_stay_closed(self, closed):
        with pytest.raises(InvalidTransition):
            PIPELINE.move(closed, "proposal", None)

    def test_same_stage_is_not_a_change(self):
        with pytest.raises(InvalidTransition):
            PIPELINE.move("proposal", "proposal", None)

    def test_lost_needs_a_reason_and_stages_must_exist(self):
        with pytest.raises(InvalidInput) as lost:
            PIPELINE.move("proposal", "lost", None)
        assert lost.value.field == "reason"
        with pytest.raises(InvalidInput) as unknown:
            PIPELINE.move("proposal", "dreaming", None)
        assert unknown.value.field == "stage"

    def test_a_configured_pipeline(self):
        settings = SalesSettings(
            auth=AuthSettings(secret=TEST_JWT_SECRET),
            pipeline={"demo": "0.3", "trial": "0.6", "won": "1", "lost": "0"},
        )
        custom = Pipeline(settings.pipeline)
        assert custom.open_stages == ["demo", "trial"]
        assert custom.probability("trial") == Decimal("0.6")

    @pytest.mark.parametrize(
        "pipeline",
        [
            {"won": "1", "lost": "0"},
            {"a": "0.5", "lost": "0", "won": "1"},
            {"a": "2", "won": "1", "lost": "0"},
            # The pipeline's won figure was 90% of the won amount, lost 20% of the lost.
            {"a": "0.5", "won": "0.9", "lost": "0"},
            {"a": "0.5", "won": "1", "lost": "0.2"},
            {"a": "0.12345", "won": "1", "lost": "0"},  # a deal stores 4 places
        ],
    )
    def test_bad_pipelines_are_refused(self, pipeline):
        with pytest.raises(ValueError):
            SalesSettings(auth=AuthSettings(secret=TEST_JWT_SECRET), pipeline=pipeline)


class TestSettings:
    def test_with_public_key_tokens_the_contacts_token_is_required(self):
        """No JWT secret to mint a token for contacts with: every conversion was a 500 in a
        service that had started."""
        public_key_auth = AuthSettings(algorithm="RS256", jwks_url="https://idp.test/jwks.json")
        with pytest.raises(ValueError, match="SALES_CONTACTS_TOKEN is required"):
            SalesSettings(auth=public_key_auth)
        SalesSettings(auth=public_key_auth, contacts_token="a-token-with-contacts-write")


class TestForecast:
    @pytest.mark.parametrize(
        ("period", "bounds"),
        [
            ("2026-02", (date(2026, 2, 1), date(2026, 2, 28))),
            ("2024-02", (date(2024, 2, 1), date(2024, 2, 29))),
            ("2026-Q1", (date(2026, 1, 1), date(2026, 3, 31))),
            ("2026-Q4", (date(2026, 10, 1), date(2026, 12, 31))),
        ],
    )
    def test_periods(self, period, bounds):
        assert rules.period_bounds(period) == bounds

    @pytest.mark.parametrize(
        "period", ["2026", "2026-13", "2026-Q5", "26-01", "2026-1", "", "9999-Q4", "1899-12"]
    )
    def test_bad_periods(self, period):
        with pytest.raises(InvalidInput) as error:
            rules.period_bounds(period)
        assert error.value.field == "period"

    def test_weighted_per_owner_and_total(self):
        deals = [
            Deal("b", "proposal", Decimal("333.33")),
            Deal("a", "prospecting", Decimal("1000")),
            Deal("a", "negotiation", Decimal("2000")),
            Deal("a", "won", Decimal("400")),
            Deal("b", "lost", Decimal("9999")),
        ]
        lines, total = rules.forecast(deals, PIPELINE)
        assert [line.owner for line in lines] == ["a", "b"]
        a, b = lines
        assert (a.open_count, a.pipeline, a.weighted, a.won) == (
            2,
            Decimal("3000"),
            Decimal("1700.00"),
            Decimal("400"),
        )
        assert a.expected == Decimal("2100.00")
        assert b.weighted == Decimal("166.67")  # 333.33 * 0.5, rounded to the cent
        assert (total.open_count, total.weighted, total.won) == (
            3,
            Decimal("1866.67"),
            Decimal("400"),
        )

    def test_the_owners_lines_add_up_to_the_total(self):
        # Each deal is weighted and rounded once: 0.05 * 0.1 = 0.005 -> 0.01 (halves up).
        deals = [Deal(owner, "prospecting", Decimal("0.05")) for owner in ("a", "b", "c")]
        lines, total = rules.forecast(deals, PIPELINE)
        assert [line.weighted for line in lines] == [Decimal("0.01")] * 3
        assert total.weighted == Decimal("0.03")

    def test_no_deals(self):
        lines, total = rules.forecast([], PIPELINE)
        assert lines == [] and total.expected == 0

    @pytest.mark.parametrize(
        ("today", "expected"),
        [
            # The current period: also the open deals whose expected close has passed.
            (date(2026, 11, 15), (None, date(2026, 12, 31))),
            (date(2026, 10, 1), (None, date(2026, 12, 31))),
            (date(2026, 12, 31), (None, date(2026, 12, 31))),
            # One ahead: those expected in it.
            (date(2026, 9, 30), (date(2026, 10, 1), date(2026, 12, 31))),
            # One that has ended: nothing open can close in it any more.
            (date(2027, 1, 1), None),
        ],
    )
    def test_which_open_deals_a_period_counts(self, today, expected):
        start, end = rules.period_bounds("2026-Q4")
        assert rules.open_deals_expected(start, end, today) == expected

    def test_overdue_deals_are_counted_and_told_apart(self):
        deals = [
            Deal("a", "proposal", Decimal("100"), overdue=True),
            Deal("a", "prospecting", Decimal("50")),
            Deal("a", "won", Decimal("70")),
        ]
        [line], total = rules.forecast(deals, PIPELINE)
        assert (line.open_count, line.weighted, line.overdue_count, line.overdue) == (
            2,
            Decimal("55.00"),
            1,
            Decimal("100"),
        )
        assert (total.overdue_count, total.expected) == (1, Decimal("125.00"))


class TestOrderStates:
    def test_one_step_at_a_time(self):
        assert rules.next_order_status(OrderStatus.placed, OrderStatus.paid) == OrderStatus.paid
        assert (
            rules.next_order_status(OrderStatus.paid, OrderStatus.refunded) == OrderStatus.refunded
        )
        for current, target in [
            (OrderStatus.placed, OrderStatus.refunded),
            (OrderStatus.paid, OrderStatus.paid),
            (OrderStatus.refunded, OrderStatus.paid),
        ]:
            with pytest.raises(InvalidTransition):
                rules.next_order_status(current, target)

    def test_steps_to_a_reported_status(self):
        assert rules.order_steps(OrderStatus.placed, OrderStatus.refunded) == [
            OrderStatus.paid,
            OrderStatus.refunded,
        ]
        assert rules.order_steps(OrderStatus.paid, OrderStatus.placed) == []
        assert rules.order_steps(OrderStatus.paid, OrderStatus.paid) == []

    def test_money_from_the_database_is_exact_cents(self):
        assert rules.money(300.29999999999995) == Decimal("300.30")
        assert rules.money(0) == Decimal("0.00")


class TestOrderAmount:
    def test_left_out_it_is_the_lines_total_exactly(self):
        lines = [(3, Decimal("0.10")), (1, Decimal("0.20"))]  # 0.1 * 3 + 0.2 is not 0.5 in floats
        assert rules.order_amount(lines, None) == Decimal("0.50")
        assert str(rules.order_amount([(1, Decimal("0.00"))], None)) == "0.00"

    def test_given_with_lines_it_must_be_their_total(self):
        lines = [(2, Decimal("5.00"))]
        assert rules.order_amount(lines, Decimal("10.00")) == Decimal("10.00")
        for wrong in (Decimal("11.00"), Decimal("9.99"), Decimal("0.00")):
            with pytest.raises(InvalidInput) as refused:
                rules.order_amount(lines, wrong)
            assert refused.value.field == "amount"
            assert "10.00" in refused.value.message

    def test_without_lines_it_is_the_amount_given(self):
        assert rules.order_amount([], Decimal("7.00")) == Decimal("7.00")
        with pytest.raises(InvalidInput):
            rules.order_amount([], None)

    def test_a_total_beyond_the_largest_amount_is_refused_on_lines(self):
        with pytest.raises(InvalidInput) as refused:
            rules.order_amount([(1000, Decimal("999999999999.99"))], None)
        assert refused.value.field == "lines"
