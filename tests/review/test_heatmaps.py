"""review.heatmaps without Qt or the model: the overlay's colours, the P(defect) weighting, and
the per-version cache of opened models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from review.errors import HeatmapUnavailable
from review.heatmaps import ModelCache, ModelRef, jet, overlay, weighted

REF = ModelRef(7, "defect", "v7", "a" * 64, "models/" + "a" * 64)


def test_jet_matches_the_station_s_colour_map() -> None:
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :]
    ours = jet(ramp).astype(int)
    opencv = cv2.applyColorMap((ramp * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(int)
    assert np.abs(ours - opencv).max() <= 8


def test_overlay_reddens_the_hot_spot_and_leaves_the_rest() -> None:
    bgr = np.full((40, 60, 3), 120, np.uint8)
    heat = np.zeros((20, 30), np.float32)  # half the image's size: stretched to it
    heat[5:10, 10:15] = 1.0
    shown = overlay(bgr, heat)
    b, g, r = (int(c) for c in shown[15, 25])
    assert r - max(b, g) > 50  # JET's top is dark red, half over the grey
    assert np.array_equal(shown[:8], bgr[:8])


def test_the_map_is_weighted_by_p_defect_so_a_sure_ok_item_does_not_glow() -> None:
    heat = np.full((4, 4), 1.0, np.float32)
    assert weighted(heat, 0.001).max() == pytest.approx(0.001)
    assert weighted(heat, 1.7).max() == 1.0  # clipped, never brighter than the map
    assert weighted(heat, None).max() == 1.0  # no P(defect) recorded: the map as it is


def test_the_cache_opens_each_version_once_and_remembers_why_one_failed() -> None:
    opened: list[str] = []

    def open_model(ref: ModelRef) -> object:
        opened.append(ref.spec)
        if ref.version == "v7":
            raise RuntimeError("weights.pt: unexpected EOF\n  (a long torch message)")
        return object()

    cache = ModelCache(open_model)  # type: ignore[arg-type]
    good = ModelRef(3, "defect", "v3", "b" * 64, "")
    assert cache.get(good) is cache.get(good)
    for _ in range(2):
        with pytest.raises(HeatmapUnavailable) as e:
            cache.get(REF)
        assert str(e.value) == "model defect:v7 cannot be used here: weights.pt: unexpected EOF"
    assert opened == ["defect:v3", "defect:v7"] and cache.has(REF)
