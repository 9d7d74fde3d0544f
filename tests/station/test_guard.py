"""The input guard sends bad frames to a human and says why."""

from __future__ import annotations

import cv2
import numpy as np

from station.frames.stats import compute_stats
from station.pipeline.guard import GUARD_VERSION, InputGuard, Reference
from station.pipeline.testing import phone_image
from station.settings import GuardSettings


def check(image: np.ndarray, reference: Reference | None = None):
    return InputGuard(GuardSettings(), reference).check(compute_stats(image))


def test_a_normal_frame_passes():
    result = check(phone_image())
    assert result.passed and result.reason == ""
    assert result.version.startswith(GUARD_VERSION + "+")


def test_the_guards_version_follows_its_settings():
    """A changed bound is a new stage version (items record it; drift starts a new reference)."""
    a = InputGuard(GuardSettings()).check(compute_stats(phone_image()))
    b = InputGuard(GuardSettings(min_brightness=40)).check(compute_stats(phone_image()))
    assert a.version != b.version and b.version.startswith(GUARD_VERSION + "+")


def test_a_dark_frame_fails_as_too_dark():
    result = check((phone_image() * 0.1).astype(np.uint8))
    assert not result.passed
    assert "too dark" in result.reason


def test_a_blurred_frame_fails_as_blurred():
    flat = np.full((96, 128, 3), 110, np.uint8)
    flat[30:60, 40:90] = 60
    result = check(cv2.GaussianBlur(flat, (0, 0), 8))
    assert not result.passed
    assert "blurred" in result.reason


def test_a_saturated_frame_fails_as_clipped():
    img = phone_image()
    img[:, : img.shape[1] // 2] = 255
    result = check(img)
    assert not result.passed
    assert "clipped" in result.reason


def test_a_frame_far_from_the_reference_fails():
    ref = Reference(mean={"contrast": 10.0}, std={"contrast": 1.0}, max_z=6)
    result = check(phone_image(), ref)
    assert not result.passed
    assert "unlike the reference" in result.reason and "contrast" in result.reason
