"""The image store's PNG writer (station/frames/png.py): what it writes, two independent readers
(OpenCV's libpng and Qt's image reader) decode to the very pixels given, for every layout a
camera or a crop hands it; the same pixels give the same bytes; files no larger than OpenCV's
own at the settings the store used before."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from station.errors import ImageStoreError
from station.frames.png import SIGNATURE, encode_png
from station.frames.store import encode_image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
LAYOUTS = {
    "bgr": BGR,
    "bgra": RNG.integers(0, 256, (21, 34, 4), dtype=np.uint8),
    "grey": RNG.integers(0, 256, (19, 23), dtype=np.uint8),
    "grey, one channel": RNG.integers(0, 256, (19, 23, 1), dtype=np.uint8),
    "a crop (a strided view)": BGR[5:30, 7:40],
    "every other column": BGR[:, ::2],
    "one pixel": BGR[:1, :1],
    "one row": BGR[:1],
    "one column": BGR[:, :1],
    "flat grey with full-range steps": np.tile(
        np.array([0, 255, 1, 254], np.uint8), (8, 4)
    ),  # the "up" filter's differences wrap around 256
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_opencv_decodes_exactly_the_pixels_written(name: str) -> None:
    image = LAYOUTS[name]
    data = encode_png(image)
    assert data.startswith(SIGNATURE)
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    expected = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    assert back is not None and back.dtype == np.uint8
    assert back.shape == expected.shape
    assert np.array_equal(back, expected)


@pytest.mark.parametrize("name", ["bgr", "bgra", "grey", "a crop (a strided view)"])
def test_qt_decodes_exactly_the_pixels_written(name: str) -> None:
    from PySide6.QtGui import QImage

    image = LAYOUTS[name]
    q = QImage.fromData(encode_png(image), "PNG")
    assert not q.isNull()
    h, w = image.shape[:2]
    assert (q.width(), q.height()) == (w, h)
    # Qt holds pixels as 0xAARRGGBB; compare them with the image's, channel by channel.
    argb = q.convertToFormat(QImage.Format.Format_ARGB32)
    got = np.array(
        [[argb.pixel(x, y) for x in range(w)] for y in range(h)], dtype=np.uint64
    ).astype(np.uint32)
    red, green, blue = (got >> 16) & 255, (got >> 8) & 255, got & 255
    if image.ndim == 2:
        for plane in (red, green, blue):
            assert np.array_equal(plane, image)
    else:
        assert np.array_equal(blue, image[..., 0])
        assert np.array_equal(green, image[..., 1])
        assert np.array_equal(red, image[..., 2])
        if image.shape[2] == 4:
            assert np.array_equal((got >> 24) & 255, image[..., 3])


def test_the_same_pixels_give_the_same_bytes_whatever_their_memory_layout() -> None:
    crop = BGR[5:30, 7:40]
    assert encode_png(crop) == encode_png(np.ascontiguousarray(crop))
    assert encode_png(crop) == encode_png(crop.copy(order="F"))
    assert encode_png(crop) != encode_png(255 - crop)


def test_a_line_still_is_no_larger_than_opencvs_own_png() -> None:
    from station.synth.config import SynthConfig
    from station.synth.render import render_item

    config = SynthConfig(seed=3, width=320, height=180, realtime=False, defect_rate=0.5)
    for index in range(3):
        still = render_item(config, index).image
        ours = encode_image(still)
        ok, theirs = cv2.imencode(
            ".png",
            still,
            [
                cv2.IMWRITE_PNG_COMPRESSION,
                1,
                cv2.IMWRITE_PNG_STRATEGY,
                cv2.IMWRITE_PNG_STRATEGY_RLE,
                cv2.IMWRITE_PNG_FILTER,
                cv2.IMWRITE_PNG_FILTER_UP,
            ],
        )
        assert ok
        assert len(ours) <= 1.02 * len(theirs), (len(ours), len(theirs))
        assert len(ours) < 0.7 * still.nbytes  # it does compress


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
    ],
    ids=["float", "two channels", "empty", "four dimensions"],
)
def test_images_it_cannot_write_are_refused_with_what_was_expected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected a non-empty uint8 image"):
        encode_png(bad)
    with pytest.raises(ImageStoreError, match="expected a non-empty uint8 image"):
        encode_image(bad)
