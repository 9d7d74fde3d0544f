"""The item view's scaling: a thin scratch stays as visible as Qt's own smooth scaling kept it."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from station.ui.images import fitted_size, picture, scale_to


def pixels(image: QImage) -> np.ndarray:
    """(h, w, 3) BGR copy of an RGB32 or BGR888 QImage."""
    h, w = image.height(), image.width()
    depth = image.depth() // 8
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    return np.array(rows[:, : w * depth].reshape(h, w, depth)[:, :, :3])


def qt_smooth(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = bgr.shape[:2]
    full = QImage(bgr.data, w, h, 3 * w, QImage.Format.Format_BGR888).copy()
    return pixels(
        full.scaled(
            size[0],
            size[1],
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    )


def line_contrast(scaled: np.ndarray, background: int = 200) -> float:
    """How dark the darkest column is, as a share of the line's own depth (0: gone, 1: kept)."""
    middle = scaled[scaled.shape[0] // 2, :, 1].astype(float)
    return (background - middle.min()) / background


@pytest.mark.parametrize("width", [1200, 1100, 960, 800, 700, 641, 400, 300])
def test_a_one_pixel_scratch_keeps_the_contrast_qt_smooth_scaling_kept(qapp, width):
    size = fitted_size(1280, 720, width, 2000)
    for x in range(600, 616):  # every phase of the line against the output grid
        bgr = np.full((720, 1280, 3), 200, np.uint8)
        bgr[:, x] = 0
        ours = line_contrast(pixels(scale_to(bgr, size)))
        qts = line_contrast(qt_smooth(bgr, size))
        assert ours >= qts - 0.03, (width, x, ours, qts)


def test_the_fitted_copy_has_the_views_shape_and_the_images_colours(qapp):
    rng = np.random.default_rng(0)
    bgr = np.zeros((720, 1280, 3), np.uint8)
    bgr[:, :640] = (30, 90, 220)  # a red left half, a random right half
    bgr[:, 640:] = rng.integers(0, 256, (720, 640, 3), np.uint8)
    ready = picture(bgr, (1000, 700))
    assert ready.fitted is not None
    assert (
        (ready.fitted.width(), ready.fitted.height())
        == (1000, 562)
        == fitted_size(1280, 720, 1000, 700)
    )
    assert (pixels(ready.full) == bgr).all()
    left = pixels(ready.fitted)[:, :480]
    assert (np.abs(left.astype(int) - (30, 90, 220)) <= 1).all()
    assert picture(bgr, None).fitted is None
    gray = picture(bgr[:, :, 0], (640, 360))
    assert gray.fitted is not None and gray.fitted.width() == 640


def test_a_long_thin_image_is_fitted_at_least_a_pixel_high(qapp):
    """A line-scan strip in a wide view: rounding must not leave it no height at all (OpenCV
    refuses a zero size, and the pipeline's thread would stop)."""
    assert fitted_size(4000, 2, 700, 420) == (700, 1)
    ready = picture(np.zeros((2, 4000, 3), np.uint8), (700, 420))
    assert ready.fitted is not None
    assert (ready.fitted.width(), ready.fitted.height()) == (700, 1)
