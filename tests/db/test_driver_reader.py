"""The reads a running station makes before every item, on a connection kept for them
(db/driver.py: Reader): the rows equal a Connection's, a change committed elsewhere is seen by
the next read, no read snapshot is held between reads, and a failed read raises SQLAlchemy's
error and leaves the next read a working connection."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import exc
from sqlalchemy.engine import Engine
from sqlmodel import col, create_engine, select

from db import driver
from db.engine import session_scope
from db.models import Level, LevelChange, Role, ThresholdSet
from db.repo import add_operator, get_or_create_station


def _station(engine: Engine) -> int:
    with session_scope(engine) as s:
        station = get_or_create_station(session=s, name="R1").id
    assert station is not None
    return station


def _change(engine: Engine, station: int, to: Level) -> None:
    with session_scope(engine) as s:
        s.add(LevelChange(station_id=station, from_level=Level.human_only, to_level=to, reason="t"))


def _latest(station: int):  # the level watch's query
    return (
        select(LevelChange.to_level)
        .where(LevelChange.station_id == station)
        .order_by(col(LevelChange.id).desc())
        .limit(1)
    )


def _sqlite_file(engine: Engine) -> Path:
    assert engine.url.database
    return Path(engine.url.database)


def test_rows_equal_a_connections_with_their_values_converted_as_sqlalchemy_converts(engine):
    station = _station(engine)
    with session_scope(engine) as s:
        op = add_operator(session=s, name="qa", role=Role.qa_lead, secret_hash="x").id
        for k, approved in enumerate(
            [
                datetime(2026, 12, 3, 9, 0, 0, 123456, tzinfo=UTC),
                None,
                datetime(999, 1, 1, tzinfo=UTC),
            ]
        ):
            s.add(
                ThresholdSet(
                    station_id=station, version=f"v{k}", approved_at=approved, approved_by=op
                )
            )
    _change(engine, station, Level.shadow)
    _change(engine, station, Level.assist)
    queries = [
        _latest(station),
        select(LevelChange.id, LevelChange.to_level, LevelChange.automatic, LevelChange.changed_at),
        select(col(ThresholdSet.id), col(ThresholdSet.approved_at), ThresholdSet.values)
        .where(col(ThresholdSet.approved_at).is_not(None))
        .order_by(col(ThresholdSet.approved_at).desc()),
        select(ThresholdSet.id).where(ThresholdSet.station_id == station + 1),  # no rows
        select(ThresholdSet.id).where(col(ThresholdSet.version).in_(["v0", "v2"])),  # not held
    ]
    reader = driver.Reader(engine)
    assert reader.holds
    for q in queries:
        with engine.connect() as conn:
            expected = [tuple(r) for r in conn.execute(q)]
        got = reader.all(q)
        assert got == expected
        assert [tuple(map(type, r)) for r in got] == [tuple(map(type, r)) for r in expected]
    assert reader.first(_latest(station)) == (Level.assist,)
    assert reader.first(queries[3]) is None
    times = [r[1] for r in reader.all(queries[2])]
    assert times[0] == datetime(2026, 12, 3, 9, 0, 0, 123456, tzinfo=UTC)  # an aware UTC time
    reader.close()


def test_a_change_committed_elsewhere_is_read_next_and_no_snapshot_is_held(engine):
    station = _station(engine)
    _change(engine, station, Level.shadow)
    reader = driver.Reader(engine)
    query = _latest(station)
    assert reader.first(query) == (Level.shadow,)
    other = sqlite3.connect(_sqlite_file(engine))  # another process's writer
    try:
        other.execute(
            "INSERT INTO level_change (station_id, from_level, to_level, reason, override, "
            "automatic, changed_at) VALUES (?, 'shadow', 'human_only', 'demoted', 0, 1, "
            "'2026-12-03 10:00:00.000000')",
            (station,),
        )
        other.commit()
        assert reader.first(query) == (Level.human_only,)
        # A read snapshot held between reads would keep the WAL from being checkpointed whole.
        busy, _log, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        other.close()
    reader.close()


def test_a_failed_read_raises_sqlalchemys_error_and_the_next_read_works(engine):
    station = _station(engine)
    _change(engine, station, Level.assist)
    reader = driver.Reader(engine)
    query = _latest(station)
    assert reader.first(query) == (Level.assist,)
    other = sqlite3.connect(_sqlite_file(engine))
    try:
        other.execute("ALTER TABLE level_change RENAME TO level_change_away")
        other.commit()
        with pytest.raises(exc.OperationalError, match="no such table"):
            reader.first(query)
        other.execute("ALTER TABLE level_change_away RENAME TO level_change")
        other.commit()
    finally:
        other.close()
    assert reader.first(query) == (Level.assist,)  # on a new connection
    reader.close()
    assert reader.first(query) == (Level.assist,)  # a closed reader opens another


def test_where_no_connection_can_be_kept_each_read_goes_through_the_engine(engine, tmp_path):
    memory = create_engine("sqlite://")
    LevelChange.metadata.create_all(memory)
    station = _station(memory)
    _change(memory, station, Level.shadow)
    for reader in (driver.Reader(memory), driver.Reader(engine, hold=False)):
        assert not reader.holds
    assert driver.Reader(memory).first(_latest(station)) == (Level.shadow,)
    memory.dispose()


def test_statements_the_driver_cannot_run_as_sqlalchemy_does_go_through_the_engine(engine):
    """A value computed at each execution, a value its bind processor refuses, a textual "*":
    each answers as a Connection does (not a frozen value, a plain Python error, a crash)."""
    from sqlalchemy import bindparam, literal_column

    station = _station(engine)
    _change(engine, station, Level.shadow)
    _change(engine, station, Level.assist)
    reader = driver.Reader(engine)
    wanted = [Level.shadow]
    by_callable = select(LevelChange.id).where(
        LevelChange.to_level
        == bindparam("to", callable_=lambda: wanted[0], type_=LevelChange.to_level.type)
    )
    first = reader.all(by_callable)
    wanted[0] = Level.assist
    assert reader.all(by_callable) != first and len(reader.all(by_callable)) == 1
    refused = select(LevelChange.id).where(col(LevelChange.changed_at) > "yesterday")
    with pytest.raises(exc.StatementError):
        reader.all(refused)
    star = select(literal_column("*")).select_from(LevelChange)
    with engine.connect() as conn:
        assert reader.all(star) == [tuple(r) for r in conn.execute(star)]
    assert reader.first(_latest(station)) == (Level.assist,)  # the held path still works
    reader.close()
    assert not reader.holds and reader.first(_latest(station)) == (Level.assist,)
    assert reader._held.raw is None  # a read after close() opens no connection of its own
