"""The SQLite engine's connections: one trip to the connection's thread per statement, the
results and errors SQLAlchemy expects, and an event loop left free while SQLite waits."""

import asyncio

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from shared.db import create_engine
from shared.sqlite_driver import OneTripConnection

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("body", String(50), unique=True),
)


@pytest.fixture
async def engine(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch) -> list[str]:
    """The calls made in the connections' threads, by name."""
    made: list[str] = []
    run_in_thread = OneTripConnection._execute

    async def counted(self, function, *args, **kwargs):
        made.append(getattr(function, "__name__", repr(function)))
        return await run_in_thread(self, function, *args, **kwargs)

    monkeypatch.setattr(OneTripConnection, "_execute", counted)
    return made


async def test_a_write_transaction_is_a_trip_per_statement_and_one_for_the_commit(engine, trips):
    async with engine.connect() as connection:  # the pool's first connection opens now
        trips.clear()
        await connection.execute(select(notes))
        await connection.execute(insert(notes).values(body="a"))
        await connection.commit()
        await connection.execute(select(notes))  # reads only: nothing to commit or roll back
    assert len(trips) == 4  # select, insert, commit, select; no rollback when taken back


async def test_statements_give_rows_counts_and_generated_keys(engine):
    async with engine.begin() as connection:
        first = await connection.execute(insert(notes).values(body="a"))
        await connection.execute(insert(notes), [{"body": "b"}, {"body": "c"}])
        changed = await connection.execute(
            update(notes).where(notes.c.body.in_(["b", "c"])).values(body=notes.c.body + "!")
        )
        rows = (await connection.execute(select(notes.c.body).order_by(notes.c.id))).all()
        one = (await connection.execute(text("SELECT count(*) AS n FROM notes"))).one()
    assert first.inserted_primary_key == (1,)
    assert changed.rowcount == 2
    assert [row.body for row in rows] == ["a", "b!", "c!"]
    assert one.n == 3


async def test_a_constraint_violation_is_sqlalchemys_error_and_the_rollback_undoes_the_rest(
    engine,
):
    async with engine.connect() as connection:
        await connection.execute(insert(notes).values(body="kept"))
        await connection.commit()
        await connection.execute(insert(notes).values(body="undone"))
        with pytest.raises(IntegrityError):
            await connection.execute(insert(notes).values(body="kept"))
        await connection.rollback()
        bodies = (await connection.scalars(select(notes.c.body))).all()
    assert bodies == ["kept"]


async def test_a_writer_waiting_for_the_lock_leaves_the_event_loop_free(engine):
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    async with engine.connect() as holder, engine.connect() as waiter:
        await holder.execute(insert(notes).values(body="first"))  # holds the write lock
        blocked = asyncio.create_task(waiter.execute(insert(notes).values(body="second")))
        await asyncio.sleep(0)  # the waiter's insert is now in SQLite's busy handler
        ticked = ticks
        await asyncio.sleep(0.3)
        assert not blocked.done()  # still waiting, in the connection's thread
        assert ticks > ticked  # while the loop went on (run inline, it would have stopped)
        await holder.commit()
        await blocked
        await waiter.commit()
        bodies = (await waiter.scalars(select(notes.c.body).order_by(notes.c.id))).all()
    ticker.cancel()
    assert bodies == ["first", "second"]
