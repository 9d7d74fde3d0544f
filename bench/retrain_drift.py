"""Does `station model retrain` favour the challenger when the line has drifted, and the champion
when it has not? (issue 20's "done when", measured on the synthetic line)

For each scenario, a fresh data folder: `station simulate` runs N shadow phones (known truth on the
synthetic line) with the bundled model as champion, the line drifted from the first item or not;
then station.retrain.retrain exports, trains from the champion, compares both on the same held-out
images and deploys the challenger. Prints the verdict, the two accuracies and McNemar's counts.

    .venv/bin/python bench/retrain_drift.py [--items 1200] [--epochs 3] [--size 320x184]
        [--drift defect_style=v2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(data: Path, items: int, drift: str | None, epochs: int, size: tuple[int, int]) -> dict:
    from db.engine import session_scope
    from db.models import Role
    from db.repo import find_operator
    from station.cli.common import open_database
    from station.pipeline.testing import ensure_operator
    from station.retrain import retrain
    from station.settings import Settings

    env = {**os.environ, "STATION_DATA_DIR": str(data)}
    cmd = [str(ROOT / ".venv/bin/station"), "simulate", "--items", str(items), "--level", "shadow"]
    if drift:
        cmd += ["--drift", f"{drift}@0"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    settings = Settings(data_dir=data)
    engine = open_database(settings)
    ensure_operator(engine, "eve", Role.engineer)
    with session_scope(engine) as s:
        eve = find_operator(session=s, name="eve")
    started = time.perf_counter()
    done = retrain(
        engine,
        settings,
        out=data / "models" / "retrained",
        operator=eve,
        station_name="sim",
        epochs=epochs,
        input_size=size,
    )
    c = done.comparison
    return {
        "seconds": time.perf_counter() - started,
        "train": sum(done.export.counts()["train"].values()),
        "held_out": c["images"],
        "champion": c["champion"]["accuracy"]["rate"],
        "challenger": c["challenger"]["accuracy"]["rate"],
        "mcnemar": c["mcnemar"],
        "verdict": c["verdict"],
        "recall": {
            cls: (c["champion"]["recall"][cls]["rate"], c["challenger"]["recall"][cls]["rate"])
            for cls in c["champion"]["recall"]
        },
        "missed": {
            cls: (c["champion"]["missed"][cls]["rate"], c["challenger"]["missed"][cls]["rate"])
            for cls in c["champion"]["missed"]
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", default="320x184")
    ap.add_argument("--drift", default="defect_style=v2")
    ap.add_argument("--only-drift", action="store_true", help="Skip the scenario without drift.")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    scenarios = [("no drift", None), (f"drift {a.drift}", a.drift)]
    for name, drift in scenarios[1:] if a.only_drift else scenarios:
        with tempfile.TemporaryDirectory() as tmp:
            r = run(Path(tmp), a.items, drift, a.epochs, size)  # type: ignore[arg-type]
        m = r["mcnemar"]
        print(
            f"{name:<28} train {r['train']:>5}  held out {r['held_out']:>4}  "
            f"accuracy champion {100 * r['champion']:.1f}%  challenger {100 * r['challenger']:.1f}%  "
            f"McNemar {m['champion_right_challenger_wrong']}/{m['challenger_right_champion_wrong']} "
            f"p={m['p_value']:.3g}  -> {r['verdict']['favours']}  ({r['seconds']:.0f} s)\n"
            f"    {r['verdict']['why']}\n    recall champion/challenger: "
            + ", ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in r["recall"].items())
            + "\n    passed as ok champion/challenger: "
            + ", ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in r["missed"].items())
        )


if __name__ == "__main__":
    main()
