"""The station core: the state the window is a thin view on, Qt-free.

Two halves. `process()` is the heavy, thread-safe part (statistics, input guard, image store,
inference) and returns an immutable `Captured`; the window runs it on its pipeline thread, simulate
runs `capture` on a small pool and `infer` in order. Everything else (`accept`, `decide`, `undo`, the queue, banners, counters) belongs
to one thread, the GUI thread in the window, and is cheap.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.models import DecidedBy, Level, LevelChange
from db.repo import record_level_change
from station.errors import StationError
from station.frames.stats import compute_stats
from station.frames.store import ImageStore, StoredImage
from station.frames.trigger import TRIGGER_VERSION
from station.pipeline.guard import GUARD_VERSION, GuardResult, InputGuard
from station.pipeline.predictor import ModelInfo
from station.pipeline.recorder import Ack, Problem
from station.pipeline.records import (
    CorrectionRecord,
    DecisionRecord,
    Deferred,
    InspectionRecord,
    PredictionRecord,
    Record,
    ensure_champion,
    model_ref,
    new_uid,
)
from station.pipeline.records import now as utc_now
from station.pipeline.router import Decider, ModelCall, Plan, Route, Router
from station.pipeline.worker import InferenceRequest, InferenceResult, InferenceWorker

log = logging.getLogger(__name__)

UNDO_WINDOW_S = 5.0
MAX_CONSECUTIVE_MODEL_ERRORS = 3


def encode_png_fast(image: np.ndarray) -> bytes:
    """Lossless PNG, about 2.5x faster to encode than the store's default level and no larger
    on line images (zlib level 1 with run-length matching)."""
    ok, buf = cv2.imencode(
        ".png",
        image,
        [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE],
    )
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


class BannerKind(StrEnum):
    camera = "camera"
    model = "model"
    database = "database"
    images = "images"
    notice = "notice"  # e.g. an action the operator's role does not allow


@dataclass(frozen=True)
class Unstored:
    """An image the store could not write: its hash (for the record) and why."""

    sha256: str
    error: str
    relpath: str = ""


@dataclass(frozen=True)
class Stored:
    """A captured image with its statistics and guard verdict, stored; before any model."""

    image: np.ndarray
    captured_at: datetime
    stored_image: Future[StoredImage | Unstored]
    stats: Mapping[str, Any]
    source: str
    ground_truth: str | None
    golden: bool
    trigger_version: str
    guard: GuardResult
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Captured:
    """One captured item after the heavy work; immutable, safe to pass between threads."""

    seq: int
    image: np.ndarray
    captured_at: datetime
    stored_image: Future[StoredImage | Unstored]  # may still be being written
    stats: Mapping[str, Any]
    source: str
    ground_truth: str | None
    golden: bool
    trigger_version: str
    guard: GuardResult
    plan: Plan
    inference: InferenceResult | None
    model: ModelInfo | None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def image_sha256(self) -> str:
        """Waits for the image store (called where records are built, off the GUI thread)."""
        return self.stored_image.result().sha256

    @property
    def image_path(self) -> str:
        return self.stored_image.result().relpath

    @property
    def store_error(self) -> str | None:
        """Why the image could not be stored; None if it was, or is not known yet."""
        if not self.stored_image.done():
            return None
        result = self.stored_image.result()
        return result.error if isinstance(result, Unstored) else None

    @property
    def prediction(self) -> Any | None:
        return (
            self.inference.prediction if self.inference is not None and self.inference.ok else None
        )


@dataclass(frozen=True)
class Suggestion:
    """What assist shows: exists only where the inspector may see the model."""

    label: str
    confidence: float
    probabilities: Mapping[str, float]
    heatmap: np.ndarray | None


@dataclass
class Waiting:
    """An item waiting for (or in front of) the inspector."""

    captured: Captured
    route: Route
    shown_at: float | None = None
    corrects: str | None = None  # uid of the decision this one replaces (undo)

    @property
    def suggestion(self) -> Suggestion | None:
        pred = self.captured.prediction
        if not self.route.show_suggestion or pred is None:
            return None
        heat = self.captured.inference.heatmap if self.captured.inference else None
        return Suggestion(pred.label, float(pred.confidence), dict(pred.probabilities), heat)

    @property
    def kind(self) -> str:
        """Why this item waits: review, audit or golden (partial / full), else inspect."""
        if self.route.golden:
            return "golden"
        if self.route.audit:
            return "audit"
        if self.route.plan.level in (Level.partial, Level.full):
            return "review"
        return "inspect"


@dataclass
class Outcome:
    """One decided item, for the strip of recent items and the "saved" tick."""

    uid: str
    seq: int
    label: str
    decided_by: DecidedBy
    badge: str = ""  # "AUTO PASS" / "AUTO FAIL" for the model's own decisions
    saved_item_id: int | None = None


class StationCore:
    def __init__(
        self,
        *,
        engine: Engine | None,
        station_id: int,
        station_name: str,
        operator_id: int,
        operator_name: str,
        level: Level,
        router: Router,
        guard: InputGuard,
        store: ImageStore,
        sink: Callable[[Record | Deferred], Any],
        worker: InferenceWorker | None = None,
        model: ModelInfo | None = None,
        explain: bool = False,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        ok_class: str = "ok",
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.station_id = station_id
        self.station_name = station_name
        self.operator_id = operator_id
        self.operator_name = operator_name
        self.level = Level(level)
        self.router = router
        self.guard = guard
        self.store = store
        self.sink = sink
        self.worker = worker
        self.model = model
        self.explain = explain
        self.clock = clock
        self.now = now
        self.ok_class = ok_class
        self.rng = rng or random.Random()
        self.queue: deque[Waiting] = deque()
        self.recent: deque[Outcome] = deque(maxlen=40)
        self.banners: dict[BannerKind, str] = {}
        self.camera_state = "starting"
        self.last_saved: int | None = None
        self.pending_writes = 0
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._io: ThreadPoolExecutor | None = None
        self._model_errors = 0
        self._last: tuple[Outcome, Waiting, float] | None = None
        self._decided_times: deque[float] = deque()
        self._started = clock()
        self.listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ the model

    @property
    def model_available(self) -> bool:
        return self.worker is not None

    def register_model(self, info: ModelInfo) -> None:
        """Record the model as the station's champion (any thread; a failure is only logged, the
        records of each prediction name the model anyway)."""
        if self.engine is None:
            return
        try:
            with session_scope(self.engine) as session:
                ensure_champion(session=session, station_id=self.station_id, ref=model_ref(info))
        except Exception as e:
            log.warning("could not record the champion deployment: %s", e)

    def set_model(self, worker: InferenceWorker, info: ModelInfo) -> None:
        self.worker = worker
        self.model = info
        self.banners.pop(BannerKind.model, None)
        self._changed()

    def model_unusable(self, reason: str) -> None:
        """The model cannot be used: every item goes to a human and, above human_only, the station
        drops to human_only with a recorded, automatic level change."""
        self.worker = None
        self.banners[BannerKind.model] = f"MODEL UNUSABLE — {reason}. Inspect every item by eye."
        if self.level is not Level.human_only:
            previous = self.level
            self.level = Level.human_only
            self.banners[BannerKind.model] = (
                f"MODEL UNUSABLE — {reason}. Station dropped from {previous.value.upper()} to "
                "HUMAN ONLY."
            )
            self._record_level_change(previous, Level.human_only, f"model unusable: {reason}")
        self._changed()

    def _record_level_change(self, from_level: Level, to_level: Level, reason: str) -> None:
        if self.engine is None:
            return
        try:
            with session_scope(self.engine) as session:
                record_level_change(
                    session=session,
                    change=LevelChange(
                        station_id=self.station_id,
                        from_level=from_level,
                        to_level=to_level,
                        reason=reason,
                        automatic=True,
                    ),
                )
        except Exception as e:  # the demotion itself must not fail on a database problem
            log.error("could not record the drop to %s: %s", to_level.value, e)

    # ------------------------------------------------------------------ heavy half (any thread)

    def next_seq(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def _put(self, image: np.ndarray) -> StoredImage | Unstored:
        """Store the image; if the store cannot be written (disk full, read-only) the item still
        goes on, with its hash and no path, and says why (the window shows a banner)."""
        data = encode_png_fast(image) if self.store.fmt == "png" else self.store.encode(image)
        try:
            return self.store.put_bytes(data)
        except (StationError, OSError) as e:
            log.error("image store not writable: %s", e)
            return Unstored(hashlib.sha256(data).hexdigest(), str(e))

    def capture(
        self,
        image: np.ndarray,
        *,
        source: str = "",
        ground_truth: str | None = None,
        golden: bool = False,
        meta: Mapping[str, Any] | None = None,
        captured_at: datetime | None = None,
        trigger_version: str = TRIGGER_VERSION,
        stored_image: Future[StoredImage | Unstored] | None = None,
    ) -> Stored:
        """Statistics, input guard and image store: no model, no randomness, any thread.
        `stored_image`: the store's write already under way (else it is done here)."""
        stats = compute_stats(image)
        if stored_image is None:
            stored_image = Future()
            stored_image.set_result(self._put(image))
        return Stored(
            image=image,
            captured_at=captured_at or self.now(),
            stored_image=stored_image,
            stats=stats.as_dict() if hasattr(stats, "as_dict") else dict(vars(stats)),
            source=source,
            ground_truth=ground_truth,
            golden=golden,
            trigger_version=trigger_version,
            guard=self.guard.check(stats),
            meta=dict(meta or {}),
        )

    def _run_model(
        self, image: np.ndarray, golden: bool
    ) -> tuple[Plan, InferenceResult | None, ModelInfo | None]:
        worker, info = self.worker, self.model
        plan = self.router.plan(self.level, golden=golden, model_available=worker is not None)
        inference = None
        if plan.run_model and worker is not None:
            request = InferenceRequest.make(image, explain=self.explain and plan.show_suggestion)
            inference = worker.infer(request)
        return plan, inference, info

    def infer(self, stored: Stored) -> Captured:
        """The routing plan and, where the level asks for it, inference (blocking, off the UI)."""
        return self._captured(stored, *self._run_model(stored.image, stored.golden))

    def _captured(
        self,
        stored: Stored,
        plan: Plan,
        inference: InferenceResult | None,
        info: ModelInfo | None,
    ) -> Captured:
        return Captured(
            seq=self.next_seq(),
            image=stored.image,
            captured_at=stored.captured_at,
            stored_image=stored.stored_image,
            stats=stored.stats,
            source=stored.source,
            ground_truth=stored.ground_truth,
            golden=stored.golden,
            trigger_version=stored.trigger_version,
            guard=stored.guard,
            plan=plan,
            inference=inference,
            model=info if plan.run_model else None,
            meta=stored.meta,
        )

    def heatmap(self, cap: Captured) -> np.ndarray | None:
        """The heat-map for an item whose suggestion is shown (any thread but the GUI's); asked
        for after the suggestion is on screen, so the label never waits for it."""
        worker = self.worker
        if worker is None or not cap.plan.show_suggestion or cap.prediction is None:
            return None
        return worker.explain(cap.image)

    def process(self, image: np.ndarray, **kw: Any) -> Captured:
        """Everything heavy for one captured image. The image is written while the model looks
        at it and after: the suggestion never waits for the disk (records wait, off the GUI)."""
        with self._seq_lock:
            if self._io is None:
                self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-store")
        pending = self._io.submit(self._put, image)
        stored = self.capture(image, stored_image=pending, **kw)
        plan, inference, info = self._run_model(image, stored.golden)
        return self._captured(stored, plan, inference, info)

    # ------------------------------------------------------------------ light half (one thread)

    def accept(self, cap: Captured) -> Route:
        """Route a processed item: the model's own decisions are recorded now; the rest wait."""
        if cap.stored_image.done():
            error = cap.store_error
            if error is not None:
                self.banners[BannerKind.images] = (
                    f"IMAGES NOT SAVED — {error}. Decisions are still recorded; free disk space "
                    "or fix the data folder."
                )
            else:
                self.banners.pop(BannerKind.images, None)
        pred = cap.prediction
        error = cap.inference.error if cap.inference is not None else None
        route = self.router.route(
            cap.plan,
            probabilities=dict(pred.probabilities) if pred is not None else None,
            model_label=pred.label if pred is not None else None,
            error=error,
            guard_passed=cap.guard.passed,
            guard_reason=cap.guard.reason,
        )
        if cap.plan.run_model:
            self._model_errors = self._model_errors + 1 if error is not None else 0
            if self._model_errors >= MAX_CONSECUTIVE_MODEL_ERRORS and self.worker is not None:
                self.model_unusable(f"{self._model_errors} failures in a row, last: {error}")
        if route.decider is Decider.model:
            assert route.model_label is not None
            badge = "AUTO PASS" if route.model_call is ModelCall.auto_pass else "AUTO FAIL"
            if not route.audit:
                rec = self._inspection(cap, route, None, route.model_label, DecidedBy.model)
                self._emit(
                    rec, Outcome(rec.uid, cap.seq, route.model_label, DecidedBy.model, badge)
                )
            # else: the model's call is in force (the phone moves on) and a blind audit waits; the
            # item is written with the audit, in one transaction. Nothing on screen shows the
            # model's call before the auditor has decided.
        if route.needs_human:
            self.queue.append(Waiting(cap, route))
        self._changed()
        return route

    @property
    def current(self) -> Waiting | None:
        if not self.queue:
            return None
        head = self.queue[0]
        if head.shown_at is None:
            head.shown_at = self.clock()
        return head

    def decide(self, label: str, *, decision_ms: float | None = None) -> str:
        """The inspector's decision on the current item; returns the record's uid."""
        w = self.current
        if w is None:
            raise LookupError("no item is waiting for a decision")
        self.queue.popleft()
        t = self.clock()
        ms = decision_ms if decision_ms is not None else (t - (w.shown_at or t)) * 1e3
        decision = DecisionRecord(
            operator_id=self.operator_id,
            label=label,
            decided_at=self.now(),
            decision_ms=ms,
            suggestion_shown=w.route.show_suggestion and w.suggestion is not None,
            blind=w.route.blind,
            audit=w.route.audit,
            golden=w.route.golden,
        )
        if w.route.decider is Decider.model:  # an audit: the model's call stays in force
            assert w.route.model_label is not None
            final, by = w.route.model_label, DecidedBy.model
        else:
            final, by = label, DecidedBy.human
        rec: Record | Deferred
        if w.corrects is not None:
            rec = CorrectionRecord(
                uid=new_uid(),
                corrects_uid=w.corrects,
                decision=decision,
                final_label=final,
                level=w.route.plan.level.value,
                threshold_version=self.router.thresholds_version,
                decided_by=by.value,
            )
        else:
            rec = self._inspection(w.captured, w.route, decision, final, by)
        outcome = Outcome(rec.uid, w.captured.seq, label, DecidedBy.human)
        # An undo corrects the item's first record; the correction's own uid is only for acks.
        self._last = (replace(outcome, uid=w.corrects or rec.uid), w, t)
        self._emit(rec, outcome)
        return rec.uid

    def can_undo(self) -> bool:
        return self.undo_seconds_left() > 0

    def undo_seconds_left(self) -> float:
        if self._last is None:
            return 0.0
        return max(0.0, UNDO_WINDOW_S - (self.clock() - self._last[2]))

    def undo(self) -> bool:
        """Put the last decided item back in front of the inspector (within the undo window);
        the next decision on it supersedes the first."""
        if not self.can_undo():
            return False
        assert self._last is not None
        outcome, w, _ = self._last
        self._last = None
        self.queue.appendleft(Waiting(w.captured, w.route, shown_at=None, corrects=outcome.uid))
        self._changed()
        return True

    # ------------------------------------------------------------------ records

    def _inspection(
        self,
        cap: Captured,
        route: Route,
        decision: DecisionRecord | None,
        final_label: str,
        decided_by: DecidedBy,
    ) -> InspectionRecord | Deferred:
        """The record of an item; Deferred (built by the recorder's thread) while its image is
        still being written, so the GUI thread never waits for the disk."""
        uid = new_uid()
        if cap.stored_image.done():
            return self._build(uid, cap, route, decision, final_label, decided_by)
        return Deferred(
            uid, lambda: self._build(uid, cap, route, decision, final_label, decided_by)
        )

    def _build(
        self,
        uid: str,
        cap: Captured,
        route: Route,
        decision: DecisionRecord | None,
        final_label: str,
        decided_by: DecidedBy,
    ) -> InspectionRecord:
        predictions: tuple[PredictionRecord, ...] = ()
        if cap.plan.run_model and cap.inference is not None:
            ref = model_ref(cap.model) if cap.model is not None else None
            pred = cap.prediction
            if pred is not None:
                predictions = (
                    PredictionRecord(
                        model=ref,
                        label=pred.label,
                        probabilities={k: float(v) for k, v in pred.probabilities.items()},
                        p_defect=float(pred.p_defect),
                        confidence=float(pred.confidence),
                        latency_ms=float(pred.latency_ms),
                    ),
                )
            else:
                predictions = (
                    PredictionRecord(
                        model=ref, error=cap.inference.error, latency_ms=cap.inference.latency_ms
                    ),
                )
        return InspectionRecord(
            uid=uid,
            station_id=self.station_id,
            captured_at=cap.captured_at,
            image_sha256=cap.image_sha256,
            image_path=cap.image_path,
            width=int(cap.stats.get("width", 0)),
            height=int(cap.stats.get("height", 0)),
            stats={k: float(v) for k, v in cap.stats.items()},
            source=cap.source,
            ground_truth=cap.ground_truth,
            golden=cap.golden,
            trigger_version=cap.trigger_version,
            guard_version=GUARD_VERSION,
            guard_passed=cap.guard.passed,
            guard_reason=cap.guard.reason,
            predictions=predictions,
            decision=decision,
            final_label=final_label,
            decided_by=decided_by.value,
            level=route.plan.level.value,
            threshold_version=self.router.thresholds_version,
        )

    def _emit(self, rec: Record | Deferred, outcome: Outcome) -> None:
        self.recent.appendleft(outcome)
        t = self.clock()
        self._decided_times.append(t)
        while self._decided_times and t - self._decided_times[0] > 3600:
            self._decided_times.popleft()
        self.pending_writes += 1
        result = self.sink(rec)
        if isinstance(result, Ack):
            self.acknowledge(result)
        self._changed()

    def acknowledge(self, ack: Ack) -> None:
        """A record committed (call on the core's thread)."""
        self.pending_writes = max(0, self.pending_writes - 1)
        self.last_saved = ack.item_id
        for o in self.recent:
            if o.uid == ack.uid:
                o.saved_item_id = ack.item_id
        if BannerKind.database in self.banners and self.pending_writes == 0:
            self.banners.pop(BannerKind.database, None)
        self._changed()

    def database_problem(self, problem: Problem | None) -> None:
        if problem is None:
            self.banners.pop(BannerKind.database, None)
        else:
            self.banners[BannerKind.database] = (
                f"DATABASE NOT WRITABLE — {problem.message}. {problem.pending} decision(s) kept "
                "on this station and retried; keep inspecting."
            )
        self._changed()

    def camera(self, state: str, detail: str = "") -> None:
        self.camera_state = state
        if state in ("lost", "reconnecting"):
            self.banners[BannerKind.camera] = f"CAMERA LOST — {detail or state}. Reconnecting…"
        elif state == "ended":
            self.banners[BannerKind.camera] = f"CAMERA ENDED — {detail or 'no more frames'}."
        else:
            self.banners.pop(BannerKind.camera, None)
        self._changed()

    # ------------------------------------------------------------------ read-outs

    @property
    def items_per_hour(self) -> float:
        span = max(self.clock() - self._started, 60.0)
        return len(self._decided_times) * 3600.0 / min(span, 3600.0)

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()
