"""What sales does with other services' events: the shared customer view (timeline, contact
preferences, merges and erasures applied to sales' own rows too), the open support tickets,
analytics' scores, and orders an accounting system publishes."""

from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import customers, orders, territories
from services.sales.models import Account, CustomerScore, SupportTicket
from shared import customer_view, topics
from shared.consumer import Subscription
from shared.contracts import analytics, support
from shared.contracts.sales import EXTERNAL_ORDER, ExternalOrder
from shared.events import Envelope


async def ticket_opened(session: AsyncSession, event: Envelope) -> None:
    await customers.ticket_opened(session, support.TicketOpened.model_validate(event.data))


async def ticket_customer_identified(session: AsyncSession, event: Envelope) -> None:
    await customers.ticket_customer_identified(
        session, support.TicketCustomerIdentified.model_validate(event.data)
    )


async def ticket_resolved(session: AsyncSession, event: Envelope) -> None:
    ticket = support.TicketResolved.model_validate(event.data)
    await customers.ticket_status(session, ticket, "resolved", ticket.resolved_at)


async def ticket_reopened(session: AsyncSession, event: Envelope) -> None:
    ticket = support.TicketReopened.model_validate(event.data)
    await customers.ticket_status(session, ticket, customers.OPEN, ticket.reopened_at)


async def ticket_closed(session: AsyncSession, event: Envelope) -> None:
    ticket = support.TicketClosed.model_validate(event.data)
    await customers.ticket_status(session, ticket, "closed", ticket.closed_at)


async def customer_scored(session: AsyncSession, event: Envelope) -> None:
    await customers.customer_scored(session, analytics.CustomerScored.model_validate(event.data))


async def external_order(session: AsyncSession, event: Envelope) -> None:
    await orders.take_external_order(session, ExternalOrder.model_validate(event.data))


# The subscriptions to other topics than contacts' file each event under its customer's lock:
# the batch's customers are locked at once first (``file_under_first``), or the batch holds
# one while it waits for the next (a deadlock with a writer locking both in the locks' order);
# where each is filed, and the rows the handlers look up, are then read once for all (a
# ticket event cost 1.3 ms of CPU looked up one by one).
SUBSCRIPTIONS = [
    *customer_view.subscriptions(
        on_contact=territories.contact_changed,
        on_merged=customers.contact_merged,
        on_erased=customers.contact_erased,
        contact_rows=[Account],
    ),
    Subscription(
        name="support",
        topics=(topics.SUPPORT,),
        handlers={
            support.TICKET_OPENED: ticket_opened,
            support.TICKET_RESOLVED: ticket_resolved,
            support.TICKET_REOPENED: ticket_reopened,
            support.TICKET_CLOSED: ticket_closed,
            support.TICKET_CUSTOMER_IDENTIFIED: ticket_customer_identified,
        },
        prefetch=customer_view.file_under_first("customer_id", rows={"ticket_id": SupportTicket}),
    ),
    Subscription(
        name="scores",
        topics=(topics.ANALYTICS,),
        handlers={analytics.CUSTOMER_SCORED: customer_scored},
        prefetch=customer_view.file_under_first("customer_id", customer_rows=CustomerScore),
    ),
    Subscription(
        name="external-orders",
        topics=(topics.EXTERNAL_ORDERS,),
        handlers={EXTERNAL_ORDER: external_order},
        prefetch=customer_view.file_under_first("customer_id"),
    ),
]
