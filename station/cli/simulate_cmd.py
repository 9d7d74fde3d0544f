"""`station simulate`: the station's pipeline headless, with simulated inspectors on the synthetic
line, writing real records (a week of line data in minutes)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from db.models import Level
from station.cli.common import ConfigOpt, DbOpt, open_database, parse_wxh, settings_from
from station.errors import StationError

LEVELS = [lv.value for lv in Level]


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)


def _level(value: str) -> Level:
    try:
        return Level(value)
    except ValueError as e:
        raise StationError(f"unknown level {value!r}: expected one of {', '.join(LEVELS)}") from e


def _station_name(name: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise StationError(f"--station {name!r}: expected 1-64 letters, digits, '_', '.' or '-'")
    return name


def _share(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise StationError(f"{name} must be a probability in [0, 1], got {value}")
    return value


def simulate_cmd(
    items: Annotated[
        int, typer.Option("--items", min=1, max=10_000_000, help="How many phones to run.")
    ] = 500,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the line, routing and inspectors.")
    ] = 0,
    level: Annotated[
        str, typer.Option("--level", help=f"Automation level: {' | '.join(LEVELS)}.")
    ] = "shadow",
    station: Annotated[
        str,
        typer.Option(
            "--station",
            help="Simulation station to record into (created if new). Never a real station: a "
            "simulation leaves a real line's level and history alone.",
        ),
    ] = "sim",
    inspectors: Annotated[
        int,
        typer.Option("--inspectors", min=1, max=100, help="Simulated inspectors (round robin)."),
    ] = 1,
    inspector_accuracy: Annotated[
        float,
        typer.Option(
            "--inspector-accuracy", help="Chance an inspector catches a defect / passes an ok."
        ),
    ] = 0.95,
    assist_bias: Annotated[
        float,
        typer.Option("--assist-bias", help="Chance an inspector follows a wrong suggestion shown."),
    ] = 0.3,
    defect_rate: Annotated[
        float, typer.Option("--defect-rate", help="Share of defective phones on the line.")
    ] = 0.3,
    model: Annotated[
        str | None, typer.Option("--model", help="Model folder (default: settings, else bundled).")
    ] = None,
    interval_s: Annotated[
        float,
        typer.Option("--interval", min=0.1, max=86_400.0, help="Simulated seconds between phones."),
    ] = 4.0,
    size: Annotated[
        str,
        typer.Option(
            "--size",
            help="Still size WxH. 512x288 keeps simulate fast on 2 cores; the bundled model "
            "(served at 640x368) scored 0.96 on 200 such stills and 1.0 on 1280x720 ones.",
        ),
    ] = "512x288",
    drift: Annotated[
        str | None,
        typer.Option(
            "--drift",
            help="Drift the line from an item of this run on: KNOB=VALUE[,KNOB=VALUE][@ITEM], "
            "knobs light (gain, 0.05-3), defocus (blur sigma px), phone_color (blue, gold, red, "
            "green, silver), color_share, defect_style (v2: a new defect look); "
            "e.g. --drift light=0.6@300.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Run N phones through guard, router, model and recorder with simulated inspectors.

    The records go to a simulation station of their own (--station, default 'sim'); read them
    with e.g. `station report --station sim` or `station gate check --station sim`."""
    from station.cli.progress import counting
    from station.pipeline.simulate import SimulateConfig, parse_drift, simulate

    width, height = parse_wxh(size, "--size", "640x360")
    knobs, drift_after = parse_drift(drift) if drift is not None else ({}, 0)
    cfg = SimulateConfig(
        width=width,
        height=height,
        items=items,
        seed=seed,
        level=_level(level),
        station=_station_name(station),
        inspectors=inspectors,
        inspector_accuracy=_share("--inspector-accuracy", inspector_accuracy),
        assist_bias=_share("--assist-bias", assist_bias),
        defect_rate=_share("--defect-rate", defect_rate),
        model_path=model,
        interval_s=interval_s,
        drift=knobs,
        drift_after=drift_after,
    )
    settings = settings_from(config, database_url=db)
    engine = open_database(settings)
    # The bar is gone before the summary is printed: stdout gets the summary (or JSON) alone.
    with counting(f"simulating at {cfg.level.value}", cfg.items) as progress:
        summary = simulate(settings, engine, cfg, progress=progress)
    if as_json:
        json.dump(summary.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        if summary.rejected or summary.unsaved or summary.stopped:
            raise typer.Exit(1)
        return
    s = summary

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    lines = [
        f"{s.items} items at {s.level} on simulation station {s.station}"
        + (f" (dropped to {s.final_level})" if s.final_level != s.level else "")
        + f" in {s.seconds:.1f} s ({s.items_per_s:.1f} items/s after start-up)",
        f"decisions: {s.human_decisions} by humans, {s.model_decisions} by the model"
        f" (model: {s.model or 'none'})",
        f"human decisions: shown {s.shown}, blind {s.blind}, audit {s.audit}, golden {s.golden}",
        f"human vs model agreement: {pct(s.agreement)} on {s.paired} paired items"
        f" (pass/fail {pct(s.agreement_pass_fail)})",
        f"accuracy vs truth: humans {pct(s.human_accuracy)}, model {pct(s.model_accuracy)}",
    ]
    if s.champion_after:
        lineup = f"champion {s.champion_after}"
        if s.challenger_after:
            lineup += (
                f", canary {s.challenger_after} at {s.canary_weight_after:g}%"
                if s.canary_weight_after > 0
                else f", challenger {s.challenger_after} (hidden)"
            )
        lines.append(f"models at the end: {lineup}")
    if s.lifecycle:
        lines.append(f"lifecycle: {s.lifecycle}")
    for alarm in s.alarms:
        lines.append(f"alarm: {alarm}")
    if s.demoted_at_item is not None:
        lines.append(f"an alarm demoted the station before item {s.demoted_at_item} of this run")
    if s.model_errors or s.guard_failed:
        lines.append(f"model errors {s.model_errors}, frames refused by the guard {s.guard_failed}")
    if s.stopped:
        lines.append(f"ERROR: {s.stopped}")
    if s.pending_writes:
        lines.append(
            f"WARNING: {s.pending_writes} record(s) wait in the spool file (database not "
            "writable); they are written by the next station or simulate on this database"
        )
    if s.unsaved:
        lines.append(f"ERROR: {s.unsaved} decision(s) could not be saved anywhere and are lost")
    if s.rejected:
        lines.append(
            f"ERROR: {s.rejected} record(s) refused by the database, kept aside in "
            "decision-rejected.jsonl beside the spool"
        )
    lines += [f"! {b}" for b in s.banners]
    typer.echo("\n".join(lines))
    if s.rejected or s.unsaved or s.stopped:
        raise typer.Exit(1)
