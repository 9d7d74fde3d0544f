"""Drift statistics: each says "no change" on two samples of one distribution and sees a change
of the size a line would act on."""

from __future__ import annotations

import math

import numpy as np

from review.drift import adwin_rise, mmd_permutation, normalised_wasserstein, p_chart_z


def test_the_normalised_wasserstein_distance_is_in_units_of_the_references_spread():
    rng = np.random.default_rng(0)
    ref = rng.normal(100, 10, 500)
    same = rng.normal(100, 10, 500)
    shifted = rng.normal(103, 10, 500)  # 0.3 standard deviations
    assert normalised_wasserstein(ref, same, 1.0) < 0.1  # below the default warning
    assert 0.2 < normalised_wasserstein(ref, shifted, 1.0) < 0.4
    # the same shift in other units reads the same
    assert math.isclose(
        normalised_wasserstein(ref * 7, shifted * 7, 1.0),
        normalised_wasserstein(ref, shifted, 1.0),
        rel_tol=1e-9,
    )


def test_a_reference_with_no_spread_is_measured_against_the_floor_not_divided_by_zero():
    ref = np.zeros(200)  # e.g. no clipped pixels on any item
    win = np.full(200, 0.001)
    assert normalised_wasserstein(ref, win, 0.005) == 0.2
    assert math.isnan(normalised_wasserstein(np.array([]), win, 0.005))


def test_mmd_finds_a_shifted_embedding_and_not_a_resampled_one():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (400, 16))
    same = mmd_permutation(ref, rng.normal(0, 1, (400, 16)), permutations=200)
    moved = mmd_permutation(ref, rng.normal(0.4, 1, (400, 16)), permutations=200)
    assert same.p_value > 0.01 and same.mmd2 < 0.01
    assert moved.p_value <= 1 / 201 + 1e-12 and moved.mmd2 > 5 * same.mmd2
    assert moved.n_reference == moved.n_window == 300  # capped, evenly spaced


def test_the_p_chart_counts_both_samples_noise():
    # 40% against 30%, 500 each: (0.1) / sqrt(0.21 * (2 / 500)) = 3.45 standard errors
    assert math.isclose(p_chart_z(0.3, 200, 500, 500), 0.1 / math.sqrt(0.21 * 0.004), rel_tol=1e-9)
    assert p_chart_z(0.3, 150, 500, 500) == 0.0
    assert p_chart_z(0.0, 0, 500, 500) < 0 < p_chart_z(0.0, 5, 500, 500)  # a width at rate 0


def test_adwin_reports_a_rise_in_disagreement_and_ignores_a_fall():
    rng = np.random.default_rng(2)
    rise = np.r_[rng.random(600) < 0.05, rng.random(400) < 0.35].astype(float)
    found = adwin_rise(rise)
    assert found.at is not None and 600 <= found.at < 800
    assert found.rise > 0.15 and found.after > found.before
    fall = np.r_[rng.random(600) < 0.35, rng.random(400) < 0.05].astype(float)
    assert adwin_rise(fall).at is None
    steady = (rng.random(2000) < 0.05).astype(float)
    assert adwin_rise(steady).rise == 0.0
