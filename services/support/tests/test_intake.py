"""Inbound intake: recognising senders through the contacts projection, threading replies into
the open ticket, unknown senders flagged and re-pointed once contacts knows them."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import intake, service
from services.support.schemas import InboundMessage, TicketCreate
from services.support.tests.helpers import apply, event_handlers, outbox
from shared import topics
from shared.contracts import support
from shared.events import (
    CONTACT_CREATED,
    CONTACT_ERASED,
    CONTACT_UPDATED,
    Envelope,
    decode_event,
)
from shared.testing import (
    app_of,
    one_write_waits_for_another,
    postgres_only,
    until_a_transaction_waits_for_a_lock,
)

NOW = "2026-11-24T12:00:00+00:00"
# The namespace support once derived stand-in ids from (uuid5 of the sender): it is public in
# the repository, so anyone could compute such an id from an address.
PUBLIC_NAMESPACE = uuid.UUID("5b0c6a43-8f0e-4b7c-9a57-0d2c3f1e9a11")


def snapshot(contact_id: str, **fields) -> dict:
    return {
        "contact_id": contact_id,
        "first_name": "Anna",
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }


async def inbound(client, sender_kind: str, sender: str, body: str, **extra) -> dict:
    payload = {
        "channel": "email",
        "sender": {"kind": sender_kind, "value": sender},
        "body": body,
        **extra,
    }
    response = await client.post("/v1/inbound", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


async def test_known_sender_opens_then_threads(client):
    contact = str(uuid.uuid4())
    await apply(client, CONTACT_CREATED, snapshot(contact, email="anna@example.com"))
    first = await inbound(client, "email", " Anna@Example.com ", "Printer broken\nDetails...")
    assert first["customer_id"] == contact and not first["unknown_customer"]
    assert not first["threaded"]
    ticket = (await client.get(f"/v1/tickets/{first['ticket_id']}")).json()
    assert ticket["subject"] == "Printer broken" and ticket["channel"] == "email"
    second = await inbound(client, "email", "anna@example.com", "Any news?")
    assert second["threaded"] and second["ticket_id"] == first["ticket_id"]
    other_channel = await inbound(client, "email", "anna@example.com", "x", channel="chat")
    assert other_channel["ticket_id"] != first["ticket_id"]
    messages = (await client.get(f"/v1/tickets/{first['ticket_id']}")).json()["messages"]
    assert [m["body"] for m in messages] == ["Any news?"]


async def test_thread_ref_and_closed_tickets(client):
    contact = str(uuid.uuid4())
    await apply(
        client,
        CONTACT_CREATED,
        snapshot(contact, identities=[{"kind": "telegram", "value": "@anna"}]),
    )
    first = await inbound(client, "telegram", "@Anna", "hello", channel="telegram")
    tid = first["ticket_id"]
    await client.post(f"/v1/tickets/{tid}/resolve")
    reply = await inbound(client, "telegram", "@anna", "still broken", thread_ref=tid)
    assert reply["threaded"] and reply["ticket_id"] == tid
    assert (await client.get(f"/v1/tickets/{tid}")).json()["status"] == "open"  # reopened
    await client.post(f"/v1/tickets/{tid}/resolve")
    await client.post(f"/v1/tickets/{tid}/close")
    after_close = await inbound(client, "telegram", "@anna", "new issue", thread_ref=tid)
    assert not after_close["threaded"] and after_close["ticket_id"] != tid


async def test_unknown_sender_is_flagged_then_repointed(client):
    first = await inbound(client, "phone", "+49 30 1234567", "Call me back", channel="phone")
    assert first["unknown_customer"] and not first["threaded"]
    again = await inbound(client, "phone", "+49301234567", "Hello?", channel="phone")
    assert again["threaded"] and again["ticket_id"] == first["ticket_id"]
    assert await outbox(client, topics.INTERACTIONS) == []  # no contact to attach touches to

    contact = str(uuid.uuid4())
    await apply(client, CONTACT_CREATED, snapshot(contact, phone="+49301234567"))
    ticket = (await client.get(f"/v1/tickets/{first['ticket_id']}")).json()
    assert ticket["customer_id"] == contact and ticket["unknown_customer"] is False
    # The other departments hear of it: the ticket's owner, and the touches held back (the
    # ticket opened, the message), under the ids they would have had. Before, nothing was
    # published: the conversation that brought the customer was in no other timeline.
    [row] = [
        row
        for row in await outbox(client, topics.SUPPORT)
        if row.event_type == support.TICKET_CUSTOMER_IDENTIFIED
    ]
    identified = decode_event(row.value)
    # On the partition of the ticket's earlier events: applied after the ticket_opened it
    # re-points, by every consumer and every replay.
    assert row.key == first["customer_id"]
    assert identified.data["ticket_id"] == first["ticket_id"]
    assert identified.data["customer_id"] == contact
    assert identified.data["previous_customer_id"] == first["customer_id"]
    touches = [decode_event(row.value).data for row in await outbox(client, topics.INTERACTIONS)]
    assert [(t["interaction_id"], t["customer_id"], t["kind"]) for t in touches] == [
        (first["ticket_id"], contact, "ticket_opened"),
        (again["message_id"], contact, "ticket_reply"),
    ]
    later = await inbound(client, "phone", "+49301234567", "Thanks", channel="phone")
    assert later["ticket_id"] == first["ticket_id"] and later["customer_id"] == contact


async def test_the_ticket_opened_event_says_whether_its_customer_is_a_stand_in(client):
    # Subscribers could not tell a stand-in id from a contact they had not heard of yet:
    # analytics scored the stand-in and published its scores, no customer's.
    contact = str(uuid.uuid4())
    await apply(client, CONTACT_CREATED, snapshot(contact, email="anna@example.com"))
    known = await inbound(client, "email", "anna@example.com", "Printer broken")
    unknown = await inbound(client, "email", "bob@example.com", "Printer broken too")
    opened = {
        event.data["ticket_id"]: event.data["unknown_customer"]
        for event in (decode_event(row.value) for row in await outbox(client, topics.SUPPORT))
        if event.type == support.TICKET_OPENED
    }
    assert opened == {known["ticket_id"]: False, unknown["ticket_id"]: True}


async def test_an_unknown_senders_stand_in_id_does_not_tell_who_wrote(client):
    # Before, the id was uuid5 of the sender under a namespace public in the repository:
    # anyone reading crm.support.v1 could test a guessed address, or run through a range of
    # phone numbers, and learn who wrote to support.
    by_mail = await inbound(client, "email", "Anna@Example.com", "Who am I?")
    by_phone = await inbound(client, "phone", "+49 30 1234567", "Call me", channel="phone")
    opened = [
        (row.key, decode_event(row.value).data["customer_id"])
        for row in await outbox(client, topics.SUPPORT)
        if row.event_type == support.TICKET_OPENED
    ]
    assert opened == [
        (by_mail["customer_id"], by_mail["customer_id"]),
        (by_phone["customer_id"], by_phone["customer_id"]),
    ]
    assert by_mail["customer_id"] != str(uuid.uuid5(PUBLIC_NAMESPACE, "email:anna@example.com"))
    assert by_phone["customer_id"] != str(uuid.uuid5(PUBLIC_NAMESPACE, "phone:+49301234567"))


async def opened_before_stand_in_ids_were_keyed(client, sender: str, **fields) -> dict:
    """A ticket of an unknown e-mail sender as support filed it before: under uuid5 of the
    sender in the public namespace."""
    legacy = uuid.uuid5(PUBLIC_NAMESPACE, f"email:{sender}")
    data = TicketCreate(
        customer_id=legacy, subject="Hi", description="Hi", channel="email", **fields
    )
    async with app_of(client).state.session_factory() as session:
        ticket = await service.create_ticket(session, data, unknown_customer=True)
        await session.commit()
    return {"ticket_id": str(ticket.id), "customer_id": str(legacy)}


async def test_a_ticket_under_an_old_stand_in_id_moves_to_its_sender_once_known(client):
    # Tickets filed before stand-in ids were keyed stay under the old id: identification
    # looks for the sender's tickets under both, or they would stay with no customer.
    old = await opened_before_stand_in_ids_were_keyed(client, "anna@example.com")
    new = await inbound(client, "email", "anna@example.com", "Still waiting", channel="chat")
    assert new["unknown_customer"] and new["customer_id"] != old["customer_id"]
    contact = str(uuid.uuid4())
    await apply(client, CONTACT_CREATED, snapshot(contact, email="Anna@Example.com"))
    for ticket in (old, new):
        moved = (await client.get(f"/v1/tickets/{ticket['ticket_id']}")).json()
        assert (moved["customer_id"], moved["unknown_customer"]) == (contact, False)
    identified = [
        (row.key, decode_event(row.value).data)
        for row in await outbox(client, topics.SUPPORT)
        if row.event_type == support.TICKET_CUSTOMER_IDENTIFIED
    ]
    # Each on the partition of its ticket's earlier events, naming the id they carried.
    assert sorted(
        (key, data["ticket_id"], data["previous_customer_id"]) for key, data in identified
    ) == sorted((t["customer_id"], t["ticket_id"], t["customer_id"]) for t in (old, new))


async def test_a_sender_with_a_ticket_under_an_old_stand_in_id_writes_on_into_it(client):
    # The conversation goes on in its ticket, under the id its earlier events carried, rather
    # than a second ticket opening for the same sender; a webhook delivering again a message
    # received before is the ticket it opened then, not a 409.
    message_id = str(uuid.uuid4())
    old = await opened_before_stand_in_ids_were_keyed(
        client, "anna@example.com", ticket_id=uuid.UUID(message_id)
    )
    again = await inbound(client, "email", "anna@example.com", "Hi", message_id=message_id)
    assert (again["ticket_id"], again["customer_id"]) == (old["ticket_id"], old["customer_id"])
    reply = await inbound(client, "email", "Anna@example.com", "Any news?")
    assert reply["threaded"] and reply["unknown_customer"]
    assert (reply["ticket_id"], reply["customer_id"]) == (old["ticket_id"], old["customer_id"])
    by_ref = await inbound(
        client, "email", "anna@example.com", "Hello?", channel="chat", thread_ref=old["ticket_id"]
    )
    assert by_ref["threaded"] and by_ref["ticket_id"] == old["ticket_id"]


async def test_a_sender_is_known_in_the_form_its_provider_sends(client):
    contact = str(uuid.uuid4())
    # The forms contacts publishes: E.164 numbers, Telegram handles without the @.
    identities = [
        {"kind": "telegram", "value": "anna"},
        {"kind": "whatsapp", "value": "+4930123456"},
    ]
    await apply(
        client, CONTACT_CREATED, snapshot(contact, phone="+4930654321", identities=identities)
    )
    # Before, each of these opened a ticket under an unknown sender's stand-in id.
    for kind, sender in [
        ("telegram", "@Anna"),
        ("whatsapp", "4930123456"),
        ("phone", "0049 30 654321"),
    ]:
        result = await inbound(client, kind, sender, "hello", channel="chat")
        assert (result["customer_id"], result["unknown_customer"]) == (contact, False), kind


async def test_erasure_forgets_the_identity(client):
    contact = str(uuid.uuid4())
    await apply(client, CONTACT_CREATED, snapshot(contact, email="anna@example.com"))
    await apply(client, CONTACT_ERASED, {"contact_id": contact, "erased_at": NOW})
    result = await inbound(client, "email", "anna@example.com", "Hi again")
    assert result["unknown_customer"] and result["customer_id"] != contact


async def test_a_body_that_opens_with_a_separator_still_opens_a_ticket(client):
    # Python counts a record separator as a line break: the first line was empty, a 500.
    result = await inbound(client, "telegram", "@anna", "\x1eStill broken\nsince Monday")
    ticket = (await client.get(f"/v1/tickets/{result['ticket_id']}")).json()
    assert ticket["subject"] == "Still broken"


async def test_bad_inbound(client):
    response = await client.post(
        "/v1/inbound",
        json={"channel": "email", "sender": {"kind": "carrier-pigeon", "value": "x"}, "body": "hi"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "sender.kind"
    assert (await client.get("/v1/tickets")).json()["items"] == []


def _as_contacts_sends_it(contact: str, email: str) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        source="/crm/contacts",
        type=CONTACT_CREATED,
        data=snapshot(contact, email=email),
    )


@postgres_only
@pytest.mark.parametrize("first", ["intake", "contacts"])
async def test_a_sender_becoming_known_while_their_message_arrives_gets_the_ticket(client, first):
    factory = app_of(client).state.session_factory
    contact = str(uuid.uuid4())
    handlers = event_handlers(client)
    stand_in_key = app_of(client).state.settings.stand_in_key()
    message = InboundMessage.model_validate(
        {"channel": "email", "sender": {"kind": "email", "value": "anna@example.com"}, "body": "Hi"}
    )

    def receive(session: AsyncSession) -> Awaitable[object]:
        return intake.receive(session, message, stand_in_key=stand_in_key)

    def contact_created(session: AsyncSession) -> Awaitable[None]:
        return handlers[CONTACT_CREATED](
            session, _as_contacts_sends_it(contact, message.sender.value)
        )

    # Intake first: contacts' event did not see the ticket, not committed yet, to re-point it.
    # Contacts first: intake had looked the sender up before the identity was committed. The
    # ticket stayed under the unknown sender's placeholder in both cases.
    order = (receive, contact_created) if first == "intake" else (contact_created, receive)
    await one_write_waits_for_another(factory, *order)
    [ticket] = (await client.get("/v1/tickets")).json()["items"]
    assert (ticket["customer_id"], ticket["unknown_customer"]) == (contact, False)


@postgres_only
async def test_a_message_while_its_senders_contact_is_applied_twice_deadlocks_nothing(client):
    """Intake holds an unknown sender's stand-in locks, then, finding the sender known after
    all, takes the contact's; applying a contact event took the contact's, then the stand-in
    ones. A message arriving while contacts' first event for its sender committed and the
    next one (an update) was applied: each waited for the other, and PostgreSQL ended one
    with a deadlock error (a 503 to the webhook, or the event retried)."""
    factory = app_of(client).state.session_factory
    handlers = event_handlers(client)
    stand_in_key = app_of(client).state.settings.stand_in_key()
    contact, email = str(uuid.uuid4()), "anna@example.com"
    message = InboundMessage.model_validate(
        {"channel": "email", "sender": {"kind": "email", "value": email}, "body": "Hi"}
    )

    async def in_a_transaction(work: Callable[[AsyncSession], Awaitable[object]]) -> None:
        async with factory() as session:
            await work(session)
            await session.commit()

    def contact_event(event_type: str) -> Callable[[AsyncSession], Awaitable[None]]:
        envelope = Envelope(
            id=str(uuid.uuid4()),
            source="/crm/contacts",
            type=event_type,
            data=snapshot(contact, email=email),
        )
        return lambda session: handlers[event_type](session, envelope)

    async with factory() as created:
        await contact_event(CONTACT_CREATED)(created)  # applied, not committed yet
        await created.flush()
        # The sender is unknown to intake yet: it waits for the stand-in locks.
        receiving = asyncio.create_task(
            in_a_transaction(lambda s: intake.receive(s, message, stand_in_key=stand_in_key))
        )
        await until_a_transaction_waits_for_a_lock(created)
        updated = asyncio.create_task(in_a_transaction(contact_event(CONTACT_UPDATED)))
        await until_a_transaction_waits_for_a_lock(created, 2)
        await created.commit()
    await asyncio.gather(receiving, updated)

    [ticket] = (await client.get("/v1/tickets")).json()["items"]
    assert (ticket["customer_id"], ticket["unknown_customer"]) == (contact, False)
