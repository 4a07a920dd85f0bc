"""Opportunity use cases: deals through the pipeline, the pipeline's figures and the forecast.
They take the caller's session and never commit: the caller does."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import events, rules, territories
from services.sales.models import Opportunity
from services.sales.rules import Pipeline
from services.sales.schemas import (
    ForecastFigures,
    ForecastRead,
    OpportunityCreate,
    OpportunityDraft,
    OpportunityUpdate,
    StageChange,
    StageFigures,
)
from shared import customer_view
from shared.db import get_or_404, made_before
from shared.errors import Conflict, InvalidInput, InvalidTransition
from shared.events import utcnow
from shared.pagination import cut_page, page_after


def check_open_stage(pipeline: Pipeline, stage: str | None, field: str) -> str:
    if stage is None:
        return pipeline.first
    pipeline.check_stage(stage, field)
    if stage in rules.CLOSED:
        raise InvalidInput("a new opportunity starts in an open stage", field=field)
    return stage


async def open_opportunity(
    session: AsyncSession,
    draft: OpportunityDraft,
    pipeline: Pipeline,
    *,
    customer_id: uuid.UUID,
    owner: str,
    lead_id: uuid.UUID | None = None,
    campaign_id: uuid.UUID | None = None,
    opportunity_id: uuid.UUID | None = None,
) -> Opportunity:
    stage = check_open_stage(pipeline, draft.stage, "stage")
    now = utcnow()
    opportunity = Opportunity(
        id=opportunity_id or uuid.uuid4(),
        customer_id=customer_id,
        title=draft.title,
        amount=draft.amount,
        currency=draft.currency,
        expected_close=draft.expected_close,
        owner=owner,
        stage=stage,
        probability=pipeline.probability(stage),
        lead_id=lead_id,
        campaign_id=campaign_id,
        opened_at=now,
        updated_at=now,
    )
    session.add(opportunity)
    await session.flush()
    events.opportunity_opened(session, opportunity)
    return opportunity


async def create_opportunity(
    session: AsyncSession, data: OpportunityCreate, pipeline: Pipeline
) -> Opportunity:
    """The opportunity opened and published; sent again with its ``opportunity_id``, the one
    first opened (the id of another customer's opportunity is a 409)."""
    customer_id = await customer_view.current_customer(session, data.customer_id)
    earlier = await made_before(
        session,
        Opportunity,
        data.opportunity_id,
        name="opportunity",
        field="opportunity_id",
        same=lambda opportunity: opportunity.customer_id == customer_id,
    )
    if earlier is not None:
        return earlier
    owner = data.owner
    if owner is None:
        account = await territories.account(session, customer_id)
        if account is None or account.owner is None:
            raise InvalidInput("the customer's account has no owner: name one", field="owner")
        owner = account.owner
    return await open_opportunity(
        session,
        data,
        pipeline,
        customer_id=customer_id,
        owner=owner,
        campaign_id=data.campaign_id,
        opportunity_id=data.opportunity_id,
    )


async def get_opportunity(
    session: AsyncSession, opportunity_id: uuid.UUID, *, lock: bool = False
) -> Opportunity:
    return await get_or_404(session, Opportunity, opportunity_id, "opportunity", lock=lock)


async def list_opportunities(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID | None,
    owner: str | None,
    stages: Sequence[str] | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Opportunity], str | None]:
    query = (
        select(Opportunity)
        .order_by(Opportunity.opened_at.desc(), Opportunity.id.desc())
        .limit(limit + 1)
    )
    if customer_id is not None:
        current = await customer_view.survivor(session, customer_id)
        if current is None:
            return [], None
        query = query.where(Opportunity.customer_id == current)
    if owner is not None:
        query = query.where(Opportunity.owner == owner)
    if stages is not None:
        query = query.where(Opportunity.stage.in_(stages))
    query = page_after(query, Opportunity.opened_at, Opportunity.id, cursor)
    return cut_page(list(await session.scalars(query)), limit, "opened_at")


def erased_customer(customer_id: uuid.UUID, field: str) -> Conflict:
    """A rep's free text on an erased customer's record: it may name the person again."""
    return Conflict(
        f"customer {customer_id} was erased: its records take no {field} (free text may "
        "name the person)",
        field=field,
    )


async def _to_change(session: AsyncSession, opportunity_id: uuid.UUID) -> tuple[Opportunity, bool]:
    """The deal, locked to change it, and whether its customer was erased. The customer's
    lock is taken first, as a merge or erasure takes it before the deal's row, and holds off
    an erasure until this change is committed (the erasure then blanks it)."""
    opportunity = await get_opportunity(session, opportunity_id)
    erased = await customer_view.filed_under(session, opportunity.customer_id) is None
    return await get_opportunity(session, opportunity_id, lock=True), erased


async def update_opportunity(
    session: AsyncSession, opportunity_id: uuid.UUID, data: OpportunityUpdate
) -> Opportunity:
    opportunity, erased = await _to_change(session, opportunity_id)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None and field != "expected_close":
            raise InvalidInput(f"{field} cannot be null", field=field)
    if opportunity.stage in rules.CLOSED:
        raise InvalidTransition(f"the opportunity is already {opportunity.stage}")
    changes = {f: v for f, v in changes.items() if getattr(opportunity, f) != v}
    if erased and "title" in changes:
        raise erased_customer(opportunity.customer_id, "title")
    if not changes:
        return opportunity  # the same terms again: no change to tell
    for field, value in changes.items():
        setattr(opportunity, field, value)
    opportunity.updated_at = utcnow()
    await session.flush()
    events.opportunity_updated(session, opportunity)
    return opportunity


async def change_stage(
    session: AsyncSession, opportunity_id: uuid.UUID, data: StageChange, pipeline: Pipeline
) -> Opportunity:
    opportunity, erased = await _to_change(session, opportunity_id)
    previous = opportunity.stage
    # An erased customer's deal takes no reason, so it closes as lost without one: else it
    # could never close, and stayed in every forecast.
    stage = pipeline.move(previous, data.stage, data.reason, reason_needed=not erased)
    if erased and data.reason:
        raise erased_customer(opportunity.customer_id, "reason")
    opportunity.stage = stage
    opportunity.probability = pipeline.probability(opportunity.stage)
    opportunity.updated_at = utcnow()
    if opportunity.stage in rules.CLOSED:
        opportunity.closed_at = opportunity.updated_at
        opportunity.close_reason = data.reason
    await session.flush()
    events.stage_changed(session, opportunity, previous)
    return opportunity


# ---- pipeline and forecast ------------------------------------------------------------------


async def check_pipeline(session: AsyncSession, pipeline: Pipeline) -> None:
    """At start: the configured pipeline still has every stage an open deal is in."""
    query = (
        select(Opportunity.stage, func.count())
        .where(Opportunity.stage.not_in(rules.CLOSED))
        .group_by(Opportunity.stage)
    )
    in_use = {stage: count for stage, count in await session.execute(query)}
    rules.check_stages_in_use(pipeline, in_use)


async def pipeline_figures(
    session: AsyncSession, pipeline: Pipeline, *, currency: str, owner: str | None
) -> list[StageFigures]:
    query = (
        select(Opportunity.stage, func.count(), func.coalesce(func.sum(Opportunity.amount), 0))
        .where(Opportunity.currency == currency)
        .group_by(Opportunity.stage)
    )
    if owner is not None:
        query = query.where(Opportunity.owner == owner)
    found = {stage: (count, total) for stage, count, total in await session.execute(query)}
    # An open stage's weighted figure is the sum of each deal's, as in the forecast.
    deals = select(Opportunity.stage, Opportunity.amount).where(
        Opportunity.currency == currency, Opportunity.stage.in_(pipeline.open_stages)
    )
    if owner is not None:
        deals = deals.where(Opportunity.owner == owner)
    open_weighted = dict.fromkeys(pipeline.open_stages, Decimal("0.00"))
    for stage, amount in await session.execute(deals):
        open_weighted[stage] += rules.weighted(rules.money(amount), pipeline.probability(stage))
    figures = []
    for stage in pipeline.stages:
        count, total = found.get(stage, (0, 0))
        amount = rules.money(total)
        probability = pipeline.probability(stage)
        if stage in rules.CLOSED:
            weighted = rules.cents(amount * probability)  # won and lost deals are not forecast
        else:
            weighted = open_weighted[stage]
        figures.append(
            StageFigures(
                stage=stage,
                probability=probability,
                count=count,
                amount=amount,
                weighted=weighted,
            )
        )
    return figures


async def forecast(
    session: AsyncSession, pipeline: Pipeline, *, period: str, currency: str, owner: str | None
) -> ForecastRead:
    """Won in the period plus open deals expected to close in it (in the current period, also
    those whose expected close has passed), weighted by stage."""
    start, end = rules.period_bounds(period)
    start_at = datetime.combine(start, time(), UTC)
    end_at = datetime.combine(end + timedelta(days=1), time(), UTC)
    today = utcnow().date()
    counted = [
        and_(
            Opportunity.stage == rules.WON,
            Opportunity.closed_at >= start_at,
            Opportunity.closed_at < end_at,
        )
    ]
    expected = rules.open_deals_expected(start, end, today)
    if expected is not None:
        low, high = expected
        open_deals = and_(
            Opportunity.stage.in_(pipeline.open_stages), Opportunity.expected_close <= high
        )
        if low is not None:
            open_deals = and_(open_deals, Opportunity.expected_close >= low)
        counted.append(open_deals)
    query = select(
        Opportunity.owner, Opportunity.stage, Opportunity.amount, Opportunity.expected_close
    ).where(Opportunity.currency == currency, or_(*counted))
    if owner is not None:
        query = query.where(Opportunity.owner == owner)
    deals = [
        rules.Deal(
            owner,
            stage,
            rules.money(amount),
            overdue=stage in pipeline.open_stages and expected_close < today,
        )
        for owner, stage, amount, expected_close in await session.execute(query)
    ]
    lines, total = rules.forecast(deals, pipeline)

    def figures(line: rules.ForecastLine) -> ForecastFigures:
        return ForecastFigures(
            owner=line.owner,
            open_count=line.open_count,
            pipeline=line.pipeline,
            weighted=line.weighted,
            won=line.won,
            expected=line.expected,
            overdue_count=line.overdue_count,
            overdue=line.overdue,
        )

    return ForecastRead(
        period=period,
        start=start,
        end=end,
        currency=currency,
        owners=[figures(line) for line in lines],
        total=figures(total),
    )
