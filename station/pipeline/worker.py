"""Inference off the UI thread, with a timeout.

A request is cheap and immutable; its result carries the request id. A model that does not answer
within the timeout yields an error result at once (the item goes to a human) and its thread is
abandoned: the next request runs on a fresh thread, and the late answer is dropped by id.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

_ids = itertools.count(1)


@dataclass(frozen=True)
class InferenceRequest:
    request_id: int
    image: np.ndarray
    explain: bool = False

    @staticmethod
    def make(image: np.ndarray, *, explain: bool = False) -> InferenceRequest:
        return InferenceRequest(next(_ids), image, explain)


@dataclass(frozen=True)
class InferenceResult:
    request_id: int
    prediction: Any | None  # the model's Prediction, or None on error
    heatmap: np.ndarray | None
    error: str | None
    latency_ms: float  # wall time from submit to answer (or to the timeout)

    @property
    def ok(self) -> bool:
        return self.error is None and self.prediction is not None


class InferenceWorker:
    """Runs `predictor.predict` on a background thread; `infer()` waits at most `timeout_s`."""

    def __init__(self, predictor: Any, *, timeout_s: float) -> None:
        self.predictor = predictor
        self.timeout_s = timeout_s
        self._executor = self._new_executor()
        self._lock = threading.Lock()
        self.latest_id = 0
        self.dropped = 0
        self.timeouts = 0

    @staticmethod
    def _new_executor() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def _run(self, request: InferenceRequest) -> tuple[Any, np.ndarray | None]:
        prediction = self.predictor.predict(request.image)
        heatmap = None
        if request.explain:
            try:
                heatmap = np.asarray(self.predictor.explain(request.image), dtype=np.float32)
            except Exception:  # a missing heat-map must not lose the suggestion
                heatmap = None
        return prediction, heatmap

    def submit(self, request: InferenceRequest) -> Future[tuple[Any, np.ndarray | None]]:
        with self._lock:
            self.latest_id = max(self.latest_id, request.request_id)
            return self._executor.submit(self._run, request)

    def infer(self, request: InferenceRequest) -> InferenceResult:
        """Blocking (call it from a worker thread, never the UI thread)."""
        t0 = time.perf_counter()
        future = self.submit(request)
        try:
            prediction, heatmap = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            self.timeouts += 1
            with self._lock:
                # The stuck thread keeps running; its answer will be dropped. New requests get a
                # new thread so one hung call does not stall every item after it.
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
            future.add_done_callback(lambda _f: self._count_drop())
            return InferenceResult(
                request.request_id,
                None,
                None,
                f"model timed out after {self.timeout_s:g} s",
                (time.perf_counter() - t0) * 1e3,
            )
        except Exception as e:  # any model failure sends the item to a human
            return InferenceResult(
                request.request_id,
                None,
                None,
                f"model raised {type(e).__name__}: {e}",
                (time.perf_counter() - t0) * 1e3,
            )
        return InferenceResult(
            request.request_id, prediction, heatmap, None, (time.perf_counter() - t0) * 1e3
        )

    def explain(self, image: np.ndarray) -> np.ndarray | None:
        """The model's heat-map for `image` (blocking, off the UI), or None if it fails or is
        slower than the timeout: the suggestion is shown without one."""
        try:
            with self._lock:
                future = self._executor.submit(self.predictor.explain, image)
            return np.asarray(future.result(timeout=self.timeout_s), dtype=np.float32)
        except Exception:
            return None

    def infer_async(
        self, request: InferenceRequest, on_result: Callable[[InferenceResult], None]
    ) -> None:
        """Run `infer` on a helper thread; `on_result` is called only if no newer request was
        submitted meanwhile (late results for an old request are dropped)."""

        with self._lock:  # newer from the moment it is asked for, not when its thread runs
            self.latest_id = max(self.latest_id, request.request_id)

        def job() -> None:
            result = self.infer(request)
            if result.request_id < self.latest_id:
                self._count_drop()
                return
            on_result(result)

        threading.Thread(target=job, name="inference-wait", daemon=True).start()

    def _count_drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
