"""Calibration: temperature scaling on logits, ECE, reliability diagrams, decision thresholds.

Pitfalls guarded here: probabilities passed where logits are expected, an optimiser stopped
after a few steps, a temperature that is non-positive or runs away; the fitted temperature is
kept only if it lowers the validation NLL.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from model.errors import CalibrationError

ECE_BINS = 15
T_MIN, T_MAX = 0.05, 20.0


@dataclass(frozen=True)
class Calibration:
    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    kept: bool
    note: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _check_logits(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0] or logits.shape[0] == 0:
        raise CalibrationError(
            f"expected logits (N, K) and labels (N,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if not torch.isfinite(logits).all():
        raise CalibrationError("expected finite logits, found NaN or infinity")
    rows = logits.sum(dim=1)
    if (logits >= 0).all() and (logits <= 1).all() and torch.allclose(rows, torch.ones_like(rows)):
        raise CalibrationError(
            "expected logits, got probabilities (every row in [0, 1] summing to 1); "
            "pass the network's raw outputs"
        )


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits / temperature, labels))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-class confidence, equal-width bins."""
    bins = reliability(probs, labels, n_bins)
    n = max(1, len(labels))
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins))


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin: [lo, hi), count, mean confidence, accuracy (empty bins omitted)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            out.append(
                {
                    "lo": float(edges[b]),
                    "hi": float(edges[b + 1]),
                    "count": int(sel.sum()),
                    "confidence": float(conf[sel].mean()),
                    "accuracy": float(correct[sel].mean()),
                }
            )
    return out


def softmax_np(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> Calibration:
    """Temperature T > 0 minimising validation NLL of softmax(logits / T); kept only if it helps."""
    logits = torch.as_tensor(logits, dtype=torch.float64).detach()
    labels = torch.as_tensor(labels, dtype=torch.long)
    _check_logits(logits, labels)
    before = nll(logits, labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) > 0
    opt = torch.optim.LBFGS(
        [log_t], lr=0.5, max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.clamp(-8, 8).exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    p_before = softmax_np(logits.numpy())
    e_before = ece(p_before, labels.numpy())
    note = ""
    if not math.isfinite(t) or not T_MIN <= t <= T_MAX:
        note = f"fitted temperature {t:.4g} outside [{T_MIN}, {T_MAX}]; kept T = 1"
        t = 1.0
    after = nll(logits, labels, t)
    kept = after < before - 1e-9 and t != 1.0
    if not kept:
        note = note or f"temperature {t:.4g} did not lower validation NLL; kept T = 1"
        t, after = 1.0, before
    e_after = ece(softmax_np(logits.numpy(), t), labels.numpy())
    return Calibration(t, before, after, e_before, e_after, kept, note)


def coverage_threshold(
    score: np.ndarray,
    wrong: np.ndarray,
    max_error: float = 0.01,
    min_count: int = 20,
    above: float | None = None,
) -> dict[str, float | int | None]:
    """Lowest threshold on `score` whose decided items (score >= t) err at most max_error.

    Fewer than min_count decided items never make a threshold: tiny validation sets give
    thresholds that do not hold on new data. With `above`, only thresholds over it count (the
    station takes auto-pass and auto-fail thresholds above 0.5 only).
    """
    order = np.argsort(-score, kind="stable")
    s = score[order]
    w = np.cumsum(wrong[order].astype(np.int64))
    n = np.arange(1, len(s) + 1)
    best = None
    for i in range(len(s)):
        # only cut between distinct scores
        if i + 1 < len(s) and s[i + 1] == s[i]:
            continue
        if above is not None and s[i] <= above:
            break  # scores only fall from here
        if n[i] >= min_count and w[i] / n[i] <= max_error:
            best = i
    if best is None:
        return {"threshold": None, "coverage": 0.0, "error": None, "decided": 0}
    return {
        "threshold": float(s[best]),
        "coverage": float(n[best] / len(s)),
        "error": float(w[best] / n[best]),
        "decided": int(n[best]),
    }


def two_threshold_coverage(
    auto_pass: dict[str, float | int | None],
    auto_fail: dict[str, float | int | None],
    n: int,
) -> dict[str, float | int | None]:
    """The items a station with both thresholds decides: auto-passed plus auto-failed.

    Both thresholds must be above 0.5 (`coverage_threshold(..., above=0.5)`, as the station's
    settings require): P(ok) and P(defect) add up to one, so no item is on both sides. Each side
    errs at most max_error among its own decisions, so together they do too (a weighted mean of
    two rates). A side without a threshold decides nothing. The station's never-pass caps (e.g.
    a possible crack) can only take items off the pass side, so its coverage is at most this.
    """
    for c in (auto_pass, auto_fail):
        t = c.get("threshold")
        if t is not None and float(t) <= 0.5:
            raise ValueError(f"expected thresholds above 0.5 on both sides, got {t}")
    sides = [c for c in (auto_pass, auto_fail) if c.get("threshold") is not None]
    decided = sum(int(c["decided"] or 0) for c in sides)
    if not decided or n <= 0:
        return {"coverage": 0.0, "error": None, "decided": 0}
    errors = sum(float(c["error"] or 0.0) * int(c["decided"] or 0) for c in sides)
    return {"coverage": decided / n, "error": errors / decided, "decided": decided}


RISK_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def risk_coverage(conf: np.ndarray, wrong: np.ndarray) -> list[dict[str, float | int | None]]:
    """For each threshold: share of items decided (conf >= t) and error among them."""
    rows = []
    n = max(1, len(conf))
    for t in RISK_LEVELS:
        sel = conf >= t
        k = int(sel.sum())
        rows.append(
            {
                "threshold": t,
                "coverage": k / n,
                "decided": k,
                "error": (float(wrong[sel].mean()) if k else None),
            }
        )
    return rows


def reliability_png(
    before: list[dict], after: list[dict], path: Path | str, size: int = 360
) -> Path:
    """A reliability diagram (accuracy vs confidence, before grey / after blue) as a PNG."""
    pad = 40
    img = np.full((size + 2 * pad, size + 2 * pad, 3), 255, np.uint8)

    def xy(c: float, a: float) -> tuple[int, int]:
        return int(pad + c * size), int(pad + (1 - a) * size)

    cv2.rectangle(img, xy(0, 0), xy(1, 1), (0, 0, 0), 1)
    cv2.line(img, xy(0, 0), xy(1, 1), (160, 160, 160), 1, cv2.LINE_AA)
    for bins, colour, off in ((before, (150, 150, 150), -3), (after, (200, 90, 20), 3)):
        for b in bins:
            x0, y0 = xy(b["lo"], b["accuracy"])
            x1, y1 = xy(b["hi"], 0.0)
            cv2.rectangle(img, (x0 + off + 3, y0), (x1 + off - 3, y1), colour, -1)
            cv2.circle(img, xy(b["confidence"], b["accuracy"]), 3, (0, 0, 200), -1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "confidence", (pad + size // 2 - 40, size + pad + 28), font, 0.45, 0, 1)
    cv2.putText(img, "accuracy", (4, pad - 12), font, 0.45, 0, 1)
    cv2.putText(img, "grey: before  blue: after", (pad + 8, pad + 18), font, 0.4, 0, 1)
    path = Path(path)
    cv2.imwrite(str(path), img)
    return path
