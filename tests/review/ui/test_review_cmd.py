"""`station review` as a user meets it before any window opens: display, database, role."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from db.errors import DatabaseUnavailable
from station.errors import AuthError

NO_DISPLAY = {"QT_QPA_PLATFORM": "", "DISPLAY": "", "WAYLAND_DISPLAY": ""}


def _station(*args: str, input: str | None = None):
    """In-process (a child process pays seconds of imports per call); errors stay exceptions."""
    from station.cli import app

    return CliRunner().invoke(app, list(args), input=input)


def test_without_a_display_it_says_what_to_do_instead(cli, db_url: str) -> None:
    result = cli("review", "--db", db_url, "--user", "kim", env=NO_DISPLAY)
    assert result.code == 2 and "Traceback" not in result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: no display")
    assert "xvfb-run" in line and "station report" in line


def test_review_is_a_listed_command() -> None:
    result = _station("review", "--help")
    assert result.exit_code == 0 and "--user" in result.output


def test_a_missing_database_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere.db'}"
    result = _station("review", "--db", url, "--user", "kim")
    assert isinstance(result.exception, DatabaseUnavailable)
    assert "no database at" in str(result.exception)
    assert not (tmp_path / "nowhere.db").exists()


@pytest.mark.parametrize(
    ("secret", "message"),
    [("pw", "lan is inspector; review needs engineer or qa_lead"), ("nope", "wrong secret")],
)
def test_an_inspector_or_a_wrong_secret_is_refused(db_url: str, secret: str, message: str) -> None:
    boss = _station("user", "add", "kim", "--role", "engineer", "--db", db_url, input="k\n")
    assert boss.exit_code == 0, boss.output
    added = _station(
        "user",
        "add",
        "lan",
        "--role",
        "inspector",
        "--user",
        "kim",
        "--db",
        db_url,
        input="k\npw\n",
    )
    assert added.exit_code == 0, added.output
    result = _station("review", "--db", db_url, "--user", "lan", input=f"{secret}\n")
    assert isinstance(result.exception, AuthError)
    assert message in str(result.exception)
