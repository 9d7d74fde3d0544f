"""The one preprocessing path shared by training and serving.

`prepare` turns any supported image into a uint8 RGB array at the model's input size;
`to_tensor` normalises it. Training inserts augmentation between the two; serving does not.
`preprocess` is the two together, which is what the predictor runs.

Two ways to reach the input size (`InputSpec.fit`):
* "stretch" (default): resize to width x height. Right for a camera whose frames all have one
  shape, as on a station line.
* "letterbox": scale to fit inside width x height keeping the aspect ratio, centre, and pad with
  the normalisation mean (a zero after normalising). For sets of mixed shapes: stretched to one
  aspect, a narrow picture is widened more than a wide one. (On the magnetic tiles, aspect 0.36
  to 2.7, it measured no better than stretching: AUROC 0.890 vs 0.904 on one split.)
  Training augments the padded input as a whole (lighting gain and bias, noise, flips, a small
  shift), so the padding seen in training varies around the mean; served, it is the mean.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from model.errors import BadImage

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIDE = 8
FITS = ("stretch", "letterbox")


@dataclass(frozen=True)
class InputSpec:
    """What the network sees: width x height (pixels, RGB), how an image is fitted to that size
    ("stretch" or "letterbox", see the module docstring) and per-channel normalisation."""

    width: int
    height: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    fit: str = "stretch"

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"expected fit to be one of {', '.join(FITS)}, got {self.fit!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "width": self.width,
            "height": self.height,
            "mean": list(self.mean),
            "std": list(self.std),
            "color": "RGB",
        }
        if self.fit != "stretch":  # older readers and artifacts know only stretch
            d["fit"] = self.fit
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        mean = tuple(float(x) for x in d["mean"])
        std = tuple(float(x) for x in d["std"])
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"expected 3 means and 3 positive stds, got {mean} and {std}")
        fit = d.get("fit", "stretch")
        return cls(int(d["width"]), int(d["height"]), mean, std, fit)  # type: ignore[arg-type]


def as_bgr_uint8(image: object) -> np.ndarray:
    """Any supported image -> HxWx3 uint8 BGR.

    Accepts grayscale (HxW or HxWx1), BGR, BGRA, uint8 / uint16 / float in [0, 1];
    anything else raises BadImage saying what was expected.
    """
    if not isinstance(image, np.ndarray):
        raise BadImage(f"expected a numpy image array, got {type(image).__name__}")
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise BadImage(
            f"expected an HxW grayscale or HxWx3/4 colour image, got an array of shape {img.shape}"
        )
    if img.shape[0] < MIN_SIDE or img.shape[1] < MIN_SIDE:
        raise BadImage(
            f"expected an image at least {MIN_SIDE}x{MIN_SIDE} pixels, got {img.shape[1]}x"
            f"{img.shape[0]}"
        )
    if img.dtype == np.uint8:
        pass
    elif img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        if not np.isfinite(img).all():
            raise BadImage("expected finite pixel values, found NaN or infinity")
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise BadImage(f"expected uint8, uint16 or float pixels, got dtype {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def content_box(width: int, height: int, spec: InputSpec) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): where an image of width x height lands in spec's input."""
    if spec.fit == "stretch":
        return 0, 0, spec.width, spec.height
    scale = min(spec.width / width, spec.height / height)
    w = min(spec.width, max(1, round(width * scale)))
    h = min(spec.height, max(1, round(height * scale)))
    return (spec.width - w) // 2, (spec.height - h) // 2, w, h


def _fit(
    img: np.ndarray, spec: InputSpec, interp: int | None, pad: float | tuple[float, ...]
) -> np.ndarray:
    h, w = img.shape[:2]
    x0, y0, cw, ch = content_box(w, h, spec)
    if (w, h) != (cw, ch):
        if interp is None:  # area resampling when shrinking keeps thin lines; linear when growing
            interp = cv2.INTER_AREA if cw <= w and ch <= h else cv2.INTER_LINEAR
        img = cv2.resize(img, (cw, ch), interpolation=interp)
    if (cw, ch) == (spec.width, spec.height):
        return img
    return cv2.copyMakeBorder(
        img, y0, spec.height - ch - y0, x0, spec.width - cw - x0, cv2.BORDER_CONSTANT, value=pad
    )


def prepare(image: object, spec: InputSpec) -> np.ndarray:
    """Any supported image -> HxWx3 uint8 RGB at spec's size (area resampling keeps thin lines)."""
    rgb = cv2.cvtColor(as_bgr_uint8(image), cv2.COLOR_BGR2RGB)
    mean = tuple(round(255 * m) for m in spec.mean)
    return _fit(rgb, spec, None, mean)


def to_tensor(rgb: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32, normalised with spec's mean and std."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(3, 1, 1)
    return t.sub_(mean).div_(std)


@functools.lru_cache(maxsize=8)
def _lookup(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: every uint8 value of each RGB channel through `to_tensor`'s own
    operations (the same float32 steps in the same order, so the same bits)."""
    v = torch.arange(256, dtype=torch.uint8).float().div_(255.0).repeat(3, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1)
    table = v.sub_(m).div_(s).numpy()
    table.flags.writeable = False
    return table


def preprocess(image: object, spec: InputSpec) -> torch.Tensor:
    """The serving path: any supported image -> 3xHxW normalised float32 tensor.

    Bit for bit `to_tensor(prepare(image, spec), spec)` (tested) in about half the time, which
    is a third of a served prediction: the frame is resized while still BGR (resizing treats
    channels alike, so the channel swap commutes with it) and normalised by a 256-entry table per
    channel, written straight into a contiguous (3, H, W) array the engine reads as is, instead
    of three passes over floats and a copy (bench/model_latency.py). The table is applied by
    OpenCV's LUT to each contiguous channel plane: a whole preprocess of a 640x360 frame for a
    640x368 input took 1.2-1.5 ms with numpy's `take` over the strided channel views, and takes
    0.6 this way (the same bits, tested)."""
    bgr = as_bgr_uint8(image)
    pad = tuple(round(255 * m) for m in reversed(spec.mean))
    bgr = _fit(bgr, spec, None, pad)
    table = _lookup(spec.mean, spec.std)
    out = np.empty((3, spec.height, spec.width), np.float32)
    planes = cv2.split(bgr)
    for c in range(3):  # RGB channel c is BGR channel 2 - c
        cv2.LUT(planes[2 - c], table[c], dst=out[c])
    return torch.from_numpy(out)


def prepare_mask(
    mask: np.ndarray, spec: InputSpec, image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """A defect mask (white = defect) -> HxW float32 in [0, 1] at spec's size.

    Letterboxed, the mask must land where its image does: a mask of another size than its image
    (`image_size`, width x height) is first brought to the image's size.
    """
    m = mask
    if m.ndim == 3:
        m = m.max(axis=2)
    m = (m > (m.max() / 2 if m.dtype != np.uint8 else 127)).astype(np.float32)
    if spec.fit == "letterbox" and image_size is not None and m.shape[::-1] != tuple(image_size):
        m = cv2.resize(m, tuple(image_size), interpolation=cv2.INTER_NEAREST)
    return _fit(m, spec, cv2.INTER_AREA, 0.0)


def uncrop_map(heat: np.ndarray, width: int, height: int, spec: InputSpec) -> np.ndarray:
    """A map over spec's input (any resolution) -> the same map over the image's own pixels,
    the letterbox's padding cut away."""
    if spec.fit == "stretch":
        return cv2.resize(heat.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    full = cv2.resize(
        heat.astype(np.float32), (spec.width, spec.height), interpolation=cv2.INTER_LINEAR
    )
    x0, y0, cw, ch = content_box(width, height, spec)
    inside = full[y0 : y0 + ch, x0 : x0 + cw]
    return cv2.resize(inside, (width, height), interpolation=cv2.INTER_LINEAR)


def choose_input_size(sizes: list[tuple[int, int]], long_side: int, multiple: int = 32) -> tuple:
    """Input (width, height) for images of these (w, h): their median aspect, long side given."""
    if not sizes:
        return (long_side, long_side)
    aspects = sorted(w / h for w, h in sizes)
    a = aspects[len(aspects) // 2]

    def snap(x: float) -> int:
        return max(multiple, int(round(x / multiple)) * multiple)

    if a >= 1:
        return (snap(long_side), snap(long_side / a))
    return (snap(long_side * a), snap(long_side))
