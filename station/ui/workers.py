"""Work off the GUI thread: the pipeline (camera -> trigger -> guard/store -> model) as a worker
object on a QThread, and a bridge that carries the recorder's callbacks to the GUI thread.

Only the GUI thread touches widgets and the core's state; these objects only emit signals with
immutable values (Captured, QImage, strings). Stop: requestInterruption() + quit() + wait().
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cv2
from PySide6.QtCore import QObject, QThread, Signal, Slot

from station.pipeline.session import StationCore
from station.ui.images import to_qimage

log = logging.getLogger(__name__)

LIVE_WIDTH = 480
LIVE_EVERY_S = 1 / 15


class PipelineWorker(QObject):
    item_ready = Signal(object, object)  # Captured, QImage of it (converted off the GUI thread)
    live_frame = Signal(object)  # QImage, small
    camera_state = Signal(str, str)
    model_ready = Signal(object, object)  # InferenceWorker, ModelInfo
    model_failed = Signal(str)
    problem = Signal(str)
    heat_ready = Signal(int, object)  # seq, HxW float32 heat-map in [0, 1]
    finished = Signal()

    def __init__(
        self,
        core: StationCore,
        *,
        source_spec: str,
        model_path: str | None,
        load_model: bool,
        timeout_s: float,
        loader: Any = None,
        source_factory: Any = None,
        defect_classes: tuple[str, ...] = ("crack", "scratch", "dent", "stain", "missing"),
    ) -> None:
        super().__init__()
        self.core = core
        self.source_spec = source_spec
        self.model_path = model_path
        self.load_model = load_model
        self.timeout_s = timeout_s
        self.loader = loader
        self.source_factory = source_factory
        self.defect_classes = defect_classes
        self._manual = False
        self._golden: Any = None
        self.items = 0

    def request_capture(self) -> None:
        self._manual = True  # read by the loop; a bool write is atomic

    def _interrupted(self) -> bool:
        return QThread.currentThread().isInterruptionRequested()

    @Slot()
    def run(self) -> None:
        try:
            if self.load_model:
                self._load_model()
            self._loop()
        except Exception as e:  # never let the thread die silently
            log.exception("pipeline stopped")
            self.camera_state.emit("ended", f"pipeline stopped: {e}")
        finally:
            self.finished.emit()

    def _load_model(self) -> None:
        from station.pipeline.predictor import check_fits, load_predictor
        from station.pipeline.worker import InferenceWorker

        try:
            loader = self.loader or load_predictor
            predictor, info = loader(self.model_path or None)
            check_fits(info, self.core.router.ok_class, self.defect_classes)
        except Exception as e:
            self.model_failed.emit(f"{type(e).__name__}: {e}")
            return
        worker = InferenceWorker(predictor, timeout_s=self.timeout_s)
        # Set here, before the first frame, so no item slips past a model that is ready; the GUI
        # thread then updates what it shows (set_model is idempotent).
        self.core.register_model(info)
        self.core.model = info
        self.core.worker = worker
        self.model_ready.emit(worker, info)

    def _open(self) -> Any:
        from station.frames.capture import Capture
        from station.frames.sources import open_source

        source = (self.source_factory or open_source)(self.source_spec)
        return Capture(source, on_state=lambda s, d: self.camera_state.emit(str(s), d))

    def _loop(self) -> None:
        from station.errors import StationError
        from station.frames.trigger import Trigger, item_from_frame

        attempt = 0
        capture = None
        while not self._interrupted():
            try:
                capture = self._open().start()
                break
            except StationError as e:
                attempt += 1
                self.camera_state.emit("lost", f"camera not connected: {e} (try {attempt})")
                self._sleep(min(5.0, 0.5 * attempt))
        if capture is None:
            return
        trigger = Trigger()
        per_frame = getattr(capture.source, "item_per_frame", False)
        last_live = 0.0
        try:
            while not self._interrupted():
                frame = capture.get(timeout=0.1)
                if frame is None:
                    if capture.ended:
                        self.camera_state.emit("ended", capture.error or "the source ended")
                        return
                    continue
                now = time.monotonic()
                if now - last_live >= LIVE_EVERY_S:
                    last_live = now
                    h, w = frame.image.shape[:2]
                    small = cv2.resize(frame.image, (LIVE_WIDTH, max(1, h * LIVE_WIDTH // w)))
                    self.live_frame.emit(to_qimage(small))
                if self._manual:
                    self._manual = False
                    trigger.request_capture()
                item = item_from_frame(frame) if per_frame else trigger.update(frame)
                if item is None:
                    continue
                meta = dict(item.frame.meta)
                try:
                    cap = self.core.process(
                        item.image,
                        source=self.source_spec,
                        ground_truth=item.truth,
                        meta={"t_frame": item.frame.timestamp, "t_captured": now, **meta},
                        trigger_version=item.trigger_version,
                    )
                except Exception as e:  # one bad item must not stop the line
                    log.exception("item could not be processed")
                    self.problem.emit(f"an item could not be processed ({type(e).__name__}: {e})")
                    continue
                self.items += 1
                self.item_ready.emit(cap, to_qimage(cap.image))
                heat = self.core.heatmap(cap)
                if heat is not None:
                    self.heat_ready.emit(cap.seq, heat)
                if self.core.router.wants_golden():
                    self._inject_golden()
        finally:
            capture.stop()

    def _inject_golden(self) -> None:
        """A known-truth item from the synthetic line, after a real one, recorded as golden."""
        if self._golden is None:
            from station.pipeline.simulate import SimulateConfig, synthetic_line

            self._golden = synthetic_line(
                SimulateConfig(items=0, seed=7919, width=1280, height=720)
            )
        item = next(self._golden).materialize()
        cap = self.core.process(
            item.image,
            source="golden:synthetic",
            ground_truth=item.truth,
            golden=True,
            meta={"t_captured": time.monotonic()},
        )
        self.item_ready.emit(cap, to_qimage(cap.image))

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._interrupted():
            QThread.msleep(50)  # worker thread only


class RecorderBridge(QObject):
    """The recorder calls back on its own thread; these signals deliver on the GUI thread."""

    acked = Signal(object)
    problem = Signal(object)


class PipelineThread:
    """Owns the QThread and the worker; start() / stop() (never terminate)."""

    def __init__(self, worker: PipelineWorker) -> None:
        self.thread = QThread()
        self.thread.setObjectName("pipeline")
        self.worker = worker
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        worker.finished.connect(self.thread.quit)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_ms: int = 10_000) -> bool:
        self.thread.requestInterruption()
        self.thread.quit()
        return bool(self.thread.wait(timeout_ms))
