"""The events sales emits: domain events on crm.sales.v1 (keyed by the customer id, or by the
lead id while a lead is no customer yet) and customer touches on crm.interactions.v1. No names,
e-mail addresses or phone numbers on either; no deal amounts on the interactions topic."""

import uuid

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales.models import Lead, Opportunity, Order
from shared import topics
from shared.contact_rules import redact_contact_details
from shared.contracts.sales import (
    LEAD_CONVERTED,
    LEAD_CREATED,
    LEAD_DISQUALIFIED,
    LEAD_QUALIFIED,
    OPPORTUNITY_OPENED,
    OPPORTUNITY_STAGE_CHANGED,
    OPPORTUNITY_UPDATED,
    ORDER_PAID,
    ORDER_PLACED,
    ORDER_REFUNDED,
    SOURCE,
    LeadConverted,
    LeadCreated,
    LeadDisqualified,
    LeadQualified,
    OpportunityOpened,
    OpportunityStageChanged,
    OpportunityUpdated,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
)
from shared.outbox import add_event


def _publish(session: AsyncSession, event_type: str, key: uuid.UUID, data: BaseModel) -> None:
    add_event(
        session,
        topic=topics.SALES,
        key=str(key),
        event_type=event_type,
        source=SOURCE,
        subject=str(key),
        data=data,
    )


def _without_contact_details(reason: str | None) -> str | None:
    """A rep's free text, as it may go on the bus: it may name the person's address or number,
    which stay in sales (the record keeps the text as written)."""
    return None if reason is None else redact_contact_details(reason)


def _lead_key(lead: Lead) -> uuid.UUID:
    return lead.customer_id or lead.id


def lead_created(session: AsyncSession, lead: Lead) -> None:
    data = LeadCreated(
        lead_id=lead.id,
        source=lead.source,
        campaign_id=lead.campaign_id,
        owner=lead.owner,
        territory=lead.territory,
        score=lead.score,
        created_at=lead.created_at,
    )
    _publish(session, LEAD_CREATED, _lead_key(lead), data)


def lead_qualified(session: AsyncSession, lead: Lead) -> None:
    assert lead.qualified_at is not None
    data = LeadQualified(lead_id=lead.id, score=lead.score, qualified_at=lead.qualified_at)
    _publish(session, LEAD_QUALIFIED, _lead_key(lead), data)


def lead_disqualified(session: AsyncSession, lead: Lead) -> None:
    data = LeadDisqualified(
        lead_id=lead.id,
        reason=_without_contact_details(lead.disqualify_reason) or "",
        disqualified_at=lead.updated_at,
    )
    _publish(session, LEAD_DISQUALIFIED, _lead_key(lead), data)


def lead_converted(session: AsyncSession, lead: Lead) -> None:
    assert lead.customer_id is not None and lead.converted_at is not None
    data = LeadConverted(
        lead_id=lead.id,
        customer_id=lead.customer_id,
        opportunity_id=lead.opportunity_id,
        source=lead.source,
        campaign_id=lead.campaign_id,
        converted_at=lead.converted_at,
    )
    _publish(session, LEAD_CONVERTED, lead.customer_id, data)


def opportunity_opened(session: AsyncSession, opp: Opportunity) -> None:
    data = OpportunityOpened(
        opportunity_id=opp.id,
        customer_id=opp.customer_id,
        owner=opp.owner,
        stage=opp.stage,
        probability=float(opp.probability),
        amount=opp.amount,
        currency=opp.currency,
        expected_close=opp.expected_close,
        lead_id=opp.lead_id,
        campaign_id=opp.campaign_id,
        opened_at=opp.opened_at,
    )
    _publish(session, OPPORTUNITY_OPENED, opp.customer_id, data)


def stage_changed(session: AsyncSession, opp: Opportunity, from_stage: str) -> None:
    data = OpportunityStageChanged(
        opportunity_id=opp.id,
        customer_id=opp.customer_id,
        owner=opp.owner,
        from_stage=from_stage,
        stage=opp.stage,
        probability=float(opp.probability),
        amount=opp.amount,
        currency=opp.currency,
        expected_close=opp.expected_close,
        reason=_without_contact_details(opp.close_reason),
        opened_at=opp.opened_at,
        changed_at=opp.updated_at,
    )
    _publish(session, OPPORTUNITY_STAGE_CHANGED, opp.customer_id, data)


def opportunity_updated(session: AsyncSession, opp: Opportunity) -> None:
    data = OpportunityUpdated(
        opportunity_id=opp.id,
        customer_id=opp.customer_id,
        owner=opp.owner,
        stage=opp.stage,
        probability=float(opp.probability),
        amount=opp.amount,
        currency=opp.currency,
        expected_close=opp.expected_close,
        opened_at=opp.opened_at,
        updated_at=opp.updated_at,
    )
    _publish(session, OPPORTUNITY_UPDATED, opp.customer_id, data)


def order_placed(session: AsyncSession, order: Order) -> None:
    data = OrderPlaced(
        order_id=order.id,
        customer_id=order.customer_id,
        amount=order.amount,
        currency=order.currency,
        status=order.status,
        campaign_id=order.campaign_id,
        external_id=order.external_id,
        ordered_at=order.ordered_at,
    )
    _publish(session, ORDER_PLACED, order.customer_id, data)


def order_paid(session: AsyncSession, order: Order) -> None:
    assert order.paid_at is not None
    data = OrderPaid(
        order_id=order.id,
        customer_id=order.customer_id,
        amount=order.amount,
        currency=order.currency,
        paid_at=order.paid_at,
    )
    _publish(session, ORDER_PAID, order.customer_id, data)


def order_refunded(session: AsyncSession, order: Order) -> None:
    assert order.refunded_at is not None
    data = OrderRefunded(
        order_id=order.id,
        customer_id=order.customer_id,
        amount=order.amount,
        currency=order.currency,
        refunded_at=order.refunded_at,
    )
    _publish(session, ORDER_REFUNDED, order.customer_id, data)
