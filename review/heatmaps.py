"""Heat-maps in the review window, without Qt or the model: which model version judged an item,
the seam through which that version is opened, and the overlay drawn from its map.

review/ may not import model/ (nor station/, which knows where artifacts are), so the window is
given an `OpenModel` callable by whoever starts it (`station review`: station/heatmaps.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from review.errors import HeatmapUnavailable

log = logging.getLogger(__name__)

#: How strongly the colour map covers the image where the map is 1 (the station's overlay too).
ALPHA = 0.5


@dataclass(frozen=True)
class ModelRef:
    """The model version that judged an item, as its prediction record names it."""

    id: int
    name: str
    version: str
    sha256: str
    artifact_path: str  # as recorded: relative to the station's files folder, or absolute

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.version}"


class Explainer(Protocol):
    """A loaded model: an (H, W) float map in [0, 1] of where it sees a defect in a BGR image."""

    def explain(self, bgr: np.ndarray) -> np.ndarray: ...


#: Opens the artifact of a model version; raises HeatmapUnavailable with a one-line reason.
OpenModel = Callable[[ModelRef], Explainer]


class ModelCache:
    """Each model version opened at most once. A version that cannot be opened keeps its reason
    and is not tried again: a missing artifact would otherwise cost a load attempt per item.
    Used from one thread only (the window's heat-map worker)."""

    def __init__(self, open_model: OpenModel) -> None:
        self._open = open_model
        self._models: dict[int, Explainer] = {}
        self._failed: dict[int, str] = {}

    def has(self, ref: ModelRef) -> bool:
        """Whether asking for `ref` answers at once (loaded, or known not to load)."""
        return ref.id in self._models or ref.id in self._failed

    def get(self, ref: ModelRef) -> Explainer:
        if ref.id in self._failed:
            raise HeatmapUnavailable(self._failed[ref.id])
        if ref.id not in self._models:
            try:
                self._models[ref.id] = self._open(ref)
            except HeatmapUnavailable as e:
                self._failed[ref.id] = str(e)
                raise
            except Exception as e:  # a model file of any origin: the window stays up and says so
                log.exception("opening model %s for a heat-map failed", ref.spec)
                self._failed[ref.id] = f"model {ref.spec} cannot be used here: {_first_line(e)}"
                raise HeatmapUnavailable(self._failed[ref.id]) from e
        return self._models[ref.id]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def weighted(heat: np.ndarray, p_defect: float | None) -> np.ndarray:
    """The map as shown: a model scales its map to a peak near 1 on every image, so it is weighted
    by the calibrated P(defect) the item was judged with, else a sure-ok phone would glow
    somewhere (the station window's rule). Without a recorded P(defect) the map is shown as is."""
    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if p_defect is None:
        return heat
    return heat * float(np.clip(p_defect, 0.0, 1.0))


def jet(heat: np.ndarray) -> np.ndarray:
    """The JET colour map (blue, cyan, yellow, red) as BGR uint8, like OpenCV's COLORMAP_JET, so
    the review window colours a map as the station window does without needing OpenCV."""
    t = np.clip(heat, 0.0, 1.0)[..., None] * 4.0
    centres = np.array([1.0, 2.0, 3.0], np.float32)  # blue, green, red peak at 1/4, 1/2, 3/4
    bgr = np.clip(1.5 - np.abs(t - centres), 0.0, 1.0)
    return np.asarray(bgr * 255.0 + 0.5, np.uint8)


def _fit(heat: np.ndarray, h: int, w: int) -> np.ndarray:
    """The map at the image's size (nearest cell): a model answers at the image's own size, but
    an image stored at another size than the map must not fail the overlay."""
    if heat.shape == (h, w):
        return heat
    rows = np.minimum((np.arange(h) * heat.shape[0]) // h, heat.shape[0] - 1)
    cols = np.minimum((np.arange(w) * heat.shape[1]) // w, heat.shape[1] - 1)
    return heat[rows[:, None], cols[None, :]]


def overlay(bgr: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The image (BGR uint8) with the map blended in: untouched where the map is 0, `alpha` of
    the colour where it is 1."""
    h, w = bgr.shape[:2]
    heat = _fit(np.clip(np.asarray(heat, np.float32), 0.0, 1.0), h, w)
    weight = (alpha * heat)[:, :, None]
    out = bgr.astype(np.float32) * (1.0 - weight) + jet(heat).astype(np.float32) * weight
    return np.asarray(out + 0.5, np.uint8)
