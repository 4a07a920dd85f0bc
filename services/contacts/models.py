import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import UTCDateTime, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class ContactStatus(StrEnum):
    active = "active"
    merged = "merged"
    erased = "erased"


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), default=ContactStatus.active)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    company: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Blocking keys for near-duplicate search (rules.blocking_key: at most 100 characters),
    # indexed with the status (__table_args__).
    last_name_key: Mapped[str | None] = mapped_column(String(100))
    company_key: Mapped[str | None] = mapped_column(String(200))
    merged_into: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    identities: Mapped[list["ContactIdentity"]] = relationship(
        back_populates="contact",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="(ContactIdentity.kind, ContactIdentity.value)",
    )

    __table_args__ = (
        Index("ix_contacts_created", "created_at", "id"),
        # With the status, counting the active contacts per key (the duplicate blocks) reads
        # the index alone: 106 -> 13 ms for last names at 100,000 contacts on SQLite.
        Index("ix_contacts_last_name_key", "last_name_key", "status"),
        Index("ix_contacts_company_key", "company_key", "status"),
    )


class ContactIdentity(Base):
    """A way to reach or recognise a contact (e-mail, phone, messenger handle). Unique platform-wide."""

    __tablename__ = "contact_identities"

    # The identity itself is the key: one e-mail or phone belongs to one contact.
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(254), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )

    contact: Mapped[Contact] = relationship(back_populates="identities")


class ContactActivity(Base):
    """Projection of crm.interactions.v1: when each contact was last touched, by anyone."""

    __tablename__ = "contact_activity"

    contact_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    interactions_total: Mapped[int] = mapped_column(Integer, default=0)
    last_interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ContactPolicyRow(Base):
    """The company-wide default contact policy (a single row)."""

    __tablename__ = "contact_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
