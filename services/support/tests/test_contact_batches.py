"""Support's subscription to the contacts' events, given fetched batches (no broker): the
batch's identities and the tickets of its senders' stand-in ids are read at once
(``customers.read_for_contacts``), then each event is applied without a query of its own."""

import logging
import uuid

import pytest
from sqlalchemy import select

from services.support.models import CustomerIdentity, Ticket
from services.support.tests.helpers import outbox
from shared import topics
from shared.consumer import EventConsumer
from shared.contracts import support
from shared.db import is_sqlite
from shared.events import CONTACT_CREATED, CONTACT_ERASED, CONTACT_MERGED, CONTACT_UPDATED
from shared.testing import app_of, consumer_of, consumer_record, statements_per_batch

NOW = "2026-12-06T09:00:00Z"


def snapshot(contact: uuid.UUID, **fields: str) -> dict[str, str]:
    return {
        "contact_id": str(contact),
        "first_name": "Anna",
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }


def contacts_consumer(client) -> EventConsumer:
    return consumer_of(app_of(client), "contacts")


async def unknown_sender_writes(client, kind: str, sender: str) -> str:
    message = {"channel": "email", "sender": {"kind": kind, "value": sender}, "body": "Hello?"}
    response = await client.post("/v1/inbound", json=message)
    assert response.status_code == 201 and response.json()["unknown_customer"], response.text
    return response.json()["ticket_id"]


async def test_a_batch_of_contact_events_reads_identities_and_tickets_at_once(client):
    # Each event read its identities with a query, and its stand-in ids' tickets with one
    # each (an email and a phone number: four ids, keyed and legacy).
    def created(offset: int) -> dict[str, str]:
        contact = uuid.uuid4()
        phone = f"+4930{contact.int % 10**8:08d}"
        return snapshot(contact, email=f"{contact.hex[:12]}@example.com", phone=phone)

    batches = [
        [consumer_record(topics.CONTACTS, n, CONTACT_CREATED, created(n)) for n in range(size)]
        for size in (4, 4, 40)  # the first opens a connection
    ]
    reads = ("FROM customer_identities", "FROM tickets")
    counts = await statements_per_batch(app_of(client), "contacts", batches, reads)
    assert counts[1:] == [2, 2], counts  # before: 20 and 200
    async with app_of(client).state.session_factory() as session:
        assert len(list(await session.scalars(select(CustomerIdentity)))) == 96


async def test_a_batch_of_contact_events_takes_the_stand_in_locks_at_once(client):
    # On PostgreSQL each event also locked its own stand-in ids again after the batch had
    # locked them all: a statement per contact event.
    if is_sqlite(str(app_of(client).state.engine.url)):
        pytest.skip("advisory locks are PostgreSQL's; SQLite has the one write lock")
    batches = [
        [
            consumer_record(topics.CONTACTS, n, CONTACT_CREATED, snapshot(uuid.uuid4(), **email))
            for n, email in enumerate(
                {"email": f"{uuid.uuid4().hex[:12]}@example.com"} for _ in range(size)
            )
        ]
        for size in (4, 4, 40)  # the first opens a connection
    ]
    counts = await statements_per_batch(app_of(client), "contacts", batches, ("pg_advisory",))
    assert counts[1] == counts[2], counts


async def test_a_batch_of_contact_events_applies_each_in_order(client, caplog):
    caplog.set_level(logging.INFO, logger="shared.consumer")
    by_email = await unknown_sender_writes(client, "email", "x@example.com")
    by_phone = await unknown_sender_writes(client, "phone", "+49301234567")
    anna, bert, carl, dora, emil, fred, gina = (uuid.uuid4() for _ in range(7))
    events = [
        (CONTACT_CREATED, snapshot(anna, email="x@example.com")),  # her ticket
        # Bert takes Anna's address (no second re-pointing), and his phone's ticket.
        (CONTACT_CREATED, snapshot(bert, email="x@example.com", phone="+49301234567")),
        (CONTACT_UPDATED, snapshot(anna, email="y@example.com")),
        # Bert then drops the address he took.
        (CONTACT_UPDATED, snapshot(bert, phone="+49301234567")),
        # An address added and dropped in one batch.
        (CONTACT_CREATED, snapshot(carl, email="z@example.com")),
        (CONTACT_UPDATED, snapshot(carl, email="w@example.com")),
        # A merge moves identities in bulk: a later event finds them where it left them.
        (CONTACT_CREATED, snapshot(dora, email="m@example.com")),
        (CONTACT_MERGED, {"merged_id": str(dora), "survivor_id": str(anna)}),
        (CONTACT_CREATED, snapshot(emil, email="m@example.com")),
        (CONTACT_UPDATED, snapshot(anna, email="y@example.com", phone="+49309999999")),
        # An erasure deletes them: a later event adds its own.
        (CONTACT_CREATED, snapshot(fred, email="e@example.com")),
        (CONTACT_ERASED, {"contact_id": str(fred), "erased_at": NOW}),
        (CONTACT_CREATED, snapshot(gina, email="e@example.com")),
    ]
    await contacts_consumer(client).process(
        [consumer_record(topics.CONTACTS, n, *event) for n, event in enumerate(events)]
    )
    # In one transaction: a failed batch is applied again event by event, after a log line.
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    async with app_of(client).state.session_factory() as session:
        identities = await session.execute(
            select(CustomerIdentity.kind, CustomerIdentity.value, CustomerIdentity.contact_id)
        )
        assert set(identities) == {
            ("phone", "+49301234567", bert),
            ("email", "y@example.com", anna),
            ("phone", "+49309999999", anna),
            ("email", "w@example.com", carl),
            ("email", "m@example.com", emil),
            ("email", "e@example.com", gina),
        }
        tickets = await session.execute(
            select(Ticket.id, Ticket.customer_id, Ticket.unknown_customer)
        )
        assert set(tickets) == {
            (uuid.UUID(by_email), anna, False),
            (uuid.UUID(by_phone), bert, False),
        }
    identified = [
        row.event_type
        for row in await outbox(client, topics.SUPPORT)
        if row.event_type == support.TICKET_CUSTOMER_IDENTIFIED
    ]
    assert len(identified) == 2
