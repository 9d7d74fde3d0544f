"""Top-down photos of phones on a grey table, as an industrial camera above a line sees them.

Cost is paid once per item: `build_phone` draws the phone (body, screen, camera, earpiece, home
button, defects) into a *sprite*: premultiplied colour plus a per-pixel background factor that
holds both the phone's coverage and its soft shadow, in three versions (sharp, settling, moving).
A frame is then the cached table plus one multiply-add of the sprite at its position, plus
precomputed sensor noise and a light-gain lookup table: a few milliseconds at 1280x720.

`render_item(config, index)` gives the still the trigger would capture of item `index` (phone at its
dwell position), with its label and mask: the same pixels the line shows while that phone dwells,
up to sensor noise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from station.synth import draw
from station.synth.config import DEFECT_CLASSES, NEW_COLOURS, OK, SynthConfig
from station.synth.defects import DefectContext, draw_defect

DESIGN_W, DESIGN_H = 1280, 720
#: A defect's drawing that changes a pixel by more than this (grey levels) puts it in the mask.
MASK_CHANGE_LEVEL = 12.0
NOISE_BANKS = 4


@dataclass
class SyntheticItem:
    """One phone as a still. image: uint8 BGR (H, W, 3); mask: uint8 (H, W), 255 = defect."""

    image: np.ndarray
    label: str
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhoneSprite:
    """A pre-rendered phone. For each version: `premult` (h, w, 3) uint8 colour*coverage and
    `keep` (h, w, 3) uint8 = 255 * share of the table that shows through (coverage and shadow).
    `dwell_xy`: top-left corner of the sprite, in frame pixels, while the phone dwells."""

    index: int
    label: str
    premult: dict[str, np.ndarray]
    keep: dict[str, np.ndarray]
    mask: np.ndarray  # (h, w) uint8, sprite coordinates
    dwell_xy: tuple[int, int]
    light: float
    meta: dict[str, Any]

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.mask.shape
        return w, h


# ====================================================================== randomness


def item_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Each item has its own generator, so item 50 is the same whether or not 0..49 were drawn."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), int(stream), 0x5EED])


def item_label(config: SynthConfig, index: int) -> str:
    rng = item_rng(config.seed, index, 1)
    if rng.random() >= config.defect_rate:
        return OK
    weights = np.array([config.class_weights[c] for c in DEFECT_CLASSES], dtype=float)
    return str(DEFECT_CLASSES[int(rng.choice(len(weights), p=weights / weights.sum()))])


def drift_progress(config: SynthConfig, index: float) -> float:
    """0 before item `drift_after`; from it on, ramping up to 1 over `drift_ramp_items` items."""
    if index < config.drift_after:
        return 0.0
    if config.drift_ramp_items <= 0:
        return 1.0
    return float(min(1.0, (index - config.drift_after + 1) / config.drift_ramp_items))


def drifted(config: SynthConfig, index: int) -> bool:
    return index >= config.drift_after and config.drift_after >= 0 and _has_drift(config)


def _has_drift(config: SynthConfig) -> bool:
    return (
        config.light != 1.0
        or config.defocus > 0
        or bool(config.phone_color)
        or config.defect_style != "v1"
    )


def light_gain(config: SynthConfig, index: float) -> float:
    return 1.0 + (config.light - 1.0) * drift_progress(config, index)


# ====================================================================== table


def scale_of(config: SynthConfig) -> float:
    return min(config.width / DESIGN_W, config.height / DESIGN_H)


@functools.lru_cache(maxsize=4)
def _background_cached(seed: int, width: int, height: int, defocus: float) -> np.ndarray:
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0xBAC6])
    s = min(width / DESIGN_W, height / DESIGN_H)
    base = 78.0 + rng.uniform(-6, 8)
    tint = np.array([rng.uniform(1, 5), rng.uniform(-1, 2), rng.uniform(-4, 0)], np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.3, 0.6)
    r2 = ((xx - cx) / width) ** 2 + ((yy - cy) / height) ** 2
    illum = 1.0 + 0.10 - 0.35 * r2 + 0.04 * (xx / width - 0.5) * rng.uniform(-1, 1)
    grain = rng.normal(0, 1.0, (height, width)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), max(0.6, 1.6 * s)) * 3.0
    blotch = cv2.resize(
        rng.normal(0, 1.0, (9, 16)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    gray = base * illum + grain + blotch * 1.5
    img = gray[..., None] + tint[None, None, :]
    # A little dust on the table.
    for _ in range(int(rng.integers(10, 30))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.circle(
            img,
            (x, y),
            max(1, round(rng.uniform(0.5, 1.5) * s)),
            float(base + rng.uniform(8, 25)),
            -1,
            cv2.LINE_AA,
        )
    out = np.clip(img, 0, 255).astype(np.uint8)
    if defocus > 0:
        out = cv2.GaussianBlur(out, (0, 0), defocus * s)
    out.setflags(write=False)
    return out


def background(config: SynthConfig, index: int | None = None) -> np.ndarray:
    """The empty table (read-only; copy before drawing on it)."""
    defocus = config.defocus if index is not None and drift_progress(config, index) > 0 else 0.0
    return _background_cached(config.seed, config.width, config.height, float(defocus))


@functools.lru_cache(maxsize=4)
def noise_banks(
    seed: int, width: int, height: int, sigma: float
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Precomputed sensor noise as (positive part, negative part) uint8 pairs."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x401E])
    banks = []
    for _ in range(NOISE_BANKS):
        n = rng.standard_normal((height, width, 3), dtype=np.float32) * sigma
        pos = np.clip(n, 0, 255).astype(np.uint8)
        neg = np.clip(-n, 0, 255).astype(np.uint8)
        pos.setflags(write=False)
        neg.setflags(write=False)
        banks.append((pos, neg))
    return tuple(banks)


def add_noise(image: np.ndarray, config: SynthConfig, bank: int) -> np.ndarray:
    if config.noise <= 0:
        return image
    pos, neg = noise_banks(config.seed, config.width, config.height, float(config.noise))[
        bank % NOISE_BANKS
    ]
    cv2.add(image, pos, dst=image)
    cv2.subtract(image, neg, dst=image)
    return image


@functools.lru_cache(maxsize=64)
def _gain_lut(gain_milli: int) -> np.ndarray:
    g = gain_milli / 1000.0
    return np.clip(np.arange(256, dtype=np.float32) * g, 0, 255).astype(np.uint8)


def apply_gain(image: np.ndarray, gain: float) -> np.ndarray:
    gm = round(gain * 1000)
    if gm == 1000:
        return image
    return cv2.LUT(image, _gain_lut(gm), dst=image)


# ====================================================================== phone


def phone_params(config: SynthConfig, index: int) -> dict[str, Any]:
    """The look of item `index`: model, colour, size, pose, lighting."""
    rng = item_rng(config.seed, index, 2)
    s = scale_of(config)
    prog = drift_progress(config, index)
    colour_rng = item_rng(config.seed, index, 3)
    new_colour = bool(config.phone_color) and prog > 0 and colour_rng.random() < config.color_share
    white = rng.random() < 0.4
    body: tuple[float, ...]
    if new_colour:
        colour = config.phone_color
        body = tuple(float(c) for c in NEW_COLOURS[config.phone_color])
    else:
        colour = "white" if white else "black"
        v = rng.uniform(226, 242) if white else rng.uniform(15, 24)
        tint = rng.uniform(-1.5, 1.5)  # a hint of warm or cool, as real plastics and paints have
        body = (v + tint, v, v - tint)
    dark = colour == "black"
    length = rng.uniform(1060, 1150) * s
    height = length * rng.uniform(0.475, 0.52)
    return {
        "colour": colour,
        "dark": dark,
        "body_bgr": tuple(float(c) for c in body),
        "length": float(length),
        "height": float(height),
        "corner": float(rng.uniform(0.07, 0.11) * height),
        "angle": float(rng.uniform(-1.2, 1.2)),
        "flip": bool(rng.random() < 0.5),  # camera on the right instead of the left
        "home_button": bool(not dark and rng.random() < 0.75),
        "bezel_long": float((rng.uniform(8, 14) if dark else rng.uniform(16, 26)) * s),
        "bezel_short": float((rng.uniform(45, 70) if dark else rng.uniform(95, 115)) * s),
        "screen_level": float(rng.uniform(12, 22)),
        "jitter": (float(rng.uniform(-18, 18) * s), float(rng.uniform(-10, 10) * s)),
        "light": float(rng.uniform(0.94, 1.06)),
        "shadow": float(rng.uniform(0.35, 0.5)),
        "sheen": (
            float(rng.uniform(0.3, 1.2)),
            float(rng.uniform(0.3, 0.7)),
            float(rng.uniform(0.08, 0.2)),
            float(rng.uniform(3, 8)),
        ),
        "rig": float(rng.uniform(4, 10)),
        "cam_r": float(rng.uniform(6.5, 9) * s),
        "side_button": float(rng.uniform(0.25, 0.4)),
    }


#: The versions of a sprite, each with its blur kernel at scale s: sharp (dwelling), settling
#: (a vertical shake) and moving (motion blur along the belt).
VERSIONS: dict[str, Callable[[float], tuple[int, int]] | None] = {
    "sharp": None,
    "settle": lambda s: (1, max(3, round(5 * s))),
    "moving": lambda s: (max(5, round(24 * s)), 1),
}


def build_phone(
    config: SynthConfig, index: int, versions: tuple[str, ...] = tuple(VERSIONS)
) -> PhoneSprite:
    """Draw item `index` once: phone, defect, mask, shadow; the `versions` asked for (a still
    needs only the sharp one: the blurred ones took ~1 ms of its ~10)."""
    s = scale_of(config)
    p = phone_params(config, index)
    label = item_label(config, index)
    rng = item_rng(config.seed, index, 4)
    margin = round(40 * s) + 4
    L, H = p["length"], p["height"]
    sw, sh = math.ceil(L + 2 * margin), math.ceil(H + 2 * margin)
    shape = (sh, sw)
    x0, y0 = float(margin), float(margin)
    dark = p["dark"]
    body_bgr = np.array(p["body_bgr"], np.float32)

    # --- body coverage and colour
    body_poly = draw.rounded_rect(L, H, p["corner"], x0, y0)
    cover = draw.poly(draw.layer(shape), body_poly)
    if dark:
        # Physical side buttons peek out of the long edge.
        bx = x0 + L * p["side_button"]
        draw.poly(cover, draw.rounded_rect(120 * s, 5 * s, 2 * s, bx, y0 - 3.5 * s, n=3))
    alpha = cover.astype(np.float32) * (1.0 / 255.0)
    # Rounded sides fall off in brightness near the outline; a thin metal rim catches the light.
    dist = cv2.distanceTransform((cover > 127).astype(np.uint8), cv2.DIST_L2, 3)
    shade = np.minimum(dist * (0.28 / (7.0 * s + 1)), 0.28) + 0.72
    rim = np.maximum(1.0 - np.abs(dist - (1.2 * s + 0.8)) * (1.0 / (1.3 * s + 0.5)), 0.0)
    # Light from above: the upper edge glints, the lower one barely.
    top_lit = np.linspace(1.0, 0.3, sh, dtype=np.float32)[:, None]
    rim *= (dist > 0).astype(np.float32) * top_lit * (110.0 if dark else 40.0)
    colour = cv2.merge([shade * float(c) + rim for c in body_bgr])

    # --- screen
    bl, bs = p["bezel_long"], p["bezel_short"]
    bs_cam, bs_other = bs, (bs * 0.85 if dark else bs)
    left = bs_other if p["flip"] else bs_cam
    scr_x0, scr_w = x0 + left, L - bs_cam - bs_other
    scr_y0, scr_h = y0 + bl, H - 2 * bl
    screen_poly = draw.rounded_rect(
        scr_w, scr_h, p["corner"] * 0.55 if dark else 4 * s, scr_x0, scr_y0, n=6
    )
    screen_l = draw.poly(draw.layer(shape), screen_poly)
    sx, sy, sww, shh = draw.bbox(screen_l)
    lvl = p["screen_level"]
    # Smooth light fields are computed on a coarse grid and scaled up.
    q = 8
    gh, gw = max(2, shh // q), max(2, sww // q)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    yy = sy + (yy + 0.5) * (shh / gh)
    xx = sx + (xx + 0.5) * (sww / gw)
    ang, pos, width, amp = p["sheen"]
    band = np.cos(ang) * (xx - sw * pos) + np.sin(ang) * (yy - sh / 2)
    sheen = np.exp(-((band / (sw * width)) ** 2)) * amp
    # The camera rig above the line, mirrored in the glass: a soft grey square at the frame centre.
    jx, jy = p["jitter"]
    rx, ry = xx - (sw / 2 - jx), yy - (sh / 2 - jy)
    rig = 1.0 / (1.0 + ((np.maximum(np.abs(rx), np.abs(ry)) / (95 * s)) ** 6))
    field_ = cv2.resize(
        (sheen + rig * p["rig"]).astype(np.float32), (sww, shh), interpolation=cv2.INTER_LINEAR
    )
    scr = cv2.merge([field_ + (lvl + 1.5), field_ + (lvl + 0.5), field_ + lvl])
    c = cv2.cvtColor(screen_l[sy : sy + shh, sx : sx + sww], cv2.COLOR_GRAY2BGR).astype(
        np.float32
    ) * (1.0 / 255.0)
    roi = colour[sy : sy + shh, sx : sx + sww]
    roi += cv2.multiply(scr - roi, c)
    if not dark:
        # The glass edge shows as a faint line on light phones.
        edge = cv2.morphologyEx(screen_l, cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8))
        draw.paint(colour, edge, 0.8, mode="mul")

    # --- features on one short bezel: front camera, earpiece, sensor; home button opposite
    feats: dict[str, Any] = {}
    if p["flip"]:
        cam_x, home_x = x0 + L - bs_cam * 0.47, x0 + bs_other * 0.5
    else:
        cam_x, home_x = x0 + bs_cam * 0.47, x0 + L - bs_other * 0.5
    cy = y0 + H / 2
    sign = -1 if p["flip"] else 1
    ear_len, ear_w = 70 * s, 5.5 * s
    cam = (cam_x, cy - sign * (ear_len / 2 + 26 * s))
    sensor = (cam_x, cy + sign * (ear_len / 2 + 20 * s))
    cam_r = p["cam_r"]
    hole = 10.0 if not dark else 6.0
    ear_poly = draw.rounded_rect(
        ear_w, ear_len, ear_w / 2, cam_x - ear_w / 2, cy - ear_len / 2, n=4
    )
    draw.paint(
        colour,
        draw.poly(draw.layer(shape), ear_poly),
        (42.0, 42.0, 45.0) if not dark else (48.0, 48.0, 52.0),
    )
    feats["earpiece"] = ((cam_x, cy), (ear_w, ear_len))
    draw.paint(colour, draw.circle(draw.layer(shape), cam, cam_r + 2.2 * s), hole + 28)
    draw.paint(colour, draw.circle(draw.layer(shape), cam, cam_r), hole)
    draw.paint(
        colour,
        draw.circle(draw.layer(shape), (cam[0] - cam_r * 0.3, cam[1] - cam_r * 0.3), cam_r * 0.28),
        (95.0, 85.0, 75.0),
    )
    draw.paint(
        colour,
        draw.circle(draw.layer(shape), (cam[0] + cam_r * 0.2, cam[1] + cam_r * 0.2), cam_r * 0.16),
        (120.0, 60.0, 95.0),
    )
    feats["camera"] = (cam, cam_r)
    draw.paint(colour, draw.circle(draw.layer(shape), sensor, 3 * s), hole + 12)
    if p["home_button"]:
        hb_w, hb_h = 50 * s, 110 * s
        hb = draw.poly(
            draw.layer(shape),
            draw.rounded_rect(hb_w, hb_h, hb_w * 0.45, home_x - hb_w / 2, cy - hb_h / 2, n=8),
        )
        inner = cv2.erode(hb, np.ones((max(3, round(4 * s)),) * 2, np.uint8))
        draw.paint(colour, hb, body_bgr * 0.55)
        draw.paint(colour, inner, body_bgr * 0.94)
        feats["home_button"] = ((home_x, cy), (hb_w, hb_h))

    # --- defect
    mask = np.zeros(shape, np.uint8)
    defects: list[dict[str, Any]] = []
    severity = 0.0
    style = "v1"
    if label != OK:
        severity = float(np.clip(rng.normal(config.severity, 0.15), 0.1, 1.0))
        style = config.defect_style if drift_progress(config, index) > 0 else "v1"
        ctx = DefectContext(
            s=s,
            shape=shape,
            body_box=(x0, y0, L, H),
            screen_box=(scr_x0, scr_y0, scr_w, scr_h),
            corner=p["corner"],
            features=feats,
            dark=dark,
            body_bgr=tuple(p["body_bgr"]),
            screen_level=lvl,
        )
        before, alpha_before = colour.copy(), alpha.copy()
        defects = draw_defect(label, colour, alpha, mask, rng, severity, style, ctx)
        # The mask also takes every pixel the drawing visibly changed (glows, shading), so
        # "white = defect" holds for what a viewer (or a model) can see.
        # (the channels' maximum through OpenCV: numpy's max over a 3-wide last axis took 5 ms)
        b, g, r = cv2.split(cv2.absdiff(colour, before))
        change = cv2.max(cv2.max(b, g), r) * alpha_before
        change = np.maximum(change, cv2.absdiff(alpha, alpha_before) * 255.0)
        mask |= np.where(change > MASK_CHANGE_LEVEL, 255, 0).astype(np.uint8)
        defects[0]["bbox_sprite"] = list(draw.bbox(mask))

    # --- pose, light, focus (8-bit from here on: cheaper, and the end result is 8-bit anyway)
    colour_u8 = cv2.convertScaleAbs(np.maximum(colour, 0.0), alpha=p["light"])
    alpha_u8 = cv2.convertScaleAbs(alpha, alpha=255.0)
    if abs(p["angle"]) > 1e-3:
        rot = cv2.getRotationMatrix2D((sw / 2, sh / 2), p["angle"], 1.0)
        colour_u8 = cv2.warpAffine(
            colour_u8, rot, (sw, sh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        alpha_u8 = cv2.warpAffine(alpha_u8, rot, (sw, sh), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(mask, rot, (sw, sh), flags=cv2.INTER_LINEAR)
        mask = cv2.threshold(mask, 63, 255, cv2.THRESH_BINARY)[1]
    prog = drift_progress(config, index)
    if config.defocus > 0 and prog > 0:
        sigma = config.defocus * s * prog
        colour_u8 = cv2.GaussianBlur(colour_u8, (0, 0), sigma)
        alpha_u8 = cv2.GaussianBlur(alpha_u8, (0, 0), sigma)

    # --- soft shadow (light from above-left), folded into the table factor; blurred at 1/4 size
    small = cv2.resize(alpha_u8, (max(2, sw // 4), max(2, sh // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), (9 * s + 1) / 4)
    shadow = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_LINEAR)
    shadow = cv2.warpAffine(shadow, np.array([[1, 0, 5 * s], [0, 1, 8 * s]], np.float32), (sw, sh))
    # keep = (1 - a) * (1 - k * shadow), in 8-bit
    keep = cv2.multiply(
        255 - alpha_u8, 255 - cv2.convertScaleAbs(shadow, alpha=p["shadow"]), scale=1.0 / 255.0
    )
    premult = cv2.multiply(colour_u8, cv2.cvtColor(alpha_u8, cv2.COLOR_GRAY2BGR), scale=1.0 / 255.0)

    versions_p: dict[str, np.ndarray] = {}
    versions_k: dict[str, np.ndarray] = {}
    for name in versions:
        kernel = VERSIONS[name]
        pm, kp = premult, keep
        if kernel is not None:
            ksize = kernel(s)
            pm = cv2.blur(premult, ksize, borderType=cv2.BORDER_CONSTANT)
            kp = cv2.blur(keep, ksize, borderType=cv2.BORDER_REPLICATE)
        versions_p[name] = pm
        versions_k[name] = cv2.cvtColor(kp, cv2.COLOR_GRAY2BGR)

    dwell_x = round((config.width - sw) / 2 + jx)
    dwell_y = round((config.height - sh) / 2 + jy)
    meta = {
        "index": index,
        "seed": config.seed,
        "label": label,
        "phone": {
            "colour": p["colour"],
            "length_px": round(L, 1),
            "height_px": round(H, 1),
            "angle_deg": round(p["angle"], 2),
            "home_button": p["home_button"],
            "camera_right": p["flip"],
        },
        "severity": round(severity, 3),
        "defect_style": style,
        "defects": defects,
        "drift": {
            "progress": round(prog, 3),
            "light": round(light_gain(config, index), 3),
            "defocus": round(config.defocus * prog, 3),
            "new_colour": p["colour"] if p["colour"] in NEW_COLOURS else None,
        },
    }
    if label != OK and not mask.any():  # every defect draws into the mask; guard the invariant
        raise AssertionError(f"item {index} ({label}) drew an empty defect mask")
    return PhoneSprite(
        index, label, versions_p, versions_k, mask, (dwell_x, dwell_y), p["light"], meta
    )


# ====================================================================== composition


def composite(
    canvas: np.ndarray, sprite: PhoneSprite, x: int, y: int, version: str = "sharp"
) -> None:
    """Draw the sprite with its top-left corner at (x, y) on canvas (in place), clipped."""
    H, W = canvas.shape[:2]
    w, h = sprite.size
    cx0, cy0 = max(0, x), max(0, y)
    cx1, cy1 = min(W, x + w), min(H, y + h)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    sx0, sy0 = cx0 - x, cy0 - y
    sx1, sy1 = sx0 + (cx1 - cx0), sy0 + (cy1 - cy0)
    region = canvas[cy0:cy1, cx0:cx1]
    keep = sprite.keep[version][sy0:sy1, sx0:sx1]
    pm = sprite.premult[version][sy0:sy1, sx0:sx1]
    cv2.multiply(region, keep, dst=region, scale=1.0 / 255.0)
    cv2.add(region, pm, dst=region)


def render_still(
    config: SynthConfig, sprite: PhoneSprite, noise_bank: int
) -> tuple[np.ndarray, np.ndarray]:
    """The phone at its dwell position: (image, full-frame mask)."""
    img = background(config, sprite.index).copy()
    x, y = sprite.dwell_xy
    composite(img, sprite, x, y, "sharp")
    add_noise(img, config, noise_bank)
    apply_gain(img, light_gain(config, sprite.index))
    mask = np.zeros((config.height, config.width), np.uint8)
    w, h = sprite.size
    mx0, my0 = max(0, x), max(0, y)
    mx1, my1 = min(config.width, x + w), min(config.height, y + h)
    mask[my0:my1, mx0:mx1] = sprite.mask[my0 - y : my1 - y, mx0 - x : mx1 - x]
    return img, mask


def render_item(config: SynthConfig, index: int) -> SyntheticItem:
    """Item `index` of the line `config` describes, as the trigger would capture it."""
    sprite = build_phone(config, index, versions=("sharp",))
    bank = int(item_rng(config.seed, index, 5).integers(0, NOISE_BANKS))
    image, mask = render_still(config, sprite, bank)
    return SyntheticItem(image, sprite.label, mask, dict(sprite.meta))
