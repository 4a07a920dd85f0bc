"""A customer's erasure and their tickets: once erased, nothing more is done for the person.
Contacts' events are applied with the consumer's handlers on a real database; test_bus.py
applies one through the broker."""

import json
import uuid
from datetime import datetime, timedelta

from services.support import service, sla
from services.support.tests.helpers import apply, event_handlers, new_agent, new_ticket, outbox
from shared import topics
from shared.events import CONTACT_ERASED, Envelope
from shared.testing import app_of, one_write_waits_for_another, postgres_only


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
