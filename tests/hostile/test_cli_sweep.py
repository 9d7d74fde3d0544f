"""The whole command line, swept: every command (found by walking the CLI, so a new one is swept
too) is fed bad input it must refuse with one `error:` line and exit 2, no traceback, and
nothing written: a settings file that is not one (/proc/self/mem), a "database" that is a text
file, an option that does not exist."""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from station.cli import app
from station.cli.common import run_guarded


def _leaves(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    # Duck-typed: typer carries its own copy of click, whose classes are not click's.
    if hasattr(cmd, "commands"):
        for name, sub in sorted(cmd.commands.items()):
            yield from _leaves(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS = list(_leaves(typer.main.get_command(app)))


def _placeholders(cmd: Any, tmp: Path) -> list[str]:
    """Values for the required parameters, so the bad input is what gets refused."""
    out: list[str] = []
    for p in cmd.params:
        if not p.required:
            continue
        kind = p.type_descriptor.annotation  # typer's own record of the parameter's type
        if p.name == "level":
            value = "shadow"
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            value = str(next(iter(kind)).value)
        elif kind in (int, float):
            value = "1"
        elif kind is Path:
            value = str(tmp / f"in-{p.name}")
        else:
            value = "x"
        if p.param_type_name == "argument":
            out.append(value)
        else:
            out += [p.opts[0], value]
    return out


def _options(cmd: Any) -> set[str]:
    return {o for p in cmd.params for o in getattr(p, "opts", [])}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _run(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["station", *args])
    code = run_guarded(app)
    return code, capsys.readouterr().err


CASES = ["config-not-a-settings-file", "db-is-a-text-file", "unknown-option"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_refuses_bad_input_in_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, path, cmd, case
) -> None:
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.setenv(var, "")
    text_db = tmp_path / "notes.db"
    text_db.write_text("this is not a database\n")
    args = [*path, *_placeholders(cmd, tmp_path)]
    if case == "config-not-a-settings-file":
        if "--config" not in _options(cmd):
            pytest.skip(f"{' '.join(path)} takes no --config")
        args += ["--config", "/proc/self/mem"]
    elif case == "db-is-a-text-file":
        if "--db" not in _options(cmd):
            pytest.skip(f"{' '.join(path)} takes no --db")
        args += ["--db", f"sqlite:///{text_db}"]
    else:
        args += ["--no-such-option"]
    before = _files(tmp_path)
    code, err = _run(monkeypatch, capsys, args)
    assert code == 2, (args, code, err[-1500:])
    assert err.startswith("error:") and err.count("\n") == 1, err[-1500:]
    assert _files(tmp_path) == before, sorted(map(str, _files(tmp_path) - before))
    assert text_db.read_text() == "this is not a database\n"
