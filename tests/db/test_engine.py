"""The engine factory: durable SQLite pragmas and clear refusals of unusable URLs and files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from db.engine import make_engine, ping
from db.errors import DatabaseUnavailable, DatabaseUrlError, NotADatabase


def test_sqlite_connections_are_durable_and_checked(engine) -> None:
    with engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2  # FULL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 5000


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "malformed"),
        ("mysql://u@h/db", "unsupported database backend"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
    ],
)
def test_bad_urls_say_what_is_accepted(url: str, expected: str) -> None:
    with pytest.raises(DatabaseUrlError, match=expected) as info:
        make_engine(url)
    assert "sqlite:///PATH" in str(info.value)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "station.db"
    bogus.write_text("these are my notes, not a database\n")
    with pytest.raises(NotADatabase, match="not a SQLite database"):
        make_engine(f"sqlite:///{bogus}")
    assert bogus.read_text().startswith("these are my notes")  # untouched


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotADatabase, match="directory"):
        make_engine(f"sqlite:///{tmp_path}")


def test_an_unwritable_location_is_refused() -> None:
    # /proc refuses new files even to root, unlike chmod which root ignores.
    with pytest.raises(DatabaseUnavailable):
        make_engine("sqlite:////proc/inspection-station-test/station.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_data_dir_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(DatabaseUnavailable, match="not writable"):
            make_engine(f"sqlite:///{ro / 'station.db'}")
    finally:
        ro.chmod(0o700)


def test_unreachable_postgres_says_so() -> None:
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install '.[postgres]')")
    engine = make_engine("postgresql://nobody:x@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable, match="cannot use the database"):
        ping(engine)
    engine.dispose()
