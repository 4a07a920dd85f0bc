"""Consumers locking customers at once (PostgreSQL; SQLite has one writer at a time)."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import rows
from shared.contracts import sales, support
from shared.customer_view import projection
from shared.events import Envelope
from shared.testing import (
    app_of,
    by_lock_order,
    postgres_only,
    until_a_transaction_waits_for_a_lock,
)


def event(event_type: str, customer: uuid.UUID) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        source="/crm/test",
        type=event_type,
        data={"customer_id": str(customer)},
    )


@postgres_only
async def test_a_batch_naming_a_merged_customer_and_one_naming_both_take_turns(client):
    # A batch locked its customers, then followed a merged one to its survivor and locked
    # that; another consumer's batch naming both had locked them in the locks' one order, the
    # survivor first. Each held a lock the other waited for: PostgreSQL ended one with a
    # deadlock (the five-service test's consumers met it).
    factory = app_of(client).state.session_factory
    survivor, merged = await by_lock_order(factory, 2)
    async with factory() as session:
        await projection.contact_merged(session, merged, survivor)
        await session.commit()

    async def owners(
        prefetch: Callable[[AsyncSession, list[Envelope]], Awaitable[None]],
        events: list[Envelope],
    ) -> dict[uuid.UUID, uuid.UUID | None]:
        async with factory() as session:
            await prefetch(session, events)
            found = {c: await rows.owner(session, c) for c in (survivor, merged)}
            await session.commit()
            return found

    async with factory() as holder:
        # The profiles held still: the sales batch stops between its first lock and its look.
        await holder.execute(text("LOCK TABLE customer_profiles IN ACCESS EXCLUSIVE MODE"))
        selling = asyncio.create_task(
            owners(rows.prefetch_sales, [event(sales.ORDER_PLACED, merged)])
        )
        await until_a_transaction_waits_for_a_lock(holder)
        supporting = asyncio.create_task(
            owners(
                rows.prefetch_support,
                [event(support.TICKET_OPENED, survivor), event(support.TICKET_OPENED, merged)],
            )
        )
        await until_a_transaction_waits_for_a_lock(holder, 2)
        await holder.commit()
    expected = {survivor: survivor, merged: survivor}
    assert await selling == expected
    assert await supporting == expected
