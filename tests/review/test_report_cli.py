"""`station report` as a user runs it: files written, user errors as one line with exit code 2."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from review_records import Records
from sqlalchemy.engine import Engine

from station.cli import app
from station.cli.common import run_guarded


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """In-process `station ...` (the subprocess path is covered once, below): (code, out, err)."""
    monkeypatch.setattr("sys.argv", ["station", *args])
    code = run_guarded(app)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _two_items(r: Records) -> None:
    r.item("ok", "ok")
    r.item("crack", "ok", station="B2")


def test_report_json_file_with_station_filter(
    engine: Engine, db_url: str, fill, cli, tmp_path: Path
) -> None:
    fill(_two_items)
    out = tmp_path / "r.json"
    res = cli("report", "--db", db_url, "--format", "json", "--out", str(out), "--station", "B2")
    assert res.code == 0, res.err
    rep = json.loads(out.read_text())
    assert rep["counts"]["items"] == rep["counts"]["paired"] == rep["counts"]["evidence"] == 1
    assert rep["filters"]["station"] == "B2"
    assert "1 items, 1 paired, 1 evidence" in res.out


def test_report_csv_to_stdout(engine: Engine, db_url: str, fill, monkeypatch, capsys) -> None:
    fill(_two_items)
    code, out, err = _run(
        monkeypatch, capsys, "report", "--db", db_url, "--format", "csv", "--out", "-"
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["human_label"] for r in rows] == ["ok", "crack"]
    assert rows[1]["station"] == "B2" and rows[1]["evidence"] == "1"


def test_report_html_of_empty_database_notes_it(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "r.html"
    code, _, err = _run(monkeypatch, capsys, "report", "--db", db_url, "--out", str(out))
    assert code == 0, err
    assert "the database holds no items yet" in err
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_report_user_errors_are_one_line_exit_2(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    cases = [
        (["--level", "semi"], "unknown automation level 'semi'"),
        (["--since", "last week"], "expected YYYY-MM-DD"),
        (["--format", "docx"], "expected one of html, pdf, json, csv"),
    ]
    for extra, expected in cases:
        code, _, err = _run(
            monkeypatch, capsys, "report", "--db", db_url, "--out", str(tmp_path / "x"), *extra
        )
        assert code == 2, (extra, err)
        assert expected in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    code, _, err = _run(
        monkeypatch,
        capsys,
        "report",
        "--db",
        missing,
        "--out",
        str(tmp_path / "x.json"),
        "--format",
        "json",
    )
    assert code == 2 and "no database at" in err
    assert not (tmp_path / "nope.db").exists()


def test_report_out_folder_or_missing_folder_is_refused_in_one_line(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    cases = [
        (tmp_path, "is a folder: expected a file name"),
        (tmp_path / "no" / "such" / "r.html", "does not exist"),
    ]
    for out, expected in cases:
        for fmt in ("html", "csv", "pdf"):
            code, _, err = _run(
                monkeypatch, capsys, "report", "--db", db_url, "--format", fmt, "--out", str(out)
            )
            assert code == 2, (out, fmt, err)
            assert expected in err and "Traceback" not in err
            assert len(err.strip().splitlines()) == 1
    assert not (tmp_path.parent / (tmp_path.name + ".partial")).exists()
    assert not (tmp_path / "no").exists()


def test_report_pdf_is_a_real_pdf_with_the_report_pages(
    engine: Engine, db_url: str, fill, cli, tmp_path: Path
) -> None:
    from review_records import random_records

    fill(lambda r: random_records(r, 60, seed=4))
    out = tmp_path / "r.pdf"
    # As a user runs it on a headless PC: no display at all.
    res = cli(
        "report", "--db", db_url, "--format", "pdf", "--out", str(out),
        env={"QT_QPA_PLATFORM": "", "DISPLAY": "", "WAYLAND_DISPLAY": ""},
    )  # fmt: skip
    assert res.code == 0, res.err
    assert "wrote pdf report" in res.out and "60 items" in res.out
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = int(re.search(r"\((\d+) pages\)", res.out).group(1))
    assert pages >= 3  # summary and gates, matrices, plots and tables: several A4 pages
    assert not (tmp_path / "r.pdf.partial").exists()
