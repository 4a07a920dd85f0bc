"""Requests at once: an order paid by several (on SQLite too), and on PostgreSQL the
assignment rules replaced by two, an account handed over while its contact's creation is
applied and a lead converted while its contact's merge is."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import consumers, service, territories
from services.sales.models import CustomerScore
from services.sales.rules import Pipeline
from services.sales.schemas import AccountUpdate, AssignmentRules, ConvertRequest
from services.sales.tests.helpers import connect, new_lead, outbox
from shared import topics
from shared.contracts.analytics import CUSTOMER_SCORED
from shared.contracts.sales import ORDER_PAID
from shared.customer_view import TouchOutcome, projection
from shared.events import (
    CONTACT_CREATED,
    CONTACT_MERGED,
    Channel,
    Department,
    Envelope,
    InteractionRecorded,
)
from shared.testing import (
    app_of,
    by_lock_order,
    consumer_of,
    consumer_record,
    one_write_waits_for_another,
    postgres_only,
    until_a_transaction_waits_for_a_lock,
)


def everything_to(*owners: str) -> Callable[[AsyncSession], Awaitable[None]]:
    """A rule per owner, each for a source of its own (a rule taking all would leave the
    rules after it nothing to match: a 422), and the last one for everything else."""
    listed = [{"owner": owner, "source": owner} for owner in owners[:-1]] + [{"owner": owners[-1]}]
    rules = AssignmentRules.model_validate({"rules": listed})
    return lambda session: territories.set_assignment_rules(session, rules)


@postgres_only
async def test_assignment_rules_replaced_twice_at_once_keep_the_later(client):
    # Each deleted the rows it saw and inserted its own from position 0: the later insert
    # failed on the primary key, a 500.
    factory = app_of(client).state.session_factory
    await one_write_waits_for_another(factory, everything_to("ann", "bob"), everything_to("cy"))
    assert [r["owner"] for r in (await client.get("/v1/assignment-rules")).json()["rules"]] == [
        "cy"
    ]


@postgres_only
async def test_an_account_handed_over_as_its_contact_arrives_keeps_both(client):
    factory = app_of(client).state.session_factory
    customer = uuid.uuid4()
    handlers = {t: h for s in consumers.SUBSCRIPTIONS for t, h in s.handlers.items()}
    created = Envelope(
        id=str(uuid.uuid4()),
        source="/crm/contacts",
        type=CONTACT_CREATED,
        data={
            "contact_id": str(customer),
            "first_name": "Ada",
            "country": "DE",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        },
    )

    def hand_over(session: AsyncSession) -> Awaitable[object]:
        return territories.set_owner(session, customer, AccountUpdate(owner="ann"))

    def contact_arrives(session: AsyncSession) -> Awaitable[None]:
        return handlers[CONTACT_CREATED](session, created)

    # A PUT /v1/accounts/{id} just after the contact was created: both found no account, and
    # the consumer's insert failed on the key (the API's, in the other order: a 500).
    await one_write_waits_for_another(factory, hand_over, contact_arrives)
    account = (await client.get(f"/v1/accounts/{customer}")).json()
    assert (account["owner"], account["country"]) == ("ann", "DE")


async def test_an_order_paid_by_requests_at_once_is_paid_once(client):
    for _ in range(3):  # on SQLite, with no lock, the race was lost about half the time
        order = (
            await client.post(
                "/v1/orders",
                json={"customer_id": str(uuid.uuid4()), "amount": "5", "currency": "EUR"},
            )
        ).json()
        responses = await asyncio.gather(
            *[client.post(f"/v1/orders/{order['id']}/paid") for _ in range(12)]
        )
        assert sorted(r.status_code for r in responses) == [200] + [409] * 11
        paid = [m for m in await outbox(client) if m.event_type == ORDER_PAID]
        assert len([m for m in paid if m.key == order["customer_id"]]) == 1


@postgres_only
async def test_a_lead_converted_as_its_contact_is_merged_follows_the_merge(client, contacts):
    connect(client, contacts)
    app = app_of(client)
    email = "known@example.com"
    existing = await contacts.post("/v1/contacts", json={"first_name": "K", "email": email})
    merged, survivor = existing.json()["id"], str(uuid.uuid4())
    lead = await new_lead(client, email=email, owner="dora")
    handlers = {t: h for s in consumers.SUBSCRIPTIONS for t, h in s.handlers.items()}
    merge = Envelope(
        id=str(uuid.uuid4()),
        source="/crm/contacts",
        type=CONTACT_MERGED,
        data={"merged_id": merged, "survivor_id": survivor},
    )

    def merge_applied(session: AsyncSession) -> Awaitable[None]:
        return handlers[CONTACT_MERGED](session, merge)

    def converted(session: AsyncSession) -> Awaitable[object]:
        return service.convert(
            session,
            uuid.UUID(lead["id"]),
            ConvertRequest.model_validate(
                {"opportunity": {"title": "Pilot", "amount": "10", "currency": "EUR", "owner": "r"}}
            ),
            contacts=app.state.contacts,
            pipeline=Pipeline(app.state.settings.pipeline),
        )

    # Contacts answers with the contact being merged away: the lead, its deal and account
    # were filed under that id after the merge had moved everything else, and stayed there.
    await one_write_waits_for_another(app.state.session_factory, merge_applied, converted)
    got = (await client.get(f"/v1/leads/{lead['id']}")).json()
    assert got["customer_id"] == survivor
    deal = (await client.get(f"/v1/opportunities/{got['opportunity_id']}")).json()
    assert deal["customer_id"] == survivor
    assert (await client.get(f"/v1/accounts/{survivor}")).json()["owner"] == "dora"


@postgres_only
async def test_a_lead_of_a_customer_converted_while_the_customer_is_merged_takes_turns(client):
    # The conversion locked the lead's row, then waited for its customer's lock, which the
    # merge held while it re-pointed the customer's leads, that one among them: each waited
    # for the other, a deadlock (a 503 for the client, a retried batch for the consumer).
    app = app_of(client)
    merged, survivor = uuid.uuid4(), uuid.uuid4()
    lead = await new_lead(client, customer_id=str(merged), owner="dora")
    handlers = {t: h for s in consumers.SUBSCRIPTIONS for t, h in s.handlers.items()}
    merge = Envelope(
        id=str(uuid.uuid4()),
        source="/crm/contacts",
        type=CONTACT_MERGED,
        data={"merged_id": str(merged), "survivor_id": str(survivor)},
    )

    async def convert() -> None:
        async with app.state.session_factory() as session:
            await service.convert(
                session,
                uuid.UUID(lead["id"]),
                ConvertRequest(),
                contacts=app.state.contacts,
                pipeline=Pipeline(app.state.settings.pipeline),
            )
            await session.commit()

    async with app.state.session_factory() as merging:
        # The customers' locks first, as the contacts consumer takes a batch's (its prefetch).
        await projection.lock_the_way(merging, [merged, survivor])
        converting = asyncio.create_task(convert())
        await until_a_transaction_waits_for_a_lock(merging)
        await handlers[CONTACT_MERGED](merging, merge)
        await merging.commit()
    await converting
    got = (await client.get(f"/v1/leads/{lead['id']}")).json()
    assert (got["status"], got["customer_id"]) == ("converted", str(survivor))


@postgres_only
async def test_a_batch_of_scores_and_a_batch_of_touches_of_both_customers_take_turns(
    client, caplog
):
    # The scores' consumer filed its events one after another, each under its customer's lock:
    # it held the later customer in the locks' order while it waited for the earlier one, which
    # the timeline's batch of touches of both (locking both, in that order) held while it
    # waited for the later one. PostgreSQL ended one with a deadlock (the five-service test's
    # consumers met it, over and over).
    app = app_of(client)
    first, later = await by_lock_order(app.state.session_factory, 2)
    scores = consumer_of(app, "scores")
    records = [
        consumer_record(topics.ANALYTICS, offset, CUSTOMER_SCORED, score(customer))
        for offset, customer in enumerate([later, first])
    ]
    touches = [touch(later), touch(first)]

    async def record_touches() -> list[TouchOutcome]:
        async with app.state.session_factory() as session:
            outcomes = await projection.record_touches(session, touches)
            await session.commit()
            return outcomes

    async with app.state.session_factory() as holder:
        # The scores held still: the batch stops once it has filed its first event.
        await holder.execute(text("LOCK TABLE customer_scores IN ACCESS EXCLUSIVE MODE"))
        scoring = asyncio.create_task(scores.process(records))
        await until_a_transaction_waits_for_a_lock(holder)
        touching = asyncio.create_task(record_touches())
        await until_a_transaction_waits_for_a_lock(holder, 2)
        await holder.commit()
    await scoring
    assert await touching == [TouchOutcome.recorded, TouchOutcome.recorded]
    # In one transaction: a failed batch is applied again event by event, after a log line.
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    async with app.state.session_factory() as session:
        scored = set(await session.scalars(select(CustomerScore.customer_id)))
    assert scored == {first, later}


def score(customer: uuid.UUID) -> dict[str, str]:
    return {
        "customer_id": str(customer),
        "churn_risk": "0.5",
        "churn_level": "medium",
        "scored_at": "2026-12-04T09:00:00+00:00",
    }


def touch(customer: uuid.UUID) -> InteractionRecorded:
    return InteractionRecorded(
        interaction_id=uuid.uuid4(),
        customer_id=customer,
        department=Department.support,
        channel=Channel.email,
        direction="inbound",
        kind="email",
        occurred_at=datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
    )


@postgres_only
async def test_a_batch_of_contact_changes_and_a_batch_of_touches_of_both_take_turns(client, caplog):
    # The contacts' consumer (every service's customer view) applied each contact's change
    # under its lock, one after another: it held the later contact in the locks' order while
    # it waited for the earlier one, which a batch of touches of both held while it waited for
    # the later one. PostgreSQL ended one with a deadlock (the five-service test met it).
    app = app_of(client)
    first, later = await by_lock_order(app.state.session_factory, 2)
    contacts = consumer_of(app, "contacts")
    records = [
        consumer_record(topics.CONTACTS, offset, CONTACT_CREATED, created(customer))
        for offset, customer in enumerate([later, first])
    ]

    async def record_touches() -> list[TouchOutcome]:
        async with app.state.session_factory() as session:
            outcomes = await projection.record_touches(session, [touch(later), touch(first)])
            await session.commit()
            return outcomes

    async with app.state.session_factory() as holder:
        # The accounts held still: the batch stops once it has applied its first contact.
        await holder.execute(text("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE"))
        changing = asyncio.create_task(contacts.process(records))
        await until_a_transaction_waits_for_a_lock(holder)
        touching = asyncio.create_task(record_touches())
        await until_a_transaction_waits_for_a_lock(holder, 2)
        await holder.commit()
    await changing
    assert await touching == [TouchOutcome.recorded, TouchOutcome.recorded]
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    for customer in (first, later):
        assert (await client.get(f"/v1/accounts/{customer}")).json()["country"] == "DE"


def created(customer: uuid.UUID) -> dict[str, str]:
    return {
        "contact_id": str(customer),
        "first_name": "Ada",
        "country": "DE",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
