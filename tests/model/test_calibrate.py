"""Temperature scaling and the numbers built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import CalibrationError, ece, fit_temperature
from model.calibrate import coverage_threshold, softmax_np, two_threshold_coverage
from model.evaluate import auroc, compute_metrics


def _overconfident(n: int = 2000, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is right ~70% of the time but claims ~99%."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g)
    logits[torch.arange(n), labels] += 1.5
    return logits * 6.0, labels


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    logits, labels = _overconfident()
    cal = fit_temperature(logits, labels)
    assert cal.kept and cal.temperature > 2.0
    assert cal.nll_after < cal.nll_before
    assert cal.ece_after < cal.ece_before / 3
    assert cal.ece_before == pytest.approx(ece(softmax_np(logits.numpy()), labels.numpy()))


def test_probabilities_instead_of_logits_are_refused() -> None:
    logits, labels = _overconfident(200)
    with pytest.raises(CalibrationError, match="probabilities"):
        fit_temperature(torch.softmax(logits, 1), labels)


def test_a_temperature_that_does_not_help_is_not_kept() -> None:
    # already calibrated: labels drawn from the softmax itself; any change must lower NLL to stay
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(400, 3, generator=g)
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
    cal = fit_temperature(logits, labels)
    assert cal.nll_after <= cal.nll_before
    if not cal.kept:
        assert cal.temperature == 1.0 and "did not lower" in cal.note


def test_bad_logits_are_refused() -> None:
    with pytest.raises(CalibrationError, match="finite"):
        fit_temperature(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(CalibrationError, match="expected logits"):
        fit_temperature(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_coverage_threshold_needs_enough_items_and_respects_the_error_cap() -> None:
    score = np.linspace(1.0, 0.0, 200)
    wrong = np.zeros(200, bool)
    wrong[150:] = True  # the least confident quarter is wrong
    t = coverage_threshold(score, wrong, max_error=0.01)
    assert t["coverage"] == pytest.approx(150 / 200, abs=0.02)
    assert t["error"] <= 0.01
    assert coverage_threshold(score[:10], wrong[:10], min_count=20)["threshold"] is None


def test_auroc_matches_simple_cases() -> None:
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([False, True])) == 0.5
    assert auroc(np.array([0.5, 0.6]), np.array([True, True])) is None


def _binary_metrics(p_defect: np.ndarray, is_defect: np.ndarray) -> dict:
    """compute_metrics of a two-class (ok, scratch) model that gave these P(defect)."""
    logits = np.log(np.stack([1 - p_defect, p_defect], axis=1))
    return compute_metrics(logits, is_defect.astype(int), ["ok", "scratch"], 0, temperature=1.0)


def test_two_thresholds_decide_what_one_confidence_threshold_cannot() -> None:
    # 100 clean parts confidently passed, 50 defects fairly surely failed, and two clean parts
    # the model is sure are defective (one odd region under two lightings)
    p_defect = np.array([0.01] * 100 + [0.9] * 50 + [0.995] * 2)
    is_defect = np.array([False] * 100 + [True] * 50 + [False] * 2)
    r = _binary_metrics(p_defect, is_defect)
    # one threshold on max(P(ok), P(defect)) meets the two false alarms first: nothing decidable
    assert r["defect_coverage_at_1pct"]["coverage"] == 0.0
    # the station's separate thresholds auto-pass the clean parts and leave the rest to people
    assert r["auto_pass"]["decided"] == 100 and r["auto_fail"]["decided"] == 0
    both = r["station_coverage_at_1pct"]
    assert both["decided"] == 100
    assert both["coverage"] == pytest.approx(100 / 152)
    assert both["error"] == 0.0


def test_two_threshold_error_is_the_weighted_error_of_both_sides() -> None:
    passed = {"threshold": 0.99, "coverage": 0.5, "error": 0.01, "decided": 100}
    failed = {"threshold": 0.98, "coverage": 0.25, "error": 0.0, "decided": 50}
    r = two_threshold_coverage(passed, failed, 200)
    assert r == {"coverage": 0.75, "error": pytest.approx(1 / 150), "decided": 150}
    none = {"threshold": None, "coverage": 0.0, "error": None, "decided": 0}
    assert two_threshold_coverage(none, none, 200) == {"coverage": 0.0, "error": None, "decided": 0}


def test_auto_thresholds_stay_above_one_half_even_with_few_defects() -> None:
    # 1000 clean parts, 5 defects at P(defect) 0.7: "pass everything under 0.7" errs only 0.5%,
    # but a pass threshold under one half is not one the station takes
    p_defect = np.array([0.01] * 1000 + [0.7] * 5 + [0.6] * 4 + [0.4] * 4)
    is_defect = np.array([False] * 1000 + [True] * 5 + [False] * 4 + [True] * 4)
    r = _binary_metrics(p_defect, is_defect)
    # P(ok) 0.6 is the lowest pass threshold over one half: the 4 defects at P(defect) 0.4 pass
    # (0.4% error), the 5 at 0.7 do not (under one half, every item would have been "decided")
    assert r["auto_pass"]["threshold"] == pytest.approx(0.6)
    assert r["auto_pass"]["decided"] == 1004
    assert r["auto_fail"]["threshold"] is None  # 4 clean parts among 9 above one half
    both = r["station_coverage_at_1pct"]
    assert both["decided"] == 1004 and both["coverage"] < 1.0
    with pytest.raises(ValueError, match="above 0.5"):
        two_threshold_coverage(
            {"threshold": 0.4, "coverage": 1.0, "error": 0.0, "decided": 10},
            {"threshold": None, "coverage": 0.0, "error": None, "decided": 0},
            10,
        )
