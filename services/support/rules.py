"""Support rules: the ticket state machine, routing, contact checks. Plain Python, no I/O."""

import hashlib
import hmac
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import phonenumbers

from shared.errors import InvalidTransition


class Status(StrEnum):
    open = "open"
    pending = "pending"  # assigned to an agent, being worked on
    resolved = "resolved"
    closed = "closed"


class Action(StrEnum):
    assign = "assign"
    resolve = "resolve"
    reopen = "reopen"
    close = "close"
    # The system's, at a customer's erasure; no API route takes it.
    close_for_erasure = "close_for_erasure"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


ACTIVE = frozenset({Status.open, Status.pending})

# (from, action) -> to. Anything missing is an illegal transition.
TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (Status.open, Action.assign): Status.pending,
    (Status.pending, Action.assign): Status.pending,
    (Status.open, Action.resolve): Status.resolved,
    (Status.pending, Action.resolve): Status.resolved,
    (Status.resolved, Action.reopen): Status.open,
    (Status.resolved, Action.close): Status.closed,
    # The customer was erased: nothing more is done for the person, so their unfinished tickets
    # close from whatever state they are in (an agent closes only a resolved one).
    (Status.open, Action.close_for_erasure): Status.closed,
    (Status.pending, Action.close_for_erasure): Status.closed,
    (Status.resolved, Action.close_for_erasure): Status.closed,
}


def transition(current: str, action: Action, *, assigned: bool) -> Status:
    """The status after ``action``; InvalidTransition if the machine does not allow it."""
    target = TRANSITIONS.get((Status(current), action))
    if target is None:
        raise InvalidTransition(
            f"cannot {action.value} a ticket that is {current}",
            details={"ticket_status": current, "action": action.value},
        )
    if target == Status.open and assigned:
        return Status.pending  # a reopened ticket goes back to its agent
    return target


def status_after_message(current: str, author_type: str, *, assigned: bool) -> Status:
    """Messages never go on closed tickets; a customer writing to a resolved ticket reopens it."""
    status = Status(current)
    if status == Status.closed:
        raise InvalidTransition(
            "cannot add a message to a closed ticket",
            details={"ticket_status": current, "action": "message"},
        )
    if status == Status.resolved and author_type == "customer":
        return transition(current, Action.reopen, assigned=assigned)
    return status


def can_rate(current: str) -> None:
    if Status(current) not in (Status.resolved, Status.closed):
        raise InvalidTransition(
            f"a ticket that is {current} cannot be rated yet",
            details={"ticket_status": current, "action": "satisfaction"},
        )


# ---- routing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentLoad:
    id: uuid.UUID
    team: str
    available: bool
    capacity: int
    open_tickets: int


@dataclass(frozen=True)
class RoutingRule:
    """Tickets matching every condition that is set go to ``team``."""

    team: str
    category: str | None = None
    channel: str | None = None
    priority: str | None = None

    def matches(self, category: str | None, channel: str, priority: str) -> bool:
        return (
            (self.category is None or self.category == category)
            and (self.channel is None or self.channel == channel)
            and (self.priority is None or self.priority == priority)
        )


def team_for(
    routing_rules: Sequence[RoutingRule],
    *,
    category: str | None,
    channel: str,
    priority: str,
    category_owner: str | None,
) -> str | None:
    """The first matching rule decides; else the team owning the category; else any team."""
    for rule in routing_rules:
        if rule.matches(category, channel, priority):
            return rule.team
    return category_owner


def route(agents: Iterable[AgentLoad], team: str | None) -> uuid.UUID | None:
    """The least-loaded available agent of ``team`` (any team if None) with spare capacity.

    Ties go to the agent with more spare capacity, then the lowest id (deterministic).
    """
    candidates = [
        a
        for a in agents
        if a.available and a.open_tickets < a.capacity and (team is None or a.team == team)
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda a: (a.open_tickets, -(a.capacity - a.open_tickets), a.id))
    return best.id


# ---- SLAs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaPolicy:
    first_response_minutes: int | None = None
    resolution_minutes: int | None = None
    reassign_after_minutes: int | None = None


@dataclass(frozen=True)
class SlaClock:
    """What the SLA rules need to know about one ticket."""

    status: str
    opened_at: datetime
    assigned_at: datetime | None
    agent_replied_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    first_response_breached: bool
    resolution_breached: bool


@dataclass(frozen=True)
class SlaVerdict:
    reassign: bool = False
    first_response_breached: bool = False
    resolution_breached: bool = False


def _past(start: datetime, minutes: int | None, now: datetime) -> bool:
    return minutes is not None and now >= start + timedelta(minutes=minutes)


def _missed(start: datetime, minutes: int | None, met_at: datetime | None, now: datetime) -> bool:
    """The target was missed: met after it, or not met yet and due by now."""
    if met_at is None:
        return _past(start, minutes, now)
    return minutes is not None and met_at > start + timedelta(minutes=minutes)


def sla_check(ticket: SlaClock, policy: SlaPolicy, now: datetime) -> SlaVerdict:
    """Due re-assignment (the agent has not answered since being assigned) and new breaches
    (each breach is reported once). A first response or resolution that came after its
    target is a breach too, whenever it is checked: the sweep may not have reached the ticket
    between the target and the answer."""
    active = Status(ticket.status) in ACTIVE
    # A reopened ticket is unresolved again; a resolution also ends the wait for an answer.
    resolved_at = None if active else ticket.resolved_at
    answered = [t for t in (ticket.first_response_at, resolved_at) if t is not None]
    unanswered = ticket.assigned_at is not None and (
        ticket.agent_replied_at is None or ticket.agent_replied_at < ticket.assigned_at
    )
    return SlaVerdict(
        reassign=active
        and unanswered
        and ticket.assigned_at is not None
        and _past(ticket.assigned_at, policy.reassign_after_minutes, now),
        first_response_breached=not ticket.first_response_breached
        and _missed(
            ticket.opened_at, policy.first_response_minutes, min(answered, default=None), now
        ),
        resolution_breached=not ticket.resolution_breached
        and _missed(ticket.opened_at, policy.resolution_minutes, resolved_at, now),
    )


# ---- similar cases --------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have i in is it its me my no not of "
    "on or our since so that the this to was we when with you your".split()
)
CATEGORY_BONUS = 0.2
ATTRIBUTE_BONUS = 0.1
MAX_ATTRIBUTE_BONUS = 0.3


@dataclass(frozen=True)
class Case:
    id: uuid.UUID
    text: str
    category: str | None = None
    attributes: dict[str, object] | None = None


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def rank_similar(target: Case, cases: Sequence[Case], limit: int) -> list[tuple[uuid.UUID, float]]:
    """Cases most like ``target``: TF-IDF cosine of the text, plus a bonus for the same
    category and for each equal attribute (product model, ...). Best first, score > 0 only."""
    documents = [Counter(words(c.text)) for c in cases]
    query = Counter(words(target.text))
    frequency: Counter[str] = Counter()
    for document in [*documents, query]:
        frequency.update(document.keys())
    total = len(documents) + 1

    def vector(counts: Counter[str]) -> dict[str, float]:
        return {w: n * (math.log((total + 1) / (frequency[w] + 1)) + 1) for w, n in counts.items()}

    def cosine(a: dict[str, float], b: dict[str, float]) -> float:
        dot = sum(v * b[w] for w, v in a.items() if w in b)
        norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
        return dot / norm if norm else 0.0

    wanted = vector(query)
    attributes = target.attributes or {}
    scored = []
    for case, document in zip(cases, documents, strict=True):
        if case.id == target.id:
            continue
        score = cosine(wanted, vector(document))
        if target.category and case.category == target.category:
            score += CATEGORY_BONUS
        same = sum(1 for k, v in (case.attributes or {}).items() if attributes.get(k) == v)
        score += min(same * ATTRIBUTE_BONUS, MAX_ATTRIBUTE_BONUS)
        if score > 0:
            scored.append((case.id, round(score, 4)))
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored[:limit]


# ---- inbound senders ------------------------------------------------------------------------


def normalize_identity(kind: str, value: str) -> str:
    """The key a sender and a contact's identity are matched by, in the forms contacts keeps
    (lower-case e-mails, Telegram handles without their @, phone numbers in E.164), whatever
    form a channel's provider sends: ``@Anna``, a WhatsApp number without its + (WhatsApp's
    webhooks send ``4930...``), ``0049 30 ...``, ``+49 (30) ...``."""
    value = value.strip()
    if kind in ("phone", "whatsapp"):
        return _phone_key(value, international=kind == "whatsapp")
    if kind == "telegram":
        return value.lower().lstrip("@")
    return value.lower()


def _phone_key(value: str, *, international: bool) -> str:
    """E.164 when the number is one (as contacts stores it), else its bare digits."""
    bare = re.sub(r"[\s()./-]", "", value)
    if bare.startswith("00"):
        bare = "+" + bare[2:]
    elif international and bare.isdigit():
        bare = "+" + bare
    try:
        number = phonenumbers.parse(bare, None)
    except phonenumbers.NumberParseException:
        return bare  # a local number: no country to read it in
    if not phonenumbers.is_valid_number(number):
        return bare
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


SUBJECT_FROM_BODY_CHARS = 200
NO_SUBJECT = "(no subject)"


def subject_from_body(body: str) -> str:
    """A subject for a message that came without one: its first line with any text in it (a
    body may open with a line break, or a separator that Python counts as one), shortened."""
    first = next((line.strip() for line in body.splitlines() if line.strip()), "")
    return first[:SUBJECT_FROM_BODY_CHARS] or NO_SUBJECT


def stand_in_customer(kind: str, value: str, key: bytes) -> uuid.UUID:
    """The id a sender no contact has yet is filed under: the same for the same sender, so
    their later messages and their identification find their tickets. An HMAC of the sender
    under support's secret key: the id is on crm.support.v1, and no one reading it can test
    a guessed address or run through a range of phone numbers without the key."""
    sender = f"{kind}:{normalize_identity(kind, value)}".encode()
    digest = hmac.new(key, sender, hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)  # pseudorandom bits: a random UUID's form


# Stand-in ids were once uuid5 of the sender in this namespace, public in the repository.
# Tickets filed then keep theirs (their events carried it): they are still found by it.
LEGACY_STAND_IN_NAMESPACE = uuid.UUID("5b0c6a43-8f0e-4b7c-9a57-0d2c3f1e9a11")


def legacy_stand_in_customer(kind: str, value: str) -> uuid.UUID:
    return uuid.uuid5(LEGACY_STAND_IN_NAMESPACE, f"{kind}:{normalize_identity(kind, value)}")


def stand_in_customers(kind: str, value: str, key: bytes) -> list[uuid.UUID]:
    """Every id an unknown sender's tickets may be filed under: the keyed one new tickets get,
    then the legacy one of tickets filed before."""
    return [stand_in_customer(kind, value, key), legacy_stand_in_customer(kind, value)]
