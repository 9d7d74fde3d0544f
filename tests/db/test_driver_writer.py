"""The recorder's own SQLite connection (db/driver.py: Writer): each transaction is all or
nothing, durable as the engine's (the same pragmas), waits for another process's lock no longer
than it was told, and a failure leaves the next transaction a working connection."""

from __future__ import annotations

import gc
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import exc
from sqlalchemy.engine import Engine
from sqlmodel import create_engine, select

from db import driver
from db.engine import BUSY_TIMEOUT_MS, session_scope
from db.errors import IntegrityProblem
from db.models import HumanDecision, Item, Prediction, Role, Slot
from db.repo import add_operator, get_or_create_station, record_inspection_rows


def _ids(engine: Engine) -> tuple[int, int]:
    with session_scope(engine) as s:
        station = get_or_create_station(session=s, name="W1").id
        operator = add_operator(session=s, name="wes", role=Role.inspector, secret_hash="x").id
    assert station is not None and operator is not None
    return station, operator


def _item(station: int, n: int) -> dict[str, object]:
    return dict(
        station_id=station,
        captured_at=datetime(2026, 12, 3, 9, 0, n, tzinfo=UTC),
        image_sha256=f"{n:064x}",
        image_path=f"images/{n}.png",
        width=64,
        height=48,
        source="test",
    )


def _count(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def test_a_transaction_is_committed_whole_with_the_engines_durability(engine, tmp_path):
    station, operator = _ids(engine)
    writer = driver.Writer(engine, busy_timeout_ms=1234)
    with writer.transaction() as w:
        record_inspection_rows(
            conn=w,
            item=_item(station, 1),
            predictions=[dict(slot=Slot.champion, label="ok", probabilities={"ok": 1.0})],
            decision=dict(operator_id=operator, label="ok"),
        )
        pragmas = {
            name: w.raw.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    # the engine's own pragmas (WAL, synchronous=FULL, foreign keys), the writer's lock wait
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 1234,
    }
    path = tmp_path / "station.db"
    assert [_count(path, t) for t in ("item", "prediction", "human_decision")] == [1, 1, 1]
    # the engine's pooled connections keep the engine's wait
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
    writer.close()


def test_a_failed_transaction_keeps_nothing_and_the_next_one_works(engine, tmp_path):
    station, operator = _ids(engine)
    writer = driver.Writer(engine, busy_timeout_ms=100)
    with pytest.raises(IntegrityProblem, match="FOREIGN KEY"), writer.transaction() as w:
        record_inspection_rows(conn=w, item=_item(station, 1))  # written, then rolled back
        record_inspection_rows(
            conn=w, item=_item(station, 2), decision=dict(operator_id=9999, label="ok")
        )  # no such operator: the foreign key refuses it
    path = tmp_path / "station.db"
    assert _count(path, "item") == 0 and _count(path, "human_decision") == 0
    with writer.transaction() as w:
        record_inspection_rows(
            conn=w, item=_item(station, 3), decision=dict(operator_id=operator, label="ok")
        )
    with session_scope(engine) as s:
        assert [i.image_path for i in s.exec(select(Item)).all()] == ["images/3.png"]
        assert len(s.exec(select(HumanDecision)).all()) == 1
        assert not s.exec(select(Prediction)).all()
    writer.close()


def test_a_locked_database_is_waited_for_only_as_long_as_told(engine, tmp_path):
    station, _ = _ids(engine)
    writer = driver.Writer(engine, busy_timeout_ms=50)
    other = sqlite3.connect(tmp_path / "station.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(exc.OperationalError, match="locked"), writer.transaction() as w:
            record_inspection_rows(conn=w, item=_item(station, 1))
    finally:
        other.rollback()
        other.close()
    with writer.transaction() as w:
        record_inspection_rows(conn=w, item=_item(station, 2))
    assert _count(tmp_path / "station.db", "item") == 1
    writer.close()
    with writer.transaction() as w:  # closed: a new connection is opened
        record_inspection_rows(conn=w, item=_item(station, 3))
    assert _count(tmp_path / "station.db", "item") == 2
    writer.close()


def test_a_writer_is_for_sqlite_files_and_written_through_inside_its_transaction(engine):
    writer = driver.Writer(engine, busy_timeout_ms=10)
    with pytest.raises(RuntimeError, match="inside its transaction"):
        _ = writer.raw
    # an in-memory database lives in its pool's one connection: a Writer would take it away
    memory = create_engine("sqlite://")
    assert driver.can_hold(engine) and not driver.can_hold(memory)
    with pytest.raises(ValueError, match="SQLite file"):
        driver.Writer(memory, busy_timeout_ms=10)


def test_a_writer_nobody_closed_closes_its_connection_when_collected(engine):
    """The engine's dispose() does not reach a connection taken out of its pool."""
    station, _ = _ids(engine)
    writer = driver.Writer(engine, busy_timeout_ms=10)
    with writer.transaction() as w:
        record_inspection_rows(conn=w, item=_item(station, 1))
        raw = w.raw
    del writer, w
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        raw.execute("SELECT 1")
