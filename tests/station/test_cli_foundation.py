"""The `station` CLI as a user meets it: help, users, db commands, one-line errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _no_traceback(result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out


def test_help_lists_working_commands(cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for name in ("config", "db", "user"):
        assert name in result.out


def test_every_subcommand_has_help(cli) -> None:
    for args in (
        ("db", "upgrade"),
        ("db", "check"),
        ("db", "backup"),
        ("user", "add"),
        ("user", "list"),
        ("config", "show"),
    ):
        result = cli(*args, "--help")
        assert result.code == 0, (args, result.err)
        assert "--help" in result.out


def _engineer(cli, db_url: str) -> None:
    first = cli("user", "add", "kim", "--role", "engineer", "--db", db_url, input="k\n")
    assert first.code == 0, first.err


def test_user_add_reads_the_secret_from_stdin_and_list_shows_roles(cli, db_url: str) -> None:
    _engineer(cli, db_url)
    added = cli(
        "user",
        "add",
        "lan",
        "--role",
        "inspector",
        "--user",
        "kim",
        "--db",
        db_url,
        input="k\ns3cret\n",
    )
    assert added.code == 0, added.err
    listed = cli("user", "list", "--db", db_url)
    assert listed.code == 0
    assert "lan" in listed.out and "inspector" in listed.out and "engineer" in listed.out
    assert "s3cret" not in listed.out
    stored = (
        sqlite3.connect(db_url.removeprefix("sqlite:///"))
        .execute("SELECT secret_hash FROM operator WHERE name='lan'")
        .fetchone()[0]
    )
    assert "s3cret" not in stored


def test_the_first_operator_must_be_an_engineer(cli, db_url: str) -> None:
    result = cli("user", "add", "lan", "--role", "inspector", "--db", db_url, input="a\n")
    assert result.code == 2 and "first operator must be an engineer" in result.err


def test_only_an_engineer_adds_operators_once_one_exists(cli, db_url: str) -> None:
    _engineer(cli, db_url)
    anonymous = cli("user", "add", "eve", "--role", "engineer", "--db", db_url, input="e\n")
    assert anonymous.code == 2 and "--user ENGINEER" in anonymous.err
    wrong = cli(
        "user",
        "add",
        "eve",
        "--role",
        "engineer",
        "--user",
        "kim",
        "--db",
        db_url,
        input="guess\ne\n",
    )
    assert wrong.code == 2 and "wrong secret" in wrong.err
    cli(
        "user", "add", "lan", "--role", "inspector", "--user", "kim", "--db", db_url, input="k\nl\n"
    )
    by_inspector = cli(
        "user", "add", "eve", "--role", "engineer", "--user", "lan", "--db", db_url, input="l\ne\n"
    )
    assert by_inspector.code == 2 and "needs engineer" in by_inspector.err
    assert "eve" not in cli("user", "list", "--db", db_url).out


def test_duplicate_user_is_refused_and_nothing_changes(cli, db_url: str) -> None:
    _engineer(cli, db_url)
    again = cli(
        "user", "add", "kim", "--role", "inspector", "--user", "kim", "--db", db_url, input="k\nb\n"
    )
    assert again.code == 2 and "already exists" in again.err
    _no_traceback(again)
    assert "engineer" in cli("user", "list", "--db", db_url).out


def test_usage_errors_are_one_line_without_traceback(cli, db_url: str) -> None:
    for args, expected in (
        (("user", "add", "lan", "--role", "boss", "--db", db_url), "'boss' is not one of"),
        (("gate", "check", "--db", db_url), "Missing option '--to'"),
        (("config", "show", "--db", db_url), "No such option: --db"),
        (("frobnicate",), "No such command"),
    ):
        result = cli(*args, input="a\n")
        assert result.code == 2, (args, result.err)
        assert result.err.startswith("error: ") and expected in result.err
        assert len(result.err.strip().splitlines()) == 1
        _no_traceback(result)


def test_empty_secret_is_refused(cli, db_url: str) -> None:
    empty = cli("user", "add", "kim", "--role", "engineer", "--db", db_url, input="\n")
    assert empty.code == 2 and "empty secret" in empty.err


def test_db_upgrade_check_backup(cli, db_url: str, tmp_path: Path) -> None:
    up = cli("db", "upgrade", "--db", db_url)
    assert up.code == 0 and "->" in up.out
    from db.migrate import head_revision

    assert (
        cli("db", "upgrade", "--db", db_url).out.strip().endswith(f"already at {head_revision()}")
    )
    check = cli("db", "check", "--db", db_url)
    assert check.code == 0 and "matches" in check.out
    backup = cli("db", "backup", str(tmp_path / "b.db"), "--db", db_url)
    assert backup.code == 0 and (tmp_path / "b.db").exists()


def test_db_check_fails_on_drift(cli, db_url: str) -> None:
    cli("db", "upgrade", "--db", db_url)
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    conn.execute("ALTER TABLE operator ADD COLUMN shoe_size INTEGER")
    conn.commit()
    result = cli("db", "check", "--db", db_url)
    assert result.code == 1 and "shoe_size" in result.err


def test_bad_database_inputs_give_one_line_reasons(cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("hello")
    for command, url, expected in (
        ("list", "foo://bar", "unsupported database backend"),
        ("list", f"sqlite:///{notes}", "not a SQLite database"),
        ("list", "sqlite:////proc/nowhere/x.db", "no database at /proc/nowhere/x.db"),
        ("upgrade", "sqlite:////proc/nowhere/x.db", "cannot create the data directory"),
    ):
        group = "user" if command == "list" else "db"
        result = cli(group, command, "--db", url)
        assert result.code == 2, url
        assert expected in result.err and len(result.err.strip().splitlines()) == 1
        _no_traceback(result)


def test_newer_schema_is_refused_by_commands(cli, db_url: str) -> None:
    cli("db", "upgrade", "--db", db_url)
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    conn.execute("UPDATE alembic_version SET version_num='9999'")
    conn.commit()
    result = cli("user", "list", "--db", db_url)
    assert result.code == 2 and "newer" in result.err
    _no_traceback(result)
