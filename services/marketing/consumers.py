"""What marketing does with other services' events: the customer view (timeline, preferences,
policy) with marketing's recipients kept by its hooks, and the projections of support's
tickets, sales' orders and leads, and analytics' scores."""

from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing import projections
from services.marketing.models import Lead, Order, Recipient, Score, TicketState
from shared import customer_view, topics
from shared.consumer import Handler, Subscription
from shared.contracts import analytics, sales, support
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


# The subscriptions to other topics than contacts' file each event under its customer's lock:
# the batch's customers are locked at once first (``file_under_first``), or the batch holds
# one while it waits for the next (a deadlock with a writer locking both in the locks' order);
# where each is filed, and the rows the handlers look up, are then read once for all (a
# ticket event cost 1.3 ms of CPU looked up one by one).
SUBSCRIPTIONS = [
    *customer_view.subscriptions(
        on_contact=projections.contact_changed,
        on_merged=projections.contact_merged,
        on_erased=projections.contact_erased,
        contact_rows=[Recipient],
        read_for_contacts=projections.read_unsubscribes_waiting,
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
        prefetch=customer_view.file_under_first("customer_id", rows={"ticket_id": TicketState}),
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
        prefetch=customer_view.file_under_first(
            "customer_id", rows={"order_id": Order, "lead_id": Lead}
        ),
    ),
    Subscription(
        name="analytics",
        topics=(topics.ANALYTICS,),
        handlers={analytics.CUSTOMER_SCORED: customer_scored},
        prefetch=customer_view.file_under_first("customer_id", customer_rows=Score),
    ),
]
