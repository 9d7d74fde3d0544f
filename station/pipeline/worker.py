"""Inference off the UI thread, with a timeout.

A model that does not answer within the timeout yields an error result at once (the item goes to
a human) and its thread is abandoned: the next call runs on a fresh thread, and the late answer is
dropped (and counted).

An item's forward pass may be started as soon as it is captured (`start`); `infer` then collects
that answer instead of asking anew. Where the intake reads ahead (`station simulate`), the model
works on the next items while this thread routes and records the current one; the answer is the
same, the model being a function of the image.
"""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from station.pipeline.predictor import Prediction, Predictor


@dataclass(frozen=True)
class InferenceResult:
    prediction: Prediction | None  # None on error
    error: str | None
    latency_ms: float  # wall time the item waited for the answer (or for the timeout)

    @property
    def ok(self) -> bool:
        return self.error is None and self.prediction is not None


@dataclass(frozen=True)
class Started:
    """A forward pass asked for at capture; `InferenceWorker.infer` collects it.

    It names its worker weakly: an item keeps its pass while it waits for the inspector (up to
    MAX_WAITING of them), and a model swapped out or taken out of use meanwhile must not stay in
    memory for that."""

    _worker: weakref.ref[InferenceWorker]
    future: Future[Prediction]

    @property
    def worker(self) -> InferenceWorker | None:
        """The worker that runs the pass; None once nothing else holds it."""
        return self._worker()


class InferenceWorker:
    """Runs `predictor.predict` on a background thread; `infer()` waits at most `timeout_s`."""

    def __init__(self, predictor: Predictor, *, timeout_s: float) -> None:
        self.predictor = predictor
        self.timeout_s = timeout_s
        self._executor = self._new_executor()
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = 0
        self.timeouts = 0

    @staticmethod
    def _new_executor() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def start(self, image: np.ndarray) -> Started | None:
        """Start the forward pass of `image` now, on the model's thread (any thread may call
        it; None once the worker is closed). Passes run in the order they were started."""
        future = self._submit(image, None)
        return Started(weakref.ref(self), future) if future is not None else None

    def infer(self, image: np.ndarray, started: Started | None = None) -> InferenceResult:
        """Blocking (call it from a worker thread, never the UI thread): the answer for `image`,
        collected from `started` (this worker's `start` of the same image) where given. The
        timeout counts from this call; a pass started at capture may be queued behind others
        started before it (the simulation's read-ahead), which this wait includes."""
        t0 = time.perf_counter()
        future = self._submit(image, started)
        if future is None:  # taken out of use (the fail-safe) while this item was on its way
            return InferenceResult(None, "model taken out of use", 0.0)
        try:
            try:
                prediction = future.result(timeout=self.timeout_s)
            except CancelledError:
                # Queued when another caller's timeout replaced the executor (its queue is
                # cancelled with it): not this model's failure. Asked again, in the time left.
                again = self._submit(image, None)
                if again is None:
                    return InferenceResult(None, "model taken out of use", 0.0)
                future = again
                left = max(0.0, self.timeout_s - (time.perf_counter() - t0))
                prediction = future.result(timeout=left)
        except FutureTimeout:
            self.timeouts += 1
            with self._lock:
                # The stuck thread keeps running; its answer will be dropped. New requests get a
                # new thread so one hung call does not stall every item after it.
                self._executor.shutdown(wait=False, cancel_futures=True)
                if not self._closed:
                    self._executor = self._new_executor()
            future.add_done_callback(lambda _f: self._count_drop())
            return InferenceResult(
                None,
                f"model timed out after {self.timeout_s:g} s",
                (time.perf_counter() - t0) * 1e3,
            )
        except Exception as e:  # any model failure sends the item to a human
            return InferenceResult(
                None, f"model raised {type(e).__name__}: {e}", (time.perf_counter() - t0) * 1e3
            )
        return InferenceResult(prediction, None, (time.perf_counter() - t0) * 1e3)

    def _submit(self, image: np.ndarray, started: Started | None) -> Future[Prediction] | None:
        """`started`'s pass if it is this worker's and still on its way, else a new one; None
        once the worker is closed."""
        with self._lock:
            if self._closed:
                return None
            if started is not None and started.worker is self and not started.future.cancelled():
                return started.future
            return self._executor.submit(self.predictor.predict, image)

    def explain(self, image: np.ndarray) -> np.ndarray | None:
        """The model's heat-map for `image` (blocking, off the UI), or None if it fails or is
        slower than the timeout: the suggestion is shown without one."""
        try:
            with self._lock:
                if self._closed:
                    return None
                future = self._executor.submit(self.predictor.explain, image)
            return np.asarray(future.result(timeout=self.timeout_s), dtype=np.float32)
        except Exception:
            return None

    def _count_drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def close(self) -> None:
        """Any thread; a call still on its way afterwards gets an error result, not an
        exception."""
        with self._lock:
            self._closed = True
            self._executor.shutdown(wait=False, cancel_futures=True)
