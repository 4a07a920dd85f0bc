"""Settings written by two requests at once, in a fixed order (PostgreSQL): each found the rows
it replaces or adds before the other committed, so without a lock the later insert failed on
the primary key, a 500."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.support import rules, service, sla
from services.support.rules import Priority
from services.support.schemas import SlaPolicyUpdate
from shared.errors import Conflict
from shared.testing import app_of, one_write_waits_for_another, postgres_only

Write = Callable[[AsyncSession], Awaitable[Any]]

pytestmark = postgres_only


def routing_to(team: str) -> Write:
    return lambda session: service.set_routing_rules(
        session, [rules.RoutingRule(team, category="billing")]
    )


def team_owning(team: str, *categories: str) -> Write:
    return lambda session: service.set_team(session, team, list(categories))


def response_within(minutes: int) -> Write:
    return lambda session: sla.set_policy(
        session, Priority.urgent, SlaPolicyUpdate(first_response_minutes=minutes)
    )


async def teams(client) -> dict[str, list[str]]:
    return {team["name"]: team["categories"] for team in (await client.get("/v1/teams")).json()}


async def test_routing_rules_replaced_twice_at_once_keep_the_later(client):
    factory = app_of(client).state.session_factory
    await one_write_waits_for_another(factory, routing_to("tier1"), routing_to("tier2"))
    assert [r["team"] for r in (await client.get("/v1/routing-rules")).json()["rules"]] == ["tier2"]


async def test_a_team_set_twice_at_once_keeps_the_later(client):
    factory = app_of(client).state.session_factory
    await one_write_waits_for_another(
        factory, team_owning("billing", "invoices"), team_owning("billing", "invoices", "refunds")
    )
    assert (await teams(client))["billing"] == ["invoices", "refunds"]


async def test_two_teams_claiming_one_category_at_once_the_later_is_a_409(client):
    factory = app_of(client).state.session_factory
    with pytest.raises(Conflict) as error:
        await one_write_waits_for_another(
            factory, team_owning("billing", "invoices"), team_owning("finance", "invoices")
        )
    assert error.value.field == "categories"
    assert "belongs to team billing" in error.value.message
    assert await teams(client) == {"billing": ["invoices"]}


async def test_an_sla_policy_set_twice_at_once_keeps_the_later(client):
    factory = app_of(client).state.session_factory
    await one_write_waits_for_another(factory, response_within(30), response_within(45))
    (urgent,) = [
        p for p in (await client.get("/v1/sla-policies")).json() if p["priority"] == "urgent"
    ]
    assert urgent["first_response_minutes"] == 45
