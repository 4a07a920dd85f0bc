"""Sales' domain rules: lead scoring and states, the opportunity pipeline, territories and the
forecast arithmetic. Plain Python, no I/O."""

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from shared.errors import InvalidInput, InvalidTransition
from shared.values import FIRST_YEAR, LAST_YEAR, MAX_AMOUNT

CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    """Rounded to the cent, halves up (as invoices do)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def amount(value: Decimal) -> Decimal:
    """An amount taken in (of at most two places, not negative), as sales keeps, answers and
    publishes it: with two places, as its column gives it back ("10.5" and 1E+2 were told as
    sent, then read as 10.50 and 100.00), and -0 as 0.00."""
    return abs(cents(value))


# ---- leads ----------------------------------------------------------------------------------


class LeadStatus(StrEnum):
    new = "new"
    qualified = "qualified"
    disqualified = "disqualified"
    converted = "converted"


class LeadAction(StrEnum):
    qualify = "qualify"
    disqualify = "disqualify"
    convert = "convert"


LEAD_TRANSITIONS: dict[tuple[LeadStatus, LeadAction], LeadStatus] = {
    (LeadStatus.new, LeadAction.qualify): LeadStatus.qualified,
    (LeadStatus.new, LeadAction.disqualify): LeadStatus.disqualified,
    (LeadStatus.qualified, LeadAction.disqualify): LeadStatus.disqualified,
    (LeadStatus.new, LeadAction.convert): LeadStatus.converted,
    (LeadStatus.qualified, LeadAction.convert): LeadStatus.converted,
    # A lead disqualified too early can be qualified again.
    (LeadStatus.disqualified, LeadAction.qualify): LeadStatus.qualified,
}


def next_lead_status(current: LeadStatus, action: LeadAction) -> LeadStatus:
    try:
        return LEAD_TRANSITIONS[(current, action)]
    except KeyError:
        raise InvalidTransition(f"cannot {action.value} a lead that is {current.value}") from None


# ---- scoring --------------------------------------------------------------------------------

SOURCE_POINTS = {"referral": 15, "event": 12, "partner": 12, "campaign": 8, "web": 6}
SEGMENT_POINTS = {"enterprise": 15, "mid_market": 10, "smb": 5}
MAX_FIT = 50
MAX_ENGAGEMENT = 50


@dataclass(frozen=True)
class LeadProfile:
    """What fit is judged on: who the lead is, not what they did."""

    source: str
    company: str | None
    email: str | None
    phone: str | None
    country: str | None
    segment: str | None


@dataclass(frozen=True)
class Touch:
    """One touch of the lead's customer in the shared timeline."""

    kind: str
    direction: str
    sentiment: str | None = None


def fit_score(lead: LeadProfile) -> int:
    """0-50: a known company, a good source, a valuable segment and complete contact data."""
    points = SOURCE_POINTS.get(lead.source, 3)
    points += SEGMENT_POINTS.get(lead.segment or "", 0)
    points += 8 if lead.company else 0
    points += sum(4 for value in (lead.email, lead.phone, lead.country) if value)
    return min(points, MAX_FIT)


# What a touch says about interest: the customer acting counts more than being acted upon.
# The kinds as the departments publish them (marketing's reply is ``campaign_reply``); an
# unsubscribe is the customer acting too, against: it takes back as much as a click gives.
_KIND_POINTS = {
    "email_open": 2,
    "link_click": 5,
    "reply": 8,
    "campaign_reply": 8,
    "meeting": 10,
    "web_visit": 3,
    "unsubscribe": -5,
}


def engagement_score(touches: Iterable[Touch]) -> int:
    """0-50 from the customer's touches (every department's) in the shared timeline."""
    points = 0
    for touch in touches:
        if touch.kind in _KIND_POINTS:
            value = _KIND_POINTS[touch.kind]
        elif touch.direction == "inbound":
            value = 6
        else:
            value = 1
        if touch.sentiment == "positive":
            value += 3
        elif touch.sentiment == "negative":
            value -= 3
        points += value
    return max(0, min(points, MAX_ENGAGEMENT))


def lead_score(lead: LeadProfile, touches: Iterable[Touch]) -> tuple[int, int, int]:
    """(score, fit, engagement); the score is their sum, 0-100."""
    fit, engagement = fit_score(lead), engagement_score(touches)
    return fit + engagement, fit, engagement


# ---- territories ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentRule:
    """A lead matching every condition set (None matches anything) goes to ``owner``."""

    owner: str
    territory: str | None = None
    countries: tuple[str, ...] = ()
    segment: str | None = None
    source: str | None = None


def _wider_but_for_countries(earlier: AssignmentRule, later: AssignmentRule) -> bool:
    """Whether ``earlier`` takes every segment and source ``later`` does."""
    return earlier.segment in (None, later.segment) and earlier.source in (None, later.source)


def check_reachable(rules: Sequence[AssignmentRule]) -> None:
    """Refuse a rule that can never be the first match: the rules before it match every lead
    and account it would (a catch-all before a rule naming a country, the same conditions
    twice, or its countries shared out among earlier rules). Taken as given, that rule was
    kept and silently never applied. The 422 names it (``rules.N``) and the rules covering it.

    Only countries can be shared out like that: a rule taking any segment, source or country
    (None, or no countries) also takes leads and accounts with none, which only another
    rule taking any of them covers."""
    for index, rule in enumerate(rules):
        countries_left = set(rule.countries)
        covering: list[int] = []
        for before in range(index):
            earlier = rules[before]
            if not _wider_but_for_countries(earlier, rule):
                continue
            if not earlier.countries:  # any country: it alone takes all this rule would
                covering = [before]
                countries_left = set()
                break
            if countries_left & set(earlier.countries):
                covering.append(before)
                countries_left -= set(earlier.countries)
                if not countries_left:
                    break
        if covering and not countries_left:
            names = " and ".join(f"rules.{i} (owner {rules[i].owner!r})" for i in covering)
            verb = "matches" if len(covering) == 1 else "match"
            raise InvalidInput(
                f"never applies: {names} before it {verb} every lead and account it would;"
                " move it before them, or drop it",
                field=f"rules.{index}",
                details={"covered_by": [f"rules.{i}" for i in covering]},
            )


def assign(
    rules: Sequence[AssignmentRule],
    *,
    country: str | None,
    segment: str | None,
    source: str | None,
) -> AssignmentRule | None:
    """The first matching rule, in the order given (most specific first is the user's job).
    Accounts have no source: a rule naming one is for leads only."""
    for rule in rules:
        if rule.countries and (country or "").upper() not in rule.countries:
            continue
        if rule.segment is not None and rule.segment != segment:
            continue
        if rule.source is not None and rule.source != source:
            continue
        return rule
    return None


# ---- the opportunity pipeline ---------------------------------------------------------------

WON = "won"
LOST = "lost"
CLOSED = frozenset({WON, LOST})


@dataclass(frozen=True)
class Pipeline:
    """Stage -> probability, open stages in order, then won and lost."""

    probabilities: Mapping[str, Decimal]

    @property
    def stages(self) -> list[str]:
        return list(self.probabilities)

    @property
    def open_stages(self) -> list[str]:
        return [s for s in self.probabilities if s not in CLOSED]

    @property
    def first(self) -> str:
        return self.open_stages[0]

    def probability(self, stage: str) -> Decimal:
        return self.probabilities[stage]

    def check_stage(self, stage: str, field: str = "stage") -> str:
        if stage not in self.probabilities:
            raise InvalidInput(f"unknown stage; one of {', '.join(self.stages)}", field=field)
        return stage

    def move(
        self, current: str, target: str, reason: str | None, *, reason_needed: bool = True
    ) -> str:
        """Validate a stage change: open deals move freely, closed ones never; lost needs a
        reason (unless ``reason_needed`` is false: an erased customer's deal takes none)."""
        self.check_stage(target)
        if current in CLOSED:
            raise InvalidTransition(f"the opportunity is already {current}")
        if target == current:
            raise InvalidTransition(f"the opportunity is already in {current}")
        if target == LOST and not reason and reason_needed:
            raise InvalidInput("a lost opportunity needs a reason", field="reason")
        return target


class PipelineInUse(RuntimeError):
    """The configured pipeline lacks stages that open deals are in: refused at start."""


def check_stages_in_use(pipeline: Pipeline, open_deals_by_stage: Mapping[str, int]) -> None:
    """Every stage an open deal is in must still be in the pipeline: a stage dropped from the
    configuration while deals were in it made them vanish from the pipeline's and the
    forecast's figures and from the open deals listed, silently."""
    missing = {s: n for s, n in open_deals_by_stage.items() if s not in pipeline.probabilities}
    if missing:
        listed = ", ".join(f"{stage!r} (open deals: {n})" for stage, n in sorted(missing.items()))
        raise PipelineInUse(
            f"SALES_PIPELINE has no stage {listed}: keep the stage, or move its deals to "
            "another stage (or close them) with the current pipeline first"
        )


# ---- pipeline and forecast arithmetic -------------------------------------------------------

_PERIOD = re.compile(r"^(\d{4})-(?:(0[1-9]|1[0-2])|Q([1-4]))$")


def period_bounds(period: str) -> tuple[date, date]:
    """``YYYY-MM`` or ``YYYY-Qn`` -> (first day, last day), inclusive."""
    match = _PERIOD.match(period)
    if not match:
        raise InvalidInput("a month YYYY-MM or a quarter YYYY-Qn", field="period")
    year = int(match.group(1))
    if not FIRST_YEAR <= year <= LAST_YEAR:  # a quarter's end + 1 day must still be a date
        raise InvalidInput(f"the year must be from {FIRST_YEAR} to {LAST_YEAR}", field="period")
    if match.group(2):
        first_month = last_month = int(match.group(2))
    else:
        first_month = (int(match.group(3)) - 1) * 3 + 1
        last_month = first_month + 2
    return date(year, first_month, 1), date(
        year, last_month, calendar.monthrange(year, last_month)[1]
    )


def open_deals_expected(start: date, end: date, today: date) -> tuple[date | None, date] | None:
    """Which open deals the forecast of the period ``start``-``end`` counts, as the range of
    their expected close (None: no lower end), or None for none at all. An open deal is
    forecast in the period of its expected close or, once that day has passed, in the current
    period: it slipped, it did not go away (they dropped out of every forecast). A period that
    has ended has only its won deals: nothing open can still close in it."""
    if end < today:
        return None
    if start <= today:
        return None, end
    return start, end


@dataclass(frozen=True)
class Deal:
    owner: str
    stage: str
    amount: Decimal
    overdue: bool = False  # open, and its expected close has passed


@dataclass
class ForecastLine:
    owner: str
    open_count: int = 0
    pipeline: Decimal = Decimal("0.00")  # open amount, unweighted
    weighted: Decimal = Decimal("0.00")  # Σ each open deal's amount × stage probability, cents
    won: Decimal = Decimal("0.00")  # already closed won in the period
    overdue_count: int = 0  # of the open ones: past their expected close
    overdue: Decimal = Decimal("0.00")  # their amount, unweighted

    @property
    def expected(self) -> Decimal:
        return self.won + self.weighted


def weighted(amount: Decimal, probability: Decimal) -> Decimal:
    """One deal's weighted amount, rounded to the cent once. Figures are sums of these, so the
    owners' lines add up to the total (rounding each line's sum did not: three 0.05 deals at
    0.1 made 0.01 each and 0.02 in all), and analytics, which does the same, agrees."""
    return cents(amount * probability)


def forecast(deals: Iterable[Deal], pipeline: Pipeline) -> tuple[list[ForecastLine], ForecastLine]:
    """Per owner (sorted) and in total: won so far plus the open deals weighted by stage."""
    lines: dict[str, ForecastLine] = {}
    total = ForecastLine(owner="*")
    for deal in deals:
        line = lines.setdefault(deal.owner, ForecastLine(owner=deal.owner))
        for target in (line, total):
            if deal.stage == WON:
                target.won += deal.amount
            elif deal.stage != LOST:
                target.open_count += 1
                target.pipeline += deal.amount
                target.weighted += weighted(deal.amount, pipeline.probability(deal.stage))
                if deal.overdue:
                    target.overdue_count += 1
                    target.overdue += deal.amount
    return [lines[owner] for owner in sorted(lines)], total


def money(value: object) -> Decimal:
    """A sum from the database (SQLite hands back floats) as exact cents."""
    return cents(Decimal(str(value)))


# ---- orders ---------------------------------------------------------------------------------


class OrderStatus(StrEnum):
    placed = "placed"
    paid = "paid"
    refunded = "refunded"


_ORDER_FLOW = [OrderStatus.placed, OrderStatus.paid, OrderStatus.refunded]


def next_order_status(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Placed, then paid, then refunded: one step at a time, never back."""
    if _ORDER_FLOW.index(target) != _ORDER_FLOW.index(current) + 1:
        raise InvalidTransition(f"an order that is {current.value} cannot become {target.value}")
    return target


def order_steps(current: OrderStatus, target: OrderStatus) -> list[OrderStatus]:
    """The steps from ``current`` up to ``target`` (none if it is there or beyond already):
    an accounting system may tell only the latest status, or tell it twice."""
    return _ORDER_FLOW[_ORDER_FLOW.index(current) + 1 : _ORDER_FLOW.index(target) + 1]


def order_amount(lines: Sequence[tuple[int, Decimal]], given: Decimal | None) -> Decimal:
    """The amount of an order of ``lines`` (quantity, unit price): their total, which an amount
    ``given`` as well must equal to the cent (an order of 2 × 5.00 told as 11.00 was taken,
    and revenue, RFM and CLV counted what the lines did not add up to). An order without
    lines is its amount given. The total is exact: at most 1,000 lines of 1,000,000 × at most
    999999999999.99 fit Decimal's 28 digits."""
    if not lines:
        if given is None:
            raise InvalidInput("an order needs an amount or lines", field="amount")
        return given
    total = sum((unit_price * quantity for quantity, unit_price in lines), Decimal("0.00"))
    if given is None:
        if total > MAX_AMOUNT:  # as an amount given would be
            raise InvalidInput(f"the lines' total must be at most {MAX_AMOUNT}", field="lines")
        return total
    if given != total:
        raise InvalidInput(
            f"must equal the total of the lines, {total} (or be left out to take that total);"
            f" {given} was given",
            field="amount",
        )
    return given
