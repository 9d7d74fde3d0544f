"""Image folders for training and evaluation: one sub-folder per class, masks beside images.

`NAME.mask.png` next to `NAME.jpg|png` is the pixel mask of NAME (white = defect); such files
are supervision, never images. Unreadable images are skipped and counted, not fatal. Images of
one physical part form a group, and a split never puts one group on both sides.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from model.errors import DataError
from model.preprocess import InputSpec, prepare, prepare_mask

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MASK_TAG = ".mask"
_TILE_NAME = re.compile(r"^exp\d+_num_(\d+)$")
_EXPORT_NAME = re.compile(r"^([0-9a-f]{12})-\d+$")  # station/dataset.py names its images so
# Shots of one tile region have consecutive numbers a few dozen apart; a larger gap starts a
# new region. Joining too much is safe (a bigger group); splitting one region leaks.
TILE_GAP = 100


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    mask_path: Path | None
    group: str = ""


@dataclass
class FolderScan:
    root: Path
    classes: list[str]
    ok_class: str | None
    samples: list[Sample]
    group_by: str

    def counts(self) -> dict[str, int]:
        c = Counter(s.label for s in self.samples)
        return {k: c.get(k, 0) for k in self.classes}


@dataclass
class LoadedSet:
    """Decoded images at the model's input size (uint8 RGB) with masks where they exist."""

    images: list[np.ndarray]
    masks: list[np.ndarray | None]  # HxW uint8 0..255 at input size, or None
    labels: list[int]
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    sha256: str = ""
    original_sizes: list[tuple[int, int]] = field(default_factory=list)


def is_mask(path: Path) -> bool:
    return path.stem.endswith(MASK_TAG)


def mask_for(image: Path) -> Path | None:
    for ext in (".png", image.suffix):
        m = image.with_name(image.stem + MASK_TAG + ext)
        if m.is_file():
            return m
    return None


def stem_groups(samples: Sequence[Sample]) -> list[str]:
    """Every image its own group (no grouping known)."""
    return [f"{s.label}/{s.path.stem}" for s in samples]


def tile_groups(samples: Sequence[Sample]) -> list[str]:
    """Magnetic-tile regions: `expK_num_N` names, a region's shots numbered consecutively."""
    nums = []
    for s in samples:
        m = _TILE_NAME.match(s.path.stem)
        if m is None:
            raise DataError(f"expected tile names like exp1_num_123, found {s.path.name!r}")
        nums.append(int(m.group(1)))
    order = sorted(range(len(samples)), key=lambda i: nums[i])
    groups = [""] * len(samples)
    start = prev = None
    for i in order:
        if prev is None or nums[i] - prev > TILE_GAP:
            start = nums[i]
        groups[i] = f"tile-{start}"
        prev = nums[i]
    return groups


def hash_groups(samples: Sequence[Sample]) -> list[str]:
    """A station export (`station dataset export`): `HASH12-ITEM` names, the images of one
    phone (one image hash) in one group, whatever label each item got."""
    groups = []
    for s in samples:
        m = _EXPORT_NAME.match(s.path.stem)
        if m is None:
            raise DataError(f"expected exported names like 0123456789ab-42, found {s.path.name!r}")
        groups.append(f"image-{m.group(1)}")
    return groups


GROUPERS: dict[str, Callable[[Sequence[Sample]], list[str]]] = {
    "none": stem_groups,
    "tiles": tile_groups,
    "hash": hash_groups,
}


def _auto_grouping(samples: Sequence[Sample]) -> str:
    if samples and all(_TILE_NAME.match(s.path.stem) for s in samples):
        return "tiles"
    if samples and all(_EXPORT_NAME.match(s.path.stem) for s in samples):
        return "hash"
    return "none"


def scan_folder(
    root: Path | str,
    ok_class: str | None = "ok",
    *,
    require_ok: bool = False,
    group_by: str = "auto",
    ok_only: bool = False,
) -> FolderScan:
    """List a class-per-folder tree. ok_class absent is allowed unless require_ok; `ok_only`
    accepts a tree with the defect-free class alone (the anomaly model's memory)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"expected a data folder with one sub-folder per class, {root} is not one")
    per_class: dict[str, list[Sample]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in d.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not is_mask(p)
        )
        if files:
            per_class[d.name] = [Sample(p, d.name, mask_for(p)) for p in files]
    if not per_class:
        raise DataError(
            f"expected class sub-folders holding images (.png/.jpg/...) in {root}, found none"
        )
    if len(per_class) < 2 and not (ok_only and ok_class in per_class):
        (only,) = per_class
        raise DataError(
            f"expected at least 2 classes in {root}, found only {only!r}; a classifier needs "
            "examples of more than one class"
        )
    classes = sorted(per_class)
    if ok_class is not None and ok_class not in per_class:
        if require_ok:
            raise DataError(
                f"expected a defect-free class folder {ok_class!r} in {root}, found classes "
                f"{classes}; name it with --ok-class"
            )
        ok_class = None
    samples = [s for c in classes for s in per_class[c]]
    if group_by == "auto":
        group_by = _auto_grouping(samples)
    if group_by not in GROUPERS:
        raise DataError(f"unknown grouping {group_by!r}: expected auto, {', '.join(GROUPERS)}")
    groups = GROUPERS[group_by](samples)
    samples = [
        Sample(s.path, s.label, s.mask_path, g) for s, g in zip(samples, groups, strict=True)
    ]
    return FolderScan(root, classes, ok_class, samples, group_by)


def _read(path: Path, flags: int) -> tuple[np.ndarray | None, bytes]:
    try:
        raw = path.read_bytes()
    except OSError:
        return None, b""
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), flags) if raw else None
    return img, raw


def read_image(path: Path | str) -> np.ndarray | None:
    """Decode an image file as stored (grayscale stays grayscale, 16-bit stays 16-bit)."""
    return _read(Path(path), cv2.IMREAD_UNCHANGED)[0]


def load_samples(
    scan: FolderScan,
    spec: InputSpec,
    samples: Sequence[Sample] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 2,
) -> LoadedSet:
    """Decode and resize every sample once; unreadable images are skipped and counted."""
    samples = list(scan.samples if samples is None else samples)
    index = {c: i for i, c in enumerate(scan.classes)}

    def one(s: Sample) -> tuple:
        img, raw = _read(s.path, cv2.IMREAD_UNCHANGED)
        if img is None:
            return s, None, None, hashlib.sha256(raw).hexdigest(), "not a readable image", b""
        try:
            rgb = prepare(img, spec)
        except Exception as e:  # a BadImage here is an odd file in a data folder: skip it
            return s, None, None, hashlib.sha256(raw).hexdigest(), str(e), b""
        mask = None
        mraw = b""
        if s.mask_path is not None:
            m, mraw = _read(s.mask_path, cv2.IMREAD_GRAYSCALE)
            if m is not None:
                mask = (prepare_mask(m, spec, (img.shape[1], img.shape[0])) * 255).astype(np.uint8)
        size = (img.shape[1], img.shape[0])
        return s, rgb, mask, hashlib.sha256(raw).hexdigest(), size, hashlib.sha256(mraw).digest()

    out = LoadedSet([], [], [], [])
    h = hashlib.sha256()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for n, (s, rgb, mask, digest, extra, mdig) in enumerate(pool.map(one, samples), 1):
            rel = f"{s.label}/{s.path.name}"
            h.update(f"{rel}\0{digest}\n".encode())
            if mdig:
                h.update(mdig)
            if rgb is None:
                out.skipped.append((str(s.path), str(extra)))
            else:
                out.images.append(rgb)
                out.masks.append(mask)
                out.labels.append(index[s.label])
                out.samples.append(s)
                out.original_sizes.append(extra)
            if progress is not None:
                progress(n, len(samples))
    out.sha256 = h.hexdigest()
    return out


def probe_sizes(samples: Sequence[Sample], limit: int = 64) -> list[tuple[int, int]]:
    """(width, height) of up to `limit` readable samples, spread over the list."""
    step = max(1, len(samples) // limit)
    sizes = []
    for s in list(samples)[::step][:limit]:
        img = read_image(s.path)
        if img is not None:
            sizes.append((img.shape[1], img.shape[0]))
    return sizes


def group_split(
    labels: Sequence[int], groups: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, val): whole groups, about val_fraction of each class, seeded."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"expected a validation fraction in (0, 1), got {val_fraction}")
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_label: dict[int, list[str]] = defaultdict(list)
    for g, idx in members.items():
        majority = Counter(labels[i] for i in idx).most_common(1)[0][0]
        by_label[majority].append(g)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for lab in sorted(by_label):
        gs = sorted(by_label[lab])
        rng.shuffle(gs)
        total = sum(len(members[g]) for g in gs)
        taken = 0
        for g in gs[:-1]:  # at least one group of each class stays for training
            if taken >= val_fraction * total:
                break
            val.extend(members[g])
            taken += len(members[g])
    val_set = set(val)
    train = [i for i in range(len(labels)) if i not in val_set]
    return train, sorted(val_set)


def augment(
    rgb: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inspection-photo augmentation: flips, a small shift, lighting and sensor noise."""
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    if rng.random() < 0.5:
        rgb = rgb[::-1]
        mask = None if mask is None else mask[::-1]
    h, w = rgb.shape[:2]
    if rng.random() < 0.5:
        dx, dy = rng.uniform(-0.04, 0.04, 2) * (w, h)
        mat = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
        rgb = cv2.warpAffine(np.ascontiguousarray(rgb), mat, (w, h), borderMode=cv2.BORDER_REFLECT)
        if mask is not None:
            # reflected like the image: a defect mirrored into the border stays marked
            mask = cv2.warpAffine(
                np.ascontiguousarray(mask), mat, (w, h), borderMode=cv2.BORDER_REFLECT
            )
    gain = rng.uniform(0.8, 1.2)
    bias = rng.uniform(-20, 20)
    x = rgb.astype(np.float32) * gain + bias
    if rng.random() < 0.3:
        x += rng.normal(0, 3.0, x.shape).astype(np.float32)
    rgb = np.clip(x, 0, 255).astype(np.uint8)
    return rgb, (None if mask is None else np.ascontiguousarray(mask))


# A crop shows the defect when it holds at least CROP_SHARE of one of the mask's parts
# (connected components: three separate specks are three parts, none of them half of the
# whole) or at least CROP_MIN_PIXELS defect pixels (a long scratch or a large uneven patch
# never fits half into one crop). A crop holding none is clean; one holding a sliver is neither.
CROP_SHARE = 0.5
CROP_MIN_PIXELS = 64


def crop_shows(
    parts: np.ndarray, part_sizes: np.ndarray, x0: int, y0: int, size: tuple[int, int]
) -> bool | None:
    """True: the crop shows the defect; False: it is clean; None: it holds only a sliver.

    `parts` is the mask's component labels (0 = background), `part_sizes` their pixel counts.
    """
    cw, ch = size
    inside = np.bincount(parts[y0 : y0 + ch, x0 : x0 + cw].ravel(), minlength=len(part_sizes))
    inside[0] = 0
    if inside.sum() == 0:
        return False
    if inside.sum() >= CROP_MIN_PIXELS or (inside[1:] >= CROP_SHARE * part_sizes[1:]).any():
        return True
    return None


def pick_crop(
    mask: np.ndarray | None,
    size: tuple[int, int],
    rng: np.random.Generator,
    *,
    focus: float = 0.6,
    tries: int = 8,
    within: tuple[int, int, int, int] | None = None,
) -> tuple[int, int, bool]:
    """(x0, y0, shows_defect) of a training crop of `size` (w, h) from an image of mask's shape.

    With probability `focus` the crop is placed around a random defect pixel, otherwise anywhere.
    Crops that hold only a sliver of the defect are redrawn: neither "defect" nor "clean" is true
    of them; after `tries` slivers the crop is centred on one part of the defect. An empty mask
    gives a clean crop anywhere.

    `within` (x0, y0, w, h) is where the picture lies in a letterboxed input: crops placed
    "anywhere" lie inside it along each side it can hold the crop, and are centred on it along
    a side shorter than the crop, so they show the part rather than the padding.
    """
    cw, ch = size
    if mask is None:
        raise DataError("pick_crop needs the image's mask (an empty one for a clean image)")
    h, w = mask.shape[:2]
    if cw > w or ch > h:
        raise DataError(f"expected a crop no larger than the image ({w}x{h}), got {cw}x{ch}")

    def along(start: int, length: int, side: int, full: int) -> int:
        # inside the picture where it holds the crop; centred on it (padding both sides) if not
        if length >= side:
            return start + int(rng.integers(0, length - side + 1))
        return int(np.clip(start + (length - side) // 2, 0, full - side))

    def anywhere() -> tuple[int, int]:
        if within is None or within == (0, 0, w, h):
            return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        bx, by, bw, bh = within
        return along(bx, bw, cw, w), along(by, bh, ch, h)

    on = (mask > 25).astype(np.uint8)
    ys, xs = np.nonzero(on)
    if len(xs) == 0:
        return (*anywhere(), False)
    n, parts = cv2.connectedComponents(on, connectivity=8)
    part_sizes = np.bincount(parts.ravel(), minlength=n)
    for _ in range(tries):
        if rng.random() < focus:
            j = int(rng.integers(0, len(xs)))
            x0 = int(rng.integers(max(0, xs[j] - cw + 1), min(w - cw, xs[j]) + 1))
            y0 = int(rng.integers(max(0, ys[j] - ch + 1), min(h - ch, ys[j]) + 1))
        else:
            x0, y0 = anywhere()
        shows = crop_shows(parts, part_sizes, x0, y0, size)
        if shows is not None:
            return x0, y0, shows
    # only slivers drawn: centre the crop on a random part, which then holds most of it
    k = int(rng.integers(1, n))
    py, px = np.nonzero(parts == k)
    cx, cy = (int(px.min()) + int(px.max())) // 2, (int(py.min()) + int(py.max())) // 2
    x0 = int(np.clip(cx - cw // 2, 0, w - cw))
    y0 = int(np.clip(cy - ch // 2, 0, h - ch))
    return x0, y0, bool(crop_shows(parts, part_sizes, x0, y0, size) is not False)
