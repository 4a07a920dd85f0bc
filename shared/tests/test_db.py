"""Customer locks, on both databases."""

import asyncio
import uuid

from sqlalchemy import func, select

from shared.db import lock_customers
from shared.events import utcnow
from shared.models import ProcessedEvent


async def test_what_a_transaction_read_after_taking_customer_locks_cannot_change_under_it(
    session_factory,
):
    """A consumer reads a customer's records after taking their locks, then writes: another
    transaction writing about that customer meanwhile must wait for it to end. On SQLite the
    driver begins a transaction only at its first write, so the lock is its write lock taken
    up front; without it the other write commits between this one's read and write."""
    customer = uuid.uuid4()

    async def other_writer() -> None:
        async with session_factory() as other:
            await lock_customers(other, [customer])
            other.add(ProcessedEvent(consumer="other", event_id="e-1", processed_at=utcnow()))
            await other.commit()

    async with session_factory() as first:
        await lock_customers(first, [customer])
        await first.scalar(select(func.count()).select_from(ProcessedEvent))  # the read
        writing = asyncio.create_task(other_writer())
        await asyncio.sleep(0.3)  # time enough for the other write, were it not held off
        assert not writing.done()
        await first.commit()
    await writing
