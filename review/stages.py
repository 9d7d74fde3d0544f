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
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Connection

from db.models import HumanDecision, Item, Prediction, Slot
from review import query as Q
from review import stats as S

_item = Item.__table__  # type: ignore[attr-defined]
_pred = Prediction.__table__  # type: ignore[attr-defined]
_hd = HumanDecision.__table__  # type: ignore[attr-defined]


def _interval(k: int, n: int) -> dict[str, Any]:
    p = S.proportion(k, n)
    return {"k": k, "n": n, "rate": p.rate, "ci95": None if p.ci95 is None else list(p.ci95)}


def stages_block(conn: Connection, station_id: int, ok: str) -> dict[str, Any]:
    p = _pred.alias("p")
    hd = _hd.alias("hd")
    answered = and_(p.c.id.is_not(None), p.c.label.is_not(None))
    paired = and_(answered, hd.c.id.is_not(None))
    agree = and_(paired, (hd.c.label == ok) == (p.c.label == ok))
    # Each item's acting answer (its first champion or canary prediction) and its latest human
    # decision, looked up per item of the station (review.query.join_latest): 1.4-1.5 s for a
    # third of 1,010,000 items, against 1.8-2.5 s when each table was first grouped by item.
    acting = [_pred.c.slot.in_([Slot.champion.name, Slot.canary.name])]
    joined = Q.join_latest(conn, _item, _pred, p, acting, pick=func.min)
    joined = Q.join_latest(conn, joined, _hd, hd, [])
    q = (
        select(
            _item.c.trigger_version,
            _item.c.guard_version,
            func.min(_item.c.id),
            func.max(_item.c.id),
            func.count(),
            func.sum(case((_item.c.guard_passed, 1), else_=0)),
            func.sum(case((answered, 1), else_=0)),
            func.sum(case((and_(answered, p.c.label != ok), 1), else_=0)),
            func.avg(case((answered, p.c.confidence), else_=None)),
            func.avg(case((answered, p.c.confidence * p.c.confidence), else_=None)),
            func.sum(case((paired, 1), else_=0)),
            func.sum(case((agree, 1), else_=0)),
        )
        .select_from(joined)
        .where(_item.c.station_id == station_id)
        .group_by(_item.c.trigger_version, _item.c.guard_version)
        .order_by(func.min(_item.c.id))
    )
    versions = []
    for row in conn.execute(q):
        trig, guard, first, last, n, passed, answers, defects, mean_c, mean_c2, pairs, agreed = row
        answers, defects, pairs, agreed = (int(x or 0) for x in (answers, defects, pairs, agreed))
        conf: dict[str, Any] = {"mean": None, "ci95": None}
        if answers and mean_c is not None:
            var = max(0.0, float(mean_c2 or 0.0) - float(mean_c) ** 2)
            half = 1.96 * math.sqrt(var / answers) if answers > 1 else None
            conf = {
                "mean": float(mean_c),
                "ci95": None if half is None else [float(mean_c) - half, float(mean_c) + half],
            }
        versions.append(
            {
                "trigger": trig,
                "guard": guard,
                "first_item_id": first,
                "last_item_id": last,
                "items": int(n),
                "guard_passed": _interval(int(passed or 0), int(n)),
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
