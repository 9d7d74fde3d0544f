"""Which epoch should training keep? Every epoch of one tile run, judged as training judges it
and scored on the held-out test regions.

    .venv/bin/python bench/epoch_rules.py DIR [DIR ...] [--threads 1]

DIR is a work folder kept by `bench/real_photos.py --only tiles --keep DIR --keep-epochs`:
`tiles-train/` (train + validation), `tiles-test/` (held-out regions), `tiles-model/` (the
artifact training exported) and `tiles-epochs/epoch-NN.pt` (each epoch's weights as served).

For each epoch the validation split is rebuilt exactly as training drew it, a temperature is
fitted on its logits as training fits the final one, and the epoch's validation figures (6-class
NLL, defect-vs-free NLL, AUROC) and test figures (AUROC, one-threshold coverage at <= 1% error,
the station's two-threshold coverage) are printed. Then each selection rule picks an epoch from
the validation figures alone and its test figures are shown, per split and as a mean:

* `nll`: lowest 6-class validation NLL (the default before `auto`);
* `defect_nll`: lowest defect-vs-free validation NLL (what `auto` applies on the tiles, whose
  validation splits hold both kinds);
* `auroc`: highest defect-vs-free validation AUROC (earliest on ties);
* `last`: the last epoch.

The picks ignore patience and training's 1e-4 improvement margin: they show what each rule
would keep had training run every epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import Predictor, compute_metrics, fit_temperature, scan_folder  # noqa: E402
from model.artifact import load_weights  # noqa: E402
from model.data import group_split, load_samples  # noqa: E402
from model.train import SELECT_ON, selection_score, validation_figures  # noqa: E402

# auto is defect_nll where validation holds both kinds (always on the tiles)
RULES = (*(r for r in SELECT_ON if r != "auto"), "last")


def logits(p: Predictor, images: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(
        [p.logits_from_prepared(images[i : i + 16]) for i in range(0, len(images), 16)]
    )


def one_split(work: Path) -> list[dict]:
    base = Predictor.load(work / "tiles-model")
    cfg = base.manifest.raw["training"]["config"]
    classes = list(base.manifest.classes)
    ok = classes.index(base.manifest.ok_class)
    scan = scan_folder(work / "tiles-train", cfg["ok_class"], require_ok=True, group_by="tiles")
    data = load_samples(scan, base.spec)
    if data.skipped or scan.classes != classes:
        sys.exit(f"{work}: the training folder no longer matches the artifact")
    _, va = group_split(
        data.labels, [s.group for s in data.samples], cfg["val_fraction"], cfg["seed"]
    )
    y_val = np.array(data.labels)[va]
    val_images = [data.images[i] for i in va]
    test_scan = scan_folder(work / "tiles-test", cfg["ok_class"], group_by="none")
    test = load_samples(test_scan, base.spec)
    if test_scan.classes != classes:
        sys.exit(f"{work}: test classes {test_scan.classes} differ from the model's {classes}")
    y_test = np.array(test.labels)
    rows = []
    for f in sorted((work / "tiles-epochs").glob("epoch-*.pt")):
        base.net.load_state_dict(load_weights(f), strict=True)
        p = Predictor(base.net, dataclasses.replace(base.manifest, test_time_flips=()), base.spec)
        zv = logits(p, val_images)
        t = fit_temperature(torch.from_numpy(zv), torch.from_numpy(y_val)).temperature
        zt = logits(p, test.images)
        m = compute_metrics(zt, y_test, classes, ok, t)
        figures = validation_figures(zv, y_val, ok)
        rows.append(
            {
                "epoch": int(f.stem.split("-")[1]),
                "val_nll": figures["val_nll"],
                "val_defect_nll": figures["val_defect_nll"],
                "val_auroc_defect": figures["val_auroc_defect"],
                "test_auroc": m["auroc_defect"],
                "test_one_thr": m["defect_coverage_at_1pct"]["coverage"],
                "test_station": m["station_coverage_at_1pct"]["coverage"],
            }
        )
    return rows


def pick(rows: list[dict], rule: str) -> dict:
    """The epoch a rule keeps: the earliest best (training also needs a gain over 1e-4)."""
    if rule == "last":
        return rows[-1]
    return min(rows, key=lambda r: (selection_score(r, rule), r["epoch"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen: dict[str, list[dict]] = {r: [] for r in RULES}
    for work in args.dirs:
        rows = one_split(work)
        print(f"== {work}")
        cols = list(rows[0])
        print(" ".join(f"{c:>14}" for c in cols))
        for r in rows:
            print(
                " ".join(
                    f"{r[c]:>14.4f}" if isinstance(r[c], float) else f"{r[c]:>14}" for c in cols
                )
            )
        for rule in RULES:
            r = pick(rows, rule)
            chosen[rule].append(r)
            print(
                f"   {rule:<10} epoch {r['epoch']:>2}: test AUROC {r['test_auroc']:.3f}, "
                f"one-thr {r['test_one_thr']:.3f}, station {r['test_station']:.3f}"
            )
        (work / "epoch_rules.json").write_text(json.dumps(rows, indent=1))
    print(f"== mean over {len(args.dirs)} split(s)")
    for rule in RULES:
        rs = chosen[rule]
        print(
            f"   {rule:<10} test AUROC {statistics.mean(r['test_auroc'] for r in rs):.3f}, "
            f"one-thr {statistics.mean(r['test_one_thr'] for r in rs):.3f}, "
            f"station {statistics.mean(r['test_station'] for r in rs):.3f}"
        )


if __name__ == "__main__":
    main()
