"""Letterboxed input: images of mixed shapes keep their aspect ratio, padded with the
normalisation mean; masks, training crops and heat-maps follow the same geometry."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from artifact_copy import edited_copy
from model_images import write_folder

from model import ArtifactError, ModelError, Predictor, TrainConfig, evaluate, train
from model.data import pick_crop
from model.preprocess import (
    InputSpec,
    content_box,
    prepare,
    prepare_mask,
    to_tensor,
    uncrop_map,
)

SPEC = InputSpec(96, 64, fit="letterbox")


def _square_on_wide_image() -> tuple[np.ndarray, np.ndarray]:
    """A 200x50 grey image with a 20x20 white square, and its mask."""
    img = np.full((50, 200, 3), 90, np.uint8)
    img[15:35, 140:160] = 255
    mask = np.zeros((50, 200), np.uint8)
    mask[15:35, 140:160] = 255
    return img, mask


def test_a_wide_image_keeps_its_shape_and_is_padded_with_the_mean() -> None:
    img, _ = _square_on_wide_image()
    assert content_box(200, 50, SPEC) == (0, 20, 96, 24)
    rgb = prepare(img, SPEC)
    assert rgb.shape == (64, 96, 3)
    # the square stays square (stretched, it would be 10 wide and 26 high)
    ys, xs = np.nonzero(rgb[:, :, 0] > 170)
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(int(w) - int(h)) <= 1, (w, h)
    # the bands above and below are the mean colour: zero once normalised
    t = to_tensor(rgb, SPEC)
    assert float(t[:, :20].abs().max()) < 0.02 and float(t[:, 44:].abs().max()) < 0.02
    assert float(t[:, 20:44].abs().max()) > 0.5


def test_stretch_is_unchanged_and_is_what_old_artifacts_get() -> None:
    img, _ = _square_on_wide_image()
    stretch = InputSpec(96, 64)
    for interp, spec in ((cv2.INTER_LINEAR, stretch), (cv2.INTER_AREA, InputSpec(96, 32))):
        # the path every model before letterboxing was trained and served with
        old = cv2.resize(img, (spec.width, spec.height), interpolation=interp)
        assert np.array_equal(prepare(img, spec), cv2.cvtColor(old, cv2.COLOR_BGR2RGB))
    assert "fit" not in stretch.to_dict()  # manifests of stretch models read as before
    assert InputSpec.from_dict(stretch.to_dict()).fit == "stretch"
    assert InputSpec.from_dict(SPEC.to_dict()) == SPEC


def test_the_mask_lands_on_the_defect_in_the_letterboxed_image() -> None:
    img, mask = _square_on_wide_image()
    rgb = prepare(img, SPEC)
    m = prepare_mask(mask, SPEC)
    assert m.shape == (64, 96)
    bright = rgb[:, :, 0] > 170
    marked = m > 0.5
    assert (bright & marked).sum() >= 0.8 * bright.sum()
    assert (bright & marked).sum() >= 0.8 * marked.sum()


def test_a_heat_map_is_mapped_back_to_the_image_without_the_padding() -> None:
    img, mask = _square_on_wide_image()
    # a map over the input (here at half resolution), hot where the square landed
    heat = cv2.resize(prepare_mask(mask, SPEC), (48, 32), interpolation=cv2.INTER_AREA)
    back = uncrop_map(heat, 200, 50, SPEC)
    assert back.shape == (50, 200)
    y, x = np.unravel_index(int(np.argmax(back)), back.shape)
    assert 140 <= x < 160 and 15 <= y < 35


def _padding_share(x0: int, y0: int, size: tuple[int, int], box: tuple) -> float:
    bx, by, bw, bh = box
    cw, ch = size
    inside = max(0, min(x0 + cw, bx + bw) - max(x0, bx)) * max(
        0, min(y0 + ch, by + bh) - max(y0, by)
    )
    return 1.0 - inside / (cw * ch)


def test_clean_crops_show_the_picture_not_the_padding() -> None:
    rng = np.random.default_rng(0)
    blank = np.zeros((64, 96), np.uint8)
    wide = content_box(300, 100, SPEC)  # 96x32 strip across the middle
    assert wide == (0, 16, 96, 32)
    spots = set()
    for _ in range(100):
        x0, y0, shows = pick_crop(blank, (32, 32), rng, within=wide)
        assert not shows
        assert _padding_share(x0, y0, (32, 32), wide) == 0.0
        spots.add(x0)
    assert len(spots) > 20  # still anywhere along the strip
    # a picture narrower than the crop: the crop is centred on it, padding on both sides
    narrow = content_box(20, 60, SPEC)
    for _ in range(20):
        x0, _y0, _ = pick_crop(blank, (48, 48), rng, within=narrow)
        bx, _, bw, _ = narrow
        assert abs((x0 + 24) - (bx + bw / 2)) <= 1


def test_stretch_crops_draw_exactly_as_before() -> None:
    # the bundled model's reproduction depends on the same random crops
    mask = np.zeros((64, 96), np.uint8)
    mask[30:36, 70:80] = 255
    for m in (mask, np.zeros_like(mask)):
        a, b = np.random.default_rng(3), np.random.default_rng(3)
        full = content_box(500, 300, InputSpec(96, 64))
        assert full == (0, 0, 96, 64)
        draws_a = [pick_crop(m, (48, 32), a) for _ in range(50)]
        draws_b = [pick_crop(m, (48, 32), b, within=full) for _ in range(50)]
        assert draws_a == draws_b


def test_letterbox_shrinks_with_area_resampling_so_thin_lines_survive() -> None:
    img = np.zeros((200, 1000, 3), np.uint8)
    img[:, 500] = 255  # a one-pixel scratch, shrunk to 0.096 of its width
    rgb = prepare(img, SPEC)
    column = rgb[20:44, :, 0].max(axis=0)
    assert column.max() >= 20  # averaged into its cell, not skipped between samples


def test_a_mask_of_another_size_lands_where_its_image_does() -> None:
    img, mask = _square_on_wide_image()
    half = cv2.resize(mask, (100, 25), interpolation=cv2.INTER_NEAREST)
    m = prepare_mask(half, SPEC, (200, 50))
    assert np.abs(m - prepare_mask(mask, SPEC)).max() < 0.5


def test_stretch_heat_maps_are_resized_once_as_before() -> None:
    heat = np.random.default_rng(0).random((3, 2)).astype(np.float32)
    old = cv2.resize(heat, (200, 50), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(uncrop_map(heat, 200, 50, InputSpec(96, 64)), old)


def test_an_unknown_fit_is_refused_in_config_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stretch, letterbox"):
        InputSpec(96, 64, fit="squash")
    data = write_folder(tmp_path / "d", {"ok": 4, "scratch": 4})
    with pytest.raises(ModelError, match="expected fit to be one of stretch, letterbox"):
        train(data, tmp_path / "out", TrainConfig(epochs=1, fit="squash"))


def _rotate_half(root: Path) -> None:
    """Turn every other image (and its mask) upright: a set of wide and tall pictures."""
    for p in sorted(root.rglob("*_0[0-9][02468].png")):
        for q in (p, p.with_suffix(".mask.png")):
            im = cv2.imread(str(q), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(q), np.ascontiguousarray(np.rot90(im)))


@pytest.fixture(scope="module")
def letterbox_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("letterbox")
    data = write_folder(root / "data", {"ok": 50, "scratch": 50}, seed=5)
    held = write_folder(root / "held", {"ok": 20, "scratch": 20}, seed=6)
    _rotate_half(data)
    _rotate_half(held)
    cfg = TrainConfig(
        epochs=5,
        input_size=(96, 96),
        fit="letterbox",
        crop=(48, 48),
        batch_size=12,
        threads=1,
        val_fraction=0.3,
    )
    return train(data, root / "artifact", cfg).path, held


def test_a_letterbox_model_serves_wide_and_tall_images(letterbox_model) -> None:
    artifact, held = letterbox_model
    p = Predictor.load(artifact)
    assert p.spec.fit == "letterbox"
    assert p.manifest.raw["input"]["fit"] == "letterbox"
    tall = cv2.imread(str(held / "scratch" / "scratch_000.png"))
    wide = cv2.imread(str(held / "scratch" / "scratch_001.png"))
    assert tall.shape[0] > tall.shape[1] and wide.shape[1] > wide.shape[0]
    for im in (tall, wide):
        assert p.explain(im).shape == im.shape[:2]
    r = evaluate(p, held)
    assert r["n"] == 40
    assert r["auroc_defect"] > 0.75, r["auroc_defect"]


def test_a_bad_fit_in_the_manifest_is_refused(letterbox_model, tmp_path: Path) -> None:
    copy = edited_copy(
        letterbox_model[0], tmp_path / "a", lambda m: m["input"].update(fit="squash")
    )
    with pytest.raises(ArtifactError, match="fit"):
        Predictor.load(copy)
