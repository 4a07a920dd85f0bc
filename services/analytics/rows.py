"""The fact rows one consumer transaction reads and writes, kept as plain rows.

Before a fetched batch is applied, ``prefetch_*`` loads every row its events name with one
query per table (and every customer's merge survivor with one more). The handlers then get,
add and change rows here, one event at a time, as plain attribute holders (``Row``), and
``write`` stores the new and changed ones with one upsert per table once the batch's handlers
have run (the subscription's ``finish`` hook), before the rescoring reads them and the
transaction commits. ORM objects did this job at twice the cost: creating them, tracking their
attributes and flushing them one by one were a fifth of the consumer's time. A key that was
looked up and not found is remembered as missing, so a new fact costs no query either.
"""

import functools
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Table, select, update
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
from shared.db import chunked, in_dialect, in_lists, insert_on_conflict_each
from shared.events import Envelope

_ROWS = "analytics_rows"
_OWNERS = "analytics_owners"
CHUNK = 500  # keys per IN (...) list, rows per upsert


class Row(SimpleNamespace):
    """A fact row: an attribute per column of its table."""


@dataclass
class _Cached:
    row: Row | None  # None: no such row
    stored: dict[str, Any] | None  # the values in the database; None for a row not written yet


def _rows(session: AsyncSession) -> dict[tuple[type, Any], _Cached]:
    return session.info.setdefault(_ROWS, {})


def _table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def _key(table: Table, values: dict[str, Any]) -> Any:
    key = tuple(values[column.key] for column in table.primary_key.columns)
    return key[0] if len(key) == 1 else key


def _remember(session: AsyncSession, model: type, key: Any, values: dict[str, Any] | None) -> None:
    row = None if values is None else Row(**values)
    _rows(session)[(model, key)] = _Cached(row, values)


async def get(session: AsyncSession, model: type, key: Any) -> Row | None:
    """The row of this primary key (a tuple for a composite one), or None; remembered."""
    rows = _rows(session)
    if (model, key) not in rows:
        table = _table(model)
        keys = key if isinstance(key, tuple) else (key,)
        found = (
            await session.execute(
                select(table).where(
                    *(c == v for c, v in zip(table.primary_key.columns, keys, strict=True))
                )
            )
        ).first()
        _remember(session, model, key, None if found is None else dict(found._mapping))
    return rows[(model, key)].row


def add(session: AsyncSession, model: type, **values: Any) -> Row:
    """A new row (the columns not given take their default, else None), written by ``write``
    and found by ``get`` from now on."""
    table = _table(model)
    row = Row(**{column.key: _default(column) for column in table.columns} | values)
    _rows(session)[(model, _key(table, vars(row)))] = _Cached(row, None)
    return row


def _default(column: Any) -> Any:
    default = column.default
    if default is None:
        return None
    return default.arg(None) if default.is_callable else default.arg


async def load(session: AsyncSession, model: type, keys: Iterable[uuid.UUID]) -> None:
    """Look up these keys of a single-column-key table at once."""
    rows = _rows(session)
    wanted = list({key for key in keys if (model, key) not in rows})
    table = _table(model)
    (column,) = table.primary_key.columns
    for chunk in in_lists(wanted, CHUNK):
        for found in await session.execute(select(table).where(column.in_(chunk))):
            values = dict(found._mapping)
            _remember(session, model, values[column.key], values)
        for key in chunk:
            rows.setdefault((model, key), _Cached(None, None))


async def write(session: AsyncSession) -> None:
    """Store what changed since the rows were read or last written: new rows with one upsert
    per table; of the rows read, only the columns that changed (one UPDATE by primary key per
    set of columns). A merge or an erasure committed meanwhile re-pointed the row's customer:
    writing the whole row back would undo it. In key order, so that two transactions lock
    shared rows in the same order."""
    new: dict[type, list[dict[str, Any]]] = {}
    changed: dict[type, list[dict[str, Any]]] = {}
    for (model, _), cached in _rows(session).items():
        if cached.row is None:
            continue
        values = vars(cached.row)
        if cached.stored is None:
            new.setdefault(model, []).append(dict(values))
        else:
            diff = {k: v for k, v in values.items() if cached.stored[k] != v}
            if diff:
                key = {c.key: values[c.key] for c in _table(model).primary_key.columns}
                changed.setdefault(model, []).append(key | diff)
        cached.stored = dict(values)
    for model, inserts in new.items():
        table = _table(model)
        statement = in_dialect(session, _upserts(table))
        await _execute_in_chunks(session, statement, _in_key_order(table, inserts))
    for model, updates in changed.items():
        await session.execute(
            update(model),
            _in_key_order(_table(model), updates),
            execution_options={"synchronize_session": False},
        )


def _in_key_order(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: tuple(str(row[c.key]) for c in table.primary_key.columns))


async def _execute_in_chunks(
    session: AsyncSession, statement: Any, values: list[dict[str, Any]]
) -> None:
    for chunk in chunked(values, CHUNK):
        await session.execute(statement, chunk)


async def owner(session: AsyncSession, customer_id: uuid.UUID | None) -> uuid.UUID | None:
    """Whom a fact belongs to now: the merge survivor, or None after an erasure. Remembered
    for the transaction: merges and erasures are applied by another consumer, in another."""
    if customer_id is None:
        return None
    owners = session.info.setdefault(_OWNERS, {})
    if customer_id not in owners:
        owners[customer_id] = await projection.survivor(session, customer_id)
    return owners[customer_id]


async def load_owners(
    session: AsyncSession,
    customer_ids: Iterable[uuid.UUID],
    *,
    locked: Collection[uuid.UUID] | None = None,
) -> None:
    """``owner`` for many customers at once. With ``locked`` (what ``projection.lock_the_way``
    locked), a merged one is followed to its survivor under each one's lock on the way, those
    of ``locked`` being held already."""
    owners = session.info.setdefault(_OWNERS, {})
    wanted = [customer_id for customer_id in set(customer_ids) if customer_id not in owners]
    follow: projection.Follow = projection.survivor
    if locked is not None:
        follow = functools.partial(projection.survivor, lock_each=True, locked=locked)
    owners.update(await projection.survivors(session, wanted, follow))


def forget_owners(session: AsyncSession) -> None:
    """A merge or an erasure was applied in this transaction: owners must be looked up again."""
    session.info.pop(_OWNERS, None)


async def add_counts(
    session: AsyncSession, model: type, counts: list[dict[str, Any]], *, counter: str
) -> None:
    """Insert these rows, or add their ``counter`` to that of the rows already there with the
    same primary key, in one statement per chunk (an upsert both databases have)."""
    statement = in_dialect(session, _upserts(_table(model), counter))
    await _execute_in_chunks(session, statement, counts)


@functools.cache
def _upserts(table: Table, counter: str | None = None) -> dict[str, Any]:
    """The table's upsert for each dialect, built once (building it per batch cost as much as
    running it, at a batch of one): with ``counter``, adding the new row's to that column of
    the row there; else setting every column but the key (nothing for a table that is all key:
    a ticket's reopening)."""
    keys = list(table.primary_key.columns)
    statements = {}
    for dialect, statement in insert_on_conflict_each(table).items():
        if counter is not None:
            set_ = {counter: table.c[counter] + statement.excluded[counter]}
        else:
            set_ = {c.key: statement.excluded[c.key] for c in table.columns if not c.primary_key}
        statements[dialect] = (
            statement.on_conflict_do_update(index_elements=keys, set_=set_)
            if set_
            else statement.on_conflict_do_nothing(index_elements=keys)
        )
    return statements


def _ids(events: list[Envelope], field: str) -> list[uuid.UUID]:
    return [uuid.UUID(str(e.data[field])) for e in events if e.data.get(field) is not None]


async def _lock_and_load_owners(session: AsyncSession, events: list[Envelope]) -> None:
    """The batch's customers locked, then their owners read: a merge or an erasure of one of
    them (which takes the same locks) then either commits before and is seen here, or waits
    and re-points or anonymises the facts this batch writes. Without the locks a fact the
    batch created kept the id of a customer erased meanwhile. A customer merged earlier is
    followed to its survivor under each one's lock on the way: the survivor's own merge,
    applied at the same time, locks only the survivor. Those on the way are locked with the
    batch's, in one statement: locked after them, the batch held a merged customer while it
    waited for the survivor, which another batch naming both held, waiting for the merged
    one (a deadlock on PostgreSQL)."""
    customers = _ids(events, "customer_id")
    locked = await projection.lock_the_way(session, customers)
    await load_owners(session, customers, locked=locked)


async def prefetch_support(session: AsyncSession, events: list[Envelope]) -> None:
    await _lock_and_load_owners(session, events)
    await load(session, TicketFact, _ids(events, "ticket_id"))
    await load(session, TicketMessageFact, _ids(events, "message_id"))


async def prefetch_sales(session: AsyncSession, events: list[Envelope]) -> None:
    await _lock_and_load_owners(session, events)
    await load(session, LeadFact, _ids(events, "lead_id"))
    await load(session, OpportunityFact, _ids(events, "opportunity_id"))
    await load(session, OrderFact, _ids(events, "order_id"))


async def prefetch_marketing(session: AsyncSession, events: list[Envelope]) -> None:
    await _lock_and_load_owners(session, events)
    await load(session, SendFact, _ids(events, "send_id"))
