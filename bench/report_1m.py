"""Report over 1,000,000 decisions: the station's report (review.report) vs pandas + scikit-learn.

    .venv/bin/python bench/report_1m.py [--n 1000000] [--append 10000] [--db PATH] [--keep]

Fills a SQLite file (through the real migrations) by bulk insert: 14 days, 3 stations. Then
measures `build_report` (the whole JSON report over every station: gates and models are per
station, so this report names them and skips them), each run in a fresh child process so that
peak memory is its own:

1. cold: the first report, which builds the daily summaries (review/summary.py);
2. warm: the next one, nothing new since;
3. after a day: `--append` new items on a new day, with corrections and adjudications of items
   of the two days before (ids above the summaries' mark), then a report: the everyday case;
4. full: the same database through the full path (every aggregate over the whole history, the
   report before summaries); its JSON must equal the summed one's (floats to 1e-9);
5. one station's report (`--station L1`, a third of the items): its gates and models blocks
   read that station's evidence and predictions in full, not from the summaries;
6. the baseline on the same database: the rows loaded with pandas, effective decisions resolved
   with pandas, and matrix / kappa / pass-fail / rates / risk-coverage / per-inspector / per-day
   computed with pandas and scikit-learn; its main numbers must equal the report's.

Prints time and peak RSS of each and the ratios against the baseline. The baseline is skipped,
with a line saying so, when pandas or scikit-learn is not installed (they are not dependencies
of the product).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ["ok", "crack", "scratch", "dent", "stain", "missing"]
CHUNK = 100_000


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# --------------------------------------------------------------------------- fill


def fill(path: Path, n: int, seed: int = 0) -> dict[str, float]:
    """Bulk insert n items, each with a champion prediction, a human decision and a disposition;
    plus 10% challenger predictions, 2% corrected decisions and 1% adjudications."""
    import numpy as np

    from db.engine import make_engine
    from db.migrate import upgrade

    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, backup=False)
    engine.dispose()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")  # a bench fill, not a record anyone depends on
    con.execute("PRAGMA journal_mode=WAL")
    now = "2026-11-27 00:00:00.000000"
    con.executemany(
        "INSERT INTO station (id, name, created_at) VALUES (?, ?, ?)",
        [(i + 1, f"L{i + 1}", now) for i in range(3)],
    )
    con.executemany(
        "INSERT INTO operator (id, name, role, secret_hash, active, created_at) VALUES (?,?,?,?,?,?)",
        [(i + 1, f"insp{i + 1:02d}", "inspector", "x", 1, now) for i in range(12)]
        + [(13, "qa", "qa_lead", "x", 1, now)],
    )
    con.executemany(
        "INSERT INTO model_version (id, name, version, sha256, architecture, artifact_path, classes,"
        " ok_class, thresholds, temperature, metrics, created_at, registered_at)"
        " VALUES (?,?,?,?,'','',?, 'ok','{}',1.0,'{}',?,?)",
        [
            (1, "defect", "v1", "a" * 64, json.dumps(CLASSES), now, now),
            (2, "defect", "v2", "b" * 64, json.dumps(CLASSES), now, now),
        ],
    )
    start = datetime(2026, 11, 1, tzinfo=UTC)
    hd_id = pred_id = disp_id = adj_id = 0
    levels = np.array(["shadow", "assist", "partial"])
    for lo in range(0, n, CHUNK):
        m = min(CHUNK, n - lo)
        ids = np.arange(lo + 1, lo + m + 1)
        truth_def = rng.random(m) < 0.08
        truth = np.where(truth_def, rng.choice(CLASSES[1:], m), "ok")
        model = np.where(rng.random(m) < 0.95, truth, rng.choice(CLASSES, m))
        human = np.where(rng.random(m) < 0.97, truth, rng.choice(CLASSES, m))
        conf = np.clip(np.where(model == truth, rng.beta(12, 1, m), rng.beta(3, 2, m)), 0.2, 1.0)
        p_def = np.where(model == "ok", 1 - conf, conf)
        level = levels[rng.choice(3, m, p=[0.4, 0.4, 0.2])]
        blind = (level == "assist") & (rng.random(m) < 0.1)
        audit = (level == "partial") & (rng.random(m) < 0.05)
        shown = (level == "assist") & ~blind
        station = rng.integers(1, 4, m)
        op = rng.integers(1, 13, m)
        secs = (ids * (14 * 86400 / n)).astype(np.int64)
        times = [
            (start + timedelta(seconds=int(s))).strftime("%Y-%m-%d %H:%M:%S.000000") for s in secs
        ]
        con.executemany(
            "INSERT INTO item (id, station_id, captured_at, image_sha256, image_path, width, height,"
            " stats, source, ground_truth, golden, trigger_version, guard_version, guard_passed,"
            " guard_reason) VALUES (?,?,?,?,'',0,0,'{}','bench',NULL,0,'','',1,'')",
            zip(
                ids.tolist(),
                station.tolist(),
                times,
                (f"{i:064x}" for i in ids.tolist()),
                strict=True,
            ),
        )
        preds = []
        for k in range(m):
            pred_id += 1
            preds.append(
                (
                    pred_id,
                    int(ids[k]),
                    1,
                    "champion",
                    str(model[k]),
                    float(p_def[k]),
                    float(conf[k]),
                )
            )
        chall = np.nonzero(rng.random(m) < 0.1)[0]
        for k in chall.tolist():
            pred_id += 1
            preds.append((pred_id, int(ids[k]), 2, "challenger", str(truth[k]), 0.5, 0.6))
        con.executemany(
            "INSERT INTO prediction (id, item_id, model_version_id, slot, label, probabilities,"
            " p_defect, confidence, created_at) VALUES (?,?,?,?,?,'{}',?,?,'" + now + "')",
            preds,
        )
        hds, disps = [], []
        decision_ms = rng.uniform(400, 4000, m)
        for k in range(m):
            hd_id += 1
            hds.append(
                (
                    hd_id,
                    int(ids[k]),
                    int(op[k]),
                    str(human[k]),
                    times[k],
                    float(decision_ms[k]),
                    int(shown[k]),
                    int(blind[k]),
                    int(audit[k]),
                    None,
                )
            )
            disp_id += 1
            disps.append((disp_id, int(ids[k]), str(human[k]), "human", str(level[k]), hd_id))
        for k in np.nonzero(rng.random(m) < 0.02)[0].tolist():
            hd_id += 1
            hds.append(
                (
                    hd_id,
                    int(ids[k]),
                    int(op[k]),
                    str(truth[k]),
                    times[k],
                    500.0,
                    int(shown[k]),
                    int(blind[k]),
                    int(audit[k]),
                    None,
                )
            )
        con.executemany(
            "INSERT INTO human_decision (id, item_id, operator_id, label, defect_types, decided_at,"
            " decision_ms, suggestion_shown, blind, audit, golden, supersedes_id)"
            " VALUES (?,?,?,?,'[]',?,?,?,?,?,0,?)",
            hds,
        )
        con.executemany(
            "INSERT INTO disposition (id, item_id, final_label, decided_by, level, threshold_version,"
            " human_decision_id, created_at) VALUES (?,?,?,?,?,'',?,'" + now + "')",
            disps,
        )
        adj = np.nonzero((human != model) & (rng.random(m) < 0.5))[0]
        rows = []
        for k in adj.tolist():
            adj_id += 1
            rows.append((adj_id, int(ids[k]), 13, str(truth[k]), "bench", now))
        con.executemany(
            "INSERT INTO adjudication (id, item_id, operator_id, label, reason_code, note, created_at)"
            " VALUES (?,?,?,?,?,'',?)",
            rows,
        )
        con.commit()
    # Corrections: each extra decision supersedes the item's first one.
    con.execute(
        "UPDATE human_decision SET supersedes_id = (SELECT min(h2.id) FROM human_decision h2"
        " WHERE h2.item_id = human_decision.item_id) WHERE id IN (SELECT max(id) FROM human_decision"
        " GROUP BY item_id HAVING count(*) > 1)"
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return {"fill_s": time.perf_counter() - t0, "decisions": hd_id, "predictions": pred_id}


def append_day(path: Path, n: int, seed: int = 1) -> dict[str, int]:
    """A day's work after the history: n new items on the next day (champion prediction, human
    decision, disposition each), n/50 corrections and n/20 adjudications of items captured in
    the two days before (each with its new disposition, as the station writes them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    top = {
        t: con.execute(f"SELECT coalesce(max(id), 0) FROM {t}").fetchone()[0]
        for t in ("item", "prediction", "human_decision", "disposition", "adjudication")
    }
    last = con.execute("SELECT max(captured_at) FROM item").fetchone()[0]
    start = datetime.fromisoformat(last[:10]) + timedelta(days=1)
    now = "2026-11-27 00:00:00.000000"
    ids = list(range(top["item"] + 1, top["item"] + n + 1))
    times = [
        (start + timedelta(seconds=int(k * 86400 / n))).strftime("%Y-%m-%d %H:%M:%S.000000")
        for k in range(n)
    ]
    labels = rng.choice(CLASSES, n, p=[0.92, 0.02, 0.02, 0.02, 0.01, 0.01])
    con.executemany(
        "INSERT INTO item (id, station_id, captured_at, image_sha256, image_path, width, height,"
        " stats, source, ground_truth, golden, trigger_version, guard_version, guard_passed,"
        " guard_reason) VALUES (?,?,?,?,'',0,0,'{}','bench',NULL,0,'','',1,'')",
        [(i, i % 3 + 1, t, f"{i:064x}") for i, t in zip(ids, times, strict=True)],
    )
    con.executemany(
        "INSERT INTO prediction (id, item_id, model_version_id, slot, label, probabilities,"
        " p_defect, confidence, created_at) VALUES (?,?,1,'champion',?,'{}',0.5,?,?)",
        [
            (top["prediction"] + k + 1, i, str(lab), float(c), now)
            for k, (i, lab, c) in enumerate(zip(ids, labels, rng.uniform(0.5, 1, n), strict=True))
        ],
    )
    hd = top["human_decision"]
    con.executemany(
        "INSERT INTO human_decision (id, item_id, operator_id, label, defect_types, decided_at,"
        " decision_ms, suggestion_shown, blind, audit, golden, supersedes_id)"
        " VALUES (?,?,?,?,'[]',?,900.0,0,1,0,0,NULL)",
        [
            (hd + k + 1, i, i % 12 + 1, str(lab), t)
            for k, (i, lab, t) in enumerate(zip(ids, labels, times, strict=True))
        ],
    )
    disp = top["disposition"]
    rows = [
        (disp + k + 1, i, str(lab), "human", "assist", hd + k + 1)
        for k, (i, lab) in enumerate(zip(ids, labels, strict=True))
    ]
    hd += n
    disp += n
    # The two days before: items from the top of the history (it was filled in capture order).
    recent = rng.choice(
        np.arange(top["item"] - top["item"] // 7, top["item"] + 1), n // 50 + n // 20, replace=False
    )
    fixes, adjs = recent[: n // 50].tolist(), recent[n // 50 :].tolist()
    corrections = []
    for i in fixes:
        (prev,) = con.execute(
            "SELECT max(id) FROM human_decision WHERE item_id = ? AND id NOT IN"
            " (SELECT supersedes_id FROM human_decision WHERE item_id = ? AND supersedes_id IS NOT NULL)",
            (i, i),
        ).fetchone()
        hd += 1
        disp += 1
        corrections.append((hd, i, i % 12 + 1, "scratch", now, prev))
        rows.append((disp, i, "scratch", "human", "assist", hd))
    con.executemany(
        "INSERT INTO human_decision (id, item_id, operator_id, label, defect_types, decided_at,"
        " decision_ms, suggestion_shown, blind, audit, golden, supersedes_id)"
        " VALUES (?,?,?,?,'[]',?,500.0,0,0,0,0,?)",
        corrections,
    )
    con.executemany(
        "INSERT INTO adjudication (id, item_id, operator_id, label, reason_code, note, created_at)"
        " VALUES (?,?,13,?,'bench','',?)",
        [(top["adjudication"] + k + 1, i, "dent", now) for k, i in enumerate(adjs)],
    )
    con.executemany(
        "INSERT INTO disposition (id, item_id, final_label, decided_by, level, threshold_version,"
        " human_decision_id, created_at) VALUES (?,?,?,?,?,'',?,'" + now + "')",
        rows,
    )
    con.commit()
    con.close()
    return {"items": n, "corrections": len(fixes), "adjudications": len(adjs)}


# --------------------------------------------------------------------------- the two contenders


def measure_sql(
    path: Path, *, full: bool = False, out: Path | None = None, station: str | None = None
) -> dict[str, object]:
    from db.engine import make_engine
    from review import evidence_cache, summary
    from review.labels import LabelSet
    from review.query import ReportFilters
    from review.report import build_report, dumps

    if full:  # the report as it was made before the daily summaries and the kept evidence
        summary.applies = lambda conn, filters: False  # type: ignore[assignment]
        evidence_cache.basis_of = lambda conn, filters: None  # type: ignore[assignment]
    engine = make_engine(f"sqlite:///{path}")
    base = _peak_mb()
    stage_s: dict[str, float] = {}
    mark = [time.perf_counter(), ""]

    def on_stage(what: str) -> None:
        now = time.perf_counter()
        if mark[1]:
            stage_s[str(mark[1])] = round(now - float(mark[0]), 2)
        mark[:] = [now, what]

    t0, c0 = time.perf_counter(), _cpu_s()
    rep = build_report(
        engine,
        ReportFilters(station=station),
        labels=LabelSet.of(CLASSES[0], CLASSES[1:]),
        on_stage=on_stage,
    )
    on_stage("")
    text = dumps(rep)
    secs = time.perf_counter() - t0
    if out is not None:
        out.write_text(text)
    return {
        "seconds": secs,
        "cpu_seconds": _cpu_s() - c0,
        "peak_rss_mb": _peak_mb(),
        "rss_growth_mb": _peak_mb() - base,
        "json_bytes": len(text),
        "stages_s": stage_s,
        # The headline is computed on uniform evidence only; the pandas side computes over all
        # paired items, which the report keeps in by_basis.all.
        "counts": {k: rep["counts"][k] for k in ("items", "paired", "evidence")},
        "matrix": rep["by_basis"]["all"]["matrix"]["counts"],
        "kappa": rep["by_basis"]["all"]["kappa"]["value"],
        "escape": [
            rep["by_basis"]["all"]["escape_rate"]["k"],
            rep["by_basis"]["all"]["escape_rate"]["n"],
        ],
    }


def measure_pandas(path: Path) -> dict[str, object]:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    from review import stats as S

    base = _peak_mb()
    t0, c0 = time.perf_counter(), _cpu_s()
    con = sqlite3.connect(path)
    item = pd.read_sql_query("SELECT id AS item_id, station_id, captured_at FROM item", con)
    hd = pd.read_sql_query(
        "SELECT id, item_id, operator_id, label, decided_at, decision_ms, suggestion_shown, blind,"
        " audit, golden, supersedes_id FROM human_decision",
        con,
    )
    pred = pd.read_sql_query(
        "SELECT id, item_id, label, confidence, p_defect FROM prediction"
        " WHERE slot = 'champion' AND label IS NOT NULL",
        con,
    )
    disp = pd.read_sql_query("SELECT id, item_id, level FROM disposition", con)
    adj = pd.read_sql_query("SELECT id, item_id, label FROM adjudication", con)
    ops = pd.read_sql_query("SELECT id AS operator_id, name AS inspector FROM operator", con)
    con.close()
    hd = hd[~hd["id"].isin(hd["supersedes_id"].dropna())]
    hd = hd.loc[hd.groupby("item_id")["id"].idxmax()]
    pred = pred.loc[pred.groupby("item_id")["id"].idxmax()]
    disp = disp.loc[disp.groupby("item_id")["id"].idxmax()]
    adj = adj.loc[adj.groupby("item_id")["id"].idxmax()]
    f = (
        item.merge(hd.rename(columns={"label": "human"}), on="item_id", how="left")
        .merge(
            pred.rename(columns={"label": "model"})[["item_id", "model", "confidence", "p_defect"]],
            on="item_id",
            how="left",
        )
        .merge(disp[["item_id", "level"]], on="item_id", how="left")
        .merge(
            adj.rename(columns={"label": "adjudicated"})[["item_id", "adjudicated"]],
            on="item_id",
            how="left",
        )
        .merge(ops, on="operator_id", how="left")
    )
    paired = f[f["human"].notna() & f["model"].notna()].copy()
    unbiased = (paired["suggestion_shown"] == 0) & (
        (paired["level"] == "shadow")
        | (paired["blind"] == 1)
        | (paired["audit"] == 1)
        | (paired["golden"] == 1)
    )
    ref = paired["adjudicated"].fillna(paired["human"])
    cm = confusion_matrix(paired["human"], paired["model"], labels=CLASSES)
    kappa = float(cohen_kappa_score(paired["human"], paired["model"], labels=CLASSES))
    model_pass = paired["model"] == "ok"
    ref_def = ref != "ok"
    rates = S.error_rates(
        {
            "ref_ok_model_ok": int((~ref_def & model_pass).sum()),
            "ref_defect_model_ok": int((ref_def & model_pass).sum()),
            "ref_ok_model_defect": int((~ref_def & ~model_pass).sum()),
            "ref_defect_model_defect": int((ref_def & ~model_pass).sum()),
        }
    )
    hist = S.score_histogram(
        np.floor(paired["confidence"].to_numpy() * 10000) / 10000,
        (ref_def & model_pass).to_numpy(),
        model_pass.to_numpy(),
    )
    S.risk_coverage_curve(hist)
    S.select_threshold(hist, 0.005)
    paired["agree"] = paired["human"] == paired["model"]
    paired.groupby("inspector").agg(
        n=("agree", "size"), agree=("agree", "sum"), ms=("decision_ms", "mean")
    )
    paired.groupby(pd.to_datetime(paired["captured_at"]).dt.date)["agree"].agg(["size", "sum"])
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "cpu_seconds": _cpu_s() - c0,
        "peak_rss_mb": _peak_mb(),
        "rss_growth_mb": _peak_mb() - base,
        "counts": {"items": len(f), "paired": len(paired), "evidence": int(unbiased.sum())},
        "matrix": cm.tolist(),
        "kappa": kappa,
        "escape": [rates["escape_rate"].k, rates["escape_rate"].n],
    }


def _child(
    mode: str, path: Path, out: Path | None = None, station: str | None = None
) -> dict[str, object]:
    extra = [] if out is None else ["--out", str(out)]
    extra += [] if station is None else ["--station", station]
    run = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--db", str(path), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _line(name: str, r: Mapping[str, Any]) -> str:
    return (
        f"{name:<34} {r['seconds']:6.2f} s wall, {r['cpu_seconds']:6.2f} s CPU, "
        f"peak RSS {r['peak_rss_mb']:5.0f} MiB (+{r['rss_growth_mb']:.0f} MiB)"
    )


def _same(a: Any, b: Any) -> bool:
    """Equal JSON, floats to 1e-9 relative, generated_at aside."""
    if isinstance(a, dict):
        keys = set(a) - {"generated_at"}
        return keys == set(b) - {"generated_at"} and all(_same(a[k], b[k]) for k in keys)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _agree(sql: Mapping[str, Any], pd_: Mapping[str, Any]) -> bool:
    return bool(
        sql["counts"] == pd_["counts"]
        and sql["matrix"] == pd_["matrix"]
        and sql["escape"] == pd_["escape"]
        and abs(float(sql["kappa"]) - float(pd_["kappa"])) < 1e-9
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--append", type=int, default=10_000, help="items of the day added after")
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the database file")
    ap.add_argument("--measure", choices=["sql", "full", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--station", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        if args.measure == "pandas":
            print(json.dumps(measure_pandas(args.db)))
        else:
            full = args.measure == "full"
            print(json.dumps(measure_sql(args.db, full=full, out=args.out, station=args.station)))
        return

    tmp = tempfile.TemporaryDirectory(prefix="report_1m-")
    work = Path(tmp.name)
    path = args.db or work / "bench.db"
    if not path.exists():
        print(f"filling {path} with {args.n:,} items ...", flush=True)
        info = fill(path, args.n)
        print(
            f"  {info['decisions']:,} human decisions, {info['predictions']:,} predictions in "
            f"{info['fill_s']:.1f} s ({os.path.getsize(path) / 2**20:.0f} MiB)",
            flush=True,
        )
    with sqlite3.connect(path) as con:  # cold means cold: no summaries yet
        con.execute("DELETE FROM report_summary")
        con.execute("DELETE FROM report_summary_mark")
    cold = _child("sql", path)
    print(_line("cold (builds the daily summaries)", cold), flush=True)
    warm = _child("sql", path)
    print(_line("warm (nothing new)", warm), flush=True)
    added = append_day(path, args.append)
    day = _child("sql", path, work / "summed.json")
    print(
        _line("after a day", day)
        + f"\n  ({added['items']:,} new items, {added['corrections']} corrections and "
        f"{added['adjudications']} adjudications of the two days before)",
        flush=True,
    )
    full = _child("full", path, work / "full.json")
    print(_line("full path (before the summaries)", full), flush=True)
    same = _same(
        json.loads((work / "summed.json").read_text()), json.loads((work / "full.json").read_text())
    )
    print(f"summed report equals the full one: {same}; counts {day['counts']}")
    # One station's report also judges its gates (on the station's kept gate evidence,
    # review/evidence_cache.py, brought up to date first: here the day's items) and shows its
    # pipeline stages (summed from the summaries); then the same with the kept evidence deleted
    # (its first gate check builds it), then once more with nothing new.
    one = _child("sql", path, station="L1")
    print(
        _line("one station (gates, models: L1)", one) + f"\n  seconds per stage: {one['stages_s']}"
    )
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM gate_evidence_row")
        con.execute("DELETE FROM gate_evidence_mark")
    first = _child("sql", path, station="L1")
    print(_line("one station, its kept evidence built", first))
    again = _child("sql", path, station="L1", out=work / "one.json")
    print(_line("one station, nothing new", again) + f"\n  seconds per stage: {again['stages_s']}")
    one_full = _child("full", path, work / "one_full.json", station="L1")
    print(_line("one station, full path (nothing kept)", one_full))
    print(
        "one station equals its full path: "
        f"{_same(json.loads((work / 'one.json').read_text()), json.loads((work / 'one_full.json').read_text()))}"
    )
    try:
        import pandas  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        print(
            f"SKIP baseline: pandas / scikit-learn not installed ({e.name}); "
            "pip install pandas scikit-learn to compare"
        )
    else:
        pd_ = _child("pandas", path)
        print(_line("pandas + scikit-learn baseline", pd_))
        print(f"numbers agree with the baseline: {_agree(day, pd_) and _agree(full, pd_)}")
        for name, r in (("after a day", day), ("warm", warm), ("cold", cold), ("full path", full)):
            print(
                f"ratio, {name}: {pd_['seconds'] / r['seconds']:.2f}x faster (wall), "
                f"{pd_['cpu_seconds'] / r['cpu_seconds']:.2f}x (CPU), peak RSS "
                f"{pd_['peak_rss_mb'] / r['peak_rss_mb']:.1f}x lower"
            )
    if args.keep or args.db:
        print(f"database kept at {path}")
        if not args.db:
            kept = Path(tempfile.gettempdir()) / "report_1m.db"
            path.replace(kept)
            print(f"  (moved to {kept})")
    tmp.cleanup()


if __name__ == "__main__":
    main()
