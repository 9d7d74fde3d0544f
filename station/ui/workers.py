"""Work off the GUI thread, as thin emitters of signals: the pipeline (the intake's items, each
assessed) on a QThread, and a bridge that carries the recorder's callbacks to the GUI thread.

Only the GUI thread touches widgets and the core's one-thread parts (desk, status); these
objects only emit immutable values (Assessed, QImage, Picture, strings). Stop:
requestInterruption() + quit() + wait(), never terminate().
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
from PySide6.QtCore import QObject, QThread, Signal, Slot

from station.frames.types import CaptureState, Frame
from station.pipeline.assess import ModelInUse
from station.pipeline.core import StationCore
from station.pipeline.intake import Intake
from station.ui.images import Picture, picture, to_qimage

log = logging.getLogger(__name__)

LIVE_WIDTH = 480
LIVE_EVERY_S = 1 / 15
#: Phones waiting for a decision (each holding its images in memory) at which capture pauses
#: until the inspector catches up: the queue is bounded, never grown without limit.
MAX_WAITING = 30


class PipelineWorker(QObject):
    item_ready = Signal(object, object)  # Assessed, its Picture (converted off the GUI thread)
    live_frame = Signal(object)  # QImage, small
    camera_state = Signal(object, str)  # CaptureState, detail
    model_ready = Signal(object)  # ModelInfo
    model_failed = Signal(str)
    problem = Signal(str)
    heat_ready = Signal(int, object)  # seq, HxW float32 heat-map in [0, 1]
    capture_paused = Signal(bool, int)  # paused or resumed, phones waiting
    finished = Signal()

    def __init__(
        self,
        core: StationCore,
        intake: Intake,
        *,
        load_model: Callable[[], ModelInUse] | None = None,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        super().__init__()
        self.core = core
        self.max_waiting = max_waiting
        self.intake = intake
        self.load_model = load_model
        intake.on_state = self.camera_state.emit
        intake.on_frame = self._live
        self._last_live = 0.0
        self.items = 0
        #: The item view's size now, to fit each image to (None: the view scales it itself).
        self.view_size: Callable[[], tuple[int, int] | None] = lambda: None

    def request_capture(self) -> None:
        self.intake.request_capture()

    def _interrupted(self) -> bool:
        return QThread.currentThread().isInterruptionRequested()

    @Slot()
    def run(self) -> None:
        pictures = ThreadPoolExecutor(1, thread_name_prefix="picture")
        try:
            if self.load_model is not None:
                self._load_model()
            for captured in self.intake.items(self._interrupted):
                # Converted and scaled for the window while the model runs, off the GUI thread
                # (scaling there took 4 ms of each paint and stalled the window). Measured on this
                # 2-core machine, no core is free then: it slows the plan about as much as it
                # saves (bench/station_latency.py); the gain is a GUI thread that stays free.
                ready = pictures.submit(picture, captured.image, self.view_size())
                try:
                    assessed = self.core.assessor.assess(captured)
                except Exception as e:  # one bad item must not stop the line
                    log.exception("item could not be assessed")
                    self.problem.emit(f"an item could not be processed ({type(e).__name__}: {e})")
                    continue
                self.items += 1
                try:
                    image: Picture | None = ready.result()
                except Exception:  # the window converts it itself, as it did before
                    log.exception("could not prepare an item's picture for the window")
                    image = None
                captured.timeline.mark("sent")
                self.item_ready.emit(assessed, image)
                heat = self.core.assessor.heatmap(assessed)
                if heat is not None:
                    self.heat_ready.emit(assessed.seq, heat)
                self._hold_while_full()
        except Exception as e:  # never let the thread die silently
            log.exception("pipeline stopped")
            self.camera_state.emit(CaptureState.ENDED, f"pipeline stopped: {e}")
        finally:
            pictures.shutdown(wait=False, cancel_futures=True)
            self.finished.emit()

    def backlog(self) -> int:
        """Phones waiting for the inspector, and those on their way to the desk."""
        return len(self.core.desk.queue) + (self.items - self.core.items_accepted)

    def _hold_while_full(self) -> None:
        """Capture pauses while `max_waiting` phones wait (the banner says so); it resumes as
        they are decided."""
        if self.backlog() < self.max_waiting:
            return
        self.capture_paused.emit(True, self.backlog())
        while self.backlog() >= self.max_waiting and not self._interrupted():
            time.sleep(0.05)
        self.capture_paused.emit(False, self.backlog())

    def _load_model(self) -> None:
        assert self.load_model is not None
        try:
            model = self.load_model()
            # In use from here, before the first frame, so no item slips past a model that is
            # ready; the GUI thread then updates what it shows.
            self.core.use_model(model)
        except Exception as e:
            self.model_failed.emit(f"{type(e).__name__}: {e}")
            return
        self.model_ready.emit(model.info)

    def _live(self, frame: Frame) -> None:
        now = time.monotonic()
        if now - self._last_live < LIVE_EVERY_S:
            return
        self._last_live = now
        h, w = frame.image.shape[:2]
        small = cv2.resize(frame.image, (LIVE_WIDTH, max(1, h * LIVE_WIDTH // w)))
        self.live_frame.emit(to_qimage(small))


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
