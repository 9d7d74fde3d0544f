"""Progress of the long commands: drawn on stderr when it is a terminal, never on stdout, and not
at all when stderr is captured, so what a command prints stays machine-readable either way."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import CliResult


def run_on_a_terminal(*args: str) -> CliResult:
    """`station ...` with stderr on a pseudo-terminal and stdout on a pipe, as in
    `station report --out - > report.json` typed in a terminal."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "station", *args],
        stdout=subprocess.PIPE,
        stderr=child,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(child)
    drawn: list[bytes] = []

    def drain() -> None:  # a full terminal buffer would block the child
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed its end
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(main)
    return CliResult(proc.returncode, out.decode(), b"".join(drawn).decode(errors="replace"))


def test_on_a_terminal_the_bar_is_on_stderr_and_stdout_stays_machine_readable(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'sim.db'}"
    sim = run_on_a_terminal(
        "simulate", "--items", "30", "--level", "human_only", "--size", "160x90", "--json",
        "--db", db,
    )  # fmt: skip
    assert sim.code == 0, sim.err
    assert json.loads(sim.out)["items"] == 30
    assert "simulating at human_only" in sim.err and "30/30" in sim.err  # the bar, at its end
    rows = run_on_a_terminal(
        "report", "--station", "sim", "--format", "csv", "--out", "-", "--db", db
    )
    assert rows.code == 0, rows.err
    assert "\x1b" not in rows.out  # the spinner ran while the rows streamed to stdout
    assert len(list(csv.DictReader(io.StringIO(rows.out)))) == 30


def run_captured(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """`station ...` in this process, stdout and stderr captured (no terminal)."""
    from station.cli import app
    from station.cli.common import run_guarded

    code = run_guarded(lambda **kw: app(list(args), **kw))
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def test_without_a_terminal_nothing_but_the_output_is_printed(tmp_path: Path, capsys):
    db = f"sqlite:///{tmp_path / 'sim.db'}"
    sim = run_captured(
        capsys, "simulate", "--items", "5", "--level", "human_only", "--size", "160x90", "--json",
        "--db", db,
    )  # fmt: skip
    assert sim.code == 0 and sim.err == "", sim.err
    assert json.loads(sim.out)["items"] == 5
    report = run_captured(
        capsys, "report", "--station", "sim", "--format", "json", "--out", "-", "--db", db
    )
    assert report.code == 0 and report.err == "", report.err
    assert json.loads(report.out)["counts"]["items"] == 5
