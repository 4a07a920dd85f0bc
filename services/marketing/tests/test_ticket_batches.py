"""Fetched batches of support's ticket events, as the support subscription applies them."""

import logging
import uuid
from datetime import timedelta

from sqlalchemy import select

from services.marketing.models import TicketState
from services.marketing.tests.helpers import NOW, apply, new_contact
from shared import topics
from shared.contracts import support
from shared.events import CONTACT_ERASED, CONTACT_MERGED
from shared.testing import app_of, consumer_record, statements_per_batch


def opened(customer: uuid.UUID | str, ticket: uuid.UUID | None = None) -> dict[str, str]:
    return {
        "ticket_id": str(ticket or uuid.uuid4()),
        "customer_id": str(customer),
        "subject": "Delivery late",
        "channel": "email",
        "priority": "urgent",
        "category": "delivery",
        "opened_at": NOW.isoformat(),
    }


async def test_a_batch_of_ticket_events_runs_as_many_statements_whatever_its_size(client):
    # Each event looked its ticket up and its customer's survivor, and the session flushed the
    # ticket the event before had added: three statements or more an event.
    customers = [uuid.uuid4() for _ in range(4)]
    batches = [
        [
            consumer_record(topics.SUPPORT, offset, support.TICKET_OPENED, opened(customer))
            for offset, customer in enumerate(customers * (size // 4))
        ]
        for size in (4, 4, 40)  # the first opens a connection
    ]
    app = app_of(client)
    counts = await statements_per_batch(app, "support", batches, ("tickets", "customer_profiles"))
    assert counts[1] == counts[2]
    async with app.state.session_factory() as session:
        assert len(list(await session.scalars(select(TicketState.ticket_id)))) == 48


async def test_a_batch_files_new_tickets_under_survivors_and_applies_their_later_events(
    client, caplog
):
    caplog.set_level(logging.INFO, logger="shared.consumer")
    survivor, merged, erased = [await new_contact(client) for _ in range(3)]
    await apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
    await apply(client, CONTACT_ERASED, {"contact_id": erased, "erased_at": NOW.isoformat()})
    app = app_of(client)
    (tickets,) = [c for c in app.state.consumers if c.subscription.name == "support"]
    of_merged, of_erased = uuid.uuid4(), uuid.uuid4()
    resolved = {
        "ticket_id": str(of_merged),
        "customer_id": merged,
        "agent_id": None,
        "resolved_at": (NOW + timedelta(minutes=5)).isoformat(),
    }
    await tickets.process(
        [
            consumer_record(topics.SUPPORT, 0, support.TICKET_OPENED, opened(merged, of_merged)),
            consumer_record(topics.SUPPORT, 1, support.TICKET_RESOLVED, resolved),
            consumer_record(topics.SUPPORT, 2, support.TICKET_OPENED, opened(erased, of_erased)),
        ]
    )
    # In one transaction: a failed batch is applied again event by event, after a log line.
    assert not [r for r in caplog.records if r.getMessage().startswith("batch failed")]
    async with app.state.session_factory() as session:
        rows = await session.execute(
            select(TicketState.ticket_id, TicketState.customer_id, TicketState.status)
        )
        assert set(rows) == {(of_merged, uuid.UUID(survivor), "resolved")}
