"""The models a running station runs, following the deployment record (blue/green).

    model_to_run      at start: the record's champion (refusing a configured model that is not
                      it), or, on a station's first start, the configured model
    LineupWatch       before each item (pipeline thread): has any role changed? New versions load
                      in the background; the champion is swapped between two items, only once its
                      replacement answered a load whole; the previous champion and the challenger
                      stay loaded, so a rollback is effective on the very next item
    ShadowRunner      the challenger on every item, hidden, off the pipeline thread, in a bounded
                      queue: when it falls behind, items go without its answer (counted), the
                      inspector never waits for it

The record is written by station/registry.py (engineers' commands) and read here only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import Deployment, ModelVersion
from station.errors import ModelRefused
from station.pipeline.assess import ModelHolder, ModelInUse
from station.pipeline.intake import Captured
from station.pipeline.predictor import ModelInfo
from station.pipeline.worker import InferenceResult, Started
from station.registry import Lineup, artifact_dir, lineup, spec_of
from station.settings import Settings

log = logging.getLogger(__name__)


def model_to_run(engine: Engine, settings: Settings, station_id: int) -> str | None:
    """The artifact folder the station starts with: the record's champion. On a first start (no
    champion yet) the configured model (settings' model_path; None: the bundled one), which the
    station then records as its champion. A configured model that is not the record's champion
    is refused: only an engineer changes the champion (`station model deploy`)."""
    from model import read_manifest

    with session_scope(engine) as s:
        champion = lineup(s, station_id).champion
    if champion is None:
        return settings.model_path or None
    if settings.model_path:
        try:
            configured = read_manifest(settings.model_path)["sha256"]
        except Exception:
            configured = None  # unreadable: the loader says why, if it is ever used
        if configured != champion.sha256:
            raise ModelRefused(
                f"this station's champion is {spec_of(champion)}; the configured model "
                f"{settings.model_path} is not it: an engineer registers and deploys it "
                "(`station model register DIR --user ENGINEER`, then `station model deploy "
                "NAME:VERSION --as challenger|champion --user ENGINEER --reason TEXT`), or drop "
                "--model / model_path"
            )
    path = artifact_dir(settings, champion)
    return str(path) if path is not None else None


Opener = Callable[[str | Path | None], ModelInUse]


def canary_arm(salt: str, captured: Captured, weight: float) -> bool:
    """Whether this item is in the canary's arm at `weight` percent: a salted hash of the item's
    identity (its source, capture time and frame), so the draw is uniform, independent of what
    the image shows, and the same for the same item whenever it is asked. The salt is the canary
    deployment's: each step of a ramp draws afresh."""
    if weight <= 0.0:
        return False
    key = f"{salt}|{captured.source}|{captured.captured_at.isoformat()}|{captured.frame_index}"
    draw = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
    return draw < weight / 100.0


@dataclass(frozen=True)
class Roles:
    """What the station runs now, as the window shows it."""

    champion: str | None
    challenger: str | None
    weight: float
    previous: str | None


class LineupWatch:
    """Follows the deployment record for one running station. `check()` runs on the pipeline
    thread before each item: one indexed query of the active deployment ids; only when they
    changed is the lineup read and the loading started."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        station_id: int,
        *,
        champion: ModelHolder,
        open_model: Opener,
        on_champion: Callable[[int | None, ModelInUse], None],
        on_challenger: Callable[[int | None], None] = lambda _id: None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.station_id = station_id
        self.champion = champion
        self.challenger = ModelHolder()
        self.open_model = open_model
        self.on_champion = on_champion  # the core follows the new champion's approved rule
        self.on_challenger = on_challenger  # ... and the canary's, for the items in its arm
        self.champion_id: int | None = None
        self.challenger_id: int | None = None
        self.wanted: Lineup | None = None
        self.problem: str | None = None  # a version that could not be loaded, in words
        self._ids_query = (
            select(Deployment.id)
            .where(Deployment.station_id == station_id, col(Deployment.ended_at).is_(None))
            .order_by(col(Deployment.id))
        )
        self._seen: tuple[int, ...] | None = None
        self._loaded: dict[int, ModelInUse] = {}
        self._failed: dict[int, str] = {}
        self._loading: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ pipeline thread

    def started_with(self, version_id: int | None, model: ModelInUse) -> None:
        """The champion the station loaded at start (StationCore.use_model)."""
        with self._lock:
            if version_id is not None:
                self._loaded[version_id] = model
        self.champion_id = version_id

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                ids = tuple(int(r[0]) for r in conn.execute(self._ids_query))
        except SQLAlchemyError as e:
            log.warning("cannot read the model lineup of station %d: %s", self.station_id, e)
            return
        if ids != self._seen:
            try:
                with Session(self.engine) as s:
                    self.wanted = lineup(s, self.station_id)
            except SQLAlchemyError as e:
                log.warning("cannot read the model lineup of station %d: %s", self.station_id, e)
                return
            self._seen = ids
        self._apply()

    def _apply(self) -> None:
        wanted = self.wanted
        if wanted is None:
            return
        need = [mv for mv in (wanted.champion, wanted.challenger, wanted.previous) if mv]
        for mv in need:
            self._ensure_loading(mv)
        with self._lock:
            loaded = dict(self._loaded)
        champ = wanted.champion
        if champ is not None and champ.id != self.champion_id and champ.id in loaded:
            # Between two items: the next one is assessed by the new champion, whole.
            self.champion.set(loaded[champ.id])
            self.champion_id = champ.id
            self.on_champion(champ.id, loaded[champ.id])
            log.info("champion is now %s", spec_of(champ))
        chall = wanted.challenger
        chall_id = chall.id if chall is not None else None
        if chall_id != self.challenger_id and (chall_id is None or chall_id in loaded):
            self.on_challenger(chall_id)
            self.challenger.set(loaded[chall_id] if chall_id is not None else None)
            self.challenger_id = chall_id
        keep = {mv.id for mv in need} | {self.champion_id, self.challenger_id}
        with self._lock:
            for vid in [v for v in self._loaded if v not in keep]:
                self._loaded.pop(vid).worker.close()
        self.problem = "; ".join(self._failed.values()) or None

    def _ensure_loading(self, mv: ModelVersion) -> None:
        assert mv.id is not None
        with self._lock:
            if mv.id in self._loaded or mv.id in self._loading or mv.id in self._failed:
                return
            self._loading.add(mv.id)
        threading.Thread(target=self._load, args=(mv,), name=f"load-{mv.name}", daemon=True).start()

    def _load(self, mv: ModelVersion) -> None:
        assert mv.id is not None
        path = artifact_dir(self.settings, mv)
        try:
            if path is None:
                raise ModelRefused("no artifact recorded for it")
            model = self.open_model(path)
            if model.info.sha256 != mv.sha256:
                model.worker.close()
                raise ModelRefused(
                    f"the artifact at {path} holds sha256 {model.info.sha256[:12]}.., not the "
                    f"registered {mv.sha256[:12]}.."
                )
        except Exception as e:  # the station keeps running what it runs
            log.warning("could not load %s: %s", spec_of(mv), e)
            with self._lock:
                self._loading.discard(mv.id)
                self._failed[mv.id] = f"{spec_of(mv)} could not be loaded: {e}"
            return
        with self._lock:
            self._loading.discard(mv.id)
            if self._closed:
                model.worker.close()
                return
            self._loaded[mv.id] = model

    def canary_share(self, captured: Captured) -> float:
        """1.0 when the item falls in the canary's arm (pipeline thread, after `check`)."""
        w = self.wanted
        if w is None or w.weight <= 0.0 or self.challenger.get() is None:
            return 0.0
        if w.challenger is None or w.challenger.id != self.challenger_id:
            return 0.0  # the canary named in the record is not the one loaded yet
        return 1.0 if canary_arm(w.canary_salt, captured, w.weight) else 0.0

    def wait_loaded(self, timeout_s: float = 30.0) -> bool:
        """Until nothing is loading (tests and the simulation, which must be reproducible)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                if not self._loading:
                    return True
            time.sleep(0.01)
        return False

    # ------------------------------------------------------------------ any thread

    def roles(self) -> Roles:
        w = self.wanted
        champion = self.champion.get()
        challenger = self.challenger.get()
        return Roles(
            champion=_name(champion.info) if champion is not None else None,
            challenger=_name(challenger.info) if challenger is not None else None,
            weight=w.weight if w is not None and challenger is not None else 0.0,
            previous=spec_of(w.previous) if w is not None and w.previous is not None else None,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            models, self._loaded = list(self._loaded.values()), {}
        in_use = {id(m) for m in (self.champion.get(), self.challenger.get()) if m is not None}
        for m in models:
            if id(m) not in in_use:
                m.worker.close()
        challenger = self.challenger.set(None)
        if challenger is not None:
            challenger.worker.close()


def _name(info: ModelInfo) -> str:
    return f"{info.name}:{info.version}"


# --------------------------------------------------------------------------- the shadow


@dataclass(frozen=True)
class ShadowJob:
    """A hidden model's answer on one item, on its way: the challenger's, or the champion's on
    an item the canary answered (`slot`)."""

    model: ModelInfo
    future: Future[InferenceResult]
    slot: str = "challenger"


class ShadowRunner:
    """Runs the challenger off the pipeline thread, at most `max_pending` items at a time."""

    def __init__(self, *, max_pending: int = 8) -> None:
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="challenger")
        self._slots = threading.BoundedSemaphore(max_pending)
        self.dropped = 0  # items that went without the challenger's answer: it fell behind
        self.submitted = 0

    def submit(
        self,
        model: ModelInUse,
        image: np.ndarray,
        *,
        slot: str = "challenger",
        started: Started | None = None,
    ) -> ShadowJob | None:
        """`started`: a pass on `image` started at capture; collected if it is `model`'s (the
        champion hidden in the canary's arm), else the model is asked anew."""
        if not self._slots.acquire(blocking=False):
            self.dropped += 1
            return None
        self.submitted += 1
        try:
            future = self._executor.submit(model.worker.infer, image, started)
        except RuntimeError:  # shut down
            self._slots.release()
            return None
        future.add_done_callback(lambda _f: self._slots.release())
        return ShadowJob(model.info, future, slot)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
