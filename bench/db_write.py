"""Durable writes: one inspected item (item + prediction + human decision + disposition) per
transaction, through the project's repository functions versus raw sqlite3 with the same pragmas
and the same rows, in one run on one machine. Target: ours >= 0.8x raw.

    .venv/bin/python bench/db_write.py [--n 400]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from db import driver
from db.engine import make_engine, session_scope
from db.migrate import upgrade
from db.models import DecidedBy, Disposition, HumanDecision, Item, Level, Prediction, Role, Slot
from db.repo import add_operator, get_or_create_station, record_inspection

USABLE = driver.usable
PROBS = {"ok": 0.9, "crack": 0.02, "scratch": 0.03, "dent": 0.02, "stain": 0.02, "missing": 0.01}


def bench_repo(url: str, n: int, core: bool = False) -> tuple[float, float]:
    """(inspections/s with the four SQLModel objects built in the loop, as the station does;
    inspections/s of the transactions alone). `core`: through SQLAlchemy Core inserts, the
    path before db/driver.py (and the one PostgreSQL takes)."""
    driver.usable = (lambda _conn: False) if core else USABLE  # type: ignore[assignment]
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as s:
        station_id = get_or_create_station(session=s, name="B1").id
        operator_id = add_operator(session=s, name="b", role=Role.inspector, secret_hash="x").id
    building = writing = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        rows = dict(
            item=Item(
                station_id=station_id,
                image_sha256=f"{i:064x}",
                image_path="x",
                width=1280,
                height=720,
                brightness=100.0,
                contrast=40.0,
                sharpness=300.0,
                clipped_share=0.0,
                source="bench",
            ),
            predictions=[
                Prediction(
                    slot=Slot.champion,
                    label="ok",
                    probabilities=PROBS,
                    p_defect=0.1,
                    confidence=0.9,
                    latency_ms=40.0,
                )
            ],
            decision=HumanDecision(operator_id=operator_id, label="ok", decision_ms=900.0),
            disposition=Disposition(
                final_label="ok", decided_by=DecidedBy.human, level=Level.shadow
            ),
        )
        t1 = time.perf_counter()
        with session_scope(engine) as s:
            record_inspection(session=s, **rows)  # type: ignore[arg-type]
        t2 = time.perf_counter()
        building += t1 - t0
        writing += t2 - t1
    engine.dispose()
    return n / (building + writing), n / writing


def bench_raw(url_path: Path, schema_from: Path, n: int) -> float:
    """Same schema (copied from a migrated file), same pragmas, hand-written INSERTs."""
    src = sqlite3.connect(schema_from)
    ddl = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    src.close()
    conn = sqlite3.connect(url_path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=10000"):
        conn.execute(f"PRAGMA {pragma}")
    for stmt in ddl:
        conn.execute(stmt)
    now = datetime.now(UTC).isoformat()
    conn.execute("INSERT INTO station (name, created_at) VALUES ('B1', ?)", (now,))
    conn.execute(
        "INSERT INTO operator (name, role, secret_hash, active, created_at) "
        "VALUES ('b', 'inspector', 'x', 1, ?)",
        (now,),
    )
    probs = json.dumps(PROBS)
    t0 = time.perf_counter()
    for i in range(n):
        now = datetime.now(UTC).isoformat()
        conn.execute("BEGIN")
        cur = conn.execute(
            "INSERT INTO item (station_id, captured_at, image_sha256, image_path, width, height, "
            "brightness, contrast, sharpness, clipped_share, stats, source, golden, "
            "trigger_version, guard_version, guard_passed, guard_reason) "
            "VALUES (1, ?, ?, 'x', 1280, 720, 100.0, 40.0, 300.0, 0.0, '{}', 'bench', 0, '', '', 1, '')",
            (now, f"{i:064x}"),
        )
        item_id = cur.lastrowid
        cur = conn.execute(
            "INSERT INTO prediction (item_id, slot, label, probabilities, p_defect, confidence, "
            "latency_ms, created_at) VALUES (?, 'champion', 'ok', ?, 0.1, 0.9, 40.0, ?)",
            (item_id, probs, now),
        )
        pred_id = cur.lastrowid
        cur = conn.execute(
            "INSERT INTO human_decision (item_id, operator_id, label, defect_types, decided_at, "
            "decision_ms, suggestion_shown, blind, audit, golden) "
            "VALUES (?, 1, 'ok', '[]', ?, 900.0, 0, 0, 0, 0)",
            (item_id, now),
        )
        conn.execute(
            "INSERT INTO disposition (item_id, final_label, decided_by, level, threshold_version, "
            "human_decision_id, prediction_id, created_at) "
            "VALUES (?, 'ok', 'human', 'shadow', '', ?, ?, ?)",
            (item_id, cur.lastrowid, pred_id, now),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="transactions per contender per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median is kept)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to put the files (a real disk)"
    )
    args = parser.parse_args()
    rates: dict[str, list[float]] = {k: [] for k in ("ours", "ours_write", "core", "raw")}
    # fsync time dominates and drifts with whatever else the disk is doing, so the contenders
    # take turns, each on a fresh file, the order rotating per round, and medians are compared.
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            tmp_path = Path(tmp)
            schema = tmp_path / "schema.db"
            upgrade(make_engine(f"sqlite:///{schema}"))
            runs = ["ours", "core", "raw"]
            for who in runs[r % 3 :] + runs[: r % 3]:
                if who == "raw":
                    rates["raw"].append(bench_raw(tmp_path / "raw.db", schema, args.n))
                elif who == "core":
                    url = f"sqlite:///{tmp_path / 'core.db'}"
                    rates["core"].append(bench_repo(url, args.n, core=True)[0])
                else:
                    both = bench_repo(f"sqlite:///{tmp_path / 'ours.db'}", args.n)
                    rates["ours"].append(both[0])
                    rates["ours_write"].append(both[1])
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"durable inspections/s (WAL, synchronous=FULL, one transaction each, "
        f"n={args.n} x {args.rounds} rounds, medians)"
    )
    names = {
        "ours": "record_inspection, driver (objects built)",
        "ours_write": "record_inspection, driver (write only)",
        "core": "record_inspection, Core (before)",
        "raw": "raw sqlite3",
    }
    for k, label in names.items():
        print(f"  {label:<42}: {med[k]:8.1f}/s   rounds: {', '.join(f'{x:.0f}' for x in rates[k])}")
    ratio = med["ours"] / med["raw"]
    print(
        f"  ratio ours/raw: {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'}); "
        f"write only {med['ours_write'] / med['raw']:.2f}; before (Core) "
        f"{med['core'] / med['raw']:.2f}; driver vs Core {med['ours'] / med['core']:.2f}x"
    )


if __name__ == "__main__":
    main()
