"""The statistics against published values, scipy, independent computations and simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from review import stats as S

# ----------------------------------------------------------------------------- kappa


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        # Wikipedia "Cohen's kappa": the worked example and the two "same p_o" tables.
        ([[20, 5], [10, 15]], 0.4),
        ([[45, 15], [25, 15]], 0.1304),
        ([[25, 35], [5, 35]], 0.2593),
    ],
)
def test_kappa_matches_published_examples(table: list[list[int]], expected: float) -> None:
    assert S.cohens_kappa(table).value == pytest.approx(expected, abs=5e-5)


def _kappa_of_probs(p: np.ndarray) -> float:
    """Kappa written out longhand, independently of the module."""
    k = p.shape[0]
    po = sum(p[i, i] for i in range(k))
    pe = sum(p[i, :].sum() * p[:, i].sum() for i in range(k))
    return (po - pe) / (1 - pe)


def test_kappa_standard_error_equals_delta_method_variance() -> None:
    """Fleiss-Cohen-Everitt variance == multinomial delta method, gradient by finite differences."""
    counts = np.array([[75, 1, 4], [5, 4, 1], [0, 0, 10]], dtype=float)
    n = counts.sum()
    p = (counts / n).ravel()
    grad = np.zeros_like(p)
    eps = 1e-7
    for j in range(p.size):
        up, dn = p.copy(), p.copy()
        up[j] += eps
        dn[j] -= eps
        grad[j] = (_kappa_of_probs(up.reshape(3, 3)) - _kappa_of_probs(dn.reshape(3, 3))) / (
            2 * eps
        )
    cov = np.diag(p) - np.outer(p, p)
    se_delta = math.sqrt(grad @ cov @ grad / n)
    result = S.cohens_kappa(counts)
    assert result.value == pytest.approx(_kappa_of_probs(counts / n), abs=1e-12)
    assert result.se == pytest.approx(se_delta, rel=1e-5)


def test_kappa_interval_covers_true_kappa_in_95_percent_of_samples() -> None:
    rng = np.random.default_rng(7)
    p = np.array([[0.55, 0.05, 0.02], [0.04, 0.18, 0.03], [0.01, 0.02, 0.10]])
    true_kappa = _kappa_of_probs(p)
    trials, covered = 400, 0
    for _ in range(trials):
        counts = rng.multinomial(200, p.ravel()).reshape(3, 3)
        ci = S.cohens_kappa(counts).ci95
        assert ci is not None
        covered += ci[0] <= true_kappa <= ci[1]
    assert covered / trials >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)


def test_kappa_at_perfect_agreement_keeps_an_honest_interval() -> None:
    """Wald collapses to [1, 1]; the reported lower bound still reflects a small sample."""
    ci = S.cohens_kappa([[10, 0], [0, 10]]).ci95
    assert ci is not None and ci[1] == 1.0 and ci[0] < 0.8


@pytest.mark.parametrize("table", [[[0, 0], [0, 0]], [[12, 0], [0, 0]], np.zeros((0, 0))])
def test_kappa_does_not_exist_for_empty_or_one_class(table: object) -> None:
    k = S.cohens_kappa(table)  # type: ignore[arg-type]
    assert k.value is None and k.ci95 is None
    json.dumps(k.to_dict(), allow_nan=False)


# ----------------------------------------------------------------------------- proportions


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 20), (3, 20), (19, 20), (20, 20), (481, 500)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = S.wilson_interval(k, n)  # type: ignore[misc]
    assert lo == pytest.approx(ref.low, abs=1e-9)
    assert hi == pytest.approx(ref.high, abs=1e-9)


def test_newcombe_difference_matches_newcombe_1998_example() -> None:
    """Newcombe (1998), Stat Med 17:873, example (a) 56/70 - 48/80, method 10: 0.0524 to 0.3339."""
    d, ci = S.newcombe_difference(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert ci is not None
    assert ci[0] == pytest.approx(0.0524, abs=5e-5)
    assert ci[1] == pytest.approx(0.3339, abs=5e-5)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 300), (1, 300), (5, 40), (39, 40)])
def test_clopper_pearson_upper_matches_scipy_exact_interval(k: int, n: int) -> None:
    # A one-sided 95% upper bound is the upper end of the two-sided 90% exact interval.
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact").high
    assert S.clopper_pearson_upper(k, n) == pytest.approx(ref, rel=1e-9)
    assert S.clopper_pearson_upper(k, n) == pytest.approx(
        sps.beta.ppf(0.95, k + 1, n - k), rel=1e-9
    )


def test_zero_escapes_in_600_audits_bounds_escape_rate_at_half_a_percent() -> None:
    """The rule of three: 0 of n gives an upper bound of about 3/n (exactly 1 - 0.05**(1/n))."""
    assert S.clopper_pearson_upper(0, 600) == pytest.approx(1 - 0.05 ** (1 / 600), rel=1e-9)
    assert S.clopper_pearson_upper(0, 600) < 0.005  # type: ignore[operator]


@pytest.mark.parametrize(("p", "n"), [(0.005, 600), (0.03, 100), (0.2, 30)])
def test_clopper_pearson_upper_covers_true_rate_at_least_95_percent(p: float, n: int) -> None:
    ks = np.arange(n + 1)
    uppers = np.array([S.clopper_pearson_upper(int(k), n) for k in ks])
    exact_coverage = float(np.sum(sps.binom.pmf(ks, n, p) * (uppers >= p)))
    assert exact_coverage >= 0.95
    rng = np.random.default_rng(11)
    trials = 2000
    draws = rng.binomial(n, p, size=trials)
    simulated = float(np.mean(uppers[draws] >= p))
    assert simulated >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)


def test_wilson_interval_covers_true_rate_by_simulation() -> None:
    rng = np.random.default_rng(3)
    trials, p, n = 2000, 0.9, 150
    draws = rng.binomial(n, p, size=trials)
    cover = np.mean(
        [S.wilson_interval(int(k), n)[0] <= p <= S.wilson_interval(int(k), n)[1] for k in draws]
    )  # type: ignore[index]
    assert cover >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)


def test_empty_counts_give_none_never_nan() -> None:
    assert S.wilson_interval(0, 0) is None
    assert S.clopper_pearson_upper(0, 0) is None
    out = {
        "agreement": S.observed_agreement(np.zeros((0, 0))).to_dict(),
        "rates": {k: v.to_dict() for k, v in S.error_rates(S.error_counts([], [])).items()},
        "bias": S.automation_bias(0, 0, 0, 0),
        "sel": S.select_threshold(S.score_histogram([], []), 0.01).to_dict(),
        "curve": [p.to_dict() for p in S.risk_coverage_curve(S.score_histogram([], []))],
    }
    json.dumps(out, allow_nan=False)
    assert out["agreement"]["rate"] is None and out["rates"]["escape_rate"]["upper95"] is None


# ----------------------------------------------------------------------------- matrices and rates


def test_matrix_rows_are_human_and_pass_fail_collapses_defects() -> None:
    human = ["ok", "ok", "crack", "scratch", "ok", "dent"]
    model = ["ok", "crack", "crack", "ok", "ok", "scratch"]
    labels, counts = S.agreement_matrix(human, model, labels=["ok", "crack", "scratch", "dent"])
    assert labels == ["ok", "crack", "scratch", "dent"]
    assert counts[0, 1] == 1  # human ok, model crack
    assert counts[2, 0] == 1  # human scratch, model ok
    assert counts.sum() == 6
    pf = S.pass_fail(labels, counts)
    assert pf == {
        "both_pass": 2,
        "both_fail": 2,
        "human_fail_model_pass": 1,
        "human_pass_model_fail": 1,
    }
    assert S.observed_agreement(counts).rate == pytest.approx(3 / 6)


def test_matrix_from_group_rows_equals_matrix_from_items() -> None:
    human = ["ok", "ok", "crack", "dent", "dent"]
    model = ["ok", "dent", "crack", "dent", "ok"]
    a = S.agreement_matrix(human, model)
    rows = [
        ("ok", "ok", 1),
        ("ok", "dent", 1),
        ("crack", "crack", 1),
        ("dent", "dent", 1),
        ("dent", "ok", 1),
    ]
    b = S.matrix_from_counts(rows)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_escape_miss_and_false_reject_follow_their_definitions() -> None:
    # reference: 6 defects, 94 ok. model passes 2 of the defects and fails 4 of the ok items.
    reference = ["crack"] * 6 + ["ok"] * 94
    model = ["ok", "ok", "crack", "crack", "dent", "crack"] + ["scratch"] * 4 + ["ok"] * 90
    rates = S.error_rates(S.error_counts(reference, model))
    assert rates["escape_rate"].n == 92 and rates["escape_rate"].rate == pytest.approx(2 / 92)
    assert rates["miss_rate"].n == 6 and rates["miss_rate"].rate == pytest.approx(2 / 6)
    assert rates["false_reject_rate"].n == 94 and rates["false_reject_rate"].rate == pytest.approx(
        4 / 94
    )
    assert rates["escape_rate"].upper95 == pytest.approx(sps.beta.ppf(0.95, 3, 90))


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 0), (10, 2), (7, 7), (1, 30)])
def test_exact_mcnemar_matches_two_sided_binomial_test(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert S.mcnemar_exact(b, c).p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_against_truth_counts_who_was_right() -> None:
    truth = ["ok", "crack", "dent", "ok", "ok"]
    human = ["ok", "ok", "dent", "crack", "ok"]  # wrong on items 1 and 3
    model = ["ok", "crack", "ok", "ok", "ok"]  # wrong on item 2
    r = S.mcnemar_against_truth(truth, human, model)
    assert (r.b, r.c) == (2, 1)


def test_automation_bias_shows_more_agreement_when_suggestion_is_shown() -> None:
    out = S.automation_bias(190, 200, 150, 200)
    assert out["difference"] == pytest.approx(0.2)
    assert out["difference_ci95"][0] > 0
    assert out["blind"]["rate"] == pytest.approx(0.75)


# ----------------------------------------------------------------------------- selective risk


def _true_selective_risk(theta: float) -> float:
    """Scores uniform on [0, 1], P(loss | s) = 0.04 (1 - s): mean over [theta, 1] = 0.02 (1 - theta)."""
    return 0.02 * (1 - theta)


def test_selective_threshold_bound_holds_with_95_percent_probability() -> None:
    rng = np.random.default_rng(5)
    trials, failures, met = 150, 0, 0
    for _ in range(trials):
        s = rng.random(3000)
        loss = rng.random(3000) < 0.04 * (1 - s)
        r = S.select_threshold(S.score_histogram(s, loss), target_risk=0.015, delta=0.05)
        if r.met:
            met += 1
            assert r.bound is not None and r.bound <= 0.015
            failures += _true_selective_risk(r.threshold) > r.bound  # type: ignore[arg-type]
    assert met > trials // 2
    assert failures / met <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / met)


def test_selective_threshold_counts_escapes_only_among_auto_passes() -> None:
    # The model fails 300 items confidently (score 0.99), passes 3000 ok items with lower scores.
    scores = np.r_[np.full(300, 0.99), np.linspace(0.5, 0.98, 3000)]
    model_passes = np.r_[np.zeros(300, bool), np.ones(3000, bool)]
    escapes = np.zeros(3300, bool)
    r = S.select_threshold(S.score_histogram(scores, escapes, model_passes), target_risk=0.005)
    assert r.met and r.n_loss == 0
    assert r.coverage == pytest.approx(1.0)
    assert r.n_counted == 3000
    assert r.bound == pytest.approx(S.clopper_pearson_upper(0, 3000, 1 - 0.05 / r.steps))


def test_selective_threshold_reports_unmet_target_without_threshold() -> None:
    s = np.linspace(0, 1, 200)
    r = S.select_threshold(S.score_histogram(s, np.ones(200, bool)), target_risk=0.01)
    assert not r.met and r.threshold is None and r.bound is not None
    json.dumps(r.to_dict(), allow_nan=False)


def test_risk_coverage_curve_is_monotone_in_coverage_and_ends_at_full_coverage() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(1000)
    loss = rng.random(1000) < 0.1 * (1 - s)
    curve = S.risk_coverage_curve(S.score_histogram(s, loss), max_points=20)
    cov = [p.coverage for p in curve]
    assert cov == sorted(cov) and cov[-1] == pytest.approx(1.0)
    assert all(p.risk_upper95 >= p.risk for p in curve)  # type: ignore[operator]
    assert curve[-1].n_loss == int(loss.sum())


def test_histogram_from_sql_rows_equals_histogram_from_items() -> None:
    s = [0.9, 0.9, 0.5, 0.7]
    loss = [False, True, False, False]
    a = S.score_histogram(s, loss)
    b = S.histogram_from_rows([(0.5, 1, 1, 0), (0.9, 2, 2, 1), (0.7, 1, 1, 0)])
    for f in ("scores", "total", "counted", "loss"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


def test_the_95_percent_z_is_scipys_and_the_module_does_not_import_scipy_stats():
    """Z95 is written out (importing scipy.stats cost every command ~0.7 s); it must be the very
    float SciPy gives, and review.stats must import without SciPy's statistics."""
    import subprocess
    import sys

    from scipy import stats as sps

    from review.stats import Z95

    assert float(sps.norm.ppf(0.975)) == Z95
    code = "import sys, review.stats; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
