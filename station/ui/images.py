"""numpy BGR images to QImage, and the heat-map overlay (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtGui import QImage


def to_qimage(bgr: np.ndarray) -> QImage:
    """A QImage that owns a copy of the pixels (safe to pass between threads)."""
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    bgr = np.ascontiguousarray(bgr)
    h, w = bgr.shape[:2]
    return QImage(bgr.data, w, h, 3 * w, QImage.Format.Format_BGR888).copy()


def fitted_size(image_w: int, image_h: int, view_w: int, view_h: int) -> tuple[int, int]:
    """The size a whole image is drawn at in a view of view_w x view_h: as large as fits, its
    aspect kept (the item view at zoom 1)."""
    scale = min(view_w / image_w, view_h / image_h)
    # at least a pixel each way: a very long, thin image would otherwise round to nothing
    return max(1, round(image_w * scale)), max(1, round(image_h * scale))


@dataclass(frozen=True)
class Picture:
    """An item's image made ready for the window off the GUI thread: `full`, and `fitted`, the
    same scaled to the item view's size at the time (None when it was not known)."""

    full: QImage
    fitted: QImage | None = None


def scale_to(bgr: np.ndarray, size: tuple[int, int]) -> QImage:
    """`bgr` scaled to `size` (width, height) as the item view draws it.

    By OpenCV, which lets go of Python's lock while it works: QImage.scaled (smooth) held it for
    the 4 ms it took at 1280x720, and the pipeline's thread, reading what to do with the next
    item, waited that long; this takes about 1. Linear when shrinking by at most half, area
    averaging below, as Qt's smooth scaling does: a one-pixel scratch keeps the contrast it kept
    there (tested). As 32-bit RGB, which Qt draws without a conversion."""
    w, h = size
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    halved = 2 * w < bgr.shape[1] or 2 * h < bgr.shape[0]
    small = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA if halved else cv2.INTER_LINEAR)
    bgra = cv2.cvtColor(small, cv2.COLOR_BGR2BGRA)  # in memory, the byte order of RGB32
    # The QImage only points at the pixels: its copy() owns them (the array goes with this call).
    return QImage(bgra.data, w, h, 4 * w, QImage.Format.Format_RGB32).copy()


def picture(bgr: np.ndarray, view: tuple[int, int] | None) -> Picture:
    """The QImage of `bgr`, and its fitted copy for a view of `view` (width, height)."""
    full = to_qimage(bgr)
    if view is None or min(view) <= 0:
        return Picture(full)
    return Picture(full, scale_to(bgr, fitted_size(full.width(), full.height(), *view)))


def overlay(bgr: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    h, w = bgr.shape[:2]
    heat = np.asarray(heat, np.float32)
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0.0, 1.0)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * heat)[:, :, None]
    return (bgr * (1 - weight) + colour * weight).astype(np.uint8)
