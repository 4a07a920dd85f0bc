"""aiosqlite connections that run each SQL statement in one trip to their thread.

aiosqlite runs every call on a sqlite3 connection in a thread of its own, one trip (a queue
put, a thread wake-up, a callback into the event loop) per call, and SQLAlchemy's adapter
makes four calls per statement: open a cursor, execute, fetch, close. On this 2-core VM a
trip costs about 70 µs of CPU (86 µs wall), against 2 µs for the statement itself: an API
write paid nine trips, a consumer transaction forty. Here a statement is one trip (the
cursor lives and dies inside it), and a commit or rollback with no transaction open is none.
The thread stays: a long query (a KPI over a year) still leaves the event loop free.
"""

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite


class OneTripCursor:
    """The part of ``aiosqlite.Cursor`` SQLAlchemy's adapter uses; results are fetched in the
    trip that executes the statement."""

    def __init__(self, connection: "OneTripConnection") -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def execute(self, sql: str, parameters: Any = None) -> "OneTripCursor":
        await self._run(
            lambda cursor: cursor.execute(sql, () if parameters is None else parameters)
        )
        return self

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> "OneTripCursor":
        await self._run(lambda cursor: cursor.executemany(sql, parameters))
        return self

    async def _run(self, operation: Callable[[sqlite3.Cursor], Any]) -> None:
        """In the connection's thread: a cursor, the operation, its rows, the cursor closed."""

        def run(conn: sqlite3.Connection) -> tuple[Any, int, int | None, list[Any]]:
            cursor = conn.cursor()
            try:
                operation(cursor)
                rows = cursor.fetchall() if cursor.description else []
                return cursor.description, cursor.rowcount, cursor.lastrowid, rows
            finally:
                cursor.close()

        found = await self._connection._execute(run, self._connection._conn)
        self.description, self.rowcount, self.lastrowid, self._rows = found

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []

    async def __aenter__(self) -> "OneTripCursor":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


class OneTripConnection(aiosqlite.Connection):
    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)  # no trip: the sqlite3 cursor is made by each statement

    @property
    def writing(self) -> bool:
        """Whether the transaction has written, and so holds the database's write lock (the
        sqlite3 module begins a transaction only before the first write)."""
        return self._conn.in_transaction

    async def commit(self) -> None:
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        if self._conn.in_transaction:  # the pool rolls back every connection it takes back
            await super().rollback()


async def connect(database: str, **kwargs: Any) -> OneTripConnection:
    """``aiosqlite.connect`` for a ``OneTripConnection``; ``check_same_thread`` is off: the
    connection's thread makes every call but ``in_transaction``, a flag read between them."""
    kwargs["check_same_thread"] = False
    connection = OneTripConnection(lambda: sqlite3.connect(database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does: an unclosed one must not hang exit
    return await connection
