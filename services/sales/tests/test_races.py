"""Requests at once: an order paid by several (on SQLite too), and on PostgreSQL the
assignment rules replaced by two and an account handed over while its contact's creation is
applied."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import consumers, territories
from services.sales.schemas import AccountUpdate, AssignmentRules
from services.sales.tests.helpers import outbox
from shared.contracts.sales import ORDER_PAID
from shared.events import CONTACT_CREATED, Envelope
from shared.testing import app_of, one_write_waits_for_another, postgres_only


def everything_to(*owners: str) -> Callable[[AsyncSession], Awaitable[None]]:
    rules = AssignmentRules.model_validate({"rules": [{"owner": owner} for owner in owners]})
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
