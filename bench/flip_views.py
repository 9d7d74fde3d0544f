"""The same weights served with and without test-time flips, on one labelled folder.

    .venv/bin/python bench/flip_views.py ARTIFACT --data DIR [--ok-class free] [--runs 20]

For each set of views (none, h, h/v/hv) prints AUROC, coverage at <= 1% error with one
threshold, the station's auto-pass + auto-fail coverage, and predict() latency p50 at batch 1,
with ratios against no flips. The artifact's temperature is kept for every row: it was fitted
for the views it was trained with, and AUROC and coverage do not depend on it much (coverage
thresholds are searched on this folder). Use an artifact kept by
`bench/real_photos.py --keep DIR` with its held-out `DIR/tiles-test`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import Predictor, evaluate  # noqa: E402
from model.data import read_image, scan_folder  # noqa: E402

VIEWS: dict[str, tuple[str, ...]] = {"none": (), "h": ("h",), "h/v/hv": ("h", "v", "hv")}


def p50_ms(p: Predictor, images: list, runs: int) -> float:
    for im in images[:3]:  # warm-up
        p.predict(im)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        p.predict(images[i % len(images)])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="class-per-folder test images")
    ap.add_argument("--ok-class", default=None, help="the folder's defect-free class name")
    ap.add_argument("--runs", type=int, default=20, help="predict() calls timed per row")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = Predictor.load(args.artifact)
    scan = scan_folder(args.data, args.ok_class or base.manifest.ok_class, group_by="none")
    images = [im for s in scan.samples[:8] if (im := read_image(s.path)) is not None]
    rows = []
    for name, flips in VIEWS.items():
        p = Predictor(
            base.net, dataclasses.replace(base.manifest, test_time_flips=flips), base.spec
        )
        r = evaluate(p, args.data, args.ok_class)
        rows.append(
            (
                name,
                r["auroc_defect"],
                r["defect_coverage_at_1pct"]["coverage"],
                r["station_coverage_at_1pct"]["coverage"],
                p50_ms(p, images, args.runs),
            )
        )
    print(f"{args.artifact} on {args.data} ({r['n']} images), {args.threads} thread(s)")
    print(f"{'views':<8} {'AUROC':>7} {'one-thr':>8} {'station':>8} {'p50 ms':>8} {'x time':>7}")
    t_none = rows[0][4]
    for name, auc, one, station, ms in rows:
        auc_s = "n/a" if auc is None else f"{auc:.3f}"
        print(f"{name:<8} {auc_s:>7} {one:>8.3f} {station:>8.3f} {ms:>8.1f} {ms / t_none:>7.2f}")


if __name__ == "__main__":
    main()
