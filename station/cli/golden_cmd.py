"""`station golden add | list`: golden sets of real labelled images, registered by a QA lead,
that measure inspectors (never the line's estimates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, UserOpt, login, open_database, settings_from


def register(app: typer.Typer) -> None:
    golden_app = typer.Typer(
        help="Golden sets: real labelled images that measure inspectors.", no_args_is_help=True
    )
    app.add_typer(golden_app, name="golden")

    @golden_app.command("add")
    def add_cmd(
        folder: Annotated[
            Path,
            typer.Option(
                "--folder", help="One sub-folder per label (ok/, scratch/, ...) of images."
            ),
        ],
        user: UserOpt,
        name: Annotated[str, typer.Option("--name", help="The set's name.")] = "default",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Register the labelled images of a folder as golden samples (QA leads only).

        Each image is checked and stored by its hash; images already in the set are skipped,
        unreadable ones listed. The station draws its golden samples from the registered sets
        at the settings' levels.golden_share."""
        from station.frames.store import ImageStore
        from station.golden import register_folder

        settings = settings_from(config, database_url=db)
        engine = open_database(settings, migrate=False)
        operator = login(engine, user)
        out = register_folder(
            engine,
            ImageStore(settings.image_dir),
            folder,
            set_name=name,
            labels=settings.labels,
            operator=operator,
        )
        per_label = ", ".join(f"{n} {label}" for label, n in sorted(out.added.items())) or "none"
        typer.echo(
            f"golden set {name!r}: added {sum(out.added.values())} ({per_label}); "
            f"{out.already} already in the set; {len(out.skipped)} skipped"
        )
        for line in out.skipped:
            typer.echo(f"  skipped {line}")
        if not out.added and not out.already:
            raise typer.Exit(1)

    @golden_app.command("retire")
    def retire_cmd(
        name: Annotated[str, typer.Option("--name", help="The set to stop drawing from.")],
        user: UserOpt,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Stop drawing golden samples from a set (QA leads only; its record stays)."""
        from station.golden import retire_set

        settings = settings_from(config, database_url=db)
        engine = open_database(settings, migrate=False)
        operator = login(engine, user)
        n = retire_set(engine, name, operator=operator)
        typer.echo(f"golden set {name!r} retired: {n} images no longer drawn")

    @golden_app.command("list")
    def list_cmd(
        fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """The registered golden sets: images per label."""
        from station.golden import registered_samples

        if fmt not in ("text", "json"):
            raise typer.BadParameter(f"{fmt!r}: expected text or json", param_hint="--format")
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        sets: dict[str, dict[str, int]] = {}
        for sample in registered_samples(engine):
            per = sets.setdefault(sample.set_name, {})
            per[sample.label] = per.get(sample.label, 0) + 1
        if fmt == "json":
            typer.echo(json.dumps(sets, indent=2))
            return
        if not sets:
            typer.echo("no golden set is registered (`station golden add --folder DIR`)")
        for set_name, per in sorted(sets.items()):
            counts = ", ".join(f"{n} {label}" for label, n in sorted(per.items()))
            typer.echo(f"{set_name}: {sum(per.values())} images ({counts})")
