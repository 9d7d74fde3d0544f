"""Trigger cost per frame against a bare cv2.absdiff + threshold baseline, on the synthetic line
at 1280x720 (frames rendered on the fly; only the trigger / baseline calls are timed).

    .venv/bin/python bench/trigger_cost.py [--items 6]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere: this checkout's code first (the editable install maps the main checkout,
# so a bench run from a worktree of an older commit would otherwise measure the new code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import cv2

from station.frames.trigger import Trigger
from station.synth.config import SynthConfig
from station.synth.line import SyntheticLine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    line = SyntheticLine(SynthConfig(seed=args.seed, realtime=False))
    n = line.total_frames(args.items)

    trigger = Trigger()
    t_trigger = 0.0
    t_base = 0.0
    prev = None
    captured = 0
    for i in range(n):
        frame = line.frame(i)
        t0 = time.perf_counter()
        if trigger.update(frame) is not None:
            captured += 1
        t1 = time.perf_counter()
        if prev is not None:
            diff = cv2.absdiff(frame.image, prev)
            cv2.threshold(diff, 12, 255, cv2.THRESH_BINARY)
        t2 = time.perf_counter()
        prev = frame.image
        t_trigger += t1 - t0
        t_base += t2 - t1
    ms_trigger = 1000 * t_trigger / n
    ms_base = 1000 * t_base / (n - 1)
    print(f"{n} frames 1280x720, {args.items} phones shown, {captured} captured")
    print(
        f"trigger: {ms_trigger:.3f} ms/frame (includes choosing the sharpest frame of each dwell)"
    )
    print(f"baseline cv2.absdiff + threshold (full frame): {ms_base:.3f} ms/frame")
    print(f"ratio trigger/baseline: {ms_trigger / ms_base:.2f}")


if __name__ == "__main__":
    main()
