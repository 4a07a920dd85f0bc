"""Marketing's tables: its own records (segments, campaigns, tasks, sends, engagement) and the
projections of other services' events it segments and sends on (recipients, tickets, orders,
leads, scores). The shared timeline, profiles and policy are ``shared.customer_view``'s."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, new_metadata

# Wide enough for an order's amount from sales and a CLV from analytics (shared.values.MAX_AMOUNT).
Money = Numeric(20, 4, asdecimal=True)


class Base(DeclarativeBase):
    metadata = new_metadata()


class SendStatus(StrEnum):
    queued = "queued"  # waiting for the sender
    sending = "sending"  # claimed by a sender until ``claimed_until``
    sent = "sent"  # the provider accepted it
    suppressed = "suppressed"  # the contact check or the budget held it back
    failed = "failed"  # every attempt failed


# Sends that count against the budget (a failed or suppressed send costs nothing).
COSTING = (SendStatus.queued, SendStatus.sending, SendStatus.sent)


# ---- projections of other services' events -------------------------------------------------


class Recipient(Base):
    """Projection of crm.contacts.v1 with the PII a send needs; deleted on erasure."""

    __tablename__ = "recipients"

    contact_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(64), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(64))
    identities: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TicketState(Base):
    """Projection of crm.support.v1: each ticket's priority and status, per customer."""

    __tablename__ = "tickets"

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Order(Base):
    """Projection of crm.sales.v1 orders: last purchase per customer, campaign conversions."""

    __tablename__ = "orders"

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Lead(Base):
    """Projection of crm.sales.v1 leads that name a campaign (the campaign's conversions)."""

    __tablename__ = "leads"

    lead_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Score(Base):
    """Projection of crm.analytics.v1: the customer's latest scores."""

    __tablename__ = "scores"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    churn_level: Mapped[str] = mapped_column(String(16))
    churn_risk: Mapped[float] = mapped_column(Float)
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    clv: Mapped[Decimal] = mapped_column(Money)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---- marketing's own records -----------------------------------------------------------------


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(16))  # dynamic | static
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_segments_created", "created_at", "id"),)


class SegmentMember(Base):
    """The members of a static segment, frozen when it was created."""

    __tablename__ = "segment_members"

    segment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    segment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("segments.id"), index=True)
    subject: Mapped[str | None] = mapped_column(String(500))
    template: Mapped[str] = mapped_column(Text)
    budget: Mapped[Decimal] = mapped_column(Money)
    cost_per_send: Mapped[Decimal] = mapped_column(Money)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # draft | scheduled | sending | completed | cancelled
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_campaigns_created", "created_at", "id"),
        Index("ix_campaigns_status_scheduled", "status", "scheduled_at"),
    )


class CampaignTask(Base):
    __tablename__ = "campaign_tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    assignee: Mapped[str] = mapped_column(String(200), index=True)
    due_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # todo | in_progress | done
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Send(Base):
    """One message of a campaign to one customer: at most one per (campaign, customer)."""

    __tablename__ = "sends"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # the sender holding the claim
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", name="uq_sends_campaign_customer"),
        Index("ix_sends_status_claimed", "status", "claimed_until"),
    )


class Engagement(Base):
    """What a recipient did with a send: the first of each kind counts."""

    __tablename__ = "engagements"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    send_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sends.id"))
    campaign_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # An unsubscribe that opted the channel out here and that no contact snapshot has shown
    # back yet: until one does, a snapshot without the opt-out was made before contacts took
    # it in (however late), and must not opt the customer back in.
    awaiting_contacts: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("send_id", "kind", name="uq_engagements_send_kind"),)
