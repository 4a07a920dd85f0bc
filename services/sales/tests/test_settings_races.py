"""The assignment rules replaced by two requests at once (PostgreSQL; SQLite has one writer at
a time): each deletes the rows it sees and inserts its own from position 0, so without a lock
the later insert fails on the primary key, a 500."""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from services.sales import territories
from services.sales.schemas import AssignmentRules
from shared.testing import app_of, one_write_waits_for_another, postgres_only


def everything_to(*owners: str) -> Callable[[AsyncSession], Awaitable[None]]:
    rules = AssignmentRules.model_validate({"rules": [{"owner": owner} for owner in owners]})
    return lambda session: territories.set_assignment_rules(session, rules)


@postgres_only
async def test_assignment_rules_replaced_twice_at_once_keep_the_later(client):
    factory = app_of(client).state.session_factory
    await one_write_waits_for_another(factory, everything_to("ann", "bob"), everything_to("cy"))
    assert [r["owner"] for r in (await client.get("/v1/assignment-rules")).json()["rules"]] == [
        "cy"
    ]
