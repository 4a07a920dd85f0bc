"""The contact-pressure rules every department applies, and the PII guard for shared topics."""

from datetime import UTC, datetime, timedelta

from shared import contact_rules as rules
from shared.contact_rules import Reason
from shared.events import Channel, ContactPolicy, ContactPreferences, Department, QuietHours


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

    def test_a_zone_stored_before_zones_were_checked_is_read_as_utc(self):
        # "Europe" names a folder of zones: ZoneInfo raised IsADirectoryError, and every
        # contact check of the customer failed.
        quiet = QuietHours(start="21:00", end="08:00", timezone="Europe")
        prefs = ContactPreferences(quiet_hours=quiet)
        assert check(preferences=prefs, now=datetime(2026, 11, 24, 22, tzinfo=UTC)) == [
            Reason.quiet_hours
        ]

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
