"""Launching a campaign: every member of its segment gets a send row in one transaction, queued
for the sender or suppressed with its reasons, together with the outbox events.

The contact check is ``shared.contact_rules.contact_check`` (the one every department applies),
fed in bulk: one query each for the members' preferences, their outbound touches of every
department in the last 7 days, and their open tickets, instead of three per member. A send
of this service that the timeline has not seen yet (still on the bus) counts as a touch too.
A member with a send from an earlier launch is never sent to again; only a suppressed one is
checked again (its quiet hours may be over, the budget may have grown)."""

import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing import audience, events, rules
from services.marketing.models import COSTING, Campaign, Recipient, Send, SendStatus, TicketState
from services.marketing.projections import OPEN_TICKET_STATUSES
from services.marketing.schemas import CampaignStatus, LaunchResult
from services.marketing.service import get_campaign, get_segment
from shared import contact_rules, customer_view
from shared.contact_rules import CONTACT_WINDOW
from shared.customer_view import TimelineEntry
from shared.db import chunked, in_lists, lock_customers
from shared.errors import Conflict, InvalidTransition
from shared.events import ContactPreferences, Department, utcnow

CHUNK = 5000  # ids per IN (...) list, well under both databases' parameter limits

# The key of the lock launches take turns on (shared.db.lock_customers: an advisory lock on
# PostgreSQL keyed by this id, no customer's; SQLite's write lock).
LAUNCHES = uuid.uuid5(uuid.NAMESPACE_URL, "crm:marketing:launches")


async def launch(
    session: AsyncSession, campaign_id: uuid.UUID, now: datetime | None = None
) -> LaunchResult:
    now = now or utcnow()
    campaign = await get_campaign(session, campaign_id, lock=True)
    if refusal := rules.launch_refusal(campaign.status):
        raise InvalidTransition(
            refusal, details={"campaign_status": campaign.status, "action": "launch"}
        )
    # Two campaigns launched at once each counted the members' touches without the other's
    # sends: with a weekly limit of one, both queued every member.
    await lock_customers(session, [LAUNCHES])
    segment = await get_segment(session, campaign.segment_id)
    members = await audience.members(session, segment, now)
    earlier = {
        row.customer_id: row
        for row in await session.execute(
            select(Send.id, Send.customer_id, Send.status, Send.reasons).where(
                Send.campaign_id == campaign.id
            )
        )
    }
    todo = [m for m in members if m not in earlier or earlier[m].status == SendStatus.suppressed]
    committed = sum(1 for row in earlier.values() if row.status in COSTING)
    affordable = rules.affordable_sends(campaign.budget, campaign.cost_per_send, committed)

    queued = 0
    suppressed: Counter[str] = Counter()
    # CHUNK members at a time, in order (the budget pays for the first ones): what a launch
    # holds is one chunk's recipients, send rows and events, whatever the segment's size.
    for chunk in chunked(todo, CHUNK):
        decided = await reasons_not_to_send(session, [Check(campaign, m) for m in chunk], now)
        outbox = events.Rows()
        new_rows: list[dict[str, Any]] = []
        for customer_id, reasons in zip(chunk, decided, strict=True):
            if not reasons and affordable is not None and queued >= affordable:
                reasons = [rules.BUDGET_EXHAUSTED]
            status = SendStatus.suppressed if reasons else SendStatus.queued
            queued += status == SendStatus.queued
            suppressed.update(reasons)
            before = earlier.get(customer_id)
            if before is None:
                new_rows.append(
                    {
                        "id": uuid.uuid4(),
                        "campaign_id": campaign.id,
                        "customer_id": customer_id,
                        "status": status.value,
                        "reasons": reasons,
                        "attempts": 0,
                        "created_at": now,
                    }
                )
            elif status == SendStatus.queued or list(before.reasons) != reasons:
                await session.execute(
                    update(Send)
                    .where(Send.id == before.id)
                    .values(status=status.value, reasons=reasons)
                )
            else:
                continue  # suppressed again for the same reasons: already told
            if reasons:
                outbox.suppressed(campaign, customer_id, reasons, now)
        if new_rows:
            try:
                await session.execute(insert(Send), new_rows)
            except IntegrityError as exc:  # SQLite has no row lock: two launches at once
                raise Conflict("the campaign is being launched by another request") from exc
        await outbox.write(session)

    if campaign.launched_at is None:
        campaign.launched_at = now
    events.campaign_launched(session, campaign, now)
    if queued:
        campaign.status = CampaignStatus.sending.value
        campaign.completed_at = None
    else:
        await complete_if_done(session, campaign, now)
    await session.flush()
    return LaunchResult(
        campaign_id=campaign.id,
        queued=queued,
        suppressed=dict(suppressed),
        already_handled=len(members) - len(todo),
        budget_remaining=(
            None
            if affordable is None
            else campaign.budget - campaign.cost_per_send * (committed + queued)
        ),
    )


async def cancel(
    session: AsyncSession, campaign_id: uuid.UUID, now: datetime | None = None
) -> Campaign:
    """Stop the campaign for good: its sends no sender has claimed yet are withdrawn
    (suppressed: campaign_cancelled); those being handed over finish as they are. Cancelling
    a cancelled campaign changes nothing."""
    now = now or utcnow()
    campaign = await get_campaign(session, campaign_id, lock=True)  # launches take it too
    if campaign.status == CampaignStatus.cancelled:
        return campaign
    if refusal := rules.cancel_refusal(campaign.status):
        raise InvalidTransition(
            refusal, details={"campaign_status": campaign.status, "action": "cancel"}
        )
    # One statement that repeats "queued", as the sender's claim repeats it: a send the
    # sender claims meanwhile is either claimed (and sent) or withdrawn here, never both.
    withdrawn = list(
        await session.scalars(
            update(Send)
            .where(Send.campaign_id == campaign.id, Send.status == SendStatus.queued)
            .values(status=SendStatus.suppressed.value, reasons=[rules.CAMPAIGN_CANCELLED])
            .returning(Send.customer_id)
        )
    )
    outbox = events.Rows()
    for customer_id in withdrawn:
        outbox.suppressed(campaign, customer_id, [rules.CAMPAIGN_CANCELLED], now)
    await outbox.write(session)
    campaign.status = CampaignStatus.cancelled.value
    campaign.cancelled_at = now
    events.campaign_cancelled(session, campaign, len(withdrawn), now)
    await session.flush()
    return campaign


async def complete_if_done(session: AsyncSession, campaign: Campaign, now: datetime) -> bool:
    """Mark the campaign completed (and say so on the bus) once no send is waiting; a
    cancelled campaign stays cancelled."""
    if _waiting(await _counts(session, campaign.id)):
        return False
    # Counted again under its lock, read afresh: the sender reads it unlocked, and a launch
    # may have queued more sends since, or a cancel committed (written over, "sending" or
    # "cancelled" would become "completed").
    campaign = await get_campaign(session, campaign.id, lock=True)
    if campaign.status in (CampaignStatus.completed, CampaignStatus.cancelled):
        return True
    counts = await _counts(session, campaign.id)
    if _waiting(counts):
        return False
    campaign.status = CampaignStatus.completed.value
    campaign.completed_at = now
    events.campaign_completed(session, campaign, counts, now)
    return True


def _waiting(counts: dict[str, int]) -> bool:
    return bool(counts.get(SendStatus.queued, 0) or counts.get(SendStatus.sending, 0))


async def _counts(session: AsyncSession, campaign_id: uuid.UUID) -> dict[str, int]:
    """The campaign's sends by status."""
    return dict(
        (
            await session.execute(
                select(Send.status, func.count())
                .where(Send.campaign_id == campaign_id)
                .group_by(Send.status)
            )
        ).all()
    )


@dataclass(frozen=True)
class Check:
    """A customer to check for a campaign. ``counted``: touches of the check's own already in
    the count (1 for a send checked again at delivery, counted as one not yet recorded)."""

    campaign: Campaign
    customer_id: uuid.UUID
    counted: int = 0


async def reasons_not_to_send(
    session: AsyncSession, checks: Sequence[Check], now: datetime
) -> list[list[str]]:
    """Each check's reasons not to send now (empty: send), from one set of queries for all
    (a launch's members, a sender's batch of sends of many campaigns)."""
    customers = list({check.customer_id for check in checks})
    policy = await customer_view.policy(session)
    recipients: dict[uuid.UUID, Any] = {}
    touches: Counter[uuid.UUID] = Counter()
    tickets: dict[uuid.UUID, set[str]] = {}
    since = now - CONTACT_WINDOW
    for chunk in in_lists(customers, CHUNK):
        for row in await session.execute(
            select(
                Recipient.contact_id,
                Recipient.email,
                Recipient.phone,
                Recipient.identities,
                Recipient.preferences,
            ).where(Recipient.contact_id.in_(chunk))
        ):
            recipients[row.contact_id] = row
        touches.update(
            dict(
                (
                    await session.execute(
                        select(TimelineEntry.customer_id, func.count())
                        .where(
                            TimelineEntry.customer_id.in_(chunk),
                            TimelineEntry.direction == "outbound",
                            TimelineEntry.occurred_at > since,
                            TimelineEntry.occurred_at <= now,
                        )
                        .group_by(TimelineEntry.customer_id)
                    )
                ).all()
            )
        )
        touches.update(dict((await session.execute(unrecorded_sends(chunk, since))).all()))
        for customer_id, priority in await session.execute(
            select(TicketState.customer_id, TicketState.priority).where(
                TicketState.customer_id.in_(chunk),
                TicketState.status.in_(OPEN_TICKET_STATUSES),
            )
        ):
            tickets.setdefault(customer_id, set()).add(priority)

    decisions: list[list[str]] = []
    for check in checks:
        recipient = recipients.get(check.customer_id)
        if recipient is None:  # erased or merged since the segment was evaluated
            decisions.append([contact_rules.Reason.customer_erased.value])
            continue
        reasons = [
            r.value
            for r in contact_rules.contact_check(
                channel=rules.bus_channel(check.campaign.channel),
                department=Department.marketing,
                now=now,
                preferences=ContactPreferences.model_validate(recipient.preferences or {}),
                policy=policy,
                outbound_last_7_days=touches[check.customer_id] - check.counted,
                open_ticket_priorities=sorted(tickets.get(check.customer_id, ())),
            )
        ]
        address = rules.address_for(
            check.campaign.channel,
            customer_id=str(check.customer_id),
            email=recipient.email,
            phone=recipient.phone,
            identities=recipient.identities or {},
        )
        if address is None:
            reasons.append(rules.NO_ADDRESS)
        decisions.append(reasons)
    return decisions


def unrecorded_sends(
    customer_ids: Collection[uuid.UUID], since: datetime
) -> Select[tuple[uuid.UUID, int]]:
    """(customer id, count) of this service's sends since ``since`` that are touches, or will
    be, and that the timeline has not seen yet (still queued, or still on the bus)."""
    in_timeline = select(TimelineEntry.interaction_id).where(
        TimelineEntry.interaction_id == Send.id
    )
    return (
        select(Send.customer_id, func.count())
        .where(
            Send.customer_id.in_(customer_ids),
            Send.status.in_(COSTING),
            Send.created_at > since,
            ~in_timeline.exists(),
        )
        .group_by(Send.customer_id)
    )


async def unrecorded_outbound(
    session: AsyncSession, customer_id: uuid.UUID, since: datetime
) -> int:
    """``unrecorded_sends`` of one customer: what the contact check this service serves adds
    to the timeline's outbound touches."""
    row = (await session.execute(unrecorded_sends([customer_id], since))).first()
    return row[1] if row else 0
