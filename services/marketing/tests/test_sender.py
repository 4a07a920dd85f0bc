"""The sender with several replicas: a send is claimed by one sender at a time, a sender that
dies mid-batch leaves sends that another one delivers once the lease runs out, and one that
is slow keeps its lease."""

import asyncio
from collections.abc import Sequence

from services.marketing.channels import DeliveryResult, OutgoingMessage
from services.marketing.sender import Sender
from services.marketing.tests.helpers import launch, new_campaign, new_contact, new_segment, sends
from shared.testing import app_of


def replica(client, providers=None, **overrides) -> Sender:
    app = app_of(client)
    settings = app.state.settings.model_copy(update=overrides)
    return Sender(app.state.session_factory, settings, providers)


class SlowEmail:
    """An e-mail provider that takes ``seconds`` per batch and notes what it delivered."""

    def __init__(self, seconds: float, delivered: list[OutgoingMessage]) -> None:
        self.seconds, self.delivered = seconds, delivered

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        await asyncio.sleep(self.seconds)
        self.delivered += messages
        return [DeliveryResult(m.send_id, ok=True, attempts=1) for m in messages]


async def test_two_senders_never_send_the_same_message(client, mailbox):
    for _ in range(30):
        await new_contact(client)
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    await launch(client, campaign["id"])
    senders = [replica(client, sender_batch_size=4) for _ in range(3)]

    async def drain(sender: Sender) -> int:
        total = 0
        while handled := await sender.deliver_batch():
            total += handled
        return total

    handled = await asyncio.gather(*(drain(s) for s in senders))
    assert sum(handled) == 30
    recipients = [rcpt for message in mailbox.messages for rcpt in message.rcpt_tos]
    assert len(recipients) == len(set(recipients)) == 30
    assert {s["status"] for s in await sends(client, campaign["id"])} == {"sent"}


async def test_a_dead_senders_claim_runs_out_and_another_delivers(client, mailbox):
    await new_contact(client)
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    await launch(client, campaign["id"])
    dead = replica(client, send_lease_s=0.001)
    assert len((await dead._claim()).sends) == 1  # claimed, then the replica "dies"
    [send] = await sends(client, campaign["id"])
    assert send["status"] == "sending"
    await asyncio.sleep(0.01)
    assert await replica(client).deliver_batch() == 1
    [send] = await sends(client, campaign["id"])
    assert send["status"] == "sent" and len(mailbox.messages) == 1
    assert await replica(client).deliver_batch() == 0  # nothing left, nothing sent twice


async def test_two_launches_at_once_queue_each_member_once(client, mailbox):
    for _ in range(20):
        await new_contact(client)
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    url = f"/v1/campaigns/{campaign['id']}/launch"
    first, second = await asyncio.gather(client.post(url), client.post(url))
    # PostgreSQL serialises them on the campaign row (the second finds everyone handled);
    # SQLite, without row locks, refuses the second with a 409 and writes nothing of it.
    assert sorted([first.status_code, second.status_code]) in ([202, 202], [202, 409])
    queued = sum(r.json()["queued"] for r in (first, second) if r.status_code == 202)
    assert queued == 20
    while await app_of(client).state.sender.deliver_batch():
        pass
    recipients = [rcpt for message in mailbox.messages for rcpt in message.rcpt_tos]
    assert len(recipients) == len(set(recipients)) == 20


async def test_a_slow_sender_keeps_its_lease_and_nobody_delivers_twice(client):
    await new_contact(client)
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    await launch(client, campaign["id"])
    delivered: list[OutgoingMessage] = []
    slow = replica(client, {"email": SlowEmail(1.0, delivered)}, send_lease_s=0.3)
    other = replica(client, {"email": SlowEmail(0, delivered)}, send_lease_s=0.3)

    async def later() -> int:
        await asyncio.sleep(0.6)  # the first lease ran out long ago; the sender is alive
        return await other.deliver_batch()

    # Before, the lease was never renewed: the other replica took the send over and
    # delivered it a second time while the first was still at it.
    assert await asyncio.gather(slow.deliver_batch(), later()) == [1, 0]
    assert len(delivered) == 1
    [send] = await sends(client, campaign["id"])
    assert send["status"] == "sent"
