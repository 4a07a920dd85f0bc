"""End to end through the real broker: the five services side by side, each with its own
database, and one customer's history as every department reads it through its API while
contacts merges and erases under a flow of touches from support, sales and marketing."""

import asyncio
import itertools
import uuid
from typing import Any

import httpx
import pytest
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_fixed

from shared import topics
from shared.events import INTERACTION_RECORDED, encode_event, utcnow
from shared.testing import eventually, outbox_drained

pytestmark = pytest.mark.bus
CHANNELS = itertools.cycle(["phone", "email", "chat", "sms", "web"])


async def ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


async def send(
    client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None, method: str = "POST"
) -> httpx.Response:
    """A write as a client makes it: a 503 (the database busy; nothing was written) is sent
    again, with the same id in the body where it has one, so the write is recorded once
    (README, "Retries")."""
    retrying = AsyncRetrying(
        retry=retry_if_result(lambda response: response.status_code == 503),
        wait=wait_fixed(0.05),
        stop=stop_after_attempt(20),
        retry_error_callback=lambda state: state.outcome.result(),
    )
    return await retrying(client.request, method, path, json=body)


async def contact(contacts: httpx.AsyncClient, family: str, name: str) -> str:
    body = {"first_name": name, "last_name": family, "email": f"{name}.{family}@example.com"}
    return (await ok(await contacts.post("/v1/contacts", json=body)))["id"]


async def timeline_ids(client: httpx.AsyncClient, customer: str) -> list[str]:
    """Every touch id of the customer's timeline in this department, every page."""
    found: list[str] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = await ok(await client.get(f"/v1/customers/{customer}/timeline", params=params))
        found += [item["interaction_id"] for item in page["items"]]
        if not page["next_cursor"]:
            return found
        params["cursor"] = page["next_cursor"]


async def touches_360(analytics: httpx.AsyncClient, customer: str) -> tuple[dict, list[str]]:
    view = await ok(await analytics.get(f"/v1/customers/{customer}/360", params={"limit": 1000}))
    assert view["touches"]["next_cursor"] is None
    return view, [t["interaction_id"] for t in view["touches"]["items"]]


async def record(client: httpx.AsyncClient, customer: str, **extra: Any) -> None:
    body = {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer,
        "channel": next(CHANNELS),
        "direction": "inbound",
        "kind": "chat",
        **extra,
    }
    await ok(await send(client, "/v1/interactions", body))


async def sales_call(sales: httpx.AsyncClient, customer: str) -> None:
    body = {
        "activity_id": str(uuid.uuid4()),
        "customer_id": customer,
        "kind": "call",
        "channel": "phone",
        "direction": "outbound",
    }
    await ok(await send(sales, "/v1/activities", body))


async def publish_touch(
    producer: Any, customer: str, department: str, partition: int | None = None
) -> int:
    """A touch as a department's relay publishes it (late: after the customer's erasure), on
    its key's partition or ``partition``; the partition it went to."""
    data = {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer,
        "department": department,
        "channel": "chat",
        "direction": "inbound",
        "kind": "chat",
        "occurred_at": utcnow().isoformat(),
    }
    _, value, headers = encode_event(
        event_type=INTERACTION_RECORDED, source=f"/crm/{department}", data=data, subject=customer
    )
    sent = await producer.send_and_wait(
        topics.INTERACTIONS,
        value=value,
        key=customer.encode(),
        headers=list(headers.items()),
        partition=partition,
    )
    return sent.partition


async def all_drained(platform: dict[str, httpx.AsyncClient]) -> None:
    for client in platform.values():
        await outbox_drained(client)


# ---- merge under a flow of touches ----------------------------------------------------------


async def test_a_merge_under_every_departments_touches_leaves_one_history(platform, mailbox):
    contacts, sales, marketing = platform["contacts"], platform["sales"], platform["marketing"]
    support, analytics = platform["support"], platform["analytics"]
    family = "Merge" + uuid.uuid4().hex[:8]
    ada, twin = await contact(contacts, family, "ada"), await contact(contacts, family, "twin")
    rules = {"field": "last_name", "op": "eq", "value": family}

    async def marketing_knows_both() -> None:
        preview = await ok(await marketing.post("/v1/segments:preview", json={"rules": rules}))
        assert preview["count"] == 2

    await eventually(marketing_knows_both, timeout=30)
    segment = await ok(await marketing.post("/v1/segments", json={"name": "Ada", "rules": rules}))
    campaign = await ok(
        await marketing.post(
            "/v1/campaigns",
            json={
                "name": "Winter offer",
                "channel": "email",
                "segment_id": segment["id"],
                "subject": "Hello",
                "template": "Hello {first_name}",
                "budget": "10",
                "cost_per_send": "0.01",
            },
        )
    )
    await ok(await marketing.post(f"/v1/campaigns/{campaign['id']}/launch"))

    async def both_sent() -> dict[str, str]:
        sends = await ok(await marketing.get(f"/v1/campaigns/{campaign['id']}/sends"))
        assert sorted(s["status"] for s in sends["items"]) == ["sent", "sent"], sends
        return {s["customer_id"]: s["id"] for s in sends["items"]}

    send_of = await eventually(both_sent, timeout=30)
    touches = 2  # the two campaign sends

    # Every department writes about both while contacts merges the twin into Ada.
    merged = asyncio.Event()
    records: dict[str, str] = {}
    per_writer = 6

    async def writer(write: Any) -> int:
        for index in range(per_writer):
            if index == per_writer // 2:
                await merged.wait()  # half before the merge, half after (or during)
            await write()
        return per_writer

    async def merge() -> int:
        await asyncio.sleep(0.05)
        await ok(await send(contacts, f"/v1/contacts/{ada}/merge", {"duplicate_ids": [twin]}))
        merged.set()
        return 0

    async def open_ticket() -> int:
        body = {
            "ticket_id": str(uuid.uuid4()),
            "customer_id": twin,
            "subject": "Broken",
            "description": "It broke.",
            "channel": "email",
            "priority": "high",
        }
        ticket = await ok(await send(support, "/v1/tickets", body))
        records["ticket"] = ticket["id"]
        await merged.wait()
        reply = {"message_id": str(uuid.uuid4()), "author_type": "customer", "body": "Any news?"}
        await ok(await send(support, f"/v1/tickets/{ticket['id']}/messages", reply))
        return 2  # ticket_opened, ticket_reply

    async def place_order() -> int:
        body = {
            "order_id": str(uuid.uuid4()),
            "customer_id": twin,
            "amount": "120.00",
            "currency": "EUR",
        }
        records["order"] = (await ok(await send(sales, "/v1/orders", body)))["id"]
        return 1  # order_placed

    async def reply_to_campaign() -> int:
        await merged.wait()
        body = {"send_id": send_of[twin], "kind": "replied"}
        await ok(await send(marketing, "/v1/engagements", body))  # the first per send counts
        return 1  # campaign_reply

    written = await asyncio.gather(
        merge(),
        open_ticket(),
        place_order(),
        reply_to_campaign(),
        *(
            writer(lambda c=customer, w=write: w(c))
            for customer in (ada, twin)
            for write in (
                lambda c: record(support, c),
                lambda c: sales_call(sales, c),
                lambda c: record(marketing, c, direction="outbound", kind="newsletter"),
            )
        ),
    )
    touches += sum(written)
    await all_drained(platform)

    # Support's timeline has every touch once, under Ada.
    async def support_has_all() -> list[str]:
        ids = await timeline_ids(support, ada)
        assert len(ids) == touches and len(set(ids)) == touches, (len(ids), touches)
        return ids

    history = sorted(await eventually(support_has_all, timeout=30))

    async def every_department_agrees() -> None:
        assert (await contacts.get(f"/v1/contacts/{twin}")).status_code == 301
        activity = (await ok(await contacts.get(f"/v1/contacts/{ada}")))["activity"]
        assert activity["interactions_total"] == touches
        for client in (support, sales, marketing):
            for customer in (ada, twin):  # the twin's id reads Ada's history
                found = sorted(await timeline_ids(client, customer))
                assert found == history, (str(client.base_url), customer, len(found))
        for customer in (ada, twin):
            view, ids = await touches_360(analytics, customer)
            assert view["customer_id"] == ada
            assert sorted(ids) == history, ("analytics 360", customer, len(ids))
            assert sum(view["touches_per_department"].values()) == touches
            assert [t["ticket_id"] for t in view["open_tickets"]] == [records["ticket"]]
            assert [o["order_id"] for o in view["orders"]] == [records["order"]]
            rep = await ok(await sales.get(f"/v1/customers/{customer}"))
            assert rep["customer_id"] == ada
            assert [t["ticket_id"] for t in rep["open_tickets"]] == [records["ticket"]]
            assert [o["id"] for o in rep["orders"]] == [records["order"]]
        scores = await ok(await analytics.get(f"/v1/customers/{twin}/scores"))
        assert scores["customer_id"] == ada
        preview = await ok(await marketing.post("/v1/segments:preview", json={"rules": rules}))
        assert preview["count"] == 1  # Ada alone
        check = await ok(
            await marketing.get(f"/v1/customers/{twin}/contact-check", params={"channel": "email"})
        )
        assert "open_priority_ticket" in check["reasons"]  # the twin's ticket holds Ada back

    await eventually(every_department_agrees, timeout=30)


# ---- erasures -------------------------------------------------------------------------------


async def test_erasures_under_a_flow_of_touches_leave_nothing_of_the_person(platform, producer):
    """Ada is erased while touches of hers are in flight, and touches arrive after (late, on
    her partition); Grace's twin was merged into Grace, then Grace is erased: both their ids
    answer as erased everywhere, and no department keeps a touch of theirs."""
    contacts, sales, marketing = platform["contacts"], platform["sales"], platform["marketing"]
    support, analytics = platform["support"], platform["analytics"]
    family = "Erase" + uuid.uuid4().hex[:8]
    ada, grace, twin, bob = [
        await contact(contacts, family, name) for name in ("ada", "grace", "twin", "bob")
    ]
    ticket = {
        "subject": "Broken",
        "description": "It broke.",
        "channel": "email",
        "priority": "urgent",
    }
    for customer in (ada, twin, bob):
        await ok(await send(support, "/v1/tickets", {**ticket, "customer_id": customer}))
        body = {"customer_id": customer, "amount": "50.00", "currency": "EUR"}
        await ok(await send(sales, "/v1/orders", body))
    await ok(await send(contacts, f"/v1/contacts/{grace}/merge", {"duplicate_ids": [twin]}))
    # A contact merged away is erased with its survivor, not on its own.
    refused = await send(contacts, f"/v1/contacts/{twin}", method="DELETE")
    assert refused.status_code == 409, refused.text

    erased = asyncio.Event()

    async def erase(customer: str) -> None:
        await asyncio.sleep(0.05)
        erasure = await send(contacts, f"/v1/contacts/{customer}", method="DELETE")
        assert erasure.status_code == 204, erasure.text
        erased.set()

    async def writer(write: Any, customer: str) -> None:
        for _ in range(4):
            response = await write(customer)
            if erased.is_set() and response.status_code == 409:
                return  # the department learned of the erasure: no more touches
            assert response.status_code == 201, response.text

    def support_touch(customer: str) -> Any:
        body = {"customer_id": customer, "channel": "chat", "direction": "inbound", "kind": "chat"}
        return send(support, "/v1/interactions", {**body, "interaction_id": str(uuid.uuid4())})

    def sales_touch(customer: str) -> Any:
        body = {
            "customer_id": customer,
            "kind": "call",
            "channel": "phone",
            "direction": "outbound",
        }
        return send(sales, "/v1/activities", {**body, "activity_id": str(uuid.uuid4())})

    def marketing_touch(customer: str) -> Any:
        body = {"customer_id": customer, "channel": "web", "direction": "inbound", "kind": "visit"}
        return send(marketing, "/v1/interactions", {**body, "interaction_id": str(uuid.uuid4())})

    await asyncio.gather(
        erase(ada),
        erase(grace),
        *(
            writer(write, customer)
            for write in (support_touch, sales_touch, marketing_touch)
            for customer in (ada, twin, grace, bob)
        ),
    )
    # Late touches, published after the erasures under each erased id's own key.
    # After each, a touch of Bob's on its partition: once Bob's are all in, so are they.
    bob_touches = 2 + 3 * 4  # his ticket and order, and the touches of the three writers
    for customer in (ada, twin, grace):
        for department in ("support", "sales"):
            partition = await publish_touch(producer, customer, department)
            await publish_touch(producer, bob, "marketing", partition)
            bob_touches += 1
    await all_drained(platform)

    async def bob_complete() -> None:
        assert len(await timeline_ids(support, bob)) == bob_touches
        for client in (sales, marketing):
            assert len(await timeline_ids(client, bob)) == bob_touches
        activity = (await ok(await contacts.get(f"/v1/contacts/{bob}")))["activity"]
        assert activity["interactions_total"] == bob_touches
        _, in_360 = await touches_360(analytics, bob)
        assert len(in_360) == bob_touches

    await eventually(bob_complete, timeout=30)

    async def nothing_left() -> None:
        for customer in (ada, grace, twin):
            assert (await contacts.get(f"/v1/contacts/{customer}")).status_code == 404
            for client in (support, sales, marketing):
                assert await timeline_ids(client, customer) == []
                check = await ok(
                    await client.get(
                        f"/v1/customers/{customer}/contact-check", params={"channel": "email"}
                    )
                )
                assert check == {"allowed": False, "reasons": ["customer_erased"]}
            assert (await sales.get(f"/v1/customers/{customer}")).status_code == 404
            assert (await analytics.get(f"/v1/customers/{customer}/360")).status_code == 404
            assert (await analytics.get(f"/v1/customers/{customer}/scores")).status_code == 404
            tickets = await ok(await support.get("/v1/tickets", params={"customer_id": customer}))
            assert all(t["status"] == "closed" for t in tickets["items"]), tickets
        preview = await ok(
            await marketing.post(
                "/v1/segments:preview",
                json={"rules": {"field": "last_name", "op": "eq", "value": family}},
            )
        )
        assert preview["count"] == 1  # Bob alone

    await eventually(nothing_left, timeout=30)
