"""`station model train | evaluate | info` (a model artifact) and `station model register | list
| deploy | rollback | retire | history` (the registry and the roles at a station).

torch is imported inside the commands, so `station --help` stays fast.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from station.cli.common import (
    ConfigOpt,
    DbOpt,
    UserOpt,
    login,
    open_database,
    parse_list,
    parse_wxh,
    settings_from,
    thresholds_in_force,
)

ArtifactArg = Annotated[
    Path | None,
    typer.Argument(help="Model artifact folder (default: settings' model_path, else bundled)."),
]
NoOnnxOpt = Annotated[
    bool,
    typer.Option(
        "--no-onnx",
        help="Save no ONNX copy: the station then serves with torch, about 1.6x slower per "
        "item; saves the ~6 s export.",
    ),
]
OkClassOpt = Annotated[
    str | None,
    typer.Option("--ok-class", help="Name of the defect-free class folder (default: settings)."),
]
ThreadsOpt = Annotated[
    int,
    typer.Option("--threads", min=1, max=256, help="torch threads (1 on a shared machine)."),
]
LongSideOpt = Annotated[
    int,
    typer.Option("--long-side", min=32, max=8192, help="Served resolution's long side (px)."),
]
SizeOpt = Annotated[
    str | None, typer.Option("--size", help="Input size WxH (overrides --long-side).")
]


def _artifact(path: Path | None, config: Path | None) -> Path:
    if path is not None:
        return path
    settings = settings_from(config)
    if settings.model_path:
        return Path(settings.model_path)
    from model import bundled_model_path

    return bundled_model_path()


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _print_metrics(m: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="metrics")
    t.add_column("measure")
    t.add_column("value")
    for key in ("n", "accuracy", "auroc_defect", "ece_before", "ece_after", "temperature"):
        if key in m:
            t.add_row(key, _fmt(m[key]))
    cov = m.get("defect_coverage_at_1pct")
    if cov:
        t.add_row("pass/fail coverage at <=1% error, one threshold", _fmt(cov.get("coverage")))
    both = m.get("station_coverage_at_1pct")
    if both:
        t.add_row(
            "auto-pass + auto-fail coverage at <=1% error (station thresholds)",
            _fmt(both.get("coverage")),
        )
    lab = m.get("label_coverage_at_1pct")
    if lab:
        t.add_row("label coverage at <=1% error", _fmt(lab.get("coverage")))
    if m.get("auroc_defect") is None and m.get("defect_vs_ok"):
        t.add_row("defect vs ok", m["defect_vs_ok"])
    Console(width=120).print(t)
    pc = Table(title="per class")
    for col in ("class", "precision", "recall", "support"):
        pc.add_column(col)
    for c, v in m["per_class"].items():
        pc.add_row(c, _fmt(v["precision"]), _fmt(v["recall"]), str(v["support"]))
    Console(width=120).print(pc)


class Fit(StrEnum):  # model.preprocess.FITS, spelled out so `--help` needs no torch import
    stretch = "stretch"
    letterbox = "letterbox"


class SelectOn(StrEnum):  # model.train.SELECT_ON, likewise
    auto = "auto"
    nll = "nll"
    defect_nll = "defect_nll"
    auroc = "auroc"


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(
        help="Train, evaluate and inspect defect models; register them and change their roles "
        "at a station.",
        no_args_is_help=True,
    )
    app.add_typer(model_app, name="model")
    register_lifecycle(model_app)
    from station.cli.anomaly_cmd import register_anomaly

    register_anomaly(model_app)

    @model_app.command("train")
    def train_cmd(
        data: Annotated[Path, typer.Option("--data", help="Folder with one sub-folder per class.")],
        out: Annotated[Path, typer.Option("--out", help="Artifact folder to write.")],
        arch: Annotated[str, typer.Option("--arch", help="Architecture name.")] = (
            "mobilenet_v3_small"
        ),
        epochs: Annotated[int, typer.Option("--epochs", min=1, max=10_000)] = 12,
        ok_class: OkClassOpt = None,
        init_weights: Annotated[
            Path | None,
            typer.Option(
                "--init-weights", help="state_dict file to start the backbone from.", dir_okay=False
            ),
        ] = None,
        long_side: LongSideOpt = 448,
        size: SizeOpt = None,
        crop: Annotated[
            str | None,
            typer.Option(
                "--crop",
                help="Train on WxH crops of the input, labelled from the masks (every defect "
                "image needs NAME.mask.png); the model still serves whole images.",
            ),
        ] = None,
        fit: Annotated[
            Fit,
            typer.Option(
                "--fit",
                help="stretch: resize every image to the input size (one camera, one shape); "
                "letterbox: keep each image's aspect ratio and pad (images of mixed shapes).",
            ),
        ] = Fit.stretch,
        ema_decay: Annotated[
            float | None,
            typer.Option(
                "--ema-decay",
                min=0.0,
                max=1.0,
                help="Keep a moving average of the weights (e.g. 0.99 per step) rather than "
                "the last step's: steadier on small validation sets.",
            ),
        ] = None,
        flips: Annotated[
            str | None,
            typer.Option(
                "--flips",
                help="Serve the mean of the probabilities over the image and these mirrored "
                "views: comma-separated among h, v, hv (e.g. h,v,hv). Each view costs one more "
                "forward pass per image.",
            ),
        ] = None,
        select_on: Annotated[
            SelectOn,
            typer.Option(
                "--select-on",
                help="Validation figure that picks the epoch kept and stops early: nll over all "
                "classes; defect_nll or auroc for defect vs defect-free only (need both kinds "
                "in validation); auto is defect_nll where validation holds both kinds, else nll.",
            ),
        ] = SelectOn.auto,
        batch_size: Annotated[int, typer.Option("--batch-size", min=2, max=4096)] = 16,
        lr: Annotated[float, typer.Option("--lr")] = 3e-3,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        val_fraction: Annotated[float, typer.Option("--val-fraction")] = 0.2,
        group_by: Annotated[
            str, typer.Option("--group-by", help="auto, none (each image alone) or tiles.")
        ] = "auto",
        patience: Annotated[int, typer.Option("--patience", min=1, max=1000)] = 4,
        threads: ThreadsOpt = 1,
        no_onnx: NoOnnxOpt = False,
        name: Annotated[str, typer.Option("--name")] = "defect-model",
        version: Annotated[str, typer.Option("--version")] = "1",
        config: ConfigOpt = None,
    ) -> None:
        """Train on an image folder and export a calibrated, hashed artifact."""
        from model import TrainConfig, train
        from station.cli.outputs import Protected, bundled_model, refuse_output

        refuse_output(
            out,
            "--out",
            [Protected(data, "the training data (--data)", tree=True), bundled_model()],
        )
        input_size = parse_wxh(size, "--size", "448x256") if size is not None else None
        okc = ok_class if ok_class is not None else settings_from(config).ok_class
        cfg = TrainConfig(
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            long_side=long_side,
            input_size=input_size,
            crop=parse_wxh(crop, "--crop", "320x192") if crop is not None else None,
            fit=fit.value,
            ema_decay=ema_decay,
            test_time_flips=parse_list(flips, "--flips", "h,v,hv") if flips is not None else (),
            select_on=select_on.value,
            val_fraction=val_fraction,
            seed=seed,
            patience=patience,
            ok_class=okc,
            require_ok=ok_class is not None,
            init_weights=str(init_weights) if init_weights else None,
            group_by=group_by,
            threads=threads,
            name=name,
            version=version,
            onnx=not no_onnx,
        )
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from station.cli.progress import terminal_console

        # On stderr and only on a terminal: stdout keeps the summary printed below alone. The
        # epoch lines stay (not transient): they are the training's own record on screen.
        console = terminal_console()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=console is None,
            redirect_stdout=False,
            transient=False,
        ) as bar:
            load = bar.add_task("loading", total=None, info="")
            tasks: dict[int, Any] = {}

            def progress(event: str, d: dict[str, Any]) -> None:
                if event == "load":
                    bar.update(load, completed=d["done"], total=d["total"])
                elif event == "step":
                    e = d["epoch"]
                    if e not in tasks:
                        tasks[e] = bar.add_task(
                            f"epoch {e}/{d['epochs']}", total=d["steps"], info=""
                        )
                    bar.update(tasks[e], completed=d["step"], info=f"loss {d['loss']:.3f}")
                elif event == "epoch":
                    t = tasks.get(d["epoch"])
                    if t is not None:
                        info = f"val nll {d['val_nll']:.3f} acc {d['val_accuracy']:.3f}"
                        if d.get("val_auroc_defect") is not None:
                            info += f" auroc {d['val_auroc_defect']:.3f}"
                        if d.get("val_defect_nll") is not None:
                            info += f" defect nll {d['val_defect_nll']:.3f}"
                        bar.update(t, info=info)
                elif event == "early_stop":
                    bar.console.print(f"early stop at epoch {d['epoch']} (best {d['best_epoch']})")

            result = train(data, out, cfg, progress=progress)
        m = result.manifest
        typer.echo(m["summary"])
        cal = m["calibration"]
        typer.echo(
            f"temperature {cal['temperature']:.3f} ({'kept' if cal['kept'] else cal['note']}); "
            f"validation ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}"
        )
        _print_metrics(m["metrics"]["validation"])
        skipped = m["training"]["data"]["skipped"]
        if skipped:
            typer.echo(f"skipped {skipped} unreadable image(s)")
        typer.echo(f"artifact: {out} (sha256 {m['sha256'][:16]}..)")

    @model_app.command("evaluate")
    def evaluate_cmd(
        data: Annotated[Path, typer.Option("--data", help="Folder with one sub-folder per class.")],
        artifact: ArtifactArg = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Report file: .json or .html.")
        ] = None,
        ok_class: OkClassOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Accuracy, per-class precision/recall, AUROC, ECE and risk/coverage on a folder."""
        from model import Predictor, evaluate, write_report
        from station.cli.outputs import Protected, bundled_model, refuse_output

        path = _artifact(artifact, config)
        if out is not None:
            refuse_output(
                out,
                "--out",
                [
                    Protected(path, "the model artifact it evaluates", tree=True),
                    Protected(data, "the images it evaluates on (--data)", tree=True),
                    bundled_model(),
                ],
            )
        from station.cli.progress import counting

        predictor = Predictor.load(path)
        # The bar counts the images read; the model's pass over them follows at its end.
        with counting("reading and predicting", None, unit="images") as progress:
            report = evaluate(predictor, data, ok_class, progress=progress)
        _print_metrics(report)
        if report["data"]["skipped"]:
            typer.echo(f"skipped {report['data']['skipped']} unreadable image(s)")
        if out is not None:
            write_report(report, out)
            typer.echo(f"report: {out}")

    @model_app.command("add-onnx")
    def add_onnx_cmd(
        artifact: Annotated[Path, typer.Argument(help="Model artifact folder to update.")],
    ) -> None:
        """Give an artifact saved without an ONNX copy one, in place, so onnxruntime can serve
        it (checked against the torch weights on a test image first). Its sha256 changes: a
        registry sees a new version."""
        from model.errors import ModelError
        from model.serving import add_onnx_copy
        from station.cli.outputs import bundled_model, refuse_output

        refuse_output(artifact, "ARTIFACT", [bundled_model()])
        m = add_onnx_copy(artifact)
        section = m["onnx"]
        if not section.get("file"):
            raise ModelError(f"{artifact}: no ONNX copy was made: {section.get('reason')}")
        typer.echo(
            f"{artifact}: added {section['file']} (probabilities within "
            f"{section['max_difference']:.1e} of torch on the test image); sha256 now {m['sha256']}"
        )

    @model_app.command("info")
    def info_cmd(
        artifact: ArtifactArg = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest.")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Print a model artifact's manifest (verified against its hashes)."""
        from model import ModelError, Predictor, read_manifest
        from model.views import describe_flips

        path = _artifact(artifact, config)
        m = read_manifest(path)
        if as_json:
            typer.echo(json.dumps(m, indent=2))
            return
        flips = describe_flips(m.get("test_time_flips"))
        try:  # loads the weights: which engine serves, checked on the test image
            served = Predictor.load(path).served
            serving = f"{served.engine} ({served.note})"
        except ModelError as e:  # the manifest is still worth reading
            serving = f"nothing: it cannot be loaded ({e})"
        v = m.get("metrics", {}).get("validation", {})
        th = m.get("thresholds", {})
        lines = [
            f"path          {path}",
            f"name          {m['name']} version {m['version']}",
            f"sha256        {m['sha256']}",
            f"weights       {m.get('weights_sha256', '')}",
            f"architecture  {m['architecture']}  input {m['input']['width']}x{m['input']['height']}"
            f" ({', '.join(filter(None, [m['input'].get('fit', 'stretch'), flips]))})",
            f"classes       {', '.join(m['classes'])} (defect-free: {m['ok_class']})",
            f"temperature   {m['temperature']:.4f}",
            f"explain       {m.get('explain', '')}",
            f"served by     {serving}",
            f"created       {m.get('created_at', '')}",
            f"summary       {m.get('summary', '')}",
            f"val accuracy  {_fmt(v.get('accuracy'))}  AUROC {_fmt(v.get('auroc_defect'))}  "
            f"ECE {_fmt(v.get('ece_before'))} -> {_fmt(v.get('ece_after'))}",
        ]
        for k in ("auto_pass", "auto_fail"):
            t = th.get(k)
            if t:
                lines.append(
                    f"{k:<13} threshold {_fmt(t.get('threshold'))} coverage "
                    f"{_fmt(t.get('coverage'))}  (fitted on its validation images at training; "
                    "for reference, never in force)"
                )
        lines.append(f"in force      {thresholds_in_force(settings_from(config))}")
        data = m.get("training", {}).get("data", {})
        if data:
            lines.append(
                f"trained on    {data.get('root')} sha256 {str(data.get('sha256'))[:16]}.."
            )
        typer.echo("\n".join(lines))


# --------------------------------------------------------------------------- the registry

StationOpt = Annotated[
    str | None, typer.Option("--station", help="Station name (default: settings station_name).")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; kept in the record.")]
FormatOpt = Annotated[str, typer.Option("--format", help="text | json")]


class Role(StrEnum):
    champion = "champion"
    challenger = "challenger"
    canary = "canary"


def _format(fmt: str) -> str:
    if fmt not in ("text", "json"):
        raise typer.BadParameter(f"{fmt!r}: expected text or json", param_hint="--format")
    return fmt


def register_lifecycle(model_app: typer.Typer) -> None:
    @model_app.command("register")
    def register_cmd(
        artifact: Annotated[Path, typer.Argument(help="Model artifact folder to register.")],
        user: UserOpt,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Verify an artifact and register it as NAME:VERSION (engineers only).

        Checks every hash, that the weights load into their architecture and that its classes
        are the station's labels; copies it into the store beside the database. The same name
        and version with other weights is refused."""
        from station.registry import register_artifact

        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        operator = login(engine, user)
        done = register_artifact(engine, settings, artifact, operator=operator)
        how = "registered" if done.new else "already registered (same weights)"
        typer.echo(f"{done.spec} {how}: sha256 {done.sha256[:16]}.. stored at {done.path}")

    @model_app.command("list")
    def list_cmd(
        station: StationOpt = None,
        fmt: FormatOpt = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """The registered versions and the role each holds at the station now."""
        from db.engine import session_scope
        from station.levels import resolve_station
        from station.registry import lineup, registered, spec_of

        _format(fmt)
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        with session_scope(engine) as s:
            st = resolve_station(s, settings, station)
            assert st.id is not None
            now = lineup(s, st.id)
            rows = registered(s)
        roles: dict[str, str] = {}
        if now.champion is not None:
            roles[spec_of(now.champion)] = "champion"
        if now.challenger is not None:
            roles[spec_of(now.challenger)] = (
                f"canary {now.weight:g}%" if now.weight > 0 else "challenger"
            )
        if now.previous is not None:
            roles[spec_of(now.previous)] = "previous"
        for r in rows:
            r["role"] = roles.get(r["version"])
        if fmt == "json":
            typer.echo(json.dumps({"station": st.name, "versions": rows}, indent=2))
            return
        if not rows:
            typer.echo("no model versions registered (`station model register ARTIFACT`)")
        for r in rows:
            acc = r["validation"]
            typer.echo(
                f"{r['version']:<32} {r['role'] or '-':<12} sha256 {r['sha256'][:12]}..  "
                f"{r['architecture']:<20} registered {r['registered_at']} by "
                f"{r['registered_by'] or 'the station'}"
                + (f"  val accuracy {acc:.3f}" if isinstance(acc, float) else "")
            )

    @model_app.command("deploy")
    def deploy_cmd(
        version: Annotated[str, typer.Argument(help="Registered version, NAME:VERSION.")],
        role: Annotated[Role, typer.Option("--as", help="champion | challenger | canary")],
        reason: ReasonOpt,
        user: UserOpt,
        weight: Annotated[
            float | None,
            typer.Option("--weight", help="Canary: the share of items it decides, in percent."),
        ] = None,
        station: StationOpt = None,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Give a registered version a role at the station (engineers only).

        A running station follows from its next item. A new champion keeps the old one as
        previous, and the level drops to what the new champion's own evidence supports."""
        from station.registry import deploy_version

        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        operator = login(engine, user)
        change = deploy_version(
            engine,
            settings,
            version,
            role.value,
            operator=operator,
            reason=reason,
            weight=weight,
            station_name=station,
        )
        what = f"canary at {change.weight:g}%" if role is Role.canary else change.role
        typer.echo(
            f"{change.spec} is now the {what}"
            + (f" (replacing {change.replaced})" if change.replaced else "")
        )
        _say_level(change.level_change)

    @model_app.command("rollback")
    def rollback_cmd(
        reason: ReasonOpt,
        user: UserOpt,
        station: StationOpt = None,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """The previous champion decides again from the next item (engineers only)."""
        from station.registry import rollback

        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        operator = login(engine, user)
        change = rollback(engine, settings, operator=operator, reason=reason, station_name=station)
        typer.echo(f"rolled back: {change.spec} is the champion again (was {change.replaced})")
        _say_level(change.level_change)

    @model_app.command("retire")
    def retire_cmd(
        reason: ReasonOpt,
        user: UserOpt,
        station: StationOpt = None,
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Stop the challenger (or canary) at the station (engineers only)."""
        from station.registry import retire_challenger

        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        operator = login(engine, user)
        spec = retire_challenger(
            engine, settings, operator=operator, reason=reason, station_name=station
        )
        typer.echo(f"{spec} no longer runs at the station")

    @model_app.command("retrain")
    def retrain_cmd(
        out: Annotated[Path, typer.Option("--out", help="The new artifact folder to write.")],
        user: UserOpt,
        station: StationOpt = None,
        epochs: Annotated[int, typer.Option("--epochs", min=1, max=1000)] = 6,
        holdout: Annotated[
            float,
            typer.Option("--holdout", help="Share of images (by hash) held out to compare on."),
        ] = 0.2,
        include_agreed: Annotated[
            bool,
            typer.Option(
                "--include-agreed",
                help="Also train on uniform items where inspector and model agreed (weak).",
            ),
        ] = False,
        version: Annotated[
            str | None, typer.Option("--version", help="Default: the champion's, plus one.")
        ] = None,
        size: Annotated[
            str | None,
            typer.Option("--size", help="Train at WxH instead of the champion's input size."),
        ] = None,
        no_deploy: Annotated[
            bool, typer.Option("--no-deploy", help="Register it, but do not run it as challenger.")
        ] = False,
        fmt: FormatOpt = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Retrain from the record: export the station's verified items, train from the
        champion's weights, compare both on the same held-out images, register the new model and
        run it as the shadow challenger (it decides nothing until promoted).

        The comparison is written beside the artifact (OUT.comparison.html / .json)."""
        from station.cli.progress import stages
        from station.retrain import retrain

        _format(fmt)
        # Bad input is refused before the secret is asked for.
        input_size = parse_wxh(size, "--size", "320x184") if size is not None else None
        if not 0.0 <= holdout < 1.0:
            raise typer.BadParameter(
                f"{holdout}: expected a share in [0, 1)", param_hint="--holdout"
            )
        settings = settings_from(config, database_url=db)
        engine = open_database(settings)
        operator = login(engine, user)
        with stages("starting") as say:
            done = retrain(
                engine,
                settings,
                out=out,
                operator=operator,
                station_name=station,
                epochs=epochs,
                holdout=holdout,
                include_agreed=include_agreed,
                version=version,
                input_size=input_size,
                deploy=not no_deploy,
                say=say,
            )
        c, v = done.comparison, done.comparison["verdict"]
        if fmt == "json":
            typer.echo(
                json.dumps(
                    {
                        "challenger": done.spec,
                        "champion": done.champion,
                        "artifact": str(done.artifact),
                        "data": str(done.data),
                        "reports": [str(p) for p in done.reports],
                        "deployed": done.deployed is not None,
                        "comparison": c,
                    },
                    indent=2,
                    default=str,
                )
            )
            return
        ca, ch = c["champion"]["accuracy"], c["challenger"]["accuracy"]
        typer.echo(
            f"{done.spec} trained on {sum(done.export.counts()['train'].values())} verified "
            f"images from {done.champion}; compared on {c['images']} held-out images:\n"
            f"  accuracy champion {100 * ca['rate']:.1f}%, challenger {100 * ch['rate']:.1f}%; "
            f"McNemar p = {c['mcnemar']['p_value']:.3g}\n"
            f"  favours the {v['favours']}: {v['why']}\n"
            f"  comparison: {', '.join(str(p) for p in done.reports)}"
        )
        typer.echo(
            f"{done.spec} runs at the station as the shadow challenger (`station model compare`)"
            if done.deployed is not None
            else f"{done.spec} registered, not deployed (`station model deploy {done.spec} --as "
            "challenger`)"
        )

    @model_app.command("compare")
    def compare_cmd(
        station: StationOpt = None,
        fmt: FormatOpt = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """The challenger (or canary) against the champion on the items both answered.

        Paired: agreement, each one's pass/fail error against the known truth (adjudication,
        known ground truth, or an inspector who saw no model's answer) with exact bounds, the
        exact McNemar test on the discordant pairs, and the canary's current step, judged."""
        from db.engine import session_scope
        from review.canary import models_block
        from station.levels import resolve_station

        _format(fmt)
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        with session_scope(engine) as s:
            st = resolve_station(s, settings, station)
            assert st.id is not None
            station_id, name = st.id, st.name
        with engine.connect() as conn:
            block = models_block(
                conn,
                station_id,
                ok=settings.ok_class,
                rules=settings.lifecycle.canary_rules,
            )
        if fmt == "json":
            typer.echo(json.dumps({"station": name, **block}, indent=2, default=str))
            return
        typer.echo(
            f"station {name}: champion {block['champion'] or 'none'}"
            + (f", previous {block['previous']}" if block["previous"] else "")
        )
        c = block.get("comparison")
        if c is None:
            typer.echo("no challenger or canary runs here (`station model deploy ... --as`)")
            return
        w = block["canary_weight"]
        who = (
            f"canary {block['challenger']} at {w:g}%" if w else f"challenger {block['challenger']}"
        )

        def rate(r: dict[str, Any]) -> str:
            if r["rate"] is None:
                return "n/a"
            lo, hi = r["ci95"]
            return f"{r['rate']:.1%} ({r['k']}/{r['n']}, 95% CI {lo:.1%}-{hi:.1%})"

        typer.echo(
            "\n".join(
                [
                    f"{who} against the champion on {c['paired']} items both answered",
                    f"  same pass/fail call      {rate(c['agreement'])}",
                    f"  wrong (known truth)      {block['challenger']} {rate(c['new_error'])}; "
                    f"{block['champion']} {rate(c['old_error'])}",
                    f"  discordant pairs         {c['b']} only it got wrong, {c['c']} only the "
                    f"champion got wrong (exact McNemar p = {c['mcnemar']['p_value']:.3g})",
                    f"  its errors and timeouts  {rate(c['error_rate'])}",
                ]
            )
        )
        step = block.get("canary_step")
        if step:
            typer.echo(f"canary step at {w:g}%: {step['outcome']}: {step['reason']}")

    @model_app.command("history")
    def history_cmd(
        station: StationOpt = None,
        fmt: FormatOpt = "text",
        db: DbOpt = None,
        config: ConfigOpt = None,
    ) -> None:
        """Which version held which role at the station, when, who and why (append-only)."""
        from db.engine import session_scope
        from station.levels import resolve_station
        from station.registry import history

        _format(fmt)
        settings = settings_from(config, database_url=db)
        engine = open_database(settings, read_only=True)
        with session_scope(engine) as s:
            st = resolve_station(s, settings, station)
            assert st.id is not None
            rows = history(s, st.id)
        if fmt == "json":
            typer.echo(json.dumps({"station": st.name, "history": rows}, indent=2))
            return
        if not rows:
            typer.echo("no model has run at this station yet")
        for r in rows:
            role = f"canary {r['weight']:g}%" if r["weight"] is not None else r["role"]
            until = f" until {r['until']}" if r["until"] else " (now)"
            typer.echo(f"{r['at']} {r['version']} {role}{until} by {r['by']}: {r['reason']}")


def _say_level(change: Any) -> None:
    if change is not None:
        typer.echo(
            f"station level {change.from_level.value} -> {change.to_level.value} "
            f"(automatic): {change.reason}"
        )
