"""The contact-pressure rules every department applies before an outbound touch, the guard
that keeps e-mail addresses and phone numbers off shared topics, and the forms of e-mail
addresses, phone numbers and country codes that contacts and sales' leads take. Plain Python,
no I/O."""

import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field, StringConstraints

from shared.events import Channel, ContactPolicy, ContactPreferences, Department, QuietHours

# ---- e-mail addresses, phone numbers, country codes ------------------------------------------
# Contacts takes them in these forms, and sales' leads with them: a lead contacts would refuse
# could never become a contact.

COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)


def normalize_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased."""
    code = value.strip().upper()
    if code not in COUNTRIES:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return code


def normalize_email(value: str) -> str:
    """Lower-cased, syntax-checked address; ValueError with the reason otherwise."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None
    return result.normalized.lower()


# The library's own text starts with its error number: "(0) Missing or invalid default region."
_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "no such country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def normalize_phone(value: str, country: str | None = None) -> str:
    """E.164 (``+4930123456``); a local number needs the contact's country."""
    try:
        number = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == exc.INVALID_COUNTRY_CODE and not value.strip().startswith("+"):
            reason = "a local number: use +<country code> or set country"
        else:
            reason = _PARSE_REASONS.get(exc.error_type, "cannot be read as one")
        raise ValueError(f"not a valid phone number: {reason}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The request fields; the descriptions tell an integrator (and a generated client) the checks
# a schema cannot.
Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(normalize_email),
    Field(description="an e-mail address (syntax checked), stored lower-cased"),
]
Country = Annotated[
    str,
    StringConstraints(min_length=2, max_length=2),
    AfterValidator(normalize_country),
    Field(description="an ISO 3166-1 alpha-2 country code (DE, gb), stored upper-cased"),
]
# Read with the record's country (a local number), so a schema normalises it in a validator
# of its own, after the country: ``normalize_phone(value, country)``.
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=32),
    Field(
        description="a valid phone number: +<country code>, or local to the record's country;"
        " stored as E.164"
    ),
]


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_time_zone(value: str) -> str:
    """An IANA time zone name (``Europe/Berlin``), as quiet hours take it: one the contact
    check cannot find was read as UTC, hours off the customer's night (and a region such as
    ``Europe``, a folder of zones, failed every contact check of the customer)."""
    if value not in _time_zones():
        raise ValueError("not an IANA time zone name (e.g. Europe/Berlin)")
    return value


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
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, "Europe"
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
