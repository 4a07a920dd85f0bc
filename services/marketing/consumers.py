"""What marketing does with other services' events: the customer view (timeline, preferences,
policy) with marketing's recipients kept by its hooks, and the projections of support's
tickets, sales' orders and leads, and analytics' scores."""

from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing import projections
from services.marketing.models import TicketState
from shared import customer_view, topics
from shared.consumer import Handler, Subscription
from shared.contracts import analytics, sales, support
from shared.db import load_rows
from shared.events import Envelope


async def ticket_opened(session: AsyncSession, event: Envelope) -> None:
    opened = support.TicketOpened.model_validate(event.data)
    await projections.ticket_changed(
        session,
        opened.ticket_id,
        opened.customer_id,
        status="open",
        priority=opened.priority,
        at=opened.opened_at,
    )


def _ticket_status(model: type[support.TicketEvent], status: str, at: str) -> Handler:
    async def handle(session: AsyncSession, event: Envelope) -> None:
        ticket = model.model_validate(event.data)
        await projections.ticket_changed(
            session, ticket.ticket_id, ticket.customer_id, status=status, at=getattr(ticket, at)
        )

    return handle


async def ticket_customer_identified(session: AsyncSession, event: Envelope) -> None:
    identified = support.TicketCustomerIdentified.model_validate(event.data)
    await projections.ticket_customer_identified(
        session, identified.ticket_id, identified.customer_id, identified.previous_customer_id
    )


async def ticket_sla_breached(session: AsyncSession, event: Envelope) -> None:
    breach = support.TicketSlaBreached.model_validate(event.data)
    await projections.ticket_changed(
        session,
        breach.ticket_id,
        breach.customer_id,
        priority=breach.priority,
        at=breach.detected_at,
    )


async def order_placed(session: AsyncSession, event: Envelope) -> None:
    await projections.order_placed(session, sales.OrderPlaced.model_validate(event.data))


async def order_paid(session: AsyncSession, event: Envelope) -> None:
    await projections.order_status(
        session, sales.OrderPaid.model_validate(event.data).order_id, "paid"
    )


async def order_refunded(session: AsyncSession, event: Envelope) -> None:
    refund = sales.OrderRefunded.model_validate(event.data)
    await projections.order_status(session, refund.order_id, "refunded")


async def lead_created(session: AsyncSession, event: Envelope) -> None:
    lead = sales.LeadCreated.model_validate(event.data)
    if lead.campaign_id is not None:
        await projections.lead_from_campaign(
            session, lead.lead_id, lead.campaign_id, customer_id=None, created_at=lead.created_at
        )


async def lead_converted(session: AsyncSession, event: Envelope) -> None:
    lead = sales.LeadConverted.model_validate(event.data)
    if lead.campaign_id is not None:
        await projections.lead_from_campaign(
            session,
            lead.lead_id,
            lead.campaign_id,
            customer_id=lead.customer_id,
            created_at=lead.converted_at,
            converted_at=lead.converted_at,
        )


async def customer_scored(session: AsyncSession, event: Envelope) -> None:
    await projections.customer_scored(session, analytics.CustomerScored.model_validate(event.data))


# Each handler files its event under its customer's lock: the batch's customers are locked at
# once first, or the batch holds one while it waits for the next (a deadlock with a writer
# locking both in the locks' order); where each is filed is then looked up once for all.
FILE_UNDER_FIRST = customer_view.file_under_first("customer_id")


async def prefetch_tickets(session: AsyncSession, events: list[Envelope]) -> None:
    """The batch's customers filed and its tickets read at once: its handlers query nothing."""
    await FILE_UNDER_FIRST(session, events)
    await load_rows(session, TicketState, customer_view.ids_in(events, "ticket_id"))


SUBSCRIPTIONS = [
    *customer_view.subscriptions(
        on_contact=projections.contact_changed,
        on_merged=projections.contact_merged,
        on_erased=projections.contact_erased,
    ),
    Subscription(
        name="support",
        topics=(topics.SUPPORT,),
        handlers={
            support.TICKET_OPENED: ticket_opened,
            support.TICKET_RESOLVED: _ticket_status(
                support.TicketResolved, "resolved", "resolved_at"
            ),
            support.TICKET_REOPENED: _ticket_status(support.TicketReopened, "open", "reopened_at"),
            support.TICKET_CLOSED: _ticket_status(support.TicketClosed, "closed", "closed_at"),
            support.TICKET_SLA_BREACHED: ticket_sla_breached,
            support.TICKET_CUSTOMER_IDENTIFIED: ticket_customer_identified,
        },
        prefetch=prefetch_tickets,
    ),
    Subscription(
        name="sales",
        topics=(topics.SALES,),
        handlers={
            sales.ORDER_PLACED: order_placed,
            sales.ORDER_PAID: order_paid,
            sales.ORDER_REFUNDED: order_refunded,
            sales.LEAD_CREATED: lead_created,
            sales.LEAD_CONVERTED: lead_converted,
        },
        prefetch=FILE_UNDER_FIRST,
    ),
    Subscription(
        name="analytics",
        topics=(topics.ANALYTICS,),
        handlers={analytics.CUSTOMER_SCORED: customer_scored},
        prefetch=FILE_UNDER_FIRST,
    ),
]
