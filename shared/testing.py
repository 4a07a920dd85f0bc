"""Helpers for every service's tests: run an app, wait for the bus, read a topic."""

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from shared import topics
from shared.auth import ALL_SCOPES, mint_token
from shared.consumer import EventConsumer
from shared.db import customer_lock_keys
from shared.events import encode_event
from shared.kafka import refused_resources
from shared.kafka_admin import AdminClient
from shared.settings import AuthSettings

TEST_JWT_SECRET = "test-secret-" + uuid.uuid4().hex
T = TypeVar("T")


def on_postgres() -> bool:
    """The tests run against PostgreSQL (``DATABASE_URL``), not SQLite files."""
    return bool(os.environ.get("DATABASE_URL"))


# Races between transactions: SQLite has one writer at a time, so only PostgreSQL has them.
postgres_only = pytest.mark.skipif(not on_postgres(), reason="needs DATABASE_URL (PostgreSQL)")


def token(*scopes: str) -> str:
    return mint_token(AuthSettings(secret=TEST_JWT_SECRET), scopes=scopes or ALL_SCOPES)


def auth_headers(*scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(*scopes)}"}


def api_paths(app: FastAPI, path_id: str) -> dict[str, set[str]]:
    """Every path of the app's ``/v1/`` API with its methods, read from its OpenAPI document,
    with ``path_id`` in every path parameter."""
    return {
        re.sub(r"\{[a-z_]+\}", path_id, path): {method.upper() for method in operations}
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/")
    }


def api_routes(app: FastAPI, path_id: str) -> list[tuple[str, str]]:
    """Every (method, path) of the app's ``/v1/`` API (``api_paths``, one by one)."""
    return [
        (method, path)
        for path, methods in api_paths(app, path_id).items()
        for method in sorted(methods)
    ]


@contextlib.asynccontextmanager
async def running(app: FastAPI, *, authenticated: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrations, relay, consumers) and give an HTTP client to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = auth_headers() if authenticated else {}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            yield client


async def eventually(
    check: Callable[[], Awaitable[T]], timeout: float = 15.0, interval: float = 0.05
) -> T:
    """Await ``check`` until it stops raising AssertionError; re-raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


class TopicTail:
    """Reads a topic from the end as it was when created (no consumer group, no rebalance)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            group_id=None,
        )
        self.records: list[Any] = []

    async def __aenter__(self) -> "TopicTail":
        await self.consumer.start()
        deadline = time.monotonic() + 30
        while not (partitions := self.consumer.partitions_for_topic(self.topic)):
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {self.topic} does not exist")
            await asyncio.sleep(0.1)
            await self.consumer._client.force_metadata_update()  # noqa: SLF001
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def collect(
        self, predicate: Callable[[Any], bool], count: int = 1, timeout: float = 15.0
    ) -> list[Any]:
        """Records matching ``predicate``, waiting until there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=100)
            for records in batches.values():
                self.records.extend(records)
            found = [r for r in self.records if predicate(r)]
            if len(found) >= count:
                return found
        found = [r for r in self.records if predicate(r)]
        raise AssertionError(f"expected {count} records on {self.topic}, got {len(found)}")


def app_of(client: httpx.AsyncClient) -> FastAPI:
    return client._transport.app  # type: ignore[attr-defined]  # noqa: SLF001


async def outbox_drained(client: httpx.AsyncClient) -> None:
    """Wait until the service behind ``client`` has published its whole outbox."""
    from sqlalchemy import func, select

    from shared.models import OutboxMessage

    async def drained() -> None:
        async with app_of(client).state.session_factory() as session:
            pending = await session.scalar(
                select(func.count()).where(OutboxMessage.published_at.is_(None))
            )
        assert pending == 0, f"{pending} outbox rows not yet published"

    await eventually(drained)


class BrokerProxy:
    """A TCP proxy in front of a broker that advertises the proxy's port: cutting the proxy
    takes the broker away from every client while the broker keeps its log."""

    def __init__(self, listen_port: int, upstream_port: int) -> None:
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.listen_port)

    async def stop(self) -> None:
        """The broker becomes unreachable: no new connections, open ones are cut."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            sink.close()
            self._writers.discard(sink)


@contextlib.asynccontextmanager
async def isolated_database(directory: Any, name: str) -> AsyncIterator[dict[str, Any]]:
    """Settings for an empty database: a schema in ``DATABASE_URL`` (PostgreSQL), dropped
    afterwards, or else a fresh SQLite file in ``directory``."""
    import os

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from shared.db import async_url

    base = os.environ.get("DATABASE_URL")
    if not base:
        yield {"database_url": f"sqlite+aiosqlite:///{directory / (name + '.db')}"}
        return
    schema = "t_" + uuid.uuid4().hex[:16]
    yield {"database_url": async_url(base), "database_schema": schema}
    engine = create_async_engine(async_url(base))
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


def consumer_record(
    topic: str,
    offset: int,
    event_type: str,
    data: dict[str, Any],
    key: str | None = None,
    event_id: uuid.UUID | None = None,
) -> ConsumerRecord:
    """A fetched Kafka record holding one event, for driving ``EventConsumer.process`` without
    the broker; ``event_id`` to deliver one event again (a new id each time by default)."""
    _, value, headers = encode_event(
        event_type=event_type, source="/crm/test", data=data, subject=key, event_id=event_id
    )
    encoded_key = key.encode() if key is not None else None
    return ConsumerRecord(
        topic, 0, offset, 0, 0, encoded_key, value, None, 0, 0, list(headers.items())
    )


@contextlib.contextmanager
def statements_run(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the engine runs meanwhile (on any of its connections)."""
    run: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        run.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield run
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)


def consumer_of(app: FastAPI, subscription: str) -> EventConsumer:
    """The service's consumer of this subscription (a test hands it fetched batches)."""
    (consumer,) = [c for c in app.state.consumers if c.subscription.name == subscription]
    return consumer


async def statements_per_batch(
    app: FastAPI, subscription: str, batches: list[list[ConsumerRecord]], tables: tuple[str, ...]
) -> list[int]:
    """How many statements naming one of these tables the consumer of this subscription runs
    for each fetched batch, one after another (the relay may run meanwhile, on others)."""
    consumer = consumer_of(app, subscription)
    counts = []
    for records in batches:
        with statements_run(app.state.engine) as statements:
            await consumer.process(records)
        counts.append(len([s for s in statements if any(table in s for table in tables)]))
    return counts


async def until_a_transaction_waits_for_a_lock(session: AsyncSession, count: int = 1) -> None:
    """Return once another PostgreSQL session is blocked on a lock (a row, an advisory lock)
    this session holds, or ``count`` of them are, directly or behind one that is: a race test
    starts its second transaction, waits here, then lets the first commit. Sessions waiting
    for anything else (a service's own consumer, another suite) are not counted."""

    async def blocked() -> None:
        # pg_stat_activity is read once per transaction and then kept: drop that snapshot, or a
        # session that connected after the first look is never seen.
        await session.execute(text("SELECT pg_stat_clear_snapshot()"))
        waiting = await session.scalar(_BLOCKED_BY_THIS_SESSION)
        assert waiting >= count, f"{waiting} transactions are waiting for this one, not {count}"

    await eventually(blocked, timeout=10)


# The sessions waiting for this one's locks, and those waiting for them in turn.
_BLOCKED_BY_THIS_SESSION = text(
    """
    WITH RECURSIVE blocked(pid) AS (
        SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))
        UNION
        SELECT waiting.pid FROM pg_stat_activity AS waiting, blocked
        WHERE blocked.pid = ANY(pg_blocking_pids(waiting.pid))
    )
    SELECT count(*) FROM blocked
    """
)


async def one_write_waits_for_another(
    session_factory: async_sessionmaker[AsyncSession],
    first: Callable[[AsyncSession], Awaitable[Any]],
    second: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Two transactions at once, in a fixed order (PostgreSQL): ``first`` writes, ``second``
    starts and waits for a lock the first holds, the first commits, then the second goes on
    and commits. Returns what ``second`` returned, or raises what it raised."""

    async def run_second() -> T:
        async with session_factory() as session:
            result = await second(session)
            await session.commit()
            return result

    async with session_factory() as session:
        await first(session)
        await session.flush()
        later = asyncio.create_task(run_second())
        await until_a_transaction_waits_for_a_lock(session)
        await session.commit()
    return await later


async def by_lock_order(
    session_factory: async_sessionmaker[AsyncSession], count: int
) -> list[uuid.UUID]:
    """``count`` new customer ids in the order ``shared.db.customer_locks`` takes their locks
    in this database (PostgreSQL)."""
    return await in_lock_order(session_factory, [uuid.uuid4() for _ in range(count)])


async def in_lock_order(
    session_factory: async_sessionmaker[AsyncSession], customer_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """These customer ids in the order ``shared.db.customer_locks`` takes their locks in this
    database (PostgreSQL: the keys are its schema's)."""
    async with session_factory() as session:
        keys = dict((await session.execute(customer_lock_keys(customer_ids))).all())
    return sorted(customer_ids, key=keys.__getitem__)


async def set_topic_configs(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    """Set a topic's configs on the broker, as an operator would have set them by hand."""
    admin = AdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.set_topic_configs({topic: configs})
    finally:
        await admin.close()
    assert refused_resources(response.responses) == ""


async def start_groups_at_the_end(bootstrap: str, groups: list[str]) -> None:
    """Commit every platform topic's end offsets for these consumer groups. Every test's
    services join the same groups (``crm.<service>``), each with a fresh database: without
    this, a test's consumers would first apply every event the tests before it published
    since the group last ran (tens of thousands late in a full run), and the test's own events
    would wait behind them. A group that still has a member (an earlier test's consumer not
    yet timed out) refuses the commit; it is tried again for a few seconds, then left as is."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(CommitFailedError),
        wait=wait_fixed(0.2),
        stop=stop_after_delay(5),
        retry_error_callback=lambda state: None,
    )
    for group in groups:
        await retrying(_commit_the_end, bootstrap, group)


async def _commit_the_end(bootstrap: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(spec.name, partition)
            for spec in topics.ALL_TOPICS
            for partition in sorted(consumer.partitions_for_topic(spec.name) or ())
        ]
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()
