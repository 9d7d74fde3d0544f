"""numpy BGR images to QImage, and the heat-map overlay (no torch here)."""

from __future__ import annotations

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


def overlay(bgr: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    h, w = bgr.shape[:2]
    heat = np.asarray(heat, np.float32)
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0.0, 1.0)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * heat)[:, :, None]
    return (bgr * (1 - weight) + colour * weight).astype(np.uint8)
