"""Latency of `Predictor.predict()` against a bare forward pass with hand-written preprocessing.

    .venv/bin/python bench/model_latency.py [ARTIFACT] [--runs 60] [--threads 2]

Both paths run interleaved in one process on the same 1280x720 BGR frame, so machine load hits
them alike. Prints p50/p95 at the served resolution, the predict/bare ratio at batch 1
(target <= 1.15) and images/s at batch 1, 8 and 32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Predictor  # noqa: E402


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((720, 1280, 3), 110, np.uint8)
    cv2.rectangle(img, (90, 70), (1190, 650), (235, 235, 235), -1)
    cv2.rectangle(img, (200, 90), (1080, 630), (25, 25, 28), -1)
    cv2.line(img, (400, 300), (520, 380), (200, 200, 200), 1, cv2.LINE_AA)
    noise = rng.normal(0, 2.5, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def bare(net: torch.nn.Module, img: np.ndarray, w: int, h: int, mean, std, t: float) -> np.ndarray:
    """What a hand-rolled caller would write: resize, BGR->RGB, normalise, forward, softmax."""
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
    x = (x - mean) / std
    with torch.inference_mode():
        logits = net(x.unsqueeze(0)).logits
    return torch.softmax(logits / t, dim=1).numpy()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", nargs="?", default=None)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = Predictor.load(args.artifact)
    spec = p.spec
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    img = frame()
    for _ in range(5):  # warm-up both paths
        p.predict(img)
        bare(p.net, img, spec.width, spec.height, mean, std, p.manifest.temperature)
    t_pred, t_bare = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        p.predict(img)
        t_pred.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        bare(p.net, img, spec.width, spec.height, mean, std, p.manifest.temperature)
        t_bare.append((time.perf_counter() - t0) * 1000)
    print(
        f"model {p.manifest.name} {p.manifest.version} ({p.manifest.architecture}) served at "
        f"{spec.width}x{spec.height} from a 1280x720 frame, {args.threads} threads"
    )
    print(f"predict(): p50 {pct(t_pred, 0.5):.1f} ms  p95 {pct(t_pred, 0.95):.1f} ms")
    print(f"bare fwd : p50 {pct(t_bare, 0.5):.1f} ms  p95 {pct(t_bare, 0.95):.1f} ms")
    ratio = statistics.median(t_pred) / statistics.median(t_bare)
    print(
        f"ratio predict/bare (p50, batch 1): {ratio:.3f}  (target <= 1.15: "
        f"{'met' if ratio <= 1.15 else 'NOT met'})"
    )
    for b in (1, 8, 32):
        batch = [frame(i) for i in range(b)]
        p.predict_batch(batch)
        reps = max(2, 48 // b)
        t0 = time.perf_counter()
        for _ in range(reps):
            p.predict_batch(batch)
        dt = time.perf_counter() - t0
        print(f"batch {b:>2}: {reps * b / dt:.1f} images/s")


if __name__ == "__main__":
    main()
