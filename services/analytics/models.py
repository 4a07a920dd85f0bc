"""Analytics' fact tables: natural upserts keyed by the source record id (ticket, message,
opportunity, order, send), so a redelivered or replayed event changes nothing.

Facts carry the customer id only to find a customer's figures; an erasure sets it to None and
keeps the anonymous row for the aggregates. The shared timeline, preferences and policy tables
come from ``shared.customer_view``.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, Index, Integer, Numeric, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, new_metadata

Money = Numeric(18, 2)


class Base(DeclarativeBase):
    metadata = new_metadata()


class Profile(Base):
    """The profile summary of the 360 (from crm.contacts.v1). PII: an erasure deletes it."""

    __tablename__ = "profiles"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    company: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TicketFact(Base):
    """One support ticket, as its events on crm.support.v1 told it. The day, weekday and month
    of opening are stored so the KPIs group without dialect-specific date functions."""

    __tablename__ = "ticket_facts"

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    # An unknown sender's ticket, filed under a stand-in id until the sender is identified:
    # that id is no customer to score.
    unknown_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    # That stand-in id once the sender was identified: an event still under it is from before
    # the identification (late or delivered again), and leaves the ticket with the contact.
    stand_in_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    channel: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))
    # None until the TicketOpened event arrives (another event of the ticket may come first
    # on a replay of one topic only).
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_day: Mapped[date | None] = mapped_column(Date)
    opened_month: Mapped[str | None] = mapped_column(String(7))
    opened_weekday: Mapped[int | None] = mapped_column(Integer)  # 0 = Monday
    agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # currently assigned
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    # The latest resolution; cleared by a later reopening (the ticket is not resolved then).
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    reopened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    csat: Mapped[int | None] = mapped_column(Integer)
    csat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    csat_agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    sla_breaches: Mapped[int] = mapped_column(Integer, default=0)
    # Derived when the times are known, so a KPI is a plain AVG() on every database.
    first_response_seconds: Mapped[float | None] = mapped_column(Float)
    resolution_seconds: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        # Covering the KPI queries, so each is one index range scan.
        Index("ix_ticket_facts_opened", "opened_day", "first_response_seconds"),
        Index(
            "ix_ticket_facts_resolved_by",
            "resolved_by",
            "resolved_at",
            "resolution_seconds",
            "messages",
            "csat",
        ),
        Index("ix_ticket_facts_csat", "csat_at", "csat"),
    )


class TicketMessageFact(Base):
    """One message of a ticket (no body): counted once however often its event arrives."""

    __tablename__ = "ticket_message_facts"

    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    author_type: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TicketReopenFact(Base):
    """One reopening of a ticket: counted once however often, under whatever event id, it
    arrives."""

    __tablename__ = "ticket_reopen_facts"

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    reopened_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)


class SlaBreachFact(Base):
    """One breached target of a ticket (first_response or resolution)."""

    __tablename__ = "sla_breach_facts"

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    target: Mapped[str] = mapped_column(String(32), primary_key=True)
    priority: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LeadFact(Base):
    __tablename__ = "lead_facts"

    lead_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    source: Mapped[str | None] = mapped_column(String(64))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    status: Mapped[str] = mapped_column(String(16), default="new")
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OpportunityFact(Base):
    __tablename__ = "opportunity_facts"

    opportunity_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    owner: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    amount: Mapped[Decimal] = mapped_column(Money)
    # rules.weighted(amount, probability): the KPIs sum it, so they round each deal as sales does.
    weighted: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    expected_close: Mapped[date | None] = mapped_column(Date)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The time of the latest stage change applied: an older one arriving later is ignored.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    cycle_days: Mapped[float | None] = mapped_column(Float)  # opened to won or lost


class OrderFact(Base):
    __tablename__ = "order_facts"

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ordered_month: Mapped[str] = mapped_column(String(7))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignFact(Base):
    __tablename__ = "campaign_facts"

    campaign_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    budget: Mapped[Decimal] = mapped_column(Money)
    cost_per_send: Mapped[Decimal] = mapped_column(Money)
    launched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SendFact(Base):
    """One marketing send and what the recipient did with it."""

    __tablename__ = "send_facts"

    send_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    channel: Mapped[str] = mapped_column(String(16))
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    status: Mapped[str] = mapped_column(String(16))  # sent | failed | engaged (no send seen)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SuppressionFact(Base):
    """A send marketing held back, one row per reason (keyed by campaign, customer, reason)."""

    __tablename__ = "suppression_facts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # uuid5 of the natural key
    campaign_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    reason: Mapped[str] = mapped_column(String(64))
    suppressed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class TouchDaily(Base):
    """Touches per day, department, actor and direction: the usage figures. Anonymous, so
    they survive erasures."""

    __tablename__ = "touch_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    department: Mapped[str] = mapped_column(String(16), primary_key=True)
    actor: Mapped[str] = mapped_column(String(200), primary_key=True)  # "" when none
    direction: Mapped[str] = mapped_column(String(16), primary_key=True)
    touches: Mapped[int] = mapped_column(Integer, default=0)


class CountedTouch(Base):
    """A touch counted in ``touch_daily``: its id only, tied to no one, so a touch delivered
    again is not counted again. The timeline's row, which told that before, goes with its
    customer's erasure; this stays and says nothing about the person."""

    __tablename__ = "counted_touches"

    interaction_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class CustomerScore(Base):
    """The latest scores of a customer (what crm.customer.scored.v1 last published)."""

    __tablename__ = "customer_scores"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    rfm_segment: Mapped[str | None] = mapped_column(String(32), index=True)
    recency_days: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    # The reporting currency monetary and clv are in; None on rows scored before it was kept
    # (they summed every currency's orders) until the customer is rescored.
    currency: Mapped[str | None] = mapped_column(String(3))
    monetary: Mapped[Decimal] = mapped_column(Money)
    # The other currencies' non-refunded orders: {currency: decimal string}.
    monetary_other_currencies: Mapped[dict[str, str] | None] = mapped_column(JSON)
    clv: Mapped[Decimal] = mapped_column(Money)
    churn_risk: Mapped[float] = mapped_column(Float)
    churn_level: Mapped[str] = mapped_column(String(8), index=True)
    factors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PublishedScore(Base):
    """A rebuild's copy of each customer's last score on crm.analytics.v1 (the event's data),
    compared with the rebuilt one a chunk of customers at a time (``scoring.publish_changed``):
    held in memory, every customer's took the rebuild's memory in proportion to the customer
    base. Empty but during a rebuild."""

    __tablename__ = "rebuild_published_scores"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    score: Mapped[dict[str, Any]] = mapped_column(JSON)
