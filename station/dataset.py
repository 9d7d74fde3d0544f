"""The record as training data: `station dataset export` writes verified items as an image folder
(one sub-folder per class, the layout `station model train` reads) with a manifest naming, per
image, its item and where its label came from.

Where a label may come from, in this order (the first that applies):
- adjudicated: a QA lead's adjudication (truth-sample draws are marked `truth_sample`);
- golden: a registered golden sample, whose label is known;
- known_truth: a source that knows the truth (the synthetic line);
- agreed (only with `include_agreed`, flagged weak): a uniform item (shadow or blind check, so the
  inspector saw no suggestion) where inspector and model agreed. Agreement is not truth: both can
  miss the same defect.
Never an item decided with the suggestion shown, unless adjudicated: its human label may be the
model's echo. Items the input guard refused are left out (their image is not fit to judge).

Split: the holdout (verified labels only, never weak ones) is drawn by the image hash, so the
same phone (the same image) never lands on both sides; weak items whose hash falls in the holdout
share are left out rather than trained on.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from db.models import ChosenFor
from review.query import ReportFilters, frame, unmatched_filters
from station.errors import StationError

MANIFEST = "manifest.json"
SPLITS = ("train", "holdout")
_COLUMNS = [
    "item_id",
    "captured_at",
    "station",
    "human_label",
    "model_label",
    "shown",
    "uniform",
    "golden",
    "adjudicated_label",
    "adjudicated_for",
    "ground_truth",
    "image_path",
    "image_sha256",
    "guard_passed",
]


class ExportRefused(StationError):
    pass


@dataclass(frozen=True)
class Labelled:
    """One exported image."""

    file: str  # relative to the export folder
    item_id: int
    label: str
    source: str  # adjudicated | truth_sample | golden | known_truth | agreed
    weak: bool
    split: str
    image_sha256: str
    station: str
    captured_at: str


@dataclass
class ExportSummary:
    out: Path
    items: list[Labelled] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        for it in self.items:
            out[it.split][it.label] = out[it.split].get(it.label, 0) + 1
        return {s: dict(sorted(c.items())) for s, c in out.items()}

    def by_source(self) -> dict[str, int]:
        return dict(sorted(Counter(it.source for it in self.items).items()))


def label_of(row: Any, *, include_agreed: bool) -> tuple[str, str, bool] | None:
    """(label, source, weak) of a frame row, or None: no label worth training on."""
    if row.adjudicated_label:
        chosen = row.adjudicated_for or ""
        source = "truth_sample" if chosen == ChosenFor.truth_sample.value else "adjudicated"
        return row.adjudicated_label, source, False
    if row.ground_truth and row.golden:
        return row.ground_truth, "golden", False
    if row.ground_truth:
        return row.ground_truth, "known_truth", False
    if (
        include_agreed
        and row.uniform
        and not row.shown
        and row.human_label is not None
        and row.human_label == row.model_label
    ):
        return row.human_label, "agreed", True
    return None


def split_of(image_sha256: str, holdout: float) -> str:
    """By the image hash: the same image is always on the same side, in every export."""
    return "holdout" if int(image_sha256[:8], 16) / 0x1_0000_0000 < holdout else "train"


def export_dataset(
    engine: Engine,
    filters: ReportFilters,
    out: Path,
    *,
    image_root: Path,
    classes: list[str],
    include_agreed: bool = False,
    holdout: float = 0.2,
) -> ExportSummary:
    """Write the labelled items of `filters` under `out` (train/<class>/, holdout/<class>/) and
    the manifest; returns what was written and what was left out, and why."""
    if not 0.0 <= holdout < 1.0:
        raise ExportRefused(f"--holdout {holdout}: expected a share in [0, 1)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportRefused(f"{out} exists and is not an empty folder: expected a new folder")
    known = set(classes)
    summary = ExportSummary(out)
    with engine.connect() as conn:
        unmatched = unmatched_filters(conn, filters)
        if unmatched:
            raise ExportRefused("; ".join(unmatched) + ": nothing exported")
        f = frame(conn, filters, columns=_COLUMNS)
        rows = conn.execute(select(f).order_by(f.c.item_id)).all()
    # Decide every image first: an export with nothing to train on is refused before anything
    # is written.
    copies: list[tuple[Path, Path]] = []
    for row in rows:
        found = label_of(row, include_agreed=include_agreed)
        if found is None:
            summary.skipped["no verified label"] += 1
            continue
        label, source, weak = found
        if not row.guard_passed:
            summary.skipped["refused by the input guard"] += 1
            continue
        if label not in known:
            summary.skipped[f"label {label!r} not in the station's classes"] += 1
            continue
        split = split_of(row.image_sha256, holdout)
        if weak and split == "holdout":
            summary.skipped["weak label in the holdout share"] += 1
            continue
        src = image_root / row.image_path if row.image_path else None
        if src is None or not src.is_file():
            summary.skipped["image file missing"] += 1
            continue
        # The hash first: `model train` groups the images of one phone by it (model.data).
        rel = Path(split) / label / f"{row.image_sha256[:12]}-{row.item_id}{src.suffix.lower()}"
        copies.append((src, rel))
        captured = row.captured_at
        summary.items.append(
            Labelled(
                file=rel.as_posix(),
                item_id=int(row.item_id),
                label=label,
                source=source,
                weak=weak,
                split=split,
                image_sha256=row.image_sha256,
                station=row.station,
                captured_at=captured.isoformat() if captured is not None else "",
            )
        )
    if not copies:
        why = ", ".join(f"{n} {k}" for k, n in sorted(summary.skipped.items())) or "no items"
        raise ExportRefused(
            f"nothing to export from {len(rows)} item(s) ({why}): adjudicate items in "
            "`station review`, or add --include-agreed"
        )
    for src, rel in copies:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / rel)
    _write_manifest(summary, filters, classes, include_agreed, holdout)
    return summary


def _write_manifest(
    summary: ExportSummary,
    filters: ReportFilters,
    classes: list[str],
    include_agreed: bool,
    holdout: float,
) -> None:
    manifest = {
        "created_at": datetime.now(UTC).isoformat(),
        "filters": {
            "station": filters.station,
            "since": filters.since.isoformat() if filters.since else None,
            "until": filters.until.isoformat() if filters.until else None,
        },
        "classes": classes,
        "include_agreed": include_agreed,
        "holdout_share": holdout,
        "counts": summary.counts(),
        "by_source": summary.by_source(),
        "skipped": dict(sorted(summary.skipped.items())),
        "items": [asdict(it) for it in summary.items],
    }
    (summary.out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
