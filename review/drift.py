"""Drift statistics: pure functions on arrays, each comparing a window of items with a reference.

* input drift: the Wasserstein distance between the two samples of one statistic, in units of
  the reference's spread (0.1: a tenth of a standard deviation of earth moved), so one warn / fail
  pair (0.1 / 0.2) serves brightness, sharpness and colour alike and does not shrink to
  "significant" on a large window the way a bare p-value does;
* embedding drift: the maximum mean discrepancy (RBF kernel, median-distance bandwidth) with a
  permutation test;
* output drift: a p-chart z of the predicted-defect rate against the reference rate;
* concept drift: ADWIN (`river`) over a 0/1 stream (disagreements, audited errors), reporting a
  rise only (a fall in disagreement is good news).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import wasserstein_distance

#: Resamples that estimate the distance sampling alone reads (a median: 25 are plenty).
NOISE_RESAMPLES = 25


def normalised_wasserstein(
    reference: np.ndarray, window: np.ndarray, floor: float, *, debias: bool = True, seed: int = 0
) -> float:
    """W1(reference, window) / max(std(reference), floor), less what sampling alone reads.

    `floor` is the smallest spread that counts (in the statistic's units): a reference with no
    spread at all (clipped share 0 on every item) must not turn a tiny change into an infinite
    distance. Two samples of one distribution are never at distance 0: with `debias`, the median
    distance between the reference and resamples of it of the window's size (what a window
    reads when nothing changed) is subtracted, so 0.1 means a tenth of a standard deviation of
    earth moved beyond noise. On the synthetic line's brightness (a mixture of phone colours)
    that noise is 0.03-0.11 at 500 items against 500; a bare distance warned on a stable line.
    """
    ref = np.asarray(reference, dtype=np.float64)
    win = np.asarray(window, dtype=np.float64)
    ref, win = ref[np.isfinite(ref)], win[np.isfinite(win)]
    if len(ref) == 0 or len(win) == 0:
        return math.nan
    scale = max(float(ref.std()), floor)
    distance = float(wasserstein_distance(ref, win)) / scale
    if not debias:
        return distance
    rng = np.random.default_rng(seed)
    noise = np.median(
        [
            wasserstein_distance(ref, rng.choice(ref, size=len(win), replace=True))
            for _ in range(NOISE_RESAMPLES)
        ]
    )
    return max(0.0, distance - float(noise) / scale)


@dataclass(frozen=True)
class MMDResult:
    mmd2: float  # biased MMD^2 estimate, RBF kernel
    p_value: float  # permutation test: share of relabelings at least as large
    bandwidth: float
    n_reference: int
    n_window: int


def _sqdist(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return np.maximum(d, 0.0)


def mmd_permutation(
    reference: np.ndarray,
    window: np.ndarray,
    *,
    permutations: int = 500,
    max_each: int = 300,
    seed: int = 0,
) -> MMDResult:
    """MMD^2 between two samples of vectors, with a permutation p-value.

    At most `max_each` vectors of each sample are used (evenly spaced, so the newest items of a
    window are in), which keeps one test near 0.1 s: every permutation is a quadratic form on the
    one kernel matrix, all of them in one matrix product."""
    x = _spaced(np.asarray(reference, dtype=np.float64), max_each)
    y = _spaced(np.asarray(window, dtype=np.float64), max_each)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return MMDResult(math.nan, math.nan, math.nan, n, m)
    z = np.vstack([x, y])
    d = _sqdist(z)
    off = d[~np.eye(len(z), dtype=bool)]
    bandwidth = float(np.median(off)) if off.size else 1.0
    bandwidth = bandwidth if bandwidth > 0 else 1.0
    k = np.exp(-d / bandwidth)
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    signs = np.vstack([labels, *(rng.permutation(labels) for _ in range(permutations))])
    stats = ((signs @ k) * signs).sum(1)  # w^T K w = MMD^2 (biased) for each labelling
    observed = float(stats[0])
    p = float((1 + (stats[1:] >= observed - 1e-12).sum()) / (permutations + 1))
    return MMDResult(max(observed, 0.0), p, bandwidth, n, m)


def _spaced(a: np.ndarray, most: int) -> np.ndarray:
    if len(a) <= most:
        return a
    return a[np.linspace(0, len(a) - 1, most).round().astype(int)]


def p_chart_z(reference_rate: float, hits: int, n: int, reference_n: int) -> float:
    """How many standard errors the window's rate `hits / n` lies from the reference rate; the
    standard error holds both samples' sampling noise (a reference of 500 is not the truth).
    A reference rate of 0 or 1 is moved half an item inward so the chart has a width."""
    if n <= 0 or reference_n <= 0:
        return math.nan
    p0 = min(max(reference_rate, 0.5 / reference_n), 1.0 - 0.5 / reference_n)
    se = math.sqrt(p0 * (1.0 - p0) * (1.0 / n + 1.0 / reference_n))
    return (hits / n - p0) / se


@dataclass(frozen=True)
class AdwinResult:
    rise: float  # mean after the change found minus the mean before it; 0 when none
    before: float
    after: float
    at: int | None  # where ADWIN last flagged a change; None: no rise
    n: int


def adwin_rise(stream: np.ndarray, *, delta: float = 0.002) -> AdwinResult:
    """Run ADWIN (river) over a 0/1 stream, oldest first; report a rise when it found a change.

    ADWIN keeps the longest recent window consistent with one mean, cutting older items as a
    change shows. Once it has flagged a change, the window it keeps at the end of the stream is
    the current regime: its mean against the mean of everything before it is the change's size
    (the estimate right at the flag still mixes in old items and understates it)."""
    from river.drift import ADWIN  # imported here: river takes seconds to import

    values = np.asarray(stream, dtype=np.float64)
    adwin = ADWIN(delta=delta, clock=1)
    flagged: int | None = None
    for i, v in enumerate(values):
        adwin.update(float(v))
        if adwin.drift_detected:
            flagged = i
    mean = float(values.mean()) if len(values) else math.nan
    split = len(values) - int(adwin.width)
    if flagged is None or split <= 0:
        return AdwinResult(0.0, mean, mean, None, len(values))
    before, after = float(values[:split].mean()), float(values[split:].mean())
    if after <= before:  # a fall: good news, not an alarm
        return AdwinResult(0.0, before, after, None, len(values))
    return AdwinResult(after - before, before, after, flagged, len(values))
