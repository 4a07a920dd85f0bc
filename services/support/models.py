import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    team: Mapped[str] = mapped_column(String(64), index=True)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    capacity: Mapped[int] = mapped_column(Integer)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TeamCategory(Base):
    """Which team owns a ticket category (routing sends the category's tickets there)."""

    __tablename__ = "team_categories"

    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), index=True)


class RoutingRuleRow(Base):
    """An ordered routing rule: tickets matching every condition set go to the team."""

    __tablename__ = "routing_rules"

    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    team: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    subject: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    # Opened from an inbound message whose sender no contact has (yet): customer_id is then a
    # stand-in id derived from the sender, re-pointed when contacts learns the identity.
    unknown_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The latest reply by an agent (the SLA scheduler re-assigns tickets left unanswered).
    agent_replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    satisfaction_score: Mapped[int | None] = mapped_column(Integer)
    satisfaction_comment: Mapped[str | None] = mapped_column(Text)
    satisfaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_tickets_opened", "opened_at", "id"),
        Index("ix_tickets_status_priority", "status", "priority"),
        # Routing counts each candidate agent's open tickets: a range of this index each.
        Index("ix_tickets_agent_status", "agent_id", "status"),
    )


class TicketMessage(Base):
    __tablename__ = "ticket_messages"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    author_type: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[str | None] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlaPolicyRow(Base):
    """Agreed times per ticket priority, in minutes (None: no target)."""

    __tablename__ = "sla_policies"

    priority: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_response_minutes: Mapped[int | None] = mapped_column(Integer)
    resolution_minutes: Mapped[int | None] = mapped_column(Integer)
    reassign_after_minutes: Mapped[int | None] = mapped_column(Integer)


class Macro(Base):
    """A canned answer agents reuse."""

    __tablename__ = "macros"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    body: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerIdentity(Base):
    """Projection of contacts' identities, only to recognise inbound senders (PII: an erasure
    deletes it)."""

    __tablename__ = "customer_identities"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(254), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
