"""What the review window shows and writes, without Qt: matrix cells, the items behind a cell,
adjudication, gate status and export.

The window (review/ui/) is a thin view over these functions, so everything it does is testable
headless. Reads go through the same filtered frame as the report (review.query.frame), so a cell
in the window and the same cell in an exported report count the same items.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Connection, Engine

from db.engine import session_scope
from db.models import (
    Adjudication,
    AdjudicationRequest,
    ChosenFor,
    HumanDecision,
    Item,
    Level,
    ModelVersion,
    Operator,
    Station,
)
from db.permissions import allowed, refusal
from db.repo import current_level, final_disposition, record_adjudication
from review import query as Q
from review import stats as S
from review.audits import AuditSPRT, demote_on_audits
from review.errors import AdjudicationRefused
from review.gates import GateRules
from review.heatmaps import ModelRef
from review.labels import LabelSet

#: Reason codes of an adjudication, with the key that picks each in the window and what it means.
REASON_CODES: dict[str, tuple[str, str]] = {
    # I (inspector), not H: H shows the heat-map, as at the station.
    "human_missed": ("I", "the inspector passed a defective item"),
    "model_missed": ("M", "the model passed a defective item"),
    "human_false_reject": ("F", "the inspector failed a good item (or named the wrong defect)"),
    "model_false_reject": ("R", "the model failed a good item (or named the wrong defect)"),
    "ambiguous": ("A", "the image does not settle it; label is the best judgement"),
    "bad_image": ("B", "blurred, dark or framed badly: the image is not fit to judge"),
    # A truth-sample item where both were right: the common case of a random draw.
    "confirmed": ("C", "human and model were both right: the label they gave"),
}

DEFAULT_ITEM_LIMIT = 200


# --------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class CellMatrix:
    """Paired items counted by (human label, model label); rows = human, columns = model."""

    labels: list[str]
    counts: list[list[int]]
    items: int = 0  # items matching the filters, paired or not
    paired: int = 0
    evidence: int = 0
    messages: list[str] = field(default_factory=list)
    awaiting: int = 0  # queued for adjudication (truth sample, challenges), not adjudicated yet
    awaiting_teach: int = 0  # of those, queued to teach the next model (`station teach`)

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.counts)

    @property
    def agreeing(self) -> int:
        return sum(self.counts[i][i] for i in range(len(self.labels)))

    def count(self, human: str, model: str) -> int:
        return self.counts[self.labels.index(human)][self.labels.index(model)]


def _empty_messages(conn: Connection, filters: Q.ReportFilters, n: dict[str, int]) -> list[str]:
    messages = Q.unmatched_filters(conn, filters)
    if n["items"] == 0:
        if any(filters.to_dict().values()):
            messages.append("no items match these filters: widen them (or clear them all)")
        else:
            messages.append(
                "the database holds no items yet: run a station (`station run`) or the "
                "simulated line (`station simulate`) first"
            )
    elif n["paired"] == 0:
        messages.append(
            f"{n['items']} items match, but none has both a human decision and a model label: "
            "nothing to compare (is the model running, in shadow at least?)"
        )
    return messages


def matrix_cells(
    conn: Connection,
    filters: Q.ReportFilters,
    *,
    labels: LabelSet,
) -> CellMatrix:
    """The agreement matrix of the filtered paired items (one GROUP BY), with why it may be empty."""
    f = Q.frame(conn, filters)
    h, m = f.c.human_label, f.c.model_label
    # One pass over the frame: the cells, and the totals the empty-matrix messages need.
    groups = conn.execute(
        select(
            h,
            m,
            func.count(),
            func.coalesce(func.sum(f.c.paired), 0),
            func.coalesce(
                func.sum(case((and_(f.c.paired == 1, f.c.evidence == 1), 1), else_=0)), 0
            ),
        ).group_by(h, m)
    ).all()
    n = {
        "items": sum(int(g[2]) for g in groups),
        "paired": sum(int(g[3]) for g in groups),
        "evidence": sum(int(g[4]) for g in groups),
    }
    rows = [(str(g[0]), str(g[1]), int(g[3])) for g in groups if int(g[3]) > 0]
    order, mat = S.matrix_from_counts(rows, list(labels.all), labels.ok)
    return CellMatrix(
        labels=order,
        counts=mat.tolist(),
        items=n["items"],
        paired=n["paired"],
        evidence=n["evidence"],
        messages=_empty_messages(conn, filters, n),
        awaiting=awaiting_adjudication(conn, filters),
        awaiting_teach=awaiting_adjudication(conn, filters, teach_only=True),
    )


# --------------------------------------------------------------------------- items


@dataclass(frozen=True)
class ItemRow:
    """One paired item as the gallery shows it."""

    item_id: int
    captured_at: datetime | None
    station: str
    inspector: str | None
    human_label: str | None
    model_label: str | None
    model_confidence: float | None
    p_defect: float | None
    level: str | None
    evidence: bool
    shown: bool
    blind: bool
    audit: bool
    model_version: str | None
    adjudicated_label: str | None
    final_label: str | None
    ground_truth: str | None
    image_path: str

    @property
    def disagrees(self) -> bool:
        return self.human_label != self.model_label

    @property
    def basis(self) -> str:
        """How the human decided: what makes the item evidence or not (with the level)."""
        if self.audit:
            return "audit"
        if self.blind:
            return "blind check"
        return "suggestion shown" if self.shown else "model not shown"


def _level_name(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, Level):
        return v.value
    s = str(v)
    return Level[s].value if s in Level.__members__ else s


def items(
    conn: Connection,
    filters: Q.ReportFilters,
    *,
    human_label: str | None = None,
    model_label: str | None = None,
    disagreements_only: bool = False,
    requested: bool = False,
    limit: int = DEFAULT_ITEM_LIMIT,
    offset: int = 0,
) -> list[ItemRow]:
    """Paired items of the filtered selection, not yet adjudicated first, then newest first.

    `human_label` / `model_label` pick a row / column of the matrix (both: one cell);
    `disagreements_only` keeps the off-diagonal items. `requested`: instead, the items queued
    for adjudication and not adjudicated yet (the truth sample and challenged automatic
    decisions, paired or not), oldest first.
    """
    f = Q.frame(conn, filters)
    if requested:
        req = AdjudicationRequest.__table__  # type: ignore[attr-defined]
        queued = [f.c.item_id.in_(select(req.c.item_id)), f.c.adjudicated_label.is_(None)]
        return _item_rows(conn, f, queued, (f.c.item_id,), limit, offset)
    conds: list[Any] = [f.c.paired == 1]
    if human_label is not None:
        conds.append(f.c.human_label == human_label)
    if model_label is not None:
        conds.append(f.c.model_label == model_label)
    if disagreements_only:
        conds.append(f.c.human_label != f.c.model_label)
    order = (f.c.adjudicated_label.is_not(None), f.c.captured_at.desc(), f.c.item_id.desc())
    return _item_rows(conn, f, conds, order, limit, offset)


def awaiting_adjudication(
    conn: Connection, filters: Q.ReportFilters, *, teach_only: bool = False
) -> int:
    """How many items of the selection are queued for adjudication and not adjudicated yet
    (`teach_only`: of those, the ones queued to teach the next model)."""
    f = Q.frame(conn, filters, columns=["item_id", "adjudicated_label"])
    req = AdjudicationRequest.__table__  # type: ignore[attr-defined]
    queued = select(req.c.item_id)
    if teach_only:
        queued = queued.where(req.c.reason.like(f"{ChosenFor.teach.value}:%"))
    q = select(func.count()).where(f.c.item_id.in_(queued), f.c.adjudicated_label.is_(None))
    return int(conn.execute(q).scalar() or 0)


def _item_rows(
    conn: Connection, f: Any, conds: list[Any], order: Any, limit: int, offset: int
) -> list[ItemRow]:
    names = [fld.name for fld in dataclasses.fields(ItemRow)]
    q = (
        select(*(f.c[name] for name in names))
        .where(and_(*conds))
        .order_by(*order)
        .limit(max(0, int(limit)))
        .offset(max(0, int(offset)))
    )
    out = []
    for r in conn.execute(q):
        d = dict(r._mapping)
        d["level"] = _level_name(d["level"])
        d["evidence"] = bool(d["evidence"])
        d["shown"] = bool(d["shown"])
        d["blind"] = bool(d["blind"])
        d["audit"] = bool(d["audit"])
        d["image_path"] = d["image_path"] or ""
        out.append(ItemRow(**d))
    return out


def items_in_cell(
    conn: Connection,
    filters: Q.ReportFilters,
    human_label: str,
    model_label: str,
    limit: int = DEFAULT_ITEM_LIMIT,
) -> list[ItemRow]:
    """The items counted in one cell of the matrix (up to `limit`)."""
    return items(conn, filters, human_label=human_label, model_label=model_label, limit=limit)


def image_file(image_root: Path | None, rel: str | None) -> Path | None:
    """The image file of an item, or None when there is none; never a path outside the root."""
    if image_root is None or not rel:
        return None
    root = Path(image_root).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


@dataclass(frozen=True)
class ItemDetail:
    """What the large view adds to an ItemRow: per-class probabilities, past adjudications, and
    the model version that judged the item (for its heat-map) with the P(defect) it gave."""

    item_id: int
    probabilities: dict[str, float]
    adjudications: list[dict[str, Any]]
    model: ModelRef | None = None
    p_defect: float | None = None
    queued_for: list[str] = field(default_factory=list)  # why it awaits adjudication, in words


def request_words(reason: str, probability: float) -> str:
    """An adjudication request's reason as the QA lead reads it."""
    if reason == ChosenFor.truth_sample.value:
        return f"truth sample (a random draw, chance {probability:.1%}: counts in the escape rate)"
    if reason == ChosenFor.challenge.value:
        return "an automatic decision challenged by an inspector"
    head, _, why = reason.partition(":")
    if head == ChosenFor.teach.value:
        return f"to teach the next model ({why.replace('_', ' ') or 'picked'}; not in estimates)"
    return reason.replace("_", " ")


def item_detail(conn: Connection, item_id: int, *, model_version: str | None = None) -> ItemDetail:
    """The prediction the frame pairs with (its probabilities and model version), and every
    adjudication, oldest first."""
    from db.models import Prediction, Slot

    pred = Prediction.__table__  # type: ignore[attr-defined]
    mv = ModelVersion.__table__  # type: ignore[attr-defined]
    adj = Adjudication.__table__  # type: ignore[attr-defined]
    op = Operator.__table__  # type: ignore[attr-defined]
    cond = [pred.c.item_id == item_id, pred.c.label.is_not(None)]
    if model_version:
        ids = Q.resolve_model_versions(conn, model_version)
        cond.append(pred.c.model_version_id.in_(ids))
    else:
        cond.append(pred.c.slot == Slot.champion.name)
    row = conn.execute(
        select(
            pred.c.probabilities,
            pred.c.p_defect,
            mv.c.id,
            mv.c.name,
            mv.c.version,
            mv.c.sha256,
            mv.c.artifact_path,
        )
        .select_from(pred.outerjoin(mv, mv.c.id == pred.c.model_version_id))
        .where(*cond)
        .order_by(pred.c.id.desc())
        .limit(1)
    ).first()
    probs = {str(k): float(v) for k, v in (row[0] or {}).items()} if row else {}
    p_defect = None if row is None or row[1] is None else float(row[1])
    model = (
        ModelRef(int(row[2]), str(row[3]), str(row[4]), str(row[5]), str(row[6] or ""))
        if row is not None and row[2] is not None
        else None
    )
    adjs = [
        {
            "label": r[0],
            "reason_code": r[1],
            "note": r[2],
            "by": r[3],
            "at": r[4],
        }
        for r in conn.execute(
            select(adj.c.label, adj.c.reason_code, adj.c.note, op.c.name, adj.c.created_at)
            .select_from(adj.join(op, op.c.id == adj.c.operator_id))
            .where(adj.c.item_id == item_id)
            .order_by(adj.c.id)
        )
    ]
    req = AdjudicationRequest.__table__  # type: ignore[attr-defined]
    queued = [
        request_words(str(r[0]), float(r[1]))
        for r in conn.execute(
            select(req.c.reason, req.c.probability)
            .where(req.c.item_id == item_id)
            .order_by(req.c.id)
        )
    ]
    return ItemDetail(item_id, probs, adjs, model, p_defect, queued)


# --------------------------------------------------------------------------- adjudication


def may_adjudicate(operator: Operator) -> bool:
    return allowed(operator, "adjudicate")


def suggest_reason(human: str | None, model: str | None, label: str, ok: str = "ok") -> str | None:
    """The reason code that follows from who was wrong, or None when it takes judgement.

    Only one side wrong has an obvious code, and both right is "confirmed" (a truth-sample
    item); both wrong is left to the QA lead (ambiguous, bad_image, or the side that matters more).
    """
    human_wrong, model_wrong = human != label, model != label
    if not human_wrong and not model_wrong:
        return "confirmed"
    if human_wrong == model_wrong:
        return None
    side, said = ("human", human) if human_wrong else ("model", model)
    return f"{side}_missed" if said == ok else f"{side}_false_reject"


def _was_audited(session: Any, item_id: int) -> bool:
    hd = HumanDecision.__table__  # type: ignore[attr-defined]
    found = session.execute(
        select(hd.c.id).where(hd.c.item_id == item_id, hd.c.audit.is_(True)).limit(1)
    ).first()
    return found is not None


def chosen_for_item(session: Any, item_id: int) -> str:
    """Why this item is being adjudicated: the truth sample when it was drawn into it (whatever
    else it shows: dropping its disagreements would bias the sample), else a challenge, else one
    queued to teach the next model (review.teach), else a disagreement (what the review window
    lists)."""
    req = AdjudicationRequest.__table__  # type: ignore[attr-defined]
    reasons = set(session.execute(select(req.c.reason).where(req.c.item_id == item_id)).scalars())
    for reason in (ChosenFor.truth_sample, ChosenFor.challenge):
        if reason.value in reasons:
            return reason.value
    if any(r.startswith(ChosenFor.teach.value + ":") for r in reasons):
        return ChosenFor.teach.value
    return ChosenFor.disagreement.value


def adjudicate(
    engine: Engine,
    *,
    item_id: int,
    operator: Operator,
    label: str,
    reason_code: str,
    note: str = "",
    labels: LabelSet,
    audit_test: Callable[[], AuditSPRT] = AuditSPRT,
) -> Adjudication:
    """Record a QA lead's label for an item; it becomes the item's final disposition (the truth
    later retraining uses). The level and threshold version of the item's disposition carry over."""
    if not may_adjudicate(operator):
        raise AdjudicationRefused(
            f"{refusal(operator, 'adjudicate')} (engineers and inspectors may browse only)"
        )
    if label not in labels.all:
        raise AdjudicationRefused(
            f"label {label!r} is not a class: expected one of {list(labels.all)}"
        )
    if reason_code not in REASON_CODES:
        raise AdjudicationRefused(
            f"reason code {reason_code!r} is unknown: expected one of {list(REASON_CODES)}"
        )
    assert operator.id is not None
    with session_scope(engine) as session:
        item = session.get(Item, item_id)
        if item is None:
            raise AdjudicationRefused(f"no item #{item_id} in the database")
        chosen_for = chosen_for_item(session, item_id)
        last = final_disposition(session=session, item_id=item_id)
        if last is not None:
            level, threshold_version = Level(last.level), last.threshold_version
        else:
            level = current_level(session=session, station_id=item.station_id)
            threshold_version = ""
        recorded = record_adjudication(
            session=session,
            adjudication=Adjudication(
                item_id=item_id,
                operator_id=operator.id,
                label=label,
                reason_code=reason_code,
                note=note.strip(),
                chosen_for=chosen_for,
            ),
            level=level,
            threshold_version=threshold_version,
        )
        if _was_audited(session, item_id):
            # An audit's outcome is final now: the SPRT on the station's audits may demote it.
            demote_on_audits(session, item.station_id, labels.ok, audit_test())
        return recorded


# --------------------------------------------------------------------------- filters, gate, export


@dataclass(frozen=True)
class FilterChoices:
    stations: list[str]
    inspectors: list[str]
    model_versions: list[str]  # "name:version"
    levels: list[str] = field(default_factory=lambda: [lv.value for lv in Level])


def filter_choices(conn: Connection) -> FilterChoices:
    """What the filter boxes offer (small tables only: stations, operators, model versions)."""
    st = Station.__table__  # type: ignore[attr-defined]
    op = Operator.__table__  # type: ignore[attr-defined]
    mv = ModelVersion.__table__  # type: ignore[attr-defined]
    return FilterChoices(
        stations=[str(r[0]) for r in conn.execute(select(st.c.name).order_by(st.c.name))],
        inspectors=[str(r[0]) for r in conn.execute(select(op.c.name).order_by(op.c.name))],
        model_versions=[
            f"{r[0]}:{r[1]}"
            for r in conn.execute(select(mv.c.name, mv.c.version).order_by(mv.c.name, mv.c.id))
        ],
    )


@dataclass(frozen=True)
class GateStatus:
    station: str | None
    level: str | None
    next_level: str | None
    passed: bool | None  # None: no gate to show (no station chosen, or already at full)
    text: str


def gate_status(
    conn: Connection,
    filters: Q.ReportFilters,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    default_level: Level = Level.human_only,
) -> GateStatus:
    """The gate from the station's current level to the next: review.report.gate_check, the
    function behind `station gate check` and the report's gates block.

    The station is the filter's, or the only one in the database. Other filters do not apply: a
    gate is judged on the whole evidence of its station's champion.
    """
    from review.gates import format_value
    from review.report import gate_check

    station = filters.station
    if station is None:
        names = filter_choices(conn).stations
        if len(names) != 1:
            return GateStatus(
                None, None, None, None, "gate: choose a station in the filters to see its gate"
            )
        station = names[0]
    level = Q.current_level(conn, station) or default_level
    if level == Level.full:
        return GateStatus(station, level.value, None, None, f"station {station}: full automation")
    nxt = list(Level)[level.rank + 1]
    result, _ = gate_check(
        conn, station, nxt, labels=labels, rules=rules, default_level=default_level
    )
    text = f"station {station} at {level.value}: gate to {nxt.value} "
    if result.passed:
        text += "PASSES"
    else:
        failed = "; ".join(
            f"{c.name} {format_value(c.value)} (needs {c.required})" for c in result.failed_checks
        )
        text += f"FAILS: {failed}"
    return GateStatus(station, level.value, nxt.value, result.passed, text)


def export_report(
    engine: Engine,
    filters: Q.ReportFilters,
    path: Path,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    image_root: Path | None = None,
) -> dict[str, Any]:
    """Write the report the filters select; the format follows the file's suffix."""
    from review.errors import ReportFormatError
    from review.report import FORMATS, write_report

    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt == "htm":
        fmt = "html"
    if fmt not in FORMATS:
        raise ReportFormatError(
            f"cannot tell the report format from {Path(path).name!r}: expected a file ending in "
            + ", ".join(f".{f}" for f in FORMATS)
        )
    return write_report(
        engine,
        filters,
        fmt,
        Path(path),
        labels=labels,
        rules=rules,
        image_root=image_root,
    )
