"""What the engineer's dashboard shows, read from the record (Qt-free; station/ui/dashboard.py
draws it): the station's recent items in buckets of `bucket` items, oldest first, and the drift
checks' history.

Per bucket: throughput (items per minute, from capture times), capture-to-decision latency p50 /
p95 (capture to the committed disposition), model latency p50 / p95, capture-to-screen latency
p50 / p95 (the item's stage timings), human/model pass-fail agreement; and the median of each
stage over the view. Per drift check: its statistic at each round with its thresholds. Open alarms. A
running station adds what only it knows (queue depth, memory) through `live`.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.models import Disposition, HumanDecision, Item, Level, MonitorCheck, Prediction, Slot
from db.repo import current_level
from station.monitor import alarm_rows

_item = Item.__table__  # type: ignore[attr-defined]
_pred = Prediction.__table__  # type: ignore[attr-defined]
_disp = Disposition.__table__  # type: ignore[attr-defined]
_hd = HumanDecision.__table__  # type: ignore[attr-defined]
_check = MonitorCheck.__table__  # type: ignore[attr-defined]


@dataclass
class Series:
    x: list[float] = field(default_factory=list)  # bucket: index of its last item in the view
    y: list[float] = field(default_factory=list)


@dataclass
class Snapshot:
    station: str
    level: str
    items: int  # items in the view
    throughput_per_min: Series = field(default_factory=Series)
    decision_p50_s: Series = field(default_factory=Series)
    decision_p95_s: Series = field(default_factory=Series)
    model_p50_ms: Series = field(default_factory=Series)
    model_p95_ms: Series = field(default_factory=Series)
    # capture to the suggestion painted (item.stage_ms "total": station/pipeline/timeline.py)
    screen_p50_ms: Series = field(default_factory=Series)
    screen_p95_ms: Series = field(default_factory=Series)
    # median milliseconds per stage over the view's items that measured it
    stages_ms: dict[str, float] = field(default_factory=dict)
    agreement: Series = field(default_factory=Series)
    # check -> its statistic at each round, x = the id of the last item of the round's window
    drift: dict[str, Series] = field(default_factory=dict)
    thresholds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)  # open ones
    live: dict[str, float] = field(default_factory=dict)  # queue depth, memory (a running station)


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return (b - a).total_seconds()


def snapshot(
    engine: Engine,
    station_id: int,
    *,
    station: str,
    ok: str,
    default_level: Level,
    items: int = 2000,
    bucket: int = 50,
    rounds: int = 60,
) -> Snapshot:
    """The dashboard's numbers for the station's last `items` items (a few indexed queries)."""
    with session_scope(engine) as s:
        level = current_level(session=s, station_id=station_id, default=default_level).value
        alarms = alarm_rows(s, station_id, open_only=True)
    with engine.connect() as conn:
        ids_desc = (
            select(_item.c.id)
            .where(_item.c.station_id == station_id)
            .order_by(_item.c.id.desc())
            .limit(items)
            .subquery()
        )
        rows = conn.execute(
            select(_item.c.id, _item.c.captured_at, _item.c.stage_ms)
            .where(_item.c.id.in_(select(ids_desc.c.id)))
            .order_by(_item.c.id)
        ).all()
        ids = [r[0] for r in rows]
        captured = {r[0]: r[1] for r in rows}
        stages = {r[0]: r[2] for r in rows if isinstance(r[2], dict)}
        lo = ids[0] if ids else 0
        first_pred = (
            select(_pred.c.item_id, func.min(_pred.c.id).label("id"))
            .where(_pred.c.item_id >= lo, _pred.c.slot.in_([Slot.champion.name, Slot.canary.name]))
            .group_by(_pred.c.item_id)
            .subquery()
        )
        preds = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                select(_pred.c.item_id, _pred.c.label, _pred.c.latency_ms).join(
                    first_pred, first_pred.c.id == _pred.c.id
                )
            )
        }
        decided = {
            r[0]: r[1]
            for r in conn.execute(
                select(_disp.c.item_id, func.min(_disp.c.created_at))
                .where(_disp.c.item_id >= lo)
                .group_by(_disp.c.item_id)
            )
        }
        humans = {
            r[0]: r[1]
            for r in conn.execute(
                select(_hd.c.item_id, _hd.c.label)
                .where(_hd.c.item_id >= lo, _hd.c.golden.is_(False))
                .order_by(_hd.c.id)
            )
        }
        checks = conn.execute(
            select(
                _check.c.check,
                _check.c.statistic,
                _check.c.warn,
                _check.c.fail,
                _check.c.last_item_id,
            )
            .where(_check.c.station_id == station_id, _check.c.verdict != "skipped")
            .order_by(_check.c.id.desc())
            .limit(rounds * 16)
        ).all()
    snap = Snapshot(station=station, level=level, items=len(ids), alarms=alarms)
    for start in range(0, len(ids) - bucket + 1, bucket):
        chunk = ids[start : start + bucket]
        x = float(start + bucket)
        span = _seconds(captured[chunk[0]], captured[chunk[-1]])
        if span and span > 0:
            snap.throughput_per_min.x.append(x)
            snap.throughput_per_min.y.append(60.0 * (len(chunk) - 1) / span)
        waits = [
            w for i in chunk if (w := _seconds(captured[i], decided.get(i))) is not None and w >= 0
        ]
        if waits:
            snap.decision_p50_s.x.append(x)
            snap.decision_p50_s.y.append(float(np.percentile(waits, 50)))
            snap.decision_p95_s.x.append(x)
            snap.decision_p95_s.y.append(float(np.percentile(waits, 95)))
        lat = [p[1] for i in chunk if (p := preds.get(i)) is not None and p[1] is not None]
        if lat:
            snap.model_p50_ms.x.append(x)
            snap.model_p50_ms.y.append(float(np.percentile(lat, 50)))
            snap.model_p95_ms.x.append(x)
            snap.model_p95_ms.y.append(float(np.percentile(lat, 95)))
        screen = [float(t["total"]) for i in chunk if "total" in (t := stages.get(i) or {})]
        if screen:
            snap.screen_p50_ms.x.append(x)
            snap.screen_p50_ms.y.append(float(np.percentile(screen, 50)))
            snap.screen_p95_ms.x.append(x)
            snap.screen_p95_ms.y.append(float(np.percentile(screen, 95)))
        pairs = [
            (humans[i] == ok) == (p[0] == ok)
            for i in chunk
            if i in humans and (p := preds.get(i)) is not None and p[0] is not None
        ]
        if pairs:
            snap.agreement.x.append(x)
            snap.agreement.y.append(sum(pairs) / len(pairs))
    per_stage: dict[str, list[float]] = {}
    for timing in stages.values():
        for stage, ms in timing.items():
            per_stage.setdefault(stage, []).append(float(ms))
    snap.stages_ms = {k: float(np.median(v)) for k, v in per_stage.items()}
    for check, stat, warn, fail, last_item in reversed(checks):
        series = snap.drift.setdefault(check, Series())
        series.x.append(float(last_item or 0))
        series.y.append(float(stat) if stat is not None else float("nan"))
        snap.thresholds[check] = (warn, fail)
    return snap


def process_memory_mb() -> float:
    """This process's peak resident memory in MiB (what the station holds: models, queues)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
