"""What sales knows about a customer beyond its own records: open support tickets (from
crm.support.v1), analytics' scores (from crm.analytics.v1), and the rep's view that puts them
together with the shared timeline. Also how merges and erasures reach sales' own rows."""

import math
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import territories
from services.sales.models import (
    MONEY_LIMIT,
    Activity,
    CustomerScore,
    Lead,
    Opportunity,
    Order,
    SupportTicket,
)
from services.sales.rules import CLOSED
from services.sales.schemas import (
    AccountRead,
    CustomerRead,
    OpportunityRead,
    OrderRead,
    ScoresRead,
    TicketRead,
)
from shared import customer_view
from shared.contact_rules import CONTACT_WINDOW
from shared.contracts.analytics import CustomerScored
from shared.contracts.support import TicketCustomerIdentified, TicketEvent, TicketOpened
from shared.customer_view import ContactCheck
from shared.db import add_row, get_row
from shared.errors import InvalidInput, NotFound
from shared.events import Channel, Department, utcnow
from shared.pagination import after_row, decode_cursor, encode_cursor

OPEN = "open"
# A ticket heard of before its opening (which tells its priority) counts as this till then.
UNKNOWN_PRIORITY = "normal"
_CENT = Decimal("0.01")

# ---- the support tickets projection ---------------------------------------------------------


# A ticket's events come in no set order: once its customer is merged (or its unknown sender
# identified), they are keyed by the survivor, and its earlier ones by the merged (or stand-in)
# id, in another partition. So each applies as of its own time: a later status first creates
# the row, the opening then adds what only it tells, and an older status changes nothing.


async def ticket_opened(session: AsyncSession, ticket: TicketOpened) -> None:
    customer_id = await customer_view.filed_under(session, ticket.customer_id)
    if customer_id is None:
        return  # erased
    row = await get_row(session, SupportTicket, ticket.ticket_id)
    if row is not None:  # a later event came first: its status (and customer) stand
        row.subject, row.priority, row.opened_at = ticket.subject, ticket.priority, ticket.opened_at
    else:
        add_row(
            session,
            SupportTicket(
                ticket_id=ticket.ticket_id,
                customer_id=customer_id,
                subject=ticket.subject,
                priority=ticket.priority,
                status=OPEN,
                opened_at=ticket.opened_at,
                updated_at=ticket.opened_at,
            ),
        )


async def ticket_customer_identified(
    session: AsyncSession, identified: TicketCustomerIdentified
) -> None:
    """An unknown sender's ticket now belongs to a contact: its priority now counts in the
    contact's checks. The stand-in id's scores go: they scored no customer."""
    await session.execute(
        delete(CustomerScore).where(CustomerScore.customer_id == identified.previous_customer_id)
    )
    customer_id = await customer_view.filed_under(session, identified.customer_id)
    ticket = SupportTicket.ticket_id == identified.ticket_id
    if customer_id is None:  # erased meanwhile: nothing of the person stays, the subject neither
        await session.execute(delete(SupportTicket).where(ticket))
        return
    await session.execute(update(SupportTicket).where(ticket).values(customer_id=customer_id))


async def ticket_status(
    session: AsyncSession, ticket: TicketEvent, status: str, at: datetime
) -> None:
    """The ticket's status as of ``at``, unless what is known is later."""
    row = await get_row(session, SupportTicket, ticket.ticket_id)
    if row is None:  # before its opening (see above): the opening fills subject and priority
        customer_id = await customer_view.filed_under(session, ticket.customer_id)
        if customer_id is None:
            return  # erased
        add_row(
            session,
            SupportTicket(
                ticket_id=ticket.ticket_id,
                customer_id=customer_id,
                subject=None,
                priority=UNKNOWN_PRIORITY,
                status=status,
                opened_at=at,
                updated_at=at,
            ),
        )
    elif at >= row.updated_at:
        row.status, row.updated_at = status, at


async def open_ticket_priorities(session: AsyncSession, customer_id: uuid.UUID) -> list[str]:
    """What customer_view's contact check needs from sales' support projection."""
    rows = await session.scalars(
        select(SupportTicket.priority).where(
            SupportTicket.customer_id == customer_id, SupportTicket.status == OPEN
        )
    )
    return list(rows)


# ---- analytics scores -----------------------------------------------------------------------


async def customer_scored(session: AsyncSession, scored: CustomerScored) -> None:
    """Keep the latest scores; an older one replayed or late changes nothing, nor does one of
    a customer merged away or erased since (analytics scored it before it applied the merge:
    those figures are of the merged contact's part of the history, not of the survivor's,
    whom analytics scores again)."""
    customer_id = await customer_view.filed_under(session, scored.customer_id)
    if customer_id != scored.customer_id:
        return
    values = {
        "rfm_segment": scored.rfm_segment,
        "recency_days": scored.recency_days,
        "frequency": scored.frequency,
        "monetary": scored.monetary,
        "clv": scored.clv,
        "churn_risk": scored.churn_risk,
        "churn_level": scored.churn_level,
        "factors": [f.model_dump(mode="json") for f in scored.factors],
        "scored_at": scored.scored_at,
    }
    row = await get_row(session, CustomerScore, customer_id)
    if row is None:
        add_row(session, CustomerScore(customer_id=customer_id, **values))
    elif row.scored_at <= scored.scored_at:
        for name, value in values.items():
            setattr(row, name, value)


KeySort = Literal["clv", "churn_risk"]


async def key_customers(
    session: AsyncSession,
    *,
    sort: KeySort,
    min_clv: Decimal | None,
    min_churn_risk: float | None,
    churn_level: str | None,
    rfm_segment: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[CustomerScore], str | None]:
    """The valuable (highest CLV first) or the at-risk (highest churn risk first)."""
    column = CustomerScore.clv if sort == "clv" else CustomerScore.churn_risk
    query = (
        select(CustomerScore)
        .order_by(column.desc(), CustomerScore.customer_id.desc())
        .limit(limit + 1)
    )
    if min_clv is not None:
        query = query.where(CustomerScore.clv >= min_clv)
    if min_churn_risk is not None:
        query = query.where(CustomerScore.churn_risk >= min_churn_risk)
    if churn_level is not None:
        query = query.where(CustomerScore.churn_level == churn_level)
    if rfm_segment is not None:
        query = query.where(CustomerScore.rfm_segment == rfm_segment)
    if cursor is not None:
        value_raw, id_raw = decode_cursor(cursor, 2)
        try:
            value = Decimal(value_raw) if sort == "clv" else float(value_raw)
            last_id = uuid.UUID(id_raw)
            if not math.isfinite(value):  # scores are finite; a signalling NaN cannot be bound
                raise ValueError("not a finite number")
            if isinstance(value, Decimal) and (
                value.quantize(_CENT) != value or abs(value) >= MONEY_LIMIT
            ):
                raise ValueError("not an amount a clv holds")
        except (ValueError, ArithmeticError) as exc:
            raise InvalidInput("not a cursor returned by this API", field="cursor") from exc
        query = query.where(after_row(column, value, CustomerScore.customer_id, last_id))
    rows = list(await session.scalars(query))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor(getattr(last, sort), last.customer_id)


# ---- the rep's view of one customer ---------------------------------------------------------


async def customer(session: AsyncSession, customer_id: uuid.UUID) -> CustomerRead:
    """Before a rep calls: scores, open tickets, this week's marketing, open deals, orders,
    the last touches, and whether a call now is within the contact budget."""
    current = await customer_view.survivor(session, customer_id)
    if current is None:
        raise NotFound(f"customer {customer_id} was erased")
    now = utcnow()
    scores = await session.get(CustomerScore, current)
    account = await territories.account(session, current)
    tickets = await session.scalars(
        select(SupportTicket)
        .where(SupportTicket.customer_id == current, SupportTicket.status == OPEN)
        .order_by(SupportTicket.opened_at.desc())
    )
    this_week = customer_view.TimelineFilters(
        department=Department.marketing, since=now - CONTACT_WINDOW
    )
    marketing, _ = await customer_view.timeline(session, current, limit=100, filters=this_week)
    last_touches, _ = await customer_view.timeline(session, current, limit=10)
    opportunities = await session.scalars(
        select(Opportunity)
        .where(Opportunity.customer_id == current, Opportunity.stage.not_in(CLOSED))
        .order_by(Opportunity.opened_at.desc())
        .limit(100)
    )
    orders = await session.scalars(
        select(Order)
        .where(Order.customer_id == current)
        .order_by(Order.ordered_at.desc())
        .limit(20)
    )
    open_tickets = [TicketRead.model_validate(t) for t in tickets]
    reasons = await customer_view.contact_check(
        session,
        current,
        channel=Channel.phone,
        department=Department.sales,
        now=now,
        open_ticket_priorities=[t.priority for t in open_tickets],
    )
    return CustomerRead(
        customer_id=current,
        account=AccountRead.model_validate(account) if account else None,
        scores=ScoresRead.model_validate(scores) if scores else None,
        open_ticket_count=len(open_tickets),
        open_tickets=open_tickets,
        marketing_this_week=marketing,
        last_touches=last_touches,
        open_opportunities=[OpportunityRead.model_validate(o) for o in opportunities],
        orders=[OrderRead.model_validate(o) for o in orders],
        phone_check=ContactCheck(allowed=not reasons, reasons=[r.value for r in reasons]),
    )


# ---- merges and erasures from contacts ------------------------------------------------------

_BY_CUSTOMER = (Lead, Opportunity, Activity, Order, SupportTicket)


async def contact_merged(
    session: AsyncSession, merged_id: uuid.UUID, survivor_id: uuid.UUID
) -> None:
    """Everything of the merged contact is the survivor's now."""
    for model in _BY_CUSTOMER:
        await session.execute(
            update(model).where(model.customer_id == merged_id).values(customer_id=survivor_id)
        )
    await territories.merged(session, merged_id, survivor_id)
    # The survivor's own scores stand; analytics re-scores the merged history.
    await session.execute(delete(CustomerScore).where(CustomerScore.customer_id == merged_id))


async def contact_erased(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """No PII of an erased person stays in sales: leads lose name, company, e-mail, phone and
    disqualify reason, activities, deals and order lines their free text; tickets and scores
    go. Orders and deals keep only amounts (and an order's skus and quantities)."""
    await session.execute(
        update(Lead)
        .where(Lead.customer_id == contact_id)
        .values(
            name=None, company=None, email=None, phone=None, disqualify_reason=None, erased=True
        )
    )
    await session.execute(
        update(Activity)
        .where(Activity.customer_id == contact_id)
        .values(subject=None, outcome=None, actor=None)
    )
    await session.execute(
        update(Opportunity)
        .where(Opportunity.customer_id == contact_id)
        .values(title="[erased]", close_reason=None)  # free text: may name the person
    )
    # An order line's description is free text too ("engraved for ..."); sku, quantity and
    # price stay, for the amounts.
    for order in await session.scalars(select(Order).where(Order.customer_id == contact_id)):
        if any(line.get("description") for line in order.lines):
            order.lines = [{**line, "description": None} for line in order.lines]
    await session.execute(delete(SupportTicket).where(SupportTicket.customer_id == contact_id))
    await session.execute(delete(CustomerScore).where(CustomerScore.customer_id == contact_id))
    await territories.erased(session, contact_id)
