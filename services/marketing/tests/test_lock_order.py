"""Consumers locking customers at once (PostgreSQL; SQLite has one writer at a time)."""

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, text

from services.marketing.models import Score
from shared import topics
from shared.contracts.analytics import CUSTOMER_SCORED
from shared.customer_view import TouchOutcome, projection
from shared.events import Channel, Department, InteractionRecorded
from shared.testing import (
    app_of,
    by_lock_order,
    consumer_of,
    consumer_record,
    postgres_only,
    until_a_transaction_waits_for_a_lock,
)


@postgres_only
async def test_a_batch_of_scores_and_a_batch_of_touches_of_both_customers_take_turns(
    client, caplog
):
    # The scores' consumer filed its events one after another, each under its customer's lock:
    # it held the later customer in the locks' order while it waited for the earlier one, which
    # the timeline's batch of touches of both (locking both, in that order) held while it
    # waited for the later one. PostgreSQL ended one with a deadlock.
    app = app_of(client)
    first, later = await by_lock_order(app.state.session_factory, 2)
    scores = consumer_of(app, "analytics")
    records = [
        consumer_record(topics.ANALYTICS, offset, CUSTOMER_SCORED, score(customer))
        for offset, customer in enumerate([later, first])
    ]

    async def record_touches() -> list[TouchOutcome]:
        async with app.state.session_factory() as session:
            outcomes = await projection.record_touches(session, [touch(later), touch(first)])
            await session.commit()
            return outcomes

    async with app.state.session_factory() as holder:
        # The scores held still: the batch stops once it has filed its first event.
        await holder.execute(text("LOCK TABLE scores IN ACCESS EXCLUSIVE MODE"))
        scoring = asyncio.create_task(scores.process(records))
        await until_a_transaction_waits_for_a_lock(holder)
        touching = asyncio.create_task(record_touches())
        await until_a_transaction_waits_for_a_lock(holder, 2)
        await holder.commit()
    await scoring
    assert await touching == [TouchOutcome.recorded, TouchOutcome.recorded]
    # In one transaction: a failed batch is applied again event by event, after a log line.
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    async with app.state.session_factory() as session:
        assert set(await session.scalars(select(Score.customer_id))) == {first, later}


def score(customer: uuid.UUID) -> dict[str, str]:
    return {
        "customer_id": str(customer),
        "churn_risk": "0.5",
        "churn_level": "medium",
        "scored_at": "2026-12-04T09:00:00+00:00",
    }


def touch(customer: uuid.UUID) -> InteractionRecorded:
    return InteractionRecorded(
        interaction_id=uuid.uuid4(),
        customer_id=customer,
        department=Department.support,
        channel=Channel.email,
        direction="inbound",
        kind="email",
        occurred_at=datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
    )
