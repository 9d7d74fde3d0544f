"""`station dataset export`: the record's verified items as a training folder (station.dataset)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, open_database, settings_from


def register(app: typer.Typer) -> None:
    dataset_app = typer.Typer(
        help="Training data from the record: verified labels only.", no_args_is_help=True
    )
    app.add_typer(dataset_app, name="dataset")

    @dataset_app.command("export")
    def export_cmd(
        out: Annotated[
            Path, typer.Option("--out", help="A new folder: train/<class>/, holdout/<class>/.")
        ],
        station: Annotated[
            str | None, typer.Option("--station", help="Only this station's items.")
        ] = None,
        since: Annotated[
            str | None, typer.Option("--since", help="Items captured from YYYY-MM-DD on.")
        ] = None,
        until: Annotated[
            str | None, typer.Option("--until", help="Items captured before YYYY-MM-DD.")
        ] = None,
        include_agreed: Annotated[
            bool,
            typer.Option(
                "--include-agreed",
                help="Also uniform items where inspector and model agreed, flagged weak.",
            ),
        ] = False,
        holdout: Annotated[
            float,
            typer.Option(
                "--holdout", help="Share of images (by hash) kept apart to evaluate on, 0-0.9."
            ),
        ] = 0.2,
        fmt: Annotated[
            str, typer.Option("--format", help="text or json (the summary on stdout).")
        ] = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Write adjudicated, golden and known-truth items as an image folder with a manifest.

        Each image's label source is in manifest.json (adjudicated, truth_sample, golden,
        known_truth, agreed). A suggestion-shown item is never taken as truth unless
        adjudicated; the same image never lands in both train/ and holdout/. Train on it with
        `station model train --data OUT/train`."""
        from review.query import ReportFilters
        from station.dataset import export_dataset

        if fmt not in ("text", "json"):
            raise typer.BadParameter(f"expected text or json, got {fmt!r}", param_hint="--format")
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        summary = export_dataset(
            engine,
            ReportFilters.parse(station=station, since=since, until=until),
            out,
            image_root=settings.image_dir,
            classes=list(settings.labels.all),
            include_agreed=include_agreed,
            holdout=holdout,
        )
        counts = summary.counts()
        if fmt == "json":
            typer.echo(
                json.dumps(
                    {
                        "out": str(out),
                        "images": len(summary.items),
                        "counts": counts,
                        "by_source": summary.by_source(),
                        "skipped": dict(summary.skipped),
                    },
                    indent=2,
                )
            )
        else:
            typer.echo(f"wrote {len(summary.items)} images to {out} (manifest.json beside them)")
            for split, per_class in counts.items():
                shown = ", ".join(f"{k} {v}" for k, v in per_class.items()) or "none"
                typer.echo(f"  {split:<8} {shown}")
            sources = ", ".join(f"{k} {v}" for k, v in summary.by_source().items()) or "none"
            typer.echo(f"  label sources: {sources}")
            for why, n in sorted(summary.skipped.items()):
                typer.echo(f"  left out: {n} ({why})")
