"""A station's gate evidence, kept between gate checks (SQLite).

Every gate reads one frame: the station's items that are evidence for its champion version
(review.report.gate_evidence), each with its decision in force and that version's answer,
disposition and adjudication, looked up per item. On the 1M-decision bench file that took
1.9 s of a station's 5 s report, every report and every `station gate check`, growing with the
station's history. The columns the gates read are kept in `gate_evidence_row`, as of the ids in
the station's `gate_evidence_mark`, for one basis per station (the champion's model version ids
and this module's VERSION; a new champion rebuilds them):

- `refresh` brings them up to date on a connection of its own: the items that records newer
  than the mark touch (review.summary.touched_items: a new item, answer, decision or its
  correction, disposition, adjudication) are computed again by review.query.frame as of the ids
  reached, then replace their kept rows in one short write transaction, unless another writer
  moved the mark first. The records are append-only, so an item no newer record touches has
  the row it had at the mark.
- `evidence_frame` gives the gates a relation to query: the kept rows of the items not touched
  since the mark, plus the touched ones computed now, all read in one snapshot (the caller's
  transaction, a report's, or one of its own), so its numbers are the frame's at that state.

Only where that holds: SQLite (ids are given in commit order), a basis the mark names, ids not
below the mark (a file restored from an older copy rebuilds), every kept row there (the mark
counts them). Anything else takes review.query.materialized as before. A file opened for
reading only, or one that refused a write once, is not refreshed (that would compute its whole
history first): it reads kept rows where they are current, else computes the frame. Derived
data, never authority: deleting the rows only makes the next gate check slower.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    Enum,
    Integer,
    MetaData,
    String,
    Table,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.selectable import FromClause, Select

from db.models import GateEvidenceMark, GateEvidenceRow, Station, utcnow
from review import query as Q
from review import summary

log = logging.getLogger(__name__)

#: Bumped whenever what a kept row holds changes: rows of another version are rebuilt.
VERSION = 1
#: Past this many items touched since the mark, the gates read the frame whole instead.
MAX_TOUCHED = 200_000

_row = GateEvidenceRow.__table__  # type: ignore[attr-defined]
_mark = GateEvidenceMark.__table__  # type: ignore[attr-defined]
_station = Station.__table__  # type: ignore[attr-defined]
#: What the gates read of their frame (review.report._evidence_from): label_groups,
#: score_rows and the uniform sample's columns.
KEPT = [c.name for c in _row.c if c.name != "station_id"]


def basis_of(conn: Connection, filters: Q.ReportFilters) -> tuple[int, str] | None:
    """(station id, basis) when the evidence these filters ask for can be kept: one station's
    evidence of one model version spec on SQLite, nothing else filtered; else None."""
    if conn.dialect.name != "sqlite" or not filters.station or not filters.model_version:
        return None
    if not filters.evidence_only or filters.inspector or filters.level:
        return None
    if filters.since is not None or filters.until is not None:
        return None
    station_id = conn.execute(select(_station.c.id).where(_station.c.name == filters.station))
    found = station_id.scalar()
    if found is None:
        return None
    ids = Q.resolve_model_versions(conn, filters.model_version)
    if not ids:
        return None
    return int(found), f"v{VERSION} versions={','.join(str(i) for i in sorted(ids))}"


def _read_mark(conn: Connection, station_id: int, basis: str) -> dict[str, int] | None:
    """The station's mark when it is of this basis and its rows are all there (someone may have
    deleted the rows and not the mark: they are then built again, not read as no evidence)."""
    row = conn.execute(select(_mark).where(_mark.c.station_id == station_id)).mappings().first()
    if row is None or row["basis"] != basis or row["rows"] != _count(conn, station_id):
        return None
    return {t: int(row[col]) for t, col in summary.MARKED.items()}


def _count(conn: Connection, station_id: int) -> int:
    q = select(func.count()).select_from(_row).where(_row.c.station_id == station_id)
    return int(conn.execute(q).scalar_one())


def _stored_mark(conn: Connection, station_id: int) -> tuple[Any, ...] | None:
    row = conn.execute(
        select(_mark)
        .where(_mark.c.station_id == station_id)
        .with_only_columns(_mark.c.basis, *(_mark.c[col] for col in summary.MARKED.values()))
    ).first()
    return None if row is None else tuple(row)


def _usable(mark: Mapping[str, int] | None, reached: Mapping[str, int]) -> bool:
    """A mark the ids now have not fallen below (a file restored from an older copy has)."""
    return mark is not None and all(reached[t] >= mark[t] for t in summary.MARKED)


def _in_transaction(conn: Connection) -> bool:
    dbapi = conn.connection.dbapi_connection
    return bool(dbapi is not None and dbapi.in_transaction)


# --------------------------------------------------------------------------- temporary tables


@contextmanager
def _temp(conn: Connection, columns: Sequence[Column[Any]]) -> Iterator[Table]:
    table = Table(f"gate_ev_{uuid.uuid4().hex[:12]}", MetaData(), *columns, prefixes=["TEMPORARY"])
    table.create(conn)
    try:
        yield table
    finally:
        table.drop(conn)


def _frame_into(
    conn: Connection,
    table: Table,
    filters: Q.ReportFilters,
    scope: Select[Any] | None,
    upto: Mapping[str, int] | None,
) -> None:
    f = Q.frame(conn, filters, columns=KEPT, scope=scope, upto=upto)
    src = select(
        *(cast(f.c[n], String(64)) if isinstance(f.c[n].type, Enum) else f.c[n] for n in KEPT)
    )
    conn.execute(insert(table).from_select(KEPT, src))


def _like_kept() -> list[Column[Any]]:
    return [Column(c.name, c.type) for c in _row.c if c.name != "station_id"]


# --------------------------------------------------------------------------- keeping them


def refresh(conn: Connection, filters: Q.ReportFilters) -> bool:
    """Bring the kept evidence of `filters` (see basis_of) up to date, on a connection of the
    same engine: the caller's transaction, if any, is left alone. True when rows were stored;
    False when nothing was new, the evidence is not one kept, another writer got there first,
    or the database cannot be written here (the gates then compute what they need)."""
    basis = basis_of(conn, filters)
    if basis is None or not _writable(conn.engine):
        return False
    station_id, key = basis
    try:
        with conn.engine.connect() as own:
            return _refresh(own, filters, station_id, key)
    except SQLAlchemyError as e:  # a lock held too long: next time
        if "readonly" in str(e).replace("read-only", "readonly"):
            _unwritable.add(conn.engine)  # not again: each try computed the whole history first
        log.warning("gate evidence of station %d not kept (%s): computed each time", station_id, e)
        return False


#: Engines whose file refused a write: their gate checks compute the evidence, once.
_unwritable: weakref.WeakSet[Engine] = weakref.WeakSet()


def _writable(engine: Engine) -> bool:
    """Not a file opened for reading only (db.engine.read_only_uri) or one that refused a write."""
    url = engine.url.render_as_string()
    return engine not in _unwritable and "mode=ro" not in url and "immutable=1" not in url


def _refresh(own: Connection, filters: Q.ReportFilters, station_id: int, basis: str) -> bool:
    read = _stored_mark(own, station_id)
    mark = _read_mark(own, station_id, basis)
    reached = summary.current_ids(own)
    if not _usable(mark, reached):
        mark = None
    if mark == reached:
        return False
    touched = summary.touched_items(own, mark) if mark is not None else []
    if len(touched) > MAX_TOUCHED:
        mark, touched = None, []
    with summary.id_table(own, touched) as scope, _temp(own, _like_kept()) as fresh:
        # Computed outside the write transaction (the temporary tables are the connection's
        # own), as of the ids reached: the station's writes wait only for the copy below.
        _frame_into(own, fresh, filters, scope if mark is not None else None, reached)
        own.commit()
        with own.begin():
            own.exec_driver_sql("BEGIN IMMEDIATE")
            if _stored_mark(own, station_id) != read:
                return False  # another refresh moved it: the next one goes on from there
            gone = delete(_row).where(_row.c.station_id == station_id)
            if mark is not None:
                gone = gone.where(_row.c.item_id.in_(scope))
            own.execute(gone)
            own.execute(
                insert(_row).from_select(
                    ["station_id", *KEPT],
                    select(
                        literal(station_id, Integer).label("station_id"),
                        *(fresh.c[n] for n in KEPT),
                    ),
                )
            )
            values: dict[str, Any] = {col: reached[t] for t, col in summary.MARKED.items()}
            values.update(basis=basis, rows=_count(own, station_id), built_at=utcnow())
            done = own.execute(
                update(_mark).where(_mark.c.station_id == station_id).values(**values)
            )
            if done.rowcount == 0:
                own.execute(insert(_mark).values(station_id=station_id, **values))
    return True


# --------------------------------------------------------------------------- reading them


@contextmanager
def evidence_frame(conn: Connection, filters: Q.ReportFilters) -> Iterator[FromClause]:
    """The frame the gates read (`filters`: a station's evidence of one model version), as of
    the caller's transaction: kept rows where they are up to date, the rest computed now. Outside
    a transaction the kept rows are brought up to date first. Falls back to
    review.query.materialized wherever rows are not kept."""
    basis = basis_of(conn, filters)
    began = False
    if basis is not None and not _in_transaction(conn):
        refresh(conn, filters)
        # One read snapshot for the mark, the touched items and the rows the gates read in
        # several statements, or a refresh committed between two of them would mix two states.
        conn.exec_driver_sql("BEGIN")
        began = True
    try:
        with _frame_for(conn, filters, basis) as f:
            yield f
    finally:
        if began:
            conn.exec_driver_sql("ROLLBACK")  # only read; the caller had no transaction open


@contextmanager
def _frame_for(
    conn: Connection, filters: Q.ReportFilters, basis: tuple[int, str] | None
) -> Iterator[FromClause]:
    mark = _read_mark(conn, *basis) if basis is not None else None
    touched = None
    if mark is not None and _usable(mark, summary.current_ids(conn)):
        touched = summary.touched_items(conn, mark)
    if basis is None or touched is None or len(touched) > MAX_TOUCHED:
        with Q.materialized(conn, filters) as f:
            yield f
        return
    kept = select(*(_row.c[n] for n in KEPT)).where(_row.c.station_id == basis[0])
    if not touched:
        yield kept.subquery("f")
        return
    with summary.id_table(conn, touched) as scope, _temp(conn, _like_kept()) as fresh:
        _frame_into(conn, fresh, filters, scope, None)
        rest = kept.where(_row.c.item_id.not_in(scope))
        yield union_all(rest, select(*(fresh.c[n] for n in KEPT))).subquery("f")
