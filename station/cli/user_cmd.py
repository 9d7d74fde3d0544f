"""`station user ...`: operators and their roles."""

from __future__ import annotations

from typing import Annotated

import typer

from db.models import Role
from station.cli.common import ConfigOpt, DbOpt, open_database, read_secret, settings_from


def register(app: typer.Typer) -> None:
    user_app = typer.Typer(help="Operators: inspectors, QA leads, engineers.", no_args_is_help=True)
    app.add_typer(user_app, name="user")

    @user_app.command("add")
    def add(
        name: Annotated[str, typer.Argument(help="Login name, e.g. lan.")],
        role: Annotated[Role, typer.Option("--role", help="What the operator may do.")],
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Add an operator. The secret is read without echo, or from stdin when piped."""
        from db.engine import session_scope
        from db.repo import add_operator
        from station.auth import hash_secret

        name = name.strip()
        if not name or len(name) > 64 or any(c.isspace() for c in name):
            raise typer.BadParameter(
                f"{name!r}: expected 1-64 characters without spaces", param_hint="NAME"
            )
        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        secret = read_secret(f"secret for {name}: ", confirm=True)
        with session_scope(engine) as session:
            add_operator(session=session, name=name, role=role, secret_hash=hash_secret(secret))
        typer.echo(f"added {name} ({role.value})")

    @user_app.command("list")
    def list_(db: DbOpt = None, config: ConfigOpt = None) -> None:
        """List operators and their roles (never their secrets)."""
        from db.engine import session_scope
        from db.repo import list_operators

        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
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
