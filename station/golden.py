"""Golden sets: real labelled images a QA lead registers (`station golden add --folder DIR`),
slipped in among line items to measure inspectors (never the line's estimates).

The folder holds one sub-folder per label (`ok/`, `scratch/`, ...: the station's classes); each
image in it is checked (signature, completeness, size, decodable), stored in the image store by
its hash and recorded (`golden_sample`). A station draws its golden samples from its registered
sets; only the synthetic line falls back to synthetic renders.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from db.engine import session_scope
from db.models import GoldenSample, Operator
from review.labels import LabelSet
from station.auth import require
from station.errors import StationError
from station.frames.sources import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, check_image_bytes
from station.frames.store import ImageStore
from station.frames.types import Frame
from station.pipeline.intake import GoldenSource

log = logging.getLogger(__name__)


class GoldenRefused(StationError):
    pass


@dataclass
class Registered:
    set_name: str
    added: dict[str, int] = field(default_factory=dict)  # label -> images added
    already: int = 0  # images already in the set (same bytes)
    skipped: list[str] = field(default_factory=list)  # "path: why"


def register_folder(
    engine: Engine,
    store: ImageStore,
    folder: Path,
    *,
    set_name: str,
    labels: LabelSet,
    operator: Operator,
) -> Registered:
    """Register every image under `folder/<label>/` as a golden sample of `set_name`."""
    require(operator, "register_golden")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise GoldenRefused(
            f"--folder {folder}: not a folder (expected one sub-folder per label, e.g. "
            f"{folder}/{labels.ok}/ and {folder}/{labels.defects[0]}/)"
        )
    subs = sorted(p for p in folder.iterdir() if p.is_dir())
    unknown = [p.name for p in subs if p.name not in labels.all]
    if unknown:
        raise GoldenRefused(
            f"--folder {folder}: sub-folder(s) {', '.join(unknown)} are not classes of this "
            f"station (expected some of {', '.join(labels.all)})"
        )
    if not subs:
        raise GoldenRefused(
            f"--folder {folder} has no label sub-folders (expected e.g. {folder}/{labels.ok}/)"
        )
    out = Registered(set_name)
    with session_scope(engine) as s:
        known = set(
            s.exec(select(GoldenSample.image_sha256).where(GoldenSample.set_name == set_name)).all()
        )
        for sub in subs:
            for path in sorted(sub.iterdir()):
                if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
                    if path.is_file():
                        out.skipped.append(f"{path}: not an image file")
                    continue
                try:
                    data = path.read_bytes()
                except OSError as e:
                    out.skipped.append(f"{path}: cannot be read ({e.strerror or e})")
                    continue
                why = check_image_bytes(data, path.suffix.lower(), max_pixels=DEFAULT_MAX_PIXELS)
                image = (
                    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                    if why is None
                    else None
                )
                if image is None:
                    out.skipped.append(f"{path}: {why or 'cannot be decoded'}")
                    continue
                stored = store.put(image)
                if stored.sha256 in known:
                    out.already += 1
                    continue
                known.add(stored.sha256)
                s.add(
                    GoldenSample(
                        set_name=set_name,
                        label=sub.name,
                        image_sha256=stored.sha256,
                        image_path=stored.relpath,
                        source_path=str(path),
                        added_by=operator.id,
                    )
                )
                out.added[sub.name] = out.added.get(sub.name, 0) + 1
    return out


def retire_set(engine: Engine, set_name: str, *, operator: Operator) -> int:
    """Stop drawing from a golden set (its rows stay, marked inactive); how many were retired."""
    require(operator, "register_golden")
    with session_scope(engine) as s:
        rows = s.exec(
            select(GoldenSample).where(
                GoldenSample.set_name == set_name, col(GoldenSample.active).is_(True)
            )
        ).all()
        if not rows:
            known = sorted(set(s.exec(select(GoldenSample.set_name)).all()))
            raise GoldenRefused(
                f"no active golden set {set_name!r}: known are {', '.join(known) or 'none'}"
            )
        for row in rows:
            row.active = False
            s.add(row)
        return len(rows)


def registered_samples(engine: Engine) -> list[GoldenSample]:
    """Every active golden sample, oldest first."""
    with session_scope(engine) as s:
        return list(
            s.exec(
                select(GoldenSample)
                .where(col(GoldenSample.active).is_(True))
                .order_by(col(GoldenSample.id))
            ).all()
        )


class RegisteredGolden:
    """Golden stills drawn at random from the registered sets, after a line item with chance
    `share` (the same contract as intake.GoldenSamples: `draw()` -> Frame | None)."""

    source_name = "golden:registered"

    def __init__(
        self, share: float, samples: list[GoldenSample], store: ImageStore, *, seed: int = 7919
    ) -> None:
        if not samples:
            raise GoldenRefused("no golden set is registered (`station golden add --folder`)")
        self.share = share
        self.samples = samples
        self.store = store
        self.rng = random.Random(seed)
        self.drawn = 0

    def draw(self) -> Frame | None:
        if self.share <= 0 or self.rng.random() >= self.share:
            return None
        for _ in range(3):  # a missing or damaged stored image is skipped, not fatal
            sample = self.rng.choice(self.samples)
            try:
                image = self.store.get(sample.image_sha256)
            except (OSError, StationError) as e:
                log.warning("golden sample %s cannot be read: %s", sample.image_sha256, e)
                continue
            self.drawn += 1
            meta = {"truth": sample.label, "golden_set": sample.set_name}
            return Frame(image=image, index=self.drawn, timestamp=0.0, meta=meta)
        return None


def golden_source(
    engine: Engine, share: float, store: ImageStore, *, camera_source: str
) -> tuple[GoldenSource | None, str | None]:
    """The station's golden samples and, when there are none although asked for, why: its
    registered sets; synthetic renders only on the synthetic line."""
    from station.pipeline.intake import GoldenSamples

    if share <= 0:
        return None, None
    samples = registered_samples(engine)
    if samples:
        return RegisteredGolden(share, samples, store), None
    if camera_source == "synthetic":
        return GoldenSamples(share), None
    return None, (
        f"golden_share is {share} but no golden set is registered: no golden samples (a QA lead "
        "registers one with `station golden add --folder DIR`)"
    )
