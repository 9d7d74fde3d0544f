"""The pipeline's stages before the model, and what a change of one did downstream.

Every item records the versions of the trigger and the input guard that produced it (a version
is the stage's code version plus a hash of its settings). Grouped by those versions, in the order
they first appeared, the report shows for each: items, the guard's pass rate, the model's
predicted-defect rate and mean confidence, and human/model pass-fail agreement, each with a 95%
interval, and for each change the difference in defect rate and agreement with its interval
(Newcombe). Like the speech example of the source (a new voice-activity detector changes what
the recogniser hears), a new trigger or guard changes what the model sees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from db.models import HumanDecision, Item, Prediction, Slot
from review import query as Q
from review import stats as S

_item = Item.__table__  # type: ignore[attr-defined]
_pred = Prediction.__table__  # type: ignore[attr-defined]
_hd = HumanDecision.__table__  # type: ignore[attr-defined]


def _interval(k: int, n: int) -> dict[str, Any]:
    p = S.proportion(k, n)
    return {"k": k, "n": n, "rate": p.rate, "ci95": None if p.ci95 is None else list(p.ci95)}


#: What stage_rows sums per (trigger, guard) versions: every sum adds over items, and the first
#: and last item ids are a min and a max, so per-day rows merge into the station's
#: (review/summary.py keeps them per station and day).
STAGE_SUMS = [
    "items",
    "guard_passed",
    "answered",
    "defects",
    "conf_n",
    "conf_sum",
    "conf2_sum",
    "paired",
    "agreed",
    "first_item_id",
    "last_item_id",
]
#: The sums that are not added but kept as the smallest or the largest.
EXTREMES = {"first_item_id": min, "last_item_id": max}


def stage_rows(
    conn: Connection,
    ok: str,
    *,
    station_id: int | None = None,
    per: tuple[str, ...] = (),
    scope: Select[Any] | None = None,
    upto: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """STAGE_SUMS per trigger and guard version (and per `per`: "station_id", "day"), for the
    items of `station_id` (all when None) or those `scope` selects, as the records stood at the
    ids `upto` (review.query.frame's `scope` and `upto`: the records are append-only)."""
    p = _pred.alias("p")
    hd = _hd.alias("hd")

    answered = and_(p.c.id.is_not(None), p.c.label.is_not(None))
    paired = and_(answered, hd.c.id.is_not(None))
    agree = and_(paired, (hd.c.label == ok) == (p.c.label == ok))
    confidence = case((answered, p.c.confidence), else_=None)
    # Each item's acting answer (its first champion or canary prediction) and its latest human
    # decision, looked up per item of the station (review.query.join_latest): 1.4-1.5 s for a
    # third of 1,010,000 items, against 1.8-2.5 s when each table was first grouped by item.
    acting = [
        _pred.c.slot.in_([Slot.champion.name, Slot.canary.name]),
        *Q.within(_pred, scope, upto),
    ]
    joined = Q.join_latest(conn, _item, _pred, p, acting, pick=func.min)
    joined = Q.join_latest(conn, joined, _hd, hd, Q.within(_hd, scope, upto))
    keys = [
        *(
            _item.c.station_id if k == "station_id" else Q.utc_day(conn, _item.c.captured_at)
            for k in per
        ),
        _item.c.trigger_version,
        _item.c.guard_version,
    ]
    sums = [
        func.count(),
        func.sum(case((_item.c.guard_passed, 1), else_=0)),
        func.sum(case((answered, 1), else_=0)),
        func.sum(case((and_(answered, p.c.label != ok), 1), else_=0)),
        func.count(confidence),
        func.coalesce(func.sum(confidence), 0.0),
        func.coalesce(func.sum(confidence * confidence), 0.0),
        func.sum(case((paired, 1), else_=0)),
        func.sum(case((agree, 1), else_=0)),
        func.min(_item.c.id),
        func.max(_item.c.id),
    ]
    conds = Q.within(_item, scope, upto)
    if station_id is not None:
        conds.append(_item.c.station_id == station_id)
    q = select(*keys, *sums).select_from(joined).where(*conds).group_by(*keys)
    names = [*per, "trigger", "guard", *STAGE_SUMS]
    return [
        {
            n: (float(v) if n in ("conf_sum", "conf2_sum") else v)
            for n, v in zip(names, row, strict=True)
        }
        for row in conn.execute(q)
    ]


def stages_block(conn: Connection, station_id: int, ok: str) -> dict[str, Any]:
    """The report's pipeline-stages block of one station, from its whole history."""
    return block_from_rows(stage_rows(conn, ok, station_id=station_id))


def block_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The block from stage_rows' rows of one station (or their per-day rows merged), in the
    order the versions first appeared."""
    versions = []
    for row in sorted(rows, key=lambda r: int(r["first_item_id"])):
        n = int(row["items"])
        answers, defects, pairs, agreed = (
            int(row[k] or 0) for k in ("answered", "defects", "paired", "agreed")
        )
        conf: dict[str, Any] = {"mean": None, "ci95": None}
        conf_n = int(row["conf_n"] or 0)
        if answers and conf_n:
            mean_c = float(row["conf_sum"]) / conf_n
            mean_c2 = float(row["conf2_sum"]) / conf_n
            var = max(0.0, mean_c2 - mean_c**2)
            half = 1.96 * math.sqrt(var / answers) if answers > 1 else None
            conf = {
                "mean": mean_c,
                "ci95": None if half is None else [mean_c - half, mean_c + half],
            }
        versions.append(
            {
                "trigger": row["trigger"],
                "guard": row["guard"],
                "first_item_id": int(row["first_item_id"]),
                "last_item_id": int(row["last_item_id"]),
                "items": n,
                "guard_passed": _interval(int(row["guard_passed"] or 0), n),
                "defect_rate": _interval(defects, answers),
                "confidence": conf,
                "agreement": _interval(agreed, pairs),
            }
        )
    changes = []
    for before, after in zip(versions, versions[1:], strict=False):
        changed = [k for k in ("trigger", "guard") if before[k] != after[k]]
        changes.append(
            {
                "stages": changed,
                "from": {k: before[k] for k in changed},
                "to": {k: after[k] for k in changed},
                "at_item_id": after["first_item_id"],
                "defect_rate_difference": _difference(before["defect_rate"], after["defect_rate"]),
                "agreement_difference": _difference(before["agreement"], after["agreement"]),
                "confidence_difference": None
                if before["confidence"]["mean"] is None or after["confidence"]["mean"] is None
                else after["confidence"]["mean"] - before["confidence"]["mean"],
            }
        )
    return {"versions": versions, "changes": changes}


def _difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """after - before, with Newcombe's 95% interval; None when either side has no items."""
    if not a["n"] or not b["n"]:
        return None
    d, ci = S.newcombe_difference(b["k"], b["n"], a["k"], a["n"])
    return {"difference": d, "ci95": None if ci is None else list(ci)}
