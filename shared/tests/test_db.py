"""Customer locks, on both databases; which database errors are worth a retry."""

import asyncio
import uuid

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import DBAPIError

from shared.customer_view.models import CustomerProfile
from shared.db import (
    add_row,
    chunked,
    create_engine,
    create_session_factory,
    ensure_schema,
    failed_for_now,
    get_row,
    in_lists,
    load_rows,
    lock_customers,
    padded,
)
from shared.events import utcnow
from shared.models import ProcessedEvent
from shared.testing import isolated_database, postgres_only, statements_run


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


@postgres_only
async def test_a_customer_locked_by_one_service_is_not_locked_for_another_in_the_database(
    session_factory, tmp_path
):
    """Services may share one database, a schema each: a customer's lock in one (a merge
    applied in sales) held the same customer's in every other (support's batch of touches)."""
    customer = uuid.uuid4()
    async with isolated_database(tmp_path, "other") as other_database:
        schema = other_database["database_schema"]
        engine = create_engine(other_database["database_url"], schema)
        await ensure_schema(engine, schema)
        try:
            async with session_factory() as one, create_session_factory(engine)() as other:
                await lock_customers(one, [customer])
                await asyncio.wait_for(lock_customers(other, [customer]), timeout=5)
                await other.commit()
                await one.commit()
        finally:
            await engine.dispose()


async def database_error(session_factory, statement: str) -> DBAPIError:
    async with session_factory() as session:
        with pytest.raises(DBAPIError) as error:
            await session.execute(text(statement))
    return error.value


async def test_a_mistake_in_the_data_is_not_failed_for_now(session_factory):
    # An API answers 500 for it, not a 503 asking to try again; a consumer dead-letters it.
    insert = "INSERT INTO processed_events VALUES ('c', 'e-1', '2026-01-01 00:00:00')"
    async with session_factory() as session:
        await session.execute(text(insert))
        await session.commit()
    assert not failed_for_now(await database_error(session_factory, insert))


@postgres_only
async def test_a_connection_ended_by_the_server_is_failed_for_now(session_factory):
    # pg_terminate_backend, as a restart or a failover does: an API answers 503 (the
    # reliability suite's connections-killed test sees them), a consumer tries again.
    ended = await database_error(session_factory, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert failed_for_now(ended)


async def test_rows_read_at_once_are_got_without_a_query_and_one_added_is_found(session_factory):
    stored, missing = uuid.uuid4(), uuid.uuid4()
    async with session_factory() as session:
        session.add(CustomerProfile(contact_id=stored, updated_at=utcnow()))
        await session.commit()
    async with session_factory() as session:
        await load_rows(session, CustomerProfile, [stored, missing])
        with statements_run(session.bind) as statements:
            found = await get_row(session, CustomerProfile, stored)
            assert found is not None and found.contact_id == stored
            assert await get_row(session, CustomerProfile, missing) is None
        assert statements == []
        added = CustomerProfile(contact_id=missing, updated_at=utcnow())
        add_row(session, added)
        # Missing no more: a second event of a new row in one batch changes the row added,
        # flushed or not, without a query.
        with statements_run(session.bind) as statements:
            assert await get_row(session, CustomerProfile, missing) is added
        assert statements == []
        await session.flush()
        assert await get_row(session, CustomerProfile, missing) is added
        await session.commit()
    async with session_factory() as session:
        assert await session.get(CustomerProfile, missing) is not None


async def test_a_row_added_then_deleted_in_the_transaction_is_not_got(session_factory):
    key = uuid.uuid4()
    async with session_factory() as session:
        add_row(session, CustomerProfile(contact_id=key, updated_at=utcnow()))
        await session.execute(delete(CustomerProfile).where(CustomerProfile.contact_id == key))
        assert await get_row(session, CustomerProfile, key) is None
        other = uuid.uuid4()
        row = CustomerProfile(contact_id=other, updated_at=utcnow())
        add_row(session, row)
        await session.flush()
        await session.delete(row)
        await session.flush()
        assert await get_row(session, CustomerProfile, other) is None


def test_chunked_gives_every_item_once_in_lists_of_at_most_the_size():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []
    assert [len(chunk) for chunk in chunked(set(range(1001)))] == [500, 500, 1]


def test_padded_repeats_the_last_value_up_to_a_power_of_two_within_the_limit():
    assert padded([]) == []
    assert padded([7]) == [7]
    assert padded([1, 2, 3]) == [1, 2, 3, 3]
    assert padded(range(5)) == [0, 1, 2, 3, 4, 4, 4, 4]
    assert len(padded(range(300))) == 500  # not 512: a list stays within the limit
    assert len(padded(range(700))) == 700  # a longer one is not cut
    lists = list(in_lists(range(1100)))
    assert [len(ids) for ids in lists] == [500, 500, 128]
    assert sorted(set().union(*lists)) == list(range(1100))
