"""The customer view's timeline projection on a real database: what a batch of touches does."""

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.customer_view import projection
from shared.customer_view.models import TimelineEntry
from shared.customer_view.projection import TouchOutcome
from shared.events import InteractionRecorded
from shared.testing import (
    by_lock_order,
    one_write_waits_for_another,
    postgres_only,
    statements_run,
    until_a_transaction_waits_for_a_lock,
)

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def touch(customer_id: uuid.UUID, interaction_id: uuid.UUID | None = None, subject: str = "s"):
    return InteractionRecorded(
        interaction_id=interaction_id or uuid.uuid4(),
        customer_id=customer_id,
        department="support",
        channel="email",
        direction="inbound",
        kind="email",
        subject=subject,
        occurred_at=AT,
    )


async def record(session_factory, touches) -> list[TouchOutcome]:
    async with session_factory() as session:
        outcomes = await projection.record_touches(session, touches)
        await session.commit()
    return outcomes


async def stored(session_factory) -> dict[uuid.UUID, tuple[uuid.UUID, str | None]]:
    async with session_factory() as session:
        rows = await session.execute(
            select(TimelineEntry.interaction_id, TimelineEntry.customer_id, TimelineEntry.subject)
        )
        return {interaction: (customer, subject) for interaction, customer, subject in rows}


async def test_a_touch_sent_again_under_a_new_event_is_kept_once(session_factory):
    """A client's retry of a touch (same interaction id, a new event), in the same batch or a
    later one, is a duplicate: the first version stays."""
    customer = uuid.uuid4()
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    outcomes = await record(
        session_factory,
        [
            touch(customer, first, "original"),
            touch(customer, first, "retry"),
            touch(customer, second),
        ],
    )
    assert outcomes == [TouchOutcome.recorded, TouchOutcome.duplicate, TouchOutcome.recorded]
    outcomes = await record(
        session_factory, [touch(customer, first, "late retry"), touch(customer, third)]
    )
    assert outcomes == [TouchOutcome.duplicate, TouchOutcome.recorded]
    assert await stored(session_factory) == {
        first: (customer, "original"),
        second: (customer, "s"),
        third: (customer, "s"),
    }


async def test_touches_of_merged_and_erased_customers(session_factory):
    survivor, merged, erased = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with session_factory() as session:
        await projection.contact_merged(session, merged, survivor)
        await projection.contact_erased(session, erased)
        await session.commit()
    to_merged, to_erased, to_survivor = touch(merged), touch(erased), touch(survivor)
    outcomes = await record(session_factory, [to_merged, to_erased, to_survivor])
    assert outcomes == [TouchOutcome.recorded, TouchOutcome.erased, TouchOutcome.recorded]
    assert await stored(session_factory) == {
        to_merged.interaction_id: (survivor, "s"),  # filed under the survivor
        to_survivor.interaction_id: (survivor, "s"),
    }


async def test_customers_filed_at_once_are_filed_without_a_query_until_a_merge(session_factory):
    survivor, merged, erased, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with session_factory() as session:
        await projection.contact_merged(session, merged, survivor)
        await projection.contact_erased(session, erased)
        await session.commit()
    async with session_factory() as session:
        await projection.filed_under_all(session, [merged, erased, new])
        with statements_run(session.bind) as statements:
            assert await projection.filed_under(session, merged) == survivor
            assert await projection.filed_under(session, erased) is None
            assert await projection.filed_under(session, new) == new
        assert statements == []
        # A merge in the same transaction changes where the customer is filed.
        await projection.contact_merged(session, new, survivor)
        assert await projection.filed_under(session, new) == survivor


async def test_merges_applied_out_of_order_end_under_the_last_survivor(session_factory):
    first, second, last = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    of_first = touch(first)
    await record(session_factory, [of_first])
    async with session_factory() as session:
        # second into last arrived first: its key is second, first's merge travels under first.
        assert await projection.contact_merged(session, second, last) == last
        # Before, first's touches went to second, a merged-away id: in no timeline.
        assert await projection.contact_merged(session, first, second) == last
        await session.commit()
    assert await stored(session_factory) == {of_first.interaction_id: (last, "s")}
    assert await record(session_factory, [touch(first)]) == [TouchOutcome.recorded]


async def test_a_merge_into_a_contact_erased_since_erases_the_merged_touches(session_factory):
    merged, survivor = uuid.uuid4(), uuid.uuid4()
    await record(session_factory, [touch(merged)])
    async with session_factory() as session:
        await projection.contact_erased(session, survivor)
        # Before, the person's touches moved under the erased id and stayed there.
        assert await projection.contact_merged(session, merged, survivor) is None
        await session.commit()
    assert await stored(session_factory) == {}
    assert await record(session_factory, [touch(merged)]) == [TouchOutcome.erased]


@postgres_only
@pytest.mark.parametrize("one_by_one", [True, False], ids=["record_touch", "record_touches"])
async def test_a_touch_of_a_merged_customer_follows_its_survivors_merge(
    session_factory, one_by_one
):
    first, second, last = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with session_factory() as session:  # first was merged into second, earlier
        await projection.contact_merged(session, first, second)
        await session.commit()
    late = touch(first)

    def merge_second_into_last(session: AsyncSession) -> Awaitable[uuid.UUID | None]:
        return projection.contact_merged(session, second, last)

    def file_the_touch(session: AsyncSession) -> Awaitable[object]:
        if one_by_one:
            return projection.record_touch(session, late)
        return projection.record_touches(session, [late])

    # The touch took first's lock only, and was filed under second while second's merge,
    # which locks second, moved second's touches: it stayed under second, in no timeline.
    await one_write_waits_for_another(session_factory, merge_second_into_last, file_the_touch)
    assert await stored(session_factory) == {late.interaction_id: (last, "s")}


@postgres_only
async def test_a_write_for_a_merged_customer_and_a_batch_naming_both_take_turns(
    session_factory,
):
    # An API write for a merged customer locked it, then read where it went and locked the
    # survivor; the timeline's batch of both locked them in the locks' one order, the survivor
    # first. Each held a lock the other waited for: one ended with a deadlock error (a 503 for
    # the API's client; the e2e merge test met it).
    survivor, merged = await by_lock_order(session_factory, 2)
    async with session_factory() as session:
        await projection.contact_merged(session, merged, survivor)
        await session.commit()
    late = touch(merged)

    async def write() -> dict[uuid.UUID, uuid.UUID]:
        async with session_factory() as session:
            current = await projection.current_customers(session, [merged], ["customer_id"])
            await session.commit()
            return current

    async with session_factory() as holder:
        # The profiles held still: the write stops between its first lock and its look.
        await holder.execute(text("LOCK TABLE customer_profiles IN ACCESS EXCLUSIVE MODE"))
        writing = asyncio.create_task(write())
        await until_a_transaction_waits_for_a_lock(holder)
        batching = asyncio.create_task(record(session_factory, [touch(survivor), late]))
        await until_a_transaction_waits_for_a_lock(holder, 2)
        await holder.commit()
    assert await writing == {merged: survivor}
    assert await batching == [TouchOutcome.recorded, TouchOutcome.recorded]
    assert (await stored(session_factory))[late.interaction_id] == (survivor, "s")


@postgres_only
async def test_a_write_that_waited_for_a_merge_and_a_batch_naming_both_take_turns(
    session_factory,
):
    # The write read the merged customer as active, waited for its lock while the merge was
    # applied, then found the survivor on the way and locked it: after the merged id, against
    # the locks' one order. The batch of both, which had waited on the survivor meanwhile,
    # held it and waited for the merged id: a deadlock (the five-service test met it).
    survivor, merged = await by_lock_order(session_factory, 2)

    async def write() -> dict[uuid.UUID, uuid.UUID]:
        async with session_factory() as session:
            current = await projection.current_customers(session, [merged], ["customer_id"])
            await session.commit()
            return current

    async with session_factory() as merging:
        await projection.contact_merged(merging, merged, survivor)
        await merging.flush()
        writing = asyncio.create_task(write())
        await until_a_transaction_waits_for_a_lock(merging)
        batch = [touch(survivor), touch(merged)]
        batching = asyncio.create_task(record(session_factory, batch))
        await until_a_transaction_waits_for_a_lock(merging, 2)
        await merging.commit()
    assert await writing == {merged: survivor}
    assert await batching == [TouchOutcome.recorded, TouchOutcome.recorded]
    assert set((await stored(session_factory)).values()) == {(survivor, "s")}
