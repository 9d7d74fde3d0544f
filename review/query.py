"""The SQL behind reports and gates: one filtered per-item frame, aggregated by GROUP BY.

Nothing here loops over item rows in Python (except `iter_item_rows`, which streams the CSV):
every figure is a GROUP BY over the frame, so a report over millions of decisions moves a few
hundred aggregate rows from the database, whatever its size. The same SQL runs on SQLite and
PostgreSQL.

Definitions (the report states them too):
- effective human decision: the latest (highest id) decision of the item that no other decision
  supersedes (the undo chain).
- model label: the latest prediction with a label of the champion slot, or of the model version
  named by the filter (any slot: a challenger is judged on its shadow predictions).
- paired: both of the above exist. Level: the level on the item's latest disposition.
- evidence: paired, suggestion not shown, and taken in shadow level or as a blind check, an audit
  or a golden sample. Everything else is reported but is not evidence.
- uniform: evidence that is not an audit (shadow, blind checks, golden samples). These are drawn
  from the whole stream; audits are drawn only from the items the model decided itself (all of high
  confidence), so pooling them with the rest would overstate coverage and understate risk. Rates
  over the stream (agreement, kappa, escape / miss / false-reject, risk/coverage, the selective
  threshold, calibration) come from uniform items only; audits feed only the audited-escape check.
- reference label: the latest adjudication where one exists, else the human label.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Enum,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    extract,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.selectable import FromClause, Select, Subquery

from db.models import (
    Adjudication,
    Disposition,
    HumanDecision,
    Item,
    Level,
    LevelChange,
    ModelVersion,
    Operator,
    Prediction,
    Slot,
    Station,
)
from review.errors import FilterError
from review.gates import parse_level
from review.labels import reference_label_sql

SCORE_BINS = 10_000  # calibrated confidence is floored to 1e-4 for the risk/coverage histogram

_item = Item.__table__  # type: ignore[attr-defined]
_station = Station.__table__  # type: ignore[attr-defined]
_hd = HumanDecision.__table__  # type: ignore[attr-defined]
_op = Operator.__table__  # type: ignore[attr-defined]
_pred = Prediction.__table__  # type: ignore[attr-defined]
_mv = ModelVersion.__table__  # type: ignore[attr-defined]
_disp = Disposition.__table__  # type: ignore[attr-defined]
_adj = Adjudication.__table__  # type: ignore[attr-defined]
_lc = LevelChange.__table__  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- filters


def _utc(dt: datetime) -> datetime:
    """Timestamps are stored as aware UTC; a naive one given by a user is taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.utcoffset() is None else dt.astimezone(UTC)


def _parse_when(text: str | datetime | date | None, *, end: bool) -> datetime | None:
    if text is None or text == "":
        return None
    if isinstance(text, datetime):
        return _utc(text)
    if isinstance(text, date):
        day = text
    else:
        s = str(text).strip()
        try:
            if len(s) == 10:
                day = date.fromisoformat(s)
            else:
                return _utc(datetime.fromisoformat(s.replace("Z", "+00:00")))
        except ValueError:
            raise FilterError(
                f"{'--until' if end else '--since'} {s!r} is not a date: expected YYYY-MM-DD or "
                "YYYY-MM-DDTHH:MM[:SS] (UTC unless an offset is given)"
            ) from None
    # A bare date means the whole day (UTC): since its start, until its end.
    return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class ReportFilters:
    """What to report on. `since` is inclusive, `until` exclusive (a bare date includes that day)."""

    station: str | None = None
    inspector: str | None = None
    model_version: str | None = None  # "name:version", "version" or "name"
    level: Level | None = None
    since: datetime | None = None
    until: datetime | None = None
    evidence_only: bool = False

    @classmethod
    def parse(
        cls,
        *,
        station: str | None = None,
        inspector: str | None = None,
        model_version: str | None = None,
        level: str | None = None,
        since: str | datetime | date | None = None,
        until: str | datetime | date | None = None,
        evidence_only: bool = False,
    ) -> ReportFilters:
        s, u = _parse_when(since, end=False), _parse_when(until, end=True)
        if s is not None and u is not None and s >= u:
            raise FilterError(f"--since {s.isoformat()} is not before --until {u.isoformat()}")
        return cls(
            station=station or None,
            inspector=inspector or None,
            model_version=model_version or None,
            level=parse_level(level) if level else None,
            since=s,
            until=u,
            evidence_only=evidence_only,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "station": self.station,
            "inspector": self.inspector,
            "model_version": self.model_version,
            "level": self.level.value if self.level else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "evidence_only": self.evidence_only,
        }


def resolve_model_versions(conn: Connection, spec: str) -> list[int]:
    """Ids of the model versions that `spec` names ("name:version", "version" or "name")."""
    name, _, version = spec.partition(":")
    if version:
        cond = and_(_mv.c.name == name, _mv.c.version == version)
    else:
        cond = or_(_mv.c.version == spec, _mv.c.name == spec)
    return [int(r[0]) for r in conn.execute(select(_mv.c.id).where(cond))]


def unmatched_filters(conn: Connection, filters: ReportFilters) -> list[str]:
    """Messages for filters that name something the database does not hold."""
    out = []
    if (
        filters.station
        and conn.execute(select(_station.c.id).where(_station.c.name == filters.station)).first()
        is None
    ):
        out.append(f"no station is named {filters.station!r}")
    if (
        filters.inspector
        and conn.execute(select(_op.c.id).where(_op.c.name == filters.inspector)).first() is None
    ):
        out.append(f"no operator is named {filters.inspector!r}")
    if filters.model_version and not resolve_model_versions(conn, filters.model_version):
        out.append(f"no model version matches {filters.model_version!r} (expected NAME:VERSION)")
    return out


# --------------------------------------------------------------------------- the frame


def looked_up(conn: Connection) -> bool:
    """Whether join_latest looks each item's row up (SQLite) or groups the table (PostgreSQL).
    Both give the same rows (tested on SQLite, with this patched)."""
    return conn.dialect.name == "sqlite"


def join_latest(
    conn: Connection,
    joined: Any,
    table: Any,
    row: Any,
    conds: Sequence[ColumnElement[bool]],
    pick: Any = func.max,
) -> Any:
    """`joined` LEFT JOIN `row` (an alias of `table`): each item's latest row of `table` that
    meets `conds` (the records are append-only: the latest row is the one in force), or with
    `pick=func.min` its first.

    SQLite looks it up per item, on the (item_id, id) index: a frame then costs what its items
    cost. Grouping the whole table by item first (what PostgreSQL still does, where a hash
    aggregate is cheap) made one station's evidence frame of 153,000 items out of 1,010,000 take
    3.9-4.5 s against 1.4-1.6 s looked up, and the whole record's 6.3 s against 3.0 s (the same
    rows, bench/report_1m.py's database)."""
    if looked_up(conn):
        latest = (
            select(pick(table.c.id))
            .where(table.c.item_id == _item.c.id, *conds)
            .correlate(_item)
            .scalar_subquery()
        )
        return joined.outerjoin(row, row.c.id == latest)
    q = select(table.c.item_id.label("item_id"), pick(table.c.id).label("id"))
    eff = q.where(*conds).group_by(table.c.item_id).subquery(f"eff_{row.name}")
    return joined.outerjoin(eff, eff.c.item_id == _item.c.id).outerjoin(row, row.c.id == eff.c.id)


def _utc_ts(conn: Connection, col: Any) -> Any:
    """Timestamps as UTC wall time (SQLite stores UTC already; PostgreSQL converts by session)."""
    if conn.dialect.name == "postgresql":
        return func.timezone("UTC", col)
    return col


def within(
    table: Any, scope: Select[Any] | None, upto: Mapping[str, int] | None
) -> list[ColumnElement[bool]]:
    """Conditions that confine `table`'s rows to the items `scope` selects (all when None) and
    to ids up to `upto`'s for that table (frame's `scope` and `upto`): the item table by its own
    id, the others by their item_id."""
    item_id = table.c.id if table.name == _item.name else table.c.item_id
    conds = [] if scope is None else [item_id.in_(scope)]
    if upto is not None:
        conds.append(table.c.id <= upto[table.name])
    return conds


def utc_day(conn: Connection, col: Any) -> ColumnElement[Any]:
    return cast(func.date(_utc_ts(conn, col)), String(10))


def _floor_bin(conn: Connection, score: ColumnElement[Any]) -> ColumnElement[Any]:
    scaled = score * SCORE_BINS
    if conn.dialect.name == "sqlite":
        # SQLite's CAST truncates, which is floor for the non-negative scores we have.
        return cast(scaled, Integer)
    return cast(func.floor(scaled), Integer)


def frame(
    conn: Connection,
    filters: ReportFilters,
    *,
    columns: Sequence[str] | None = None,
    scope: Select[Any] | None = None,
    upto: Mapping[str, int] | None = None,
) -> Subquery:
    """One row per item in the filtered selection, with everything the report needs
    (or only `columns`).

    For review/summary.py: `scope`, a select of item ids the frame is confined to (the
    latest-row lookups too, so a few items cost a few items, not the whole history); `upto`,
    the highest id of each table (item, prediction, human_decision, disposition, adjudication)
    to see: the records are append-only, so that is the frame as it stood when those were the
    newest rows."""

    superseded = select(_hd.c.supersedes_id).where(
        _hd.c.supersedes_id.is_not(None), *within(_hd, scope, upto)
    )
    if filters.model_version:
        ids = resolve_model_versions(conn, filters.model_version)
        pred_cond = _pred.c.model_version_id.in_(ids) if ids else false()
    else:
        pred_cond = _pred.c.slot == Slot.champion.name

    hd = _hd.alias("hd")
    p = _pred.alias("p")
    d = _disp.alias("d")
    a = _adj.alias("a")
    joined = _item.join(_station, _station.c.id == _item.c.station_id)
    joined = join_latest(
        conn, joined, _hd, hd, [_hd.c.id.not_in(superseded), *within(_hd, scope, upto)]
    )
    joined = joined.outerjoin(_op, _op.c.id == hd.c.operator_id)
    joined = join_latest(
        conn, joined, _pred, p, [_pred.c.label.is_not(None), pred_cond, *within(_pred, scope, upto)]
    )
    joined = join_latest(conn, joined, _disp, d, within(_disp, scope, upto))
    joined = join_latest(conn, joined, _adj, a, within(_adj, scope, upto))
    if columns is None or "model_version" in columns:
        joined = joined.outerjoin(_mv, _mv.c.id == p.c.model_version_id)
    paired = and_(hd.c.id.is_not(None), p.c.label.is_not(None))
    unbiased = and_(
        hd.c.suggestion_shown == false(),
        or_(
            d.c.level == Level.shadow.name,
            hd.c.blind == true(),
            hd.c.audit == true(),
            hd.c.golden == true(),
            _item.c.golden == true(),
        ),
    )
    evidence = and_(paired, unbiased)
    golden = or_(hd.c.golden == true(), _item.c.golden == true())
    # The line's own stream, sampled uniformly: shadow items and blind checks. Golden samples
    # (known-truth stills) measure inspectors only, never the line's estimates.
    uniform = and_(
        paired,
        hd.c.suggestion_shown == false(),
        hd.c.audit == false(),
        ~golden,
        or_(d.c.level == Level.shadow.name, hd.c.blind == true()),
    )
    reference = reference_label_sql(a.c.label, hd.c.label)
    score = case(
        (p.c.confidence.is_not(None), p.c.confidence),
        (p.c.p_defect >= 0.5, p.c.p_defect),
        (p.c.p_defect.is_not(None), 1.0 - p.c.p_defect),
        else_=None,
    )
    cols = [
        _item.c.id.label("item_id"),
        _item.c.captured_at.label("captured_at"),
        _station.c.name.label("station"),
        # Not in the CSV: what the daily summaries are keyed by (review/summary.py)
        _item.c.station_id.label("station_id"),
        _op.c.name.label("inspector"),
        hd.c.label.label("human_label"),
        p.c.label.label("model_label"),
        p.c.confidence.label("model_confidence"),
        p.c.p_defect.label("p_defect"),
        d.c.level.label("level"),
        # Not in the CSV: what a decision rule is measured on (review.rules)
        p.c.probabilities.label("probabilities"),
        hd.c.suggestion_shown.label("shown"),
        case((evidence, 1), else_=0).label("evidence"),
        case((_mv.c.id.is_not(None), _mv.c.name + literal(":") + _mv.c.version), else_=None).label(
            "model_version"
        ),
        d.c.final_label.label("final_label"),
        d.c.decided_by.label("decided_by"),
        a.c.label.label("adjudicated_label"),
        case((hd.c.audit == true(), 1), else_=0).label("audit"),
        # Not in the CSV: why the adjudication in force was made (db.models.ChosenFor)
        a.c.chosen_for.label("adjudicated_for"),
        # Not in the CSV, used by the aggregates:
        case((paired, 1), else_=0).label("paired"),
        case((uniform, 1), else_=0).label("uniform"),
        case((golden, 1), else_=0).label("golden"),
        reference.label("reference_label"),
        hd.c.blind.label("blind"),
        hd.c.decision_ms.label("decision_ms"),
        hd.c.decided_at.label("decided_at"),
        _item.c.ground_truth.label("ground_truth"),
        _item.c.image_path.label("image_path"),
        # Not in the CSV: what a training export needs (station/dataset.py)
        _item.c.image_sha256.label("image_sha256"),
        _item.c.guard_passed.label("guard_passed"),
        score.label("score"),
        _floor_bin(conn, score).label("score_bin"),
        utc_day(conn, _item.c.captured_at).label("day"),
        cast(extract("hour", _utc_ts(conn, hd.c.decided_at)), Integer).label("hour"),
    ]
    if columns is not None:
        cols = [c for c in cols if c.name in columns]
    q = select(*cols).select_from(joined)
    conds = within(_item, scope, upto)
    if filters.station:
        conds.append(_station.c.name == filters.station)
    if filters.inspector:
        conds.append(_op.c.name == filters.inspector)
    if filters.model_version:
        conds.append(p.c.id.is_not(None))
    if filters.level is not None:
        conds.append(d.c.level == filters.level.name)
    if filters.since is not None:
        conds.append(_item.c.captured_at >= filters.since)
    if filters.until is not None:
        conds.append(_item.c.captured_at < filters.until)
    if filters.evidence_only:
        conds.append(evidence)
    if conds:
        q = q.where(*conds)
    return q.subquery("f")


AGGREGATE_COLUMNS = [
    "item_id",
    "station_id",
    "day",
    "hour",
    "station",
    "inspector",
    "human_label",
    "model_label",
    "model_confidence",
    "shown",
    "evidence",
    "uniform",
    "adjudicated_label",
    "paired",
    "reference_label",
    "blind",
    "audit",
    "golden",
    "decision_ms",
    "ground_truth",
    "score",
    "score_bin",
]


@contextmanager
def materialized(
    conn: Connection,
    filters: ReportFilters,
    scope: Select[Any] | None = None,
    upto: Mapping[str, int] | None = None,
) -> Iterator[Table]:
    """The frame computed once into a temporary table, dropped on exit.

    Every aggregate of a report then scans one narrow table instead of re-running the joins; the
    table lives in the connection's temporary store (on disk for SQLite, a temp table for
    PostgreSQL), so memory stays bounded and the inspectors' writes are never blocked.
    """
    f = frame(conn, filters, columns=AGGREGATE_COLUMNS, scope=scope, upto=upto)
    name = f"review_frame_{uuid.uuid4().hex[:12]}"
    cols = [Column(c.name, String(64) if isinstance(c.type, Enum) else c.type) for c in f.c]
    table = Table(name, MetaData(), *cols, prefixes=["TEMPORARY"])
    table.create(conn)
    try:
        src = select(*(cast(c, String(64)) if isinstance(c.type, Enum) else c for c in f.c))
        conn.execute(insert(table).from_select([c.name for c in f.c], src))
        yield table
    finally:
        table.drop(conn)


CSV_COLUMNS = [
    "item_id",
    "captured_at",
    "station",
    "inspector",
    "human_label",
    "model_label",
    "model_confidence",
    "p_defect",
    "level",
    "shown",
    "evidence",
    "model_version",
    "final_label",
    "decided_by",
    "adjudicated_label",
    "audit",  # with `evidence` and `golden` it tells the uniform sample apart
    "golden",  # golden samples measure inspectors only, never the line's estimates
]


# --------------------------------------------------------------------------- aggregates


def _is_def(col: Any, ok: str) -> ColumnElement[bool]:
    return and_(col.is_not(None), col != ok)


def _sum(cond: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _per(f: FromClause, per: Sequence[str]) -> list[Any]:
    """Extra grouping columns of the frame (review/summary.py groups by station_id and day)."""
    return [f.c[name] for name in per]


def label_groups(
    conn: Connection, f: FromClause, *, per: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Paired items by (human, model, adjudicated, ground truth, evidence, uniform, shown, blind,
    audit).

    A few hundred rows at most, whatever the number of items: matrices, pass/fail, rates,
    McNemar, automation bias, per-class counts and audit escapes are all sums over them.
    `per`: also grouped by these frame columns, named in each row.
    """
    keys = [
        *_per(f, per),
        f.c.human_label,
        f.c.model_label,
        f.c.adjudicated_label,
        f.c.ground_truth,
        f.c.evidence,
        f.c.uniform,
        f.c.shown,
        f.c.blind,
        f.c.audit,
    ]
    q = select(*keys, func.count()).where(f.c.paired == 1).group_by(*keys)
    names = [
        *per,
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
    out = []
    for r in conn.execute(q):
        d: dict[str, Any] = dict(zip(names, r[:-1], strict=True))
        for k in ("evidence", "uniform", "shown", "blind", "audit"):
            d[k] = bool(d[k])
        d["n"] = int(r[-1])
        out.append(d)
    return out


def score_rows(
    conn: Connection, f: FromClause, *, ok: str = "ok", per: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Paired items by (confidence floored to 1e-4, uniform): the risk/coverage histogram
    (items, model passes, escapes) and the reliability diagram (model == reference, sum of
    confidences)."""
    return list(iter_score_rows(conn, f, ok=ok, per=per))


def iter_score_rows(
    conn: Connection, f: FromClause, *, ok: str = "ok", per: Sequence[str] = ()
) -> Iterator[dict[str, Any]]:
    """score_rows one at a time (a whole record's, per station and day, are some 260,000 on the
    1M-decision bench file: read all at once they raised the first summary build's peak)."""
    model_pass = f.c.model_label == ok
    escape = and_(model_pass, _is_def(f.c.reference_label, ok))
    q = (
        select(
            f.c.score_bin,
            f.c.uniform,
            func.count(),
            _sum(model_pass),
            _sum(escape),
            _sum(f.c.model_label == f.c.reference_label),
            func.sum(f.c.score),
            *_per(f, per),
        )
        .where(f.c.paired == 1, f.c.score_bin.is_not(None))
        .group_by(*_per(f, per), f.c.score_bin, f.c.uniform)
    )
    for r in conn.execute(q):
        yield {
            **dict(zip(per, r[7:], strict=True)),
            "score": int(r[0]) / SCORE_BINS,
            "uniform": bool(r[1]),
            "n": int(r[2]),
            "model_pass": int(r[3]),
            "escapes": int(r[4]),
            "correct": int(r[5]),
            "score_sum": float(r[6]),
        }


INSPECTOR_SUMS = [
    "decisions",
    "paired",
    "agree_model",
    "adjudicated",
    "agree_adjudicated",
    "golden",
    "agree_golden",
    "timed",
    "decision_ms_sum",
    "shown",
    "agree_shown",
    "blind",
    "agree_blind",
    "evidence",
]


def inspector_hour_rows(
    conn: Connection, f: FromClause, *, per: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Per inspector and hour of day (UTC, of the decision): the sums behind agreement with the
    model / adjudication / golden truth, time to decide and automation bias. Summed over hours
    they give the inspector's totals; by hour, the trend through the shift."""
    paired = f.c.paired == 1
    agree = and_(paired, f.c.human_label == f.c.model_label)
    shown = and_(paired, f.c.shown == true())
    blind = and_(paired, f.c.blind == true())
    hour = f.c.hour
    q = (
        select(
            f.c.inspector,
            hour,
            func.count(),
            _sum(paired),
            _sum(agree),
            _sum(f.c.adjudicated_label.is_not(None)),
            _sum(f.c.adjudicated_label == f.c.human_label),
            _sum(and_(f.c.golden == 1, f.c.ground_truth.is_not(None))),
            _sum(and_(f.c.golden == 1, f.c.ground_truth == f.c.human_label)),
            func.count(f.c.decision_ms),
            func.coalesce(func.sum(f.c.decision_ms), 0.0),
            _sum(shown),
            _sum(and_(shown, f.c.human_label == f.c.model_label)),
            _sum(blind),
            _sum(and_(blind, f.c.human_label == f.c.model_label)),
            _sum(and_(paired, f.c.evidence == 1)),
            *_per(f, per),
        )
        .where(f.c.inspector.is_not(None))
        .group_by(*_per(f, per), f.c.inspector, hour)
        .order_by(f.c.inspector, hour)
    )
    out = []
    n = len(INSPECTOR_SUMS)
    for r in conn.execute(q):
        d: dict[str, Any] = dict(zip(per, r[2 + n :], strict=True))
        d.update(inspector=str(r[0]), hour=int(r[1] or 0))
        for k, v in zip(INSPECTOR_SUMS, r[2 : 2 + n], strict=True):
            d[k] = float(v or 0.0) if k == "decision_ms_sum" else int(v or 0)
        out.append(d)
    return out


def day_rows(
    conn: Connection, f: FromClause, *, ok: str = "ok", per: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Trend by day (UTC, of capture): items, paired, agreement, evidence, uniform evidence, model
    passes, escapes. Their sums are the report's counts; days with uniform evidence are the gate's
    "distinct days"."""
    day = f.c.day
    paired = f.c.paired == 1
    model_pass = and_(paired, f.c.model_label == ok)
    q = (
        select(
            day,
            func.count(),
            _sum(paired),
            _sum(and_(paired, f.c.human_label == f.c.model_label)),
            _sum(and_(paired, f.c.evidence == 1)),
            _sum(f.c.uniform == 1),
            _sum(model_pass),
            _sum(and_(model_pass, _is_def(f.c.reference_label, ok))),
            *_per(f, per),
        )
        .group_by(*_per(f, per), day)
        .order_by(day)
    )
    names = ["day", "items", "paired", "agree", "evidence", "uniform", "model_pass", "escapes"]
    out = []
    for r in conn.execute(q):
        d = dict(zip([*names, *per], r, strict=True))
        d["day"] = str(d["day"])
        for k in names[1:]:
            d[k] = int(d[k] or 0)
        out.append(d)
    return out


def disagreements(conn: Connection, f: FromClause, limit: int = 60) -> list[dict[str, Any]]:
    """The latest paired items where human and model differ (for the gallery)."""
    q = (
        select(
            f.c.item_id,
            _item.c.captured_at,
            f.c.station,
            f.c.inspector,
            f.c.human_label,
            f.c.model_label,
            f.c.model_confidence,
            f.c.adjudicated_label,
            f.c.evidence,
            _item.c.image_path,
        )
        .select_from(f.join(_item, _item.c.id == f.c.item_id))
        .where(f.c.paired == 1, f.c.human_label != f.c.model_label)
        .order_by(_item.c.captured_at.desc(), f.c.item_id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def latest_disagreements(
    conn: Connection, filters: ReportFilters, limit: int = 60
) -> list[dict[str, Any]]:
    """`disagreements` straight from the records: the items are read newest first along the
    capture-time index, each looked up, until `limit` disagreements are found, so the cost is
    that of the items back to the last one shown (bound it with `filters.since`). On one station
    of the 1M-decision bench file: 0.03-0.05 s, against 0.75 s for materialised windows."""
    f = frame(conn, filters, columns=[*_DISAGREEMENT, "paired"])
    q = (
        select(*(f.c[c] for c in _DISAGREEMENT))
        .where(f.c.paired == 1, f.c.human_label != f.c.model_label)
        .order_by(f.c.captured_at.desc(), f.c.item_id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


_DISAGREEMENT = [
    "item_id",
    "captured_at",
    "station",
    "inspector",
    "human_label",
    "model_label",
    "model_confidence",
    "adjudicated_label",
    "evidence",
    "image_path",
]


def iter_item_rows(
    conn: Connection, f: FromClause, *, batch: int = 2000
) -> Iterator[Sequence[Any]]:
    """The CSV rows, streamed from a server-side cursor in batches (bounded memory)."""
    q = select(*(f.c[name] for name in CSV_COLUMNS)).order_by(f.c.item_id)
    result = conn.execute(q.execution_options(stream_results=True, yield_per=batch))
    for part in result.partitions(batch):
        yield from part


# --------------------------------------------------------------------------- gate evidence


def current_level(conn: Connection, station: str) -> Level | None:
    q = (
        select(_lc.c.to_level)
        .select_from(_lc.join(_station, _station.c.id == _lc.c.station_id))
        .where(_station.c.name == station)
        .order_by(_lc.c.id.desc())
        .limit(1)
    )
    row = conn.execute(q).first()
    if row is None:
        return None
    v = row[0]
    return v if isinstance(v, Level) else Level[str(v)]
