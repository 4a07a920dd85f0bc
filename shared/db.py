"""Async database engine and sessions for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    Select,
    Table,
    TextClause,
    TypeDecorator,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

from shared import sqlite_driver
from shared.errors import Conflict, NotFound

# One naming convention so Alembic names constraints the same way on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A mapped class (a model of any service), for helpers that return its rows.
Model = TypeVar("Model", bound=DeclarativeBase)
T = TypeVar("T")


class PlatformBase(DeclarativeBase):
    """Tables every service database has: the outbox, processed events, relay lease."""

    metadata = new_metadata()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def on_postgres(session: AsyncSession | Session) -> bool:
    """Whether this session's database is PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


# SQLSTATE classes and codes of a failure that says nothing about the request: the connection
# was lost (08), the transaction lost a deadlock or a serialization check (40), the server is
# shutting down or was told to end the connection (57P01-57P03), or has too many (53300).
_TRANSIENT_SQLSTATES = ("08", "40", "57P01", "57P02", "57P03", "53300")


def failed_for_now(error: BaseException) -> bool:
    """Whether the same work may well succeed if tried again: the database was out of reach
    or busy (a restart, a dropped connection, a deadlock, SQLite's lock held too long), not a
    mistake in the statement or the data. An API answers 503 for it, a consumer redelivers."""
    if isinstance(error, OperationalError | InterfaceError):
        return True  # the driver's own word for it
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    # asyncpg's errors reach SQLAlchemy as plain DBAPIErrors: a deadlock among them.
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return sqlstate.startswith(_TRANSIENT_SQLSTATES)


def async_url(database_url: str) -> str:
    """Accept plain ``postgresql://`` URLs too: this platform talks to PostgreSQL via asyncpg."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url[len(prefix) :]
    if database_url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + database_url[len("sqlite://") :]
    return database_url


SQLITE_CONNECTIONS = 2


def create_engine(
    database_url: str, schema: str | None = None, *, pool_size: int = 10, max_overflow: int = 20
) -> AsyncEngine:
    """``pool_size + max_overflow`` connections at most per process (PostgreSQL; SQLite gets
    ``SQLITE_CONNECTIONS``). A database error's text leaves out the statement's values
    (e-mail addresses, message bodies): tracebacks go into logs and dead-letter headers, which
    no erasure reaches."""
    database_url = async_url(database_url)
    if is_sqlite(database_url):
        engine = create_async_engine(
            database_url,
            hide_parameters=True,
            # A connection that runs a statement in one trip to its thread, opened with the
            # arguments SQLAlchemy derives from the URL (the busy timeout: _tune_sqlite).
            async_creator=lambda: _connect_sqlite(engine),
            # SQLite has one writer: more connections only queue in its busy handler, which
            # sleeps 1-100 ms between tries. With the default 15, the load benchmark's write
            # p99 was 1.3 s at 16 clients; with 2 (one can read while the other writes),
            # 0.35 s at the same throughput.
            pool_size=SQLITE_CONNECTIONS,
            max_overflow=0,
        )
        _tune_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(
        database_url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # A connection the server dropped (a restart, a failover) is replaced before use
        # instead of failing one request with a 500.
        pool_pre_ping=True,
        connect_args=connect_args,
    )


async def _connect_sqlite(engine: AsyncEngine) -> sqlite_driver.OneTripConnection:
    (database,), kwargs = engine.dialect.create_connect_args(engine.url)
    return await sqlite_driver.connect(database, **kwargs)


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the relay read while the API writes; NORMAL is durable across app crashes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # SQLite's lower() folds ASCII letters only, so a case-insensitive search
        # (lower(x) LIKE lower(q)) did not find émile by ÉMILE; PostgreSQL's folds them all.
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


async def ensure_schema(engine: AsyncEngine, schema: str | None) -> None:
    """Create the service's PostgreSQL schema before migrations run in it."""
    if not schema or is_sqlite(str(engine.url)):
        return
    async with engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block ends cleanly, roll back on any error."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


# Each dialect's INSERT, which can take ON CONFLICT DO NOTHING or DO UPDATE (SQLite and
# PostgreSQL both have them, with the same SQLAlchemy API).
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def insert_on_conflict(session: AsyncSession, table: Table) -> Any:
    """The table's INSERT in the session's dialect, to add an ON CONFLICT clause to."""
    return _INSERTS[session.get_bind().dialect.name](table)


def insert_on_conflict_each(table: Table) -> dict[str, Any]:
    """The table's INSERT in each dialect, to add an ON CONFLICT clause to once, for a
    statement run per batch (building one per call cost more than running it at a batch of
    one); ``in_dialect`` picks the session's."""
    return {name: insert(table) for name, insert in _INSERTS.items()}


def insert_new_only(
    table: Table,
    *,
    conflict_on: list[Column[Any]] | None = None,
    returning: Column[Any] | None = None,
) -> dict[str, Any]:
    """``INSERT ... ON CONFLICT DO NOTHING [RETURNING returning]`` for each dialect, built once
    (``insert_on_conflict_each``). The rows returned are the ones inserted."""
    statements = {
        name: insert.on_conflict_do_nothing(index_elements=conflict_on)
        for name, insert in insert_on_conflict_each(table).items()
    }
    if returning is None:
        return statements
    return {name: statement.returning(returning) for name, statement in statements.items()}


def in_dialect(session: AsyncSession, statements: dict[str, Any]) -> Any:
    """The statement for the session's database, of statements built per dialect."""
    return statements[session.get_bind().dialect.name]


# A customer's lock key: a 64-bit hash of the service's schema and the id. Services may share
# one database (a schema each; the tests do), and PostgreSQL keeps one space of advisory locks
# per database: keyed by the id alone, a service waited for another's transactions of the same
# customer, and the locks of two services, each taking its own in order, closed cycles
# between them (support's stand-in ids before the contacts, a batch in sales).
_LOCK_KEY = "hashtextextended(coalesce(current_schema(), '') || ':' || id, 0)"


def customer_locks(customer_ids: Iterable[uuid.UUID]) -> TextClause:
    """The statement that takes these customers' transaction locks (PostgreSQL advisory locks
    keyed by the customer id in the service's schema, held until the transaction ends), always
    in one order so that two transactions locking overlapping sets wait for each other instead
    of deadlocking. Whatever changes one customer's records across consumers and APIs takes
    them first: a touch applied while a merge or an erasure of its customer commits would
    otherwise be filed under the old id, or a counter updated by both would lose one update."""
    return text(
        f"SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT {_LOCK_KEY} AS k"
        " FROM unnest(CAST(:ids AS text[])) AS id ORDER BY k) AS ordered"
    ).bindparams(ids=[str(c) for c in set(customer_ids)])


def customer_lock_keys(customer_ids: Iterable[uuid.UUID]) -> TextClause:
    """(id, key) of these customers: ``customer_locks`` takes their locks by key, lowest first."""
    return text(
        f"SELECT CAST(id AS uuid), {_LOCK_KEY} FROM unnest(CAST(:ids AS text[])) AS id"
    ).bindparams(ids=[str(c) for c in customer_ids])


# Writes nothing, but begins the write transaction: SQLite's driver begins one only at the
# first write, and the table is in every service's database.
_SQLITE_WRITE_LOCK = text("DELETE FROM processed_events WHERE 0")


async def lock_customers(session: AsyncSession, customer_ids: Iterable[uuid.UUID]) -> None:
    """``customer_locks`` on PostgreSQL. On SQLite, the database's one write lock, taken now:
    as its driver begins a transaction only at the first write, what was read before it (a
    customer's profile) could change under another writer's commit before this one writes (a
    touch filed under a customer merged meanwhile, as the replay test once caught). Nothing
    runs if the transaction has written already: it holds the lock."""
    ids = list(customer_ids)
    if not ids:
        return
    if on_postgres(session):
        await session.execute(customer_locks(ids))
    else:
        await _hold_sqlite_write_lock(session)


# Where these customers' merges lead: they and the ids on the way to their survivors, as the
# database says now (each service reads its own table of who was merged into whom).
TheWay = Callable[[AsyncSession, set[uuid.UUID]], Awaitable[set[uuid.UUID]]]


async def lock_customers_on_the_way(
    session: AsyncSession, customer_ids: Iterable[uuid.UUID], the_way: TheWay, *, rounds: int
) -> set[uuid.UUID]:
    """``lock_customers`` for these customers and those their merges lead to (``the_way``),
    in one statement; the ids locked. Taken after the others, a survivor's lock came after
    its merged id's, against the locks' one order, while a transaction that took both in
    order (a batch of touches of both) held the survivor and waited for the merged id: a
    deadlock. The way is read under the locks, where no merge can lengthen it; one committed
    while this waited for them may have: the locks taken here are given back (a savepoint)
    and the longer way's taken at once. After ``rounds`` such merges the way last read is
    locked, and the caller follows the rest. On SQLite, the database's one lock."""
    wanted = set(customer_ids)
    if not wanted or not on_postgres(session):
        await lock_customers(session, wanted)
        return wanted
    locking = wanted
    for _ in range(rounds):
        savepoint = await session.begin_nested()
        await lock_customers(session, locking)
        way = await the_way(session, wanted)
        if way <= locking:
            await savepoint.commit()
            return locking
        await savepoint.rollback()
        locking = way
    await lock_customers(session, locking)
    return locking


async def for_update(session: AsyncSession, query: Select[Any]) -> Select[Any]:
    """``query``, to read rows in order to change them: two requests changing one row then
    take turns instead of both passing a check on what they read (a ticket resolved twice).
    FOR UPDATE on PostgreSQL; on SQLite, which has no row locks, the database's one write
    lock, taken now (``lock_customers``' way): it has two connections, and one can read while
    the other writes."""
    if on_postgres(session):
        return query.with_for_update()
    await _hold_sqlite_write_lock(session)
    return query


async def get_or_404(
    session: AsyncSession, model: type[Model], row_id: Any, name: str, *, lock: bool = False
) -> Model:
    """The ``model`` row with this primary key, else NotFound ("{name} {id} not found").
    ``lock`` to change it (``for_update``); the row is then read afresh, as the session may
    hold it from before the lock."""
    query = select(model).where(inspect(model).primary_key[0] == row_id)
    if lock:
        query = (await for_update(session, query)).execution_options(populate_existing=True)
    row = await session.scalar(query)
    if row is None:
        raise NotFound(f"{name} {row_id} not found")
    return row


IN_LIST = 500  # ids per IN (...) list: statements of a bounded size, whatever the batch


def chunked(items: Iterable[T], size: int = IN_LIST) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``: one per IN (...) list of a query, or per
    multi-row INSERT."""
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def padded(values: Iterable[T], limit: int = IN_LIST) -> list[T]:
    """``values`` for an IN (...) list, the last repeated up to the next power of two (at most
    ``limit``). Each length of an IN list is an SQL text of its own, and SQLite (128 per
    connection) and asyncpg (100) keep a prepared statement per text: consumer batches of
    every size made 4-9 new statements a minute in each service at half load, each pushing
    another out. Padded, a query has about ten lengths."""
    values = list(values)
    if not values:
        return values
    length = min(1 << (len(values) - 1).bit_length(), max(limit, len(values)))
    return values + values[-1:] * (length - len(values))


def in_lists(items: Iterable[T], size: int = IN_LIST) -> Iterator[list[T]]:
    """``items`` in ``padded`` lists of at most ``size``, one per IN (...) list of a query."""
    for chunk in chunked(items, size):
        yield padded(chunk, size)


# What ``load_rows`` read in a transaction (``session.info``): the keys not found, per model,
# and the rows found; and the rows ``add_row`` added, by model and key.
_MISSING_ROWS = "db.missing_rows"
_ROWS_READ = "db.rows_read"
_ROWS_ADDED = "db.rows_added"


async def load_rows(session: AsyncSession, model: type[Model], keys: Iterable[Any]) -> None:
    """Read the rows of these primary keys (of a one-column key) at once, for ``get_row`` to
    answer without a query: a consumer's handlers, each looking up its event's row, ran a
    query per event, and the session flushed the row the one before had added first (a
    statement more each)."""
    missing = session.info.setdefault(_MISSING_ROWS, {}).setdefault(model, set())
    # The session keeps an unchanged row only while something else refers to it.
    held = session.info.setdefault(_ROWS_READ, [])
    (key_column,) = inspect(model).primary_key
    for chunk in in_lists(set(keys)):
        found = list(await session.scalars(select(model).where(key_column.in_(chunk))))
        held += found
        missing.update(set(chunk) - {getattr(row, key_column.key) for row in found})


async def get_row(session: AsyncSession, model: type[Model], key: Any) -> Model | None:
    """``session.get``, with no query for a row ``load_rows`` read (the session holds it),
    found missing, or ``add_row`` added (which ``session.get`` finds only by a query, after
    flushing it, until the session is flushed)."""
    added = session.info.get(_ROWS_ADDED, {}).get((model, key))
    if added is not None:
        state = inspect(added)
        if state.pending or state.persistent:  # not deleted since
            return added  # type: ignore[no-any-return]
    if key in session.info.get(_MISSING_ROWS, {}).get(model, ()):
        return None
    return await session.get(model, key)


def add_row(session: AsyncSession, row: DeclarativeBase) -> None:
    """``session.add`` for a row ``get_row`` may look up: found from now on."""
    session.add(row)
    (key,) = inspect(row).mapper.primary_key_from_instance(row)
    session.info.setdefault(_ROWS_ADDED, {})[(type(row), key)] = row
    session.info.get(_MISSING_ROWS, {}).get(type(row), set()).discard(key)


async def made_before(
    session: AsyncSession,
    model: type[Model],
    row_id: uuid.UUID | None,
    *,
    name: str,
    field: str,
    same: Callable[[Model], bool],
) -> Model | None:
    """For a create that takes the client's id for its record, so that a retry after a
    timeout makes no second one: the record this id made before, when ``same`` says it is the
    one asked for again (a 409 naming ``field`` when not: "the id of another {name}"); None
    the first time. Copies sent at once take turns on the id's lock, held until the
    transaction ends, and the later ones find the first's record: on PostgreSQL the advisory
    lock a customer's id takes, keyed by this id (a random UUID: no customer's); on SQLite
    the write lock. Take it after the customer's lock, if any, as every caller does."""
    if row_id is None:
        return None
    await lock_customers(session, [row_id])
    earlier = await session.get(model, row_id, populate_existing=True)
    if earlier is None:
        return None
    if not same(earlier):
        raise Conflict(f"{row_id} is the id of another {name}", field=field)
    return earlier


async def lock_table(session: AsyncSession, model: type[DeclarativeBase]) -> None:
    """Let the writers of this model's table wait for one another until the transaction
    ends; readers do not wait. Take it first in a request that replaces a table's rows (a list
    of rules, a policy): two such requests at once would otherwise both find a key free, and
    the later insert fail on the primary key, a 500. On SQLite, the database's write lock."""
    if on_postgres(session):
        # EXCLUSIVE conflicts with every write and with itself, not with plain SELECTs.
        await session.execute(text(f"LOCK TABLE {model.__tablename__} IN EXCLUSIVE MODE"))
    else:
        await _hold_sqlite_write_lock(session)


async def _hold_sqlite_write_lock(session: AsyncSession) -> None:
    """Begin SQLite's write transaction now, unless this one holds the lock already."""
    if not await _sqlite_writing(session):
        await session.execute(_SQLITE_WRITE_LOCK)


async def _sqlite_writing(session: AsyncSession) -> bool:
    """Whether this SQLite transaction already holds the write lock (a consumer's batch has
    recorded its event ids first)."""
    raw = await (await session.connection()).get_raw_connection()
    return bool(getattr(raw.driver_connection, "writing", False))
