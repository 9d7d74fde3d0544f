"""Tamper evidence: an append-only hash chain over the rows that carry authority.

Every time one of these rows is written (inserted, or changed by the program), an entry is
appended to its chain in the same transaction:

    row_hash   = sha256 of the row as the database gives it back (every column, canonical JSON)
    entry_hash = sha256(previous entry_hash | table | row id | row_hash)

Chains: one per station ("station:<id>": its level changes, gate evaluations, threshold sets,
model deployments, dispositions, human decisions, adjudications) and one for the operators
("operators"). Writers of a chain queue up: SQLite's write lock (every transaction begins
IMMEDIATE), a transaction-scoped advisory lock on PostgreSQL.

`verify` walks every chain: a changed or removed entry breaks the links after it; a row whose
content differs from its latest entry was edited; an entry whose row is gone was deleted; a row
with no entry was inserted behind the program's back. Anyone who can write the database can
also recompute the chain, so the chain's head (length and last hash, shown by `station audit
verify` and the report) is what to keep elsewhere: a head that no longer extends the one kept
shows a rewrite.

Rows written through the ORM are chained by a session hook (after each flush); rows written by
Core inserts (the inspection record, db.repo._insert) call `append` themselves.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Table, event, func, insert, select
from sqlalchemy.orm import Session as OrmSession

from db import driver
from db.driver import Writer
from db.models import (
    Adjudication,
    AuditChainEntry,
    Deployment,
    Disposition,
    GateEvaluation,
    HumanDecision,
    Item,
    LevelChange,
    Operator,
    ThresholdSet,
)

OPERATORS = "operators"
GENESIS = "0" * 64

#: table name -> (model, how its station is found: a station_id column, an item_id, or none)
CHAINED: dict[str, tuple[type, str | None]] = {
    "level_change": (LevelChange, "station_id"),
    "gate_evaluation": (GateEvaluation, "station_id"),
    "threshold_set": (ThresholdSet, "station_id"),
    "deployment": (Deployment, "station_id"),
    "disposition": (Disposition, "item_id"),
    "human_decision": (HumanDecision, "item_id"),
    "adjudication": (Adjudication, "item_id"),
    "operator": (Operator, None),
}

_entries: Table = AuditChainEntry.__table__  # type: ignore[attr-defined]
_items: Table = Item.__table__  # type: ignore[attr-defined]
_LAST_SQL = f"SELECT seq, entry_hash FROM {_entries.name} WHERE chain = ? ORDER BY seq DESC LIMIT 1"


def _table(name: str) -> Table:
    return CHAINED[name][0].__table__  # type: ignore[attr-defined,no-any-return]


# --------------------------------------------------------------------------- hashing


_PLAIN = (str, int, bool, type(None))  # JSON as they are (exact types: not an Enum of str)


def _canonical(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        if type(value) is datetime and value.tzinfo is UTC and value.year >= 1000:  # same text
            return value.replace(tzinfo=None).isoformat("T", "microseconds")
        t = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return repr(value)
    return value


# Made once: json.dumps given any option builds a new encoder on every call, which cost about a
# third of hashing a row (one decision is two rows hashed, on the recorder's critical path).
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def row_hash(row: Mapping[str, Any]) -> str:
    # Plain values are taken as they are without a call (most of a row); the encoder sorts keys.
    body = {k: v if type(v) in _PLAIN else _canonical(v) for k, v in row.items()}
    return hashlib.sha256(_encode(body).encode()).hexdigest()


def entry_hash(prev: str, table: str, row_id: int, rhash: str) -> str:
    return hashlib.sha256(f"{prev}|{table}|{row_id}|{rhash}".encode()).hexdigest()


def _read_row(
    conn: Connection, table: str, row_id: int, columns: set[str] | None = None
) -> dict[str, Any] | None:
    """The row as the database gives it back, through the model's column types (so writing and
    verifying read the same values); `columns`: only these (a migration's older table)."""
    t = _table(table)
    cols = [c for c in t.columns if columns is None or c.name in columns]
    got = conn.execute(select(*cols).where(t.c.id == row_id)).mappings().first()
    return dict(got) if got is not None else None


def _chain_of(conn: Connection, table: str, row: Mapping[str, Any]) -> str:
    how = CHAINED[table][1]
    if how is None:
        return OPERATORS
    if how == "station_id":
        return f"station:{row['station_id']}"
    station = conn.execute(
        select(_items.c.station_id).where(_items.c.id == row["item_id"])
    ).scalar_one_or_none()
    return f"station:{station}"


# --------------------------------------------------------------------------- appending


def append(conn: Connection, table: str, row_id: int, columns: set[str] | None = None) -> None:
    """Chain row `row_id` of `table` as the database gives it back now (inside the writer's
    transaction)."""
    row = _read_row(conn, table, row_id, columns)
    if row is not None:
        append_rows(conn, _chain_of(conn, table, row), [(table, row_id, row)])


def append_rows(
    conn: Connection | Writer, chain: str, rows: Sequence[tuple[str, int, Mapping[str, Any]]]
) -> None:
    """Append (table, row id, the row's values) to `chain`, in order, in one statement."""
    if isinstance(conn, Connection) and conn.dialect.name == "postgresql":
        # Writers of one chain queue up until this transaction ends.
        key = zlib.crc32(chain.encode()) - 2**31
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")
    fast = driver.usable(conn)  # SQLite: through the driver (db/driver.py), same rows
    if fast:
        last = driver.first_row(conn, _LAST_SQL, (chain,))
    else:
        assert isinstance(conn, Connection)  # a Writer is always usable
        last = conn.execute(
            select(_entries.c.seq, _entries.c.entry_hash)
            .where(_entries.c.chain == chain)
            .order_by(_entries.c.seq.desc())
            .limit(1)
        ).first()
    seq, prev = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS)
    now = datetime.now(UTC)
    entries = []
    for table, row_id, row in rows:
        seq += 1
        rhash = row_hash(row)
        this = entry_hash(prev, table, row_id, rhash)
        entries.append(
            {
                "chain": chain,
                "seq": seq,
                "table_name": table,
                "row_id": row_id,
                "row_hash": rhash,
                "prev_hash": prev,
                "entry_hash": this,
                "created_at": now,
            }
        )
        prev = this
    if fast:
        driver.insert_rows(conn, _entries, entries)
    else:
        assert isinstance(conn, Connection)
        conn.execute(insert(_entries), entries)


def _after_flush(session: OrmSession, _context: Any) -> None:
    """Chain every chained row the flush inserted or changed (ORM writers)."""
    touched: list[tuple[str, int]] = []
    for obj in list(session.new) + list(session.dirty):
        name = getattr(obj, "__tablename__", None)
        if name in CHAINED and getattr(obj, "id", None) is not None:
            if obj in session.dirty and not session.is_modified(obj, include_collections=False):
                continue
            touched.append((str(name), int(obj.id)))
    if touched:
        conn = session.connection()
        for name, row_id in sorted(set(touched), key=lambda t: (t[1], t[0])):
            append(conn, name, row_id)


event.listen(OrmSession, "after_flush", _after_flush)


def adopt_existing(conn: Connection, *, tables: Iterable[str] | None = None) -> int:
    """Chain the chained rows as they stand now (a migration's work): every row without an entry
    yet, and with `tables` every row of those tables again. The rows a database held when it
    got its chain are evidenced from then on, not their history before. A later migration that
    changes a chained table's columns changes its rows' hashes: it calls this with `tables`."""
    from sqlalchemy import inspect

    again = set(tables or ())
    done = 0
    for name in CHAINED:
        t = _table(name)
        present = {c["name"] for c in inspect(conn).get_columns(name)}
        query = select(t.c.id).order_by(t.c.id)
        if name not in again:
            chained = select(_entries.c.row_id).where(_entries.c.table_name == name)
            query = query.where(t.c.id.not_in(chained))
        for (row_id,) in conn.execute(query).all():
            append(conn, name, int(row_id), present)
            done += 1
    return done


# --------------------------------------------------------------------------- verifying


@dataclass
class ChainState:
    chain: str
    length: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)


@dataclass
class Verification:
    chains: dict[str, ChainState] = field(default_factory=dict)
    rows_checked: int = 0

    @property
    def problems(self) -> list[str]:
        return [p for c in self.chains.values() for p in c.problems]

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "rows_checked": self.rows_checked,
            "problems": self.problems,
            "chains": {
                name: {"length": c.length, "head": c.head, "problems": c.problems}
                for name, c in sorted(self.chains.items())
            },
        }


# Each chain's name, by a loose index scan of (chain, seq): one seek per chain.
_NAMES_SQL = f"""
WITH RECURSIVE names(chain) AS (
    SELECT min(chain) FROM {_entries.name}
    UNION ALL
    SELECT (SELECT min(chain) FROM {_entries.name} WHERE chain > names.chain)
    FROM names WHERE names.chain IS NOT NULL
)
SELECT chain FROM names WHERE chain IS NOT NULL
"""


def heads(conn: Connection) -> dict[str, dict[str, Any]]:
    """Each chain's length and last hash (cheap: for every report). On SQLite, found by
    seeking each chain's last entry: grouping every entry by chain took 0.17-0.26 s at 2,000,000
    entries (a million decisions), on every report."""
    if driver.usable(conn):
        out: dict[str, dict[str, Any]] = {}
        for (name,) in conn.exec_driver_sql(_NAMES_SQL).all():
            last_row = driver.first_row(conn, _LAST_SQL, (name,))
            if last_row is not None:
                out[str(name)] = {"length": int(last_row[0]), "head": str(last_row[1])}
        return out
    last = (
        select(_entries.c.chain, func.max(_entries.c.seq).label("seq"))
        .group_by(_entries.c.chain)
        .subquery()
    )
    rows = conn.execute(
        select(_entries.c.chain, _entries.c.seq, _entries.c.entry_hash).join(
            last, (last.c.chain == _entries.c.chain) & (last.c.seq == _entries.c.seq)
        )
    ).all()
    return {str(c): {"length": int(s), "head": str(h)} for c, s, h in rows}


def verify(
    conn: Connection, *, max_problems: int = 200, on_stage: Callable[[str], None] | None = None
) -> Verification:
    """Walk every chain and every chained row (see the module's doc). `on_stage` is told what
    is being read: a record of a million decisions takes a while."""
    say = on_stage or (lambda _what: None)
    out = Verification()
    latest: dict[tuple[str, int], tuple[str, str, int]] = {}  # (table, id) -> (hash, chain, seq)
    state: ChainState | None = None
    expected_seq = 1
    prev = GENESIS
    query = select(_entries).order_by(_entries.c.chain, _entries.c.seq)
    say("walking the chains")
    for e in conn.execute(query).mappings():
        chain = str(e["chain"])
        if state is None or state.chain != chain:
            state = out.chains.setdefault(chain, ChainState(chain))
            expected_seq, prev = 1, GENESIS
        seq = int(e["seq"])
        if seq != expected_seq:
            state.problems.append(
                f"{chain}: entries {expected_seq}..{seq - 1} are missing (removed from the chain)"
            )
        if e["prev_hash"] != prev or e["entry_hash"] != entry_hash(
            str(e["prev_hash"]), str(e["table_name"]), int(e["row_id"]), str(e["row_hash"])
        ):
            state.problems.append(
                f"{chain}: entry {seq} ({e['table_name']} #{e['row_id']}) does not link to the "
                "one before it: the chain was edited here"
            )
        prev, expected_seq = str(e["entry_hash"]), seq + 1
        state.length, state.head = seq, prev
        latest[(str(e["table_name"]), int(e["row_id"]))] = (str(e["row_hash"]), chain, seq)
    seen: set[tuple[str, int]] = set()
    for name in CHAINED:
        t = _table(name)
        say(f"checking the {name} rows")
        for row in conn.execute(select(t).order_by(t.c.id)).mappings():
            out.rows_checked += 1
            key = (name, int(row["id"]))
            seen.add(key)
            entry = latest.get(key)
            where = f"{name} #{row['id']}"
            if entry is None:
                _note(
                    out,
                    _chain_of(conn, name, dict(row)),
                    f"{where} has no chain entry: written behind the program's back",
                    max_problems,
                )
            elif entry[0] != row_hash(dict(row)):
                _note(
                    out,
                    entry[1],
                    f"{where} differs from what was recorded (entry {entry[2]} "
                    "of its chain): edited after it was written",
                    max_problems,
                )
    for (name, row_id), (_h, chain, seq) in latest.items():
        if (name, row_id) not in seen:
            _note(
                out,
                chain,
                f"{name} #{row_id} (entry {seq} of its chain) is gone: deleted",
                max_problems,
            )
    return out


def _note(out: Verification, chain: str, problem: str, limit: int) -> None:
    state = out.chains.setdefault(chain, ChainState(chain))
    if len(out.problems) < limit:
        state.problems.append(problem)


def chained_tables() -> Iterable[str]:
    return CHAINED.keys()
