"""`station db ...`: create/migrate the schema, check it against the models, back it up online."""

from __future__ import annotations

from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, refuse_missing_database, settings_from


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(
        help="The database of record: migrate, check, back up.", no_args_is_help=True
    )
    app.add_typer(db_app, name="db")

    @db_app.command("upgrade")
    def upgrade_cmd(
        db: DbOpt = None,
        config: ConfigOpt = None,
        backup: Annotated[
            bool, typer.Option("--backup/--no-backup", help="Back a SQLite file up first.")
        ] = True,
    ) -> None:
        """Create the database or migrate it to the newest schema (a SQLite file is backed up first)."""
        from db.engine import make_engine, ping
        from db.migrate import schema_state, upgrade

        settings = settings_from(config, database_url=db)
        engine = make_engine(settings.effective_database_url)
        ping(engine)
        before = schema_state(engine)
        state, backup_path = upgrade(engine, backup=backup)
        where = engine.url.render_as_string(hide_password=True)
        if before.current == state.current:
            typer.echo(f"{where}: schema already at {state.head}")
        else:
            typer.echo(f"{where}: schema {before.current or 'empty'} -> {state.current}")
        if backup_path is not None:
            typer.echo(f"backup written to {backup_path}")

    @db_app.command("check")
    def check_cmd(db: DbOpt = None, config: ConfigOpt = None) -> None:
        """Exit 0 when the schema equals the models and the record is intact, 1 otherwise.

        Runs SQLite's full integrity check, compares the schema with the models and walks the
        tamper-evidence chain (`station audit verify`)."""
        from db.engine import make_engine, ping
        from db.migrate import check, require_intact
        from station.cli.progress import stages

        settings = settings_from(config, database_url=db)
        refuse_missing_database(settings)
        engine = make_engine(settings.effective_database_url, read_only=True)
        ping(engine)
        with stages("checking the file's integrity") as stage:
            require_intact(engine, quick=False)
            stage("comparing the schema with the models")
            problems = check(engine)
        if problems:
            typer.echo("schema differs from the models:", err=True)
            for p in problems:
                typer.echo(f"  {p}", err=True)
            raise typer.Exit(1)
        typer.echo("schema matches the models")
        from db.chain import verify
        from station.cli.audit_cmd import say

        with stages("walking the chains") as stage, engine.connect() as conn:
            chain = verify(conn, on_stage=stage)
        if not chain.intact:
            typer.echo(f"the record was tampered with:\n{say(chain)}", err=True)
            raise typer.Exit(1)
        typer.echo(f"record intact: {chain.rows_checked} chained rows verified")

    @db_app.command("backup")
    def backup_cmd(
        path: Annotated[
            str, typer.Argument(help="Backup file, or a folder (ending in /) for a dated file.")
        ],
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Copy a SQLite database consistently while the station keeps writing (online backup)."""
        from db.engine import make_engine
        from db.migrate import backup_sqlite
        from station.cli.outputs import refuse_output, station_files
        from station.cli.progress import stages

        settings = settings_from(config, database_url=db)
        refuse_missing_database(settings)
        refuse_output(path, "PATH", station_files(settings))
        engine = make_engine(settings.effective_database_url, read_only=True)
        with stages("backing up") as stage:
            dest = backup_sqlite(engine, path, on_stage=stage)
        typer.echo(f"backup written to {dest}")
