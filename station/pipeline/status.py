"""What the station shows about itself besides the item in front of the inspector: one banner per
thing that is wrong (camera, model, database, image store, notices), each true at every moment;
the camera's state; throughput. And the model fail-safe, which puts up the model's banner.

One thread owns a StationStatus (the GUI's in the window, the loop's in `station simulate`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from db.models import Level, LevelChange
from station.frames.types import CaptureState
from station.pipeline.assess import Assessed, ModelHolder
from station.pipeline.recorder import Problem

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_MODEL_ERRORS = 3


class BannerKind(StrEnum):
    camera = "camera"
    model = "model"
    database = "database"
    images = "images"
    notice = "notice"  # e.g. an action the operator's role does not allow
    alarm = "alarm"  # an open drift alarm (station/monitor.py)
    queue = "queue"  # phones pile up faster than they are decided


class StationStatus:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.banners: dict[BannerKind, str] = {}
        self.camera: CaptureState | None = None  # None until the camera first reports
        self._items: deque[float] = deque()
        self._started = clock()
        self.listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ things that happen

    def camera_changed(self, state: CaptureState, detail: str = "") -> None:
        self.camera = state
        if state in (CaptureState.LOST, CaptureState.RECONNECTING):
            self.banners[BannerKind.camera] = (
                f"CAMERA LOST — {detail or state.value}. Reconnecting…"
            )
        elif state is CaptureState.ENDED:
            self.banners[BannerKind.camera] = f"CAMERA ENDED — {detail or 'no more frames'}."
        else:
            self.banners.pop(BannerKind.camera, None)
        self._changed()

    def images_stored(self, error: str | None) -> None:
        """The image store's latest outcome: a failure raises the banner, a success clears it."""
        if error is not None:
            self.banners[BannerKind.images] = (
                f"IMAGES NOT SAVED — {error}. Decisions are still recorded; free disk space or "
                "fix the data folder."
            )
        else:
            self.banners.pop(BannerKind.images, None)
        self._changed()

    def database(self, problem: Problem | None) -> None:
        if problem is None:
            self.banners.pop(BannerKind.database, None)
        elif problem.unsaved:
            self.banners[BannerKind.database] = (
                f"LINE STOPPED — decisions cannot be saved: {problem.message}. "
                f"{problem.unsaved} decision(s) are only in this station's memory. Free disk "
                "space or fix the data folder; deciding resumes once they are on disk."
            )
        else:
            self.banners[BannerKind.database] = (
                f"DATABASE NOT WRITABLE — {problem.message}. {problem.pending} decision(s) "
                "saved in the spool file on this station and retried; keep inspecting."
            )
        self._changed()

    def notice(self, text: str | None) -> None:
        if text:
            self.banners[BannerKind.notice] = text[:1].upper() + text[1:]
        else:
            self.banners.pop(BannerKind.notice, None)
        self._changed()

    def model_banner(self, text: str | None) -> None:
        if text:
            self.banners[BannerKind.model] = text
        else:
            self.banners.pop(BannerKind.model, None)
        self._changed()

    def alarm_banner(self, text: str | None) -> None:
        if text:
            self.banners[BannerKind.alarm] = text
        else:
            self.banners.pop(BannerKind.alarm, None)
        self._changed()

    def queue_banner(self, text: str | None) -> None:
        if self.banners.get(BannerKind.queue) == text:
            return  # unchanged: no listener call (the window sets it from its own refresh)
        if text:
            self.banners[BannerKind.queue] = text
        else:
            self.banners.pop(BannerKind.queue, None)
        self._changed()

    def item_seen(self) -> None:
        t = self.clock()
        self._items.append(t)
        while self._items and t - self._items[0] > 3600:
            self._items.popleft()

    # ------------------------------------------------------------------ read-outs

    @property
    def items_per_hour(self) -> float:
        span = max(self.clock() - self._started, 60.0)
        return len(self._items) * 3600.0 / min(span, 3600.0)

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()


class ModelFallback:
    """The model fail-safe: a model that fails to load, or fails MAX_CONSECUTIVE_MODEL_ERRORS
    items in a row, is taken out of use; every item then goes to a person, the station drops to
    human_only (recorded by the system through the level service) and the banner says so.
    Single errors only send their own item to a person (the router does that)."""

    def __init__(
        self,
        *,
        model: ModelHolder,
        status: StationStatus,
        demote: Callable[[str], LevelChange | None],
    ) -> None:
        self.model = model
        self.status = status
        self.demote = demote
        self.errors_in_a_row = 0

    def observe(self, assessed: Assessed) -> None:
        if not assessed.plan.run_model or assessed.inference is None:
            return
        error = assessed.inference.error
        self.errors_in_a_row = self.errors_in_a_row + 1 if error is not None else 0
        if self.errors_in_a_row >= MAX_CONSECUTIVE_MODEL_ERRORS and self.model.get() is not None:
            self.unusable(f"{self.errors_in_a_row} failures in a row, last: {error}")

    def unusable(self, reason: str) -> None:
        old = self.model.set(None)
        if old is not None:
            old.worker.close()
        text = f"MODEL UNUSABLE — {reason}. Inspect every item by eye."
        try:
            change = self.demote(f"model unusable: {reason}")
        except Exception as e:  # the fail-safe itself must not fail on a database problem
            log.error("could not record the drop to human_only: %s", e)
            change = None
        if change is not None:
            text = (
                f"MODEL UNUSABLE — {reason}. Station dropped from "
                f"{Level(change.from_level).value.upper().replace('_', ' ')} to HUMAN ONLY."
            )
        self.status.model_banner(text)
