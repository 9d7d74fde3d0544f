"""Capture in its own thread: a bounded frame queue, reconnect with backoff, state reports.

A live source (camera, stream, paced synthetic line) never waits for the reader: when the queue
is full the oldest frame is dropped and counted. A finite source (file, folder, unpaced synthetic
line) waits for the reader instead, so nothing is lost. State changes (connected, lost,
reconnecting, ended) go to `on_state(state, detail)`, called from the capture thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from station.errors import SourceError
from station.frames.types import CaptureState, Frame, FrameSource, SourceLost

log = logging.getLogger(__name__)

StateCallback = Callable[[CaptureState, str], None]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnect attempts: initial, initial*factor, ... capped at maximum."""

    initial_s: float = 0.5
    factor: float = 2.0
    maximum_s: float = 10.0
    #: Attempts after one loss before giving up (None: keep trying until stopped).
    max_attempts: int | None = None

    def delay(self, attempt: int) -> float:
        return min(self.maximum_s, self.initial_s * self.factor ** max(0, attempt - 1))


@dataclass(frozen=True, slots=True)
class CaptureCounts:
    frames_read: int
    frames_dropped: int
    reconnects: int
    state: CaptureState
    error: str | None


class Capture:
    """Run a FrameSource in a background thread.

    with Capture(source) as cap:     # opens the source (SourceError if unusable), starts the thread
        for frame in cap: ...        # until the source ends or stop() is called
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        queue_size: int = 8,
        drop_oldest: bool | None = None,
        on_state: StateCallback | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.source = source
        self.queue_size = queue_size
        self.drop_oldest = source.live if drop_oldest is None else drop_oldest
        self.on_state = on_state
        self.backoff = backoff or Backoff()
        self._queue: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False
        self.frames_read = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.state: CaptureState | None = None
        self.error: str | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> Capture:
        if self._thread is not None:
            raise RuntimeError("capture already started")
        self.source.open()  # a SourceError here is the user's to see, before any thread runs
        self._set_state(CaptureState.CONNECTED, self.source.name)
        self._thread = threading.Thread(
            target=self._run, name=f"capture:{self.source.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "capture thread for %s did not stop within %.1f s", self.source.name, timeout
                )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def counts(self) -> CaptureCounts:
        with self._cond:
            return CaptureCounts(
                self.frames_read,
                self.frames_dropped,
                self.reconnects,
                self.state or CaptureState.ENDED,
                self.error,
            )

    # ------------------------------------------------------------------ reading

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None when the source has ended (or stopped) and the queue is empty, or
        when `timeout` passes first (check `ended` to tell the two apart)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self._ended or self._stop.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._queue.popleft()
            self._cond.notify_all()
            return frame

    def latest(self) -> Frame | None:
        """Drain the queue and return the newest frame (what a live view wants), or None."""
        with self._cond:
            if not self._queue:
                return None
            frame = self._queue[-1]
            self._queue.clear()
            self._cond.notify_all()
            return frame

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended and not self._queue

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.get()
            if frame is None:
                return
            yield frame

    # ------------------------------------------------------------------ thread

    def _set_state(self, state: CaptureState, detail: str = "") -> None:
        with self._cond:
            if state == self.state and state != CaptureState.RECONNECTING:
                return
            self.state = state
        log.info("source %s: %s %s", self.source.name, state.value, detail)
        if self.on_state is not None:
            try:
                self.on_state(state, detail)
            except Exception:  # a broken UI callback must not kill the camera
                log.exception("state callback failed")

    def _put(self, frame: Frame) -> None:
        with self._cond:
            while len(self._queue) >= self.queue_size:
                if self.drop_oldest:
                    self._queue.popleft()
                    self.frames_dropped += 1
                    break
                if self._stop.is_set():
                    return
                self._cond.wait(0.5)
            self._queue.append(frame)
            self.frames_read += 1
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self.source.read()
                except SourceLost as e:
                    if not self._reconnect(str(e)):
                        break
                    continue
                except SourceError as e:
                    self.error = str(e)
                    break
                except Exception as e:  # keep a message for the UI; the traceback goes to the log
                    log.exception("source %s failed", self.source.name)
                    self.error = f"{type(e).__name__}: {e}"
                    break
                if frame is None:
                    break
                self._put(frame)
        finally:
            try:
                self.source.close()
            except Exception:
                log.exception("closing source %s failed", self.source.name)
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._set_state(CaptureState.ENDED, self.error or "")

    def _reconnect(self, why: str) -> bool:
        self._set_state(CaptureState.LOST, why)
        try:
            self.source.close()
        except Exception:
            log.exception("closing source %s failed", self.source.name)
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            if self.backoff.max_attempts is not None and attempt > self.backoff.max_attempts:
                self.error = f"{self.source.name} lost ({why}); gave up after {attempt - 1} reconnect attempts"
                return False
            delay = self.backoff.delay(attempt)
            self._set_state(CaptureState.RECONNECTING, f"attempt {attempt} in {delay:.1f} s")
            if self._stop.wait(delay):
                return False
            try:
                self.source.open()
            except SourceError as e:
                log.info("reconnect %d to %s failed: %s", attempt, self.source.name, e)
                continue
            with self._cond:
                self.reconnects += 1
            self._set_state(CaptureState.CONNECTED, f"reconnected after {attempt} attempt(s)")
            return True
        return False
