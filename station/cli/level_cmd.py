"""`station gate check` and `station level show|set|history`: the automation ladder, by evidence."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DbOpt, UserOpt, login, open_database, settings_from

LEVELS = "human_only | shadow | assist | partial | full"
StationOpt = Annotated[
    str | None, typer.Option("--station", help="Station name (default: settings station_name).")
]


def register(app: typer.Typer) -> None:
    gate_app = typer.Typer(help="Evidence gates between automation levels.", no_args_is_help=True)
    level_app = typer.Typer(help="The station's automation level.", no_args_is_help=True)
    app.add_typer(gate_app, name="gate")
    app.add_typer(level_app, name="level")

    @gate_app.command("check")
    def gate_check(
        to: Annotated[str, typer.Option("--to", help=f"Target level: {LEVELS}.")],
        station: StationOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Evaluate the gate to LEVEL on the recorded unbiased evidence; store and print the result.

        Exits 0 when the gate passes, 1 when it refuses."""
        from station.cli.progress import stages
        from station.levels import evaluate

        if fmt not in ("text", "json"):
            raise typer.BadParameter(f"{fmt!r}: expected text or json", param_hint="--format")
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, migrate=False)
        with stages(f"evaluating the gate to {to} on the recorded evidence"):
            result, evaluation_id, block = evaluate(engine, settings, to, station_name=station)
        if fmt == "json":
            # The same block as the report's `gates` (review.report.gate_check), plus its id.
            typer.echo(json.dumps({**block, "evaluation_id": evaluation_id}, indent=2))
        else:
            typer.echo(result.summary())
            n = block["numbers"]
            if n.get("rule_version"):
                vs = n.get("rule_escape_vs_inspector") or {}
                typer.echo(
                    f"  rule {n['rule_version']}: {n.get('rule_escapes')} escape(s) in "
                    f"{n.get('rule_truth_checked')} auto-passes adjudicated from its truth sample "
                    f"({n.get('rule_truth_pending')} waiting for a QA lead); against the "
                    f"inspector alone {vs.get('k')} of {vs.get('n')} (not judged)"
                )
            typer.echo(f"stored as gate evaluation #{evaluation_id}")
        raise typer.Exit(0 if result.passed else 1)

    @level_app.command("show")
    def show(station: StationOpt = None, db: DbOpt = None, config: ConfigOpt = None) -> None:
        """Print the level in force and when and why it was set."""
        from db.engine import session_scope
        from db.repo import level_history
        from station.levels import level_of, resolve_station

        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        name = station or settings.station_name
        level = level_of(engine, settings, name)
        with session_scope(engine) as s:
            st = resolve_station(s, settings, name)
            assert st.id is not None  # resolve_station returns a stored row
            history = level_history(session=s, station_id=st.id)
        typer.echo(f"station {name}: {level.value}")
        if history:
            last = history[-1]
            how = "automatic" if last.automatic else ("OVERRIDE" if last.override else "gated")
            typer.echo(f"  since {last.changed_at:%Y-%m-%d %H:%M} UTC ({how}): {last.reason}")
        else:
            typer.echo("  never changed: the settings default (levels.default)")

    @level_app.command("history")
    def history_cmd(station: StationOpt = None, db: DbOpt = None, config: ConfigOpt = None) -> None:
        """Every level change of the station, oldest first (append-only)."""
        from db.engine import session_scope
        from db.models import Operator
        from db.repo import level_history
        from station.levels import resolve_station

        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        with session_scope(engine) as s:
            st = resolve_station(s, settings, station)
            assert st.id is not None  # resolve_station returns a stored row
            rows = level_history(session=s, station_id=st.id)
            if not rows:
                typer.echo("no level changes recorded")
            for c in rows:
                who = "system"
                if c.operator_id:
                    op = s.get(Operator, c.operator_id)
                    who = op.name if op else f"operator #{c.operator_id}"
                tag = " [override]" if c.override else (" [automatic]" if c.automatic else "")
                gate = f" gate #{c.gate_evaluation_id}" if c.gate_evaluation_id else ""
                typer.echo(
                    f"{c.changed_at:%Y-%m-%d %H:%M} {c.from_level.value} -> {c.to_level.value} "
                    f"by {who}{tag}{gate}: {c.reason}"
                )

    @level_app.command("set")
    def set_cmd(
        level: Annotated[str, typer.Argument(help=f"New level: {LEVELS}.")],
        reason: Annotated[str, typer.Option("--reason", help="Why; kept in the record.")],
        user: UserOpt,
        override: Annotated[
            bool, typer.Option("--override", help="Promote although the gate refuses (recorded).")
        ] = False,
        station: StationOpt = None,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Change the level (engineers only). Promotion needs a passing gate or --override."""
        from station.levels import set_level

        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        operator = login(engine, user)
        outcome = set_level(
            engine,
            settings,
            level,
            operator=operator,
            reason=reason,
            override=override,
            station_name=station,
        )
        c = outcome.change
        typer.echo(
            f"station level {c.from_level.value} -> {c.to_level.value}"
            + (" (OVERRIDE of a failing gate, recorded)" if c.override else "")
        )
        if outcome.gate is not None:
            typer.echo(outcome.gate.summary())
