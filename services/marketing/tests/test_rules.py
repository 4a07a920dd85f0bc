"""Marketing's pure rules: segment rules (validation, every operator, nesting), templates,
budgets, addresses, signed tracking links."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.marketing import rules, tracking
from services.marketing.rules import Group, Leaf, Not, evaluate, parse_rule
from shared.errors import InvalidInput
from shared.events import Channel

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CUSTOMER = {
    "first_name": "Ada",
    "country": "DE",
    "has_email": True,
    "has_phone": False,
    "opted_out_channels": ["sms"],
    "preferred_channel": None,
    "last_purchase_at": NOW - timedelta(days=120),
    "orders_count": 3,
    "total_spent": Decimal("250.00"),
    "churn_level": "high",
    "churn_risk": 0.8,
    "rfm_segment": "at_risk",
    "last_email_open_at": NOW - timedelta(days=10),
    "last_touch_at": None,
}


def matches(raw: dict) -> bool:
    return evaluate(parse_rule(raw), CUSTOMER, NOW)


class TestOperators:
    @pytest.mark.parametrize(
        ("field", "op", "value", "expected"),
        [
            ("country", "eq", "DE", True),
            ("country", "eq", "de", True),  # text compares case-insensitively
            ("country", "eq", "FR", False),
            ("country", "ne", "FR", True),
            ("country", "ne", "DE", False),
            ("country", "in", ["FR", "DE"], True),
            ("country", "in", ["FR", "IT"], False),
            ("country", "not_in", ["FR", "IT"], True),
            ("country", "not_in", ["DE"], False),
            ("country", "exists", None, True),
            ("country", "missing", None, False),
            ("preferred_channel", "missing", None, True),
            ("preferred_channel", "exists", None, False),
            ("preferred_channel", "ne", "email", False),  # unknown never matches a comparison
            ("orders_count", "eq", 3, True),
            ("orders_count", "ne", 3, False),
            ("orders_count", "gt", 2, True),
            ("orders_count", "gt", 3, False),
            ("orders_count", "gte", 3, True),
            ("orders_count", "lt", 3, False),
            ("orders_count", "lte", 3, True),
            ("total_spent", "gt", 249.99, True),
            # Money is a Decimal; 250.0 and 19.99 as JSON numbers are floats.
            ("total_spent", "eq", 250.0, True),
            ("total_spent", "lte", 250, True),
            ("churn_risk", "eq", 0.8, True),
            ("churn_risk", "lt", 0.5, False),
            ("last_purchase_at", "older_than_days", 90, True),
            ("last_purchase_at", "older_than_days", 150, False),
            ("last_purchase_at", "within_days", 150, True),
            ("last_purchase_at", "within_days", 90, False),
            ("last_purchase_at", "before", "2026-08-01T00:00:00Z", True),
            ("last_purchase_at", "after", "2026-08-01T00:00:00+00:00", False),
            ("last_email_open_at", "within_days", 30, True),
            ("last_touch_at", "within_days", 30, False),  # never touched
            ("last_touch_at", "older_than_days", 30, False),
            ("last_touch_at", "missing", None, True),
            ("opted_out_channels", "contains", "sms", True),
            ("opted_out_channels", "contains", "email", False),
            ("opted_out_channels", "not_contains", "email", True),
            ("has_email", "eq", True, True),
            ("has_phone", "eq", True, False),
            ("churn_level", "eq", "high", True),
            ("rfm_segment", "in", ["at_risk", "hibernating"], True),
        ],
    )
    def test_operator(self, field, op, value, expected):
        assert matches({"field": field, "op": op, "value": value}) is expected

    @pytest.mark.parametrize("op", ["eq", "lte", "gte"])
    def test_a_money_boundary_written_as_a_float_matches(self, op):
        # Decimal("19.99") <= 19.99 is false: the float is a little over 19.99.
        rule = parse_rule({"field": "total_spent", "op": op, "value": 19.99})
        assert evaluate(rule, {"total_spent": Decimal("19.99")}, NOW) is True

    def test_a_field_nobody_knows_matches_only_missing(self):
        rule = parse_rule({"field": "clv", "op": "gte", "value": 0})
        assert evaluate(rule, {}, NOW) is False
        assert evaluate(parse_rule({"field": "clv", "op": "missing"}), {}, NOW) is True


class TestNesting:
    def test_and_needs_every_rule(self):
        german = {"field": "country", "op": "eq", "value": "DE"}
        churning = {"field": "churn_level", "op": "eq", "value": "high"}
        french = {"field": "country", "op": "eq", "value": "FR"}
        assert matches({"and": [german, churning]})
        assert not matches({"and": [german, french]})

    def test_or_needs_one_rule(self):
        french = {"field": "country", "op": "eq", "value": "FR"}
        opened = {"field": "last_email_open_at", "op": "within_days", "value": 30}
        never = {"field": "orders_count", "op": "gt", "value": 100}
        assert matches({"or": [french, opened]})
        assert not matches({"or": [french, never]})

    def test_not_inverts(self):
        assert matches({"not": {"field": "country", "op": "eq", "value": "FR"}})
        assert not matches({"not": {"field": "country", "op": "eq", "value": "DE"}})

    def test_deep_nesting(self):
        # DE and (lapsed buyer or (churn high and not opted out of e-mail))
        rule = {
            "and": [
                {"field": "country", "op": "eq", "value": "DE"},
                {
                    "or": [
                        {"field": "last_purchase_at", "op": "within_days", "value": 30},
                        {
                            "and": [
                                {"field": "churn_level", "op": "eq", "value": "high"},
                                {
                                    "not": {
                                        "field": "opted_out_channels",
                                        "op": "contains",
                                        "value": "email",
                                    }
                                },
                            ]
                        },
                    ]
                },
            ]
        }
        parsed = parse_rule(rule)
        assert isinstance(parsed, Group) and isinstance(parsed.rules[1], Group)
        assert evaluate(parsed, CUSTOMER, NOW)
        assert not evaluate(parsed, {**CUSTOMER, "opted_out_channels": ["email"]}, NOW)
        assert rules.fields_used(parsed) == {
            "country",
            "last_purchase_at",
            "churn_level",
            "opted_out_channels",
        }

    def test_parsed_forms(self):
        assert parse_rule({"field": "country", "op": "exists"}) == Leaf("country", "exists")
        assert isinstance(parse_rule({"not": {"field": "country", "op": "exists"}}), Not)


class TestValidation:
    @pytest.mark.parametrize(
        ("raw", "field"),
        [
            ([], "rules"),
            ({"field": "shoe_size", "op": "eq", "value": 42}, "rules.field"),
            ({"field": "country", "op": "gt", "value": "DE"}, "rules.op"),
            ({"field": "country", "op": "eq"}, "rules.value"),
            ({"field": "country", "op": "eq", "value": 7}, "rules.value"),
            ({"field": "country", "op": "in", "value": []}, "rules.value"),
            ({"field": "country", "op": "exists", "value": "x"}, "rules.value"),
            ({"field": "orders_count", "op": "gt", "value": "3"}, "rules.value"),
            ({"field": "orders_count", "op": "gt", "value": True}, "rules.value"),
            ({"field": "has_email", "op": "eq", "value": "yes"}, "rules.value"),
            ({"field": "last_purchase_at", "op": "older_than_days", "value": -1}, "rules.value"),
            ({"field": "last_purchase_at", "op": "before", "value": "2026-01-01"}, "rules.value"),
            # The years every API takes (shared.values).
            (
                {"field": "last_purchase_at", "op": "after", "value": "0001-01-01T00:00:00+01:00"},
                "rules.value",
            ),
            (
                {"field": "last_purchase_at", "op": "before", "value": "3000-01-01T00:00:00Z"},
                "rules.value",
            ),
            ({"field": "country", "op": "eq", "value": "DE", "x": 1}, "rules.x"),
            ({"field": "country", "op": "eq", "value": "DE", "": 1}, "rules"),
            ({"and": []}, "rules.and"),
            ({"and": {"field": "country"}}, "rules.and"),
            ({"and": [{"field": "country", "op": "eq", "value": "DE"}], "or": []}, "rules"),
            (
                {"or": [{"field": "country", "op": "eq", "value": "DE"}, {"field": "x"}]},
                "rules.or.1.field",
            ),
            ({"not": {"and": [{"field": "country", "op": "bad"}]}}, "rules.not.and.0.op"),
        ],
    )
    def test_bad_rules_name_the_part(self, raw, field):
        with pytest.raises(InvalidInput) as error:
            parse_rule(raw)
        assert error.value.field == field

    @pytest.mark.parametrize(
        ("raw", "field", "message"),
        [
            ({}, "rules.field", "a condition needs a field; one of: first_name"),
            ({"field": None, "op": "eq"}, "rules.field", "a condition needs a field"),
            ({"field": "country"}, "rules.op", "a condition needs an op to country (text)"),
        ],
    )
    def test_a_missing_field_or_op_is_said_so(self, raw, field, message):
        # It read "unknown field None", in Python's words (schemathesis sent "rules": {}).
        with pytest.raises(InvalidInput) as error:
            parse_rule(raw)
        assert error.value.field == field
        assert error.value.message.startswith(message)

    def test_depth_and_size_are_bounded(self):
        deep: dict = {"field": "country", "op": "exists"}
        for _ in range(rules.MAX_DEPTH):
            deep = {"not": deep}
        with pytest.raises(InvalidInput, match="levels"):
            parse_rule(deep)
        wide = {"or": [{"field": "country", "op": "exists"}] * (rules.MAX_LEAVES + 1)}
        with pytest.raises(InvalidInput, match="at most"):
            parse_rule(wide)


class TestTemplates:
    def test_fields_are_filled_in(self):
        text = rules.render("Hi {first_name} {last_name}!", {"first_name": "Ada"})
        assert text == "Hi Ada !"

    @pytest.mark.parametrize(
        "template",
        ["Hi {email}", "Hi {first_name.__class__}", "Hi {first_name!r}", "Hi {0}", "Hi {"],
    )
    def test_unknown_or_unsafe_fields_are_refused(self, template):
        assert rules.template_errors(template)

    def test_literal_braces(self):
        assert rules.template_errors("{{not a field}} {first_name}") is None
        assert rules.render("{{x}}", {}) == "{x}"

    def test_the_templates_links_are_tracked_not_the_values(self):
        template = "Go https://a.test/{country}/x and {unsubscribe_url}, {first_name}"
        values = {
            "country": "de",
            "unsubscribe_url": "https://u.test/stop",
            "first_name": "https://evil.test",
        }
        tracked = rules.personalise(template, values, lambda url: f"T({url})")
        assert tracked == "Go T(https://a.test/de/x) and https://u.test/stop, https://evil.test"

    @pytest.mark.parametrize(
        ("text", "link"),
        [
            ("see https://a.test/x.", "https://a.test/x"),
            ("see https://a.test/x, or", "https://a.test/x"),
            ("(https://a.test/x)", "https://a.test/x"),
            ("see https://a.test/wiki/A_(b).", "https://a.test/wiki/A_(b)"),
            ("see https://a.test/?q=1!", "https://a.test/?q=1"),
            ("https://a.test/a.html", "https://a.test/a.html"),
        ],
    )
    def test_a_link_ends_where_a_mail_client_ends_it(self, text, link):
        [(start, end)] = list(rules.links(text))
        assert text[start:end] == link


class TestBudget:
    @pytest.mark.parametrize(
        ("budget", "cost", "committed", "expected"),
        [
            ("10", "1", 0, 10),
            ("10", "1", 4, 6),
            ("10", "3", 0, 3),  # never a partial send over the budget
            ("10", "1", 10, 0),
            ("10", "1", 12, 0),
            ("0", "0.5", 0, 0),
            ("10", "0", 5, None),  # free sends: no limit
        ],
    )
    def test_affordable_sends(self, budget, cost, committed, expected):
        assert rules.affordable_sends(Decimal(budget), Decimal(cost), committed) == expected


class TestCampaignLifecycle:
    @pytest.mark.parametrize(
        ("status", "launchable", "cancellable"),
        [
            ("draft", True, True),
            ("scheduled", True, True),
            ("sending", True, True),
            ("completed", True, False),  # re-launched to reach the rest; nothing to cancel
            ("cancelled", False, True),  # cancelled again: nothing changes
        ],
    )
    def test_what_each_status_allows(self, status, launchable, cancellable):
        assert (rules.launch_refusal(status) is None) == launchable
        assert (rules.cancel_refusal(status) is None) == cancellable


class TestProviderReports:
    @pytest.mark.parametrize("kind", ["delivered", "replied"])
    @pytest.mark.parametrize(
        ("status", "possible"),
        [
            ("queued", False),  # never claimed
            ("sending", True),  # being handed over: the receipt may come first
            ("sent", True),
            ("suppressed", False),
            ("failed", False),
        ],
    )
    def test_only_a_send_handed_over_can_be_reported_on(self, kind, status, possible):
        refusal = rules.report_refusal(kind, status)
        assert (refusal is None) == possible
        if refusal is not None:
            assert status in refusal

    def test_the_signed_links_are_not_a_providers_report(self):
        assert rules.report_refusal("clicked", "queued") is None


class TestAddresses:
    def address(self, channel, **fields):
        base = {"customer_id": "c-1", "email": None, "phone": None, "identities": {}}
        return rules.address_for(channel, **{**base, **fields})

    def test_each_channel_has_its_address(self):
        assert self.address("email", email="a@x.test") == "a@x.test"
        assert self.address("sms", phone="+491") == "+491"
        assert self.address("whatsapp", phone="+491") == "+491"
        assert self.address("whatsapp", phone="+491", identities={"whatsapp": "+492"}) == "+492"
        assert self.address("telegram", identities={"telegram": "@ada"}) == "@ada"
        assert self.address("push") == "c-1"

    def test_missing_addresses(self):
        assert self.address("email", phone="+491") is None
        assert self.address("sms", email="a@x.test") is None
        assert self.address("telegram", phone="+491") is None

    def test_push_is_the_mobile_app_channel_on_the_bus(self):
        assert rules.bus_channel("push") == Channel.mobile_app
        assert rules.bus_channel("sms") == Channel.sms


class TestTrackingLinks:
    SECRET = "s3cret"

    def test_a_signed_link_verifies(self):
        send_id = uuid.uuid4()
        token = tracking.sign(self.SECRET, tracking.LinkKind.open, send_id)
        assert tracking.verify(self.SECRET, tracking.LinkKind.open, token) == send_id

    @pytest.mark.parametrize(
        "tamper",
        [
            lambda t, s: t[:-1] + ("A" if t[-1] != "A" else "B"),  # another signature
            lambda t, s: uuid.uuid4().hex + t[32:],  # another send
            lambda t, s: t.split(".")[0],  # no signature
            lambda t, s: "nothex." + t.split(".")[1],
            lambda t, s: t.split(".")[0] + ".\u00e9",  # not ASCII: compare_digest raised
        ],
    )
    def test_a_tampered_link_is_refused(self, tamper):
        send_id = uuid.uuid4()
        token = tracking.sign(self.SECRET, tracking.LinkKind.open, send_id)
        with pytest.raises(tracking.BadToken):
            tracking.verify(self.SECRET, tracking.LinkKind.open, tamper(token, send_id))

    def test_a_token_is_bound_to_its_kind_secret_and_url(self):
        send_id = uuid.uuid4()
        click = tracking.sign(self.SECRET, tracking.LinkKind.click, send_id, "https://a.test")
        assert tracking.verify(self.SECRET, tracking.LinkKind.click, click, "https://a.test")
        with pytest.raises(tracking.BadToken):
            tracking.verify(self.SECRET, tracking.LinkKind.click, click, "https://evil.test")
        with pytest.raises(tracking.BadToken):
            tracking.verify(self.SECRET, tracking.LinkKind.unsubscribe, click, "https://a.test")
        with pytest.raises(tracking.BadToken):
            tracking.verify("other", tracking.LinkKind.click, click, "https://a.test")


class TestTrackingKey:
    def test_derived_from_the_jwt_secret_unless_set(self):
        from services.marketing.config import MarketingSettings
        from shared.settings import AuthSettings

        first, second = "jwt-1-" + "x" * 32, "jwt-2-" + "x" * 32
        derived = MarketingSettings(auth=AuthSettings(secret=first)).tracking_key()
        assert derived != first and len(derived) == 64
        assert derived == MarketingSettings(auth=AuthSettings(secret=first)).tracking_key()
        assert derived != MarketingSettings(auth=AuthSettings(secret=second)).tracking_key()
        explicit = MarketingSettings(auth=AuthSettings(secret=first), tracking_secret="k" * 32)
        assert explicit.tracking_key() == "k" * 32

    def test_with_public_key_tokens_the_tracking_secret_is_required(self):
        """No JWT secret to derive the key from: every send and every tracking link failed
        (a 500) in a service that had started."""
        from pydantic import ValidationError

        from services.marketing.config import MarketingSettings
        from shared.settings import AuthSettings

        public_key_auth = AuthSettings(algorithm="RS256", jwks_url="https://idp.test/jwks.json")
        with pytest.raises(ValidationError, match="MARKETING_TRACKING_SECRET is required"):
            MarketingSettings(auth=public_key_auth)
        settings = MarketingSettings(auth=public_key_auth, tracking_secret="k" * 32)
        assert settings.tracking_key() == "k" * 32

    def test_a_short_tracking_secret_is_refused(self):
        """A short key is found by trying keys on one genuine link (one's own mail), and then
        anyone's unsubscribe link forged: the service started with one."""
        from pydantic import ValidationError

        from services.marketing.config import MarketingSettings
        from shared.settings import AuthSettings

        auth = AuthSettings(secret="x" * 32)
        with pytest.raises(ValidationError, match="MARKETING_TRACKING_SECRET must be at least 32"):
            MarketingSettings(auth=auth, tracking_secret="short")
        # Counted in bytes, as the JWT secret's: 11 three-byte characters are 33 bytes.
        MarketingSettings(auth=auth, tracking_secret="€" * 11)
