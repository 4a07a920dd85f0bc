"""The contact-pressure rules every department applies before an outbound touch, the guard
that keeps e-mail addresses and phone numbers off shared topics, and the country codes every
service takes. Plain Python, no I/O."""

import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from shared.events import Channel, ContactPolicy, ContactPreferences, Department, QuietHours

# ---- country codes ---------------------------------------------------------------------------

COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)


def normalize_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased; contacts and sales take the same ones (a lead
    with another could never become a contact)."""
    code = value.strip().upper()
    if code not in COUNTRIES:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return code


# ---- PII on shared topics -------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d ()./-]{6,}\d")


def contains_contact_details(text: str) -> bool:
    return bool(_EMAIL.search(text) or _PHONE.search(text))


def redact_contact_details(text: str) -> str:
    """E-mail addresses and phone numbers never go on the interactions topic."""
    return _PHONE.sub("[redacted]", _EMAIL.sub("[redacted]", text))


# ---- contact check --------------------------------------------------------------------------

CONTACT_WINDOW = timedelta(days=7)


class Reason(StrEnum):
    customer_erased = "customer_erased"
    channel_opted_out = "channel_opted_out"
    quiet_hours = "quiet_hours"
    weekly_limit_reached = "weekly_limit_reached"
    open_priority_ticket = "open_priority_ticket"


def in_quiet_hours(quiet: QuietHours, now: datetime) -> bool:
    """Whether ``now`` falls in the window (which may span midnight) in its time zone."""
    try:
        zone = ZoneInfo(quiet.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone).time()
    start, end = time.fromisoformat(quiet.start), time.fromisoformat(quiet.end)
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def contact_check(
    *,
    channel: Channel,
    department: Department,
    now: datetime,
    preferences: ContactPreferences | None,
    policy: ContactPolicy,
    outbound_last_7_days: int,
    open_ticket_priorities: Sequence[str],
    erased: bool = False,
) -> list[Reason]:
    """Why an outbound touch now is not allowed (an empty list: it is allowed)."""
    if erased:
        return [Reason.customer_erased]
    prefs = preferences or ContactPreferences()
    reasons: list[Reason] = []
    if channel in prefs.opted_out_channels:
        reasons.append(Reason.channel_opted_out)
    quiet = prefs.quiet_hours or policy.quiet_hours
    if quiet is not None and in_quiet_hours(quiet, now):
        reasons.append(Reason.quiet_hours)
    limit = (
        prefs.max_outbound_per_week
        if prefs.max_outbound_per_week is not None
        else policy.max_outbound_per_week
    )
    if outbound_last_7_days >= limit:
        reasons.append(Reason.weekly_limit_reached)
    blocking = set(policy.block_marketing_on_ticket_priorities)
    if department == Department.marketing and blocking.intersection(open_ticket_priorities):
        reasons.append(Reason.open_priority_ticket)
    return reasons
