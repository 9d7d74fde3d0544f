"""Simulated inspectors: their rates converge to their settings."""

from __future__ import annotations

import statistics

import pytest

from station.synth.config import DEFECT_CLASSES
from station.synth.inspectors import SimulatedInspector

N = 20_000


def _rate(inspector: SimulatedInspector, truth: str, ok_means: bool, **kw: object) -> float:
    hits = 0
    for _ in range(N):
        label, _ = inspector.decide(truth, **kw)  # type: ignore[arg-type]
        hits += (label == "ok") == ok_means
    return hits / N


def test_sensitivity_and_specificity_converge_to_their_settings() -> None:
    insp = SimulatedInspector(
        sensitivity={"crack": 0.9, "scratch": 0.7}, specificity=0.95, fatigue_per_hour=0.0, seed=1
    )
    assert _rate(insp, "ok", ok_means=True) == pytest.approx(0.95, abs=0.01)
    assert _rate(insp, "crack", ok_means=False) == pytest.approx(0.9, abs=0.01)
    assert _rate(insp, "scratch", ok_means=False) == pytest.approx(0.7, abs=0.015)


def test_caught_defects_are_named_with_the_class_accuracy() -> None:
    insp = SimulatedInspector(
        sensitivity={"dent": 1.0}, class_accuracy=0.8, seed=2, fatigue_per_hour=0
    )
    labels = [insp.decide("dent")[0] for _ in range(N)]
    assert labels.count("dent") / N == pytest.approx(0.8, abs=0.01)
    assert "ok" not in labels
    assert set(labels) <= set(DEFECT_CLASSES)


def test_automation_bias_is_the_chance_of_following_a_wrong_shown_suggestion() -> None:
    insp = SimulatedInspector(specificity=1.0, automation_bias=0.25, fatigue_per_hour=0, seed=3)
    followed = sum(insp.decide("ok", "scratch", True)[0] == "scratch" for _ in range(N)) / N
    assert followed == pytest.approx(0.25, abs=0.01)
    hidden = sum(insp.decide("ok", "scratch", False)[0] == "scratch" for _ in range(N)) / N
    assert hidden == 0.0  # a suggestion that is not shown cannot bias anyone


def test_a_correct_suggestion_recovers_some_misses() -> None:
    insp = SimulatedInspector(
        sensitivity={"stain": 0.6},
        class_accuracy=1.0,
        follow_correct=0.5,
        fatigue_per_hour=0,
        seed=4,
    )
    alone = _rate(insp, "stain", ok_means=False)
    helped = _rate(insp, "stain", ok_means=False, suggestion="stain", shown=True)
    assert alone == pytest.approx(0.6, abs=0.015)
    assert helped == pytest.approx(0.6 + 0.4 * 0.5, abs=0.015)


def test_fatigue_lowers_accuracy_and_slows_decisions_over_the_shift() -> None:
    insp = SimulatedInspector(
        sensitivity={"crack": 0.95}, fatigue_per_hour=0.02, slowdown_per_hour=0.05, seed=5
    )
    fresh = _rate(insp, "crack", ok_means=False, t_shift_s=0.0)
    tired = _rate(insp, "crack", ok_means=False, t_shift_s=8 * 3600.0)
    assert fresh == pytest.approx(0.95, abs=0.01)
    assert tired == pytest.approx(0.95 - 0.16, abs=0.015)
    early = statistics.median(insp.decide("ok", t_shift_s=0)[1] for _ in range(4000))
    late = statistics.median(insp.decide("ok", t_shift_s=8 * 3600.0)[1] for _ in range(4000))
    assert late / early == pytest.approx(1.4, rel=0.06)


def test_decision_times_follow_the_configured_distribution() -> None:
    insp = SimulatedInspector(
        median_time_s=2.0,
        time_sigma=0.3,
        defect_time_factor=1.5,
        min_time_s=0.5,
        seed=6,
        fatigue_per_hour=0,
        slowdown_per_hour=0,
    )
    ok_times = [insp.decide("ok")[1] for _ in range(N)]
    defect_times = [insp.decide("crack")[1] for _ in range(N)]
    assert statistics.median(ok_times) == pytest.approx(2.0, rel=0.03)
    assert statistics.median(defect_times) == pytest.approx(3.0, rel=0.03)
    assert min(ok_times) >= 0.5


def test_same_seed_same_decisions() -> None:
    a, b = SimulatedInspector(seed=7), SimulatedInspector(seed=7)
    truths = ["ok", "crack", "stain", "missing", "ok"] * 50
    assert [a.decide(t, "ok", True, 100.0) for t in truths] == [
        b.decide(t, "ok", True, 100.0) for t in truths
    ]


def test_bad_settings_and_truths_are_refused() -> None:
    with pytest.raises(ValueError, match="specificity must be in"):
        SimulatedInspector(specificity=1.5)
    with pytest.raises(ValueError, match="unknown class"):
        SimulatedInspector(sensitivity={"smudge": 0.5})
    with pytest.raises(ValueError, match="truth must be"):
        SimulatedInspector().decide("smudge")
