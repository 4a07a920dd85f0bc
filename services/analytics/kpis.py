"""The KPIs, as aggregate queries over the fact tables. A period is whole UTC days, both ends
inclusive: ``[from 00:00, to + 1 day 00:00)``."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import rules
from services.analytics.models import (
    CampaignFact,
    LeadFact,
    OpportunityFact,
    OrderFact,
    SendFact,
    SlaBreachFact,
    SuppressionFact,
    TicketFact,
    TouchDaily,
)
from shared.errors import InvalidInput
from shared.events import utcnow


@dataclass(frozen=True)
class Period:
    first: date
    last: date

    @classmethod
    def of(cls, first: date, last: date) -> "Period":
        if first > last:
            raise InvalidInput(f"must not be after to ({last})", field="from")
        if (last - first).days >= rules.MAX_PERIOD_DAYS:
            raise InvalidInput(f"a period spans at most {rules.MAX_PERIOD_DAYS} days", field="to")
        return cls(first, last)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)

    def holds(self, column: Any) -> Any:
        return and_(column >= self.start, column < self.end)


def _avg(value: Any) -> float | None:
    return round(float(value), 2) if value is not None else None


# ---- support --------------------------------------------------------------------------------


def _resolving_agents() -> Any:
    """Every agent who ever resolved a ticket, found by one index seek per agent (a "loose
    index scan": each step is the next agent id after the previous one)."""
    after = select(TicketFact.resolved_by).order_by(TicketFact.resolved_by).limit(1)
    first = after.where(TicketFact.resolved_by.is_not(None)).scalar_subquery()
    agents = select(first.label("agent")).cte("agents", recursive=True)
    following = after.where(TicketFact.resolved_by > agents.c.agent).scalar_subquery()
    agents = agents.union_all(select(following).where(agents.c.agent.is_not(None)))
    return select(agents.c.agent).where(agents.c.agent.is_not(None))


_RESOLVING_AGENTS = _resolving_agents()
# One agent's resolutions in a period (built once: one runs per agent).
_RESOLUTION_TOTALS = select(
    func.count(),
    func.sum(TicketFact.resolution_seconds),
    # Tickets whose opening is unknown have no resolution time: not averaged as 0 s.
    func.count(TicketFact.resolution_seconds),
    func.sum(TicketFact.messages),
    func.sum(TicketFact.csat),
    func.count(TicketFact.csat),
).where(TicketFact.resolved_at >= bindparam("start"), TicketFact.resolved_at < bindparam("end"))
_AGENT_TOTALS = _RESOLUTION_TOTALS.where(TicketFact.resolved_by == bindparam("agent"))
_UNCREDITED_TOTALS = _RESOLUTION_TOTALS.where(TicketFact.resolved_by.is_(None))


async def support(session: AsyncSession, period: Period) -> dict[str, Any]:
    opened = and_(TicketFact.opened_day >= period.first, TicketFact.opened_day <= period.last)
    # One pass over the openings (per day: count and first-response sums) and one over the
    # resolutions (per agent): every total is summed here from those few rows.
    per_day: dict[date, int] = {}
    per_weekday: dict[int, int] = defaultdict(int)
    per_month: dict[str, int] = defaultdict(int)
    response_sum, responded = 0.0, 0
    for day, count, seconds, answered in await session.execute(
        select(
            TicketFact.opened_day,
            func.count(),
            func.sum(TicketFact.first_response_seconds),
            func.count(TicketFact.first_response_seconds),
        )
        .where(opened)
        .group_by(TicketFact.opened_day)
    ):
        per_day[day] = count
        per_weekday[day.weekday()] += count
        per_month[rules.month_of(day)] += count
        response_sum += seconds or 0.0
        responded += answered
    tickets_opened = sum(per_day.values())
    agents = []
    tickets_resolved, resolution_sum, timed, messages = 0, 0.0, 0, 0
    # One aggregate per agent, each a range of the (agent, resolution time) index: a single
    # GROUP BY agent would sort every ticket resolved in the period (2-3x slower on SQLite).
    bounds = {"start": period.start, "end": period.end}
    for agent in [*await session.scalars(_RESOLVING_AGENTS), None]:
        if agent is None:
            totals = await session.execute(_UNCREDITED_TOTALS, bounds)
        else:
            totals = await session.execute(_AGENT_TOTALS, {**bounds, "agent": agent})
        closed, seconds, durations, exchanged, csat_sum, rated = totals.one()
        if not closed:
            continue
        agents.append((agent, closed, csat_sum / rated if rated else None))
        tickets_resolved += closed
        resolution_sum += seconds or 0.0
        timed += durations
        messages += exchanged or 0
    avg_csat, ratings = (
        await session.execute(
            select(func.avg(TicketFact.csat), func.count()).where(period.holds(TicketFact.csat_at))
        )
    ).one()
    breaches = await session.scalar(
        select(func.count()).where(period.holds(SlaBreachFact.detected_at))
    )
    return {
        "from": period.first,
        "to": period.last,
        "tickets_opened": tickets_opened,
        "requests_per_day": [
            {"date": day, "count": per_day.get(day, 0)}
            for day in rules.days(period.first, period.last)
        ],
        "requests_per_weekday": [
            {"weekday": name, "count": per_weekday.get(n, 0)}
            for n, name in enumerate(rules.WEEKDAYS)
        ],
        "requests_per_month": [
            {"month": month, "count": per_month.get(month, 0)}
            for month in rules.months(period.first, period.last)
        ],
        "tickets_resolved": tickets_resolved,
        "closed_per_agent": sorted(
            (
                {"agent_id": agent, "closed": closed, "avg_csat": _avg(csat)}
                for agent, closed, csat in agents
            ),
            key=lambda row: (-row["closed"], str(row["agent_id"])),
        ),
        "avg_first_response_seconds": _avg(response_sum / responded if responded else None),
        "avg_resolution_seconds": _avg(resolution_sum / timed if timed else None),
        "avg_exchanges_per_ticket": _avg(messages / tickets_resolved if tickets_resolved else None),
        "avg_csat": _avg(avg_csat),
        "ratings": ratings,
        "sla_breaches": breaches,
    }


# ---- sales ----------------------------------------------------------------------------------


async def sales(session: AsyncSession, period: Period) -> dict[str, Any]:
    created = period.holds(LeadFact.created_at)
    by_source = (
        await session.execute(
            select(LeadFact.source, func.count()).where(created).group_by(LeadFact.source)
        )
    ).all()
    leads, converted = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((LeadFact.status == "converted", 1), else_=0)), 0),
            ).where(created)
        )
    ).one()
    closed = period.holds(OpportunityFact.closed_at)
    won, lost, cycle = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((OpportunityFact.stage == "won", 1), else_=0)), 0),
                func.coalesce(func.sum(case((OpportunityFact.stage == "lost", 1), else_=0)), 0),
                func.avg(case((OpportunityFact.stage == "won", OpportunityFact.cycle_days))),
            ).where(closed)
        )
    ).one()
    is_open = OpportunityFact.closed_at.is_(None)
    pipeline = (
        await session.execute(
            select(
                OpportunityFact.stage,
                OpportunityFact.currency,
                func.count(),
                func.sum(OpportunityFact.amount),
                func.sum(OpportunityFact.weighted),
            )
            .where(is_open)
            .group_by(OpportunityFact.stage, OpportunityFact.currency)
            .order_by(OpportunityFact.stage, OpportunityFact.currency)
        )
    ).all()
    forecast: list[Any] = []
    closes = rules.forecast_closes(period.first, period.last, utcnow().date())
    if closes is not None:
        earliest, latest = closes
        closing = and_(is_open, OpportunityFact.expected_close <= latest)
        if earliest is not None:
            closing = and_(closing, OpportunityFact.expected_close >= earliest)
        forecast = (
            await session.execute(
                select(OpportunityFact.currency, func.sum(OpportunityFact.weighted))
                .where(closing)
                .group_by(OpportunityFact.currency)
                .order_by(OpportunityFact.currency)
            )
        ).all()
    revenue = (
        await session.execute(
            select(OrderFact.ordered_month, OrderFact.currency, func.sum(OrderFact.amount))
            .where(period.holds(OrderFact.ordered_at), OrderFact.status != "refunded")
            .group_by(OrderFact.ordered_month, OrderFact.currency)
            .order_by(OrderFact.ordered_month, OrderFact.currency)
        )
    ).all()
    return {
        "from": period.first,
        "to": period.last,
        "leads": leads,
        "leads_by_source": [
            {"source": source, "count": count}
            for source, count in sorted(by_source, key=lambda r: (-r[1], str(r[0])))
        ],
        "lead_conversion_rate": rules.ratio(converted, leads),
        "opportunities_won": won,
        "opportunities_lost": lost,
        "win_rate": rules.ratio(won, won + lost),
        "pipeline_per_stage": [
            {
                "stage": stage,
                "currency": currency,
                "count": count,
                "value": _money(value),
                "weighted_value": _money(weighted),
            }
            for stage, currency, count, value, weighted in pipeline
        ],
        "weighted_forecast": [
            {"currency": currency, "value": _money(value)} for currency, value in forecast
        ],
        "avg_sales_cycle_days": _avg(cycle),
        "revenue_per_month": [
            {"month": month, "currency": currency, "revenue": _money(value)}
            for month, currency, value in revenue
        ],
    }


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(rules.CENT)


# ---- marketing ------------------------------------------------------------------------------


async def marketing(session: AsyncSession, period: Period) -> dict[str, Any]:
    sent_in = and_(SendFact.status == "sent", period.holds(SendFact.sent_at))
    sends = {
        row[0]: row[1:]
        for row in (
            await session.execute(
                select(
                    SendFact.campaign_id,
                    func.count(),
                    func.count(SendFact.opened_at),
                    func.count(SendFact.clicked_at),
                    func.count(SendFact.unsubscribed_at),
                    func.sum(SendFact.cost),
                )
                .where(sent_in)
                .group_by(SendFact.campaign_id)
            )
        ).all()
    }
    suppressed: dict[Any, dict[str, int]] = defaultdict(dict)
    for campaign_id, reason, count in (
        await session.execute(
            select(SuppressionFact.campaign_id, SuppressionFact.reason, func.count())
            .where(period.holds(SuppressionFact.suppressed_at))
            .group_by(SuppressionFact.campaign_id, SuppressionFact.reason)
        )
    ).all():
        suppressed[campaign_id][reason] = count
    leads = dict(
        (
            await session.execute(
                select(LeadFact.campaign_id, func.count())
                .where(LeadFact.campaign_id.is_not(None), period.holds(LeadFact.created_at))
                .group_by(LeadFact.campaign_id)
            )
        ).all()
    )
    revenue: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for campaign_id, currency, amount in (
        await session.execute(
            select(OrderFact.campaign_id, OrderFact.currency, func.sum(OrderFact.amount))
            .where(
                OrderFact.campaign_id.is_not(None),
                OrderFact.status != "refunded",
                period.holds(OrderFact.ordered_at),
            )
            .group_by(OrderFact.campaign_id, OrderFact.currency)
            .order_by(OrderFact.currency)
        )
    ).all():
        revenue[campaign_id].append({"currency": currency, "revenue": _money(amount)})
    ids = set(sends) | set(suppressed) | set(leads) | set(revenue)
    campaigns = {
        c.campaign_id: c
        for c in await session.scalars(
            select(CampaignFact).where(CampaignFact.campaign_id.in_(ids))
        )
    }
    items = []
    for campaign_id in ids:
        sent, opened, clicked, unsubscribed, cost = sends.get(campaign_id, (0, 0, 0, 0, None))
        campaign = campaigns.get(campaign_id)
        cost = _money(cost)
        lead_count = leads.get(campaign_id, 0)
        items.append(
            {
                "campaign_id": campaign_id,
                "name": campaign.name if campaign else None,
                "channel": campaign.channel if campaign else None,
                "sent": sent,
                "suppressed": sum(suppressed[campaign_id].values()),
                "suppressed_by_reason": dict(sorted(suppressed[campaign_id].items())),
                "open_rate": rules.ratio(opened, sent),
                "click_rate": rules.ratio(clicked, sent),
                "unsubscribe_rate": rules.ratio(unsubscribed, sent),
                "cost": cost,
                "leads": lead_count,
                "revenue": revenue.get(campaign_id, []),
                "cost_per_lead": (cost / lead_count).quantize(rules.CENT) if lead_count else None,
            }
        )
    items.sort(key=lambda item: (-item["sent"], item["name"] or "", str(item["campaign_id"])))
    return {"from": period.first, "to": period.last, "campaigns": items}


# ---- usage ----------------------------------------------------------------------------------


async def usage(session: AsyncSession, period: Period) -> dict[str, Any]:
    in_period = and_(TouchDaily.day >= period.first, TouchDaily.day <= period.last)
    per_department = (
        await session.execute(
            select(TouchDaily.day, TouchDaily.department, func.sum(TouchDaily.touches))
            .where(in_period)
            .group_by(TouchDaily.day, TouchDaily.department)
            .order_by(TouchDaily.day, TouchDaily.department)
        )
    ).all()
    per_agent = (
        await session.execute(
            select(
                TouchDaily.day,
                TouchDaily.department,
                TouchDaily.actor,
                func.sum(TouchDaily.touches),
            )
            .where(in_period, TouchDaily.actor != "")
            .group_by(TouchDaily.day, TouchDaily.department, TouchDaily.actor)
            .order_by(TouchDaily.day, TouchDaily.department, TouchDaily.actor)
        )
    ).all()
    return {
        "from": period.first,
        "to": period.last,
        "per_department": [
            {"date": day, "department": department, "touches": int(touches)}
            for day, department, touches in per_department
        ],
        "per_agent": [
            {"date": day, "department": department, "actor": actor, "touches": int(touches)}
            for day, department, actor, touches in per_agent
        ],
    }
