"""Small generated inspection images with masks: a dark 'phone' on a grey table, defects drawn
as thin bright lines (scratch) or soft blobs (stain), each with its mask."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

W, H = 96, 64


def make_image(label: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((H, W, 3), 128, np.uint8)
    img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, (H, W, 3)), 0, 255).astype(np.uint8)
    x0, y0 = int(rng.integers(8, 16)), int(rng.integers(6, 12))
    x1, y1 = W - int(rng.integers(8, 16)), H - int(rng.integers(6, 12))
    cv2.rectangle(img, (x0, y0), (x1, y1), (30, 30, 34), -1)
    mask = np.zeros((H, W), np.uint8)
    if label == "scratch":
        p = (int(rng.integers(x0 + 4, x1 - 20)), int(rng.integers(y0 + 4, y1 - 4)))
        q = (
            p[0] + int(rng.integers(12, 20)),
            int(np.clip(p[1] + rng.integers(-8, 9), y0 + 2, y1 - 2)),
        )
        cv2.line(img, p, q, (230, 230, 230), 1)
        cv2.line(mask, p, q, 255, 2)
    elif label == "stain":
        c = (int(rng.integers(x0 + 8, x1 - 8)), int(rng.integers(y0 + 6, y1 - 6)))
        r = int(rng.integers(3, 6))
        cv2.circle(img, c, r, (90, 140, 170), -1)
        cv2.circle(mask, c, r + 1, 255, -1)
    return img, mask


def write_folder(root: Path, per_class: dict[str, int], seed: int = 0, masks: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    for label, n in per_class.items():
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = make_image(label, rng)
            cv2.imwrite(str(d / f"{label}_{i:03d}.png"), img)
            if masks:
                cv2.imwrite(str(d / f"{label}_{i:03d}.mask.png"), mask)
    return root
