"""Support's domain rules: the state machine and routing."""

import uuid

import pytest

from services.support import rules
from services.support.rules import Action, AgentLoad, Status
from shared.errors import InvalidTransition


class TestTransition:
    @pytest.mark.parametrize(
        ("current", "action", "assigned", "expected"),
        [
            ("open", Action.assign, False, Status.pending),
            ("pending", Action.assign, True, Status.pending),
            ("open", Action.resolve, False, Status.resolved),
            ("pending", Action.resolve, True, Status.resolved),
            ("resolved", Action.reopen, False, Status.open),
            ("resolved", Action.reopen, True, Status.pending),
            ("resolved", Action.close, True, Status.closed),
        ],
    )
    def test_allowed(self, current, action, assigned, expected):
        assert rules.transition(current, action, assigned=assigned) == expected

    @pytest.mark.parametrize(
        ("current", "action"),
        [
            ("open", Action.reopen),
            ("open", Action.close),
            ("pending", Action.close),
            ("pending", Action.reopen),
            ("resolved", Action.resolve),
            ("resolved", Action.assign),
            ("closed", Action.reopen),
            ("closed", Action.assign),
            ("closed", Action.resolve),
            ("closed", Action.close),
        ],
    )
    def test_illegal(self, current, action):
        with pytest.raises(InvalidTransition) as raised:
            rules.transition(current, action, assigned=True)
        assert raised.value.status == 409


class TestCustomerErased:
    """An erasure closes the customer's unfinished tickets: a system action, while an agent
    still closes only a resolved ticket (``test_illegal``)."""

    @pytest.mark.parametrize(
        ("current", "assigned"), [("open", False), ("pending", True), ("resolved", True)]
    )
    def test_unfinished_tickets_close(self, current, assigned):
        closed = rules.transition(current, Action.close_for_erasure, assigned=assigned)
        assert closed == Status.closed

    def test_a_closed_ticket_stays_as_it_is(self):
        with pytest.raises(InvalidTransition):
            rules.transition("closed", Action.close_for_erasure, assigned=True)


class TestStatusAfterMessage:
    def test_customer_reply_reopens_a_resolved_ticket(self):
        assert rules.status_after_message("resolved", "customer", assigned=True) == Status.pending
        assert rules.status_after_message("resolved", "customer", assigned=False) == Status.open

    def test_agent_reply_keeps_status(self):
        assert rules.status_after_message("resolved", "agent", assigned=True) == Status.resolved
        assert rules.status_after_message("pending", "agent", assigned=True) == Status.pending

    def test_closed_takes_no_messages(self):
        with pytest.raises(InvalidTransition):
            rules.status_after_message("closed", "customer", assigned=True)


class TestCanRate:
    def test_only_resolved_or_closed(self):
        rules.can_rate("resolved")
        rules.can_rate("closed")
        for status in ("open", "pending"):
            with pytest.raises(InvalidTransition):
                rules.can_rate(status)


def agent(n: int, team="billing", available=True, capacity=5, load=0) -> AgentLoad:
    return AgentLoad(uuid.UUID(int=n), team, available, capacity, load)


class TestTeamFor:
    RULES = [
        rules.RoutingRule("vip", priority="urgent"),
        rules.RoutingRule("phone-desk", channel="phone", category="printers"),
        rules.RoutingRule("social", channel="telegram"),
    ]

    def team(self, category=None, channel="email", priority="normal", owner=None):
        return rules.team_for(
            self.RULES, category=category, channel=channel, priority=priority, category_owner=owner
        )

    def test_first_matching_rule_wins(self):
        assert self.team("printers", "phone", "urgent") == "vip"
        assert self.team("printers", "phone") == "phone-desk"

    def test_every_condition_of_a_rule_must_match(self):
        assert self.team("printers", "email", owner="tech") == "tech"
        assert self.team("billing", "phone", owner="finance") == "finance"

    def test_channel_rule(self):
        assert self.team(channel="telegram") == "social"

    def test_no_rule_and_no_owner_means_any_team(self):
        assert self.team() is None


class TestRoute:
    def test_least_loaded_of_the_team(self):
        agents = [agent(1, load=3), agent(2, load=1), agent(3, team="tech", load=0)]
        assert rules.route(agents, "billing") == uuid.UUID(int=2)

    def test_skips_unavailable_and_full_agents(self):
        agents = [agent(1, available=False), agent(2, capacity=2, load=2), agent(3, load=4)]
        assert rules.route(agents, "billing") == uuid.UUID(int=3)

    def test_no_team_means_any_team(self):
        agents = [agent(1, load=2), agent(2, team="tech", load=1)]
        assert rules.route(agents, None) == uuid.UUID(int=2)

    def test_nobody_free(self):
        assert rules.route([agent(1, capacity=0)], "billing") is None
        assert rules.route([agent(1)], "tech") is None
        assert rules.route([], None) is None

    def test_ties_go_to_more_spare_capacity_then_lowest_id(self):
        assert rules.route([agent(1, capacity=3), agent(2, capacity=9)], None) == uuid.UUID(int=2)
        assert rules.route([agent(2), agent(1)], None) == uuid.UUID(int=1)


class TestSubjectFromBody:
    @pytest.mark.parametrize(
        ("body", "subject"),
        [
            ("Printer broken\nDetails...", "Printer broken"),
            ("\x1eStill broken", "Still broken"),  # a record separator is a line break here
            ("\u2028\n  \nThird line", "Third line"),
            ("\x1e\x1c", rules.NO_SUBJECT),
            ("x" * 300, "x" * rules.SUBJECT_FROM_BODY_CHARS),
        ],
    )
    def test_the_first_line_with_text(self, body, subject):
        assert rules.subject_from_body(body) == subject


class TestNormalizeIdentity:
    @pytest.mark.parametrize(
        ("kind", "sent", "stored"),
        [
            ("email", " Anna@Example.COM ", "anna@example.com"),
            # Contacts keeps Telegram handles without the @ and numbers in E.164.
            ("telegram", "@Anna", "anna"),
            ("whatsapp", "4930123456", "+4930123456"),  # WhatsApp's webhooks: no +
            ("whatsapp", "+49 30 123456", "+4930123456"),
            ("phone", "0049 30 123456", "+4930123456"),
            ("phone", "+49 (30) 123-456", "+4930123456"),
        ],
    )
    def test_a_providers_form_finds_the_form_contacts_keeps(self, kind, sent, stored):
        assert rules.normalize_identity(kind, sent) == rules.normalize_identity(kind, stored)
        assert rules.normalize_identity(kind, stored) == stored

    def test_a_local_number_is_left_as_it_is(self):
        # No country to read it in: it can only meet the same local form.
        assert rules.normalize_identity("phone", "030 123456") == "030123456"


class TestStandInCustomer:
    KEY = b"k" * 32

    def test_the_same_sender_in_any_form_gets_the_same_id(self):
        first = rules.stand_in_customer("phone", "0049 30 123456", self.KEY)
        assert first == rules.stand_in_customer("phone", "+4930123456", self.KEY)
        assert first != rules.stand_in_customer("phone", "+4930123457", self.KEY)
        assert first != rules.stand_in_customer("whatsapp", "+4930123456", self.KEY)

    def test_it_cannot_be_computed_from_the_sender_without_the_key(self):
        keyed = rules.stand_in_customer("email", "anna@example.com", self.KEY)
        assert keyed != rules.stand_in_customer("email", "anna@example.com", b"o" * 32)
        # Before, it was this: anyone could compute it from an address.
        public = uuid.UUID("5b0c6a43-8f0e-4b7c-9a57-0d2c3f1e9a11")
        assert keyed != uuid.uuid5(public, "email:anna@example.com")

    def test_tickets_filed_before_keyed_ids_are_found_by_their_legacy_id(self):
        public = uuid.UUID("5b0c6a43-8f0e-4b7c-9a57-0d2c3f1e9a11")
        assert rules.stand_in_customers("email", "Anna@Example.com", self.KEY) == [
            rules.stand_in_customer("email", "anna@example.com", self.KEY),
            uuid.uuid5(public, "email:anna@example.com"),
        ]


class TestStandInKey:
    def test_derived_from_the_jwt_secret_unless_set(self):
        from services.support.config import SupportSettings
        from shared.settings import AuthSettings

        first, second = "jwt-1-" + "x" * 32, "jwt-2-" + "x" * 32
        derived = SupportSettings(auth=AuthSettings(secret=first)).stand_in_key()
        assert derived != first.encode() and len(derived) == 32
        assert derived == SupportSettings(auth=AuthSettings(secret=first)).stand_in_key()
        assert derived != SupportSettings(auth=AuthSettings(secret=second)).stand_in_key()
        explicit = SupportSettings(auth=AuthSettings(secret=first), stand_in_secret="s" * 32)
        assert explicit.stand_in_key() == b"s" * 32

    def test_with_public_key_tokens_the_stand_in_secret_is_required(self):
        from pydantic import ValidationError

        from services.support.config import SupportSettings
        from shared.settings import AuthSettings

        public_key_auth = AuthSettings(algorithm="RS256", jwks_url="https://idp.test/jwks.json")
        with pytest.raises(ValidationError, match="SUPPORT_STAND_IN_SECRET is required"):
            SupportSettings(auth=public_key_auth)
        settings = SupportSettings(auth=public_key_auth, stand_in_secret="s" * 32)
        assert settings.stand_in_key() == b"s" * 32

    def test_a_short_stand_in_secret_is_refused(self):
        # A short key could be found by trying keys on one's own stand-in id.
        from pydantic import ValidationError

        from services.support.config import SupportSettings
        from shared.settings import AuthSettings

        with pytest.raises(ValidationError, match="SUPPORT_STAND_IN_SECRET must be at least 32"):
            SupportSettings(auth=AuthSettings(secret="x" * 32), stand_in_secret="short")
