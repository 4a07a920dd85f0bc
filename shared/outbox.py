"""Transactional outbox: events are rows written in the transaction of the state change.

``add_event`` is all a service calls; ``shared.relay`` publishes the rows. When a session that
wrote to the outbox commits, the relay is woken at once instead of waiting for its next poll.
"""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.events import encode_event, utcnow
from shared.models import OutboxMessage
from shared.request_context import current_request_id

# Session.info keys: set by add_event, read by the after_commit hook below.
_PENDING = "outbox_pending"
NOTIFY = "outbox_notify"


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
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    event_id, value, headers = encode_event(
        event_type=event_type, source=source, data=payload, subject=subject, time=time
    )
    add_raw(session, event_id=uuid.UUID(event_id), event_type=event_type, topic=topic, key=key,
            value=value, headers={k: v.decode() for k, v in headers.items()})
    return uuid.UUID(event_id)


def add_tombstone(session: AsyncSession, *, topic: str, key: str) -> None:
    """A null value for ``key`` on a compacted topic, so compaction drops the key's history."""
    add_raw(session, event_id=uuid.uuid4(), event_type="tombstone", topic=topic, key=key,
            value=None, headers={})


def add_raw(
    session: AsyncSession,
    *,
    event_id: uuid.UUID,
    event_type: str,
    topic: str,
    key: str | None,
    value: bytes | None,
    headers: dict[str, str],
) -> None:
    request_id = current_request_id()
    if request_id:
        headers = {**headers, "x-request-id": request_id}
    session.add(
        OutboxMessage(
            event_id=event_id,
            event_type=event_type,
            topic=topic,
            key=key,
            value=value,
            headers=headers,
            created_at=utcnow(),
        )
    )
    session.info[_PENDING] = True


@sa_event.listens_for(Session, "after_commit")
def _wake_relay_after_commit(session: Session) -> None:
    if session.info.pop(_PENDING, False):
        notify = session.info.get(NOTIFY)
        if notify is not None:
            notify()


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
