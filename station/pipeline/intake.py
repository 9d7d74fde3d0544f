"""From frames to captured items: the one loop over a frame source and the item trigger, used by
the window, `station capture` and `station simulate` alike (no Qt; any one thread).

Each item is stored once through the ImageStore, in its one encoding (so the same frame gives
the same bytes and hash on every path), on a small writer pool so the model never waits for the
disk; its input statistics are the trigger's, computed once. Golden samples (known-truth stills
that measure inspectors) are slipped in after line items at the configured share.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from station.errors import SourceError, StationError
from station.frames.capture import Backoff, Capture, CaptureCounts
from station.frames.stats import InputStats
from station.frames.store import ImageStore, StoredImage, encode_image
from station.frames.trigger import CapturedItem, Trigger, item_from_frame
from station.frames.types import CaptureState, Frame, FrameSource, SkippedFile
from station.pipeline.timeline import Timeline
from station.priority import background_pool

log = logging.getLogger(__name__)

GOLDEN_SOURCE = "golden:synthetic"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Unstored:
    """An image the store could not write (disk full, read-only): its hash, for the record, and
    why. The item still goes on; the window says images are not being saved."""

    sha256: str
    error: str
    relpath: str = ""


@dataclass(frozen=True)
class Captured:
    """One item as it left the intake: immutable, safe to pass between threads.

    image: uint8 BGR (H, W, 3), the frame the trigger chose.
    stored: the image store's write, possibly still under way.
    """

    image: np.ndarray
    stats: InputStats
    stored: Future[StoredImage | Unstored]
    captured_at: datetime
    source: str
    ground_truth: str | None
    golden: bool
    trigger_version: str
    trigger_reason: str  # "auto" (settled), "manual" (capture key) or "still" (one frame, one item)
    frame_index: int  # in the source's stream
    frame_time: float  # the source's clock
    meta: Mapping[str, Any] = field(default_factory=dict)  # what the source knows of the frame
    # the champion's pass, started at capture where the station asked for it (Assessor.start);
    # opaque here: only the worker it was started on collects it
    early: object = field(default=None, compare=False, repr=False)
    # when it passed each point on its way to the screen (station/pipeline/timeline.py)
    timeline: Timeline = field(default_factory=Timeline, compare=False, repr=False)

    @property
    def image_sha256(self) -> str:
        """Waits for the image store (called where records are built, off the GUI thread)."""
        return self.stored.result().sha256

    @property
    def image_path(self) -> str:
        return self.stored.result().relpath

    @property
    def store_error(self) -> str | None:
        """Why the image could not be stored; None if it was, or is not known yet."""
        if not self.stored.done():
            return None
        result = self.stored.result()
        return result.error if isinstance(result, Unstored) else None


class GoldenSource(Protocol):
    """Where golden samples come from: `draw()` after each line item (None: none this time)."""

    source_name: str

    def draw(self) -> Frame | None: ...


class GoldenSamples:
    """Known-truth stills from the synthetic line (at their own seed), drawn after a line item
    with chance `share`; the inspector cannot tell them from line items. Only for the synthetic
    line: a real line draws from its registered sets (station.golden.RegisteredGolden)."""

    source_name = GOLDEN_SOURCE

    def __init__(
        self, share: float, *, seed: int = 7919, size: tuple[int, int] = (1280, 720)
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"golden share must be in [0, 1], got {share}")
        self.share = share
        self.rng = random.Random(seed)
        self.seed = seed
        self.size = size
        self._source: FrameSource | None = None

    def draw(self) -> Frame | None:
        """The next golden still, or None when this line item gets none."""
        if self.share <= 0 or self.rng.random() >= self.share:
            return None
        if self._source is None:
            from station.synth.line import SyntheticStillsSource  # the synth package imports frames

            self._source = SyntheticStillsSource.at(self.seed, *self.size, render_threads=0)
            self._source.open()
        frame = self._source.read()
        assert frame is not None  # the synthetic line never ends
        return frame


class Intake:
    """Source -> capture thread -> trigger -> stored items. `items()` yields them in order."""

    def __init__(
        self,
        source: FrameSource,
        *,
        store: ImageStore | None,
        source_name: str | None = None,
        trigger: Trigger | None = None,
        golden: GoldenSource | None = None,
        now: Callable[[], datetime] = utc_now,
        on_state: Callable[[CaptureState, str], None] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        backoff: Backoff | None = None,
        keep_trying_to_open: bool = False,
        writers: int = 1,
        lowered_writers: bool = False,
        early: Callable[[np.ndarray], object] | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.source_name = source_name or source.name
        self.trigger = trigger or Trigger()
        self.golden = golden
        self.now = now
        self.on_state = on_state
        self.on_frame = on_frame
        self.backoff = backoff
        self.keep_trying_to_open = keep_trying_to_open
        self.writers = writers
        # station simulate's, not the window's (station/priority.py says why)
        self.lowered_writers = lowered_writers
        # Called with each item's image as it is captured (the model may start on it at once).
        self.early = early
        self.frames_seen = 0
        self.items_out = 0
        self._manual = False
        self._capture: Capture | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ control (any thread)

    def request_capture(self) -> None:
        """Capture the next frame whatever the trigger thinks (the inspector's C key)."""
        self._manual = True  # read by the loop; a bool write is atomic

    def counts(self) -> CaptureCounts | None:
        return self._capture.counts() if self._capture is not None else None

    @property
    def skipped(self) -> list[SkippedFile]:
        return list(self.source.skipped)

    # ------------------------------------------------------------------ the loop

    def items(
        self, should_stop: Callable[[], bool] = lambda: False, *, ahead: int = 0
    ) -> Iterator[Captured]:
        """Captured items until the source ends or `should_stop()` (checked before every frame
        and every golden sample). Every image write is finished when the iteration ends, however
        it ends.

        `ahead` > 0 runs the loop on a thread of its own, up to that many items ahead of the
        reader (trigger, statistics and image writes then overlap the reader's model)."""
        if ahead <= 0:
            yield from self._loop(should_stop)
            return
        out: queue.Queue[Captured | BaseException | None] = queue.Queue(maxsize=ahead)
        stop = threading.Event()

        def produce() -> None:
            try:
                for item in self._loop(lambda: stop.is_set() or should_stop()):
                    while not stop.is_set():
                        try:
                            out.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                out.put(None)
            except BaseException as e:  # the reader raises it
                out.put(e)

        thread = threading.Thread(target=produce, name="intake", daemon=True)
        thread.start()
        try:
            while (got := out.get()) is not None:
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.05)
            thread.join()

    def _loop(self, should_stop: Callable[[], bool]) -> Iterator[Captured]:
        capture = self._open(should_stop)
        if capture is None:
            return
        self._capture = capture
        # The model does not wait for an image's encoding and fsyncs (its record does).
        self._pool = (
            background_pool(self.writers, "image-store")
            if self.lowered_writers
            else ThreadPoolExecutor(max_workers=self.writers, thread_name_prefix="image-store")
        )
        per_frame = self.source.item_per_frame
        try:
            while not should_stop():
                frame = capture.get(timeout=0.1)
                if frame is None:
                    if capture.ended:
                        return
                    continue
                self.frames_seen += 1
                if self.on_frame is not None:
                    self.on_frame(frame)
                if self._manual:
                    self._manual = False
                    self.trigger.request_capture()
                item = item_from_frame(frame) if per_frame else self.trigger.update(frame)
                if item is None:
                    continue
                yield self._captured(item, self.source_name, golden=False)
                golden = self.golden.draw() if self.golden is not None else None
                if golden is not None and not should_stop():
                    assert self.golden is not None
                    yield self._captured(
                        item_from_frame(golden), self.golden.source_name, golden=True
                    )
        finally:
            capture.stop()
            self._pool.shutdown(wait=True)

    def _open(self, should_stop: Callable[[], bool]) -> Capture | None:
        """Start the capture thread; a camera that is not there yet is retried (and reported)
        when `keep_trying_to_open`, else its SourceError is the caller's to show."""
        attempt = 0
        while not should_stop():
            capture = Capture(self.source, on_state=self.on_state, backoff=self.backoff)
            try:
                return capture.start()
            except SourceError as e:
                if not self.keep_trying_to_open:
                    raise
                attempt += 1
                if self.on_state is not None:
                    self.on_state(CaptureState.LOST, f"camera not connected: {e} (try {attempt})")
                end = time.monotonic() + min(5.0, 0.5 * attempt)
                while time.monotonic() < end and not should_stop():
                    time.sleep(0.05)
        return None

    def _captured(self, item: CapturedItem, source: str, *, golden: bool) -> Captured:
        self.items_out += 1
        frame = item.frame
        stored: Future[StoredImage | Unstored]
        if self.store is None:  # the caller keeps the image itself (`station capture --plain`)
            stored = Future()
            stored.set_result(Unstored("", "no image store"))
        else:
            assert self._pool is not None
            stored = self._pool.submit(_store, self.store, item.image)
        timeline = Timeline()
        timeline.mark("captured")
        early = None
        if self.early is not None:
            try:
                early = self.early(item.image)
            except Exception:  # the item is assessed as if nothing had been started
                log.exception("could not start the model on a captured item")
        return Captured(
            timeline=timeline,
            image=item.image,
            stats=item.stats,
            stored=stored,
            captured_at=self.now(),
            source=source,
            ground_truth=item.truth,
            golden=golden,
            trigger_version=item.trigger_version,
            trigger_reason=item.reason,
            frame_index=frame.index,
            frame_time=frame.timestamp,
            meta=dict(frame.meta),
            early=early,
        )


def _store(store: ImageStore, image: np.ndarray) -> StoredImage | Unstored:
    """Write the image; if it cannot be written the item still goes on, with its hash and no
    path, and says why. Never raises: the item's record waits on this answer."""
    try:
        data = encode_image(image, store.fmt, jpeg_quality=store.jpeg_quality)
    except Exception as e:  # an encoder fault must not cost the decision its record
        log.exception("could not encode a captured image")
        return Unstored(hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest(), str(e))
    try:
        return store.put_bytes(data)
    except (StationError, OSError) as e:
        log.error("image store not writable: %s", e)
        return Unstored(hashlib.sha256(data).hexdigest(), str(e))
    except Exception as e:
        log.exception("image store failed")
        return Unstored(hashlib.sha256(data).hexdigest(), f"{type(e).__name__}: {e}")
