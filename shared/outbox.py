"""Transactional outbox: events are rows written in the transaction of the state change.

``add_event`` is all a service calls; ``shared.relay`` publishes the rows. When a session that
wrote to the outbox commits, the relay is woken at once instead of waiting for its next poll.
"""

import uuid
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from pydantic import BaseModel
from sqlalchemy import event as sa_event
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared import tracing
from shared.db import in_dialect, insert_new_only, on_postgres
from shared.errors import TooLarge
from shared.events import encode_event, tombstone_headers, utcnow
from shared.models import OutboxMessage
from shared.request_context import current_request_id

# Session.info keys: _PENDING is set by add_event; the service's session factory sets the
# in-process wake-up (NOTIFY) and the PostgreSQL channel other replicas listen on.
_PENDING = "outbox_pending"
NOTIFY = "outbox_notify"
NOTIFY_CHANNEL = "outbox_notify_channel"
_INSERT_ONCE = insert_new_only(OutboxMessage.__table__, conflict_on=[OutboxMessage.event_id])

# The largest event the outbox takes. Kafka's producers and brokers refuse a record over about
# 1 MB by default (the headers and the key take the rest), and the relay publishes in order: a
# row the bus refuses would hold back every row after it, forever. Such a change is refused
# instead, before anything is written.
MAX_EVENT_BYTES = 900_000


def add_event(
    session: AsyncSession,
    *,
    topic: str,
    key: str | None,
    event_type: str,
    source: str,
    data: BaseModel | dict[str, Any],
    subject: str | None = None,
    time: datetime | None = None,
) -> uuid.UUID:
    """Stage an event in the caller's transaction; it is published only if that commits."""
    row = event_row(
        topic=topic,
        key=key,
        event_type=event_type,
        source=source,
        data=data,
        subject=subject,
        time=time,
    )
    session.add(OutboxMessage(**row))
    session.info[_PENDING] = True
    return row["event_id"]


def add_tombstone(
    session: AsyncSession,
    *,
    topic: str,
    key: str,
    event_id: uuid.UUID,
    event_type: str,
    source: str,
    time: datetime,
) -> None:
    """A null value for ``key`` on a compacted topic, so compaction drops the key's history.
    Its headers carry the attributes of the event that ended the key (``event_id``, an
    erasure), which compaction removes: ``shared.events.tombstone_headers``."""
    headers = tombstone_headers(
        event_id=str(event_id), event_type=event_type, source=source, subject=key, time=time
    )
    session.add(
        OutboxMessage(
            **_row(
                event_id=uuid.uuid4(),  # the row's own: the outbox's event ids are unique
                event_type="tombstone",
                topic=topic,
                key=key,
                value=None,
                headers={name: value.decode() for name, value in headers.items()},
            )
        )
    )
    session.info[_PENDING] = True


def event_row(
    *,
    topic: str,
    key: str | None,
    event_type: str,
    source: str,
    data: BaseModel | dict[str, Any],
    subject: str | None = None,
    time: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """An outbox row as a dict: ``add_rows`` inserts many of them in one statement. The event
    id is new unless given (a touch's is its interaction id: ``add_rows_once``)."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    event_id, value, headers = encode_event(
        event_type=event_type,
        source=source,
        data=payload,
        subject=subject,
        event_id=event_id,
        time=time,
    )
    if len(value) > MAX_EVENT_BYTES:
        what = event_type.removeprefix("crm.").rsplit(".", 1)[0].replace("_", " ")
        raise TooLarge(
            f"the {what} event this change publishes would be {len(value):,} bytes, more than"
            f" the bus takes ({MAX_EVENT_BYTES:,}): nothing was changed"
        )
    return _row(
        event_id=uuid.UUID(event_id),
        event_type=event_type,
        topic=topic,
        key=key,
        value=value,
        headers={k: v.decode() for k, v in headers.items()},
    )


async def add_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Bulk paths (imports, batches): many events in one INSERT, in list order (the table's
    Core insert: the ORM's bulk path costs a third more per row)."""
    if rows:
        await session.execute(insert(OutboxMessage.__table__), rows)
        session.info[_PENDING] = True


async def add_rows_once(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """``add_rows``, leaving out the rows whose event id the outbox holds already: a client
    that sends a touch again with its interaction id (a retry after a timeout) gets the one
    event it first sent, not a second one that every consumer would count again."""
    if rows:
        await session.execute(in_dialect(session, _INSERT_ONCE), rows)
        session.info[_PENDING] = True


def add_rows_before_commit(session: Session, rows: list[dict[str, Any]]) -> None:
    """``add_rows`` for a ``before_commit`` hook, where the session is the synchronous one."""
    if rows:
        session.execute(insert(OutboxMessage.__table__), rows)
        if not session.info.get(_PENDING):
            # The NOTIFY hook may have run already and found nothing to announce.
            _notify_other_replicas(session)
        session.info[_PENDING] = True


def _row(
    *,
    event_id: uuid.UUID,
    event_type: str,
    topic: str,
    key: str | None,
    value: bytes | None,
    headers: dict[str, str],
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": {**headers, **_context_headers()},
        "created_at": utcnow(),
    }


# The headers of the last request or batch that wrote events, with what they were made from.
_last_context: tuple[str | None, otel_context.Context, dict[str, str]] | None = None


def _context_headers() -> dict[str, str]:
    """The request id and the trace context (``traceparent``) of the request or the consumed
    batch writing events. Every row a batch writes carries the same ones: they are made once
    and reused while the request id and the current span stay the same (injecting the trace
    context took 3.8 us a row, about a sixteenth of a touch taken in by a batch)."""
    global _last_context
    request_id, context = current_request_id(), otel_context.get_current()
    last = _last_context
    if last is not None and last[0] == request_id and last[1] is context:
        return last[2]
    headers = {"x-request-id": request_id} if request_id else {}
    tracing.inject(headers)
    _last_context = (request_id, context, headers)
    return headers


@sa_event.listens_for(Session, "before_commit")
def _notify_if_pending(session: Session) -> None:
    if session.info.get(_PENDING):
        _notify_other_replicas(session)


def _notify_other_replicas(session: Session) -> None:
    channel = session.info.get(NOTIFY_CHANNEL)
    if channel and on_postgres(session):
        # Delivered by PostgreSQL only if this transaction commits (twice in one: once).
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


@sa_event.listens_for(Session, "after_commit")
def _wake_relay_after_commit(session: Session) -> None:
    if session.info.pop(_PENDING, False):
        notify = session.info.get(NOTIFY)
        if notify is not None:
            notify()


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
