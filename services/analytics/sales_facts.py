"""Sales' and marketing's fact tables: leads, opportunities, orders, campaigns, sends and
suppressions, natural upserts keyed by the source record id (see ``facts``)."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import rows, rules, scoring
from services.analytics.models import (
    CampaignFact,
    LeadFact,
    OpportunityFact,
    OrderFact,
    SendFact,
    SuppressionFact,
)
from shared.contracts import marketing, sales

CLOSED_STAGES = ("won", "lost")
_SUPPRESSION_NS = uuid.UUID("6f1d3c1e-8a55-4c1e-9a55-2b7f0c6a1d10")


# ---- sales ----------------------------------------------------------------------------------


async def _lead(session: AsyncSession, lead_id: uuid.UUID) -> rows.Row:
    """The lead's row (a ``LeadFact``), added if new."""
    lead = await rows.get(session, LeadFact, lead_id)
    if lead is None:
        lead = rows.add(session, LeadFact, lead_id=lead_id, status="new")
    return lead


async def lead_created(session: AsyncSession, data: sales.LeadCreated) -> None:
    lead = await _lead(session, data.lead_id)
    lead.source = data.source
    lead.campaign_id = data.campaign_id
    lead.created_at = data.created_at


async def lead_qualified(session: AsyncSession, data: sales.LeadQualified) -> None:
    lead = await _lead(session, data.lead_id)
    if lead.status == "new":
        lead.status = "qualified"


async def lead_disqualified(session: AsyncSession, data: sales.LeadDisqualified) -> None:
    lead = await _lead(session, data.lead_id)
    if lead.status != "converted":
        lead.status = "disqualified"


async def lead_converted(session: AsyncSession, data: sales.LeadConverted) -> None:
    lead = await _lead(session, data.lead_id)
    lead.status = "converted"
    lead.customer_id = await rows.owner(session, data.customer_id)
    lead.converted_at = data.converted_at
    lead.source = lead.source or data.source
    lead.campaign_id = lead.campaign_id or data.campaign_id


async def opportunity_changed(
    session: AsyncSession,
    data: sales.OpportunityOpened | sales.OpportunityStageChanged | sales.OpportunityUpdated,
) -> None:
    """Every opportunity event carries the deal's whole state: the latest one applied wins;
    of one instant, the one that follows by what it says (``rules.follows_in_its_instant``)."""
    from_stage = None
    if isinstance(data, sales.OpportunityStageChanged):
        changed_at, from_stage = data.changed_at, data.from_stage
    elif isinstance(data, sales.OpportunityUpdated):
        changed_at = data.updated_at  # new terms (amount, close date, owner), same stage
    else:
        changed_at = data.opened_at
    customer = await rows.owner(session, data.customer_id)
    opportunity = await rows.get(session, OpportunityFact, data.opportunity_id)
    if opportunity is None:
        opportunity = rows.add(session, OpportunityFact, opportunity_id=data.opportunity_id)
    elif changed_at < opportunity.changed_at:
        return  # an older state than the one applied
    elif changed_at == opportunity.changed_at and not rules.follows_in_its_instant(
        opportunity.stage,
        data.stage,
        from_stage,
        opening=isinstance(data, sales.OpportunityOpened),
    ):
        return  # of the same instant, and not after the state applied
    opportunity.customer_id = customer
    opportunity.owner = data.owner
    opportunity.stage = data.stage
    opportunity.probability = data.probability
    opportunity.amount = data.amount
    opportunity.weighted = rules.weighted(data.amount, data.probability)
    opportunity.currency = data.currency
    opportunity.expected_close = data.expected_close
    opportunity.opened_at = data.opened_at
    opportunity.changed_at = changed_at
    if isinstance(data, sales.OpportunityOpened):
        opportunity.campaign_id = data.campaign_id
    closed = data.stage in CLOSED_STAGES
    opportunity.closed_at = changed_at if closed else None
    opportunity.cycle_days = (
        round((changed_at - data.opened_at).total_seconds() / 86400, 4) if closed else None
    )


async def _order(
    session: AsyncSession,
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    at: datetime,
) -> rows.Row:
    customer = await rows.owner(session, customer_id)
    order = await rows.get(session, OrderFact, order_id)
    if order is None:
        # Paid or refunded before the placement arrived: the placement fills in the rest.
        order = rows.add(
            session,
            OrderFact,
            order_id=order_id,
            amount=amount,
            currency=currency,
            status="placed",
            ordered_at=at,
            ordered_month=rules.month_of(at.astimezone(UTC).date()),
        )
    order.customer_id = customer
    scoring.mark(session, customer)
    return order


async def order_placed(session: AsyncSession, data: sales.OrderPlaced) -> None:
    order = await _order(
        session, data.order_id, data.customer_id, data.amount, data.currency, data.ordered_at
    )
    order.amount = data.amount
    order.currency = data.currency
    order.campaign_id = data.campaign_id
    order.ordered_at = data.ordered_at
    order.ordered_month = rules.month_of(data.ordered_at.astimezone(UTC).date())
    if data.status == "paid" and order.paid_at is None:
        order.paid_at = data.ordered_at
    if data.status == "refunded" and order.refunded_at is None:
        order.refunded_at = data.ordered_at
    order.status = _order_status(order)


async def order_paid(session: AsyncSession, data: sales.OrderPaid) -> None:
    order = await _order(
        session, data.order_id, data.customer_id, data.amount, data.currency, data.paid_at
    )
    order.paid_at = data.paid_at
    order.status = _order_status(order)


async def order_refunded(session: AsyncSession, data: sales.OrderRefunded) -> None:
    order = await _order(
        session, data.order_id, data.customer_id, data.amount, data.currency, data.refunded_at
    )
    order.refunded_at = data.refunded_at
    order.status = _order_status(order)


def _order_status(order: rows.Row) -> str:
    if order.refunded_at is not None:
        return "refunded"
    return "paid" if order.paid_at is not None else "placed"


# ---- marketing ------------------------------------------------------------------------------


async def campaign_launched(session: AsyncSession, data: marketing.CampaignLaunched) -> None:
    campaign = await rows.get(session, CampaignFact, data.campaign_id)
    if campaign is None:
        campaign = rows.add(session, CampaignFact, campaign_id=data.campaign_id)
    campaign.name = data.name
    campaign.channel = data.channel.value
    campaign.budget = data.budget
    campaign.cost_per_send = data.cost_per_send
    campaign.launched_at = data.launched_at


async def _send(
    session: AsyncSession,
    send_id: uuid.UUID,
    campaign_id: uuid.UUID,
    customer_id: uuid.UUID,
    channel: str,
) -> rows.Row:
    customer = await rows.owner(session, customer_id)
    send = await rows.get(session, SendFact, send_id)
    if send is None:
        send = rows.add(
            session,
            SendFact,
            send_id=send_id,
            campaign_id=campaign_id,
            channel=channel,
            cost=Decimal(0),
            status="unknown",
        )
    send.customer_id = customer
    return send


async def message_sent(session: AsyncSession, data: marketing.MessageSent) -> None:
    send = await _send(
        session, data.send_id, data.campaign_id, data.customer_id, data.channel.value
    )
    send.status = "sent"
    send.cost = data.cost
    send.sent_at = data.sent_at


async def message_failed(session: AsyncSession, data: marketing.MessageFailed) -> None:
    send = await _send(
        session, data.send_id, data.campaign_id, data.customer_id, data.channel.value
    )
    if send.status != "sent":
        send.status = "failed"


ENGAGEMENT_COLUMNS = {
    "opened": "opened_at",
    "clicked": "clicked_at",
    "replied": "replied_at",
    "unsubscribed": "unsubscribed_at",
}


async def engagement_recorded(session: AsyncSession, data: marketing.EngagementRecorded) -> None:
    column = ENGAGEMENT_COLUMNS.get(data.kind)
    send = await rows.get(session, SendFact, data.send_id)
    channel = send.channel if send is not None else "other"
    send = await _send(session, data.send_id, data.campaign_id, data.customer_id, channel)
    if column is None:
        return  # delivered: nothing the KPIs count
    first = getattr(send, column)
    if first is None or data.occurred_at < first:
        setattr(send, column, data.occurred_at)
    if data.kind == "clicked" and send.opened_at is None:
        send.opened_at = data.occurred_at  # a click implies the message was opened


async def message_suppressed(session: AsyncSession, data: marketing.MessageSuppressed) -> None:
    customer = await rows.owner(session, data.customer_id)
    for reason in data.reasons or ["unspecified"]:
        key = f"{data.campaign_id}/{data.customer_id}/{reason}"
        row_id = uuid.uuid5(_SUPPRESSION_NS, key)
        row = await rows.get(session, SuppressionFact, row_id)
        if row is None:
            rows.add(
                session,
                SuppressionFact,
                id=row_id,
                campaign_id=data.campaign_id,
                customer_id=customer,
                reason=reason[:64],
                suppressed_at=data.suppressed_at,
            )
