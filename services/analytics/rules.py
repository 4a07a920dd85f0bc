"""Analytics' domain rules: RFM segments, the lifetime-value estimate, the churn-risk score and
the calendar of the KPIs. Plain Python, no I/O: every figure here is unit-tested by hand."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from shared.values import DEFAULT_REPORTING_CURRENCY

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_PERIOD_DAYS = 3660  # ten years of days is the longest period a KPI request may span

# ---- calendar -------------------------------------------------------------------------------


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def days(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end``, both inclusive."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def months(start: date, end: date) -> list[str]:
    """Every month ``YYYY-MM`` from the month of ``start`` to the month of ``end``."""
    found: list[str] = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def ratio(part: float, whole: float) -> float | None:
    """``part / whole`` rounded to 4 places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


# ---- pipeline -------------------------------------------------------------------------------


def weighted(amount: Decimal, probability: float) -> Decimal:
    """A deal's amount x probability, rounded to the cent half up once, as sales weighs a deal
    (its pipeline and forecast are sums of these, and so are the KPIs). The bus carries the
    probability as a float: its shortest text is the decimal sales configured (0.5), while
    float arithmetic is not exact (2.15 x 0.5 gave 1.0749..., 1.07 where sales says 1.08)."""
    return (amount * Decimal(str(probability))).quantize(CENT, rounding=ROUND_HALF_UP)


def follows_in_its_instant(
    applied_stage: str, stage: str, from_stage: str | None, *, opening: bool
) -> bool:
    """Whether a deal's event of the same instant as the state applied (a clock that coarse,
    or the applied event itself again) is the later one, told by what the events say, so
    the order they arrive in does not decide. An opening is every deal's first event: never.
    A stage change (``from_stage``) when it moves on from the applied stage. New terms
    (``from_stage`` None) when they are of the applied stage; of two such, the one applied
    last stays (events carry no sequence to tell them apart)."""
    if opening:
        return False
    if from_stage is not None:
        return from_stage == applied_stage != stage
    return stage == applied_stage


def forecast_closes(first: date, last: date, today: date) -> tuple[date | None, date] | None:
    """Which open deals the weighted forecast of ``first``-``last`` counts, as the range of
    their expected close (None: no lower end), or None for none; as sales' forecast counts
    them. An open deal is forecast in the period of its expected close or, once that day has
    passed, in the one holding today: it slipped, it did not go away. A period that has ended
    has no open deal in it: nothing open can still close then."""
    if last < today:
        return None
    if first <= today:
        return None, last
    return first, last


# ---- RFM ------------------------------------------------------------------------------------

# Absolute thresholds, so one customer's segment never depends on other customers' orders
# (a per-customer recomputation stays correct without rescoring everyone).
RECENCY_DAYS = (30, 90, 180, 365)  # at most this many days since the last order: 5, 4, 3, 2
FREQUENCY_ORDERS = (2, 3, 5, 10)  # at least this many orders: 2, 3, 4, 5
MONETARY_AMOUNTS = (Decimal(100), Decimal(500), Decimal(1000), Decimal(5000))  # at least: 2..5


def recency_score(recency_days: int) -> int:
    for score, limit in zip((5, 4, 3, 2), RECENCY_DAYS, strict=True):
        if recency_days <= limit:
            return score
    return 1


def frequency_score(frequency: int) -> int:
    return 1 + sum(frequency >= limit for limit in FREQUENCY_ORDERS)


def monetary_score(monetary: Decimal) -> int:
    return 1 + sum(monetary >= limit for limit in MONETARY_AMOUNTS)


def rfm_segment(r: int, f: int, m: int) -> str:
    """The classic segments from the R, F and M scores (1..5 each)."""
    if r >= 4 and f >= 4:
        return "champions"
    if r >= 4 and f == 1:
        return "new"
    if r >= 4:
        return "potential_loyalist"
    if r == 3 and f >= 3:
        return "loyal"
    if r == 3:
        return "needs_attention"
    if f >= 3 or m >= 4:
        return "at_risk"
    return "hibernating"


SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "needs_attention",
    "at_risk",
    "hibernating",
)


# ---- churn risk and CLV ---------------------------------------------------------------------

RECENCY_HORIZON_DAYS = 180  # no customer activity for this long counts as fully lapsed
SENTIMENT_WINDOW = timedelta(days=90)
ENGAGEMENT_WINDOW = timedelta(days=30)  # recent window; compared with the 3 windows before it
CLV_HORIZON_YEARS = Decimal(2)
WEIGHTS = {
    "days_since_last_activity": 0.35,
    "negative_sentiment": 0.20,
    "open_tickets": 0.15,
    "breached_tickets": 0.15,
    "falling_engagement": 0.15,
}
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Order:
    ordered_at: datetime
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class ScoreInputs:
    """What a customer's scores are computed from, as of ``now``."""

    now: datetime
    orders: list[Order] = field(default_factory=list)  # refunded orders excluded
    currency: str = DEFAULT_REPORTING_CURRENCY  # the one monetary figures are in
    last_activity_at: datetime | None = None  # latest inbound touch or order
    sentiments: int = 0  # touches with a sentiment in the sentiment window
    negative: int = 0  # of those, negative ones
    open_tickets: int = 0
    breached_tickets: int = 0  # open tickets with a breached SLA target
    inbound_recent: int = 0  # inbound touches in the last engagement window
    inbound_before: int = 0  # inbound touches in the three windows before it


@dataclass(frozen=True)
class Factor:
    name: str
    value: float  # 0..1, how strongly the factor is present
    weight: float


@dataclass(frozen=True)
class Scores:
    rfm_segment: str | None
    recency_days: int | None
    frequency: int
    currency: str  # of monetary and clv
    monetary: Decimal
    monetary_other_currencies: dict[str, Decimal]  # the other currencies' orders, per currency
    clv: Decimal
    churn_risk: float
    churn_level: str
    factors: list[Factor]


def churn_factors(inputs: ScoreInputs) -> list[Factor]:
    """Each factor normalised to 0..1; the risk is their weighted sum."""
    if inputs.last_activity_at is None:
        lapsed = 1.0  # never active: nothing ties the customer to us yet
    else:
        idle_days = max(0, (inputs.now - inputs.last_activity_at).days)
        lapsed = min(idle_days / RECENCY_HORIZON_DAYS, 1.0)
    negative = inputs.negative / inputs.sentiments if inputs.sentiments else 0.0
    open_tickets = min(inputs.open_tickets / 2, 1.0)
    breached = min(float(inputs.breached_tickets), 1.0)
    before_per_window = inputs.inbound_before / 3
    falling = max(0.0, 1 - inputs.inbound_recent / before_per_window) if before_per_window else 0.0
    values = {
        "days_since_last_activity": lapsed,
        "negative_sentiment": negative,
        "open_tickets": open_tickets,
        "breached_tickets": breached,
        "falling_engagement": falling,
    }
    return [Factor(name, round(values[name], 4), weight) for name, weight in WEIGHTS.items()]


def churn_level(risk: float) -> str:
    if risk >= 0.6:
        return "high"
    if risk >= 0.3:
        return "medium"
    return "low"


def clv(orders: list[Order], now: datetime, churn_risk: float) -> Decimal:
    """What the customer has spent plus what they are expected to spend over the horizon:
    average order value x orders per year (over at least one year of tenure) x horizon,
    discounted by the churn risk."""
    if not orders:
        return Decimal(0).quantize(CENT)
    spent = sum((o.amount for o in orders), Decimal(0))
    average = spent / len(orders)
    first = min(o.ordered_at for o in orders)
    tenure_years = max(Decimal((now - first).days) / Decimal(365), Decimal(1))
    per_year = Decimal(len(orders)) / tenure_years
    future = average * per_year * CLV_HORIZON_YEARS * (1 - Decimal(str(churn_risk)))
    return (spent + future).quantize(CENT, rounding=ROUND_HALF_UP)


def score(inputs: ScoreInputs) -> Scores:
    """Every order counts in recency and frequency (a purchase is one whatever its currency);
    monetary and CLV only count the orders in the reporting currency, the others' amounts are
    summed per currency beside them."""
    factors = churn_factors(inputs)
    risk = round(min(1.0, sum(f.value * f.weight for f in factors)), 4)
    orders = inputs.orders
    spent: dict[str, Decimal] = {}
    for o in orders:
        spent[o.currency] = spent.get(o.currency, Decimal(0)) + o.amount
    monetary = spent.pop(inputs.currency, Decimal(0)).quantize(CENT)
    segment = None
    recency_days = None
    if orders:
        recency_days = max(0, (inputs.now - max(o.ordered_at for o in orders)).days)
        segment = rfm_segment(
            recency_score(recency_days), frequency_score(len(orders)), monetary_score(monetary)
        )
    return Scores(
        rfm_segment=segment,
        recency_days=recency_days,
        frequency=len(orders),
        currency=inputs.currency,
        monetary=monetary,
        monetary_other_currencies={c: spent[c].quantize(CENT) for c in sorted(spent)},
        clv=clv([o for o in orders if o.currency == inputs.currency], inputs.now, risk),
        churn_risk=risk,
        churn_level=churn_level(risk),
        factors=factors,
    )
