"""The sender: a background task that delivers queued sends and records each outcome.

A launch only writes send rows (queued) and events in its transaction; the sender claims a
batch (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several replicas share the queue), marks it
``sending`` with a lease (renewed while it delivers), checks the contact rules again (what
changed since the launch counts), delivers outside any transaction, then records sent/failed
with the MessageSent/MessageFailed events and the campaign_send touches in one transaction. A sender that
dies mid-batch leaves ``sending`` rows whose lease runs out: they are claimed again (delivery is
at least once; the provider gets the send id as idempotency key). It also launches scheduled
campaigns when their time comes."""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.marketing import events, launch, rules
from services.marketing.channels import (
    DeliveryResult,
    OutgoingMessage,
    Provider,
    html_body,
    providers,
)
from services.marketing.config import MarketingSettings
from services.marketing.models import Campaign, Recipient, Send, SendStatus
from services.marketing.schemas import CampaignStatus
from services.marketing.tracking import Links
from shared.contact_rules import CONTACT_WINDOW
from shared.db import for_update
from shared.events import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A batch of sends a sender marked ``sending``: the claim's id (``Send.claimed_by``,
    still theirs when the outcomes are recorded unless their lease ran out) and the sends."""

    id: uuid.UUID
    sends: list[uuid.UUID]


class Sender:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        settings: MarketingSettings,
        channel_providers: dict[str, Provider] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.providers = channel_providers or providers(settings)
        # Scheduled campaign id -> when its failed launch is tried again (this replica's view).
        self._launch_retry_at: dict[uuid.UUID, datetime] = {}

    async def run(self) -> None:
        while True:
            # Apart: a scheduled launch that keeps failing must not stop every other
            # campaign's sends.
            try:
                await self.launch_due()
            except Exception:
                log.exception("scheduled launches failed")
            try:
                busy = await self.deliver_batch() > 0
            except Exception:
                log.exception("sender round failed")
                busy = False
            if not busy:
                await asyncio.sleep(self.settings.sender_poll_interval_s)

    async def launch_due(self, now: datetime | None = None) -> int:
        """Launch the scheduled campaigns whose time has come, each in its own transaction; the
        number launched. One that fails stays scheduled, is tried again after
        ``launch_retry_wait_s`` (not every round: its error is logged once per try), and holds
        back neither the others nor the sends."""
        now = now or utcnow()
        async with self.session_factory() as session:
            due = list(
                await session.scalars(
                    select(Campaign.id).where(
                        Campaign.status == CampaignStatus.scheduled,
                        Campaign.scheduled_at <= now,
                    )
                )
            )
        self._launch_retry_at = {
            campaign_id: at
            for campaign_id, at in self._launch_retry_at.items()
            if campaign_id in due
        }
        launched = 0
        for campaign_id in due:
            if now < self._launch_retry_at.get(campaign_id, now):
                continue
            try:
                launched += await self._launch_scheduled(campaign_id, now)
            except Exception:
                wait = self.settings.launch_retry_wait_s
                self._launch_retry_at[campaign_id] = now + timedelta(seconds=wait)
                log.exception(
                    "scheduled launch failed; tried again in %.0f s",
                    wait,
                    extra={"campaign_id": str(campaign_id)},
                )
            else:
                self._launch_retry_at.pop(campaign_id, None)
        return launched

    async def _launch_scheduled(self, campaign_id: uuid.UUID, now: datetime) -> bool:
        async with self.session_factory() as session:
            locked = await for_update(session, select(Campaign).where(Campaign.id == campaign_id))
            campaign = await session.scalar(locked)
            if campaign is None or campaign.status != CampaignStatus.scheduled:
                return False  # another replica got there first
            await launch.launch(session, campaign_id, now)
            await session.commit()
            return True

    async def deliver_batch(self) -> int:
        """Claim, deliver and record one batch; the number of sends handled."""
        claim = await self._claim()
        if not claim.sends:
            return 0
        async with self._lease_kept(claim):
            messages, skipped = await self._compose(claim.sends)
            results: list[DeliveryResult] = []
            by_channel: dict[str, list[OutgoingMessage]] = {}
            for message in messages:
                by_channel.setdefault(message.channel, []).append(message)
            for channel, batch in by_channel.items():
                results += await self.providers[channel].deliver(batch)
        await self._record(claim, results, skipped)
        return len(claim.sends)

    @contextlib.asynccontextmanager
    async def _lease_kept(self, claim: Claim) -> AsyncIterator[None]:
        """Renew the claim's lease every third of it while the batch is delivered: a batch
        can take longer than one lease (a slow SMTP server, retries), and another replica
        would take the sends over and deliver them a second time."""
        lease = timedelta(seconds=self.settings.send_lease_s)

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease.total_seconds() / 3)
                try:
                    async with self.session_factory() as session:
                        await session.execute(
                            update(Send)
                            .where(Send.id.in_(claim.sends), Send.claimed_by == claim.id)
                            .values(claimed_until=utcnow() + lease)
                        )
                        await session.commit()
                except Exception:  # the next renewal may get through; the lease runs meanwhile
                    log.exception("renewing the lease of a batch of sends failed")

        renewing = asyncio.create_task(renew(), name="marketing.sender.lease")
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _claim(self) -> Claim:
        """Mark a batch ``sending`` for this sender (``claim``) and commit."""
        async with self.session_factory() as session:
            claim = await self.claim(session)
            await session.commit()
        return claim

    async def claim(self, session: AsyncSession) -> Claim:
        """Mark a batch ``sending`` in the caller's transaction.
        The UPDATE repeats the claimable condition and the claim is read back by its id, so
        two senders never hold the same send (on SQLite, which has no SKIP LOCKED, the second
        one's UPDATE finds them taken), nor do a sender and a cancel (launch.cancel)."""
        now = utcnow()
        claimable = or_(
            Send.status == SendStatus.queued,
            (Send.status == SendStatus.sending) & (Send.claimed_until < now),
        )
        claim = uuid.uuid4()
        query = (
            select(Send.id)
            .where(claimable)
            .order_by(Send.created_at, Send.id)
            .limit(self.settings.sender_batch_size)
            .with_for_update(skip_locked=True)
        )
        ids = list(await session.scalars(query))
        if not ids:
            return Claim(claim, [])
        await session.execute(
            update(Send)
            .where(Send.id.in_(ids), claimable)
            .values(
                status=SendStatus.sending,
                claimed_until=now + timedelta(seconds=self.settings.send_lease_s),
                claimed_by=claim,
            )
        )
        claimed = list(
            await session.scalars(select(Send.id).where(Send.id.in_(ids), Send.claimed_by == claim))
        )
        return Claim(claim, claimed)

    async def _compose(
        self, ids: list[uuid.UUID]
    ) -> tuple[list[OutgoingMessage], dict[uuid.UUID, list[str]]]:
        """The messages of the claimed sends; those the contact check now refuses come back
        apart with its reasons. Checked again here, not only at launch: a customer who opted
        out, unsubscribed, opened an urgent ticket or was touched up to the weekly limit
        while the send waited in the queue is not sent to."""
        now = utcnow()
        messages = []
        skipped: dict[uuid.UUID, list[str]] = {}
        async with self.session_factory() as session:
            sends = list(await session.scalars(select(Send).where(Send.id.in_(ids))))
            campaigns = {
                c.id: c
                for c in await session.scalars(
                    select(Campaign).where(Campaign.id.in_({s.campaign_id for s in sends}))
                )
            }
            recipients = {
                r.contact_id: r
                for r in await session.scalars(
                    select(Recipient).where(
                        Recipient.contact_id.in_({s.customer_id for s in sends})
                    )
                )
            }
            # A send is a touch not yet recorded, counted as such: not against itself.
            since = now - CONTACT_WINDOW
            checks = [
                launch.Check(
                    campaigns[send.campaign_id], send.customer_id, int(send.created_at > since)
                )
                for send in sends
            ]
            decided = await launch.reasons_not_to_send(session, checks, now)
        for send, reasons in zip(sends, decided, strict=True):
            if reasons:
                skipped[send.id] = reasons
                continue
            campaign, recipient = campaigns[send.campaign_id], recipients[send.customer_id]
            address = rules.address_for(
                campaign.channel,
                customer_id=str(send.customer_id),
                email=recipient.email,
                phone=recipient.phone,
                identities=recipient.identities or {},
            )
            assert address is not None  # else a reason: no_address
            messages.append(self.message(campaign, send, recipient, address))
        return messages, skipped

    def message(
        self, campaign: Campaign, send: Send, recipient: Recipient, address: str
    ) -> OutgoingMessage:
        links = Links(
            self.settings.tracking_key(),
            self.settings.public_base_url,
            send.id,
        )
        values = {
            "first_name": recipient.first_name,
            "last_name": recipient.last_name,
            "country": recipient.country,
            "unsubscribe_url": links.unsubscribe,
        }
        text = rules.personalise(campaign.template, values, links.click)
        message = OutgoingMessage(
            send_id=send.id,
            campaign_id=campaign.id,
            customer_id=send.customer_id,
            channel=campaign.channel,
            to=address,
            text=text,
        )
        if campaign.channel == rules.CampaignChannel.email:
            if "{unsubscribe_url}" not in campaign.template:
                message.text += f"\n\nUnsubscribe: {links.unsubscribe}\n"
            message.subject = rules.render(campaign.subject or campaign.name, values)
            message.html = html_body(message.text, links.open_pixel)
            message.headers = {
                "List-Unsubscribe": f"<{links.unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-CRM-Send-Id": str(send.id),
            }
        return message

    async def _record(
        self, claim: Claim, results: list[DeliveryResult], skipped: dict[uuid.UUID, list[str]]
    ) -> None:
        """Every outcome and its events in one transaction (one UPDATE statement per batch)."""
        now = utcnow()
        async with self.session_factory() as session:
            ids = [r.send_id for r in results] + list(skipped)
            sends = {
                row.id: row
                for row in await session.execute(
                    select(
                        Send.id, Send.campaign_id, Send.customer_id, Send.attempts, Send.claimed_by
                    ).where(Send.id.in_(ids), Send.status == SendStatus.sending)
                )
                # Still ours: not erased meanwhile, nor re-claimed after our lease ran out.
                if row.claimed_by == claim.id
            }
            campaigns = {
                c.id: c
                for c in await session.scalars(
                    select(Campaign).where(Campaign.id.in_({s.campaign_id for s in sends.values()}))
                )
            }
            outbox = events.Rows()
            changes: list[dict[str, Any]] = []
            for result in results:
                send = sends.get(result.send_id)
                if send is None:
                    continue  # erased meanwhile, or re-claimed after our lease ran out
                campaign = campaigns[send.campaign_id]
                attempts = send.attempts + result.attempts
                change = {
                    "id": send.id,
                    "attempts": attempts,
                    "claimed_until": None,
                    "claimed_by": None,
                }
                if result.ok:
                    change.update(status=SendStatus.sent.value, sent_at=now, error=None)
                    outbox.sent(campaign, send.id, send.customer_id, now)
                else:
                    change.update(status=SendStatus.failed.value, sent_at=None, error=result.error)
                    outbox.failed(
                        campaign, send.id, send.customer_id, result.error or "", attempts, now
                    )
                changes.append(change)
            for send_id, reasons in skipped.items():
                send = sends.get(send_id)
                if send is None:
                    continue
                await session.execute(
                    update(Send)
                    .where(Send.id == send_id)
                    .values(status=SendStatus.suppressed.value, claimed_until=None, reasons=reasons)
                )
                outbox.suppressed(campaigns[send.campaign_id], send.customer_id, reasons, now)
            if changes:
                await session.execute(update(Send), changes)
            await outbox.write(session)
            for campaign in campaigns.values():
                await launch.complete_if_done(session, campaign, now)
            await session.commit()


@contextlib.asynccontextmanager
async def running(sender: Sender) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sender.run(), name="marketing.sender")
    try:
        yield task
    finally:
        for _ in range(10):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1)
            if done:
                break
