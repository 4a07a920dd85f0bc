"""The fact rows and customer owners one consumer transaction has looked up, by table and key.

Before a fetched batch is applied, ``prefetch_*`` loads every row its events name with one
query per table (and every customer's merge survivor with one more), so the handlers, which
look rows up one event at a time, find them here: no query per event, and no autoflush of the
previous event's changes before each. A key that was looked up and not found is remembered as
missing, so a new fact costs no query either. The cache also holds the rows strongly: the
session's identity map holds them only weakly.
"""

import uuid
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import (
    LeadFact,
    OpportunityFact,
    OrderFact,
    SendFact,
    TicketFact,
    TicketMessageFact,
)
from shared.customer_view import projection
from shared.events import Envelope

Row = TypeVar("Row")

_ROWS = "analytics_rows"
_OWNERS = "analytics_owners"
CHUNK = 500  # keys per IN (...) list


def _rows(session: AsyncSession) -> dict[tuple[type, Any], Any]:
    return session.info.setdefault(_ROWS, {})


async def get(session: AsyncSession, model: type[Row], key: Any) -> Row | None:
    """``session.get`` that remembers the answer, a missing row included."""
    rows = _rows(session)
    if (model, key) not in rows:
        rows[(model, key)] = await session.get(model, key)
    return rows[(model, key)]


def add(session: AsyncSession, row: Row) -> Row:
    """A new row: added to the session and found by ``get`` from now on."""
    session.add(row)
    key = inspect(type(row)).primary_key_from_instance(row)
    _rows(session)[(type(row), key[0] if len(key) == 1 else tuple(key))] = row
    return row


async def load(session: AsyncSession, model: type, keys: Iterable[uuid.UUID]) -> None:
    """Look up these keys of a single-column-key table at once."""
    rows = _rows(session)
    wanted = list({key for key in keys if (model, key) not in rows})
    (column,) = inspect(model).primary_key
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        for row in await session.scalars(select(model).where(column.in_(chunk))):
            rows[(model, getattr(row, column.key))] = row
        for key in chunk:
            rows.setdefault((model, key), None)


async def owner(session: AsyncSession, customer_id: uuid.UUID | None) -> uuid.UUID | None:
    """Whom a fact belongs to now: the merge survivor, or None after an erasure. Remembered
    for the transaction: merges and erasures are applied by another consumer, in another."""
    if customer_id is None:
        return None
    owners = session.info.setdefault(_OWNERS, {})
    if customer_id not in owners:
        owners[customer_id] = await projection.survivor(session, customer_id)
    return owners[customer_id]


async def load_owners(session: AsyncSession, customer_ids: Iterable[uuid.UUID]) -> None:
    owners = session.info.setdefault(_OWNERS, {})
    wanted = [customer_id for customer_id in set(customer_ids) if customer_id not in owners]
    owners.update(await projection.survivors(session, wanted))


def forget_owners(session: AsyncSession) -> None:
    """A merge or an erasure was applied in this transaction: owners must be looked up again."""
    session.info.pop(_OWNERS, None)


async def add_counts(
    session: AsyncSession, model: type, counts: list[dict[str, Any]], *, counter: str
) -> None:
    """Insert these rows, or add their ``counter`` to that of the rows already there with the
    same primary key, in one statement per chunk (an upsert both databases have)."""
    table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={counter: table.c[counter] + statement.excluded[counter]},
    )
    for start in range(0, len(counts), CHUNK):
        await session.execute(statement, counts[start : start + CHUNK])


def _ids(events: list[Envelope], field: str) -> list[uuid.UUID]:
    return [uuid.UUID(str(e.data[field])) for e in events if e.data.get(field) is not None]


async def prefetch_support(session: AsyncSession, events: list[Envelope]) -> None:
    await load_owners(session, _ids(events, "customer_id"))
    await load(session, TicketFact, _ids(events, "ticket_id"))
    await load(session, TicketMessageFact, _ids(events, "message_id"))


async def prefetch_sales(session: AsyncSession, events: list[Envelope]) -> None:
    await load_owners(session, _ids(events, "customer_id"))
    await load(session, LeadFact, _ids(events, "lead_id"))
    await load(session, OpportunityFact, _ids(events, "opportunity_id"))
    await load(session, OrderFact, _ids(events, "order_id"))


async def prefetch_marketing(session: AsyncSession, events: list[Envelope]) -> None:
    await load_owners(session, _ids(events, "customer_id"))
    await load(session, SendFact, _ids(events, "send_id"))
