"""`station audit verify`: the tamper-evidence chain (db/chain.py), walked end to end."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, open_database, settings_from


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="Tamper evidence of the record.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @audit_app.command("verify")
    def verify_cmd(
        fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Check every chained row against its hash chain; exit 0 intact, 1 with what changed.

        Level changes, gate evaluations, threshold sets, model deployments, dispositions, human
        decisions, adjudications and operators: an edited, deleted or inserted row is named.
        Keep the heads it prints elsewhere: a later head that does not extend them shows a
        chain rewritten as a whole."""
        from db.chain import verify
        from station.cli.progress import stages

        if fmt not in ("text", "json"):
            raise typer.BadParameter(f"{fmt!r}: expected text or json", param_hint="--format")
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        with stages("walking the chains") as stage, engine.connect() as conn:
            result = verify(conn, on_stage=stage)
        if fmt == "json":
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            typer.echo(say(result))
        raise typer.Exit(0 if result.intact else 1)


def say(result) -> str:  # type: ignore[no-untyped-def]  # db.chain.Verification
    lines = [
        f"{'INTACT' if result.intact else 'TAMPERED'}: {result.rows_checked} rows checked in "
        f"{len(result.chains)} chain(s)"
    ]
    for name, c in sorted(result.chains.items()):
        lines.append(f"  {name:<14} {c.length:>8} entries  head {c.head[:16]}..")
    lines += [f"  ! {p}" for p in result.problems]
    return "\n".join(lines)
