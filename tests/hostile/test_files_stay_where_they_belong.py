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
