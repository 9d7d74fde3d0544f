"""Hostile but realistic: no command writes its output onto the database, its WAL, the image
store, a spool or what it reads; files go beside the database named; a command that only reads
never creates a database. Each case failed before (the issue's reproduction is in its name)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import pytest

from station.pipeline.testing import ensure_operator, open_station_db, phone_image


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def station_db(tmp_path: Path) -> Path:
    """A real database with one operator, in its own folder."""
    path = tmp_path / "line" / "st.db"
    path.parent.mkdir()
    engine = open_station_db(f"sqlite:///{path}")
    ensure_operator(engine, "lan")
    engine.dispose()
    return path


def assert_refused(result, *words: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: ") and "Traceback" not in result.err
    for word in words:
        assert word in result.err, result.err


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_report_refuses_to_write_onto_its_database_or_its_sqlite_files(cli, station_db, suffix):
    url = f"sqlite:///{station_db}"
    target = Path(f"{station_db}{suffix}")
    before = digest(station_db)
    result = cli("report", "--format", "json", "--out", str(target), "--db", url)
    assert_refused(result, "--out", "never writes its output there")
    assert digest(station_db) == before
    assert cli("user", "list", "--db", url).code == 0  # the database still opens


def test_report_refuses_to_write_into_the_image_store(cli, station_db):
    store = station_db.parent / "images"
    store.mkdir()
    result = cli(
        "report",
        "--format",
        "html",
        "--out",
        str(store / "r.html"),
        "--db",
        f"sqlite:///{station_db}",
    )
    assert_refused(result, "image store")
    assert not (store / "r.html").exists()


def test_db_backup_refuses_the_image_store(cli, station_db):
    store = station_db.parent / "images"
    store.mkdir()
    result = cli("db", "backup", str(store / "b.db"), "--db", f"sqlite:///{station_db}")
    assert_refused(result, "image store")


def test_capture_refuses_to_write_into_the_folder_it_reads_or_beside_the_database(
    cli, station_db, tmp_path
):
    stills = tmp_path / "stills"
    stills.mkdir()
    cv2.imwrite(str(stills / "a.png"), phone_image())
    inside = cli("capture", "--source", f"folder:{stills}", "--out", str(stills / "cap"))
    assert_refused(inside, "the source it captures from")
    assert not (stills / "cap").exists()
    env = {"STATION_DATABASE_URL": f"sqlite:///{station_db}"}
    beside = cli(
        "capture", "--source", f"folder:{stills}", "--out", str(station_db.parent), env=env
    )
    assert_refused(beside, "holds the station's database")


def test_synth_overwrite_never_touches_the_station_image_store(cli, station_db):
    store = station_db.parent / "images"
    (store / "ab").mkdir(parents=True)
    env = {"STATION_DATABASE_URL": f"sqlite:///{station_db}"}
    result = cli("synth", "--n", "2", "--out", str(store), "--overwrite", "-q", env=env)
    assert_refused(result, "image store")
    assert (store / "ab").is_dir()


def test_model_evaluate_refuses_to_write_into_the_artifact_it_reads(cli, tmp_path):
    data = tmp_path / "data" / "ok"
    data.mkdir(parents=True)
    cv2.imwrite(str(data / "a.png"), phone_image())
    artifact = Path(__file__).resolve().parents[2] / "model" / "bundled" / "default"
    before = sorted(p.name for p in artifact.iterdir())
    result = cli(
        "model",
        "evaluate",
        str(artifact),
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(artifact / "report.json"),
    )
    assert_refused(result, "the model artifact it evaluates")
    assert sorted(p.name for p in artifact.iterdir()) == before


def test_model_train_refuses_to_write_its_artifact_into_its_training_data(cli, tmp_path):
    data = tmp_path / "data"
    (data / "ok").mkdir(parents=True)
    result = cli("model", "train", "--data", str(data), "--out", str(data / "artifact"))
    assert_refused(result, "the training data")
    assert not (data / "artifact").exists()


def test_simulate_keeps_its_images_and_spool_beside_the_database_it_was_given(cli, tmp_path):
    db = tmp_path / "elsewhere" / "sim.db"
    db.parent.mkdir()
    data_dir = tmp_path / "data"  # the user's data folder (STATION_DATA_DIR in these tests)
    result = cli("simulate", "--items", "3", "--level", "human_only", "--db", f"sqlite:///{db}")
    assert result.code == 0, result.err
    assert any((db.parent / "images").rglob("*.png"))
    assert not (data_dir / "images").exists()


@pytest.mark.parametrize(
    "command", [("user", "list"), ("db", "check"), ("level", "show"), ("db", "backup", "X")]
)
def test_a_mistyped_database_path_is_refused_and_nothing_is_created(cli, tmp_path, command):
    missing = tmp_path / "typo" / "statoin.db"
    args = [a if a != "X" else str(tmp_path / "b.db") for a in command]
    result = cli(*args, "--db", f"sqlite:///{missing}")
    assert_refused(result, "no database at")
    assert not missing.exists() and not missing.parent.exists()


# ------------------------------------------------------------------ creating a database


def test_a_creation_killed_half_way_leaves_no_schema_and_the_next_open_makes_it(
    tmp_path, monkeypatch
):
    import sqlite3
    import uuid

    from db.engine import make_engine
    from db.migrate import head_revision, schema_state, upgrade

    path = tmp_path / "new.db"
    engine = make_engine(f"sqlite:///{path}")

    def killed():  # the last migration dies half-way
        raise RuntimeError("kill -9")

    monkeypatch.setattr(uuid, "uuid4", killed)
    with pytest.raises(RuntimeError):
        upgrade(engine)
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == []  # all or nothing
    monkeypatch.undo()
    upgrade(engine)
    assert schema_state(engine).current == head_revision()


def test_a_half_built_schema_from_an_older_version_is_made_again(tmp_path):
    import sqlite3

    from db.engine import make_engine
    from db.migrate import head_revision, upgrade

    path = tmp_path / "half.db"
    conn = sqlite3.connect(path)  # what a kill during the old, statement-by-statement creation left
    conn.execute("CREATE TABLE station (id INTEGER PRIMARY KEY, name VARCHAR(64))")
    conn.execute("CREATE TABLE operator (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    engine = make_engine(f"sqlite:///{path}")
    state, backup = upgrade(engine)
    assert state.current == head_revision() and backup is not None and backup.exists()


def test_two_processes_creating_one_new_database_at_once_both_succeed(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "fresh.db"
    code = (
        "from db.engine import make_engine; from db.migrate import ensure_schema;"
        f"ensure_schema(make_engine('sqlite:///{path}')); print('ok')"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1].decode()[-500:] for r in results]
    import sqlite3

    ids = sqlite3.connect(path).execute("SELECT id FROM database_identity").fetchall()
    assert len(ids) == 1  # one database, made once


# ------------------------------------------------------------------ a corrupt database


@pytest.fixture
def corrupt_db(station_db: Path) -> Path:
    """A station database with some rows whose b-tree pages were then overwritten on disk."""
    import sqlite3

    conn = sqlite3.connect(station_db)
    conn.execute("PRAGMA journal_mode=DELETE")  # everything in the main file
    for i in range(3000):
        conn.execute(
            "INSERT INTO operator(name, role, secret_hash, active, created_at) "
            "VALUES (?, 'inspector', ?, 1, '2026-01-01')",
            (f"op{i}", "x" * 60),
        )
    conn.commit()
    conn.close()
    pages = station_db.stat().st_size // 4096
    with station_db.open("r+b") as f:
        for k in range(20, pages - 1, 7):
            f.seek(4096 * k)
            f.write(b"\xff" * 12)  # page headers: what a bad sector or a stray write leaves
    return station_db


def test_a_corrupt_database_is_refused_for_writing_checking_and_backing_up(
    cli, corrupt_db: Path, tmp_path
):
    url = f"sqlite:///{corrupt_db}"
    before = digest(corrupt_db)
    add = cli("user", "add", "kim", "--role", "inspector", "--db", url, input="pw\n")
    assert_refused(add, "is corrupt", "last good backup")
    check = cli("db", "check", "--db", url)
    assert_refused(check, "is corrupt")
    backup = cli("db", "backup", str(tmp_path / "copy.db"), "--db", url)
    assert_refused(backup, "is corrupt")
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / "copy.db.partial").exists()
    upgrade = cli("db", "upgrade", "--db", url)
    assert_refused(upgrade, "is corrupt")
    assert digest(corrupt_db) == before  # nothing was written into it


# ------------------------------------------------------------------ a locked database, a full disk


def test_while_the_database_is_locked_decisions_reach_the_spool_file_at_once(tmp_path):
    import sqlite3
    import time

    from station.pipeline.recorder import BackgroundRecorder, Recorder
    from station.pipeline.testing import make_rig

    rig = make_rig(tmp_path)
    problems = []
    recorder = Recorder(rig.engine, spool_dir=tmp_path, on_problem=problems.append)
    background = BackgroundRecorder(recorder)
    rig.core.desk.send = background.submit
    lock = sqlite3.connect(tmp_path / "station.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock for a long while
    try:
        t0 = time.monotonic()
        for i in range(20):
            rig.feed(phone_image(i))
            rig.core.desk.decide("ok")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
            not recorder.spool_path.exists()
            or len(recorder.spool_path.read_text().splitlines()) < 20
        ):
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        on_disk = len(recorder.spool_path.read_text().splitlines())
        # The report follows the line onto the disk; when a retry falls due on the last record
        # it comes after that retry's own lock wait (2 s), not with the line.
        while time.monotonic() < deadline and not any(
            p is not None and p.pending == 20 for p in problems[-1:]
        ):
            time.sleep(0.05)
    finally:
        lock.rollback()
        lock.close()
    assert on_disk == 20 and elapsed < 8  # one lock wait (2 s), then straight to the file
    last = [p for p in problems if p is not None][-1]
    assert last.pending == 20 and last.unsaved == 0
    background.close()
    recorder.retry()
    assert recorder.pending == 0 and not recorder.spool_path.exists()  # all written at last


def test_when_nothing_can_be_saved_the_desk_stops_and_says_so(tmp_path, monkeypatch):
    import os
    import sqlite3

    from sqlmodel import create_engine

    from db.models import Level
    from station.errors import LineStopped
    from station.pipeline.predictor import FakePredictor, confident
    from station.pipeline.recorder import Recorder
    from station.pipeline.testing import make_rig

    rig = make_rig(tmp_path, level=Level.full, predictor=FakePredictor(confident("ok", 0.999)))
    locked = create_engine(f"sqlite:///{tmp_path / 'station.db'}", connect_args={"timeout": 0.05})

    def disk_full(_fd):
        raise OSError(28, "No space left on device")

    recorder = Recorder(locked, spool_dir=tmp_path, on_problem=rig.core.database_problem)
    monkeypatch.setattr(os, "fsync", disk_full)  # every write to disk now fails
    rig.core.desk.send = recorder.record
    lock = sqlite3.connect(tmp_path / "station.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        rig.feed(phone_image(1))  # sure of it: auto-passed, but its record has nowhere to go
        assert recorder.unsaved == 1
        banner = rig.core.status.banners["database"]
        assert banner.startswith("LINE STOPPED") and "No space left" in banner
        assert "1 decision(s) are only in this station's memory" in banner
        route = rig.feed(phone_image(2))  # the model decides nothing more: it waits
        assert route.decider.value == "human" and rig.core.desk.current is not None
        with pytest.raises(LineStopped):
            rig.core.desk.decide("ok")
    finally:
        lock.rollback()
        lock.close()
    monkeypatch.undo()
    assert recorder.retry() == 1  # disk and database back: written, the line resumes
    assert rig.core.desk.hold is None and "database" not in rig.core.status.banners
    rig.core.desk.decide("ok")


def test_simulate_on_a_full_disk_stops_and_counts_what_was_lost(tmp_path, monkeypatch):
    import os
    import sqlite3

    from db.models import Level
    from station.pipeline.simulate import SimulateConfig, simulate
    from station.settings import Settings

    url = f"sqlite:///{tmp_path / 'sim.db'}"
    engine = open_station_db(url)
    locks = []

    def disk_fills_up(done, _total):
        if done == 3:  # the database locked by another program, and no room for the spool
            conn = sqlite3.connect(tmp_path / "sim.db", isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            locks.append(conn)

            def full(_fd):
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(os, "fsync", full)  # every write to disk now fails

    try:
        s = simulate(
            Settings(data_dir=tmp_path),
            engine,
            SimulateConfig(items=40, level=Level.human_only, width=160, height=90),
            progress=disk_fills_up,
        )
    finally:
        for conn in locks:
            conn.rollback()
            conn.close()
    assert s.stopped is not None and "No space left" in s.stopped
    assert s.items < 40 and s.unsaved >= 1 and s.pending_writes == 0  # nothing called kept


# ------------------------------------------------------------------ a read-only database


@pytest.fixture
def read_only_db(tmp_path: Path):
    """A station database (with one simulated shift) on a read-only mount."""
    import subprocess

    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a file system here (needs root); read-only mounts untested")
    try:
        db = mount / "st.db"
        from station.pipeline.simulate import SimulateConfig, simulate
        from station.settings import Settings

        engine = open_station_db(f"sqlite:///{db}")
        ensure_operator(engine, "lan")
        simulate(Settings(data_dir=mount), engine, SimulateConfig(items=4, width=160, height=90))
        engine.dispose()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield db
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_commands_that_only_read_work_on_a_read_only_database(cli, read_only_db, tmp_path):
    url = f"sqlite:///{read_only_db}"
    assert "lan" in cli("user", "list", "--db", url).out
    history = cli("level", "history", "--station", "sim", "--db", url)
    assert history.code == 0 and "shadow" in history.out
    report = cli("report", "--format", "json", "--out", str(tmp_path / "r.json"), "--db", url)
    assert report.code == 0, report.err
    assert '"items": 4' in (tmp_path / "r.json").read_text()
    assert cli("db", "check", "--db", url).code == 0
    backup = cli("db", "backup", str(tmp_path / "copy.db"), "--db", url)
    assert backup.code == 0 and (tmp_path / "copy.db").exists(), backup.err
    add = cli("user", "add", "kim", "--role", "inspector", "--db", url, input="pw\n")
    assert_refused(add, "not writable")  # a command that writes is still refused, in one line


@pytest.mark.parametrize(
    "name", ["eng\u200b", "la\u0007n", "a" * 65, "bad\x1b[31mname", "two words", " "]
)
def test_an_operator_name_that_would_not_read_as_written_is_refused(cli, station_db, name):
    result = cli(
        "user",
        "add",
        name,
        "--role",
        "inspector",
        "--user",
        "lan",
        "--db",
        f"sqlite:///{station_db}",
        input="pw\npw\npw\n",
    )
    assert_refused(result, "expected 1-64 visible characters")


# ------------------------------------------------------------------ guessing secrets


def test_guessing_a_secret_is_slowed_then_locked_across_restarts_until_an_engineer_unlocks(
    cli, station_db
):
    from datetime import UTC, datetime, timedelta

    from db.engine import make_engine, session_scope
    from db.models import LoginAttempt, Role
    from station.auth import LOCK_AFTER, authenticate
    from station.errors import AuthError

    url = f"sqlite:///{station_db}"
    engine = make_engine(url)
    ensure_operator(engine, "eve", Role.engineer)
    for i in range(3):
        with pytest.raises(AuthError, match="wrong secret"), session_scope(engine) as s:
            authenticate(session=s, name="lan", secret=f"guess{i}")
    with pytest.raises(AuthError, match="try again in 5 s"), session_scope(engine) as s:
        authenticate(session=s, name="lan", secret="pw")  # even the right one: too soon
    # ... a long guessing run later (its failures spaced past each wait), from another process
    with session_scope(engine) as s:
        long_ago = datetime.now(UTC) - timedelta(minutes=1)
        for _ in range(LOCK_AFTER - 3):
            s.add(LoginAttempt(name="lan", at=long_ago, succeeded=False))
    # a fresh process, the right secret: still locked
    result = cli(
        "level", "set", "shadow", "--reason", "x", "--user", "lan", "--db", url, input="pw\n"
    )
    assert_refused(result, "is locked after 10 failed logins", "station user unlock lan")
    unlocked = cli("user", "unlock", "lan", "--user", "eve", "--db", url, input="pw\n")
    assert unlocked.code == 0 and "10 failed login(s)" in unlocked.out
    with session_scope(engine) as s:
        assert authenticate(session=s, name="lan", secret="pw").name == "lan"
