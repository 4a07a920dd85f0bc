"""Tables every service database holds besides its own: outbox, processed events, relay lease."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import PlatformBase, UTCDateTime

__all__ = ["OutboxMessage", "PlatformBase", "ProcessedEvent", "RelayLease"]

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMessage(PlatformBase):
    """An event written in the same transaction as the state change it describes."""

    __tablename__ = "outbox"

    # Insertion order is publication order, which keeps each customer's events in order.
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    event_type: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(String(255))
    # None is a tombstone on a compacted topic.
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)


class ProcessedEvent(PlatformBase):
    """The tracking record of an idempotent consumer, committed with its read-model change."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # for the pruning


class RelayLease(PlatformBase):
    """Only the replica holding the lease publishes, so per-key order holds across replicas."""

    __tablename__ = "relay_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
