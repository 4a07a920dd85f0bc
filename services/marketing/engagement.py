"""What recipients do with a send: opens, clicks and unsubscribes (from the signed tracking
links), deliveries and replies (reported by providers). The first of each kind per send counts;
each is an EngagementRecorded on crm.marketing.v1 and, where the customer acted, an inbound
touch on crm.interactions.v1. An unsubscribe also opts the channel out here at once and
publishes Unsubscribed, on which contacts updates the consent every service honours.
Never commits."""

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing import events, projections, rules
from services.marketing.models import Campaign, Engagement, Recipient, Send
from shared import customer_view, topics
from shared.contracts import marketing as contract
from shared.db import for_update
from shared.errors import InvalidTransition, NotFound
from shared.events import Direction, utcnow

# engagement kind -> the kind of the customer's touch on the timeline (None: not a touch)
TOUCH_KINDS: dict[str, str | None] = {
    "delivered": None,
    "opened": "email_open",
    "clicked": "link_click",
    "replied": "campaign_reply",
    "unsubscribed": "unsubscribe",
}


async def record(
    session: AsyncSession, send_id: uuid.UUID, kind: str, at: datetime | None = None
) -> Engagement | None:
    """Record that the recipient of ``send_id`` did ``kind``; None if it was recorded before or
    the customer was erased (nothing is kept about them). A provider's report on a send it
    was never handed is an InvalidTransition (rules.report_refusal)."""
    at = at or utcnow()
    recipient_id = await session.scalar(select(Send.customer_id).where(Send.id == send_id))
    if recipient_id is None:
        raise NotFound(f"send {send_id} not found", field="send_id")
    # The customer's lock before the send's, as an erasure takes them: an unsubscribe changes
    # the customer's consent.
    customer_id = await customer_view.filed_under(session, recipient_id)
    # Locked: two reports of one engagement at once (a link scanner's clicks, a provider's
    # retried webhook) would both find none recorded, and the later fail on the unique key.
    send = await session.scalar(await for_update(session, select(Send).where(Send.id == send_id)))
    if send is None:  # a suppressed send a merge just dropped: none was delivered
        raise NotFound(f"send {send_id} not found", field="send_id")
    existing = await session.scalar(
        select(Engagement).where(Engagement.send_id == send_id, Engagement.kind == kind)
    )
    if existing is not None or customer_id is None:
        return None
    # After the repeat: a receipt redelivered once the send has failed still answers as one.
    if refusal := rules.report_refusal(kind, send.status):
        raise InvalidTransition(refusal, field="send_id", details={"send_status": send.status})
    campaign = await session.get(Campaign, send.campaign_id)
    assert campaign is not None
    engagement = Engagement(
        id=uuid.uuid4(),
        send_id=send.id,
        campaign_id=campaign.id,
        customer_id=customer_id,
        kind=kind,
        occurred_at=at,
    )
    session.add(engagement)
    outbox = events.Rows()
    outbox.customer_event(
        customer_id,
        contract.ENGAGEMENT_RECORDED,
        contract.EngagementRecorded(
            send_id=send.id,
            campaign_id=campaign.id,
            customer_id=customer_id,
            kind=kind,
            occurred_at=at,
        ),
        topics.MARKETING,
    )
    touch = TOUCH_KINDS[kind]
    channel = rules.bus_channel(campaign.channel)
    if touch is not None:
        outbox.touch(
            interaction_id=engagement.id,
            customer_id=customer_id,
            channel=channel,
            direction=Direction.inbound,
            kind=touch,
            subject=campaign.name,
            at=at,
            campaign_id=campaign.id,
        )
    if kind == "unsubscribed":
        outbox.customer_event(
            customer_id,
            contract.UNSUBSCRIBED,
            contract.Unsubscribed(
                customer_id=customer_id,
                channel=channel,
                campaign_id=campaign.id,
                unsubscribed_at=at,
            ),
            topics.MARKETING,
        )
        recipient = await session.get(Recipient, customer_id)
        if recipient is not None:  # honoured here before contacts republishes the consent
            preferences = dict(recipient.preferences or {})
            opted_out = list(preferences.get("opted_out_channels") or [])
            if channel.value not in opted_out:
                preferences["opted_out_channels"] = [*opted_out, channel.value]
                await projections.keep_preferences(session, recipient, preferences)
                # Kept against contacts' snapshots until one shows it (projections).
                engagement.awaiting_contacts = True
    await outbox.write(session)
    await session.flush()
    return engagement
