"""INSERTs through the database driver itself, for the writes on every item's critical path.

A Core `insert()` costs ~0.1 ms of Python per row before the driver sees it (execution context,
parameter processing, result set-up); four rows and a chain entry per item, each committed with
an fsync, made a durable inspection 0.28x as fast as the same rows written with raw sqlite3
(bench/db_write.py). Here the statement text is built once per table and each value goes through
the very bind processor SQLAlchemy would apply (datetime to SQLite's text form, enums to their
names, dicts to JSON), so the stored row is the same, byte for byte (tested), and then the
driver's own cursor runs it, inside the caller's transaction.

SQLite only: it is the station's local record, where the per-item cost is Python's. On
PostgreSQL a round trip dwarfs that cost, and the Core path (with RETURNING) stays.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, exc
from sqlalchemy.engine import Connection, Dialect


@dataclass(frozen=True)
class _Plan:
    sql: str
    columns: tuple[str, ...]
    converted: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, bind processor)


@functools.lru_cache(maxsize=64)
def _plan(table: Table, dialect: Dialect, with_id: bool) -> _Plan:
    cols = [c for c in table.columns if with_id or c.name != "id"]
    names = tuple(c.name for c in cols)
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})"
    )
    processors = [c.type._cached_bind_processor(dialect) for c in cols]
    return _Plan(sql, names, tuple((i, p) for i, p in enumerate(processors) if p is not None))


def usable(conn: Connection) -> bool:
    """Whether `conn` is a SQLite connection this module can write through."""
    return conn.dialect.name == "sqlite" and conn.dialect.paramstyle == "qmark"


def _params(plan: _Plan, values: Mapping[str, Any]) -> list[Any]:
    out = list(map(values.get, plan.columns))
    for i, p in plan.converted:  # None too, as SQLAlchemy does: a JSON None is stored 'null'
        out[i] = p(out[i])
    return out


def _execute(conn: Connection, sql: str, params: Any, *, many: bool = False) -> sqlite3.Cursor:
    """Run `sql` on the driver's own connection, inside the caller's transaction; a driver error
    is raised as SQLAlchemy would raise it (sqlalchemy.exc.OperationalError for a locked database,
    IntegrityError for a constraint), so callers tell a retryable failure from a refusal exactly
    as on the Core path."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    try:
        return raw.executemany(sql, params) if many else raw.execute(sql, params)
    except sqlite3.Error as e:
        raise exc.DBAPIError.instance(sql, params, e, sqlite3.Error, dialect=conn.dialect) from e


def insert_row(conn: Connection, table: Table, values: Mapping[str, Any]) -> int:
    """INSERT one row (every column but `id`, missing ones NULL); its new id."""
    plan = _plan(table, conn.dialect, False)
    params = _params(plan, values)
    row_id = _execute(conn, plan.sql, params).lastrowid
    if row_id is None:
        raise exc.IntegrityError(plan.sql, params, Exception("the database returned no id"))
    return int(row_id)


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT several rows as given (ids included, where set) in one executemany."""
    plan = _plan(table, conn.dialect, True)
    _execute(conn, plan.sql, [_params(plan, r) for r in rows], many=True)


def first_row(conn: Connection, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """One row of a query run by the driver (values as SQLite holds them)."""
    got = _execute(conn, sql, tuple(params)).fetchone()
    return None if got is None else tuple(got)


def set_busy_timeout(conn: Connection, ms: int) -> None:
    """How long this connection waits for another process's write lock (SQLite's busy_timeout),
    through the driver: through SQLAlchemy the PRAGMA cost as much as one of the item's rows."""
    _execute(conn, f"PRAGMA busy_timeout={int(ms)}", ())
