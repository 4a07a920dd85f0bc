"""The changes other services' events make to marketing's records (applied by consumers.py):
recipients from crm.contacts.v1 (through the customer view's hooks), tickets from
crm.support.v1, orders and leads from crm.sales.v1, scores from crm.analytics.v1.
Natural upserts, so a replay changes nothing. Never commits."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing.models import (
    COSTING,
    Campaign,
    Engagement,
    Lead,
    Order,
    Recipient,
    Score,
    SegmentMember,
    Send,
    SendStatus,
    TicketState,
)
from services.marketing.rules import bus_channel
from shared.contact_rules import Reason
from shared.contracts.analytics import CustomerScored
from shared.contracts.sales import OrderPlaced
from shared.customer_view import batch_locked, filed_under, projection
from shared.db import add_row, get_row, in_lists
from shared.events import ContactPreferences, ContactSnapshot, utcnow

OPEN_TICKET_STATUSES = ("open", "pending")


# ---- contacts (hooks of shared.customer_view) -----------------------------------------------


async def contact_changed(session: AsyncSession, contact: ContactSnapshot) -> None:
    preferences = contact.preferences.model_dump(mode="json")
    await _keep_unsubscribes(session, contact.contact_id, preferences["opted_out_channels"])
    recipient = await get_row(session, Recipient, contact.contact_id)
    if recipient is None:
        recipient = Recipient(contact_id=contact.contact_id, created_at=contact.created_at)
        add_row(session, recipient)
    recipient.first_name = contact.first_name
    recipient.last_name = contact.last_name
    recipient.country = contact.country
    recipient.email = contact.email
    recipient.phone = contact.phone
    recipient.identities = {i.kind: i.value for i in contact.identities}
    recipient.updated_at = utcnow()
    await keep_preferences(session, recipient, preferences)


async def keep_preferences(
    session: AsyncSession, recipient: Recipient, preferences: dict[str, Any]
) -> None:
    """Marketing keeps the consent twice: on the recipient (what launches and the sender
    read) and in the customer view (the contact check it serves). Both change together."""
    recipient.preferences = preferences
    await projection.contact_changed(
        session,
        recipient.contact_id,
        ContactPreferences.model_validate(preferences),
        locked=batch_locked(session),  # a contacts batch's, or take the customer's
    )


# The unsubscribes waiting for contacts, per customer, that ``read_unsubscribes_waiting`` read
# for a batch of contact events (``session.info``).
_WAITING = "marketing.unsubscribes_waiting"
_UNSUBSCRIBES_WAITING = (
    select(Engagement.customer_id, Engagement.id, Campaign.channel)
    .join(Campaign, Engagement.campaign_id == Campaign.id)
    .where(Engagement.kind == "unsubscribed", Engagement.awaiting_contacts)
)


async def read_unsubscribes_waiting(
    session: AsyncSession, contact_ids: set[uuid.UUID], _snapshots: list[ContactSnapshot]
) -> None:
    """Those of a batch's contacts at once, for ``_keep_unsubscribes``: a query each, and
    the flush of the rows the event before had added, were most of a contact event's cost."""
    waiting: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {c: [] for c in contact_ids}
    for chunk in in_lists(contact_ids):
        query = _UNSUBSCRIBES_WAITING.where(Engagement.customer_id.in_(chunk))
        for customer_id, engagement_id, channel in await session.execute(query):
            waiting[customer_id].append((engagement_id, channel))
    session.info[_WAITING] = waiting


async def _keep_unsubscribes(
    session: AsyncSession, customer_id: uuid.UUID, opted_out: list[str]
) -> None:
    """An unsubscribe here is honoured at once (engagement.record) and reaches contacts over
    the bus, maybe late (its consumer behind): a snapshot without it, even one published
    after it, was made before contacts took it in and must not undo it. The first snapshot
    with the opt-out shows contacts has it; one without it after that is a re-subscription.
    ``opted_out`` (the snapshot's) gets the unsubscribes still waiting."""
    read = session.info.get(_WAITING, {})
    if customer_id in read:
        # Once: this may clear some, and a later snapshot in the batch reads them afresh.
        waiting = read.pop(customer_id)
    else:
        query = _UNSUBSCRIBES_WAITING.where(Engagement.customer_id == customer_id)
        waiting = [
            (engagement_id, channel) for _, engagement_id, channel in await session.execute(query)
        ]
    in_snapshot = set(opted_out)
    shown: list[uuid.UUID] = []
    for engagement_id, campaign_channel in waiting:
        channel = bus_channel(campaign_channel).value
        if channel in in_snapshot:
            shown.append(engagement_id)
        elif channel not in opted_out:
            opted_out.append(channel)
    if shown:
        await session.execute(
            update(Engagement).where(Engagement.id.in_(shown)).values(awaiting_contacts=False)
        )


async def contact_merged(
    session: AsyncSession, merged_id: uuid.UUID, survivor_id: uuid.UUID
) -> None:
    """The merged contact's records move to the survivor (who has a recipient row of their own).

    A campaign that reached both keeps the merged contact's send as it was when the survivor's
    was not suppressed, so a re-launch still sends to them at most once."""
    session.info.pop(_WAITING, None)  # the merged contact's unsubscribes move too
    await session.execute(delete(Recipient).where(Recipient.contact_id == merged_id))
    for model in (TicketState, Order, Lead):
        await session.execute(
            update(model).where(model.customer_id == merged_id).values(customer_id=survivor_id)
        )
    survivor_score = await session.get(Score, survivor_id)
    if survivor_score is None:
        await session.execute(
            update(Score).where(Score.customer_id == merged_id).values(customer_id=survivor_id)
        )
    else:
        await session.execute(delete(Score).where(Score.customer_id == merged_id))
    # The survivor's suppressed send gives way to the merged contact's queued or sent one:
    # left in place, a re-launch checked it again and mailed the person a second time.
    reached = select(Send.campaign_id).where(
        Send.customer_id == merged_id, Send.status.in_(COSTING)
    )
    await session.execute(
        delete(Send).where(
            Send.customer_id == survivor_id,
            Send.status == SendStatus.suppressed,
            Send.campaign_id.in_(reached),
        )
    )
    taken = select(Send.campaign_id).where(Send.customer_id == survivor_id)
    await session.execute(
        update(Send)
        .where(Send.customer_id == merged_id, Send.campaign_id.not_in(taken))
        .values(customer_id=survivor_id)
    )
    await session.execute(
        update(Engagement)
        .where(Engagement.customer_id == merged_id)
        .values(customer_id=survivor_id)
    )
    survivor_segments = select(SegmentMember.segment_id).where(
        SegmentMember.customer_id == survivor_id
    )
    await session.execute(
        delete(SegmentMember).where(
            SegmentMember.customer_id == merged_id,
            SegmentMember.segment_id.in_(survivor_segments),
        )
    )
    await session.execute(
        update(SegmentMember)
        .where(SegmentMember.customer_id == merged_id)
        .values(customer_id=survivor_id)
    )


async def contact_erased(session: AsyncSession, contact_id: uuid.UUID) -> None:
    """GDPR: the PII (the recipient) goes with everything that describes the person; sends stay
    as pseudonymous counts for campaign reports, and a queued one is never delivered."""
    await session.execute(delete(Recipient).where(Recipient.contact_id == contact_id))
    await session.execute(delete(Score).where(Score.customer_id == contact_id))
    await session.execute(delete(TicketState).where(TicketState.customer_id == contact_id))
    await session.execute(delete(Order).where(Order.customer_id == contact_id))
    await session.execute(delete(SegmentMember).where(SegmentMember.customer_id == contact_id))
    # A lead stays as the campaign's conversion, no longer linked to the person.
    await session.execute(
        update(Lead).where(Lead.customer_id == contact_id).values(customer_id=None)
    )
    await session.execute(
        update(Send)
        .where(
            Send.customer_id == contact_id,
            Send.status.in_([SendStatus.queued, SendStatus.sending]),
        )
        .values(status=SendStatus.suppressed, reasons=[Reason.customer_erased.value])
    )
    # A provider's error text may quote the person (a name in a bounce); the status stays.
    await session.execute(update(Send).where(Send.customer_id == contact_id).values(error=None))


# ---- support --------------------------------------------------------------------------------


async def ticket_changed(
    session: AsyncSession,
    ticket_id: uuid.UUID,
    customer_id: uuid.UUID,
    *,
    status: str | None = None,
    priority: str | None = None,
    at: datetime,
) -> None:
    """A ticket's status or priority; a late event (older than what is known) changes nothing.
    A ticket first heard of goes under the customer's survivor (none if erased)."""
    ticket = await get_row(session, TicketState, ticket_id)
    if ticket is None:
        current = await filed_under(session, customer_id)
        if current is None:
            return
        ticket = TicketState(
            ticket_id=ticket_id,
            customer_id=current,
            priority=priority or "normal",
            status=status or "open",
            updated_at=at,
        )
        add_row(session, ticket)
        return
    if at < ticket.updated_at:
        return
    if status is not None:
        ticket.status = status
    if priority is not None:
        ticket.priority = priority
    ticket.updated_at = at


async def ticket_customer_identified(
    session: AsyncSession, ticket_id: uuid.UUID, customer_id: uuid.UUID, stand_in: uuid.UUID
) -> None:
    """An unknown sender's ticket now belongs to a contact: an urgent one now holds that
    contact's campaigns back. The stand-in id's scores go: they scored no customer."""
    await session.execute(delete(Score).where(Score.customer_id == stand_in))
    current = await filed_under(session, customer_id)
    ticket = TicketState.ticket_id == ticket_id
    if current is None:  # erased meanwhile
        await session.execute(delete(TicketState).where(ticket))
        return
    await session.execute(update(TicketState).where(ticket).values(customer_id=current))


async def open_ticket_priorities(session: AsyncSession, customer_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(TicketState.priority)
        .where(
            TicketState.customer_id == customer_id,
            TicketState.status.in_(OPEN_TICKET_STATUSES),
        )
        .distinct()
    )
    return list(rows)


# ---- sales ----------------------------------------------------------------------------------


_ORDER_STATUS_RANK = {"placed": 0, "paid": 1, "refunded": 2}


async def order_placed(session: AsyncSession, placed: OrderPlaced) -> None:
    if await get_row(session, Order, placed.order_id) is not None:
        return
    customer_id = await filed_under(session, placed.customer_id)
    if customer_id is None:
        return  # erased: nothing of them is kept
    add_row(
        session,
        Order(
            order_id=placed.order_id,
            customer_id=customer_id,
            amount=placed.amount,
            currency=placed.currency,
            status=placed.status,
            campaign_id=placed.campaign_id,
            ordered_at=placed.ordered_at,
        ),
    )


async def order_status(session: AsyncSession, order_id: uuid.UUID, status: str) -> None:
    """Paid or refunded; an order only moves forward (placed, paid, refunded)."""
    order = await get_row(session, Order, order_id)
    if order is not None and _ORDER_STATUS_RANK[status] > _ORDER_STATUS_RANK.get(order.status, 0):
        order.status = status


async def lead_from_campaign(
    session: AsyncSession,
    lead_id: uuid.UUID,
    campaign_id: uuid.UUID,
    *,
    customer_id: uuid.UUID | None,
    created_at: datetime,
    converted_at: datetime | None = None,
) -> None:
    lead = await get_row(session, Lead, lead_id)
    if lead is None:
        lead = Lead(lead_id=lead_id, campaign_id=campaign_id, created_at=created_at)
        add_row(session, lead)
    if customer_id is not None:
        # Under the survivor; an erased customer's conversion still counts, without them.
        lead.customer_id = await filed_under(session, customer_id)
    if converted_at is not None:
        lead.converted_at = converted_at


# ---- analytics ------------------------------------------------------------------------------


async def customer_scored(session: AsyncSession, scored: CustomerScored) -> None:
    customer_id = await filed_under(session, scored.customer_id)
    if customer_id is None:
        return  # erased
    score = await get_row(session, Score, customer_id)
    if score is not None and scored.scored_at < score.scored_at:
        return  # an older score arriving late
    if score is None:
        score = Score(customer_id=customer_id)
        add_row(session, score)
    score.churn_level = scored.churn_level
    score.churn_risk = scored.churn_risk
    score.rfm_segment = scored.rfm_segment
    score.clv = scored.clv
    score.scored_at = scored.scored_at
