"""The small value types every frame source, the capture thread and the trigger share."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from station.errors import SourceLost

__all__ = ["CaptureState", "Frame", "FrameSource", "SkippedFile", "SourceLost"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One image from a source.

    image: uint8 BGR, shape (H, W, 3).
    index: 0-based position in the source's stream (restarts are not renumbered).
    timestamp: seconds; the source's clock (wall clock for cameras, frame clock for files and the
        synthetic line, so tests never depend on real time).
    meta: whatever the source knows about the frame, e.g. the synthetic line's
        {"item_id": 12, "truth": "crack", "phase": "dwell"} or a folder's {"path": ...}.
    """

    image: np.ndarray
    index: int
    timestamp: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file a source could not use; the run goes on without it."""

    path: str
    reason: str


class CaptureState(enum.StrEnum):
    """What the UI shows about the camera."""

    CONNECTED = "connected"
    LOST = "lost"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


@runtime_checkable
class FrameSource(Protocol):
    """Where frames come from: a camera, a video, a stream, a folder of stills, the synthetic line.

    `open()` raises SourceError when the source cannot be used at all (missing file or device).
    `read()` returns the next frame, None at the end of a finite source, and raises SourceLost
    when a live source drops (the capture thread then reconnects with `close()` + `open()`).
    """

    #: A short human-readable description, e.g. "file:line.mp4".
    name: str
    #: True for cameras and streams: frames keep coming whether or not anyone reads them, so a
    #: slow reader must drop old frames rather than stall the source.
    live: bool
    #: True when every frame already is one item (a folder of stills): no trigger needed.
    item_per_frame: bool
    #: Frames per second the source means to deliver, when known.
    nominal_fps: float | None

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    @property
    def skipped(self) -> list[SkippedFile]: ...
