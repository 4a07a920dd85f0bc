"""The tables of the customer view every department service keeps in its own database."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, new_metadata


class CustomerViewBase(DeclarativeBase):
    metadata = new_metadata()


class ProfileStatus(StrEnum):
    active = "active"
    merged = "merged"
    erased = "erased"


class TimelineEntry(CustomerViewBase):
    """Projection of crm.interactions.v1: every department's touches, per customer."""

    __tablename__ = "timeline"

    interaction_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    department: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(200))
    sentiment: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(200))
    ref_type: Mapped[str | None] = mapped_column(String(64))
    ref_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_timeline_customer", "customer_id", "occurred_at", "interaction_id"),
    )


class CustomerProfile(CustomerViewBase):
    """Projection of crm.contacts.v1: only what contact checks need (no names, no addresses).

    A merged profile points at its survivor; an erased one is a marker that keeps late touches
    from bringing the person back."""

    __tablename__ = "customer_profiles"

    contact_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=ProfileStatus.active)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    merged_into: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ContactPolicyRow(CustomerViewBase):
    """Projection of the company-wide contact policy (a single row)."""

    __tablename__ = "contact_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
