"""Migrations on real SQLite files: create, check for drift, refuse a newer schema, back up."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from db.engine import make_engine, session_scope
from db.errors import SchemaError
from db.migrate import backup_sqlite, check, head_revision, schema_state, upgrade
from db.models import Station


def test_upgrade_creates_every_table_at_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    state, backup = upgrade(engine)
    assert state.current == head_revision()
    assert backup is None  # nothing to protect in a brand-new file
    tables = {
        r[0]
        for r in sqlite3.connect(tmp_path / "new.db").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    for expected in (
        "station",
        "operator",
        "model_version",
        "deployment",
        "item",
        "prediction",
        "human_decision",
        "disposition",
        "adjudication",
        "level_change",
        "gate_evaluation",
        "operator_session",
    ):
        assert expected in tables


def test_check_passes_at_head_and_detects_drift(engine) -> None:
    assert check(engine) == []
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE item ADD COLUMN sneaky INTEGER"))
    problems = check(engine)
    assert problems and any("sneaky" in p for p in problems)


def test_check_reports_a_database_behind_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    problems = check(engine)
    assert problems and "station db upgrade" in problems[0]


def test_schema_from_a_newer_program_is_refused(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
    with pytest.raises(SchemaError, match="newer"):
        schema_state(engine)
    with pytest.raises(SchemaError):
        upgrade(engine)


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    legacy = sqlite3.connect(path)
    legacy.execute("CREATE TABLE notes (text TEXT)")
    legacy.execute("INSERT INTO notes VALUES ('shift 1 ok')")
    legacy.commit()
    legacy.close()
    with pytest.raises(SchemaError, match="not made by this program"):
        upgrade(make_engine(f"sqlite:///{path}"))
    copy = sqlite3.connect(path)
    assert copy.execute("SELECT text FROM notes").fetchall() == [("shift 1 ok",)]
    assert copy.execute("SELECT name FROM sqlite_master WHERE name='item'").fetchall() == []
    assert [p.name for p in tmp_path.iterdir() if ".bak" in p.name] == []


def test_backup_into_a_folder_names_the_file(engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        s.add(Station(name="A3"))
    dest = backup_sqlite(engine, f"{tmp_path / 'copies'}/")
    assert dest.parent == tmp_path / "copies" and dest.suffix == ".db"
    assert sqlite3.connect(dest).execute("SELECT name FROM station").fetchall() == [("A3",)]


def test_online_backup_is_consistent_while_a_writer_is_open(engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        for i in range(50):
            s.add(Station(name=f"S{i}"))
    # A second connection holds an uncommitted write while the backup runs.
    raw = sqlite3.connect(Path(str(engine.url.database)), timeout=10)
    raw.execute("BEGIN")
    raw.execute("INSERT INTO station (name, created_at) VALUES ('uncommitted', '2026-01-01')")
    dest = backup_sqlite(engine, tmp_path / "backup.db")
    raw.rollback()
    raw.close()
    names = [r[0] for r in sqlite3.connect(dest).execute("SELECT name FROM station")]
    assert len(names) == 50 and "uncommitted" not in names
    assert sqlite3.connect(dest).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_upgrading_an_older_schema_keeps_the_data_and_backs_it_up_first(tmp_path: Path) -> None:
    from alembic import command

    from db.migrate import alembic_config

    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")  # the first schema this product shipped
        conn.execute(text("INSERT INTO station (name, created_at) VALUES ('A3', '2026-11-01')"))
    assert schema_state(engine).current == "0001"
    state, backup = upgrade(engine)
    assert state.up_to_date and state.current != "0001"
    assert backup is not None
    assert sqlite3.connect(backup).execute(
        "SELECT version_num FROM alembic_version"
    ).fetchall() == [("0001",)]
    with session_scope(engine) as s:
        assert [st.name for st in s.exec(select(Station)).all()] == ["A3"]
    assert check(engine) == []
