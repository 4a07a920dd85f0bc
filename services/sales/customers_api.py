"""HTTP routes of activities, orders and the rep's view of customers."""

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from services.sales import activities, customers, orders
from services.sales.customers import KeySort
from services.sales.models import MONEY_LIMIT
from services.sales.rules import OrderStatus
from services.sales.schemas import (
    ActivityBatch,
    ActivityCreate,
    ActivityRead,
    AtRequest,
    CustomerRead,
    OrderCreate,
    OrderRead,
    ScoresRead,
)
from shared.app import Cursor, Limit, SessionDep
from shared.auth import require_scope
from shared.customer_view import BatchCreated
from shared.pagination import DEFAULT_LIMIT, Page

read = [Depends(require_scope("sales:read"))]
write = [Depends(require_scope("sales:write"))]

router = APIRouter(prefix="/v1", tags=["customers"])
Label = Annotated[str | None, Query(min_length=1, max_length=32)]


# ---- activities -----------------------------------------------------------------------------


@router.post("/activities", status_code=status.HTTP_201_CREATED, dependencies=write)
async def log_activity(body: ActivityCreate, session: SessionDep) -> ActivityRead:
    """Log a call, meeting, e-mail or message; an outbound one carries the contact check."""
    activity, verdict = await activities.log_activity(session, body)
    return ActivityRead.model_validate(activity).model_copy(update={"contact_check": verdict})


@router.post("/activities:batch", status_code=status.HTTP_201_CREATED, dependencies=write)
async def log_activities(body: ActivityBatch, session: SessionDep) -> BatchCreated:
    """Up to 1,000 activities that already happened (a dialer's or calendar's sync), without
    contact checks; all or nothing."""
    return BatchCreated(ids=await activities.log_activities(session, body.items))


@router.get("/activities", dependencies=read)
async def list_activities(
    session: SessionDep,
    customer_id: uuid.UUID | None = None,
    opportunity_id: uuid.UUID | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ActivityRead]:
    found, next_cursor = await activities.list_activities(
        session,
        customer_id=customer_id,
        opportunity_id=opportunity_id,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[ActivityRead.model_validate(a) for a in found], next_cursor=next_cursor)


@router.get("/activities/{activity_id}", dependencies=read)
async def get_activity(activity_id: uuid.UUID, session: SessionDep) -> ActivityRead:
    return ActivityRead.model_validate(await activities.get_activity(session, activity_id))


# ---- orders ---------------------------------------------------------------------------------


@router.post("/orders", status_code=status.HTTP_201_CREATED, dependencies=write)
async def place_order(body: OrderCreate, session: SessionDep) -> OrderRead:
    return OrderRead.model_validate(await orders.place_order(session, body))


@router.get("/orders", dependencies=read)
async def list_orders(
    session: SessionDep,
    customer_id: uuid.UUID | None = None,
    status: OrderStatus | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OrderRead]:
    found, next_cursor = await orders.list_orders(
        session,
        customer_id=customer_id,
        status=status.value if status else None,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[OrderRead.model_validate(o) for o in found], next_cursor=next_cursor)


@router.get("/orders/{order_id}", dependencies=read)
async def get_order(order_id: uuid.UUID, session: SessionDep) -> OrderRead:
    return OrderRead.model_validate(await orders.get_order(session, order_id))


@router.post("/orders/{order_id}/paid", dependencies=write)
async def mark_paid(
    order_id: uuid.UUID, session: SessionDep, body: AtRequest | None = None
) -> OrderRead:
    at = body.at if body else None
    return OrderRead.model_validate(
        await orders.change_status(session, order_id, OrderStatus.paid, at)
    )


@router.post("/orders/{order_id}/refunded", dependencies=write)
async def mark_refunded(
    order_id: uuid.UUID, session: SessionDep, body: AtRequest | None = None
) -> OrderRead:
    at = body.at if body else None
    return OrderRead.model_validate(
        await orders.change_status(session, order_id, OrderStatus.refunded, at)
    )


# ---- customers ------------------------------------------------------------------------------


@router.get("/customers/key", dependencies=read)
async def key_customers(
    session: SessionDep,
    sort: KeySort = "clv",
    min_clv: Annotated[Decimal | None, Query(ge=0, lt=MONEY_LIMIT, decimal_places=2)] = None,
    min_churn_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
    churn_level: Label = None,
    rfm_segment: Label = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ScoresRead]:
    """Customers by analytics' scores: the most valuable (sort=clv) or most at risk
    (sort=churn_risk) first."""
    found, next_cursor = await customers.key_customers(
        session,
        sort=sort,
        min_clv=min_clv,
        min_churn_risk=min_churn_risk,
        churn_level=churn_level,
        rfm_segment=rfm_segment,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[ScoresRead.model_validate(s) for s in found], next_cursor=next_cursor)


@router.get("/customers/{customer_id}", dependencies=read)
async def get_customer(customer_id: uuid.UUID, session: SessionDep) -> CustomerRead:
    """The rep's view before calling: scores, open tickets, marketing this week, open deals,
    orders, the last touches and whether a call now is within the contact budget."""
    return await customers.customer(session, customer_id)
