"""`station simulate` throughput (items/s) at each level, against a bare loop over the same
work's unavoidable core (render one still + one model forward), in one run.

    .venv/bin/python bench/simulate_rate.py [--items 200] [--levels human_only,shadow,partial]

Target: >= 60 items/s at assist (issue 21; >= 20 at every level keeps a week of line data in
minutes). Also prints the process's CPU time per item (every thread: the synthetic camera's
rendering, image encoding and fsyncs, the model, routing, recording) and the rate that CPU time
allows on this machine's cores, the ceiling no overlap can pass. Uses the bundled model when
present, else a fake predictor (said in the output).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere: the repo root first on the path (the editable install may not map `model`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import tempfile
import time
from pathlib import Path

from db.models import Level
from station.pipeline.predictor import FakePredictor, load_predictor
from station.pipeline.simulate import SimulateConfig, simulate, synthetic_stills
from station.pipeline.testing import open_station_db
from station.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--levels", default="human_only,shadow,assist,partial,full")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the station uses 1)")
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    args = ap.parse_args()
    try:
        predictor, info = load_predictor(args.model, threads=args.threads)
        what = f"model {info.name} {info.short} from {args.model or 'the bundle'}"
    except Exception as e:
        predictor, info = FakePredictor(), None
        what = f"FAKE predictor (bundled model unusable: {e})"
    print(f"predictor: {what}")

    # Baseline: render + forward only, no guard / store / router / recorder.
    source = synthetic_stills(SimulateConfig(items=args.items))
    source.open()
    n = min(args.items, 60)
    t0 = time.perf_counter()
    for _ in range(n):
        frame = source.read()
        assert frame is not None
        predictor.predict(frame.image)
    base = n / (time.perf_counter() - t0)
    source.close()
    print(f"baseline render+predict: {base:.1f} items/s")

    cores = len(os.sched_getaffinity(0))
    for name in args.levels.split(","):
        level = Level(name)
        with tempfile.TemporaryDirectory() as d:
            settings = Settings(data_dir=Path(d))
            engine = open_station_db(f"sqlite:///{Path(d) / 'sim.db'}")
            c0 = time.process_time()
            s = simulate(
                settings,
                engine,
                SimulateConfig(items=args.items, level=level),
                predictor=None if level is Level.human_only else predictor,
                model=info,
            )
            cpu_ms = (time.process_time() - c0) / max(1, s.items) * 1000.0
            engine.dispose()
        target = 60 if level is Level.assist else 20
        print(
            f"simulate --level {name:<10} {s.items} items in {s.seconds:5.1f} s: "
            f"{s.items_per_s:5.1f} items/s  (ratio to baseline {s.items_per_s / base:.2f}; "
            f"target >= {target} items/s: {'OK' if s.items_per_s >= target else 'MISSED'}); "
            f"CPU {cpu_ms:.1f} ms/item: at most {cores * 1000.0 / cpu_ms:.0f} items/s "
            f"on {cores} cores"
        )


if __name__ == "__main__":
    main()
