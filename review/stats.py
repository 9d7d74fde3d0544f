"""Agreement and risk statistics: pure functions on label arrays or on counts.

Everything here is honest on small or degenerate samples: an estimate that does not exist (no
items, one class only) is None, never NaN or infinity, so the result can go straight into JSON.
Functions come in two forms where it matters: on per-item arrays (for tests and small data) and on
counts (what SQL aggregation hands over), the first always reducing to the second.

Conventions
- `ok` is the defect-free label; every other label is a defect. "Pass" = labelled `ok`.
- The reference label is the adjudicated label where one exists, else the human's.
- 95% two-sided intervals unless the name says "upper" (one-sided 95% upper bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Two-sided 95%: scipy.stats.norm.ppf(0.975), written out so that importing this module does not
# import SciPy's statistics (about 0.7 s of every command's start that computes none).
Z95 = 1.959963984540054


def _finite(x: float | None) -> float | None:
    """A float fit for JSON, or None when the value does not exist."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _counts(k: int, n: int) -> bool:
    """k events of n trials: False when there are no trials; ValueError when k is outside [0, n]."""
    if n <= 0:
        return False
    if not 0 <= k <= n:
        raise ValueError(f"expected 0 <= k <= n, got k={k}, n={n}")
    return True


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class Proportion:
    """k of n, with a two-sided 95% exact (Clopper-Pearson) interval; rate and ci95 are None
    when n == 0."""

    k: int
    n: int
    rate: float | None
    ci95: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "rate": self.rate, "ci95": _pair(self.ci95)}


@dataclass(frozen=True)
class UpperBoundedRate:
    """k of n, with a one-sided 95% Clopper-Pearson upper bound; None when n == 0."""

    k: int
    n: int
    rate: float | None
    upper95: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "upper95": self.upper95, "n": self.n, "k": self.k}


@dataclass(frozen=True)
class Kappa:
    value: float | None
    ci95: tuple[float, float] | None
    se: float | None
    n: int
    observed: float | None
    expected: float | None
    # The textbook Wald interval (Fleiss-Cohen-Everitt variance), shown beside `ci95`, the
    # conservative one the gate uses.
    ci95_standard: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "ci95": _pair(self.ci95),
            "ci95_standard": _pair(self.ci95_standard),
            "se": self.se,
            "n": self.n,
            "observed": self.observed,
            "expected": self.expected,
        }


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs against a truth: b = model right & human wrong, c = the reverse."""

    b: int
    c: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"n_discordant": self.b + self.c}


@dataclass(frozen=True)
class RiskCoveragePoint:
    threshold: float
    coverage: float
    risk: float | None
    risk_upper95: float | None
    n_covered: int
    n_counted: int
    n_loss: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SelectiveThreshold:
    """The outcome of the Geifman & El-Yaniv (2017) selection-with-guaranteed-risk search.

    `threshold` is None when no tried threshold reached the target; `bound` is then the best
    (lowest) bound seen, so the report can say how far off the target the evidence is.
    """

    target_risk: float
    delta: float
    steps: int
    threshold: float | None
    coverage: float
    risk: float | None
    bound: float | None
    n_covered: int
    n_counted: int
    n_loss: int
    met: bool
    tried: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [ci[0], ci[1]]


# --------------------------------------------------------------------------- matrices


def label_order(labels: Sequence[str], ok: str = "ok") -> list[str]:
    """`ok` first, then the defects in the order given, no duplicates."""
    out = [ok] if ok in labels else []
    for lab in labels:
        if lab not in out:
            out.append(lab)
    return out


def agreement_matrix(
    human: ArrayLike, model: ArrayLike, labels: Sequence[str] | None = None, ok: str = "ok"
) -> tuple[list[str], NDArray[np.int64]]:
    """Counts with rows = human label, columns = model label.

    `labels` fixes the order (and adds classes nobody used); labels seen but not listed are
    appended, so no item is silently dropped.
    """
    h = np.asarray(human, dtype=object)
    m = np.asarray(model, dtype=object)
    if h.shape != m.shape:
        raise ValueError(f"human and model label arrays differ in length: {h.shape} vs {m.shape}")
    seen = sorted({str(x) for x in h} | {str(x) for x in m})
    order = label_order([*(labels or []), *seen], ok)
    index = {lab: i for i, lab in enumerate(order)}
    counts = np.zeros((len(order), len(order)), dtype=np.int64)
    for a, b in zip(h, m, strict=True):
        counts[index[str(a)], index[str(b)]] += 1
    return order, counts


def matrix_from_counts(
    rows: Sequence[tuple[str, str, int]], labels: Sequence[str] | None = None, ok: str = "ok"
) -> tuple[list[str], NDArray[np.int64]]:
    """The same matrix from (human, model, count) rows, as SQL GROUP BY returns them."""
    seen = sorted({r[0] for r in rows} | {r[1] for r in rows})
    order = label_order([*(labels or []), *seen], ok)
    index = {lab: i for i, lab in enumerate(order)}
    counts = np.zeros((len(order), len(order)), dtype=np.int64)
    for h, m, n in rows:
        counts[index[h], index[m]] += int(n)
    return order, counts


def pass_fail(labels: Sequence[str], counts: ArrayLike, ok: str = "ok") -> dict[str, int]:
    """Collapse a human x model matrix to pass/fail (pass = `ok`)."""
    c = np.asarray(counts, dtype=np.int64)
    if c.size == 0:
        return {
            "both_pass": 0,
            "both_fail": 0,
            "human_fail_model_pass": 0,
            "human_pass_model_fail": 0,
        }
    is_ok = np.array([lab == ok for lab in labels], dtype=bool)
    return {
        "both_pass": int(c[np.ix_(is_ok, is_ok)].sum()),
        "both_fail": int(c[np.ix_(~is_ok, ~is_ok)].sum()),
        "human_fail_model_pass": int(c[np.ix_(~is_ok, is_ok)].sum()),
        "human_pass_model_fail": int(c[np.ix_(is_ok, ~is_ok)].sum()),
    }


# --------------------------------------------------------------------------- proportions


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n trials (on average near nominal; under it at
    some rates near 0 and 1, where `clopper_pearson_interval` is the one to use)."""
    if not _counts(k, n):
        return None
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Exact at the edges: floating point must not put 0/n above 0 or n/n below 1.
    lo = 0.0 if k == 0 else _clip01(centre - half)
    hi = 1.0 if k == n else _clip01(centre + half)
    return (lo, hi)


def clopper_pearson_interval(
    k: int, n: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Two-sided exact (Clopper-Pearson) interval: coverage at least `confidence` for every true
    rate, near 0 and 1 included (Wilson's dips under it there: 0.92 at n=100, p=0.99)."""
    from scipy.special import betaincinv

    if not _counts(k, n):
        return None
    tail = (1.0 - confidence) / 2.0
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, tail))  # = beta.ppf, 20x faster
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1.0 - tail))
    return (_clip01(lo), _clip01(hi))


def proportion(k: int, n: int) -> Proportion:
    """k of n with the exact two-sided 95% interval (nominal coverage near 0 and 1)."""
    k, n = int(k), int(n)
    return Proportion(
        k=k, n=n, rate=(k / n if n > 0 else None), ci95=clopper_pearson_interval(k, n)
    )


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float | None:
    """One-sided exact (Clopper-Pearson) upper bound: the p with P(X <= k | n, p) = 1 - confidence."""
    from scipy.special import betaincinv

    if not _counts(k, n):
        return None
    if k >= n:
        return 1.0
    return _finite(float(betaincinv(k + 1, n - k, confidence)))  # = beta.ppf, 20x faster


def rate_evalue(k: int, n: int, target: float) -> float:
    """Evidence against "the rate is at least `target`" after k events in n trials.

    The likelihood ratio of a rate p1 against `target`, averaged over p1 uniform on [0, target]:
    under any true rate >= target it is a nonnegative supermartingale that starts at 1, so by
    Ville's inequality the chance it EVER reaches 1/alpha is at most alpha. A gate that passes
    when it does keeps its error at alpha however often, and whenever, it is checked (no penalty
    for peeking, no count of looks to keep). Returns the e-value (may be huge; inf capped)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"expected a target rate in (0, 1), got {target}")
    if not _counts(k, n):
        return 1.0
    return math.exp(min(_log_evalue(k, n, target), 700.0))


def _log_evalue(k: int, n: int, target: float) -> float:
    from scipy.special import betainc, betaln

    tail = float(betainc(k + 1, n - k + 1, target))  # scipy.special: 30x faster than .logcdf
    if tail > 0.0:
        log_tail = math.log(tail)
    else:  # below double precision: only the log form has it
        from scipy import stats as sps

        log_tail = float(sps.beta.logcdf(target, k + 1, n - k + 1))
    return (
        float(betaln(k + 1, n - k + 1))
        + log_tail
        - (k + 1) * math.log(target)
        - (n - k) * math.log1p(-target)
    )


def anytime_upper(k: int, n: int, confidence: float = 0.95) -> float | None:
    """Upper bound on a rate that holds at every n at once (a confidence sequence): the smallest
    rate that the evidence of `rate_evalue` rejects at 1 / (1 - confidence). Wider than the
    Clopper-Pearson bound of one fixed look (about 1.5x at zero events), valid under any number
    of looks. None when n == 0."""
    if not _counts(k, n):
        return None
    if k >= n:
        return 1.0
    from scipy.optimize import brentq

    need = math.log(1.0 / (1.0 - confidence))
    lo, hi = max(k / n, 1e-12), 1.0 - 1e-12
    if _log_evalue(k, n, hi) < need:
        return 1.0
    # The e-value grows with the rate it is tested against, above k / n (where it is <= 1):
    # one crossing, found in a dozen evaluations; nudged up by the tolerance to stay an upper bound.
    xtol = 1e-12
    root = float(brentq(lambda p: _log_evalue(k, n, p) - need, lo, hi, xtol=xtol))
    return _finite(min(1.0, root + 2 * xtol))


def upper_bounded_rate(k: int, n: int, confidence: float = 0.95) -> UpperBoundedRate:
    k, n = int(k), int(n)
    return UpperBoundedRate(
        k=k, n=n, rate=(k / n if n > 0 else None), upper95=clopper_pearson_upper(k, n, confidence)
    )


def newcombe_difference(
    k1: int, n1: int, k2: int, n2: int, z: float = Z95
) -> tuple[float | None, tuple[float, float] | None]:
    """p1 - p2 with Newcombe's (1998, method 10) hybrid score interval from two Wilson intervals."""
    if n1 <= 0 or n2 <= 0:
        return None, None
    p1, p2 = k1 / n1, k2 / n2
    w1, w2 = wilson_interval(k1, n1, z), wilson_interval(k2, n2, z)
    assert w1 is not None and w2 is not None
    (l1, u1), (l2, u2) = w1, w2
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, (max(-1.0, lo), min(1.0, hi))


# --------------------------------------------------------------------------- agreement


def observed_agreement(counts: ArrayLike) -> Proportion:
    """Share of items on the diagonal, with an exact 95% interval."""
    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    k = int(np.trace(c)) if c.size else 0
    return proportion(k, n)


def cohens_kappa(counts: ArrayLike, z: float = Z95) -> Kappa:
    """Cohen's kappa of a square matrix of counts, with a 95% interval.

    Variance: the large-sample (non-null) variance of Fleiss, Cohen & Everitt (1969), which is the
    one meant for confidence intervals; Cohen's (1960) simpler p_o(1-p_o)/(n(1-p_e)^2) ignores the
    sampling error of the chance term p_e, and the null variance (kappa = 0) is for testing only.
    A Wald interval from it collapses to a point at perfect agreement (its variance is then 0), which
    would overstate what a few hundred items prove. So the interval the gate uses (`ci95`) is the
    union of the Wald interval (`ci95_standard`, reported beside it) and the exact
    (Clopper-Pearson) interval of p_o mapped onto the kappa scale with p_e held fixed
    ((p - p_e) / (1 - p_e)): never narrower than the uncertainty of observed agreement alone.

    kappa does not exist when p_e == 1 (both raters used one and the same class for every item):
    value and interval are then None.
    """
    from scipy import stats as sps

    c = np.asarray(counts, dtype=np.float64)
    n = int(round(float(c.sum()))) if c.size else 0
    if n == 0:
        return Kappa(None, None, None, 0, None, None)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"expected a square matrix of counts, got shape {c.shape}")
    p = c / n
    rows = p.sum(axis=1)
    cols = p.sum(axis=0)
    po = float(np.trace(p))
    pe = float(rows @ cols)
    if pe >= 1.0 - 1e-12:
        return Kappa(None, None, None, n, _finite(po), _finite(pe))
    kappa = (po - pe) / (1.0 - pe)
    one_k = 1.0 - kappa
    diag = np.diag(p)
    term_a = float(np.sum(diag * (1.0 - (rows + cols) * one_k) ** 2))
    # Off-diagonal cells p_ij weigh (p_.i + p_j.)^2: column total of i plus row total of j.
    w = (cols[:, None] + rows[None, :]) ** 2
    off = p.copy()
    np.fill_diagonal(off, 0.0)
    term_b = one_k**2 * float(np.sum(off * w))
    term_c = (kappa - pe * one_k) ** 2
    var = max(0.0, (term_a + term_b - term_c) / (n * (1.0 - pe) ** 2))
    se = math.sqrt(var)
    wald = (max(-1.0, kappa - z * se), min(1.0, kappa + z * se))
    k_agree = int(round(float(np.trace(c))))
    exact = clopper_pearson_interval(k_agree, n, 1.0 - 2.0 * float(sps.norm.sf(z)))
    assert exact is not None
    lo = min(wald[0], (exact[0] - pe) / (1.0 - pe))
    hi = max(wald[1], (exact[1] - pe) / (1.0 - pe))
    lo, hi = max(-1.0, lo), min(1.0, hi)
    return Kappa(
        ci95_standard=(float(wald[0]), float(wald[1])),
        value=_finite(kappa),
        ci95=(float(lo), float(hi)),
        se=_finite(se),
        n=n,
        observed=_finite(po),
        expected=_finite(pe),
    )


# --------------------------------------------------------------------------- error rates


def _is_defect(labels: ArrayLike, ok: str) -> NDArray[np.bool_]:
    return np.asarray(labels, dtype=object) != ok


def error_counts(reference: ArrayLike, model: ArrayLike, ok: str = "ok") -> dict[str, int]:
    """Pass/fail confusion of the model against the reference label."""
    ref_def = _is_defect(reference, ok)
    mod_def = _is_defect(model, ok)
    return {
        "ref_ok_model_ok": int(np.sum(~ref_def & ~mod_def)),
        "ref_defect_model_ok": int(np.sum(ref_def & ~mod_def)),
        "ref_ok_model_defect": int(np.sum(~ref_def & mod_def)),
        "ref_defect_model_defect": int(np.sum(ref_def & mod_def)),
    }


def error_rates(confusion: dict[str, int]) -> dict[str, UpperBoundedRate]:
    """Escape, miss and false-reject rates with one-sided 95% Clopper-Pearson upper bounds.

    escape rate       = P(reference defect | model passes)   -- what reaches the customer
    miss rate         = P(model passes | reference defect)
    false-reject rate = P(model fails | reference ok)
    """
    tn = confusion["ref_ok_model_ok"]
    esc = confusion["ref_defect_model_ok"]
    fr = confusion["ref_ok_model_defect"]
    tp = confusion["ref_defect_model_defect"]
    return {
        "escape_rate": upper_bounded_rate(esc, tn + esc),
        "miss_rate": upper_bounded_rate(esc, esc + tp),
        "false_reject_rate": upper_bounded_rate(fr, tn + fr),
    }


def mcnemar_exact(b: int, c: int) -> McNemar:
    """Exact (binomial) McNemar test on discordant pairs: H0 says both err equally often.

    Two-sided p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); 1.0 with no
    discordant pair (nothing tells the two apart).
    """
    from scipy import stats as sps

    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0)
    p = min(1.0, 2.0 * float(sps.binom.cdf(min(b, c), n, 0.5)))
    return McNemar(b, c, p)


def mcnemar_against_truth(truth: ArrayLike, human: ArrayLike, model: ArrayLike) -> McNemar:
    t = np.asarray(truth, dtype=object)
    h_ok = np.asarray(human, dtype=object) == t
    m_ok = np.asarray(model, dtype=object) == t
    return mcnemar_exact(int(np.sum(m_ok & ~h_ok)), int(np.sum(h_ok & ~m_ok)))


# --------------------------------------------------------------------------- selective risk


@dataclass(frozen=True)
class ScoreHistogram:
    """Per distinct score (descending): all items, items whose risk counts, and losses among them.

    The selection rule is `score >= threshold`. Coverage = covered / all items; selective risk =
    losses / counted among covered. For the escape rate, `counted` = items the model passes and
    `loss` = those the reference calls defective, so risk is the escape rate among auto-passes.
    """

    scores: NDArray[np.float64]
    total: NDArray[np.int64]
    counted: NDArray[np.int64]
    loss: NDArray[np.int64]

    @property
    def n_all(self) -> int:
        return int(self.total.sum())


def score_histogram(
    scores: ArrayLike, loss: ArrayLike, counted: ArrayLike | None = None
) -> ScoreHistogram:
    """Per-item scores and 0/1 losses -> histogram (distinct scores, descending)."""
    s = np.asarray(scores, dtype=np.float64)
    lo = np.asarray(loss, dtype=bool)
    co = np.ones_like(lo) if counted is None else np.asarray(counted, dtype=bool)
    if not (s.shape == lo.shape == co.shape):
        raise ValueError("scores, loss and counted must have the same length")
    if np.any(lo & ~co):
        raise ValueError("a loss must be on a counted item")
    keep = np.isfinite(s)
    s, lo, co = s[keep], lo[keep], co[keep]
    uniq, inv = np.unique(s, return_inverse=True)
    total = np.bincount(inv, minlength=uniq.size).astype(np.int64)
    cnt = np.bincount(inv, weights=co, minlength=uniq.size).astype(np.int64)
    los = np.bincount(inv, weights=lo, minlength=uniq.size).astype(np.int64)
    return ScoreHistogram(uniq[::-1].copy(), total[::-1].copy(), cnt[::-1].copy(), los[::-1].copy())


def histogram_from_rows(rows: Sequence[tuple[float, int, int, int]]) -> ScoreHistogram:
    """(score, total, counted, loss) rows, as SQL GROUP BY returns them, in any order."""
    if not rows:
        z = np.zeros(0, dtype=np.int64)
        return ScoreHistogram(np.zeros(0), z, z.copy(), z.copy())
    arr = sorted(((float(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows), reverse=True)
    s, t, c, lo = zip(*arr, strict=True)
    return ScoreHistogram(
        np.array(s),
        np.array(t, dtype=np.int64),
        np.array(c, dtype=np.int64),
        np.array(lo, dtype=np.int64),
    )


def _covered_at(h: ScoreHistogram, i: int) -> tuple[int, int, int]:
    """Totals over the i+1 highest distinct scores (threshold = h.scores[i])."""
    return int(h.total[: i + 1].sum()), int(h.counted[: i + 1].sum()), int(h.loss[: i + 1].sum())


def risk_coverage_curve(
    h: ScoreHistogram, max_points: int = 50, confidence: float = 0.95
) -> list[RiskCoveragePoint]:
    """Coverage and selective risk at up to `max_points` thresholds (pointwise upper bounds)."""
    m = h.scores.size
    n_all = h.n_all
    if m == 0 or n_all == 0:
        return []
    cum_t = np.cumsum(h.total)
    cum_c = np.cumsum(h.counted)
    cum_l = np.cumsum(h.loss)
    # Thresholds at evenly spaced coverages, so the curve is readable whatever the score spread.
    targets = np.linspace(0.0, 1.0, max_points + 1)[1:] * n_all
    idx = sorted({int(min(m - 1, np.searchsorted(cum_t, t, side="left"))) for t in targets})
    out = []
    for i in idx:
        n_c, k = int(cum_c[i]), int(cum_l[i])
        out.append(
            RiskCoveragePoint(
                threshold=float(h.scores[i]),
                coverage=float(cum_t[i]) / n_all,
                risk=(k / n_c if n_c else None),
                risk_upper95=clopper_pearson_upper(k, n_c, confidence),
                n_covered=int(cum_t[i]),
                n_counted=n_c,
                n_loss=k,
            )
        )
    return out


def select_threshold(
    h: ScoreHistogram, target_risk: float, delta: float = 0.05
) -> SelectiveThreshold:
    """Selection with guaranteed risk (Geifman & El-Yaniv 2017, Algorithm 1 "SGR").

    Binary search over the sorted distinct scores for the lowest threshold whose selective risk has
    a Clopper-Pearson upper bound (the paper's B*, the exact binomial tail inversion) at level
    delta / k below `target_risk`, k = ceil(log2 m) search steps: by the union bound (Bonferroni
    over the steps) the bound of whichever threshold is returned holds with probability >= 1 -
    delta, although the search looked at the data k times. Returns the accepted threshold of
    largest coverage; none accepted -> threshold None and met False.
    """
    if not 0.0 < target_risk < 1.0:
        raise ValueError(f"target risk must be in (0, 1), got {target_risk}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    m = h.scores.size
    n_all = h.n_all
    if m == 0 or n_all == 0:
        return SelectiveThreshold(target_risk, delta, 0, None, 0.0, None, None, 0, 0, 0, False)
    steps = max(1, math.ceil(math.log2(m))) if m > 1 else 1
    level = 1.0 - delta / steps
    # Index into scores sorted DEScending: a larger index = a lower threshold = more coverage.
    lo_i, hi_i = 0, m - 1
    best: tuple[int, float, int, int, int] | None = None
    best_bound: float | None = None
    tried: list[dict[str, Any]] = []
    seen: set[int] = set()
    for _ in range(steps):
        z = (lo_i + hi_i + 1) // 2 if m > 1 else 0
        if z in seen:
            break
        seen.add(z)
        n_cov, n_c, k = _covered_at(h, z)
        bound = clopper_pearson_upper(k, n_c, level)
        tried.append(
            {
                "threshold": float(h.scores[z]),
                "coverage": n_cov / n_all,
                "risk": (k / n_c if n_c else None),
                "bound": bound,
            }
        )
        if bound is not None and (best_bound is None or bound < best_bound):
            best_bound = bound
        if bound is not None and bound <= target_risk:
            if best is None or z > best[0]:
                best = (z, bound, n_cov, n_c, k)
            lo_i = z  # bound met: try a lower threshold for more coverage
        elif n_c == 0:
            lo_i = z  # nothing here can be an error (e.g. only auto-fails): look lower
        else:
            hi_i = z - 1 if z > 0 else 0  # not met (or nothing counted yet): be stricter
        if lo_i >= hi_i and z == lo_i:
            break
    if best is None:
        return SelectiveThreshold(
            target_risk, delta, steps, None, 0.0, None, best_bound, 0, 0, 0, False, tried
        )
    z, bound, n_cov, n_c, k = best
    return SelectiveThreshold(
        target_risk=target_risk,
        delta=delta,
        steps=steps,
        threshold=float(h.scores[z]),
        coverage=n_cov / n_all,
        risk=(k / n_c if n_c else None),
        bound=bound,
        n_covered=n_cov,
        n_counted=n_c,
        n_loss=k,
        met=True,
        tried=tried,
    )


# --------------------------------------------------------------------------- automation bias


def automation_bias(
    agree_shown: int, n_shown: int, agree_blind: int, n_blind: int
) -> dict[str, Any]:
    """Agreement with the model when its suggestion was shown versus blind (unbiased).

    A positive difference whose interval excludes 0 means inspectors follow the model more when
    they see it than its accuracy earns: automation bias.
    """
    diff, ci = newcombe_difference(agree_shown, n_shown, agree_blind, n_blind)
    return {
        "shown": proportion(agree_shown, n_shown).to_dict(),
        "blind": proportion(agree_blind, n_blind).to_dict(),
        "difference": _finite(diff),
        "difference_ci95": _pair(ci),
    }
