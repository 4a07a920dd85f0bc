"""Orders and payments: placed through the API or taken in from an accounting system's topic.
Each status change is published on crm.sales.v1 (analytics builds RFM and CLV from them)."""

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import events, rules
from services.sales.models import Order
from services.sales.rules import OrderStatus
from services.sales.schemas import OrderCreate
from shared import customer_view
from shared.contracts.sales import SOURCE, ExternalOrder
from shared.customer_view import InteractionCreate
from shared.db import get_or_404, made_before
from shared.errors import InvalidInput
from shared.events import Channel, Department, Direction, SourceRef, utcnow
from shared.pagination import cut_page, page_after


async def _touch(session: AsyncSession, order: Order) -> None:
    """The order as a customer touch on the shared timeline (no amount on that topic)."""
    await customer_view.record_interactions(
        session,
        [
            InteractionCreate(
                interaction_id=order.id,
                customer_id=order.customer_id,
                channel=Channel.other,
                direction=Direction.inbound,
                kind="order_placed",
                occurred_at=order.ordered_at,
                ref=SourceRef(type="order", id=str(order.id)),
            )
        ],
        department=Department.sales,
        source=SOURCE,
    )


def _new_order(
    customer_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    at: datetime,
    order_id: uuid.UUID | None = None,
) -> Order:
    return Order(
        id=order_id or uuid.uuid4(),
        customer_id=customer_id,
        amount=amount,
        currency=currency,
        status=OrderStatus.placed.value,
        lines=[],
        ordered_at=at,
        created_at=utcnow(),
    )


async def place_order(session: AsyncSession, data: OrderCreate) -> Order:
    """The order placed and published; sent again with its ``order_id``, the order first
    placed (the id of another order is a 409)."""
    # Checked before anything is looked up: an amount that is not its lines' total is a 422.
    amount = rules.order_amount(
        [(line.quantity, line.unit_price) for line in data.lines], data.amount
    )
    customer_id = await customer_view.current_customer(session, data.customer_id)
    lines = [line.model_dump(mode="json") for line in data.lines]
    earlier = await made_before(
        session,
        Order,
        data.order_id,
        name="order",
        field="order_id",
        same=lambda order: (
            (order.customer_id, order.amount, order.currency)
            == (customer_id, amount, data.currency)
        ),
    )
    if earlier is not None:
        return earlier
    order = _new_order(
        customer_id, amount, data.currency, data.ordered_at or utcnow(), data.order_id
    )
    order.lines = lines
    order.campaign_id = data.campaign_id
    session.add(order)
    await session.flush()
    events.order_placed(session, order)
    await _touch(session, order)
    return order


async def get_order(session: AsyncSession, order_id: uuid.UUID, *, lock: bool = False) -> Order:
    return await get_or_404(session, Order, order_id, "order", lock=lock)


async def list_orders(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Order], str | None]:
    query = select(Order).order_by(Order.ordered_at.desc(), Order.id.desc()).limit(limit + 1)
    if customer_id is not None:
        current = await customer_view.survivor(session, customer_id)
        if current is None:
            return [], None
        query = query.where(Order.customer_id == current)
    if status is not None:
        query = query.where(Order.status == status)
    query = page_after(query, Order.ordered_at, Order.id, cursor)
    return cut_page(list(await session.scalars(query)), limit, "ordered_at")


def _step(session: AsyncSession, order: Order, target: OrderStatus, at: datetime | None) -> None:
    status = rules.next_order_status(OrderStatus(order.status), target)
    previous = order.ordered_at if target == OrderStatus.paid else order.paid_at
    assert previous is not None
    if at is None:
        # An order's own time may be a few minutes ahead of the clock: no step before it.
        at = max(utcnow(), previous)
    elif at < previous:
        before = "placed" if target == OrderStatus.paid else "paid"
        raise InvalidInput(f"must not be before the order was {before} ({previous})", field="at")
    order.status = status.value
    if target == OrderStatus.paid:
        order.paid_at = at
        events.order_paid(session, order)
    else:
        order.refunded_at = at
        events.order_refunded(session, order)


async def change_status(
    session: AsyncSession, order_id: uuid.UUID, target: OrderStatus, at: datetime | None
) -> Order:
    order = await get_order(session, order_id, lock=True)
    _step(session, order, target, at)
    await session.flush()
    return order


async def take_external_order(session: AsyncSession, external: ExternalOrder) -> None:
    """Record an accounting system's order and republish it as sales' own events. Keyed by
    its ``external_id``: the same order told again changes nothing, a later status moves it."""
    order = await session.scalar(select(Order).where(Order.external_id == external.external_id))
    if order is None:
        customer_id = await customer_view.filed_under(session, external.customer_id)
        if customer_id is None:
            return  # an erased customer: keep nothing
        amount = rules.amount(external.amount)  # "120" is told as "120.00", as the API's
        order = _new_order(customer_id, amount, external.currency, external.ordered_at)
        order.external_id = external.external_id
        session.add(order)
        await session.flush()
        events.order_placed(session, order)
        await _touch(session, order)
    for status in rules.order_steps(OrderStatus(order.status), OrderStatus(external.status)):
        _step(session, order, status, None)
    await session.flush()
