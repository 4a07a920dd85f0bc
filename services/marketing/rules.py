"""Marketing rules: segment rules (parse, validate, evaluate), templates, budgets, addresses.
Plain Python, no I/O."""

import math
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from shared.errors import InvalidInput
from shared.events import Channel
from shared.values import parse_utc_time

# ---- channels and addresses -----------------------------------------------------------------


class CampaignChannel(StrEnum):
    email = "email"
    sms = "sms"
    telegram = "telegram"
    whatsapp = "whatsapp"
    push = "push"


def bus_channel(channel: str) -> Channel:
    """The interaction channel of a campaign channel (push notifications reach the mobile app)."""
    return Channel.mobile_app if channel == CampaignChannel.push else Channel(channel)


def address_for(
    channel: str,
    *,
    customer_id: str,
    email: str | None,
    phone: str | None,
    identities: Mapping[str, str],
) -> str | None:
    """Where a message on ``channel`` goes for this recipient; None: the channel cannot reach it."""
    match CampaignChannel(channel):
        case CampaignChannel.email:
            return email or identities.get("email")
        case CampaignChannel.sms:
            return phone or identities.get("phone")
        case CampaignChannel.whatsapp:
            return identities.get("whatsapp") or phone or identities.get("phone")
        case CampaignChannel.telegram:
            return identities.get("telegram")
        case CampaignChannel.push:
            # The push provider knows the customer's devices by the customer id.
            return identities.get("push") or customer_id


# Why a member gets no message, besides the contact-check reasons (shared.contact_rules.Reason).
BUDGET_EXHAUSTED = "budget_exhausted"
NO_ADDRESS = "no_address"


# ---- campaign lifecycle ---------------------------------------------------------------------

# Why a send is not sent: its campaign was cancelled before a sender claimed it.
CAMPAIGN_CANCELLED = "campaign_cancelled"


def launch_refusal(campaign_status: str) -> str | None:
    """Why a campaign that is ``campaign_status`` cannot be launched (None: it can; a
    completed one can, to reach whom the last launch did not)."""
    if campaign_status == "cancelled":
        return "a cancelled campaign cannot be launched again"
    return None


def cancel_refusal(campaign_status: str) -> str | None:
    """Why a campaign that is ``campaign_status`` cannot be cancelled (None: it can; a
    cancelled one is cancelled again, changing nothing)."""
    if campaign_status == "completed":
        return "a completed campaign has nothing left to send to cancel"
    return None


# ---- what providers report -----------------------------------------------------------------

# Engagement a provider reports by send id (POST /v1/engagements). Opens, clicks and
# unsubscribes come through the signed links of a message, which only a claimed send has.
PROVIDER_REPORTS = ("delivered", "replied")
# A provider has the message once the sender claimed the send (``sending``: being handed over,
# its receipt may come before the outcome is recorded). A queued send was never claimed, a
# suppressed one never composed, a failed one refused: none can have been delivered.
HANDED_OVER = ("sending", "sent")


def report_refusal(kind: str, send_status: str) -> str | None:
    """Why a provider cannot have reported ``kind`` on a send that is ``send_status`` (None:
    it can)."""
    if kind not in PROVIDER_REPORTS or send_status in HANDED_OVER:
        return None
    return f"the send is {send_status}: it was never handed to a provider, so nothing was {kind}"


# ---- budgets --------------------------------------------------------------------------------


def affordable_sends(budget: Decimal, cost_per_send: Decimal, committed: int) -> int | None:
    """How many more sends the budget pays for, with ``committed`` already paid; None: no limit
    (free sends)."""
    if cost_per_send <= 0:
        return None
    remaining = budget - cost_per_send * committed
    if remaining <= 0:
        return 0
    return math.floor(remaining / cost_per_send)


# ---- templates ------------------------------------------------------------------------------

TEMPLATE_FIELDS = ("first_name", "last_name", "country", "unsubscribe_url")
URL_PATTERN = re.compile(r"https?://[^\s<>\"']+")
_CLOSING = {")": "(", "]": "[", "}": "{"}


def links(text: str) -> Iterator[tuple[int, int]]:
    """The (start, end) of every http(s) link in ``text``. Punctuation after a link is the
    sentence's ("see https://shop.test/sale."), as is a closing bracket the link does not open
    ("(https://shop.test/a)"): a mail client leaves them out of the link, and so does this."""
    for match in URL_PATTERN.finditer(text):
        start, end = match.span()
        while end > start:
            last = text[end - 1]
            if last in ".,;:!?":
                end -= 1
            elif last in _CLOSING and text.count(_CLOSING[last], start, end) < text.count(
                last, start, end
            ):
                end -= 1
            else:
                break
        yield start, end


def template_errors(template: str) -> str | None:
    """Why ``template`` cannot be rendered (None: it can). Fields are written ``{first_name}``."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{exc} (write {{{{ and }}}} for literal braces)"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            return f"unknown field {{{name}}}; allowed: {allowed}"
        if spec or conversion:
            return f"field {{{name}}} takes no format or conversion"
    return None


def render(template: str, values: Mapping[str, str | None]) -> str:
    """The template with its fields filled in (a missing value renders empty)."""
    return template.format_map({f: values.get(f) or "" for f in TEMPLATE_FIELDS})


def personalise(
    template: str, values: Mapping[str, str | None], tracked: Callable[[str], str]
) -> str:
    """``render``, with every link the template writes replaced by ``tracked(link)`` (a link
    may take a field: ``https://shop.test/{country}``). A link that only a filled-in value
    holds (a name a sign-up form took, the unsubscribe link) stays as it is: made a signed
    click link, it would redirect anyone to wherever the name points, from this service's
    domain."""
    parts: list[str] = []
    from_values: list[tuple[int, int]] = []  # where the filled-in values are in the text
    length = 0
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        length += len(literal)
        if name is not None:
            value = values.get(name) or ""
            parts.append(value)
            from_values.append((length, length + len(value)))
            length += len(value)
    text = "".join(parts)
    out: list[str] = []
    last = 0
    for start, end in links(text):
        if any(begin <= start < stop for begin, stop in from_values):
            continue
        out += [text[last:start], tracked(text[start:end])]
        last = end
    out.append(text[last:])
    return "".join(out)


# ---- segment rules --------------------------------------------------------------------------


class FieldType(StrEnum):
    text = "text"
    number = "number"
    time = "time"
    tags = "tags"
    flag = "flag"


# What a segment rule can look at, per customer (the facts service.py gathers).
FIELDS: dict[str, FieldType] = {
    "first_name": FieldType.text,
    "last_name": FieldType.text,
    "country": FieldType.text,
    "has_email": FieldType.flag,
    "has_phone": FieldType.flag,
    "opted_out_channels": FieldType.tags,
    "preferred_channel": FieldType.text,
    "last_purchase_at": FieldType.time,
    "orders_count": FieldType.number,
    "total_spent": FieldType.number,
    "churn_level": FieldType.text,
    "churn_risk": FieldType.number,
    "rfm_segment": FieldType.text,
    "clv": FieldType.number,
    "last_touch_at": FieldType.time,
    "last_email_open_at": FieldType.time,
    "last_link_click_at": FieldType.time,
    "outbound_touches_7d": FieldType.number,
}

_PRESENCE = ("exists", "missing")
OPERATORS: dict[FieldType, tuple[str, ...]] = {
    FieldType.text: ("eq", "ne", "in", "not_in", *_PRESENCE),
    FieldType.number: ("eq", "ne", "gt", "gte", "lt", "lte", *_PRESENCE),
    FieldType.time: ("before", "after", "older_than_days", "within_days", *_PRESENCE),
    FieldType.tags: ("contains", "not_contains"),
    FieldType.flag: ("eq",),
}
MAX_DEPTH = 8
MAX_LEAVES = 100


@dataclass(frozen=True)
class Leaf:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Group:
    op: str  # and | or
    rules: tuple["Rule", ...]


@dataclass(frozen=True)
class Not:
    rule: "Rule"


Rule = Leaf | Group | Not


def parse_rule(raw: Any, path: str = "rules") -> Rule:
    """A rule tree from its JSON form; InvalidInput naming the bad part (e.g. rules.and.1.op).

    Leaves are ``{"field", "op", "value"}``; groups ``{"and": [...]}``, ``{"or": [...]}``,
    ``{"not": rule}``.
    """
    leaves = [0]
    return _parse(raw, path, 1, leaves)


def _parse(raw: Any, path: str, depth: int, leaves: list[int]) -> Rule:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"rules nest at most {MAX_DEPTH} levels deep", field=path)
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object: a rule or an and/or/not group", field=path)
    groups = [key for key in ("and", "or", "not") if key in raw]
    if groups:
        if len(raw) != 1:
            raise InvalidInput("a group has exactly one key: and, or or not", field=path)
        key = groups[0]
        if key == "not":
            return Not(_parse(raw["not"], f"{path}.not", depth + 1, leaves))
        children = raw[key]
        if not isinstance(children, list) or not children:
            raise InvalidInput("must be a non-empty list of rules", field=f"{path}.{key}")
        return Group(
            key,
            tuple(
                _parse(child, f"{path}.{key}.{i}", depth + 1, leaves)
                for i, child in enumerate(children)
            ),
        )
    leaves[0] += 1
    if leaves[0] > MAX_LEAVES:
        raise InvalidInput(f"at most {MAX_LEAVES} conditions", field=path)
    return _parse_leaf(raw, path)


def _parse_leaf(raw: dict[str, Any], path: str) -> Leaf:
    unknown = sorted(set(raw) - {"field", "op", "value"})
    if unknown:
        key = unknown[0]
        raise InvalidInput(
            f"unknown key {key!r} (a condition has field, op, value)",
            field=f"{path}.{key}" if key else path,  # an empty key would leave "rules."
        )
    field = raw.get("field")
    if field not in FIELDS:
        told = "a condition needs a field" if field is None else f"unknown field {field!r}"
        raise InvalidInput(f"{told}; one of: {', '.join(FIELDS)}", field=f"{path}.field")
    kind = FIELDS[field]
    op = raw.get("op")
    if op not in OPERATORS[kind]:
        told = "a condition needs an op" if op is None else f"operator {op!r} does not apply"
        raise InvalidInput(
            f"{told} to {field} ({kind.value}); one of: " + ", ".join(OPERATORS[kind]),
            field=f"{path}.op",
        )
    return Leaf(field, op, _parse_value(kind, op, raw.get("value"), f"{path}.value"))


def _parse_value(kind: FieldType, op: str, value: Any, path: str) -> Any:
    if op in _PRESENCE:
        if value is not None:
            raise InvalidInput(f"{op} takes no value", field=path)
        return None
    if op in ("in", "not_in"):
        if (
            not isinstance(value, list)
            or not value
            or len(value) > 1000
            or not all(isinstance(v, str) for v in value)
        ):
            raise InvalidInput(f"{op} needs a list of 1 to 1000 strings", field=path)
        return frozenset(v.casefold() for v in value)
    if op in ("older_than_days", "within_days"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36_500:
            raise InvalidInput(f"{op} needs a whole number of days (0 to 36500)", field=path)
        return timedelta(days=value)
    match kind:
        case FieldType.text | FieldType.tags:
            if not isinstance(value, str) or not 0 < len(value) <= 200:
                raise InvalidInput("needs a string of 1 to 200 characters", field=path)
            return value.casefold()
        case FieldType.number:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput("needs a number", field=path)
            if not math.isfinite(value):
                raise InvalidInput("needs a finite number", field=path)
            return value
        case FieldType.flag:
            if not isinstance(value, bool):
                raise InvalidInput("needs true or false", field=path)
            return value
        case FieldType.time:
            try:
                return parse_utc_time(value)  # as every API takes a time
            except ValueError as exc:
                raise InvalidInput(str(exc), field=path) from None


def evaluate(rule: Rule, facts: Mapping[str, Any], now: datetime) -> bool:
    """Whether a customer with ``facts`` (FIELDS -> value or None) matches ``rule`` at ``now``."""
    match rule:
        case Group(op="and", rules=children):
            return all(evaluate(child, facts, now) for child in children)
        case Group(rules=children):
            return any(evaluate(child, facts, now) for child in children)
        case Not(rule=child):
            return not evaluate(child, facts, now)
        case Leaf():
            return _leaf(rule, facts.get(rule.field), now)
    raise TypeError(f"not a rule: {rule!r}")


def _leaf(leaf: Leaf, actual: Any, now: datetime) -> bool:
    op, expected = leaf.op, leaf.value
    if op == "exists":
        return actual is not None and actual != ""
    if op == "missing":
        return actual is None or actual == ""
    if FIELDS[leaf.field] == FieldType.tags:
        present = expected in {str(v).casefold() for v in actual or ()}
        return present if op == "contains" else not present
    if actual is None:
        # Nothing known never matches a comparison; "ne"/"not_in" included, so that
        # "country ne DE" does not pick customers whose country nobody knows.
        return False
    if isinstance(actual, str):
        actual = actual.casefold()
    if FIELDS[leaf.field] == FieldType.number:
        # Money is a Decimal, and Decimal("19.99") <= 19.99 is false: a float is not quite
        # 19.99. Compared as the decimals they are written as, the boundaries hold.
        actual, expected = _decimal(actual), _decimal(expected)
    match op:
        case "eq":
            return actual == expected
        case "ne":
            return actual != expected
        case "in":
            return actual in expected
        case "not_in":
            return actual not in expected
        case "gt":
            return actual > expected
        case "gte":
            return actual >= expected
        case "lt":
            return actual < expected
        case "lte":
            return actual <= expected
        case "before":
            return actual < expected
        case "after":
            return actual > expected
        case "older_than_days":
            return actual < now - expected
        case "within_days":
            return actual >= now - expected
    raise ValueError(f"unknown operator {op}")


def fields_used(rule: Rule) -> set[str]:
    """The fields a rule reads (service.py gathers only those facts)."""
    match rule:
        case Group(rules=children):
            return set().union(*(fields_used(child) for child in children))
        case Not(rule=child):
            return fields_used(child)
        case Leaf(field=field):
            return {field}
    return set()


def _decimal(number: int | float | Decimal) -> Decimal:
    return number if isinstance(number, Decimal) else Decimal(str(number))
