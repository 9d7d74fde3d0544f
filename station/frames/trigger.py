"""The item trigger: from a moving stream, capture one sharp frame of each phone that arrives and
settles, and never the same phone twice.

How it decides (all on a small grey copy of each frame, `work_width` pixels wide):
- motion: share of pixels that changed by more than `pixel_threshold` since the previous frame;
  the scene is still while that share stays under `still_fraction`.
- a settle: `settle_frames` still frames in a row. At a settle the scene is compared with the empty
  table (the background): an item is present when more than `presence_fraction` of the pixels
  differ from the background under every global gain in [1/max_gain, max_gain], so a dimmer or
  brighter light is never mistaken for a phone. The background is learnt from the first settle
  (start on an empty table, or pass `background=`) and follows slow changes while the table is
  empty.
- dwell: after a settle with an item present, `dwell_frames` more still frames are looked at
  (fewer if the item moves on first) and the sharpest (variance of the Laplacian) is captured.
- no double capture: after a capture the trigger holds until the table is seen empty again, or
  until enough motion has accumulated (the per-frame changed shares since the capture add up to
  `depart_motion`: an item carried away and another brought in, not a nudge) and the scene
  settles again.
- manual capture: `request_capture()` captures the next frame whatever the state, and holds.

Change TRIGGER_VERSION whenever the behaviour changes: items record it, so a change early in the
pipeline can be traced to its effect downstream.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from station.frames.stats import InputStats, compute_stats, sharpness, to_gray
from station.frames.types import Frame
from station.stages import stage_version

TRIGGER_VERSION = "settle-bg-1"


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    work_width: int = 160
    pixel_threshold: int = 12
    still_fraction: float = 0.004
    settle_frames: int = 3
    dwell_frames: int = 6
    presence_fraction: float = 0.06
    depart_motion: float = 1.0
    max_gain: float = 2.0
    background_alpha: float = 0.2

    def __post_init__(self) -> None:
        if self.work_width < 16:
            raise ValueError(f"work_width must be >= 16, got {self.work_width}")
        if self.settle_frames < 1 or self.dwell_frames < 0:
            raise ValueError("settle_frames must be >= 1 and dwell_frames >= 0")
        if not 0 < self.still_fraction < 1:
            raise ValueError(f"still_fraction must be in (0, 1), got {self.still_fraction}")
        if self.depart_motion <= 0:
            raise ValueError(f"depart_motion must be > 0, got {self.depart_motion}")
        if self.max_gain < 1:
            raise ValueError(f"max_gain must be >= 1, got {self.max_gain}")


class TriggerState(enum.StrEnum):
    EMPTY = "empty"  # armed: waiting for an item to arrive and settle
    DWELL = "dwell"  # an item has settled: collecting frames to pick the sharpest
    HOLD = "hold"  # captured: waiting for the item to leave


@dataclass(frozen=True, slots=True)
class CapturedItem:
    """One phone, as the trigger captured it."""

    frame: Frame
    stats: InputStats
    #: "auto" (settled item), "manual" (capture key) or "still" (a source whose frames are items).
    reason: str
    trigger_version: str = TRIGGER_VERSION
    #: Frame indices of the still frames the sharpest was chosen from.
    candidates: tuple[int, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> np.ndarray:
        return self.frame.image

    @property
    def truth(self) -> str | None:
        """Ground truth, when the source knows it (the synthetic line does)."""
        t = self.frame.meta.get("truth")
        return t if isinstance(t, str) else None


def item_from_frame(frame: Frame, reason: str = "still") -> CapturedItem:
    """An item straight from a frame (folder sources, manual capture)."""
    return CapturedItem(frame, compute_stats(frame.image), reason, candidates=(frame.index,))


class Trigger:
    def __init__(
        self, config: TriggerConfig | None = None, *, background: np.ndarray | None = None
    ):
        self.config = config or TriggerConfig()
        # Recorded with every item it captures: the code's version and its settings.
        self.version = stage_version(TRIGGER_VERSION, dataclasses.asdict(self.config))
        self.state = TriggerState.EMPTY
        self._bg: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self._still_run = 0
        self._recent: list[Frame] = []  # still frames since the last motion (bounded)
        self._candidates: list[Frame] = []
        self._motion_since_capture = 0.0
        self._manual = False
        self.captures = 0
        if background is not None:
            self._bg = self._small(background)
        self._gains = self._make_gains()

    # ------------------------------------------------------------------ public

    def request_capture(self) -> None:
        """Capture the next frame given to `update`, whatever the state (the manual capture key)."""
        self._manual = True

    def set_background(self, image: np.ndarray) -> None:
        """The empty table, when the stream may start with an item in view."""
        self._bg = self._small(image)
        self.state = TriggerState.EMPTY

    def reset(self) -> None:
        """Forget the background and any item in progress."""
        self.state = TriggerState.EMPTY
        self._bg = None
        self._prev = None
        self._still_run = 0
        self._recent.clear()
        self._candidates = []
        self._motion_since_capture = 0.0
        self._manual = False

    @property
    def has_background(self) -> bool:
        return self._bg is not None

    def update(self, frame: Frame) -> CapturedItem | None:
        """Feed one frame; returns an item when one is captured on this frame."""
        cfg = self.config
        small = self._small(frame.image)
        prev, self._prev = self._prev, small
        if prev is None or prev.shape != small.shape:
            motion = 1.0
            if self._bg is not None and self._bg.shape != small.shape:
                self._bg = None  # the camera changed resolution: learn the table again
        else:
            motion = self._changed_share(small, prev)

        if self._manual:
            self._manual = False
            return self._capture([frame], "manual")

        if motion >= cfg.still_fraction:
            self._still_run = 0
            self._recent.clear()
            self._motion_since_capture += motion
            if self.state == TriggerState.DWELL:
                # The item moves on before the dwell window filled: take the best so far.
                return self._capture(self._candidates, "auto")
            return None

        self._still_run += 1
        if self.state == TriggerState.DWELL:
            self._candidates.append(frame)
            if len(self._candidates) >= cfg.settle_frames + cfg.dwell_frames:
                return self._capture(self._candidates, "auto")
            return None

        self._recent.append(frame)
        if len(self._recent) > cfg.settle_frames:
            self._recent.pop(0)
        if self._still_run == cfg.settle_frames:
            return self._on_settle(small)
        long_empty = self.state == TriggerState.EMPTY and self._still_run % 30 == 0
        if long_empty and self.presence(small) < cfg.presence_fraction:
            self._learn_background(small)  # follow slow light changes while the table is empty
        return None

    def presence(self, small: np.ndarray) -> float:
        """Share of pixels that differ from the background under the best global gain (0..1)."""
        if self._bg is None:
            return 0.0
        bg = self._bg.astype(np.float32)
        cur = small.astype(np.float32)
        thr = float(self.config.pixel_threshold)
        best = 1.0
        for g in self._gains:
            ref = bg * g
            tol = np.maximum(thr, 0.1 * ref)
            share = float(np.count_nonzero(np.abs(cur - ref) > tol)) / cur.size
            best = min(best, share)
        return best

    # ------------------------------------------------------------------ internals

    def _make_gains(self) -> np.ndarray:
        lg = np.log(self.config.max_gain)
        return np.exp(np.linspace(-lg, lg, 17)) if lg > 0 else np.ones(1)

    def _small(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        ww = min(self.config.work_width, w)
        wh = max(1, round(h * ww / w))
        if w >= 4 * ww:
            # A cheap bilinear step to twice the work size first: INTER_AREA over the full frame
            # costs more than the rest of the trigger together.
            image = cv2.resize(image, (2 * ww, 2 * wh), interpolation=cv2.INTER_LINEAR)
        small = cv2.resize(image, (ww, wh), interpolation=cv2.INTER_AREA)
        return to_gray(small)

    @staticmethod
    def _focus(image: np.ndarray) -> float:
        """Sharpness for choosing among candidates, at half size (blur survives halving)."""
        gray = to_gray(image)
        h, w = gray.shape
        if w >= 640:
            gray = cv2.resize(gray, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        return sharpness(gray)

    def _changed_share(self, a: np.ndarray, b: np.ndarray) -> float:
        diff = cv2.absdiff(a, b)
        return (
            float(
                cv2.countNonZero(
                    cv2.threshold(diff, self.config.pixel_threshold, 255, cv2.THRESH_BINARY)[1]
                )
            )
            / diff.size
        )

    def _learn_background(self, small: np.ndarray) -> None:
        if self._bg is None or self._bg.shape != small.shape:
            self._bg = small.copy()
        else:
            a = self.config.background_alpha
            self._bg = cv2.addWeighted(small, a, self._bg, 1 - a, 0)

    def _on_settle(self, small: np.ndarray) -> CapturedItem | None:
        cfg = self.config
        if self._bg is None:
            self._learn_background(small)
            return None
        present = self.presence(small) >= cfg.presence_fraction
        if not present:
            self._learn_background(small)
            self.state = TriggerState.EMPTY
            return None
        arrived = self.state == TriggerState.EMPTY or (
            self.state == TriggerState.HOLD and self._motion_since_capture >= cfg.depart_motion
        )
        if not arrived:
            return None
        self.state = TriggerState.DWELL
        self._candidates = list(self._recent)
        if cfg.dwell_frames == 0:
            return self._capture(self._candidates, "auto")
        return None

    def _capture(self, frames: list[Frame], reason: str) -> CapturedItem | None:
        self.state = TriggerState.HOLD
        self._candidates = []
        self._motion_since_capture = 0.0
        if not frames:
            return None
        if len(frames) == 1:
            best = frames[0]
        else:
            scores = [self._focus(f.image) for f in frames]
            best = frames[int(np.argmax(scores))]
        self.captures += 1
        return CapturedItem(
            best,
            compute_stats(best.image),
            reason,
            trigger_version=self.version,
            candidates=tuple(f.index for f in frames),
        )
