"""`station review`: the QA lead's review window (matrix, gallery, adjudication, gate, export)."""

from __future__ import annotations

from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, UserOpt, login, open_database, settings_from
from station.cli.display import window_problem
from station.errors import StationError


class NoDisplay(StationError):
    pass


def display_problem() -> str | None:
    """Why no window can open here, or None. Qt would abort the process instead of raising."""
    return window_problem(
        "station review",
        "or write the report to a file instead: `station report --format html --out review.html`",
    )


def register(app: typer.Typer) -> None:
    @app.command("review")
    def review_cmd(
        user: UserOpt,
        db: DbOpt = None,
        config: ConfigOpt = None,
        station: Annotated[
            str | None, typer.Option("--station", help="Start with this station's items.")
        ] = None,
        evidence_only: Annotated[
            bool, typer.Option("--evidence-only", help="Start with unbiased items only.")
        ] = False,
    ) -> None:
        """The review window: agreement matrix, disagreement gallery, adjudication, gate, export.

        A qa_lead adjudicates; an engineer may browse. The secret is read without echo."""
        from db.models import Level
        from review.query import ReportFilters
        from station.auth import allowed, require

        filters = ReportFilters.parse(station=station, evidence_only=evidence_only)
        problem = display_problem()
        if problem:
            raise NoDisplay(problem)
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, migrate=False)
        operator = login(engine, user)
        require(operator, "review")
        if not allowed(operator, "adjudicate"):
            typer.echo(
                f"{operator.name} is {operator.role.value}: browsing only "
                "(adjudication needs qa_lead)",
                err=True,
            )

        from review.audits import AuditSPRT
        from review.ui import ReviewConfig, run
        from station.heatmaps import model_opener

        a = settings.audits
        config_ = ReviewConfig(
            image_root=settings.image_dir,
            labels=settings.labels,
            rules=settings.gates.rules,
            default_level=Level(settings.levels.default),
            filters=filters,
            audit_test=lambda: AuditSPRT(a.sprt_p0, a.sprt_p1, a.sprt_alpha, a.sprt_beta),
            # The heat-map's model: opened only when H is first pressed, never at start.
            open_model=model_opener(settings.files_dir),
        )
        raise typer.Exit(run(engine, operator, config_))
