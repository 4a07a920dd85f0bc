"""A customer's erasure and their tickets: once erased, nothing more is done for the person.
Contacts' events are applied with the consumer's handlers on a real database; test_bus.py
applies one through the broker."""

import asyncio
import json
import uuid
from datetime import datetime, timedelta

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import service, sla
from services.support.models import Ticket
from services.support.tests.helpers import apply, event_handlers, new_agent, new_ticket, outbox
from shared import topics
from shared.consumer import EventConsumer
from shared.contracts import support
from shared.db import on_postgres
from shared.events import (
    CONTACT_ERASED,
    INTERACTION_RECORDED,
    Envelope,
    encode_event,
    tombstone_headers,
    utcnow,
)
from shared.models import ProcessedEvent
from shared.testing import (
    TopicTail,
    app_of,
    one_write_waits_for_another,
    postgres_only,
    until_a_transaction_waits_for_a_lock,
)


def erasure(customer_id: str) -> dict[str, str]:
    return {"contact_id": customer_id, "erased_at": "2026-11-24T00:00:00Z"}


async def published(client, event_type: str) -> list[dict]:
    rows = await outbox(client, topics.SUPPORT)
    return [
        {"key": row.key, **json.loads(row.value)["data"]}
        for row in rows
        if row.event_type == event_type
    ]


class TestErasure:
    async def test_the_customers_unfinished_tickets_are_closed(self, client):
        # Before, they stayed open and pending: in the agents' queues, counted against their
        # capacity, and re-assigned and breached by the SLA sweep for a person who no longer
        # exists, while every other department kept them open.
        agent = await new_agent(client, capacity=1)
        pending = await new_ticket(client)
        customer = pending["customer_id"]
        waiting = await new_ticket(client, customer_id=customer)  # nobody free: stays open
        resolved = await new_ticket(client, customer_id=customer)
        assert (await client.post(f"/v1/tickets/{resolved['id']}/resolve")).status_code == 200
        someone_else = await new_ticket(client)
        assert (pending["status"], waiting["status"]) == ("pending", "open")
        before = await published(client, "crm.support.ticket_closed.v1")

        await apply(client, CONTACT_ERASED, erasure(customer))

        for ticket in (pending, waiting, resolved):
            read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
            assert read["status"] == "closed" and read["closed_at"] is not None, read
        still_resolved = (await client.get(f"/v1/tickets/{resolved['id']}")).json()
        assert still_resolved["resolved_at"] is not None  # it was solved: the KPIs keep that
        other = (await client.get(f"/v1/tickets/{someone_else['id']}")).json()
        assert other["status"] == "open"
        assert (await client.get(f"/v1/agents/{agent['id']}")).json()["open_tickets"] == 0
        for status in ("open", "pending"):
            queue = await client.get("/v1/tickets", params={"status": status})
            assert [t["id"] for t in queue.json()["items"]] == (
                [someone_else["id"]] if status == "open" else []
            )
        # Every department hears of it, under the erased id (the customer's partition).
        closed = await published(client, "crm.support.ticket_closed.v1")
        assert before == []
        assert sorted(c["ticket_id"] for c in closed) == sorted(
            t["id"] for t in (pending, waiting, resolved)
        )
        assert {(c["key"], c["customer_id"]) for c in closed} == {(customer, customer)}
        assert {c["reason"] for c in closed} == {"erasure"}  # no agent's close

        # An erasure applied again (a redelivery, a merge of the erased id) closes nothing more.
        await apply(client, CONTACT_ERASED, erasure(customer))
        assert len(await published(client, "crm.support.ticket_closed.v1")) == 3

    async def test_the_sla_sweep_leaves_them_alone(self, client):
        # Before, the sweep moved the erased customer's ticket to another agent and flagged its
        # breaches, published under an id every other department had forgotten.
        await client.put(
            "/v1/sla-policies/urgent",
            json={
                "reassign_after_minutes": 5,
                "first_response_minutes": 30,
                "resolution_minutes": 60,
            },
        )
        await new_agent(client, name="First")
        ticket = await new_ticket(client, priority="urgent")
        await new_agent(client, name="Second")
        await apply(client, CONTACT_ERASED, erasure(ticket["customer_id"]))

        opened = datetime.fromisoformat(ticket["opened_at"])
        swept = await sla.sweep(app_of(client).state.session_factory, opened + timedelta(days=2))
        assert (swept.reassigned, swept.breaches) == (0, 0)
        assert await published(client, "crm.support.ticket_reassigned.v1") == []
        assert await published(client, "crm.support.ticket_sla_breached.v1") == []
        # Nor can an agent take it up again.
        reopened = await client.post(f"/v1/tickets/{ticket['id']}/reopen")
        assert reopened.status_code == 409, reopened.text

    async def test_a_ticket_it_closed_unresolved_is_no_similar_case(self, client):
        # Before, every closed ticket had been resolved (an agent closes only a resolved one),
        # and similar cases took every closed ticket: the erased customer's open ticket, closed
        # unsolved, came up (the same category) as a solved case, subject and answer "[erased]".
        agent = await new_agent(client)
        fields = {"category": "printers", "attributes": {"product_model": "X-200"}}
        erased = await new_ticket(client, **fields)
        reply = {"author_type": "agent", "author_id": agent["id"], "body": "Is it plugged in?"}
        assert (await client.post(f"/v1/tickets/{erased['id']}/messages", json=reply)).is_success
        await apply(client, CONTACT_ERASED, erasure(erased["customer_id"]))
        solved = await new_ticket(client, **fields)
        assert (await client.post(f"/v1/tickets/{solved['id']}/resolve")).status_code == 200

        asking = await new_ticket(client, **fields)
        similar = await client.get(f"/v1/tickets/{asking['id']}/similar")
        assert similar.status_code == 200, similar.text
        assert [case["ticket_id"] for case in similar.json()["items"]] == [solved["id"]]

    async def test_a_ticket_it_closed_solved_is_no_similar_case_either(self, client):
        # Resolved before the erasure, it kept its resolution, and came up (the same category)
        # as a solved case with nothing in it: subject and answer "[erased]".
        agent = await new_agent(client)
        fields = {"category": "printers", "attributes": {"product_model": "X-200"}}
        erased = await new_ticket(client, **fields)
        reply = {"author_type": "agent", "author_id": agent["id"], "body": "Is it plugged in?"}
        assert (await client.post(f"/v1/tickets/{erased['id']}/messages", json=reply)).is_success
        assert (await client.post(f"/v1/tickets/{erased['id']}/resolve")).status_code == 200
        await apply(client, CONTACT_ERASED, erasure(erased["customer_id"]))
        solved = await new_ticket(client, **fields)
        assert (await client.post(f"/v1/tickets/{solved['id']}/resolve")).status_code == 200

        asking = await new_ticket(client, **fields)
        similar = await client.get(f"/v1/tickets/{asking['id']}/similar")
        assert similar.status_code == 200, similar.text
        assert [case["ticket_id"] for case in similar.json()["items"]] == [solved["id"]]


def sales_call(customer_id: str) -> dict[str, object]:
    return {
        "interaction_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "department": "sales",
        "channel": "phone",
        "direction": "outbound",
        "kind": "call",
        "subject": "Renewal",
        "occurred_at": "2026-11-21T09:30:00Z",
    }


async def erasure_on_the_bus(
    producer, kafka_bootstrap: str, customer: str
) -> tuple[ConsumerRecord, ConsumerRecord, list[ConsumerRecord]]:
    """Contacts' erasure of ``customer`` as it publishes it (the event, then the tombstone
    standing for it) and two sales calls of the customer, read back from the broker."""
    key, erased_at = customer.encode(), utcnow()
    async with (
        TopicTail(kafka_bootstrap, topics.CONTACTS) as contacts,
        TopicTail(kafka_bootstrap, topics.INTERACTIONS) as interactions,
    ):
        event_id, value, headers = encode_event(
            event_type=CONTACT_ERASED,
            source="/crm/contacts",
            subject=customer,
            data=erasure(customer) | {"erased_at": erased_at.isoformat()},
            time=erased_at,
        )
        await producer.send_and_wait(
            topics.CONTACTS, value=value, key=key, headers=list(headers.items())
        )
        ends = tombstone_headers(
            event_id=event_id,
            event_type=CONTACT_ERASED,
            source="/crm/contacts",
            subject=customer,
            time=erased_at,
        )
        await producer.send_and_wait(
            topics.CONTACTS, value=None, key=key, headers=list(ends.items())
        )
        for _ in range(2):
            _, value, headers = encode_event(
                event_type=INTERACTION_RECORDED,
                source="/crm/sales",
                subject=customer,
                data=sales_call(customer),
            )
            await producer.send_and_wait(
                topics.INTERACTIONS, value=value, key=key, headers=list(headers.items())
            )
        erased, tombstone = await contacts.collect(lambda r: r.key == key, count=2)
        touches = await interactions.collect(lambda r: r.key == key, count=2)
    return erased, tombstone, touches


def consumer_of(client, topic: str) -> EventConsumer:
    """The service's consumer of ``topic`` (not running here: the test feeds it)."""
    return next(c for c in app_of(client).state.consumers if topic in c.subscription.topics)


class TestErasureReplayed:
    """Compaction keeps only a key's latest record: once crm.contacts.v1 is compacted, the
    erased event is gone and only its tombstone is left, while the customer's touches are still
    on crm.interactions.v1. A replay from the start (a rebuild, a new consumer group) must
    still erase the customer."""

    @pytest.mark.parametrize("contacts_first", [True, False], ids=["rebuild", "touches-first"])
    async def test_only_the_tombstone_left_still_erases_the_customer(
        self, client, producer, kafka_bootstrap, contacts_first
    ):
        # Before, a tombstone was skipped: the replay filed the touches again and left the
        # customer's tickets open, with their subject, for a person erased since.
        ticket = await new_ticket(client)
        customer = ticket["customer_id"]
        _, tombstone, touches = await erasure_on_the_bus(producer, kafka_bootstrap, customer)
        replay = [(topics.CONTACTS, [tombstone]), (topics.INTERACTIONS, touches)]
        for topic, records in replay if contacts_first else reversed(replay):
            await consumer_of(client, topic).process(records)

        timeline = await client.get(f"/v1/customers/{customer}/timeline")
        assert timeline.status_code == 200 and timeline.json()["items"] == [], timeline.text
        read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        assert (read["status"], read["subject"]) == ("closed", "[erased]"), read

    @pytest.mark.parametrize("batches", [1, 2], ids=["one-batch", "two-batches"])
    async def test_the_event_then_its_tombstone_erase_once(
        self, client, producer, kafka_bootstrap, batches
    ):
        """The tombstone stands for the erased event under its id: a consumer that applied
        the event skips it, as a redelivery."""
        ticket = await new_ticket(client)
        customer = ticket["customer_id"]
        erased, tombstone, _ = await erasure_on_the_bus(producer, kafka_bootstrap, customer)
        contacts = consumer_of(client, topics.CONTACTS)
        if batches == 1:
            await contacts.process([erased, tombstone])
        else:
            await contacts.process([erased])
            await contacts.process([tombstone])
        # Applied once: one closure published, one event recorded as applied.
        closed = await published(client, "crm.support.ticket_closed.v1")
        assert [c["ticket_id"] for c in closed] == [ticket["id"]]
        async with app_of(client).state.session_factory() as session:
            applied = await session.scalars(
                select(ProcessedEvent.event_id).where(ProcessedEvent.consumer == contacts.name)
            )
            assert list(applied) == [json.loads(erased.value)["id"]]


@postgres_only
async def test_an_erasure_waits_for_a_change_to_the_ticket_then_closes_it(client):
    """An agent re-assigns the ticket while the erasure is applied: the erasure takes the
    ticket's lock after the customer's, waits, and closes the ticket as it is then."""
    await new_agent(client, name="First")
    ticket = await new_ticket(client)
    second = await new_agent(client, name="Second")
    handlers = event_handlers(client)
    envelope = Envelope(
        id=str(uuid.uuid4()),
        source="/crm/contacts",
        type=CONTACT_ERASED,
        data=erasure(ticket["customer_id"]),
    )

    async def reassign(session) -> None:
        await service.assign(session, uuid.UUID(ticket["id"]), uuid.UUID(second["id"]))

    async def erase(session) -> None:
        await handlers[CONTACT_ERASED](session, envelope)

    await one_write_waits_for_another(app_of(client).state.session_factory, reassign, erase)

    read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
    assert (read["status"], read["agent_id"]) == ("closed", second["id"])
    types = [row.event_type for row in await outbox(client, topics.SUPPORT)]
    assert types[-2:] == ["crm.support.ticket_assigned.v1", "crm.support.ticket_closed.v1"]


async def holds_the_sqlite_write_lock(session: AsyncSession) -> bool:
    raw = await (await session.connection()).get_raw_connection()
    return bool(raw.driver_connection.writing)


async def test_an_erasure_arriving_while_the_sweep_checks_the_ticket_is_not_undone(
    client, monkeypatch
):
    """The erasure arrives as the sweep has read the ticket and is deciding what to do with it:
    it goes as far as the sweep's locks let it. Before, on SQLite the sweep read its batch
    without the write lock: the erasure committed there, and the sweep then re-assigned the
    closed ticket and flagged its breaches, published under the erased id after its closing."""
    await client.put(
        "/v1/sla-policies/urgent",
        json={"reassign_after_minutes": 5, "first_response_minutes": 30},
    )
    await new_agent(client, name="First")
    ticket = await new_ticket(client, priority="urgent")
    await new_agent(client, name="Second")
    factory = app_of(client).state.session_factory
    envelope = Envelope(
        id=str(uuid.uuid4()),
        source="/crm/contacts",
        type=CONTACT_ERASED,
        data=erasure(ticket["customer_id"]),
    )

    async def erase() -> None:
        async with factory() as session:
            await event_handlers(client)[CONTACT_ERASED](session, envelope)
            await session.commit()

    erasing: list[asyncio.Task[None]] = []
    route = sla.route

    async def routed_as_the_erasure_arrives(
        session: AsyncSession, ticket: Ticket, exclude: uuid.UUID | None = None
    ) -> uuid.UUID | None:
        """The sweep has read the ticket and found it due for re-assignment."""
        if not erasing:
            erasing.append(asyncio.create_task(erase()))
            if on_postgres(session):  # the sweep holds the ticket's row lock
                await until_a_transaction_waits_for_a_lock(session)
            elif not await holds_the_sqlite_write_lock(session):
                await erasing[0]  # nothing holds it back: it commits now
        return await route(session, ticket, exclude)

    monkeypatch.setattr(sla, "route", routed_as_the_erasure_arrives)
    opened = datetime.fromisoformat(ticket["opened_at"])
    await sla.sweep(factory, opened + timedelta(hours=1))
    await erasing[0]

    read = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
    assert read["status"] == "closed", read
    # Whatever the sweep did came before the closing: nothing was done for the person after.
    types = [
        row.event_type.split(".")[-2]
        for row in await outbox(client, topics.SUPPORT)
        if json.loads(row.value)["data"]["ticket_id"] == ticket["id"]
    ]
    assert types[-1] == "ticket_closed", types


def test_a_ticket_closed_published_before_its_reason_still_reads():
    old = {"ticket_id": str(uuid.uuid4()), "customer_id": str(uuid.uuid4())}
    closed = support.TicketClosed.model_validate({**old, "closed_at": "2026-11-24T00:00:00Z"})
    assert closed.reason is None  # an agent's close or an erasure's: not known
