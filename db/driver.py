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

`Writer` goes one step further for the one writer that commits once per item (the recorder): it
keeps one of the engine's connections for itself and runs the transaction on it directly.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, exc
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import SingletonThreadPool, StaticPool
from sqlalchemy.sql import sqltypes
from sqlmodel.sql.sqltypes import UTCDateTime


@dataclass(frozen=True)
class _Plan:
    sql: str
    columns: tuple[str, ...]
    # (column index, bind processor, the value types stored the same without it)
    converted: tuple[tuple[int, Callable[[Any], Any], tuple[type, ...]], ...]


_NONE = type(None)
#: Values of these column types that the driver stores exactly as their bind processor's
#: result would be stored: a float as a float (Float's processor calls float() on it), a bool as
#: the integer 0 or 1 (Boolean's calls int() on it), and None as NULL. About half of an item's
#: conversions; each skipped processor call saved about a microsecond of the item's write.
_STORED_AS_THEY_ARE: dict[type, tuple[type, ...]] = {
    sqltypes.Float: (float, _NONE),
    sqltypes.Boolean: (bool, _NONE),
}


def _utc_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """UTCDateTime's processor (to UTC, then SQLite's text form, "2026-12-02 08:30:15.123456")
    for a datetime already in UTC, by isoformat in C instead of the TypeDecorator's two steps
    and a %-format; anything else goes through `process` itself."""

    def convert(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return process(value)

    return convert


#: Probes that a fast conversion must turn into exactly what SQLAlchemy's does, checked when a
#: table's plan is made (a SQLAlchemy whose storage format differs keeps its own processor).
_PROBES = (
    datetime(2026, 12, 2, 8, 30, 15, 123456, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(999, 1, 1, tzinfo=UTC),
)


def _converter(
    column: Any, dialect: Dialect
) -> tuple[Callable[[Any], Any], tuple[type, ...]] | None:
    process = column.type._cached_bind_processor(dialect)
    if process is None:
        return None
    if isinstance(column.type, UTCDateTime):
        fast = _utc_text(process)
        if all(fast(v) == process(v) for v in _PROBES):
            return fast, (_NONE,)
    # the exact types: a subclass may convert otherwise
    return process, _STORED_AS_THEY_ARE.get(type(column.type), ())


@functools.lru_cache(maxsize=64)
def _plan(table: Table, dialect: Dialect, with_id: bool) -> _Plan:
    cols = [c for c in table.columns if with_id or c.name != "id"]
    names = tuple(c.name for c in cols)
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})"
    )
    converters = [_converter(c, dialect) for c in cols]
    return _Plan(sql, names, tuple((i, *c) for i, c in enumerate(converters) if c is not None))


def can_hold(engine: Engine) -> bool:
    """Whether a Writer can keep one of `engine`'s connections: a SQLite file's (an in-memory
    database lives in the pool's one connection, which a Writer would take away)."""
    return engine.dialect.name == "sqlite" and not isinstance(
        engine.pool, SingletonThreadPool | StaticPool
    )


class _Held:
    """A Writer's connection, kept apart from the Writer so that a finalizer can close it when
    a Writer nobody closed is collected (the engine's dispose() does not reach it)."""

    def __init__(self) -> None:
        self.raw: sqlite3.Connection | None = None

    def close(self) -> None:
        raw, self.raw = self.raw, None
        if raw is not None:
            with contextlib.suppress(sqlite3.Error):
                raw.close()  # an open transaction is rolled back


class Writer:
    """One SQLite connection of `engine`'s, kept by a single writer, and its transactions.

    Through SQLAlchemy each transaction checked a connection out of the pool and back (resetting
    it), built a Connection and a Transaction, and set the writer's short lock wait and then the
    engine's long one back (two PRAGMAs): as much Python as the item's rows (bench/db_write.py).
    This connection leaves the pool once, is opened by the engine (so it has the engine's
    pragmas: WAL, synchronous=FULL, foreign keys) and keeps the writer's lock wait for good.

    A transaction that fails is rolled back and the connection closed: the next one opens a new
    connection, as a pool checkout after an error would. Driver errors come out as SQLAlchemy's
    (OperationalError for a locked database or a full disk, IntegrityError for a constraint), as
    on a Connection. Passed where the repository takes a Connection (`record_inspection_rows`,
    `chain.append_rows`): this module's functions write through it."""

    def __init__(self, engine: Engine, *, busy_timeout_ms: int) -> None:
        if not can_hold(engine):
            raise ValueError(f"a Writer keeps a connection to a SQLite file, not to {engine.url!r}")
        self.engine = engine
        self.dialect = engine.dialect
        self.busy_timeout_ms = busy_timeout_ms
        self._held = _Held()
        self._lock = threading.Lock()  # one transaction at a time; close() waits for it
        weakref.finalize(self, self._held.close)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Writer]:
        """Commit what the block writes through this Writer, or roll all of it back."""
        with self._lock:
            step = "connect"
            try:
                raw = self._held.raw if self._held.raw is not None else self._open()
                if raw.in_transaction:  # never expected: a transaction is never left open
                    raw.rollback()
                # Begun here, whatever the connection's isolation_level: the rows are one
                # transaction even where the driver would commit each statement on its own.
                step = "BEGIN"
                raw.execute(step)
                yield self
                step = "COMMIT"
                raw.commit()
            except BaseException as e:
                self._held.close()  # rolled back; the next transaction opens a new connection
                if isinstance(e, sqlite3.Error):
                    raise exc.DBAPIError.instance(
                        step, (), e, sqlite3.Error, dialect=self.dialect
                    ) from e
                raise

    @property
    def raw(self) -> sqlite3.Connection:
        """The driver's connection, inside `transaction()`."""
        if self._held.raw is None:
            raise RuntimeError("a Writer is written through inside its transaction() only")
        return self._held.raw

    def _open(self) -> sqlite3.Connection:
        pooled = self.engine.raw_connection()  # "connect" events ran: the engine's pragmas
        raw = pooled.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        pooled.detach()  # ours now: never handed to anyone else, closed by close()
        try:
            raw.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        except BaseException:
            raw.close()
            raise
        self._held.raw = raw
        return raw

    def close(self) -> None:
        """Close the connection (a later transaction opens another)."""
        with self._lock:
            self._held.close()


def usable(conn: Connection | Writer) -> bool:
    """Whether `conn` is a SQLite connection this module can write through."""
    if isinstance(conn, Writer):
        return True
    return conn.dialect.name == "sqlite" and conn.dialect.paramstyle == "qmark"


def _driver_connection(conn: Connection | Writer) -> sqlite3.Connection:
    if isinstance(conn, Writer):
        return conn.raw
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _params(plan: _Plan, values: Mapping[str, Any]) -> list[Any]:
    out = list(map(values.get, plan.columns))
    for i, p, keep in plan.converted:  # None too, unless kept: a JSON None is stored 'null'
        v = out[i]
        if type(v) not in keep:
            out[i] = p(v)
    return out


def _execute(
    conn: Connection | Writer, sql: str, params: Any, *, many: bool = False
) -> sqlite3.Cursor:
    """Run `sql` on the driver's own connection, inside the caller's transaction; a driver error
    is raised as SQLAlchemy would raise it (sqlalchemy.exc.OperationalError for a locked database,
    IntegrityError for a constraint), so callers tell a retryable failure from a refusal exactly
    as on the Core path."""
    raw = _driver_connection(conn)
    try:
        return raw.executemany(sql, params) if many else raw.execute(sql, params)
    except sqlite3.Error as e:
        raise exc.DBAPIError.instance(sql, params, e, sqlite3.Error, dialect=conn.dialect) from e


def insert_row(conn: Connection | Writer, table: Table, values: Mapping[str, Any]) -> int:
    """INSERT one row (every column but `id`, missing ones NULL); its new id."""
    plan = _plan(table, conn.dialect, False)
    params = _params(plan, values)
    row_id = _execute(conn, plan.sql, params).lastrowid
    if row_id is None:
        raise exc.IntegrityError(plan.sql, params, Exception("the database returned no id"))
    return int(row_id)


def insert_rows(conn: Connection | Writer, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT several rows as given (ids included, where set) in one executemany."""
    plan = _plan(table, conn.dialect, True)
    _execute(conn, plan.sql, [_params(plan, r) for r in rows], many=True)


def first_row(conn: Connection | Writer, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """One row of a query run by the driver (values as SQLite holds them)."""
    got = _execute(conn, sql, tuple(params)).fetchone()
    return None if got is None else tuple(got)


def set_busy_timeout(conn: Connection, ms: int) -> None:
    """How long this connection waits for another process's write lock (SQLite's busy_timeout),
    through the driver: through SQLAlchemy the PRAGMA cost as much as one of the item's rows."""
    _execute(conn, f"PRAGMA busy_timeout={int(ms)}", ())
