"""Two transactions in a fixed order (PostgreSQL): a campaign changed while it is launched,
one engagement reported twice at once, a campaign launched again or cancelled while the
sender claims or records its sends."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.marketing import engagement, launch, service
from services.marketing.channels import DeliveryResult
from services.marketing.schemas import CampaignUpdate, LaunchResult
from services.marketing.tests.helpers import (
    apply,
    event_types,
    new_campaign,
    new_contact,
    new_segment,
    outbox,
    report,
    sends,
)
from shared.contracts import marketing
from shared.errors import InvalidTransition
from shared.events import CONTACT_POLICY_UPDATED, decode_event, utcnow
from shared.testing import app_of, one_write_waits_for_another, postgres_only


@postgres_only
async def test_a_campaign_scheduled_while_it_is_launched_is_a_409(client):
    factory = app_of(client).state.session_factory
    await new_contact(client, country="DE")
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    campaign_id = uuid.UUID(campaign["id"])

    def launch_it(session: AsyncSession) -> Awaitable[object]:
        return launch.launch(session, campaign_id)

    def schedule_it(session: AsyncSession) -> Awaitable[object]:
        tomorrow = CampaignUpdate(scheduled_at=utcnow() + timedelta(days=1))
        return service.update_campaign(session, campaign_id, tomorrow)

    # The change read "draft" before the launch committed, and wrote "scheduled" over
    # "sending": a campaign that is sending, scheduled to launch again.
    with pytest.raises(InvalidTransition):
        await one_write_waits_for_another(factory, launch_it, schedule_it)
    assert (await client.get(f"/v1/campaigns/{campaign_id}")).json()["status"] != "scheduled"


@postgres_only
async def test_one_click_reported_twice_at_once_counts_once(client):
    factory = app_of(client).state.session_factory
    await new_contact(client, country="DE")
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    assert (await client.post(f"/v1/campaigns/{campaign['id']}/launch")).status_code == 202
    [send] = await sends(client, campaign["id"])

    def click(session: AsyncSession) -> Awaitable[object]:
        return engagement.record(session, uuid.UUID(send["id"]), "clicked")

    # Both found no click recorded; the later insert failed on the unique key: a 500.
    assert await one_write_waits_for_another(factory, click, click) is None
    recorded = event_types(await outbox(client))
    assert recorded.count("crm.marketing.engagement_recorded.v1") == 1


@postgres_only
async def test_two_campaigns_launched_at_once_keep_the_weekly_limit(client):
    factory = app_of(client).state.session_factory
    await apply(client, CONTACT_POLICY_UPDATED, {"max_outbound_per_week": 1, "quiet_hours": None})
    await new_contact(client, country="DE")
    segment = await new_segment(client)
    first, second = [uuid.UUID((await new_campaign(client, segment["id"]))["id"]) for _ in "ab"]

    def launch_of(campaign_id: uuid.UUID) -> Callable[[AsyncSession], Awaitable[LaunchResult]]:
        return lambda session: launch.launch(session, campaign_id)

    # Each counted the member's touches without the other's send: both queued it.
    result = await one_write_waits_for_another(factory, launch_of(first), launch_of(second))
    assert (result.queued, result.suppressed) == (0, {"weekly_limit_reached": 1})


async def cancelled_events(client) -> list[dict]:
    rows = await outbox(client)
    return [
        decode_event(r.value).data for r in rows if r.event_type == marketing.CAMPAIGN_CANCELLED
    ]


@postgres_only
async def test_a_send_claimed_as_the_campaign_is_cancelled_is_sent_not_withdrawn(client):
    factory = app_of(client).state.session_factory
    sender = app_of(client).state.sender
    await new_contact(client, country="DE")
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    assert (await client.post(f"/v1/campaigns/{campaign['id']}/launch")).status_code == 202
    campaign_id = uuid.UUID(campaign["id"])

    def claim(session: AsyncSession) -> Awaitable[object]:
        return sender.claim(session)

    def cancel(session: AsyncSession) -> Awaitable[object]:
        return launch.cancel(session, campaign_id)

    # The cancel waits for the send the claim holds, then finds it claimed: withdrawn as
    # well, it would be both sent (the sender holds it) and suppressed.
    await one_write_waits_for_another(factory, claim, cancel)
    [send] = await sends(client, campaign["id"])
    assert (send["status"], send["reasons"]) == ("sending", [])
    assert [e["withdrawn"] for e in await cancelled_events(client)] == [0]
    assert marketing.MESSAGE_SUPPRESSED not in event_types(await outbox(client))


@postgres_only
async def test_a_send_withdrawn_by_a_cancel_under_way_is_not_claimed(client, mailbox):
    factory = app_of(client).state.session_factory
    sender = app_of(client).state.sender
    await new_contact(client, country="DE")
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    assert (await client.post(f"/v1/campaigns/{campaign['id']}/launch")).status_code == 202
    async with factory() as session:
        await launch.cancel(session, uuid.UUID(campaign["id"]))
        await session.flush()
        # The cancel holds the send, not yet committed: the sender passes it over.
        assert await sender.deliver_batch() == 0
        await session.commit()
    assert await sender.deliver_batch() == 0 and mailbox.messages == []
    [send] = await sends(client, campaign["id"])
    assert (send["status"], send["reasons"]) == ("suppressed", ["campaign_cancelled"])


@postgres_only
async def test_a_campaign_cancelled_while_its_last_send_is_recorded_stays_cancelled(client):
    factory = app_of(client).state.session_factory
    sender = app_of(client).state.sender
    await new_contact(client, country="DE")
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    assert (await client.post(f"/v1/campaigns/{campaign['id']}/launch")).status_code == 202
    claimed = await sender._claim()  # being handed over

    def cancel(session: AsyncSession) -> Awaitable[object]:
        return launch.cancel(session, uuid.UUID(campaign["id"]))

    async def record_it(_: AsyncSession) -> None:
        delivered = [DeliveryResult(send_id, ok=True, attempts=1) for send_id in claimed.sends]
        await sender._record(claimed, delivered, {})

    # The sender read the campaign as "sending" before the cancel committed, and wrote
    # "completed" over "cancelled" once its last send was recorded.
    await one_write_waits_for_another(factory, cancel, record_it)
    got = await report(client, campaign["id"])
    assert (got["status"], got["sent"]) == ("cancelled", 1)
    assert marketing.CAMPAIGN_COMPLETED not in event_types(await outbox(client))


@postgres_only
async def test_a_campaign_launched_again_while_its_last_send_is_recorded_is_not_completed(client):
    factory = app_of(client).state.session_factory
    sender = app_of(client).state.sender
    await new_contact(client, country="DE")
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    assert (await client.post(f"/v1/campaigns/{campaign['id']}/launch")).status_code == 202
    claimed = await sender._claim()  # being handed over
    await new_contact(client, country="DE")  # joins the dynamic segment

    def launch_again(session: AsyncSession) -> Awaitable[object]:
        return launch.launch(session, uuid.UUID(campaign["id"]))

    async def record_it(_: AsyncSession) -> None:
        delivered = [DeliveryResult(send_id, ok=True, attempts=1) for send_id in claimed.sends]
        await sender._record(claimed, delivered, {})

    # The sender counted no send waiting before the launch committed one, and wrote
    # "completed" over "sending" with a send still queued.
    await one_write_waits_for_another(factory, launch_again, record_it)
    got = await report(client, campaign["id"])
    assert (got["status"], got["sent"], got["queued"]) == ("sending", 1, 1)
