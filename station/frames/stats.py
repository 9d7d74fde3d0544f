"""Input statistics of a captured image, stored with the item for the input guard and drift."""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

#: Grey levels at or beyond these count as clipped (crushed shadows / blown highlights).
CLIP_LOW = 2
CLIP_HIGH = 253


@dataclass(frozen=True, slots=True)
class InputStats:
    """Field names match the columns of db.models.Item.

    brightness: mean grey level, 0..255.
    contrast: standard deviation of the grey levels (RMS contrast), 0..~128.
    sharpness: variance of the Laplacian of the grey image (higher = sharper).
    clipped_share: share of pixels with grey <= CLIP_LOW or >= CLIP_HIGH, 0..1.
    width, height: image size in pixels.
    chroma_rg, chroma_yb: colour, as opponent channel means (mean R - mean G, and
        (mean R + mean G) / 2 - mean B), in grey levels; 0 for a grey image.
    """

    brightness: float
    contrast: float
    sharpness: float
    clipped_share: float
    width: int
    height: int
    chroma_rg: float = 0.0
    chroma_yb: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        # dataclasses.asdict deep-copies each value: 16.6 us per item against 1.6 for eight numbers
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(InputStats))


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(
        f"expected a uint8 BGR (H, W, 3) or grey (H, W) image, got shape {image.shape}"
    )


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: the usual focus measure (float32 is exact enough, and 3x faster
    than float64)."""
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F))
    return float(std[0, 0]) ** 2


def compute_stats(image: np.ndarray) -> InputStats:
    if image.dtype != np.uint8 or image.size == 0:
        raise ValueError(
            f"expected a non-empty uint8 image, got dtype {image.dtype} shape {image.shape}"
        )
    gray = to_gray(image)
    mean, std = cv2.meanStdDev(gray)
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    clipped = float(hist[: CLIP_LOW + 1].sum() + hist[CLIP_HIGH:].sum()) / gray.size
    b, g, r = (cv2.mean(image)[:3]) if image.ndim == 3 else (0.0, 0.0, 0.0)
    return InputStats(
        brightness=float(mean[0, 0]),
        contrast=float(std[0, 0]),
        sharpness=sharpness(gray),
        clipped_share=clipped,
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        chroma_rg=float(r - g),
        chroma_yb=float((r + g) / 2.0 - b),
    )
