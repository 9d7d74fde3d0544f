"""Synthetic line rendering speed at 1280x720, against the 60 fps target (2x a 30 fps line).

Measures (1) the line as a source: frames/s including the per-item sprite builds, (2) a floor
baseline: copying the cached table and adding the precomputed noise only, (3) stills/s
(render_item, used by `station synth`). Prints the ratios.

    .venv/bin/python bench/synth_render.py [--frames 600] [--seed 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere: this checkout's code first (the editable install maps the main checkout,
# so a bench run from a worktree of an older commit would otherwise measure the new code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

from station.synth.config import SynthConfig
from station.synth.line import SyntheticLine
from station.synth.render import add_noise, background, render_item

TARGET_FPS = 60.0
LINE_FPS = 30.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--stills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    config = SynthConfig(seed=args.seed, width=1280, height=720, realtime=False, defect_rate=0.5)

    line = SyntheticLine(config)
    line.frame(0)  # caches: table, noise banks
    t0 = time.perf_counter()
    for i in range(args.frames):
        line.frame(i)
    line_s = time.perf_counter() - t0
    fps = args.frames / line_s
    items = (args.frames - line.lead) / line.cycle

    bg = background(config, 0)
    t0 = time.perf_counter()
    for i in range(args.frames):
        add_noise(bg.copy(), config, i)
    floor_fps = args.frames / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for i in range(args.stills):
        render_item(config, i)
    stills_per_s = args.stills / (time.perf_counter() - t0)

    print(
        f"synthetic line 1280x720: {fps:.1f} frames/s over {args.frames} frames ({items:.1f} phones, "
        f"{line.cycle} frames per phone)"
    )
    print(
        f"  ratio to the {TARGET_FPS:.0f} fps target: {fps / TARGET_FPS:.2f}x; to a {LINE_FPS:.0f} fps line: "
        f"{fps / LINE_FPS:.2f}x"
    )
    print(
        f"  baseline (table copy + noise only): {floor_fps:.1f} frames/s; line/baseline = {fps / floor_fps:.2f}"
    )
    print(
        f"stills (render_item, 1280x720): {stills_per_s:.1f}/s ({1000 / stills_per_s:.0f} ms each)"
    )


if __name__ == "__main__":
    main()
