"""`station user ...`: operators and their roles."""

from __future__ import annotations

from typing import Annotated

import typer

from db.models import Role
from station.cli.common import (
    ConfigOpt,
    DbOpt,
    UserOpt,
    login,
    open_database,
    read_secret,
    settings_from,
)


def check_operator_name(name: str) -> str:
    """A login name people can read and type: 1-64 printable characters, no spaces, no
    invisible ones (an "eng" with a zero-width space would display as "eng"), valid UTF-8."""
    import unicodedata

    from station.errors import StationError

    name = name.strip()
    problems = []
    if not 1 <= len(name) <= 64:
        problems.append(f"{len(name)} characters")
    hidden = [
        f"U+{ord(c):04X}"
        for c in name
        if c.isspace() or not c.isprintable() or unicodedata.category(c) in ("Cf", "Cs", "Co")
    ]
    if hidden:
        problems.append("spaces, control or invisible characters (" + ", ".join(hidden[:5]) + ")")
    if problems:
        shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise StationError(
            f"operator name {shown[:80]!r} has {' and '.join(problems)}: expected 1-64 visible "
            "characters without spaces, e.g. lan or lan.nguyen"
        )
    return name


def register(app: typer.Typer) -> None:
    user_app = typer.Typer(help="Operators: inspectors, QA leads, engineers.", no_args_is_help=True)
    app.add_typer(user_app, name="user")

    @user_app.command("add")
    def add(
        name: Annotated[str, typer.Argument(help="Login name, e.g. lan.")],
        role: Annotated[Role, typer.Option("--role", help="What the operator may do.")],
        user: Annotated[
            str | None,
            typer.Option(
                "--user",
                help="An engineer adding the operator (needed once any engineer exists); "
                "their secret is asked first.",
            ),
        ] = None,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Add an operator. The first operator must be an engineer; after that only an engineer
        (--user) may add operators. Secrets are read without echo, or one per line from stdin."""
        from sqlmodel import select

        from db.engine import session_scope
        from db.models import Operator
        from db.repo import add_operator
        from station.auth import hash_secret, require
        from station.errors import AuthError

        name = check_operator_name(name)
        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        with session_scope(engine) as session:
            has_engineer = (
                session.exec(select(Operator).where(Operator.role == Role.engineer)).first()
                is not None
            )
        if has_engineer:
            # Otherwise anyone at the keyboard could make themselves an engineer and override gates.
            if user is None:
                raise AuthError(
                    "operators are added by an engineer: pass --user ENGINEER (their secret is "
                    "asked first)"
                )
            require(login(engine, user), "manage_users")
        elif role != Role.engineer:
            raise AuthError(
                "the first operator must be an engineer, who then adds the others: "
                "station user add NAME --role engineer"
            )
        secret = read_secret(f"secret for {name}: ", confirm=True)
        with session_scope(engine) as session:
            add_operator(session=session, name=name, role=role, secret_hash=hash_secret(secret))
        typer.echo(f"added {name} ({role.value})")

    @user_app.command("unlock")
    def unlock_cmd(
        name: Annotated[str, typer.Argument(help="The operator whose failed logins to forgive.")],
        user: UserOpt,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Lift the wait or lock that failed logins put on NAME (an engineer; recorded)."""
        from db.engine import session_scope
        from station.auth import throttle, unlock

        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        engineer = login(engine, user)
        with session_scope(engine) as session:
            before = throttle(session=session, name=name)
        unlock(engine, name, by=engineer)
        typer.echo(f"unlocked {name} ({before.failures} failed login(s) in a row forgiven)")

    @user_app.command("list")
    def list_(db: DbOpt = None, config: ConfigOpt = None) -> None:
        """List operators and their roles (never their secrets)."""
        from db.engine import session_scope
        from db.repo import list_operators

        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        with session_scope(engine) as session:
            operators = list_operators(session=session)
            if not operators:
                typer.echo("no operators yet: add one with `station user add NAME --role ROLE`")
                return
            for op in operators:
                state = "" if op.active else "  (inactive)"
                typer.echo(
                    f"{op.name:<24} {op.role.value:<10} since {op.created_at:%Y-%m-%d}{state}"
                )
