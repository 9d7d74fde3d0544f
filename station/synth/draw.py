"""Anti-aliased drawing on float images (OpenCV anti-aliases only 8-bit images, so shapes are drawn
as 8-bit coverage layers and blended into the float canvas inside their bounding box)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

SHIFT = 4  # sub-pixel bits for drawing calls
_ONE = 1 << SHIFT


def fixed(pts: Any) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * _ONE).astype(np.int32)


def layer(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape[:2], np.uint8)


def poly(lay: np.ndarray, pts: np.ndarray, value: int = 255) -> np.ndarray:
    cv2.fillPoly(lay, [fixed(pts)], int(value), cv2.LINE_AA, SHIFT)
    return lay


def circle(
    lay: np.ndarray, center: Any, radius: float, value: int = 255, thickness: int = -1
) -> np.ndarray:
    cv2.circle(
        lay,
        tuple(int(v) for v in fixed(center)),
        max(1, round(radius * _ONE)),
        int(value),
        thickness,
        cv2.LINE_AA,
        SHIFT,
    )
    return lay


def ellipse(lay: np.ndarray, center: Any, axes: Any, angle: float, value: int = 255) -> np.ndarray:
    cv2.ellipse(
        lay,
        tuple(int(v) for v in fixed(center)),
        tuple(max(1, int(v)) for v in fixed(axes)),
        angle,
        0,
        360,
        int(value),
        -1,
        cv2.LINE_AA,
        SHIFT,
    )
    return lay


def polyline(lay: np.ndarray, pts: np.ndarray, value: int = 255, thickness: int = 1) -> np.ndarray:
    if len(pts) >= 2:
        cv2.polylines(
            lay, [fixed(pts)], False, int(value), max(1, int(thickness)), cv2.LINE_AA, SHIFT
        )
    return lay


def rounded_rect(w: float, h: float, r: float, x0: float, y0: float, n: int = 10) -> np.ndarray:
    """Outline points (N, 2) of a rounded rectangle with top-left (x0, y0)."""
    r = max(0.0, min(r, w / 2, h / 2))
    pts = []
    corners = [
        (x0 + w - r, y0 + r, -90),
        (x0 + w - r, y0 + h - r, 0),
        (x0 + r, y0 + h - r, 90),
        (x0 + r, y0 + r, 180),
    ]
    for cx, cy, a0 in corners:
        for k in range(n + 1):
            a = math.radians(a0 + 90 * k / n)
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return np.array(pts, np.float64)


def bbox(lay: np.ndarray) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in cv2.boundingRect(lay))  # type: ignore[return-value]


def paint(
    canvas: np.ndarray, lay: np.ndarray, value: Any, *, mode: str = "blend", blur: float = 0.0
) -> None:
    """Blend `value` into the float canvas where the layer covers it.

    mode "blend": canvas = canvas*(1-c) + value*c; "add": canvas += value*c; "mul": canvas *= 1-c*(1-value).
    """
    x, y, w, h = bbox(lay)
    if w == 0 or h == 0:
        return
    if blur > 0:
        pad = math.ceil(3 * blur)
        H, W = lay.shape[:2]
        x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
        c = cv2.GaussianBlur(lay[y0:y1, x0:x1].astype(np.float32) / 255.0, (0, 0), blur)
    else:
        x0, y0, x1, y1 = x, y, x + w, y + h
        c = lay[y0:y1, x0:x1].astype(np.float32) / 255.0
    roi = canvas[y0:y1, x0:x1]
    v = np.asarray(value, np.float32)
    if roi.ndim == 3:
        c = c[..., None]
    if mode == "add":
        roi += c * v
    elif mode == "mul":
        roi *= 1.0 - c * (1.0 - v)
    else:
        roi *= 1.0 - c
        roi += c * v
