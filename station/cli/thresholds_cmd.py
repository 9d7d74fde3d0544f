"""`station thresholds fit | approve | show`: the rule by which the model decides alone, as
approved data (fitted on evidence, approved by an engineer, run by the router, judged by the
gates)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from station.cli.common import ConfigOpt, DbOpt, UserOpt, login, open_database, settings_from

StationOpt = Annotated[
    str | None, typer.Option("--station", help="Station name (default: settings station_name).")
]
FormatOpt = Annotated[str, typer.Option("--format", help="text | json")]


def _format(fmt: str) -> str:
    if fmt not in ("text", "json"):
        raise typer.BadParameter(f"{fmt!r}: expected text or json", param_hint="--format")
    return fmt


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def register(app: typer.Typer) -> None:
    thr_app = typer.Typer(
        help="The thresholds by which the model decides alone (partial / full).",
        no_args_is_help=True,
    )
    app.add_typer(thr_app, name="thresholds")

    @thr_app.command("fit")
    def fit_cmd(
        station: StationOpt = None,
        target_escape: Annotated[
            float | None,
            typer.Option(
                "--target-escape",
                help="Bound on the escape rate among auto-passes (default: the gate's "
                "max_escape_upper95).",
            ),
        ] = None,
        target_false_fail: Annotated[
            float,
            typer.Option("--target-false-fail", help="Bound on good items auto-failed."),
        ] = 0.02,
        fmt: FormatOpt = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Fit thresholds on the evidence and store them as a proposal.

        Auto-pass / auto-fail thresholds (caps from the settings) fitted on the station's uniform
        evidence for its champion model; not in force until an engineer approves them."""
        from station.cli.progress import stages
        from station.thresholds import fit

        _format(fmt)
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, migrate=False)
        with stages("fitting thresholds on the uniform evidence"):
            row, evidence, info = fit(
                engine,
                settings,
                station_name=station,
                target_escape=target_escape,
                target_false_fail=target_false_fail,
            )
        out: dict[str, Any] = {
            "version": row.version,
            "values": row.values,
            "approved": False,
            "measured": evidence.to_dict(),
            "fit": info,
        }
        if fmt == "json":
            typer.echo(json.dumps(out, indent=2))
            return
        v = row.values
        typer.echo(
            f"proposed {row.version}: auto_pass {v['auto_pass']:.4f}, auto_fail "
            f"{v['auto_fail']:.4f}, caps {v['never_pass_above']}"
        )
        typer.echo(
            f"on {evidence.n} uniform items: coverage {_pct(evidence.coverage)}, "
            f"{evidence.escapes} escape(s) in {evidence.auto_pass} auto-passes (upper 95% "
            f"{_pct(evidence.escape_upper95)}), {evidence.false_fails} good item(s) in "
            f"{evidence.auto_fail} auto-fails"
        )
        typer.echo(f"auto-pass fitted on {info['auto_pass_fitted_on']}")
        typer.echo(
            f"not in force: approve with `station thresholds approve {row.version} "
            "--reason TEXT --user ENGINEER`"
        )

    @thr_app.command("approve")
    def approve_cmd(
        version: Annotated[str, typer.Argument(help="The proposed set, e.g. thr-1a2b3c4d5e6f.")],
        reason: Annotated[str, typer.Option("--reason", help="Why (kept in the record).")],
        user: UserOpt,
        station: StationOpt = None,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Approve a proposed set: it is in force from the next item.

        Engineers only; recorded with who, when and why. The partial and full gates judge it."""
        from station.thresholds import approve

        settings = settings_from(config, database_url=db)
        engine = open_database(settings, migrate=False)
        operator = login(engine, user)
        row = approve(
            engine, settings, version, operator=operator, reason=reason, station_name=station
        )
        typer.echo(f"{row.version} approved by {operator.name}: in force from the next item")

    @thr_app.command("show")
    def show_cmd(
        station: StationOpt = None,
        fmt: FormatOpt = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """The set in force: values, version, who approved it, what it does on the evidence."""
        from db.engine import session_scope
        from db.models import Operator, ThresholdSet
        from station.thresholds import measure_in_force

        _format(fmt)
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        in_force, evidence, spec = measure_in_force(engine, settings, station_name=station)
        out: dict[str, Any] = {"model_version": spec, "in_force": None}
        if in_force is not None:
            with session_scope(engine) as s:
                row = s.get(ThresholdSet, in_force.set_id)
                assert row is not None
                by = s.get(Operator, row.approved_by) if row.approved_by is not None else None
                out["in_force"] = {
                    "version": row.version,
                    "values": row.values,
                    "approved_at": row.approved_at.isoformat() if row.approved_at else None,
                    "approved_by": by.name if by is not None else None,
                    "note": row.note,
                    "fitted_on": row.evidence,
                    "judged_now": evidence,
                }
        if fmt == "json":
            typer.echo(json.dumps(out, indent=2, default=str))
            return
        if in_force is None:
            typer.echo(
                f"no approved thresholds in force for {spec or 'the station (no champion yet)'}: "
                "the model decides nothing alone (fit and approve a set first)"
            )
            return
        d = out["in_force"]
        v = d["values"]
        typer.echo(
            f"{d['version']} for {spec}: auto_pass {v['auto_pass']:.4f}, auto_fail "
            f"{v['auto_fail']:.4f}, caps {v['never_pass_above']}"
        )
        typer.echo(
            f"approved {d['approved_at']} by {d['approved_by'] or 'a simulation'}: {d['note']}"
        )
        if evidence is not None:
            vs = evidence["rule_escape_vs_inspector"]
            typer.echo(
                f"on {evidence['rule_items']} uniform items after its holdout: coverage "
                f"{_pct(evidence['rule_coverage'])}; escapes {evidence['rule_escapes']} of "
                f"{evidence['rule_truth_checked']} adjudicated in its truth sample "
                f"({evidence['rule_truth_pending']} waiting), upper 95% "
                f"{_pct(evidence['rule_escape_upper95'])} (any number of looks); against the "
                f"inspector {vs['k']} of {vs['n']}"
            )
