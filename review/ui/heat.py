"""The review window's heat-map worker: on its own thread it opens the model version that judged
an item (once per version: the first one costs seconds, torch included) and draws the item's
image with that model's map over it. The GUI thread only sends requests and shows the QImages
that come back; a request older than the newest is skipped, not computed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from review.errors import HeatmapUnavailable
from review.heatmaps import ModelCache, ModelRef, OpenModel, overlay, weighted
from review.ui.widgets import load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeatRequest:
    """One item's heat-map, asked for by the GUI thread; `gen` says whether it is still wanted."""

    gen: int
    item_id: int
    image: Path
    model: ModelRef
    p_defect: float | None


@dataclass(frozen=True)
class HeatResult:
    request: HeatRequest
    image: QImage | None = None  # the item's image with the map over it
    error: str | None = None  # why there is none: a short reason, never a traceback
    load_ms: float | None = None  # the model was opened for this request, taking this long
    draw_ms: float | None = None  # the map computed and laid over the image
    skipped: bool = False  # superseded before it started: nothing to show


def to_bgr(image: QImage) -> np.ndarray:
    """A copy of the pixels as a BGR uint8 array (H, W, 3), the model's input format."""
    img = image.convertToFormat(QImage.Format.Format_BGR888)
    h, w, stride = img.height(), img.width(), img.bytesPerLine()
    rows = np.frombuffer(img.constBits(), np.uint8, count=h * stride).reshape(h, stride)
    return rows[:, : 3 * w].reshape(h, w, 3).copy()


def to_qimage(bgr: np.ndarray) -> QImage:
    """A QImage that owns its pixels (safe to hand from this thread to the GUI's)."""
    bgr = np.ascontiguousarray(bgr)
    h, w = bgr.shape[:2]
    return QImage(bgr.data, w, h, 3 * w, QImage.Format.Format_BGR888).copy()


class HeatWorker(QObject):
    """Lives on the heat-map thread; every model it opens stays on it."""

    computed = Signal(object)  # HeatResult

    def __init__(self, open_model: OpenModel) -> None:
        super().__init__()
        self.models = ModelCache(open_model)
        self.latest = 0  # the newest request's gen, set from the GUI thread (an int, replaced)

    @Slot(object)
    def compute(self, req: HeatRequest) -> None:
        if req.gen < self.latest:
            self.computed.emit(HeatResult(req, skipped=True))
            return
        self.computed.emit(self._compute(req))

    def _compute(self, req: HeatRequest) -> HeatResult:
        t0 = time.perf_counter()
        fresh = not self.models.has(req.model)
        try:
            explainer = self.models.get(req.model)
        except HeatmapUnavailable as e:
            return HeatResult(req, error=str(e))
        load_ms = (time.perf_counter() - t0) * 1e3 if fresh else None
        image = load_image(req.image)
        if image is None:
            return HeatResult(req, error=f"the image of item #{req.item_id} cannot be read")
        bgr = to_bgr(image)
        t1 = time.perf_counter()
        try:
            heat = explainer.explain(bgr)
        except Exception as e:  # one item's map failing must not take the window down
            log.exception("heat-map of item #%s by %s failed", req.item_id, req.model.spec)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return HeatResult(req, error=f"model {req.model.spec} could not map it: {first}")
        shown = overlay(bgr, weighted(heat, req.p_defect))
        draw_ms = (time.perf_counter() - t1) * 1e3
        return HeatResult(req, to_qimage(shown), load_ms=load_ms, draw_ms=draw_ms)
