"""`station capture`: run a source and the item trigger headless, write the captured items and a
summary; for engineers setting up a camera."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from station.cli.common import ConfigOpt, settings_from
from station.errors import StationError

if TYPE_CHECKING:
    from station.pipeline.intake import Captured


@dataclass
class CaptureReport:
    source: str
    out: str
    items: int = 0
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stopped_by: str = ""
    elapsed_s: float = 0.0
    trigger_version: str = ""
    captured: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_capture(
    spec: str,
    out: Path,
    *,
    max_items: int,
    max_frames: int | None = None,
    timeout_s: float | None = None,
    plain: bool = False,
    realtime: bool | None = False,
    max_reconnects: int | None = 10,
) -> CaptureReport:
    """Capture up to `max_items` items from `spec` into `out` through the station's own intake
    (the same trigger, statistics and image encoding as the window); always writes
    out/summary.json."""
    from station.frames.capture import Backoff
    from station.frames.sources import open_source
    from station.frames.store import ImageStore
    from station.frames.trigger import TRIGGER_VERSION
    from station.pipeline.intake import Intake

    if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s >= 0):
        # nan would never compare greater than the elapsed time, so the run would never time out
        raise StationError(f"--timeout-s must be a finite number of seconds >= 0, got {timeout_s}")
    source = open_source(spec, realtime=realtime)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StationError(f"cannot create the output folder {out}: {e}") from e
    report = CaptureReport(source=spec, out=str(out), trigger_version=TRIGGER_VERSION)
    plain_dir = out / "items"
    if plain:
        plain_dir.mkdir(exist_ok=True)
    t0 = time.monotonic()

    def on_state(state: Any, detail: str) -> None:
        report.states.append(
            {"t": round(time.monotonic() - t0, 3), "state": str(state), "detail": detail}
        )

    intake = Intake(
        source,
        store=None if plain else ImageStore(out / "images"),
        source_name=spec,
        on_state=on_state,
        backoff=Backoff(max_attempts=max_reconnects),
    )

    def should_stop() -> bool:
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            report.stopped_by = "timeout"
        elif max_frames is not None and intake.frames_seen >= max_frames:
            report.stopped_by = "max frames"
        return bool(report.stopped_by)

    try:
        for item in intake.items(should_stop):
            plain_path = plain_dir / f"item_{len(report.captured) + 1:05d}.png" if plain else None
            report.captured.append(_write_item(item, out, plain_path))
            if len(report.captured) >= max_items:
                report.stopped_by = "max items"
                break
        else:
            report.stopped_by = report.stopped_by or "source ended"
    except KeyboardInterrupt:
        report.stopped_by = "interrupted"
        raise
    finally:
        counts = intake.counts()
        report.items = len(report.captured)
        report.frames_processed = intake.frames_seen
        if counts is not None:
            report.frames_read = counts.frames_read
            report.frames_dropped = counts.frames_dropped
            report.reconnects = counts.reconnects
            report.error = counts.error
        report.skipped = [{"path": s.path, "reason": s.reason} for s in intake.skipped]
        report.elapsed_s = round(time.monotonic() - t0, 3)
        (out / "summary.json").write_text(json.dumps(report.to_dict(), indent=1))
    return report


def _write_item(item: Captured, out: Path, plain_path: Path | None) -> dict[str, Any]:
    """One item's entry in the summary; --plain writes the store's bytes under a plain name."""
    from station.frames.store import encode_image
    from station.pipeline.intake import Unstored

    if plain_path is not None:
        data = encode_image(item.image)
        path = plain_path
        path.write_bytes(data)
        rel, sha = str(path.relative_to(out)), hashlib.sha256(data).hexdigest()
    else:
        stored = item.stored.result()
        if isinstance(stored, Unstored):
            raise StationError(
                f"could not store a captured frame in {out / 'images'}: {stored.error}"
            )
        rel, sha = f"images/{stored.relpath}", stored.sha256
    meta = {
        k: v for k, v in item.meta.items() if isinstance(v, str | int | float | bool) or v is None
    }
    return {
        "file": rel,
        "sha256": sha,
        "frame_index": item.frame_index,
        "timestamp": item.frame_time,
        "reason": item.trigger_reason,
        "truth": item.ground_truth,
        "stats": item.stats.as_dict(),
        "meta": meta,
    }


def register(app: typer.Typer) -> None:
    @app.command("capture")
    def capture(
        out: Annotated[
            Path,
            typer.Option("--out", help="Folder for the items and summary.json.", file_okay=False),
        ],
        source: Annotated[
            str | None,
            typer.Option(
                "--source",
                help="Source spec (default: the camera_source setting), e.g. 0, "
                "file:line.mp4, rtsp://..., folder:/path, synthetic:seed=3.",
            ),
        ] = None,
        max_items: Annotated[
            int, typer.Option("--max-items", min=1, max=10**8, help="Stop after this many items.")
        ] = 10,
        max_frames: Annotated[
            int | None,
            typer.Option("--max-frames", min=1, max=10**10, help="Stop after this many frames."),
        ] = None,
        timeout_s: Annotated[
            float | None,
            typer.Option("--timeout-s", min=0.0, max=10**7, help="Stop after this many seconds."),
        ] = None,
        plain: Annotated[
            bool,
            typer.Option(
                "--plain", help="Write items/item_00001.png instead of the content-addressed store."
            ),
        ] = False,
        realtime: Annotated[
            bool,
            typer.Option(
                "--realtime",
                help="Pace the synthetic line at its fps (default: as fast as possible).",
            ),
        ] = False,
        max_reconnects: Annotated[
            int,
            typer.Option(
                "--max-reconnects",
                min=0,
                max=10**6,
                help="Give up on a lost camera after this many attempts.",
            ),
        ] = 10,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Run a source and the item trigger headless; write the items and a summary.

        OUT/summary.json holds items, frames read, frames dropped, reconnects, state changes and
        skipped files with their reasons.
        """
        from station.cli.outputs import Protected, refuse_output, station_files
        from station.frames.sources import parse_source_spec

        settings = settings_from(config)
        spec = source if source is not None else settings.camera_source
        protected = station_files(settings)
        parsed = parse_source_spec(spec)
        if parsed.kind in ("folder", "file"):
            protected.append(
                Protected(Path(parsed.target), "the source it captures from", tree=True)
            )
        refuse_output(out, "--out", protected, folder=True)
        report = run_capture(
            spec,
            out,
            max_items=max_items,
            max_frames=max_frames,
            timeout_s=timeout_s,
            plain=plain,
            # The synthetic line runs unpaced here unless asked (--realtime or realtime= in the spec).
            realtime=True if realtime else (None if "realtime=" in spec else False),
            max_reconnects=max_reconnects,
        )
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=1))
        else:
            typer.echo(
                f"{report.items} items from {report.source} in {report.elapsed_s:.1f} s "
                f"({report.stopped_by}): frames read {report.frames_read}, processed "
                f"{report.frames_processed}, dropped {report.frames_dropped}, reconnects {report.reconnects}, "
                f"skipped files {len(report.skipped)}"
            )
            for s in report.skipped:
                typer.echo(f"  skipped {s['path']}: {s['reason']}")
            if report.error:
                typer.echo(f"  source error: {report.error}")
            typer.echo(f"summary: {out / 'summary.json'}")
        if report.error and report.items == 0:
            raise StationError(f"capture from {report.source} failed: {report.error}")
