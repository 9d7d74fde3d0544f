"""Daily report summaries: a report's aggregates kept per station and UTC day of capture.

Every aggregate of the agreement report (review.query day_rows, label_groups, score_rows,
inspector_hour_rows) is a sum over items, so it is the sum of the same aggregate over each
station's days. The summaries hold those per-day sums in `report_summary`, up to date as of the
ids in `report_summary_mark`. A report brings them up to date first: for each item that a newer
record touches (a new item, a prediction, a decision or its correction, a disposition, an
adjudication of an old item), its line as it stood at the mark is taken out of its day's sums and
its line now put in, both computed by the very same queries (the records are append-only, so the
frame at the mark is the frame of the rows up to it). A report's cost then grows with what
changed since the last report and with the number of days, not with the number of items; the
first report after the upgrade builds them, as long as one full report.

Only where the numbers come out the same: SQLite (its ids are given in commit order; PostgreSQL
sequences are not, so a slower transaction could commit an id below the mark), and reports
filtered at most by station and by whole UTC days. Any other filter takes the full path.
The summaries are derived data, never authority: deleting them only makes the next report slower.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from db.models import Item, ReportSummary, ReportSummaryMark, Station, utcnow
from review import query as Q
from review import stages as ST

log = logging.getLogger(__name__)

#: Bumped whenever what an aggregate computes changes: stored summaries of another version are
#: rebuilt rather than mixed with new ones.
VERSION = 2  # 2: the pipeline stages' sums (review/stages.py) per station-day

_summary = ReportSummary.__table__  # type: ignore[attr-defined]
_mark = ReportSummaryMark.__table__  # type: ignore[attr-defined]
_item = Item.__table__  # type: ignore[attr-defined]
_station = Station.__table__  # type: ignore[attr-defined]

#: The tables whose new rows change an item's line in the report, with the mark's column for each.
MARKED = {
    "item": "item_id",
    "prediction": "prediction_id",
    "human_decision": "human_decision_id",
    "disposition": "disposition_id",
    "adjudication": "adjudication_id",
}

DAY_SUMS = ["items", "paired", "agree", "evidence", "uniform", "model_pass", "escapes"]
LABEL_KEYS = [
    "human",
    "model",
    "adjudicated",
    "ground_truth",
    "evidence",
    "uniform",
    "shown",
    "blind",
    "audit",
]
LABEL_FLAGS = ("evidence", "uniform", "shown", "blind", "audit")
SCORE_SUMS = ["n", "model_pass", "escapes", "correct", "score_sum"]
#: A stored row of each kind: its key fields, then its sums (score: the bin, an integer).
LAYOUT: dict[str, tuple[list[str], list[str]]] = {
    "days": (["day"], DAY_SUMS),
    "labels": (LABEL_KEYS, ["n"]),
    "scores": (["bin", "uniform"], SCORE_SUMS),
    "inspectors": (["inspector", "hour"], Q.INSPECTOR_SUMS),
    "stages": (["trigger", "guard"], ST.STAGE_SUMS),
}
#: Per kind, the sums kept as a min or a max (an item's id: items are never taken away, so a
#: catch-up's lines as they stood at the mark leave them as they are).
EXTREMES = {
    kind: {sums.index(name): pick for name, pick in ST.EXTREMES.items() if name in sums}
    for kind, (_, sums) in LAYOUT.items()
}
#: Past this many stale station-days a refresh recomputes everything in one pass.
MAX_SCOPED = 400
#: Past this many items touched since the mark, whole days are recomputed instead of each item
#: taken out and put back (two passes over those items).
MAX_DELTA = 200_000

Cell = tuple[int, str]  # (station id, day)


@dataclass
class Parts:
    """The report's aggregates, in the shapes review.query returns them."""

    days: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    hours: list[dict[str, Any]]
    #: The report's station's pipeline-stage rows over its whole history (review/stages.py),
    #: whatever the days asked for; None when the report names no station.
    stages: list[dict[str, Any]] | None = None


@dataclass
class Refresh:
    """What a report recomputed, to be written back: the mark it read and the one it reached."""

    read: dict[str, int] | None
    reached: dict[str, int]
    full: bool
    cells: dict[Cell, dict[str, list[list[Any]]]] = field(default_factory=dict)


def applies(conn: Connection, filters: Q.ReportFilters) -> bool:
    """Whether a report with these filters can be summed from daily summaries."""
    if conn.dialect.name != "sqlite":
        return False
    if filters.inspector or filters.model_version or filters.level or filters.evidence_only:
        return False
    return all(t is None or _midnight(t) for t in (filters.since, filters.until))


def _midnight(t: datetime) -> bool:
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)


# --------------------------------------------------------------------------- reading


def aggregates(conn: Connection, filters: Q.ReportFilters, ok: str) -> tuple[Parts, Refresh]:
    """The report's aggregates from the stored summaries, brought up to date first."""
    _snapshot(conn)
    read = _read_mark(conn)
    reached = current_ids(conn)
    fresh = _bring_up(conn, read, reached, ok)
    refresh = Refresh(read=read, reached=reached, full=read is None, cells=fresh)

    station_id = _station_id(conn, filters.station)
    first = filters.since.date().isoformat() if filters.since else None
    last = filters.until.date().isoformat() if filters.until else None

    def wanted(cell: Cell) -> bool:
        sid, day = cell
        return (
            (filters.station is None or sid == station_id)
            and (first is None or day >= first)
            and (last is None or day < last)
        )

    cells = {c: kinds for c, kinds in fresh.items() if wanted(c)}
    if read is not None and (filters.station is None or station_id is not None):
        q = select(_summary.c.station_id, _summary.c.day, _summary.c.kind, _summary.c.rows)
        if station_id is not None:
            q = q.where(_summary.c.station_id == station_id)
        if first is not None:
            q = q.where(_summary.c.day >= first)
        if last is not None:
            q = q.where(_summary.c.day < last)
        for sid, day, kind, rows in conn.execute(q):
            cell = (int(sid), str(day))
            if cell not in fresh:
                cells.setdefault(cell, {})[str(kind)] = rows
    parts = _merge(cells.values())
    if station_id is not None:
        parts.stages = _station_stages(conn, station_id, fresh, read is not None)
    return parts, refresh


def _station_stages(
    conn: Connection, station_id: int, fresh: Mapping[Cell, Mapping[str, Any]], stored: bool
) -> list[dict[str, Any]]:
    """The station's stage rows of every day: the days just recomputed, the rest as stored."""
    cells = [kinds["stages"] for (sid, _), kinds in fresh.items() if sid == station_id]
    if stored:
        q = select(_summary.c.day, _summary.c.rows).where(
            _summary.c.station_id == station_id, _summary.c.kind == "stages"
        )
        cells += [rows for day, rows in conn.execute(q) if (station_id, str(day)) not in fresh]
    return _as_dicts("stages", _totals("stages", cells))


def _snapshot(conn: Connection) -> None:
    """One read transaction from here on, so that the mark, the stored sums, the newest ids and
    the frames are read from one and the same state of the file (pysqlite otherwise reads each
    statement at whatever was committed when it ran). The caller's rollback ends it."""
    dbapi = conn.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction:
        conn.exec_driver_sql("BEGIN")


def _bring_up(
    conn: Connection, read: Mapping[str, int] | None, reached: Mapping[str, int], ok: str
) -> dict[Cell, dict[str, list[list[Any]]]]:
    """The station-days to store so that the summaries hold everything up to `reached`."""
    if read is None:
        return _compute(conn, None, reached, ok)
    return _catch_up(conn, read, reached, ok)


def _read_mark(conn: Connection) -> dict[str, int] | None:
    row = conn.execute(select(_mark).where(_mark.c.id == 1)).mappings().first()
    if row is None or row["version"] != VERSION:
        return None
    return {t: int(row[col]) for t, col in MARKED.items()}


def current_ids(conn: Connection) -> dict[str, int]:
    parts = " UNION ALL ".join(f"SELECT '{t}', coalesce(max(id), 0) FROM {t}" for t in MARKED)
    return {str(t): int(v) for t, v in conn.execute(text(parts))}


def touched_items(conn: Connection, mark: Mapping[str, int]) -> list[int]:
    """Every item a record newer than the mark is about (or that is newer itself)."""
    sql = " UNION ".join(
        "SELECT id FROM item WHERE id > :item"
        if t == "item"
        else f"SELECT item_id FROM {t} WHERE id > :{t}"
        for t in MARKED
    )
    return [int(i) for (i,) in conn.execute(text(sql), dict(mark))]


def _stale_cells(conn: Connection, mark: Mapping[str, int]) -> set[Cell]:
    """The (station, day) of every item a record newer than the mark touches."""
    touched = " UNION ".join(
        f"SELECT item_id FROM {t} WHERE id > :{t}" for t in MARKED if t != "item"
    )
    sql = (
        "SELECT station_id, date(captured_at) FROM item WHERE id > :item UNION "
        f"SELECT station_id, date(captured_at) FROM item WHERE id IN ({touched})"
    )
    return {(int(s), str(d)) for s, d in conn.execute(text(sql), dict(mark))}


def _station_id(conn: Connection, name: str | None) -> int | None:
    if name is None:
        return None
    found = conn.execute(select(_station.c.id).where(_station.c.name == name)).scalar()
    return None if found is None else int(found)


# --------------------------------------------------------------------------- computing


def _day_start(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def _scope(stale: set[Cell]) -> Any:
    """The item ids of the stale station-days (index ix_item_station_captured)."""
    ranges = []
    for sid, day in sorted(stale):
        start = _day_start(day)
        ranges.append(
            and_(
                _item.c.station_id == sid,
                _item.c.captured_at >= start,
                _item.c.captured_at < start + timedelta(days=1),
            )
        )
    return select(_item.c.id).where(or_(*ranges))


def _compute(
    conn: Connection, stale: set[Cell] | None, reached: Mapping[str, int], ok: str
) -> dict[Cell, dict[str, list[list[Any]]]]:
    """Each stale station-day's aggregates recomputed whole (every day when `stale` is None), as
    of the ids `reached`."""
    if stale is not None and not stale:
        return {}
    scope = None if stale is None or len(stale) > MAX_SCOPED else _scope(stale)
    cells: dict[Cell, dict[str, list[list[Any]]]] = {
        c: {k: [] for k in LAYOUT} for c in (stale or ())
    }
    cells.update(_aggregate_cells(conn, scope, reached, ok))
    return cells


def _aggregate_cells(
    conn: Connection, scope: Any, upto: Mapping[str, int] | None, ok: str
) -> dict[Cell, dict[str, list[list[Any]]]]:
    """The aggregates of the items in `scope` (all when None) as they stood at `upto` (now when
    None), per station-day, as stored rows: keys, then sums."""
    per = ("station_id", "day")
    cells: dict[Cell, dict[str, list[list[Any]]]] = {}

    def add(kind: str, rows: Iterable[Mapping[str, Any]]) -> None:
        keys, sums = LAYOUT[kind]
        for r in rows:
            cell = (int(r["station_id"]), str(r["day"]))
            stored = cells.setdefault(cell, {k: [] for k in LAYOUT})
            stored[kind].append([r[k] for k in keys] + [r[k] for k in sums])

    with Q.materialized(conn, Q.ReportFilters(), scope, upto) as f:
        add("days", Q.day_rows(conn, f, ok=ok, per=("station_id",)))
        add("labels", Q.label_groups(conn, f, per=per))
        # Read one at a time: a whole record's are some 260,000 rows (bench/report_1m.py).
        scores = Q.iter_score_rows(conn, f, ok=ok, per=per)
        add("scores", ({**r, "bin": round(r["score"] * Q.SCORE_BINS)} for r in scores))
        add("inspectors", Q.inspector_hour_rows(conn, f, per=per))
    add("stages", ST.stage_rows(conn, ok, per=per, scope=scope, upto=upto))
    return cells


def _catch_up(
    conn: Connection, mark: Mapping[str, int], reached: Mapping[str, int], ok: str
) -> dict[Cell, dict[str, list[list[Any]]]]:
    """The station-days that records newer than the mark changed, brought up to date: for each
    item they touch, its line as it stood at the mark is taken out of the stored sums and its
    line as of the ids reached now is put in (the records are append-only: the frame at the mark is the frame of the
    rows up to it). A day whose sums would go negative (summaries not what the mark says) is
    recomputed whole instead."""
    items = touched_items(conn, mark)
    if not items:
        return {}
    if len(items) > MAX_DELTA:
        return _compute(conn, _stale_cells(conn, mark), reached, ok)
    with id_table(conn, items) as scope:
        plus = _aggregate_cells(conn, scope, reached, ok)
        minus = _aggregate_cells(conn, scope, mark, ok)
    touched = set(plus) | set(minus)
    stored = _stored(conn, touched)
    out: dict[Cell, dict[str, list[list[Any]]]] = {}
    broken: set[Cell] = set()
    for cell in touched:
        kinds = {}
        for kind in LAYOUT:
            rows = _apply(
                kind,
                stored.get(cell, {}).get(kind, []),
                plus.get(cell, {}).get(kind, []),
                minus.get(cell, {}).get(kind, []),
            )
            if rows is None:
                broken.add(cell)
                break
            kinds[kind] = rows
        else:
            out[cell] = kinds
    if broken:
        log.warning("report summaries of %d days did not add up: recomputed", len(broken))
        out.update(_compute(conn, broken, reached, ok))
    return out


def _apply(
    kind: str, stored: list[list[Any]], plus: list[list[Any]], minus: list[list[Any]]
) -> list[list[Any]] | None:
    """stored + plus - minus, row by row (keyed by the kind's keys); rows whose count falls to
    zero go. None when a row would be taken from nothing or a count would go negative."""
    width = len(LAYOUT[kind][0])
    extremes = EXTREMES[kind]
    acc = {tuple(r[:width]): list(r[width:]) for r in stored}
    for r in plus:
        _add(acc, r, width, extremes)
    for r in minus:
        left = acc.get(tuple(r[:width]))
        if left is None:
            return None
        for i, v in enumerate(r[width:]):
            if i not in extremes:
                left[i] -= v
    out = []
    for key, sums in acc.items():
        counts = [v for v in sums if not isinstance(v, float)]
        if min(counts) < 0:
            return None
        if sums[0] > 0:  # the first sum counts the rows behind it (items, n, decisions)
            out.append([*key, *sums])
        elif any(counts):
            return None
    return out


def _stored(conn: Connection, cells: set[Cell]) -> dict[Cell, dict[str, list[list[Any]]]]:
    out: dict[Cell, dict[str, list[list[Any]]]] = {}
    if not cells:
        return out
    days = sorted({day for _, day in cells})
    q = select(_summary.c.station_id, _summary.c.day, _summary.c.kind, _summary.c.rows).where(
        _summary.c.day.in_(days)
    )
    for sid, day, kind, rows in conn.execute(q):
        cell = (int(sid), str(day))
        if cell in cells:
            out.setdefault(cell, {})[str(kind)] = rows
    return out


@contextmanager
def id_table(conn: Connection, ids: Sequence[int]) -> Iterator[Any]:
    """The ids in a temporary table, as a select for review.query.frame's `scope`."""
    table = Table(
        f"summary_items_{uuid.uuid4().hex[:12]}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        prefixes=["TEMPORARY"],
    )
    table.create(conn)
    try:
        if ids:
            conn.execute(insert(table), [{"id": i} for i in ids])
        yield select(table.c.id)
    finally:
        table.drop(conn)


# --------------------------------------------------------------------------- merging


def _sorting(key: Sequence[Any]) -> tuple[Any, ...]:
    """SQL's order of a GROUP BY key: NULL first."""
    return tuple((v is not None, v) for v in key)


def _add(
    into: dict[tuple[Any, ...], list[Any]],
    row: Sequence[Any],
    width: int,
    extremes: Mapping[int, Callable[[Any, Any], Any]],
) -> None:
    """A stored row (keys, then sums) added into `into`, keyed by its first `width` fields: each
    sum added, or kept as the smaller or larger where `extremes` says so."""
    key = tuple(row[:width])
    have = into.get(key)
    if have is None:
        into[key] = list(row[width:])
        return
    for i, v in enumerate(row[width:]):
        have[i] = extremes[i](have[i], v) if i in extremes else have[i] + v


def _totals(kind: str, cells: Iterable[list[list[Any]]]) -> dict[tuple[Any, ...], list[Any]]:
    """One kind's stored rows of several cells added up by key, in SQL's GROUP BY order."""
    if kind == "scores":
        return _score_totals(cells)
    return _row_by_row(kind, cells)


def _row_by_row(kind: str, cells: Iterable[list[list[Any]]]) -> dict[tuple[Any, ...], list[Any]]:
    width = len(LAYOUT[kind][0])
    into: dict[tuple[Any, ...], list[Any]] = {}
    for rows in cells:
        for row in rows:
            _add(into, row, width, EXTREMES[kind])
    return dict(sorted(into.items(), key=lambda kv: _sorting(kv[0])))


def _as_dicts(kind: str, totals: Mapping[tuple[Any, ...], list[Any]]) -> list[dict[str, Any]]:
    keys, sums = LAYOUT[kind]
    return [
        {**dict(zip(keys, k, strict=True)), **dict(zip(sums, v, strict=True))}
        for k, v in totals.items()
    ]


def _score_totals(cells: Iterable[list[list[Any]]]) -> dict[tuple[Any, ...], list[Any]]:
    """The score rows' totals, in numpy: about 86,000 rows per station on the 1M-decision bench
    file, whose addition row by row took 0.3 s of a 1.4 s report. np.bincount adds each key's
    values in row order, as _row_by_row does, so the float sums come out the same bits; the
    counts are exact in float64 (below 2**53)."""
    rows = [row for rows in cells for row in rows]
    if not rows:
        return {}
    a = np.asarray(rows, dtype=np.float64)
    key = a[:, 0].astype(np.int64) * 2 + a[:, 1].astype(np.int64)  # (bin, uniform 0/1)
    keys, slot = np.unique(key, return_inverse=True)
    sums = [np.bincount(slot, weights=a[:, 2 + i], minlength=len(keys)) for i in range(4)]
    score_sum = np.bincount(slot, weights=a[:, 6], minlength=len(keys))
    return {
        (int(k) // 2, int(k) % 2): [*(int(s[j]) for s in sums), float(score_sum[j])]
        for j, k in enumerate(keys)
    }


def _merge(cells: Iterable[Mapping[str, list[list[Any]]]]) -> Parts:
    """The report's aggregates over these cells (the stages apart: _station_stages)."""
    cells = list(cells)
    out = {
        kind: _as_dicts(kind, _totals(kind, [c[kind] for c in cells if kind in c]))
        for kind in LAYOUT
        if kind != "stages"
    }
    for r in out["scores"]:
        r["score"] = r.pop("bin") / Q.SCORE_BINS
        r["uniform"] = bool(r["uniform"])
        r["score_sum"] = float(r["score_sum"])
    for r in out["labels"]:
        for k in LABEL_FLAGS:
            r[k] = bool(r[k])
    for r in out["inspectors"]:
        r["decision_ms_sum"] = float(r["decision_ms_sum"])
    return Parts(
        days=out["days"], groups=out["labels"], scores=out["scores"], hours=out["inspectors"]
    )


# --------------------------------------------------------------------------- disagreements


def disagreements(
    conn: Connection, filters: Q.ReportFilters, days: Sequence[Mapping[str, Any]], limit: int
) -> list[dict[str, Any]]:
    """The latest `limit` disagreements, read newest first (review.query.latest_disagreements)
    back to the day from which the day rows (paired - agree) say there are enough, no further."""
    need, since = limit, None
    for d in reversed(days):
        found = int(d["paired"]) - int(d["agree"])
        if found:
            since = str(d["day"])
            need -= found
            if need <= 0:
                break
    if since is None:
        return []
    # `days` are the report's days only, so this floor is never before the report's --since.
    floor = _day_start(since)
    return Q.latest_disagreements(conn, dataclasses.replace(filters, since=floor), limit)


# --------------------------------------------------------------------------- writing back


def save(conn: Connection, refresh: Refresh) -> bool:
    """Store what a report recomputed, in one transaction, unless another report got there
    first (its mark moved): the next report then refreshes from that one. False when nothing
    was stored (nothing to store, a race lost, or a database that cannot be written here)."""
    if not refresh.cells and refresh.read == refresh.reached and not refresh.full:
        return False
    try:
        with conn.begin():
            # The write lock before the mark is read: the check and the writes are one step, or
            # a report could store sums of another mark than the one it leaves (the next catch-up
            # would then take out lines that were never put in).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            if _read_mark(conn) != refresh.read:
                return False
            if refresh.full:
                conn.execute(delete(_summary))
            else:
                for sid, day in refresh.cells:
                    conn.execute(
                        delete(_summary).where(_summary.c.station_id == sid, _summary.c.day == day)
                    )
            rows = [
                {"station_id": sid, "day": day, "kind": kind, "rows": stored}
                for (sid, day), kinds in refresh.cells.items()
                for kind, stored in kinds.items()
            ]
            if rows:
                conn.execute(insert(_summary), rows)
            values: dict[str, Any] = {col: refresh.reached[t] for t, col in MARKED.items()}
            values.update(version=VERSION, built_at=utcnow())
            done = conn.execute(update(_mark).where(_mark.c.id == 1).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(_mark).values(id=1, **values))
        return True
    except SQLAlchemyError as e:  # a read-only copy, a lock held too long: next time
        log.warning("report summaries not saved (%s): the next report recomputes them", e)
        return False


# --------------------------------------------------------------------------- kept up to date


def refresh(engine: Engine, ok: str) -> bool:
    """Bring the stored summaries up to date without making a report (what a report would do
    first). True when something was stored; False when nothing was new, another writer got there
    first, or the database is not one summaries are kept for."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as conn:
        _snapshot(conn)
        read = _read_mark(conn)
        reached = current_ids(conn)
        if read == reached:
            return False
        fresh = _bring_up(conn, read, reached, ok)
        conn.rollback()
        return save(conn, Refresh(read=read, reached=reached, full=read is None, cells=fresh))


class Keeper:
    """Refreshes the summaries from a thread of its own every `every_s` seconds, so that the
    report that follows a long shift (or a month without one) costs seconds, not a rebuild.
    A refresh that fails is logged and tried again at the next turn."""

    def __init__(self, engine: Engine, ok: str, every_s: float) -> None:
        self.engine, self.ok, self.every_s = engine, ok, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshed = 0  # refreshes that stored something

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="report-summaries", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # below the pipeline where allowed
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not self._stop.wait(self.every_s):
            try:
                self.refreshed += refresh(self.engine, self.ok)
            except Exception as e:  # the station goes on; a report catches up by itself
                log.warning("could not refresh the report summaries: %s", e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30.0)
            self._thread = None
