"""The outbox relay: publishes unsent outbox rows to Kafka in insertion order, marks them sent."""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from shared import faults, metrics
from shared.bus import Bus
from shared.db import padded
from shared.events import utcnow
from shared.models import OutboxMessage, RelayLease

log = logging.getLogger(__name__)

# The relay's statements, built once and on the table's columns: at light load every touch is
# a round of its own, and building them anew through the ORM (its bulk UPDATE path above all)
# was about 30 % of a round's CPU (one row per round: 1.55 -> 1.1 ms on SQLite).
_OUTBOX = OutboxMessage.__table__.c
_MARK_SENT = (
    update(OutboxMessage.__table__)
    .where(_OUTBOX.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("at", type_=_OUTBOX.published_at.type))
)


class OutboxRelay:
    """Publishes the outbox to Kafka. Safe with several replicas: only the lease holder sends."""

    def __init__(
        self,
        *,
        service: str,
        session_factory: async_sessionmaker[AsyncSession],
        bus: Bus,
        batch_size: int = 2000,
        poll_interval_s: float = 0.5,
        lease_s: float = 10.0,
        retention: timedelta = timedelta(hours=24),
        send_timeout_s: float = 30.0,
        notify_channel: str | None = None,
    ) -> None:
        self.service = service
        self.session_factory = session_factory
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.lease_s = lease_s
        self.retention = retention
        self.send_timeout_s = send_timeout_s
        self.notify_channel = notify_channel
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wakeup = asyncio.Event()
        self._last_purge = datetime.min.replace(tzinfo=UTC)
        self._trusted_until = 0.0
        self._backlog_recorded = 0.0
        # Plain rows of the columns sent, not ORM objects: nothing here changes them one by
        # one, and building and tracking them was an eighth of support's CPU in a batch ingest.
        self._unsent = (
            select(_OUTBOX.id, _OUTBOX.topic, _OUTBOX.key, _OUTBOX.value, _OUTBOX.headers)
            .where(_OUTBOX.published_at.is_(None))
            .order_by(_OUTBOX.id)
            .limit(batch_size)
        )

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Publish until cancelled; on broker or DB errors back off and try again."""
        # Fix (tests/reliability): the backlog gauges were only set between sends, so while a
        # send hung on an unreachable broker they froze at their last value (0) for the whole
        # outage. They are now refreshed every second whatever the sending side is doing.
        reporter = asyncio.create_task(self._report_backlog_forever())
        try:
            await self._run()
        finally:
            reporter.cancel()
            with contextlib.suppress(BaseException):
                await reporter

    async def _report_backlog_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if time.monotonic() - self._backlog_recorded < 1.0:
                continue
            try:
                async with self.session_factory() as session:
                    await self._record_backlog(session)
            except Exception as exc:  # the DB is down: the publishing side reports it
                log.debug("backlog not measured", extra={"error": repr(exc)})

    async def _run(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
            before_sleep=lambda state: log.warning(
                "outbox relay failed, retrying",
                extra={"service": self.service, "error": repr(state.outcome.exception())},
            ),
        ):
            with attempt:
                try:
                    await self._loop()
                except Exception:
                    await self.bus.reset()
                    raise

    async def _loop(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await self._listen_for_commits(stack)
            await self._publish_forever()

    async def _listen_for_commits(self, stack: contextlib.AsyncExitStack) -> None:
        """On PostgreSQL, commits of other replicas wake this one through LISTEN/NOTIFY."""
        engine = self.session_factory.kw.get("bind")
        if self.notify_channel is None or engine is None or engine.dialect.name != "postgresql":
            return
        connection = await stack.enter_async_context(engine.connect())
        raw = (await connection.get_raw_connection()).driver_connection
        await raw.add_listener(self.notify_channel, lambda *_: self.wake())

    async def _publish_forever(self) -> None:
        while True:
            self._wakeup.clear()
            published = await self.publish_pending()
            await self.purge_old()
            if published >= self.batch_size:
                continue  # more may be waiting
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the wake-up, and the relay would outlive its service.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wakeup.wait()

    async def publish_pending(self) -> int:
        """Publish one batch if this replica holds the lease; returns how many were sent."""
        if not await self._hold_lease():
            if time.monotonic() - self._backlog_recorded > 1.0:
                # Every replica reports the shared backlog, whichever one a scrape reaches.
                async with self.session_factory() as session:
                    await self._record_backlog(session)
            return 0
        async with self.session_factory() as session:
            rows = (await session.execute(self._unsent)).all()
            if rows:
                # Bounded, connecting and every send's wait for metadata included: a broker
                # that accepts connections but never answers must not hang the relay.
                async with asyncio.timeout(self.send_timeout_s):
                    deliveries = await self._send(rows)
                failures = [d.exception() for d in deliveries if d.exception() is not None]
                if failures:
                    raise failures[0]
                faults.crash_point("relay.after_send")  # fault injection: acked, not yet marked
                await session.execute(
                    _MARK_SENT, {"ids": padded(row.id for row in rows), "at": utcnow()}
                )
            if time.monotonic() - self._backlog_recorded > 1.0 or not rows:
                await self._record_backlog(session)
            await session.commit()
        for topic, count in Counter(row.topic for row in rows).items():
            metrics.EVENTS_PUBLISHED.labels(self.service, topic).inc(count)
        return len(rows)

    async def _send(self, rows: Sequence[Row[Any]]) -> list[asyncio.Future[Any]]:
        """Send the whole batch, then wait for every ack or failure: aiokafka keeps one request
        in flight per partition, so per-key order is kept while the batch is pipelined."""
        producer = await self.bus.producer()
        faults.crash_point("relay.before_send")  # fault injection (tests/reliability)
        deliveries = []
        for row in rows:
            deliveries.append(
                await producer.send(
                    row.topic,
                    value=row.value,
                    key=row.key.encode() if row.key is not None else None,
                    headers=[(k, str(v).encode()) for k, v in row.headers.items()],
                )
            )
            if len(rows) > 1 and faults.armed("relay.mid_batch"):  # fault injection:
                await deliveries[0]  # the first row is on the broker, the rest unsent
                faults.crash_point("relay.mid_batch")
        await producer.flush()  # every batch acked or failed; a quarter cheaper than gather()
        return deliveries

    async def _hold_lease(self) -> bool:
        # Renew only past half the lease: no other replica can take it before it expires.
        if time.monotonic() < self._trusted_until:
            return True
        now = utcnow()
        expires = now + timedelta(seconds=self.lease_s)
        async with self.session_factory() as session:
            result = await session.execute(
                update(RelayLease)
                .where(RelayLease.name == "outbox")
                .where((RelayLease.holder == self.holder) | (RelayLease.expires_at < now))
                .values(holder=self.holder, expires_at=expires)
            )
            if result.rowcount == 0:
                exists = await session.get(RelayLease, "outbox")
                if exists is not None:
                    await session.rollback()
                    return False
                session.add(RelayLease(name="outbox", holder=self.holder, expires_at=expires))
            try:
                await session.commit()
            except IntegrityError:
                return False  # another replica inserted the lease first
        self._trusted_until = time.monotonic() + self.lease_s / 2
        return True

    async def release_lease(self) -> None:
        self._trusted_until = 0.0
        async with self.session_factory() as session:
            await session.execute(
                delete(RelayLease)
                .where(RelayLease.name == "outbox")
                .where(RelayLease.holder == self.holder)
            )
            await session.commit()

    async def _record_backlog(self, session: AsyncSession) -> None:
        self._backlog_recorded = time.monotonic()
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.published_at.is_(None)
                )
            )
        ).one()
        metrics.OUTBOX_BACKLOG.labels(self.service).set(count)
        age = 0.0
        if oldest is not None:
            age = max(0.0, (utcnow() - oldest).total_seconds())
        metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(age)

    async def purge_old(self) -> None:
        """Drop rows published longer ago than the retention, at most once a minute."""
        now = utcnow()
        if now - self._last_purge < timedelta(minutes=1):
            return
        self._last_purge = now
        async with self.session_factory() as session:
            await session.execute(
                delete(OutboxMessage).where(OutboxMessage.published_at < now - self.retention)
            )
            await session.commit()
