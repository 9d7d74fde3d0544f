"""`station alarms`, `station monitor check` and `station metrics serve`: watching the line after
deployment (station/monitor.py, station/metrics.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from station.cli.common import ConfigOpt, DbOpt, open_database, settings_from


def _format(fmt: str) -> str:
    if fmt not in ("text", "json"):
        raise typer.BadParameter(f"{fmt!r}: expected text or json", param_hint="--format")
    return fmt


StationOpt = Annotated[
    str | None,
    typer.Option("--station", help="Station name (default: this station's, from the settings)."),
]


def register(app: typer.Typer) -> None:
    app.command("alarms")(alarms_cmd)
    app.command("dashboard")(dashboard_cmd)
    monitor_app = typer.Typer(help="Drift checks of the line.", no_args_is_help=True)
    app.add_typer(monitor_app, name="monitor")
    monitor_app.command("check")(check_cmd)
    metrics_app = typer.Typer(help="Prometheus metrics of the station.", no_args_is_help=True)
    app.add_typer(metrics_app, name="metrics")
    metrics_app.command("serve")(serve_cmd)


def alarms_cmd(
    station: StationOpt = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only the alarms still open.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Open and past drift alarms of a station, oldest first.

    A warning stays open until its check is back within bounds; a failure (which demoted the
    station) until a gate passes again (`station level set` with a passing gate)."""
    from db.engine import session_scope
    from station.levels import resolve_station
    from station.monitor import alarm_rows

    _format(fmt)
    settings = settings_from(config, database_url=db)
    engine = open_database(settings, read_only=True)
    with session_scope(engine) as s:
        st = resolve_station(s, settings, station)
        rows = alarm_rows(s, st.id, open_only=open_only)
        name = st.name
    if fmt == "json":
        typer.echo(json.dumps({"station": name, "alarms": rows}, indent=2))
        return
    typer.echo(say_alarms(name, rows))


def say_alarms(station: str, rows: list[dict[str, Any]]) -> str:
    open_n = sum(r["open"] for r in rows)
    lines = [f"station {station}: {open_n} open alarm(s), {len(rows) - open_n} closed"]
    for r in rows:
        state = "OPEN  " if r["open"] else "closed"
        lines.append(
            f"  #{r['id']:<5} {state} {r['severity'].upper():<4} {r['opened_at'][:19]}  {r['message']}"
        )
        if r["level_change_id"]:
            lines.append(f"         demoted the station (level change #{r['level_change_id']})")
        if not r["open"]:
            lines.append(f"         closed {r['closed_at'][:19]}: {r['closed_reason']}")
    return "\n".join(lines)


def check_cmd(
    station: StationOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run one round of drift checks on the recorded items now, as a running station does every
    `monitor.every_items` items: the results are stored, alarms raised or cleared, and a failing
    check demotes the station (never promotes). Exit 1 when a check fails."""
    from db.engine import session_scope
    from station.cli.progress import stages
    from station.levels import resolve_station
    from station.monitor import check_station

    _format(fmt)
    settings = settings_from(config, database_url=db)
    engine = open_database(settings)
    with session_scope(engine) as s:
        st = resolve_station(s, settings, station)
        assert st.id is not None
        station_id, name = st.id, st.name
    with stages(f"running the drift checks of station {name}"):
        result = check_station(engine, settings, station_id)
    if fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "station": name,
                    "status": result.status,
                    "checks": [
                        {
                            "check": c.check,
                            "n": c.n,
                            "statistic": c.statistic,
                            "warn": c.warn,
                            "fail": c.fail,
                            "verdict": c.verdict,
                            "detail": c.detail,
                        }
                        for c in result.checks
                    ],
                    "opened": [a.id for a in result.opened],
                    "closed": [a.id for a in result.closed],
                    "demoted_to": None if result.demoted is None else str(result.demoted.to_level),
                    "canary_stopped": result.canary_stopped,
                },
                indent=2,
                default=str,
            )
        )
    else:
        lines = [f"station {name}: {result.status}"]
        lines += [f"  {c.verdict.upper():<7} {c.text()}" for c in result.checks]
        if result.demoted is not None:
            lines.append(f"demoted to {result.demoted.to_level}: {result.demoted.reason}")
        if result.canary_stopped:
            lines.append(f"canary {result.canary_stopped} stopped")
        typer.echo("\n".join(lines))
    raise typer.Exit(1 if result.failing else 0)


def serve_cmd(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 9108,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; localhost by default (put a proxy in front)."
        ),
    ] = "127.0.0.1",
    station: StationOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve Prometheus metrics (inspection_*) read from the record at each scrape, on
    http://HOST:PORT/metrics, until Ctrl-C."""
    import threading

    from station.metrics import serve

    settings = settings_from(config, database_url=db)
    engine = open_database(settings, read_only=True)
    server = serve(engine, settings, port=port, host=host, station=station)
    typer.echo(f"serving http://{host}:{server.port}/metrics (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def dashboard_cmd(
    station: StationOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Open the engineer's dashboard: throughput, capture-to-decision and model latency, agreement,
    drift scores against their thresholds and open alarms, refreshed from the record every few
    seconds (the station window shows the same to an engineer on F9)."""
    from db.engine import session_scope
    from station.cli.display import window_problem
    from station.errors import StationError
    from station.levels import resolve_station

    settings = settings_from(config, database_url=db)
    problem = window_problem(
        "station dashboard", "for the same numbers headless use `station metrics serve`"
    )
    if problem:
        raise StationError(problem)
    engine = open_database(settings, read_only=True)
    with session_scope(engine) as s:
        st = resolve_station(s, settings, station)
        assert st.id is not None
        station_id, name = st.id, st.name
    from station.ui.dashboard import run_dashboard  # Qt only from here on

    run_dashboard(engine, settings, station_id, name)
