"""Engagement: signed open/click/unsubscribe links (no token needed, the signature is checked),
deliveries and replies reported by providers, all in the report and on the bus."""

import email
import email.policy
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import httpx
import pytest
from aiokafka import ConsumerRecord

from services.marketing.channels import DeliveryResult, OutgoingMessage
from services.marketing.sender import Sender
from services.marketing.tests.helpers import (
    apply,
    deliver,
    launch,
    new_campaign,
    new_contact,
    new_segment,
    outbox,
    report,
    sends,
    snapshot,
)
from shared import topics
from shared.events import CONTACT_UPDATED, decode_event
from shared.testing import app_of, consumer_of, consumer_record


@pytest.fixture
async def anon(client) -> httpx.AsyncClient:
    """The recipient's browser: no bearer token."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_of(client)), base_url="https://crm.example.test"
    ) as http:
        yield http


async def sent_mail(client, mailbox) -> tuple[str, str, dict]:
    customer = await new_contact(client)
    campaign = await new_campaign(client, (await new_segment(client))["id"])
    await launch(client, campaign["id"])
    await deliver(client)
    [envelope] = mailbox.messages
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    content = message.get_body(("plain",)).get_content()
    content += message.get_body(("html",)).get_content()
    links = {
        kind: re.search(
            rf"https://crm\.example\.test(/t/{kind}/[0-9a-f]{{32}}\.[\w-]+)", content
        ).group(1)
        for kind in ("o", "u")
    }
    links["c"] = re.search(r"(/t/c/[0-9a-f]{32}\.[\w-]+\?u=[\w%.-]+)", content).group(1)
    return customer, campaign["id"], links


async def marketing_events(client, event_type: str) -> list[dict]:
    rows = await outbox(client, topics.MARKETING)
    return [decode_event(r.value).data for r in rows if r.event_type == event_type]


async def touches(client, kind: str) -> list[dict]:
    rows = await outbox(client, topics.INTERACTIONS)
    data = [decode_event(r.value).data for r in rows]
    return [d for d in data if d["kind"] == kind]


class TestOpenAndClick:
    async def test_open_pixel_records_one_open(self, client, mailbox, anon):
        customer, campaign_id, links = await sent_mail(client, mailbox)
        for _ in range(2):
            response = await anon.get(links["o"])
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/gif"
        [opened] = await touches(client, "email_open")
        assert opened["customer_id"] == customer and opened["direction"] == "inbound"
        assert opened["ref"] == {"type": "campaign", "id": campaign_id}
        [engaged] = await marketing_events(client, "crm.marketing.engagement_recorded.v1")
        assert engaged["kind"] == "opened"
        assert (await report(client, campaign_id))["opened"] == 1

    async def test_click_redirects_to_the_signed_url_only(self, client, mailbox, anon):
        _, campaign_id, links = await sent_mail(client, mailbox)
        response = await anon.get(links["c"])
        assert response.status_code == 302
        assert response.headers["location"] == "https://shop.example.test/spring"
        assert unquote(links["c"].split("u=")[1]) == "https://shop.example.test/spring"
        elsewhere = links["c"].split("?")[0] + "?u=https%3A%2F%2Fevil.test%2F"
        assert (await anon.get(elsewhere)).status_code == 404
        assert len(await touches(client, "link_click")) == 1
        assert (await report(client, campaign_id))["clicked"] == 1

    @pytest.mark.parametrize("kind", ["o", "c", "u"])
    async def test_a_tampered_link_is_rejected_and_records_nothing(
        self, client, mailbox, anon, kind
    ):
        _, campaign_id, links = await sent_mail(client, mailbox)
        path, _, query = links[kind].partition("?")
        signature = path.rsplit(".", 1)[1]
        forged = path.replace(signature, ("A" if signature[0] != "A" else "B") + signature[1:])
        other_send = re.sub(r"[0-9a-f]{32}", uuid.uuid4().hex, path)
        for bad in (forged, other_send, "/t/" + kind + "/garbage"):
            url = bad + ("?" + query if query else "")
            response = await (anon.post(url) if kind == "u" else anon.get(url))
            assert response.status_code == 404, bad
        got = await report(client, campaign_id)
        assert (got["opened"], got["clicked"], got["unsubscribed"]) == (0, 0, 0)
        assert await marketing_events(client, "crm.marketing.engagement_recorded.v1") == []


class TestUnsubscribe:
    async def test_get_only_asks_post_unsubscribes(self, client, mailbox, anon):
        customer, campaign_id, links = await sent_mail(client, mailbox)
        page = await anon.get(links["u"])
        assert page.status_code == 200 and "<form method='post'" in page.text
        assert (await report(client, campaign_id))["unsubscribed"] == 0
        response = await anon.post(
            links["u"],
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200
        [event] = await marketing_events(client, "crm.marketing.unsubscribed.v1")
        assert event["customer_id"] == customer and event["channel"] == "email"
        assert event["campaign_id"] == campaign_id
        [unsubscribe] = await touches(client, "unsubscribe")
        assert unsubscribe["direction"] == "inbound"
        assert (await report(client, campaign_id))["unsubscribed"] == 1
        # Honoured at once, before contacts republishes the consent.
        follow_up = await new_campaign(client, (await new_segment(client))["id"])
        result = await launch(client, follow_up["id"])
        assert result["suppressed"] == {"channel_opted_out": 1}

    async def test_a_campaign_queued_before_the_unsubscribe_is_not_delivered(
        self, client, mailbox, anon
    ):
        customer, campaign_id, links = await sent_mail(client, mailbox)
        queued = await new_campaign(client, (await new_segment(client))["id"], name="Autumn")
        assert (await launch(client, queued["id"]))["queued"] == 1
        assert (await anon.post(links["u"])).status_code == 200
        await deliver(client)
        # Before, only the launch checked consent: the queued mail went out all the same.
        assert len(mailbox.messages) == 1
        [send] = await sends(client, queued["id"])
        assert (send["status"], send["reasons"]) == ("suppressed", ["channel_opted_out"])

    async def test_a_snapshot_published_before_the_unsubscribe_does_not_undo_it(
        self, client, mailbox, anon
    ):
        customer, _, links = await sent_mail(client, mailbox)
        assert (await anon.post(links["u"])).status_code == 200
        # A name changed in contacts a moment before: its snapshot, without the opt-out,
        # arrives after the unsubscribe and used to replace the preferences.
        earlier = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        await apply(
            client, CONTACT_UPDATED, snapshot(customer, first_name="A.", updated_at=earlier)
        )
        follow_up = await new_campaign(client, (await new_segment(client))["id"], name="B")
        assert (await launch(client, follow_up["id"]))["suppressed"] == {"channel_opted_out": 1}
        check = f"/v1/customers/{customer}/contact-check"
        # The contact check marketing serves says what its launches do (it said allowed).
        assert (await client.get(check, params={"channel": "email"})).json() == {
            "allowed": False,
            "reasons": ["channel_opted_out"],
        }

    async def test_contacts_lagging_behind_the_unsubscribe_does_not_undo_it(
        self, client, mailbox, anon
    ):
        """Contacts takes the unsubscribe in from the bus, maybe late (its consumer behind or
        down): a snapshot it publishes meanwhile (a phone number changed there) is later than
        the unsubscribe and still without the opt-out. It used to opt the customer back in
        here, and the next campaign mailed them."""
        customer, _, links = await sent_mail(client, mailbox)
        assert (await anon.post(links["u"])).status_code == 200
        later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        await apply(
            client, CONTACT_UPDATED, snapshot(customer, phone="+4915100000000", updated_at=later)
        )
        follow_up = await new_campaign(client, (await new_segment(client))["id"], name="B")
        assert (await launch(client, follow_up["id"]))["suppressed"] == {"channel_opted_out": 1}
        # Contacts took it in (the snapshot has the opt-out); after that, a snapshot without
        # it is the customer subscribing again there.
        taken_in = {"opted_out_channels": ["email"]}
        later = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        await apply(
            client, CONTACT_UPDATED, snapshot(customer, preferences=taken_in, updated_at=later)
        )
        later = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        await apply(client, CONTACT_UPDATED, snapshot(customer, updated_at=later))
        again = await new_campaign(client, (await new_segment(client))["id"], name="C")
        assert (await launch(client, again["id"]))["queued"] == 1

    async def test_snapshots_in_one_fetched_batch_see_the_unsubscribe_as_one_by_one(
        self, client, mailbox, anon
    ):
        """The same, through the contacts subscription's batches: a batch reads its
        contacts' waiting unsubscribes at once, and a snapshot that clears one leaves the next
        snapshot in the batch to find none."""
        customer, _, links = await sent_mail(client, mailbox)
        assert (await anon.post(links["u"])).status_code == 200
        contacts = consumer_of(app_of(client), "contacts")

        def updated(offset: int, **fields) -> ConsumerRecord:
            at = (datetime.now(UTC) + timedelta(seconds=offset + 1)).isoformat()
            data = snapshot(customer, updated_at=at, **fields)
            return consumer_record(topics.CONTACTS, offset, CONTACT_UPDATED, data, key=customer)

        await contacts.process([updated(0, phone="+4915100000000")])
        follow_up = await new_campaign(client, (await new_segment(client))["id"], name="B")
        assert (await launch(client, follow_up["id"]))["suppressed"] == {"channel_opted_out": 1}
        taken_in = {"opted_out_channels": ["email"]}
        await contacts.process([updated(1, preferences=taken_in), updated(2)])
        again = await new_campaign(client, (await new_segment(client))["id"], name="C")
        assert (await launch(client, again["id"]))["queued"] == 1


class TestProviderEvents:
    async def test_delivered_and_replied(self, client, mailbox):
        customer, campaign_id, _ = await sent_mail(client, mailbox)
        [send] = await sends(client, campaign_id)
        for kind in ("delivered", "replied"):
            response = await client.post(
                "/v1/engagements", json={"send_id": send["id"], "kind": kind}
            )
            assert response.status_code == 201, response.text
            assert response.json()["recorded"] is True
        again = await client.post(
            "/v1/engagements", json={"send_id": send["id"], "kind": "replied"}
        )
        assert again.status_code == 200 and again.json() == {"id": None, "recorded": False}
        got = await report(client, campaign_id)
        assert (got["delivered"], got["replied"]) == (1, 1)
        [reply] = await touches(client, "campaign_reply")
        assert reply["customer_id"] == customer
        assert await touches(client, "delivered") == []  # a receipt is not a customer touch

    async def test_unknown_send(self, client):
        response = await client.post(
            "/v1/engagements", json={"send_id": str(uuid.uuid4()), "kind": "delivered"}
        )
        assert response.status_code == 404
        assert response.json()["error"]["fields"][0]["field"] == "send_id"

    @pytest.mark.parametrize("kind", ["delivered", "replied"])
    async def test_a_report_on_a_send_never_handed_over_is_refused(self, client, mailbox, kind):
        await new_contact(client)
        await new_contact(client, email=None)
        campaign_id = (await new_campaign(client, (await new_segment(client))["id"]))["id"]
        await launch(client, campaign_id)
        by_status = {s["status"]: s for s in await sends(client, campaign_id)}
        assert set(by_status) == {"queued", "suppressed"}
        for send in by_status.values():
            response = await client.post(
                "/v1/engagements", json={"send_id": send["id"], "kind": kind}
            )
            # Recorded: the report said delivered 2 (or replied 2) with nothing sent.
            assert response.status_code == 409, response.text
            error = response.json()["error"]
            assert error["fields"][0]["field"] == "send_id"
            assert send["status"] in error["fields"][0]["reason"]
        got = await report(client, campaign_id)
        assert (got["sent"], got["delivered"], got["replied"]) == (0, 0, 0)
        assert await marketing_events(client, "crm.marketing.engagement_recorded.v1") == []

    async def test_a_report_on_a_failed_send_is_refused(self, client, mailbox):
        customer = await new_contact(client)
        campaign_id = (await new_campaign(client, (await new_segment(client))["id"]))["id"]
        await launch(client, campaign_id)
        mailbox.refuse.add(f"ada.{customer[:8]}@example.com")
        await deliver(client)
        [send] = await sends(client, campaign_id)
        assert send["status"] == "failed"
        response = await client.post(
            "/v1/engagements", json={"send_id": send["id"], "kind": "delivered"}
        )
        assert response.status_code == 409, response.text
        assert (await report(client, campaign_id))["delivered"] == 0

    async def test_a_receipt_before_the_sender_records_the_send_counts_once(self, client):
        """A provider may report delivery while the send is still ``sending``: it was handed
        over, the sender has not recorded the outcome yet."""
        await new_contact(client)
        campaign_id = (await new_campaign(client, (await new_segment(client))["id"]))["id"]
        await launch(client, campaign_id)
        answers: list[int] = []

        class ReportingAtOnce:
            async def deliver(self, messages: list[OutgoingMessage]) -> list[DeliveryResult]:
                for message in messages:
                    receipt = {"send_id": str(message.send_id), "kind": "delivered"}
                    answers.append((await client.post("/v1/engagements", json=receipt)).status_code)
                return [DeliveryResult(m.send_id, ok=True, attempts=1) for m in messages]

        app = app_of(client)
        sender = Sender(app.state.session_factory, app.state.settings, {"email": ReportingAtOnce()})
        assert await sender.deliver_batch() == 1
        [send] = await sends(client, campaign_id)
        assert send["status"] == "sent" and answers == [201]
        again = await client.post(
            "/v1/engagements", json={"send_id": send["id"], "kind": "delivered"}
        )
        assert again.status_code == 200 and again.json() == {"id": None, "recorded": False}
        got = await report(client, campaign_id)
        assert (got["sent"], got["delivered"]) == (1, 1)
