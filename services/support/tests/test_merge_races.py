"""A ticket filed while its customer's merge is applied (PostgreSQL; on SQLite the filing
transaction holds the database's one write lock from its start: ``shared.db.lock_customers``)."""

import asyncio
import uuid

from sqlalchemy import select

from services.support import service
from services.support.models import Ticket
from services.support.schemas import TicketCreate
from services.support.tests.helpers import apply
from shared.events import CONTACT_MERGED
from shared.testing import app_of, postgres_only, until_a_transaction_waits_for_a_lock


@postgres_only
async def test_a_ticket_filed_during_its_customers_merge_ends_up_with_the_survivor(client):
    factory = app_of(client).state.session_factory
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    filing = TicketCreate.model_validate(
        {"customer_id": merged, "subject": "Broken", "description": "It is.", "channel": "email"}
    )

    async with factory() as session:
        # Filed under the merged id (its merge not applied yet), not committed yet.
        ticket = await service.create_ticket(session, filing)
        await session.flush()
        merge = asyncio.create_task(
            apply(client, CONTACT_MERGED, {"merged_id": merged, "survivor_id": survivor})
        )
        await until_a_transaction_waits_for_a_lock(session)  # the merge, on the filing
        await session.commit()
    await merge

    async with factory() as session:
        owner = await session.scalar(select(Ticket.customer_id).where(Ticket.id == ticket.id))
    assert str(owner) == survivor
