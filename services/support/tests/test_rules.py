"""Support's domain rules: the state machine, routing, PII redaction, contact checks."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.support import rules
from services.support.rules import Action, AgentLoad, Reason, Status
from shared.errors import InvalidTransition
from shared.events import Channel, ContactPolicy, ContactPreferences, Department, QuietHours


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


class TestRedaction:
    def test_emails_and_phones_are_removed(self):
        text = "Call me at +49 30 1234567 or mail anna@example.com about order 42"
        redacted = rules.redact_contact_details(text)
        assert "anna@" not in redacted and "1234567" not in redacted
        assert "order 42" in redacted
        assert rules.contains_contact_details(text)
        assert not rules.contains_contact_details("Printer model X-200 broken")


NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def check(**overrides):
    arguments = {
        "channel": Channel.email,
        "department": Department.support,
        "now": NOON,
        "preferences": None,
        "policy": ContactPolicy(),
        "outbound_last_7_days": 0,
        "open_ticket_priorities": [],
    }
    return rules.contact_check(**{**arguments, **overrides})


class TestContactCheck:
    def test_allowed_by_default(self):
        assert check() == []

    def test_opted_out_channel(self):
        prefs = ContactPreferences(opted_out_channels=[Channel.email])
        assert check(preferences=prefs) == [Reason.channel_opted_out]
        assert check(preferences=prefs, channel=Channel.phone) == []

    def test_quiet_hours_over_midnight_in_the_contacts_zone(self):
        quiet = QuietHours(start="21:00", end="08:00", timezone="Europe/Berlin")
        prefs = ContactPreferences(quiet_hours=quiet)
        late = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
        morning = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)  # 08:30 in Berlin
        assert check(preferences=prefs, now=late) == [Reason.quiet_hours]
        assert check(preferences=prefs, now=morning) == []

    def test_policy_quiet_hours_apply_without_a_preference(self):
        policy = ContactPolicy(quiet_hours=QuietHours(start="11:00", end="13:00"))
        assert check(policy=policy) == [Reason.quiet_hours]

    def test_weekly_limit_from_the_policy_or_the_preference(self):
        assert check(outbound_last_7_days=5) == [Reason.weekly_limit_reached]
        assert check(outbound_last_7_days=4) == []
        prefs = ContactPreferences(max_outbound_per_week=1)
        assert check(preferences=prefs, outbound_last_7_days=1) == [Reason.weekly_limit_reached]

    def test_open_urgent_ticket_blocks_marketing_only(self):
        assert check(department=Department.marketing, open_ticket_priorities=["urgent"]) == [
            Reason.open_priority_ticket
        ]
        assert check(department=Department.marketing, open_ticket_priorities=["low"]) == []
        assert check(department=Department.sales, open_ticket_priorities=["urgent"]) == []

    def test_erased_customer(self):
        assert check(erased=True) == [Reason.customer_erased]

    def test_several_reasons_at_once(self):
        prefs = ContactPreferences(opted_out_channels=[Channel.sms], max_outbound_per_week=0)
        reasons = check(preferences=prefs, channel=Channel.sms)
        assert reasons == [Reason.channel_opted_out, Reason.weekly_limit_reached]


def test_window_is_seven_days():
    assert rules.CONTACT_WINDOW == timedelta(days=7)
