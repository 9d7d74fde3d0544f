"""`station config show`: the effective settings and where each value came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, thresholds_in_force
from station.settings import default_config_path, effective_items, load_settings


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Inspect the station's settings.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("show")
    def show(
        config: ConfigOpt = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print JSON instead of a table.")
        ] = False,
    ) -> None:
        """Print every setting, its effective value and its source (default, file, env, flag)."""
        settings, sources = load_settings(config)
        values = effective_items(settings)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        k: {"value": v, "source": sources.get(k, "default")}
                        for k, v in values.items()
                    },
                    indent=2,
                )
            )
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"effective settings ({_files_read(config)})")
        table.add_column("key")
        table.add_column("value")
        table.add_column("source")
        for key, value in values.items():
            source = sources.get(key, "default")
            if key == "database_url" and not settings.database_url:
                source = "default (data_dir/station.db)"
            table.add_row(key, json.dumps(value) if not isinstance(value, str) else value, source)
        console = Console(width=160)
        console.print(table)
        console.print(
            "thresholds.auto_pass / auto_fail are what `station simulate` runs under, and "
            "never_pass_above the caps `station thresholds fit` writes into a set; a station "
            "decides by the set approved for its model.\n"
            f"thresholds in force: {thresholds_in_force(settings)}",
            highlight=False,
        )


def _files_read(config: Path | None) -> str:
    """Which settings file these values came from; a user config file that does not exist is
    named as where one would be read, never as a source."""
    if config is not None:
        return f"file: {config}"
    user = default_config_path()
    if user.exists():
        return f"user config file: {user}"
    return f"no settings file; one would be read from {user}"
