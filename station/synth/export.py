"""Export stills of the synthetic line for training: ImageFolder layout with masks and a manifest.

    DIR/<label>/<name>.png         the still (label: ok, crack, scratch, dent, stain, missing)
    DIR/<label>/<name>.mask.png    white (255) = defect; all black for ok items
    DIR/manifest.json              the config and, per file, its truth (label, defects, phone)

Names are `s<seed>_<index>`, so two exports of the same seed and range are identical.
Exporting over an earlier export (`overwrite`) first removes that export's files, so the class
folders hold exactly what the new manifest lists.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.errors import StationError
from station.synth.config import LABELS, SynthConfig
from station.synth.render import render_item

MANIFEST = "manifest.json"
FORMAT = "station-synth/1"


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    n: int
    counts: dict[str, int]
    manifest: Path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise StationError(f"could not encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


def _export_one(job: tuple[SynthConfig, int, str]) -> dict[str, Any]:
    """Render, write and describe one item (runs in a worker process when workers > 1)."""
    config, index, out_dir = job
    out = Path(out_dir)
    item = render_item(config, index)
    name = f"s{config.seed}_{index:06d}"
    rel = f"{item.label}/{name}.png"
    rel_mask = f"{item.label}/{name}.mask.png"
    _write_atomic(out / rel, _png(item.image))
    _write_atomic(out / rel_mask, _png(item.mask))
    meta = item.meta
    return {
        "file": rel,
        "mask": rel_mask,
        "label": item.label,
        "index": index,
        "defect_pixels": int(np.count_nonzero(item.mask)),
        "defects": meta.get("defects", []),
        "severity": meta.get("severity"),
        "defect_style": meta.get("defect_style"),
        "phone": meta.get("phone"),
        "drift": meta.get("drift"),
    }


def _inside(path: Path, folder: Path) -> bool:
    """True when `path` (symlinks resolved) lies inside `folder` (already resolved)."""
    try:
        path.resolve().relative_to(folder)
    except (OSError, ValueError):
        return False
    return True


def _previous_files(out: Path, root: Path) -> set[Path]:
    """Files the earlier export's manifest lists, restricted to <label>/<name>.png inside out."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        entries = manifest["items"] if manifest.get("format") == FORMAT else []
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return set()  # no readable manifest of ours: only the class folders are cleared
    files: set[Path] = set()
    for entry in entries if isinstance(entries, list) else []:
        for key in ("file", "mask"):
            rel = entry.get(key) if isinstance(entry, dict) else None
            parts = rel.split("/") if isinstance(rel, str) else []
            if len(parts) == 2 and parts[0] in LABELS and parts[1].endswith(".png"):
                files.add(out / parts[0] / parts[1])
    return {f for f in files if _inside(f.parent, root)}


def remove_previous_export(out: Path) -> int:
    """Delete an earlier export's images and masks from `out`; returns how many files.

    Removes the files its manifest lists and every *.png (masks included) in the class folders,
    then the manifest; nothing else. A class folder that is a link, or a path that resolves
    outside `out`, is left alone, so nothing outside `out` is ever deleted.
    """
    root = out.resolve()
    doomed = _previous_files(out, root)
    for label in LABELS:
        folder = out / label
        if folder.is_symlink() or not folder.is_dir() or not _inside(folder, root):
            continue
        doomed.update(p for p in folder.glob("*.png") if p.is_file() or p.is_symlink())
    removed = 0
    try:
        # The manifest goes first: a crash part-way leaves no manifest naming missing files.
        (out / MANIFEST).unlink(missing_ok=True)
        for path in sorted(doomed):
            # Unlinking a link removes the link, never its target.
            if (path.is_file() or path.is_symlink()) and _inside(path.parent, root):
                path.unlink()
                removed += 1
    except OSError as e:
        raise StationError(f"cannot remove the earlier export's files in {out}: {e}") from e
    return removed


def export_dataset(
    out: Path,
    n: int,
    config: SynthConfig,
    *,
    start: int = 0,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Render items start..start+n-1 of the line `config` describes into `out`, using `workers`
    processes (the files are the same whatever the number of workers)."""
    if n < 1:
        raise StationError(f"expected at least 1 item to export, got {n}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StationError(f"{out} is a file; expected a folder (new or empty) to export into")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StationError(f"{out} is not empty; choose a new folder or pass --overwrite")
        remove_previous_export(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for label in LABELS:
            (out / label).mkdir(exist_ok=True)
    except OSError as e:
        raise StationError(f"cannot create the export folder {out}: {e}") from e

    items: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    jobs = [(config, index, str(out)) for index in range(start, start + n)]
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding OpenCV threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = pool.map(_export_one, jobs, chunksize=4)
            for k, entry in enumerate(results):
                items.append(entry)
                counts[entry["label"]] += 1
                if progress is not None:
                    progress(k + 1, n)
    else:
        for k, job in enumerate(jobs):
            entry = _export_one(job)
            items.append(entry)
            counts[entry["label"]] += 1
            if progress is not None:
                progress(k + 1, n)
    manifest = {
        "format": FORMAT,
        "generator": "station.synth",
        "seed": config.seed,
        "start": start,
        "n": n,
        "width": config.width,
        "height": config.height,
        "classes": list(LABELS),
        "masks": "NAME.mask.png beside NAME.png, 255 = defect; all black for ok items",
        "config": config.to_dict(),
        "counts": {label: counts.get(label, 0) for label in LABELS},
        "items": items,
    }
    path = out / MANIFEST
    _write_atomic(path, json.dumps(manifest, indent=1).encode())
    return ExportSummary(out, n, {label: counts.get(label, 0) for label in LABELS}, path)
