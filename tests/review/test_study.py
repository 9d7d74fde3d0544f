"""The done-when of the evidence issue, on a line whose truth is known (review.study): whenever
the assist -> partial gate passes, the true escape rate of the approved rule is under its target
in >= 95% of cases, calibrated or 1.6x over-confident, with 30 looks at the gate each."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from review import stats as S
from review import study


@pytest.mark.parametrize("setting", study.SETTINGS[1:], ids=lambda s: s.name)
def test_a_passing_gate_means_the_rule_is_under_its_target(setting: study.Setting) -> None:
    o = study.study(setting, runs=200, seed=7)
    assert o.runs == 200
    assert o.bad_rules >= 30  # the study holds rules over the target for the gate to refuse
    assert o.passes >= 20  # and good ones it can pass
    assert o.share_right is not None and o.share_right >= 0.95, o.to_dict()
    # The old gate (a fixed-sample bound, escapes against the inspector, every look) fails it.
    assert o.naive_share_right is not None and o.naive_share_right < 0.9, o.to_dict()


def test_the_anytime_bound_keeps_its_error_over_30_looks_where_a_fixed_bound_does_not() -> None:
    """At a true rate exactly at the target, checking after every 500 items up to 30 times:
    the gate passes wrongly in <= 5% of runs with the anytime bound; the one-look
    Clopper-Pearson bound checked the same way passes wrongly far more often."""
    rng = np.random.default_rng(3)
    target, looks, step, runs = 0.005, 30, 500, 400
    anytime = fixed = 0
    for _ in range(runs):
        events = np.cumsum(rng.random(looks * step) < target)
        ks = [int(events[look * step - 1]) for look in range(1, looks + 1)]
        ns = [look * step for look in range(1, looks + 1)]
        anytime += any(S.anytime_upper(k, n) <= target for k, n in zip(ks, ns, strict=True))  # type: ignore[operator]
        fixed += any(S.clopper_pearson_upper(k, n) <= target for k, n in zip(ks, ns, strict=True))  # type: ignore[operator]
    assert anytime / runs <= 0.05
    assert fixed / runs > 0.08


def test_the_exact_interval_keeps_nominal_coverage_near_one_where_wilson_does_not() -> None:
    n, p = 100, 0.99
    ks = np.arange(n + 1)
    pmf = sps.binom.pmf(ks, n, p)

    def coverage(interval) -> float:
        return float(
            sum(
                w
                for k, w in zip(ks, pmf, strict=True)
                if interval(int(k), n)[0] <= p <= interval(int(k), n)[1]
            )
        )

    assert coverage(S.wilson_interval) < 0.95  # 0.92: why proportions no longer use it
    assert coverage(S.clopper_pearson_interval) >= 0.95
    assert S.proportion(99, 100).ci95 == S.clopper_pearson_interval(99, 100)


def test_the_kappa_interval_the_gate_uses_contains_the_standard_one() -> None:
    k = S.cohens_kappa([[480, 6], [4, 10]])
    assert k.ci95 is not None and k.ci95_standard is not None
    assert k.ci95[0] <= k.ci95_standard[0] and k.ci95[1] >= k.ci95_standard[1]
    assert k.to_dict()["ci95_standard"] == list(k.ci95_standard)
