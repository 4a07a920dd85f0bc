"""The events marketing publishes, always through the outbox in the caller's transaction.

Campaign lifecycle on crm.marketing.v1 is keyed by the campaign id; sends, engagement and
unsubscribes by the customer id, as is every touch on crm.interactions.v1."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing.models import Campaign
from services.marketing.rules import bus_channel
from shared import topics
from shared.contracts import marketing as contract
from shared.events import (
    INTERACTION_RECORDED,
    Department,
    Direction,
    InteractionRecorded,
    SourceRef,
)
from shared.outbox import add_event, add_rows, event_row

SOURCE = contract.SOURCE


def _campaign_event(session: AsyncSession, campaign: Campaign, event_type: str, data: BaseModel):
    add_event(
        session,
        topic=topics.MARKETING,
        key=str(campaign.id),
        event_type=event_type,
        source=SOURCE,
        data=data,
    )


def campaign_created(session: AsyncSession, campaign: Campaign) -> None:
    _campaign_event(
        session,
        campaign,
        contract.CAMPAIGN_CREATED,
        contract.CampaignCreated(
            campaign_id=campaign.id,
            name=campaign.name,
            channel=bus_channel(campaign.channel),
            segment_id=campaign.segment_id,
            budget=campaign.budget,
            cost_per_send=campaign.cost_per_send,
            scheduled_at=campaign.scheduled_at,
            created_at=campaign.created_at,
        ),
    )


def campaign_launched(session: AsyncSession, campaign: Campaign, at: datetime) -> None:
    _campaign_event(
        session,
        campaign,
        contract.CAMPAIGN_LAUNCHED,
        contract.CampaignLaunched(
            campaign_id=campaign.id,
            name=campaign.name,
            channel=bus_channel(campaign.channel),
            budget=campaign.budget,
            cost_per_send=campaign.cost_per_send,
            launched_at=at,
        ),
    )


def campaign_completed(
    session: AsyncSession, campaign: Campaign, counts: dict[str, int], at: datetime
) -> None:
    _campaign_event(
        session,
        campaign,
        contract.CAMPAIGN_COMPLETED,
        contract.CampaignCompleted(
            campaign_id=campaign.id,
            sent=counts.get("sent", 0),
            suppressed=counts.get("suppressed", 0),
            failed=counts.get("failed", 0),
            spend=campaign.cost_per_send * counts.get("sent", 0),
            completed_at=at,
        ),
    )


def campaign_cancelled(
    session: AsyncSession, campaign: Campaign, withdrawn: int, at: datetime
) -> None:
    _campaign_event(
        session,
        campaign,
        contract.CAMPAIGN_CANCELLED,
        contract.CampaignCancelled(campaign_id=campaign.id, withdrawn=withdrawn, cancelled_at=at),
    )


class Rows:
    """Outbox rows of a bulk operation (a launch, a sender batch), inserted in one statement."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def customer_event(
        self, customer_id: uuid.UUID, event_type: str, data: BaseModel, topic: str
    ) -> None:
        key = str(customer_id)
        self.rows.append(
            event_row(
                topic=topic, key=key, event_type=event_type, source=SOURCE, subject=key, data=data
            )
        )

    def suppressed(
        self, campaign: Campaign, customer_id: uuid.UUID, reasons: list[str], at: datetime
    ) -> None:
        self.customer_event(
            customer_id,
            contract.MESSAGE_SUPPRESSED,
            contract.MessageSuppressed(
                campaign_id=campaign.id,
                customer_id=customer_id,
                channel=bus_channel(campaign.channel),
                reasons=reasons,
                suppressed_at=at,
            ),
            topics.MARKETING,
        )

    def sent(
        self, campaign: Campaign, send_id: uuid.UUID, customer_id: uuid.UUID, at: datetime
    ) -> None:
        """MessageSent, and the campaign_send touch (its interaction id is the send id)."""
        channel = bus_channel(campaign.channel)
        self.customer_event(
            customer_id,
            contract.MESSAGE_SENT,
            contract.MessageSent(
                send_id=send_id,
                campaign_id=campaign.id,
                customer_id=customer_id,
                channel=channel,
                cost=campaign.cost_per_send,
                sent_at=at,
            ),
            topics.MARKETING,
        )
        self.touch(
            interaction_id=send_id,
            customer_id=customer_id,
            channel=channel,
            direction=Direction.outbound,
            kind="campaign_send",
            subject=campaign.name,
            at=at,
            campaign_id=campaign.id,
        )

    def failed(
        self,
        campaign: Campaign,
        send_id: uuid.UUID,
        customer_id: uuid.UUID,
        error: str,
        attempts: int,
        at: datetime,
    ) -> None:
        self.customer_event(
            customer_id,
            contract.MESSAGE_FAILED,
            contract.MessageFailed(
                send_id=send_id,
                campaign_id=campaign.id,
                customer_id=customer_id,
                channel=bus_channel(campaign.channel),
                error=error[:500],
                attempts=attempts,
                failed_at=at,
            ),
            topics.MARKETING,
        )

    def touch(
        self,
        *,
        interaction_id: uuid.UUID,
        customer_id: uuid.UUID,
        channel: Any,
        direction: Direction,
        kind: str,
        subject: str | None,
        at: datetime,
        campaign_id: uuid.UUID,
    ) -> None:
        self.customer_event(
            customer_id,
            INTERACTION_RECORDED,
            InteractionRecorded(
                interaction_id=interaction_id,
                customer_id=customer_id,
                department=Department.marketing,
                channel=channel,
                direction=direction,
                kind=kind,
                subject=subject,
                occurred_at=at,
                actor="marketing",
                ref=SourceRef(type="campaign", id=str(campaign_id)),
            ),
            topics.INTERACTIONS,
        )

    async def write(self, session: AsyncSession) -> None:
        await add_rows(session, self.rows)
        self.rows = []


def spend(campaign: Campaign, sent: int) -> Decimal:
    return campaign.cost_per_send * sent
