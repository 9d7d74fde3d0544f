"""Drift detection on the simulated line: delay per knob, false alarms on a stable line.

For each knob: a simulation station runs `--reference` items in shadow (the evidence its level is
approved on: the drift reference), then is put at partial and runs `--items` more with the knob
turned from item `--onset` of that run on. Printed per knob: the first check round that warned
and that failed (items after the onset), the checks that fired, and whether and when the station
was demoted. Then a stable line (no knob) runs `--stable` items at partial after its reference:
every alarm there is a false alarm.

    .venv/bin/python bench/drift_detection.py                       # defaults, ~15 min on 2 cores
    .venv/bin/python bench/drift_detection.py --stable 1000 --knobs light=0.6
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import col, select  # noqa: E402

from db.engine import make_engine, session_scope  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Alarm, Item, Level, MonitorCheck, Station  # noqa: E402
from station.pipeline.simulate import SimulateConfig, parse_drift, simulate  # noqa: E402
from station.settings import load_settings  # noqa: E402

KNOBS = ["light=0.6", "defocus=3", "phone_color=blue", "defect_style=v2"]


def run_knob(db_url: str, settings, station: str, knob: str | None, args) -> dict:
    engine = make_engine(db_url)
    t0 = time.perf_counter()
    simulate(
        settings,
        engine,
        SimulateConfig(items=args.reference, level=Level.shadow, station=station, seed=args.seed),
    )
    drift, after = parse_drift(f"{knob}@{args.onset}") if knob else ({}, 0)
    items = args.items if knob else args.stable
    with session_scope(engine) as s:
        sid = s.exec(select(Station.id).where(Station.name == station)).one()
        first_id = (
            s.exec(
                select(Item.id).where(Item.station_id == sid).order_by(col(Item.id).desc())
            ).first()
            or 0
        ) + 1
    summary = simulate(
        settings,
        engine,
        SimulateConfig(
            items=items,
            level=Level.partial,
            station=station,
            seed=args.seed,
            drift=drift,
            drift_after=after,
        ),
    )
    with session_scope(engine) as s:
        checks = s.exec(
            select(MonitorCheck)
            .where(MonitorCheck.station_id == sid, col(MonitorCheck.last_item_id) >= first_id)
            .order_by(col(MonitorCheck.id))
        ).all()
        alarms = s.exec(select(Alarm).where(Alarm.station_id == sid)).all()
        rounds = sorted({c.last_item_id for c in checks})
        first_warn = first_fail = None
        fired: dict[str, str] = {}
        trace = [
            f"{c.last_item_id - first_id + 1}:{c.statistic:.3g}"
            + (f"(p={c.detail['p_value']:.3g})" if "p_value" in c.detail else "")
            for c in checks
            if c.check == args.trace and c.statistic is not None
        ]
        for c in checks:
            at = c.last_item_id - first_id + 1  # items of this run seen by the round
            if c.verdict in ("warn", "fail"):
                fired.setdefault(c.check, f"{c.verdict}@{at}")
                if first_warn is None:
                    first_warn = at
                if c.verdict == "fail" and first_fail is None:
                    first_fail = at
    return {
        "knob": knob or "stable",
        "items": items,
        "rounds": len(rounds),
        "first_warn_after_onset": None
        if first_warn is None
        else first_warn - (after if knob else 0),
        "first_fail_after_onset": None
        if first_fail is None
        else first_fail - (after if knob else 0),
        "demoted_at_item": summary.demoted_at_item,
        "alarms": len(alarms),
        "fired": fired,
        "final_level": summary.final_level,
        "seconds": round(time.perf_counter() - t0, 1),
        "trace": trace,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=int, default=500)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--onset", type=int, default=100)
    ap.add_argument("--stable", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--knobs", default=",".join(KNOBS), help="comma-separated KNOB=VALUE")
    ap.add_argument("--trace", default="", help="print this check's statistic at every round")
    args = ap.parse_args()
    knobs = [k for k in args.knobs.split(",") if k]
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.db"
        upgrade(make_engine(db_url))
        settings, _ = load_settings(None, {"database_url": db_url})
        rows = [run_knob(db_url, settings, f"k{i}", k, args) for i, k in enumerate(knobs)]
        if args.stable > 0:
            rows.append(run_knob(db_url, settings, "stable", None, args))
    print(f"{'knob':<18}{'warn+':>7}{'fail+':>7}{'demoted@':>10}{'alarms':>8}  fired")
    for r in rows:
        print(
            f"{r['knob']:<18}{str(r['first_warn_after_onset']):>7}{str(r['first_fail_after_onset']):>7}"
            f"{str(r['demoted_at_item']):>10}{r['alarms']:>8}  {r['fired']}  ({r['seconds']} s, "
            f"{r['rounds']} rounds, level {r['final_level']})"
        )
        if r["trace"]:
            print(f"  {args.trace}: " + " ".join(r["trace"]))


if __name__ == "__main__":
    main()
