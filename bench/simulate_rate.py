"""`station simulate` throughput (items/s) at each level, against a bare loop over the same
work's unavoidable core (render one still + one model forward), in one run.

    .venv/bin/python bench/simulate_rate.py [--items 200] [--levels human_only,shadow,partial]

Target: >= 60 items/s at assist (issue 21; >= 20 at every level keeps a week of line data in
minutes). Also prints the process's CPU time per item (every thread: the synthetic camera's
rendering, image encoding and fsyncs, the model, routing, recording) and the rate that CPU time
allows on this machine's cores, the ceiling no overlap can pass, and (Linux) that CPU time by
thread, over the items from the 21st to the 20th before the end (the reader's threads end
before the last items are decided): which of the run's parts the budget goes to. Uses the bundled
model when present, else a fake predictor (said in the output).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere: the repo root first on the path (the editable install may not map `model`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import collections
import os
import re
import tempfile
import threading
import time
from pathlib import Path

from db.models import Level
from station.pipeline.predictor import FakePredictor, load_predictor
from station.pipeline.simulate import SimulateConfig, simulate, synthetic_stills
from station.pipeline.testing import open_station_db
from station.settings import Settings

#: Items left out of the per-thread CPU at each end: the first ones (loading, first passes)
#: and the last ones (the reader's, renderers' and image writers' threads end once the last item
#: is read, before it is decided).
EDGE = 20


def thread_cpu() -> collections.Counter[str] | None:
    """CPU seconds so far of each of this process's threads, by name (a pool's numbered
    threads summed; threads Python did not start, such as a runtime's own, by their system
    name); None where /proc/self/task is not readable (not Linux)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: collections.Counter[str] = collections.Counter()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        name = names.get(int(tid), f"{comm} (not Python's)")
        out[re.sub(r"_\d+$", "", name)] += (int(fields[11]) + int(fields[12])) / tick
    return out


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
    marks: dict[int, collections.Counter[str] | None] = {}

    def progress(done: int, total: int) -> None:
        if done in (EDGE, total - EDGE):
            marks[done] = thread_cpu()

    for name in args.levels.split(","):
        level = Level(name)
        with tempfile.TemporaryDirectory() as d:
            settings = Settings(data_dir=Path(d))
            engine = open_station_db(f"sqlite:///{Path(d) / 'sim.db'}")
            c0 = time.process_time()
            marks.clear()
            s = simulate(
                settings,
                engine,
                SimulateConfig(items=args.items, level=level),
                predictor=None if level is Level.human_only else predictor,
                model=info,
                progress=progress,
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
        first, last = marks.get(EDGE), marks.get(s.items - EDGE)
        if first is None or last is None or s.items <= 2 * EDGE:
            print(f"  CPU by thread: not measured (needs /proc and more than {2 * EDGE} items)")
            continue
        n = s.items - 2 * EDGE
        by_thread = {k: (last[k] - first.get(k, 0.0)) / n * 1000.0 for k in last}
        shown = sorted((v, k) for k, v in by_thread.items() if v >= 0.05)[::-1]
        print(
            f"  CPU by thread, ms/item over items {EDGE + 1}-{s.items - EDGE} "
            f"(60 items/s on {cores} cores allows {cores * 1000.0 / 60:.1f}): "
            + ", ".join(f"{k} {v:.1f}" for v, k in shown)
        )


if __name__ == "__main__":
    main()
