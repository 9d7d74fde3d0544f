"""The one engine factory: SQLite (one station) or PostgreSQL (a fleet), chosen by URL alone."""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlmodel import Session, create_engine

from db.errors import CorruptDatabase, DatabaseUnavailable, DatabaseUrlError, NotADatabase

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 10_000

ACCEPTED_URLS = (
    "sqlite:///PATH (one station) or postgresql://USER:PASS@HOST[:PORT]/DBNAME (a fleet)"
)


def parse_url(url: str) -> URL:
    """Parse and normalise a database URL, or say which forms are accepted."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as e:
        raise DatabaseUrlError(f"malformed database URL {url!r}: expected {ACCEPTED_URLS}") from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseUrlError(
                f"database URL {url!r} names no file: the record must survive a restart, "
                f"expected {ACCEPTED_URLS}"
            )
        return parsed
    if backend == "postgresql":
        # psycopg 3 is the maintained driver; the bare scheme would pick psycopg2.
        if parsed.get_driver_name() in ("psycopg2", ""):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    raise DatabaseUrlError(
        f"unsupported database backend {backend!r} in {url!r}: expected {ACCEPTED_URLS}"
    )


def sqlite_path(url: str | URL) -> Path | None:
    """The file behind a SQLite URL, or None for other backends."""
    parsed = parse_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return None
    database = str(parsed.database)
    if database.startswith("file:"):  # a URI filename (read-only engines)
        database = urllib.parse.unquote(database[len("file:") :].split("?", 1)[0])
    return Path(database).expanduser()


def check_sqlite_header(path: Path) -> None:
    """Refuse a directory, or a file that is not a SQLite database, by its first bytes."""
    if path.is_dir():
        raise NotADatabase(f"{path} is a directory; expected a SQLite database file")
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head != SQLITE_MAGIC:
            raise NotADatabase(
                f"{path} is not a SQLite database (its first bytes are {head[:16]!r}); "
                "expected a file made by `station db upgrade`, or a path that does not exist yet"
            )


def check_sqlite_file(path: Path) -> None:
    """Refuse early, with a clear message, a path that cannot hold the database."""
    check_sqlite_header(path)
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseUnavailable(
                f"cannot create the data directory {parent}: {e.strerror}"
            ) from e
    # A real write probe rather than os.access: as root, os.access says yes even where the
    # filesystem is mounted read-only. WAL mode needs to create -wal and -shm files beside the
    # database, so the folder must be writable too, not only the file.
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-probe-"):
            pass
        if path.exists():
            with path.open("r+b"):
                pass
    except OSError as e:
        raise DatabaseUnavailable(
            f"{path if path.exists() else parent} is not writable ({e.strerror}); the station needs "
            f"to write its database and the WAL files beside it in {parent} "
            "(choose another --db or data_dir, or fix the permissions)"
        ) from e


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    # WAL: readers (review window, reports) never block the inspector's writes.
    cur.execute("PRAGMA journal_mode=WAL")
    # synchronous=FULL: in WAL mode, NORMAL only syncs at checkpoints, so a power cut can lose the
    # last few commits even though they were acknowledged. FULL fsyncs the WAL on every commit:
    # an acknowledged decision survives a killed process *and* a power cut. The cost is one fsync
    # per decision, far below the rate of phones on a line (measured in bench/db_write.py).
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite opens transactions itself only before INSERT/UPDATE/DELETE, so CREATE TABLE and
    # friends would each commit on their own; the engine's "begin" below opens them instead.
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Any) -> None:
    # IMMEDIATE: the write lock from the first statement, so two processes migrating (or
    # creating) the same file queue up instead of racing; the second finds the work done.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _readable_only(path: Path) -> bool:
    """True when an existing database file can be read but not written here (a read-only
    mount, a copy on a DVD, a file the station's user owns)."""
    if not path.is_file():
        return False
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".write-probe-"):
            pass
        with path.open("r+b"):
            pass
    except OSError:
        return os.access(path, os.R_OK)
    return False


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


def read_only_uri(path: Path) -> str:
    """The SQLite URI that opens `path` for reading only. Without a WAL beside it nobody can be
    writing the file (nobody could create one there), so SQLite may skip locking (immutable);
    with one, readers share the writer's WAL."""
    quoted = urllib.parse.quote(str(path.resolve()))
    flags = "mode=ro" if path.with_name(path.name + "-wal").exists() else "mode=ro&immutable=1"
    return f"file:{quoted}?{flags}"


def _read_only_engine(path: Path, echo: bool) -> Engine:
    engine = create_engine(
        f"sqlite:///{read_only_uri(path)}&uri=true",
        echo=echo,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_read_pragmas)
    return engine


def make_engine(
    url: str, *, echo: bool = False, transactional_ddl: bool = False, read_only: bool = False
) -> Engine:
    """Create an engine for `url`; SQLite files are checked and tuned for durability.

    `transactional_ddl`: every transaction, schema changes included, is one real SQLite
    transaction that takes the write lock at once (for migrations: all or nothing, one at a
    time). PostgreSQL is transactional for DDL anyway.
    `read_only`: the caller only reads, so a SQLite file that cannot be written here is opened
    for reading instead of refused."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        assert path is not None
        if read_only and _readable_only(path):
            check_sqlite_header(path)
            return _read_only_engine(path, echo)
        check_sqlite_file(path)
        engine = create_engine(
            parsed.set(database=str(path)),
            echo=echo,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        if transactional_ddl:
            event.listen(engine, "connect", _no_implicit_transactions)
            event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(parsed, echo=echo, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def ping(engine: Engine) -> None:
    """Open one connection, translating driver errors into messages a user can act on."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except exc.DatabaseError as e:
        raise translate_error(e, engine) from e


def translate_error(e: exc.DBAPIError, engine: Engine) -> Exception:
    text = str(e.orig) if e.orig is not None else str(e)
    where = engine.url.render_as_string(hide_password=True)
    if "file is not a database" in text:
        return NotADatabase(f"{where} is not a SQLite database ({text})")
    if "malformed" in text:
        return CorruptDatabase(
            f"{where} is corrupt ({text.strip().splitlines()[0]}): stop every station using "
            "it, keep the damaged file aside, and copy the last good backup in its place "
            "(`station db backup` makes them; a migration leaves one beside the file)"
        )
    if "readonly" in text or "read-only" in text:
        return DatabaseUnavailable(
            f"{where} is read-only ({text}); the station must be able to write"
        )
    return DatabaseUnavailable(f"cannot use the database {where}: {text.strip().splitlines()[0]}")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back everything if it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Every session chains the rows that carry authority as it flushes them (tamper evidence).
import db.chain  # noqa: E402,F401
