import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, Float, Index, Integer, Numeric, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, new_metadata

Money = Numeric(18, 2)
# What a Money column holds is below this, in cents: PostgreSQL fails on a larger parameter.
MONEY_LIMIT = Decimal(10) ** 16


class Base(DeclarativeBase):
    metadata = new_metadata()


class Lead(Base):
    """A prospect before it is a customer. Its PII (name, e-mail, phone) stays in sales."""

    __tablename__ = "leads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(String(200))  # None once erased
    company: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    segment: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(16), index=True)
    score: Mapped[int] = mapped_column(Integer)
    fit_score: Mapped[int] = mapped_column(Integer)
    engagement_score: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(100), index=True)
    territory: Mapped[str | None] = mapped_column(String(100))
    disqualify_reason: Mapped[str | None] = mapped_column(String(500))
    # Known from the start (a campaign's contact) or set by the conversion.
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    erased: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_leads_created", "created_at", "id"),)


class AssignmentRuleRow(Base):
    """Territory rules for new leads, applied in ``position`` order."""

    __tablename__ = "assignment_rules"

    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    territory: Mapped[str | None] = mapped_column(String(100))
    countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    segment: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(32))


class Account(Base):
    """A customer as sales' territory sees it: who owns the account. Country from contacts."""

    __tablename__ = "accounts"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    country: Mapped[str | None] = mapped_column(String(2))
    owner: Mapped[str | None] = mapped_column(String(100), index=True)
    territory: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Opportunity(Base):
    __tablename__ = "opportunities"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    title: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    expected_close: Mapped[date | None] = mapped_column(Date)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    probability: Mapped[Decimal] = mapped_column(Numeric(5, 4))
    close_reason: Mapped[str | None] = mapped_column(String(500))
    lead_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_opportunities_stage", "currency", "stage"),
        Index("ix_opportunities_opened", "opened_at", "id"),
    )


class Activity(Base):
    """A rep's call, meeting, e-mail or message; also published as an interaction."""

    __tablename__ = "activities"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(200))
    sentiment: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(200))
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_activities_customer", "customer_id", "occurred_at", "id"),)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Orders taken in from an accounting system: its id makes a re-publish harmless.
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SupportTicket(Base):
    """Projection of crm.support.v1: what a rep must know before calling (no ticket text)."""

    __tablename__ = "support_tickets"

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    subject: Mapped[str | None] = mapped_column(String(500))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerScore(Base):
    """Projection of crm.analytics.v1 scores: the latest per customer."""

    __tablename__ = "customer_scores"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    recency_days: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    monetary: Mapped[Decimal] = mapped_column(Money)
    clv: Mapped[Decimal] = mapped_column(Money)
    churn_risk: Mapped[float] = mapped_column(Float)
    churn_level: Mapped[str] = mapped_column(String(16))
    factors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_customer_scores_clv", "clv", "customer_id"),
        Index("ix_customer_scores_churn", "churn_risk", "customer_id"),
    )
