"""`station report`: the agreement report (human x model) as HTML, PDF, JSON or CSV, with filters.

PDF is the same HTML page laid out on A4 by WeasyPrint through its print style (review.pdf).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, settings_from

FORMAT_HELP = (
    "html (one self-contained file), pdf (the same page on A4), json, or csv (one row per item)."
)
CLI_FORMATS = ("html", "pdf", "json", "csv")


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        out: Annotated[
            str, typer.Option("--out", help="Output file; '-' writes json/csv to stdout.")
        ],
        fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "html",
        db: DbOpt = None,
        config: ConfigOpt = None,
        station: Annotated[str | None, typer.Option("--station", help="Station name.")] = None,
        inspector: Annotated[
            str | None, typer.Option("--inspector", help="Operator name of the deciding inspector.")
        ] = None,
        model_version: Annotated[
            str | None,
            typer.Option(
                "--model-version", help="NAME:VERSION (or VERSION); any slot, not only champion."
            ),
        ] = None,
        level: Annotated[
            str | None,
            typer.Option(
                "--level", help="human_only, shadow, assist, partial or full (of the disposition)."
            ),
        ] = None,
        since: Annotated[
            str | None,
            typer.Option("--since", help="Captured at or after: YYYY-MM-DD[THH:MM] UTC."),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option("--until", help="Captured before; a bare date includes that whole day."),
        ] = None,
        evidence_only: Annotated[
            bool,
            typer.Option(
                "--evidence-only", help="Only unbiased items: shadow, blind, audit, golden."
            ),
        ] = False,
    ) -> None:
        """Agreement matrices, kappa, escape / miss / false-reject rates, risk/coverage and gates."""
        from db.models import Level
        from review.errors import ReportFormatError
        from review.query import ReportFilters
        from review.report import (
            build_report,
            check_out_path,
            dumps,
            write_csv,
            write_report,
        )
        from station.cli.common import open_database
        from station.cli.outputs import refuse_output, station_files
        from station.cli.progress import stages

        fmt = fmt.lower()
        if fmt not in CLI_FORMATS:
            raise ReportFormatError(
                f"--format {fmt!r} is not supported: expected one of {', '.join(CLI_FORMATS)}"
            )
        if out != "-":
            check_out_path(Path(out))
        filters = ReportFilters.parse(
            station=station,
            inspector=inspector,
            model_version=model_version,
            level=level,
            since=since,
            until=until,
            evidence_only=evidence_only,
        )
        settings = settings_from(config, database_url=db)
        if out != "-":
            refuse_output(out, "--out", station_files(settings))
        engine = open_database(settings, read_only=True)
        labels = settings.labels
        rules = settings.gates.rules
        default_level = Level(settings.levels.default)
        if out == "-":
            if fmt in ("html", "pdf"):
                raise ReportFormatError(
                    f"--out - (stdout) is for json or csv; give a file for {fmt}"
                )
            if fmt == "csv":
                # Rows streaming onto a terminal show their own progress (a spinner would
                # draw over them); piped away, they leave the terminal to the spinner.
                busy = nullcontext() if sys.stdout.isatty() else stages("writing csv rows")
                with busy:
                    write_csv(engine, filters, sys.stdout)
            else:
                with stages("building the report") as on_stage:
                    report = build_report(
                        engine,
                        filters,
                        labels=labels,
                        rules=rules,
                        default_level=default_level,
                        canary_rules=settings.lifecycle.canary_rules,
                        on_stage=on_stage,
                    )
                typer.echo(dumps(report))  # once the spinner is gone
            return
        with stages("building the report") as on_stage:
            summary = write_report(
                engine,
                filters,
                fmt,
                Path(out),
                labels=labels,
                rules=rules,
                image_root=settings.image_dir,
                default_level=default_level,
                canary_rules=settings.lifecycle.canary_rules,
                on_stage=on_stage,
            )
        if "rows" in summary:
            typer.echo(f"wrote {summary['rows']} rows to {summary['path']}")
        else:
            c = summary["counts"]
            pages = f" ({summary['pages']} pages)" if "pages" in summary else ""
            typer.echo(
                f"wrote {fmt} report to {summary['path']}{pages}: {c['items']} items, "
                f"{c['paired']} paired, {c['evidence']} evidence"
            )
            for m in summary["messages"]:
                typer.echo(f"note: {m}", err=True)
