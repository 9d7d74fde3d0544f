"""Defects drawn onto a phone sprite, each with its ground-truth mask (255 = defect).

Looks follow the real photos (../shared/data/msd): cracks are fine bright fractures branching from an
impact point, scratches thin bright arcs, oil drops bright-rimmed blobs, stains bright specks; a
dent/chip bites into the frame edge; a missing part leaves an empty camera hole, button socket or
earpiece slot. Style "v2" is the drift knob "a new defect look": the same classes drawn differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from station.synth import draw


@dataclass(frozen=True)
class DefectContext:
    s: float  # scale from the 1280x720 design
    shape: tuple[int, int]
    body_box: tuple[float, float, float, float]  # x, y, w, h of the body
    screen_box: tuple[float, float, float, float]
    corner: float
    features: dict[str, Any]
    dark: bool
    body_bgr: tuple[float, ...]
    screen_level: float


def draw_defect(
    label: str,
    colour: np.ndarray,
    alpha: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    severity: float,
    style: str,
    ctx: DefectContext,
) -> list[dict[str, Any]]:
    """Draw one defect of class `label` in place; returns its description(s) for the manifest."""
    fn = {
        "crack": _crack,
        "scratch": _scratch,
        "dent": _dent,
        "stain": _stain,
        "missing": _missing,
    }[label]
    subtype = fn(colour, alpha, mask, rng, severity, style, ctx)
    x, y, w, h = draw.bbox(mask)
    return [
        {
            "type": label,
            "subtype": subtype,
            "bbox_sprite": [x, y, w, h],
            "severity": round(severity, 3),
        }
    ]


def _in_screen(
    rng: np.random.Generator, ctx: DefectContext, margin: float = 0.12
) -> tuple[float, float]:
    x, y, w, h = ctx.screen_box
    return (x + w * rng.uniform(margin, 1 - margin), y + h * rng.uniform(margin, 1 - margin))


def _clip_box(pts: np.ndarray, box: tuple[float, float, float, float], pad: float) -> np.ndarray:
    x, y, w, h = box
    keep = (
        (pts[:, 0] > x + pad)
        & (pts[:, 0] < x + w - pad)
        & (pts[:, 1] > y + pad)
        & (pts[:, 1] < y + h - pad)
    )
    if keep.all():
        return pts
    # Keep the longest run inside the box.
    best: tuple[int, int] = (0, 0)
    start = None
    for i, k in enumerate([*keep, False]):
        if k and start is None:
            start = i
        elif not k and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return pts[best[0] : best[1]]


def _mark(mask: np.ndarray, lines: list[np.ndarray], thickness: int) -> None:
    for pts in lines:
        if len(pts) >= 2:
            cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 255, thickness, cv2.LINE_8)


# ---------------------------------------------------------------------- crack


def _crack(colour, alpha, mask, rng, sev, style, ctx) -> str:  # type: ignore[no-untyped-def]
    s = ctx.s
    box = ctx.screen_box
    impact = _in_screen(rng, ctx, 0.18)
    lines: list[np.ndarray] = []
    step = 6.0 * s + 1.0

    def walk(start: np.ndarray, ang: float, length: float, depth: int) -> None:
        pts = [start]
        cur = start
        travelled = 0.0
        while travelled < length:
            ang += float(rng.normal(0, 0.22))
            cur = cur + step * np.array([math.cos(ang), math.sin(ang)])
            pts.append(cur)
            travelled += step
            if depth < 2 and rng.random() < 0.07:
                walk(
                    cur,
                    ang + float(rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)),
                    length * rng.uniform(0.2, 0.45),
                    depth + 1,
                )
        clipped = _clip_box(np.array(pts), box, 2 * s)
        if len(clipped) >= 2:
            lines.append(clipped)

    n_rays = int(np.clip(round(3 + 4 * sev + rng.uniform(-1, 1)), 2, 8))
    base = rng.uniform(0, 2 * math.pi)
    reach = (70 + 300 * sev) * s
    for k in range(n_rays):
        walk(
            np.array(impact),
            base + 2 * math.pi * k / n_rays + rng.uniform(-0.35, 0.35),
            reach * rng.uniform(0.5, 1.1),
            0,
        )
    lay = draw.layer(ctx.shape)
    if style == "v2":
        # Spider-web shatter: straight rays joined by rings, milky rather than bright.
        n_spokes = int(rng.integers(7, 11))
        angs = (
            base + 2 * math.pi * np.arange(n_spokes) / n_spokes + rng.uniform(-0.15, 0.15, n_spokes)
        )
        lengths = reach * rng.uniform(0.6, 1.0, n_spokes)
        lines = []
        for a, ln in zip(angs, lengths, strict=True):
            r = np.linspace(0, ln, 12)[:, None]
            wobble = rng.normal(0, 0.03, (12, 1)).cumsum(axis=0)
            spoke = np.hstack(
                [impact[0] + r * np.cos(a + wobble), impact[1] + r * np.sin(a + wobble)]
            )
            lines.append(_clip_box(spoke, box, 2 * s))
        rings = []
        for r in np.linspace(16 * s, reach * 0.55, int(2 + 3 * sev)):
            # Rings sag between spokes; denser points make them curve.
            fine = np.linspace(angs[0], angs[0] + 2 * math.pi, 8 * n_spokes + 1)
            sag = 1 - 0.12 * np.abs(np.sin((fine - angs[0]) * n_spokes / 2))
            rr = r * sag * rng.uniform(0.95, 1.05)
            ring = np.stack([impact[0] + rr * np.cos(fine), impact[1] + rr * np.sin(fine)], 1)
            rings.append(_clip_box(ring, box, 2 * s))
        for pts in lines + rings:
            draw.polyline(lay, pts, 255, max(1, round(1.5 * s)))
        draw.paint(colour, lay, 55 + 40 * sev, mode="add", blur=0.8 * s)
        haze = draw.circle(draw.layer(ctx.shape), impact, reach * 0.35)
        draw.paint(colour, haze, 10 + 10 * sev, mode="add", blur=12 * s)
        _mark(mask, lines + rings, max(3, round(3 * s)))
        cv2.circle(mask, (round(impact[0]), round(impact[1])), max(2, round(reach * 0.35)), 255, -1)
        return "spiderweb"
    for pts in lines:
        draw.polyline(lay, pts, 255, 1)
    level = 80 + 120 * sev
    draw.paint(colour, lay, level, mode="add")
    draw.paint(
        colour, lay, 12 + 10 * sev, mode="add", blur=1.5 * s
    )  # light scattered by the fracture
    # Crushed glass at the impact point.
    imp = draw.circle(draw.layer(ctx.shape), impact, (2.5 + 3 * sev) * s)
    draw.paint(colour, imp, 150 + 80 * sev, mode="add", blur=0.7 * s)
    _mark(mask, lines, max(3, round(3 * s)))
    cv2.circle(
        mask, (round(impact[0]), round(impact[1])), max(3, round((5 + 3 * sev) * s)), 255, -1
    )
    return "fracture"


# ---------------------------------------------------------------------- scratch


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _scratch(colour, alpha, mask, rng, sev, style, ctx) -> str:  # type: ignore[no-untyped-def]
    s = ctx.s
    box = ctx.screen_box
    lines: list[np.ndarray] = []
    if style == "v2":
        # A scuff: a band of short, parallel, dull hairlines.
        c = np.array(_in_screen(rng, ctx, 0.2))
        ang = rng.uniform(0, math.pi)
        d = np.array([math.cos(ang), math.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        for _ in range(int(6 + 10 * sev)):
            off = nrm * rng.uniform(-14, 14) * s + d * rng.uniform(-40, 40) * s
            ln = rng.uniform(25, 60 + 60 * sev) * s
            pts = np.stack([c + off - d * ln / 2, c + off + d * ln / 2])
            lines.append(_clip_box(pts, box, 2 * s))
        lay = draw.layer(ctx.shape)
        for pts in lines:
            draw.polyline(lay, pts, 255, 1)
        draw.paint(colour, lay, 35 + 45 * sev, mode="add")
        _mark(mask, lines, max(3, round(3 * s)))
        return "scuff"
    n = 1 + int(rng.random() < 0.25 + 0.4 * sev) + int(rng.random() < 0.15 * sev)
    lay = draw.layer(ctx.shape)
    for _ in range(n):
        p0 = np.array(_in_screen(rng, ctx, 0.1))
        ang = rng.uniform(0, 2 * math.pi)
        length = (60 + 330 * sev) * s * rng.uniform(0.6, 1.2)
        p2 = p0 + length * np.array([math.cos(ang), math.sin(ang)])
        mid = (p0 + p2) / 2
        perp = np.array([-math.sin(ang), math.cos(ang)])
        p1 = mid + perp * length * rng.uniform(-0.3, 0.3)
        pts = _clip_box(_bezier(p0, p1, p2, max(12, int(length / 3))), box, 2 * s)
        if len(pts) < 2:
            continue
        # Bright in the middle, fading at the ends, with a little flicker along the stroke.
        t = np.linspace(0, 1, len(pts))
        prof = np.sqrt(np.sin(np.pi * t)) * (0.75 + 0.25 * rng.random(len(pts)))
        peak = 110 + 120 * sev
        for i in range(len(pts) - 1):
            v = int(min(255, peak * prof[i]))
            if v > 0:
                cv2.line(
                    lay,
                    tuple(draw.fixed(pts[i])),
                    tuple(draw.fixed(pts[i + 1])),
                    v,
                    1,
                    cv2.LINE_AA,
                    draw.SHIFT,
                )
        lines.append(pts)
    if not lines:  # every attempt fell outside the glass: a short one in the middle
        c = np.array(_in_screen(rng, ctx, 0.4))
        pts = np.stack([c, c + np.array([50 * s, 12 * s])])
        draw.polyline(lay, pts, 200, 1)
        lines.append(pts)
    draw.paint(colour, lay, 255.0, mode="add")
    _mark(mask, lines, max(3, round(3 * s)))
    return "arc"


# ---------------------------------------------------------------------- dent / chip


def _edge_point(rng: np.random.Generator, ctx: DefectContext) -> tuple[np.ndarray, np.ndarray]:
    """A point on the body outline and the inward normal there (straight edges only)."""
    x, y, w, h = ctx.body_box
    r = ctx.corner
    side = rng.choice(4, p=[0.38, 0.38, 0.12, 0.12])
    if side == 0:  # top
        return np.array([x + rng.uniform(r + 10, w - r - 10), y]), np.array([0.0, 1.0])
    if side == 1:  # bottom
        return np.array([x + rng.uniform(r + 10, w - r - 10), y + h]), np.array([0.0, -1.0])
    if side == 2:  # left
        return np.array([x, y + rng.uniform(r + 5, h - r - 5)]), np.array([1.0, 0.0])
    return np.array([x + w, y + rng.uniform(r + 5, h - r - 5)]), np.array([-1.0, 0.0])


def _dent(colour, alpha, mask, rng, sev, style, ctx) -> str:  # type: ignore[no-untyped-def]
    s = ctx.s
    e, n = _edge_point(rng, ctx)
    t = np.array([n[1], -n[0]])
    body = np.array(ctx.body_bgr, np.float32)
    if style == "v2":
        # Worn paint: a bright scuffed streak along the edge, no loss of material.
        length = (30 + 60 * sev) * s
        depth = (4 + 5 * sev) * s
        c = e + n * depth / 2
        ang = math.degrees(math.atan2(t[1], t[0]))
        lay = draw.ellipse(draw.layer(ctx.shape), c, (length / 2, depth / 2), ang)
        target = np.full(3, 175.0 if ctx.dark else 120.0, np.float32)
        draw.paint(colour, lay, target, blur=0.8 * s)
        mask |= np.where(lay > 40, 255, 0).astype(np.uint8)
        return "worn_paint"
    lay = draw.layer(ctx.shape)
    if rng.random() < 0.55:
        # Chip: an irregular bite out of the edge; the broken rim catches the light.
        radius = (6 + 14 * sev) * s
        k = 9
        angs = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = radius * rng.uniform(0.55, 1.15, k)
        pts = np.stack([e[0] + rad * np.cos(angs), e[1] + rad * np.sin(angs)], 1)
        draw.poly(lay, pts)
        subtype = "chip"
    else:
        # Dent: a shallow dish pressed into the edge.
        length = (16 + 34 * sev) * s
        depth = (2.5 + 5 * sev) * s
        ang = math.degrees(math.atan2(t[1], t[0]))
        draw.ellipse(lay, tuple(e), (length / 2, depth), ang)
        subtype = "dent"
    ring = cv2.dilate(lay, np.ones((max(3, round(4 * s)) * 2 + 1,) * 2, np.uint8))
    ring = cv2.subtract(ring, lay)
    # Inside the body next to the damage: bright broken edge on dark phones, dark on light ones.
    rim_val = 200.0 if ctx.dark else 0.45 * float(body.mean())
    draw.paint(colour, ring, rim_val, blur=0.6 * s)
    shade = cv2.subtract(
        cv2.dilate(lay, np.ones((max(5, round(9 * s)) * 2 + 1,) * 2, np.uint8)), lay
    )
    draw.paint(colour, shade, 0.8, mode="mul", blur=2 * s)
    draw.paint(alpha, lay, 0.0)  # the table shows through where material is gone
    mask |= np.where(cv2.dilate(lay, np.ones((5, 5), np.uint8)) > 40, 255, 0).astype(np.uint8)
    mask |= np.where(ring > 40, 255, 0).astype(np.uint8)
    return subtype


# ---------------------------------------------------------------------- stain / oil


def _stain(colour, alpha, mask, rng, sev, style, ctx) -> str:  # type: ignore[no-untyped-def]
    s = ctx.s
    if style == "v2":
        # A matte, tinted smear with no bright rim.
        c = _in_screen(rng, ctx, 0.2)
        ax = ((30 + 70 * sev) * s, (15 + 35 * sev) * s)
        lay = draw.ellipse(draw.layer(ctx.shape), c, ax, rng.uniform(0, 180))
        draw.paint(
            colour, lay, np.array([8.0, 22.0, 34.0]) * (0.7 + 0.6 * sev), mode="add", blur=4 * s
        )
        mask |= np.where(lay > 40, 255, 0).astype(np.uint8)
        return "smear"
    if rng.random() < 0.6:
        # Oil drop: merged round blobs, slightly lifted inside, bright rim, a specular highlight.
        centre = np.array(_in_screen(rng, ctx, 0.18))
        radius = (10 + 40 * sev) * s
        blob = draw.layer(ctx.shape)
        for _ in range(int(rng.integers(2, 6))):
            off = rng.normal(0, radius * 0.6, 2)
            ax = (radius * rng.uniform(0.4, 1.0), radius * rng.uniform(0.3, 0.7))
            draw.ellipse(blob, centre + off, ax, rng.uniform(0, 180))
        blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, 3 * s))
        blob = np.where(blob > 110, 255, 0).astype(np.uint8)
        blob = cv2.GaussianBlur(blob, (0, 0), 0.7)
        draw.paint(colour, blob, 4 + 6 * sev, mode="add")
        rim = cv2.morphologyEx(
            blob, cv2.MORPH_GRADIENT, np.ones((max(2, round(2.5 * s)),) * 2, np.uint8)
        )
        draw.paint(colour, rim, 60 + 90 * sev, mode="add", blur=0.6)
        hx, hy, hw, hh = draw.bbox(blob)
        spec = draw.ellipse(
            draw.layer(ctx.shape),
            (hx + hw * 0.3, hy + hh * 0.3),
            (max(1.5, hw * 0.12), max(1.0, hh * 0.06)),
            rng.uniform(-30, 30),
        )
        draw.paint(colour, spec, 120 + 80 * sev, mode="add", blur=1.0)
        mask |= np.where(cv2.dilate(blob, np.ones((5, 5), np.uint8)) > 40, 255, 0).astype(np.uint8)
        return "oil"
    # Specks: small bright dots with a soft glow.
    n = int(rng.integers(2, 4 + int(6 * sev)))
    lay = draw.layer(ctx.shape)
    for _ in range(n):
        c = _in_screen(rng, ctx, 0.06)
        r = rng.uniform(1.5, 2.5 + 1.5 * sev) * s
        draw.circle(lay, c, r)
        cv2.circle(mask, (round(c[0]), round(c[1])), max(3, round(r + 4 * s + 2)), 255, -1)
    draw.paint(colour, lay, 190 + 60 * sev, mode="add", blur=0.6 * s)
    draw.paint(colour, lay, 30, mode="add", blur=3 * s)
    return "specks"


# ---------------------------------------------------------------------- missing part


def _missing(colour, alpha, mask, rng, sev, style, ctx) -> str:  # type: ignore[no-untyped-def]
    s = ctx.s
    feats = ctx.features
    choices = ["camera", "earpiece"] + (["home_button"] if "home_button" in feats else [])
    probs = np.array([0.5, 0.2, 0.3][: len(choices)])
    part = str(choices[int(rng.choice(len(choices), p=probs / probs.sum()))])
    lay = draw.layer(ctx.shape)
    if part == "camera":
        (c, r) = feats["camera"]
        draw.circle(lay, c, r + 1.5 * s)
        draw.paint(colour, lay, (118.0, 122.0, 126.0))  # bare holder, no lens
        draw.paint(colour, draw.circle(draw.layer(ctx.shape), c, r * 0.35), 40.0)
        draw.paint(
            colour,
            draw.circle(draw.layer(ctx.shape), c, r + 1.5 * s, thickness=max(1, round(1.2 * s))),
            25.0,
        )
        cv2.circle(mask, (round(c[0]), round(c[1])), max(3, round(r + 4 * s + 2)), 255, -1)
    elif part == "earpiece":
        (c, (w, h)) = feats["earpiece"]
        pts = draw.rounded_rect(
            w + 3 * s,
            h + 4 * s,
            (w + 3 * s) / 2,
            c[0] - (w + 3 * s) / 2,
            c[1] - (h + 4 * s) / 2,
            n=4,
        )
        draw.poly(lay, pts)
        draw.paint(colour, lay, (140.0, 138.0, 135.0))  # the grille is gone: the metal behind shows
        mask |= np.where(cv2.dilate(lay, np.ones((5, 5), np.uint8)) > 40, 255, 0).astype(np.uint8)
    else:
        (c, (w, h)) = feats["home_button"]
        pts = draw.rounded_rect(w, h, w * 0.45, c[0] - w / 2, c[1] - h / 2, n=8)
        draw.poly(lay, pts)
        draw.paint(colour, lay, (38.0, 40.0, 44.0))  # an empty socket
        inner = draw.layer(ctx.shape)
        draw.poly(
            inner,
            draw.rounded_rect(w * 0.5, h * 0.35, 3 * s, c[0] - w * 0.25, c[1] - h * 0.175, n=3),
        )
        draw.paint(colour, inner, (70.0, 95.0, 80.0))  # flex contact at the bottom of the socket
        mask |= np.where(cv2.dilate(lay, np.ones((5, 5), np.uint8)) > 40, 255, 0).astype(np.uint8)
    return part
