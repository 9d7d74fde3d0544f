"""What every subcommand shares: the --config/--db options, error reporting, opening the database,
and reading an operator's secret."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import Engine
from typer.exceptions import Abort, Exit, TyperException

from db.errors import DbError
from station.errors import AuthError, StationError
from station.settings import Settings, load_settings

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file (default: the user config file, if present).",
        dir_okay=False,
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL: sqlite:///PATH or postgresql://... (default: settings)."
    ),
]
UserOpt = Annotated[
    str, typer.Option("--user", help="Your operator name; the secret is asked for without echo.")
]

EXIT_USER_ERROR = 2


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Our error hierarchies. model/ and review/ count only once loaded: an error of theirs can
    only have been raised if they were, and importing model/ here would load torch for nothing."""
    types: list[type[BaseException]] = [StationError, DbError]
    for module, name in (("model.errors", "ModelError"), ("review.errors", "ReviewError")):
        mod = sys.modules.get(module)
        if mod is not None:
            types.append(getattr(mod, name))
    return tuple(types)


def run_guarded(app: Callable[..., Any]) -> int:
    """Run the CLI; a user error becomes one line on stderr and exit code 2, never a traceback."""
    try:
        # Without standalone mode the parser returns the code of a `typer.Exit` instead of exiting.
        rv = app(standalone_mode=False)
    except Abort:
        print("aborted", file=sys.stderr)
        return 130
    except Exit as e:
        return e.exit_code
    except TyperException as e:  # usage errors: a missing option, a bad value, an unknown command
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = " ".join(e.format_message().split())
        print(f"error: {message}{hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not isinstance(e, _user_error_types()):
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return rv if isinstance(rv, int) else 0


def parse_wxh(value: str, flag: str, example: str) -> tuple[int, int]:
    """'640x360' -> (640, 360); anything else is a one-line error naming the flag."""
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise StationError(f"expected {flag} WxH such as {example}, got {value!r}") from None
    if w < 1 or h < 1:
        raise StationError(f"expected {flag} WxH with positive sides, got {value!r}")
    return (w, h)


def parse_list(value: str, flag: str, example: str) -> tuple[str, ...]:
    """'h, v,hv' -> ('h', 'v', 'hv'); an empty item is a one-line error naming the flag."""
    items = tuple(v.strip() for v in value.split(","))
    if not all(items):
        raise StationError(
            f"expected {flag} as comma-separated names such as {example}, got {value!r}"
        )
    return items


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    settings, _ = load_settings(config, overrides)
    return settings


def refuse_missing_database(settings: Settings) -> None:
    """A command that only reads never creates a database: a missing SQLite file (a typo in
    --db) is refused before anything is made."""
    from db.engine import sqlite_path
    from db.errors import DatabaseUnavailable

    path = sqlite_path(settings.effective_database_url)
    if path is not None and not path.exists():
        raise DatabaseUnavailable(
            f"no database at {path}: expected the file a station writes "
            "(or one made by `station db upgrade`)"
        )


def open_database(settings: Settings, *, migrate: bool = True, read_only: bool = False) -> Engine:
    """Engine for the configured database with its schema at head.

    With `migrate`, a new database is created in place (the embedded defaults need no setup) and
    an older schema is migrated (after a backup). Commands that only read (reports, review, level
    show) pass `migrate=False`: they refuse a missing file or an old schema instead, so a typo in
    --db never creates an empty database and a QA lead's report never migrates a fleet's server.
    `read_only`: the command writes nothing at all, so a file it may not write (a read-only
    mount) is opened for reading instead of refused.
    """
    from db.engine import make_engine, ping
    from db.errors import SchemaError
    from db.migrate import require_intact, schema_state, upgrade

    url = settings.effective_database_url
    if not migrate or read_only:
        refuse_missing_database(settings)
    engine = make_engine(url, read_only=read_only)
    ping(engine)
    if migrate and not read_only:  # a command that writes never writes into a corrupt file
        require_intact(engine)
    state = schema_state(engine)
    if not state.up_to_date:
        if not migrate or read_only:
            raise SchemaError(
                f"the database schema is at revision {state.current or 'none'}, this program "
                f"needs {state.head}: run `station db upgrade` first (it backs a SQLite file up)"
            )
        upgrade(engine)
    return engine


def read_secret(prompt: str = "secret: ", *, confirm: bool = False) -> str:
    """From the terminal without echo, or the first line of stdin when it is not a terminal."""
    if sys.stdin is None:
        raise AuthError("no secret given: run in a terminal or pipe the secret on stdin")
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        secret = line.rstrip("\r\n")
    else:
        secret = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != secret:
            raise AuthError("the two secrets differ; nothing was saved")
    if not secret:
        raise AuthError("empty secret: expected at least one character")
    try:
        secret.encode("utf-8")
    except UnicodeEncodeError:
        # stdin decodes undecodable bytes to surrogates; they could never be hashed or typed
        raise AuthError("the secret is not valid UTF-8 text: expected what you type") from None
    return secret


def login(engine: Engine, name: str):  # -> db.models.Operator
    """Authenticate `--user NAME` with a secret read without echo (or from stdin when piped)."""
    from db.engine import session_scope
    from station.auth import authenticate

    secret = read_secret(f"secret for {name}: ")
    with session_scope(engine) as session:
        return authenticate(session=session, name=name, secret=secret)


def thresholds_in_force(settings: Settings) -> str:
    """station.thresholds.in_force_words on the configured database, read-only; a missing or
    unreadable database reads as "none in force" with the reason."""
    from station.thresholds import in_force_words

    try:
        engine = open_database(settings, read_only=True)
    except (StationError, DbError) as e:
        return in_force_words(None, settings).replace("no database yet", f"no database: {e}")
    try:
        return in_force_words(engine, settings)
    finally:
        engine.dispose()
