"""`station synth`: export stills of the synthetic line (ImageFolder layout, masks, manifest)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from station.errors import SourceError


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        n: Annotated[
            int, typer.Option("--n", min=1, max=1_000_000, help="How many items to render.")
        ],
        out: Annotated[
            Path, typer.Option("--out", help="Folder to write (new or empty).", file_okay=False)
        ],
        seed: Annotated[
            int | None,
            typer.Option("--seed", help="Line seed (default 0): same seed, same pixels."),
        ] = None,
        defect_rate: Annotated[
            float | None,
            typer.Option("--defect-rate", min=0.0, max=1.0, help="Share of defective items."),
        ] = None,
        severity: Annotated[
            float | None,
            typer.Option("--severity", min=0.0, max=1.0, help="Defect size/contrast, 0..1."),
        ] = None,
        mix: Annotated[
            str | None, typer.Option("--mix", help="Class weights, e.g. crack:2+scratch:1+dent:1.")
        ] = None,
        width: Annotated[
            int | None, typer.Option("--width", help="Image width (default 1280).")
        ] = None,
        height: Annotated[
            int | None, typer.Option("--height", help="Image height (default 720).")
        ] = None,
        start: Annotated[
            int, typer.Option("--start", min=0, max=10**12, help="Index of the first item.")
        ] = 0,
        options: Annotated[
            str,
            typer.Option(
                "--options",
                help="More line settings as in a synthetic: spec, e.g. light=0.6,defocus=2,"
                "phone_color=blue,defect_style=v2,drift_after=0.",
            ),
        ] = "",
        workers: Annotated[
            int, typer.Option("--workers", min=1, max=64, help="Processes rendering in parallel.")
        ] = 1,
        overwrite: Annotated[
            bool,
            typer.Option(
                "--overwrite",
                help="Write into a folder that is not empty, first removing an earlier export's "
                "images and masks (other files stay).",
            ),
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ) -> None:
        """Export synthetic stills with masks and a manifest, in ImageFolder layout.

        Writes OUT/<label>/NAME.png with NAME.mask.png beside it (white = defect; all black for ok
        items) and OUT/manifest.json with the truth of every file.
        """
        from station.frames.sources import parse_source_spec
        from station.synth.config import SynthConfig
        from station.synth.export import export_dataset

        spec = parse_source_spec("synthetic:" + options) if options else None
        opts = dict(spec.options) if spec else {}
        for key, value in (
            ("seed", seed),
            ("defect_rate", defect_rate),
            ("severity", severity),
            ("mix", mix),
            ("width", width),
            ("height", height),
        ):
            if value is not None:
                if key in opts:
                    raise SourceError(
                        f"{key} given both as --{key.replace('_', '-')} and in --options"
                    )
                opts[key] = str(value)
        config = SynthConfig.from_options(opts, realtime=False)

        step = max(1, n // 20)

        def progress(done: int, total: int) -> None:
            if not quiet and (done % step == 0 or done == total):
                print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

        from station.cli.common import settings_from
        from station.cli.outputs import refuse_output, station_files

        # --overwrite deletes folders in OUT: never the station's own files.
        refuse_output(out, "--out", station_files(settings_from(None)), folder=True)
        summary = export_dataset(
            out, n, config, start=start, overwrite=overwrite, workers=workers, progress=progress
        )
        if not quiet:
            print(file=sys.stderr)
        counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
        typer.echo(
            f"wrote {summary.n} items to {summary.out} ({counts}); manifest {summary.manifest}"
        )
