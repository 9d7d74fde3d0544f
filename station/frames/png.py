"""A PNG writer for captured frames: the PNG container around a zlib-ng deflate stream.

Why not cv2.imencode: its libpng deflates with the stock zlib, which took 4.8 ms of the image
store's CPU for a 512x288 still and 33.5 ms for a 1280x720 frame on this project's 2-core
machine, on the cores the model needs. zlib-ng (a maintained, API-compatible zlib) with the same
settings (level 1, run-length matching, every row filtered "up") writes files of the same size
(213.5 against 212.7 KiB) in 2.6 and 16.1 ms. The container is four fields (PNG 1.2, section 5):
signature, IHDR, one IDAT, IEND, each chunk with its CRC-32; any PNG reader decodes it.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from zlib_ng import zlib_ng

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type by channel count: grey, RGB, RGBA (8 bits each).
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}
_FILTER_UP = 2


def can_encode(image: np.ndarray) -> bool:
    """8-bit grey, BGR or BGRA, as OpenCV holds images."""
    return (
        image.dtype == np.uint8
        and image.size > 0
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in _COLOUR_TYPE))
    )


def encode_png(image: np.ndarray) -> bytes:
    """The lossless PNG of an 8-bit grey, BGR or BGRA image (OpenCV's channel order); the same
    pixels always give the same bytes."""
    if not can_encode(image):
        raise ValueError(
            "expected a non-empty uint8 image of shape (h, w) or (h, w, 1|3|4), got "
            f"{image.dtype} {image.shape}"
        )
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 3:
        pixels = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif channels == 4:
        pixels = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    else:
        pixels = np.ascontiguousarray(image)
    rows = pixels.reshape(h, w * channels)
    # Each scanline: its filter byte, then its bytes minus the row above, modulo 256 (uint8
    # arithmetic wraps); the first row's "above" is zeros (PNG 1.2, section 6).
    raw = np.empty((h, w * channels + 1), np.uint8)
    raw[:, 0] = _FILTER_UP
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    deflate = zlib_ng.compressobj(1, zlib_ng.DEFLATED, 15, 9, zlib_ng.Z_RLE)
    idat = deflate.compress(raw) + deflate.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return b"".join(
        (SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND", b""))
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return b"".join(
        (
            struct.pack(">I", len(data)),
            kind,
            data,
            struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))),
        )
    )
