"""`station run`: the inspector's window on the embedded defaults (synthetic line, bundled model,
SQLite in the data dir) or on --source / --db / --model."""

from __future__ import annotations

from typing import Annotated

import typer

from db.models import Level
from station.cli.common import ConfigOpt, DbOpt, open_database, settings_from
from station.cli.display import window_problem
from station.errors import StationError

LEVELS = [lv.value for lv in Level]


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)


def run_cmd(
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="Camera source spec: synthetic, 0, file:PATH, rtsp://..., folder:DIR."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model folder a new station starts with (default: the bundled model); after "
            "that the station runs its deployed champion (`station model deploy`).",
        ),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            help=f"Demo: set the station's level at start ({' | '.join(LEVELS)}); engineers only.",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="If the database has no operators yet, create engineer 'demo' with secret "
            "'demo' so the embedded defaults can be tried at once (`make run` uses this).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Also serve Prometheus metrics on http://127.0.0.1:PORT/metrics while the "
            "window is open (as `station metrics serve`).",
        ),
    ] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Open the inspector's window (log in with your operator name and secret)."""
    lvl = None
    if level is not None:
        try:
            lvl = Level(level)
        except ValueError as e:
            raise StationError(
                f"unknown level {level!r}: expected one of {', '.join(LEVELS)}"
            ) from e
    settings = settings_from(config, database_url=db, camera_source=source, model_path=model)
    problem = window_problem("station run", "to run the pipeline headless use `station simulate`")
    if problem:
        raise StationError(problem)
    from station.frames.sources import parse_source_spec

    parse_source_spec(settings.camera_source)  # a malformed spec is refused before any window
    engine = open_database(settings)
    if settings.model_path:
        _refuse_a_model_that_is_not_the_champion(settings, engine)
    if demo:
        _create_demo_operator(engine)
    server = None
    running: list = []  # the StationApp once logged in: its process's own gauges
    if metrics_port is not None:
        from station.metrics import serve, station_gauges

        server = serve(
            engine,
            settings,
            port=metrics_port,
            station=settings.station_name,
            live=lambda: station_gauges(running[0].core) if running else iter(()),
        )
        typer.echo(f"metrics: http://127.0.0.1:{server.port}/metrics", err=True)
    from station.ui.app import run_window  # Qt only from here on

    try:
        code = run_window(settings, engine, level=lvl, on_start=running.append)
    finally:
        if server is not None:
            server.close()
    if code:
        raise typer.Exit(code)


def _create_demo_operator(engine) -> None:  # type: ignore[no-untyped-def]
    """Only into a database without any operator: never a second way into a real line's record."""
    from sqlmodel import select

    from db.engine import session_scope
    from db.models import Operator, Role
    from db.repo import add_operator
    from station.auth import hash_secret

    with session_scope(engine) as session:
        if session.exec(select(Operator)).first() is not None:
            return
        add_operator(
            session=session, name="demo", role=Role.engineer, secret_hash=hash_secret("demo")
        )
    typer.echo(
        "demo: this database had no operators, so engineer 'demo' with secret 'demo' was created; "
        "add real operators with `station user add` before using it on a line",
        err=True,
    )


def _refuse_a_model_that_is_not_the_champion(settings, engine) -> None:  # type: ignore[no-untyped-def]
    """--model / model_path name the model a station starts with on its first start; after that
    the record's champion runs, and another model is refused here, before any window."""
    from db.engine import session_scope
    from db.repo import find_station
    from station.pipeline.lineup import model_to_run

    with session_scope(engine) as session:
        station = find_station(session=session, name=settings.station_name)
        station_id = station.id if station is not None else None
    if station_id is not None:
        model_to_run(engine, settings, station_id)
