"""Rescoring by several consumers at once (PostgreSQL; SQLite has one writer at a time)."""

import asyncio
import uuid

from sqlalchemy import func, select

from services.analytics import scoring
from services.analytics.models import CustomerScore
from shared.events import utcnow
from shared.testing import app_of, postgres_only, until_a_transaction_waits_for_a_lock


@postgres_only
async def test_two_consumers_rescoring_a_new_customer_at_once_both_commit(client):
    """A ticket and its touch arrive on two topics: the support and the timeline consumers
    rescore the customer in concurrent transactions. The second waits for the first instead of
    inserting a second score row (a unique violation that would fail its whole batch)."""
    factory = app_of(client).state.session_factory
    customer = uuid.uuid4()

    async def rescore(session) -> None:
        await session.run_sync(lambda sync: scoring.rescore(sync, [customer], utcnow()))
        await session.flush()

    async with factory() as first, factory() as second:
        await rescore(first)  # inserted, not committed
        second_done = asyncio.create_task(rescore(second))
        await until_a_transaction_waits_for_a_lock(first)  # the second, on the first
        await first.commit()
        await second_done
        await second.commit()

    async with factory() as session:
        rows = await session.scalar(
            select(func.count()).where(CustomerScore.customer_id == customer)
        )
    assert rows == 1
