"""Bad input anywhere on the command line gets one line saying what was expected (exit 2),
never a traceback or a Qt abort: numbers too large, text with control characters or bytes that
are not UTF-8, a text file as weights, a malformed database URL, a display that is not there."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from db.models import Role
from station.pipeline.testing import TEST_SECRET, ensure_operator, open_station_db


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'st.db'}"
    ensure_operator(open_station_db(url), "eve", Role.engineer)
    return url


def _one_line_error(result, *words: str) -> None:
    assert result.code == 2, (result.code, result.err[-2000:])
    assert "Traceback" not in result.err and result.err.startswith("error:"), result.err[-2000:]
    for w in words:
        assert w in result.err, result.err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("simulate", "--items", "99999999999999999999"), ("--items", "10000000")),
        (("simulate", "--items", "5", "--interval", "1e308"), ("--interval",)),
        (("synth", "--n", "99999999999", "--out", "OUT"), ("--n", "1000000")),
        (("capture", "--max-items", "1" + "0" * 30, "--out", "OUT"), ("--max-items",)),
        (("model", "train", "--data", "DATA", "--out", "OUT", "--epochs", "1e9"), ("--epochs",)),
    ],
)
def test_numbers_out_of_range_are_refused_in_one_line(cli, db, tmp_path, args, words) -> None:
    args = tuple(str(tmp_path / a.lower()) if a in ("OUT", "DATA") else a for a in args)
    db_args = ("--db", db) if args[0] in ("simulate",) else ()
    _one_line_error(cli(*args, *db_args), *words)


def test_a_reason_with_control_characters_is_refused(cli, db) -> None:
    result = cli(
        "level",
        "set",
        "shadow",
        "--reason",
        "ok\x1b[2Jgone",
        "--user",
        "eve",
        "--db",
        db,
        input=TEST_SECRET + "\n",
    )
    _one_line_error(result, "--reason", "U+001B")


def test_a_secret_that_is_not_utf8_is_refused(cli, db) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "station",
            "level",
            "set",
            "shadow",
            "--reason",
            "ok",
            "--user",
            "eve",
            "--db",
            db,
        ],
        input=b"\xff\xfe\n",
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    assert b"not valid UTF-8" in proc.stderr


def test_a_text_file_as_init_weights_is_refused(cli, tmp_path) -> None:
    data = tmp_path / "data"
    for c in ("ok", "scratch"):
        (data / c).mkdir(parents=True)
        for i in range(4):
            img = np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)
            cv2.imwrite(str(data / c / f"{i}.png"), img)
    weights = tmp_path / "w.txt"
    weights.write_text("hi\n")
    result = cli(
        "model",
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "m"),
        "--init-weights",
        str(weights),
        "--epochs",
        "1",
    )
    _one_line_error(result, "not a readable torch weights file")


def test_a_malformed_database_url_is_refused(cli) -> None:
    _one_line_error(cli("db", "check", "--db", "postgresql://u:p@localhost:99999999/x"), "port")


def test_a_display_that_is_not_there_is_named_instead_of_a_qt_abort(cli, db) -> None:
    env = {"QT_QPA_PLATFORM": "", "DISPLAY": ":97", "WAYLAND_DISPLAY": ""}
    result = cli("run", "--db", db, env=env)
    _one_line_error(result, "cannot open on ':97'", "station simulate")
    result = cli("review", "--user", "eve", "--db", db, env=env, input=TEST_SECRET + "\n")
    _one_line_error(result, "cannot open on ':97'", "station report")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("thresholds", "bad", ("'thresholds'", "JSON object")),
        ("temperature", "hot", ("'temperature'",)),
        ("temperature", 1e-4, ("'temperature'", "0.001")),
        ("classes", [1, 2, 3], ("classes",)),
    ],
)
def test_a_manifest_edited_and_rehashed_by_hand_is_refused_in_one_line(
    cli, tmp_path, field, value, words
) -> None:
    import json
    import shutil

    from model.artifact import manifest_sha256

    root = Path(__file__).resolve().parents[2] / "model" / "bundled"
    bundled = next(p for p in root.iterdir() if p.is_dir())
    art = tmp_path / "art"
    shutil.copytree(bundled, art)
    m = json.loads((art / "manifest.json").read_text())
    m[field] = value
    m["sha256"] = manifest_sha256(m)
    (art / "manifest.json").write_text(json.dumps(m))
    _one_line_error(cli("model", "info", str(art)), *words)
