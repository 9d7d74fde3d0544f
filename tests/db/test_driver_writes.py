"""The inspection record written through the SQLite driver (db/driver.py) is the record the
SQLAlchemy Core path wrote: the same values, the same storage classes, the same chain."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from db import driver
from db.chain import verify
from db.engine import make_engine, session_scope
from db.errors import IntegrityProblem
from db.migrate import upgrade
from db.models import (
    AdjudicationRequest,
    DecidedBy,
    Disposition,
    HumanDecision,
    Item,
    Level,
    Prediction,
    Role,
    Slot,
)
from db.repo import (
    add_operator,
    get_or_create_station,
    record_inspection,
    record_inspection_rows,
    row_values,
)

T0 = datetime(2026, 12, 2, 8, 30, 15, 123456, tzinfo=UTC)
TABLES = ("item", "prediction", "human_decision", "disposition")


def write(path: Path, n: int, *, as_rows: bool = False) -> None:
    """`n` inspections, through record_inspection (objects) or, `as_rows`, through
    record_inspection_rows from column values (what the station's recorder writes)."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, backup=False)
    with session_scope(engine) as s:
        station = get_or_create_station(session=s, name="A1").id
        operator = add_operator(session=s, name="ana", role=Role.inspector, secret_hash="x").id
    for i in range(n):
        at = T0 + timedelta(seconds=i)
        item = dict(
            station_id=station,
            captured_at=at,
            image_sha256=f"{i:064x}",
            image_path=f"images/{i}.png",
            width=1280,
            height=720,
            brightness=101.5 + i,
            contrast=40.25,
            sharpness=300.0,
            clipped_share=0.001,
            stats={"mean": [1.5, 2.25], "note": "é"},
            source="camera",
        )
        predictions = [
            dict(
                slot=Slot.champion,
                label="scratch" if i % 2 else "ok",
                probabilities={"ok": 0.1 + i / 100, "scratch": 0.9 - i / 100},
                p_defect=0.9 - i / 100,
                confidence=0.9,
                latency_ms=12.5,
                embedding=[0.25, -1.0, 3.0] if i % 2 else None,
                created_at=at,
            ),
            dict(
                slot=Slot.challenger,
                label="ok",
                probabilities={"ok": 0.6, "scratch": 0.4},
                p_defect=0.4,
                confidence=0.6,
                latency_ms=30.0,
                created_at=at,
            ),
        ]
        # defect_types, blind, audit, golden, supersedes_id left to the model's defaults
        decision = dict(
            operator_id=operator,
            label="scratch",
            decided_at=at,
            decision_ms=812.0,
            suggestion_shown=bool(i % 2),
        )
        disposition = dict(
            final_label="scratch", decided_by=DecidedBy.human, level=Level.assist, created_at=at
        )
        with session_scope(engine) as s:
            if as_rows:
                record_inspection_rows(
                    conn=s.connection(),
                    item=item,
                    predictions=predictions,
                    decision=decision,
                    disposition=disposition,
                )
            else:
                record_inspection(
                    session=s,
                    item=Item(**item),
                    predictions=[Prediction(**p) for p in predictions],
                    decision=HumanDecision(**decision),
                    disposition=Disposition(**disposition),
                )
    engine.dispose()


def stored(path: Path, table: str) -> list[tuple]:
    """Every value with its SQLite storage class, as the file holds it."""
    con = sqlite3.connect(path)
    cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    where = ""
    if table == "audit_chain":
        cols.remove("created_at")  # when the entry was appended: the clock, not the record
        where = "WHERE chain = 'station:1'"  # the operators' chain hashes their creation time
    sel = ", ".join(f"{c}, typeof({c})" for c in cols)
    rows = con.execute(f"SELECT {sel} FROM {table} {where} ORDER BY id").fetchall()
    con.close()
    return rows


def test_driver_and_core_paths_store_the_same_record(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "driver.db", 4)
    with monkeypatch.context() as m:
        m.setattr(driver, "usable", lambda _conn: False)  # the Core path, as on PostgreSQL
        write(tmp_path / "core.db", 4)
    for table in (*TABLES, "audit_chain"):
        fast, core = stored(tmp_path / "driver.db", table), stored(tmp_path / "core.db", table)
        assert fast and fast == core, table
    # the chain the driver wrote verifies like any other
    engine = make_engine(f"sqlite:///{tmp_path / 'driver.db'}")
    with engine.connect() as conn:
        v = verify(conn)
    assert v.intact, v.problems
    assert v.rows_checked >= 8


def test_rows_from_column_values_store_what_objects_store(tmp_path: Path) -> None:
    """The recorder writes column values, no SQLModel objects: the columns left out take the
    very defaults an object would have had, and the chain hashes the same values."""
    write(tmp_path / "objects.db", 3)
    write(tmp_path / "rows.db", 3, as_rows=True)
    for table in (*TABLES, "audit_chain"):
        objs, rows = stored(tmp_path / "objects.db", table), stored(tmp_path / "rows.db", table)
        assert objs and objs == rows, table
    engine = make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    with engine.connect() as conn:
        assert verify(conn).intact


def test_row_values_fill_the_models_defaults_and_refuse_unknown_columns() -> None:
    got = row_values(HumanDecision, {"item_id": 1, "operator_id": 2, "label": "ok"})
    obj = HumanDecision(item_id=1, operator_id=2, label="ok")
    assert {k: v for k, v in got.items() if k != "decided_at"} == {
        c: getattr(obj, c) for c in got if c != "decided_at"
    }
    assert isinstance(got["decided_at"], datetime) and got["decided_at"].tzinfo is not None
    # a mutable default is the row's own, never the class's shared one
    got["defect_types"].append("x")
    assert row_values(HumanDecision, {"label": "ok"})["defect_types"] == []
    with pytest.raises(ValueError, match="HumanDecision has no column lable: expected some of"):
        row_values(HumanDecision, {"lable": "ok"})
    with pytest.raises(ValueError, match="HumanDecision has no column lable"):  # same count
        row_values(HumanDecision, {"lable": "ok", "id": 3})
    # every model written this way: the values an object built from the same fields holds
    given = {
        Item: {"station_id": 1, "image_sha256": "0" * 64},
        Prediction: {"item_id": 1, "slot": Slot.champion},
        HumanDecision: {"item_id": 1, "operator_id": 2, "label": "ok"},
        Disposition: {
            "item_id": 1,
            "final_label": "ok",
            "decided_by": DecidedBy.human,
            "level": Level.shadow,
        },
        AdjudicationRequest: {"item_id": 1, "station_id": 1, "reason": "truth_sample"},
    }
    for model, fields in given.items():
        got, obj = row_values(model, fields), model(**fields)
        assert set(got) == {c.name for c in model.__table__.columns} - {"id"}, model
        for name, value in got.items():
            if isinstance(value, datetime):  # a factory's now: the row's own moment
                assert value.tzinfo is not None
            else:
                assert value == getattr(obj, name), (model, name)


def test_a_broken_foreign_key_is_refused_and_nothing_of_the_item_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    write(path, 1)
    engine = make_engine(f"sqlite:///{path}")
    refused = pytest.raises(IntegrityProblem, match="cannot save human decision: FOREIGN KEY")
    with refused, session_scope(engine) as s:
        record_inspection(
            session=s,
            item=Item(station_id=1, image_sha256="f" * 64, image_path="x", width=8, height=8),
            decision=HumanDecision(operator_id=999, label="ok"),
        )
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM item").fetchone()[0] == 1
    con.close()


def _as_stored(value: object) -> tuple[str, object]:
    """How SQLite stores a parameter: a bool is the integer 0 or 1, an int and a float differ."""
    if isinstance(value, bool | int):
        return ("integer", int(value))
    return (type(value).__name__, value)


@pytest.mark.parametrize(
    "given",
    [
        dict(decided_at=T0, decision_ms=900.0, blind=True, audit=False),
        # no microseconds (isoformat would drop them unless told), another zone, an old year
        dict(decided_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), decision_ms=900, blind=1),
        dict(decided_at=datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=timezone(timedelta(hours=-5)))),
        dict(decided_at=datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC), decision_ms=None),
        dict(decision_ms=np.float64(0.1), blind=np.bool_(True), suggestion_shown=None),
    ],
)
def test_the_drivers_conversions_are_sqlalchemys(given, engine) -> None:
    """Values the driver passes on as they are, or converts its own faster way, are stored
    exactly as SQLAlchemy's processors would have them stored."""
    table = HumanDecision.__table__  # type: ignore[attr-defined]
    values = row_values(HumanDecision, {"item_id": 1, "operator_id": 2, "label": "ok", **given})
    plan = driver._plan(table, engine.dialect, False)
    fast = driver._params(plan, values)
    slow = []
    for name in plan.columns:
        process = table.c[name].type._cached_bind_processor(engine.dialect)
        slow.append(values[name] if process is None else process(values[name]))
    assert [_as_stored(v) for v in fast] == [_as_stored(v) for v in slow]


def test_a_naive_time_is_refused_as_sqlalchemy_refuses_it(engine) -> None:
    table = HumanDecision.__table__  # type: ignore[attr-defined]
    plan = driver._plan(table, engine.dialect, False)
    values = row_values(HumanDecision, {"item_id": 1, "operator_id": 2, "label": "ok"})
    values["decided_at"] = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="timezone"):
        driver._params(plan, values)
