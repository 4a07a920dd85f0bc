"""crm.marketing.v1: campaigns, sends and engagement. Sends and engagement are keyed by the
customer id, campaign lifecycle by the campaign id. Never the recipient's address."""

import uuid
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel

from shared import topics
from shared.events import Channel

TOPIC = topics.MARKETING
SOURCE = "/crm/marketing"

CAMPAIGN_CREATED = "crm.marketing.campaign_created.v1"
CAMPAIGN_LAUNCHED = "crm.marketing.campaign_launched.v1"
# Every send of the campaign has an outcome (sent, suppressed or failed): nothing is queued.
CAMPAIGN_COMPLETED = "crm.marketing.campaign_completed.v1"
# Stopped for good: the sends still queued were withdrawn (each a message_suppressed with the
# reason campaign_cancelled); those a sender was handing over finish as they are.
CAMPAIGN_CANCELLED = "crm.marketing.campaign_cancelled.v1"
MESSAGE_SENT = "crm.marketing.message_sent.v1"
MESSAGE_SUPPRESSED = "crm.marketing.message_suppressed.v1"
MESSAGE_FAILED = "crm.marketing.message_failed.v1"
ENGAGEMENT_RECORDED = "crm.marketing.engagement_recorded.v1"
# The customer used a one-click unsubscribe: contacts opts the channel out and republishes.
UNSUBSCRIBED = "crm.marketing.unsubscribed.v1"


class CampaignCreated(BaseModel):
    campaign_id: uuid.UUID
    name: str
    channel: Channel
    segment_id: uuid.UUID
    budget: Decimal
    cost_per_send: Decimal
    scheduled_at: AwareDatetime | None = None
    created_at: AwareDatetime


class CampaignLaunched(BaseModel):
    campaign_id: uuid.UUID
    name: str
    channel: Channel
    budget: Decimal
    cost_per_send: Decimal
    launched_at: AwareDatetime


class CampaignCompleted(BaseModel):
    campaign_id: uuid.UUID
    sent: int
    suppressed: int
    failed: int
    spend: Decimal
    completed_at: AwareDatetime


class CampaignCancelled(BaseModel):
    campaign_id: uuid.UUID
    withdrawn: int  # queued sends that will not be sent
    cancelled_at: AwareDatetime


class MessageSent(BaseModel):
    send_id: uuid.UUID
    campaign_id: uuid.UUID
    customer_id: uuid.UUID
    channel: Channel
    cost: Decimal
    sent_at: AwareDatetime


class MessageSuppressed(BaseModel):
    campaign_id: uuid.UUID
    customer_id: uuid.UUID
    channel: Channel
    reasons: list[str]  # the contact-check reasons, budget_exhausted or campaign_cancelled
    suppressed_at: AwareDatetime


class MessageFailed(BaseModel):
    send_id: uuid.UUID
    campaign_id: uuid.UUID
    customer_id: uuid.UUID
    channel: Channel
    error: str
    attempts: int
    failed_at: AwareDatetime


class EngagementRecorded(BaseModel):
    send_id: uuid.UUID
    campaign_id: uuid.UUID
    customer_id: uuid.UUID
    kind: str  # delivered | opened | clicked | replied | unsubscribed
    occurred_at: AwareDatetime


class Unsubscribed(BaseModel):
    customer_id: uuid.UUID
    channel: Channel
    campaign_id: uuid.UUID | None = None
    unsubscribed_at: AwareDatetime


EVENT_TYPES: dict[str, type[BaseModel]] = {
    CAMPAIGN_CREATED: CampaignCreated,
    CAMPAIGN_LAUNCHED: CampaignLaunched,
    CAMPAIGN_COMPLETED: CampaignCompleted,
    CAMPAIGN_CANCELLED: CampaignCancelled,
    MESSAGE_SENT: MessageSent,
    MESSAGE_SUPPRESSED: MessageSuppressed,
    MESSAGE_FAILED: MessageFailed,
    ENGAGEMENT_RECORDED: EngagementRecorded,
    UNSUBSCRIBED: Unsubscribed,
}
