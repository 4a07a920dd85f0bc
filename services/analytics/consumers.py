"""What analytics does with every topic: the shared customer view (timeline, contacts, merges,
erasures) plus its own fact tables from crm.support.v1, crm.sales.v1 and crm.marketing.v1."""

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import facts, rows, sales_facts
from services.analytics.models import Profile
from shared import customer_view, topics
from shared.consumer import Handler, Subscription
from shared.contracts import marketing, sales, support
from shared.events import Envelope, InteractionRecorded


def _handler(
    model: type[BaseModel], apply: Callable[[AsyncSession, Any], Awaitable[None]]
) -> Handler:
    async def handle(session: AsyncSession, event: Envelope) -> None:
        await apply(session, model.model_validate(event.data))

    return handle


SUPPORT_HANDLERS = {
    support.TICKET_OPENED: _handler(support.TicketOpened, facts.ticket_opened),
    support.TICKET_ASSIGNED: _handler(support.TicketAssigned, facts.ticket_assigned),
    support.TICKET_REASSIGNED: _handler(support.TicketReassigned, facts.ticket_assigned),
    support.TICKET_MESSAGE_ADDED: _handler(support.TicketMessageAdded, facts.message_added),
    support.TICKET_RESOLVED: _handler(support.TicketResolved, facts.ticket_resolved),
    support.TICKET_REOPENED: _handler(support.TicketReopened, facts.ticket_reopened),
    support.TICKET_CLOSED: _handler(support.TicketClosed, facts.ticket_closed),
    support.TICKET_SATISFACTION_RATED: _handler(
        support.TicketSatisfactionRated, facts.satisfaction_rated
    ),
    support.TICKET_SLA_BREACHED: _handler(support.TicketSlaBreached, facts.sla_breached),
    support.TICKET_CUSTOMER_IDENTIFIED: _handler(
        support.TicketCustomerIdentified, facts.ticket_customer_identified
    ),
}

SALES_HANDLERS = {
    sales.LEAD_CREATED: _handler(sales.LeadCreated, sales_facts.lead_created),
    sales.LEAD_QUALIFIED: _handler(sales.LeadQualified, sales_facts.lead_qualified),
    sales.LEAD_DISQUALIFIED: _handler(sales.LeadDisqualified, sales_facts.lead_disqualified),
    sales.LEAD_CONVERTED: _handler(sales.LeadConverted, sales_facts.lead_converted),
    sales.OPPORTUNITY_OPENED: _handler(sales.OpportunityOpened, sales_facts.opportunity_changed),
    sales.OPPORTUNITY_UPDATED: _handler(sales.OpportunityUpdated, sales_facts.opportunity_changed),
    sales.OPPORTUNITY_STAGE_CHANGED: _handler(
        sales.OpportunityStageChanged, sales_facts.opportunity_changed
    ),
    sales.ORDER_PLACED: _handler(sales.OrderPlaced, sales_facts.order_placed),
    sales.ORDER_PAID: _handler(sales.OrderPaid, sales_facts.order_paid),
    sales.ORDER_REFUNDED: _handler(sales.OrderRefunded, sales_facts.order_refunded),
}

MARKETING_HANDLERS = {
    marketing.CAMPAIGN_LAUNCHED: _handler(
        marketing.CampaignLaunched, sales_facts.campaign_launched
    ),
    marketing.MESSAGE_SENT: _handler(marketing.MessageSent, sales_facts.message_sent),
    marketing.MESSAGE_FAILED: _handler(marketing.MessageFailed, sales_facts.message_failed),
    marketing.MESSAGE_SUPPRESSED: _handler(
        marketing.MessageSuppressed, sales_facts.message_suppressed
    ),
    marketing.ENGAGEMENT_RECORDED: _handler(
        marketing.EngagementRecorded, sales_facts.engagement_recorded
    ),
}


async def touches_seen(
    session: AsyncSession,
    touches: list[tuple[InteractionRecorded, customer_view.TouchOutcome]],
) -> None:
    """Usage counts and rescoring for the touches the timeline recorded; an erased customer's
    touch still counts (anonymously); a replayed one is neither counted nor rescored twice."""
    await facts.touches_recorded(
        session,
        [touch for touch, outcome in touches if outcome != customer_view.TouchOutcome.duplicate],
    )


def _subscriptions() -> list[Subscription]:
    return [
        *customer_view.subscriptions(
            on_contact=facts.contact_changed,
            on_merged=facts.contact_merged,
            on_erased=facts.contact_erased,
            on_touches=touches_seen,
            contact_rows=[Profile],
        ),
        Subscription(
            name="support",
            topics=(topics.SUPPORT,),
            handlers=SUPPORT_HANDLERS,
            prefetch=rows.prefetch_support,
            finish=rows.write,
        ),
        Subscription(
            name="sales",
            topics=(topics.SALES,),
            handlers=SALES_HANDLERS,
            prefetch=rows.prefetch_sales,
            finish=rows.write,
        ),
        Subscription(
            name="marketing",
            topics=(topics.MARKETING,),
            handlers=MARKETING_HANDLERS,
            prefetch=rows.prefetch_marketing,
            finish=rows.write,
        ),
    ]


SUBSCRIPTIONS = _subscriptions()

# Every event type analytics applies and its handler (tests and the rebuild use this).
HANDLERS: dict[str, Handler] = {t: h for s in SUBSCRIPTIONS for t, h in s.handlers.items()}
