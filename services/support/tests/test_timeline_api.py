"""The timeline, contact checks and support's own touches through the API. Other services'
events are applied with the consumer's handlers directly here; test_bus.py uses the broker."""

import gc
import json
import uuid
from datetime import UTC, datetime, timedelta

from services.support.tests.helpers import apply, new_ticket, outbox
from shared import topics
from shared.events import (
    CONTACT_ERASED,
    CONTACT_MERGED,
    CONTACT_POLICY_UPDATED,
    CONTACT_UPDATED,
    INTERACTION_RECORDED,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def touch(customer_id: str, *, department="sales", direction="outbound", at=NOW, **extra):
    return {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "department": department,
        "channel": "phone",
        "direction": direction,
        "kind": "call",
        "subject": "Renewal",
        "occurred_at": at.isoformat(),
        "actor": "rep-7",
        "ref": {"type": "activity", "id": "a-1"},
        **extra,
    }


def snapshot(contact_id: str, **preferences):
    return {
        "contact_id": contact_id,
        "first_name": "Anna",
        "email": "anna@example.com",
        "preferences": preferences,
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
    }


async def check(client, customer_id, channel="phone", **params):
    response = await client.get(
        f"/v1/customers/{customer_id}/contact-check",
        params={"channel": channel, "at": NOW.isoformat(), **params},
    )
    assert response.status_code == 200, response.text
    return response.json()


class TestTimeline:
    async def test_newest_first_with_cursor(self, client):
        customer = str(uuid.uuid4())
        touches = [touch(customer, at=NOW - timedelta(hours=h)) for h in range(5)]
        for data in touches:
            await apply(client, INTERACTION_RECORDED, data)
        await apply(client, INTERACTION_RECORDED, touches[0])  # a replay changes nothing
        await apply(client, INTERACTION_RECORDED, touch(str(uuid.uuid4())))
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(f"/v1/customers/{customer}/timeline", params=params)).json()
            seen += page["items"]
            if not (cursor := page["next_cursor"]):
                break
        assert [i["interaction_id"] for i in seen] == [t["interaction_id"] for t in touches]
        first = seen[0]
        assert first["department"] == "sales" and first["ref"] == {"type": "activity", "id": "a-1"}
        assert first["occurred_at"] == "2026-11-24T12:00:00Z"

    async def test_filters_narrow_the_timeline(self, client):
        customer = str(uuid.uuid4())
        call = touch(customer, at=NOW - timedelta(days=2))
        email = touch(customer, department="marketing", channel="email", kind="campaign_send")
        chat = touch(customer, department="support", channel="chat", kind="chat", at=NOW)
        for data in (call, email, chat):
            await apply(client, INTERACTION_RECORDED, data)
        for params, expected in [
            ({"department": "marketing"}, [email]),
            ({"channel": "phone"}, [call]),
            ({"kind": "chat"}, [chat]),
            ({"since": (NOW - timedelta(days=1)).isoformat()}, [email, chat]),
            ({"until": (NOW - timedelta(days=1)).isoformat()}, [call]),
            ({"department": "support", "channel": "email"}, []),
        ]:
            page = (await client.get(f"/v1/customers/{customer}/timeline", params=params)).json()
            got = {i["interaction_id"] for i in page["items"]}
            assert got == {t["interaction_id"] for t in expected}, params

    async def test_merge_moves_timeline_and_tickets_to_the_survivor(self, client):
        survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
        await apply(client, INTERACTION_RECORDED, touch(survivor))
        await apply(client, INTERACTION_RECORDED, touch(merged, at=NOW - timedelta(days=1)))
        ticket = await new_ticket(client, customer_id=merged)
        await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        await apply(client, INTERACTION_RECORDED, touch(merged, at=NOW + timedelta(hours=1)))
        items = (await client.get(f"/v1/customers/{survivor}/timeline")).json()["items"]
        assert len(items) == 3 and {i["customer_id"] for i in items} == {survivor}
        via_old_id = (await client.get(f"/v1/customers/{merged}/timeline")).json()["items"]
        assert via_old_id == items
        moved = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        assert moved["customer_id"] == survivor
        later = await new_ticket(client, customer_id=merged)
        assert later["customer_id"] == survivor

    async def test_erasure_removes_touches_and_ticket_pii(self, client):
        customer = str(uuid.uuid4())
        await apply(client, CONTACT_UPDATED, snapshot(customer))
        await apply(client, INTERACTION_RECORDED, touch(customer))
        ticket = await new_ticket(client, customer_id=customer, attributes={"serial": "S-1"})
        await client.post(
            f"/v1/tickets/{ticket['id']}/messages",
            json={"author_type": "customer", "body": "I am Anna, born 1990"},
        )
        await apply(client, CONTACT_ERASED, {"contact_id": customer, "erased_at": NOW.isoformat()})
        assert (await client.get(f"/v1/customers/{customer}/timeline")).json()["items"] == []
        await apply(client, INTERACTION_RECORDED, touch(customer))  # late touch: dropped
        assert (await client.get(f"/v1/customers/{customer}/timeline")).json()["items"] == []
        erased = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        assert erased["subject"] == erased["description"] == "[erased]"
        assert erased["attributes"] == {}
        assert [m["body"] for m in erased["messages"]] == ["[erased]"]
        assert await check(client, customer) == {"allowed": False, "reasons": ["customer_erased"]}
        response = await client.post(
            "/v1/tickets",
            json={
                "customer_id": customer,
                "subject": "x",
                "description": "y",
                "channel": "email",
            },
        )
        assert response.status_code == 409


class TestContactCheck:
    async def test_unknown_customer_is_allowed(self, client):
        assert await check(client, uuid.uuid4()) == {"allowed": True, "reasons": []}

    async def test_opt_out_and_quiet_hours_from_the_contacts_projection(self, client):
        customer = str(uuid.uuid4())
        quiet = {"start": "11:00", "end": "13:00", "timezone": "UTC"}
        await apply(
            client,
            CONTACT_UPDATED,
            snapshot(customer, opted_out_channels=["sms"], quiet_hours=quiet),
        )
        assert await check(client, customer, channel="sms") == {
            "allowed": False,
            "reasons": ["channel_opted_out", "quiet_hours"],
        }

    async def test_weekly_budget_counts_every_departments_outbound_touches(self, client):
        customer = str(uuid.uuid4())
        await apply(client, CONTACT_POLICY_UPDATED, {"max_outbound_per_week": 3})
        for department in ("sales", "marketing"):
            await apply(client, INTERACTION_RECORDED, touch(customer, department=department))
        await apply(client, INTERACTION_RECORDED, touch(customer, direction="inbound"))
        old = touch(customer, at=NOW - timedelta(days=8))
        await apply(client, INTERACTION_RECORDED, old)
        assert (await check(client, customer))["allowed"] is True
        await apply(client, INTERACTION_RECORDED, touch(customer, department="support"))
        assert await check(client, customer) == {
            "allowed": False,
            "reasons": ["weekly_limit_reached"],
        }

    async def test_open_urgent_ticket_blocks_marketing(self, client):
        customer = str(uuid.uuid4())
        ticket = await new_ticket(client, customer_id=customer, priority="urgent")
        assert (await check(client, customer, department="marketing"))["reasons"] == [
            "open_priority_ticket"
        ]
        assert (await check(client, customer, department="sales"))["allowed"] is True
        await client.post(f"/v1/tickets/{ticket['id']}/resolve")
        assert (await check(client, customer, department="marketing"))["allowed"] is True


class TestRecordInteractions:
    async def test_single_touch_goes_out_via_the_outbox(self, client):
        customer = str(uuid.uuid4())
        response = await client.post(
            "/v1/interactions",
            json={
                "customer_id": customer,
                "channel": "phone",
                "direction": "outbound",
                "kind": "courtesy_call",
                "subject": "How is the new printer?",
                "sentiment": "positive",
            },
        )
        assert response.status_code == 201, response.text
        [row] = await outbox(client, topics.INTERACTIONS)
        assert row.key == customer
        data = json.loads(row.value)["data"]
        assert data["interaction_id"] == response.json()["id"]
        assert data["department"] == "support" and data["kind"] == "courtesy_call"

    async def test_a_touch_sent_again_with_its_interaction_id_is_one_event(self, client):
        # A client's retry: every consumer counted the second event as a second touch.
        touch = {
            "interaction_id": str(uuid.uuid4()),
            "customer_id": str(uuid.uuid4()),
            "channel": "phone",
            "direction": "inbound",
            "kind": "call",
        }
        other = {**touch, "interaction_id": str(uuid.uuid4())}
        for _ in range(2):
            response = await client.post("/v1/interactions", json=touch)
            assert response.status_code == 201, response.text
            assert response.json()["id"] == touch["interaction_id"]
        batch = await client.post("/v1/interactions:batch", json={"items": [touch, other, other]})
        assert batch.status_code == 201, batch.text
        assert batch.json()["ids"] == [touch["interaction_id"], *[other["interaction_id"]] * 2]
        rows = await outbox(client, topics.INTERACTIONS)
        # The event id of a touch is its interaction id.
        assert [str(row.event_id) for row in rows] == [
            touch["interaction_id"],
            other["interaction_id"],
        ]

    async def test_batch(self, client):
        customer = str(uuid.uuid4())
        items = [
            {"customer_id": customer, "channel": "chat", "direction": "inbound", "kind": "chat"}
            for _ in range(1000)
        ]
        response = await client.post("/v1/interactions:batch", json={"items": items})
        assert response.status_code == 201, response.text
        assert len(response.json()["ids"]) == 1000
        assert len(await outbox(client, topics.INTERACTIONS)) == 1000

    async def test_a_full_batch_is_taken_in_without_a_garbage_collection(self, client):
        """shared.app.GC_YOUNG_THRESHOLD lies above what a batch of 1,000 touches allocates: at
        CPython's default of 700 taking one in ran about 30 collections."""
        items = [
            {"customer_id": str(uuid.uuid4()), "channel": "chat", "direction": "inbound"}
            | {"kind": "chat", "subject": f"Question {number}", "actor": "agent-7"}
            for number in range(1000)
        ]
        collections = []

        def collecting(phase: str, info: dict) -> None:
            if phase == "start":
                collections.append(info["generation"])

        gc.collect(0)  # the count of young objects from zero
        gc.callbacks.append(collecting)
        try:
            response = await client.post("/v1/interactions:batch", json={"items": items})
        finally:
            gc.callbacks.remove(collecting)
        assert response.status_code == 201, response.text[:500]
        assert collections == []
