"""Crop training: each crop is labelled from the mask, never from a sliver; the served model
still takes whole images; data that cannot be labelled per crop is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from artifact_copy import edited_copy
from model_images import write_folder

from model import ArtifactError, DataError, ModelError, Predictor, TrainConfig, evaluate, train
from model.data import CROP_MIN_PIXELS, CROP_SHARE, augment, pick_crop


def _blob_mask(h: int = 64, w: int = 96) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[30:36, 70:80] = 255
    return m


def test_a_clean_image_gives_clean_crops_anywhere() -> None:
    rng = np.random.default_rng(0)
    spots = {pick_crop(np.zeros((64, 96), np.uint8), (48, 32), rng)[:2] for _ in range(50)}
    assert all(not pick_crop(np.zeros((64, 96), np.uint8), (48, 32), rng)[2] for _ in range(20))
    assert len(spots) > 10  # not always the same corner
    assert all(0 <= x <= 48 and 0 <= y <= 32 for x, y in spots)


def test_crop_labels_follow_the_mask_and_never_a_sliver() -> None:
    rng = np.random.default_rng(1)
    mask = _blob_mask()
    total = int((mask > 25).sum())
    shown = 0
    for _ in range(400):
        x0, y0, shows = pick_crop(mask, (48, 32), rng)
        inside = int((mask[y0 : y0 + 32, x0 : x0 + 48] > 25).sum())
        if shows:
            shown += 1
            assert inside >= CROP_SHARE * total or inside >= CROP_MIN_PIXELS
        else:
            assert inside == 0
    assert 0.3 < shown / 400 < 0.95  # focused crops show it often, random ones often do not


def test_a_defect_in_separate_specks_is_shown_speck_by_speck() -> None:
    mask = np.zeros((64, 96), np.uint8)
    for x, y in ((5, 5), (85, 5), (45, 55)):  # three 3x3 specks far apart: none is half the mask
        mask[y : y + 3, x : x + 3] = 255
    rng = np.random.default_rng(5)
    draws = [pick_crop(mask, (24, 16), rng) for _ in range(300)]
    assert sum(shows for _, _, shows in draws) > 60
    for x0, y0, shows in draws:  # shown crops hold half a speck or more, clean ones none
        inside = int((mask[y0 : y0 + 16, x0 : x0 + 24] > 25).sum())
        assert inside >= CROP_SHARE * 9 if shows else inside == 0


def test_augmentation_keeps_image_and_mask_aligned_into_the_border() -> None:
    mask = np.zeros((64, 96), np.uint8)
    mask[28:36, 0:6] = 255  # at the left edge: a shift reflects it into the border
    rgb = np.repeat(mask[:, :, None], 3, axis=2)
    for seed in range(40):
        img, m = augment(rgb, mask, np.random.default_rng(seed))
        assert m is not None
        bright = img.mean(axis=2) > 127
        assert (bright == (m > 127)).mean() > 0.99, seed


def test_a_large_defect_counts_when_it_fills_part_of_the_crop() -> None:
    mask = np.zeros((64, 96), np.uint8)
    mask[:, 10:90] = 255  # uneven lighting over most of the part: never half inside one crop
    x0, y0, shows = pick_crop(mask, (24, 16), np.random.default_rng(2), focus=1.0)
    assert shows and mask[y0 : y0 + 16, x0 : x0 + 24].any()


def test_a_crop_larger_than_the_image_is_refused() -> None:
    with pytest.raises(DataError, match="no larger than the image"):
        pick_crop(_blob_mask(), (128, 32), np.random.default_rng(0))


def test_crop_training_needs_masks_and_a_defect_free_class(tmp_path: Path) -> None:
    no_masks = write_folder(tmp_path / "a", {"ok": 6, "scratch": 6}, masks=False)
    cfg = TrainConfig(epochs=1, input_size=(96, 64), crop=(48, 32), val_fraction=0.3)
    with pytest.raises(DataError, match="mask .* beside every defect image; 6 have none"):
        train(no_masks, tmp_path / "out", cfg)
    no_ok = write_folder(tmp_path / "b", {"scratch": 6, "stain": 6})
    with pytest.raises(DataError, match="needs a defect-free class"):
        train(no_ok, tmp_path / "out", cfg)
    with pytest.raises(ModelError, match="within the input size 96x64"):
        train(no_ok, tmp_path / "out", TrainConfig(epochs=1, input_size=(96, 64), crop=(128, 32)))


@pytest.fixture(scope="module")
def crop_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("crops")
    data = write_folder(root / "data", {"ok": 80, "scratch": 60, "stain": 60}, seed=3)
    held = write_folder(root / "held", {"ok": 30, "scratch": 30, "stain": 30}, seed=4)
    cfg = TrainConfig(
        epochs=6, input_size=(96, 64), crop=(48, 32), batch_size=12, threads=1, seed=0
    )
    return train(data, root / "artifact", cfg).path, held


def test_a_crop_trained_model_serves_whole_images_and_finds_defects(crop_model) -> None:
    artifact, held = crop_model
    predictor = Predictor.load(artifact)
    m = predictor.manifest.raw
    assert m["map_pool_k"] == 2
    assert m["training"]["config"]["crop"] == [48, 32]
    assert "48x32 crops" in m["summary"]
    # the defect score's line is refitted on whole validation images, never for the worse
    refit = m["training"]["score_refit"]
    assert refit["nll_after"] <= refit["nll_before"]
    # this validation set is separable: without its prior the refit ran to a step (scale x43)
    assert 0 < refit["scale"] / refit["scale_before"] < 10
    # and the served net scores with the refitted line
    assert float(predictor.net.score_scale.detach()) == pytest.approx(refit["scale"], rel=1e-5)
    assert float(predictor.net.score_bias.detach()) == pytest.approx(
        refit["bias"], rel=1e-5, abs=1e-6
    )
    best = m["training"]["best_epoch"]
    assert m["training"]["history"][best - 1]["val_nll"] == pytest.approx(refit["nll_after"])
    assert (predictor.spec.width, predictor.spec.height) == (96, 64)
    report = evaluate(predictor, held)
    assert report["auroc_defect"] > 0.9  # chance is 0.5


def test_defect_images_with_blank_masks_are_left_out_and_counted(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "d", {"ok": 30, "scratch": 30}, seed=6)
    blank = sorted((data / "scratch").glob("*.mask.png"))[:4]
    for b in blank:
        b.write_bytes((data / "ok" / "ok_000.mask.png").read_bytes())  # an all-black mask
    cfg = TrainConfig(epochs=1, input_size=(96, 64), crop=(48, 32), batch_size=12, threads=1)
    m = train(data, tmp_path / "out", cfg).manifest
    d = m["training"]["data"]
    assert 0 < d["blank_mask_defects_left_out"] <= 4
    assert d["train_images"] + d["validation_images"] + d["blank_mask_defects_left_out"] == 60


def test_a_bad_pool_size_in_the_manifest_is_refused(crop_model, tmp_path: Path) -> None:
    copy = edited_copy(crop_model[0], tmp_path / "a", lambda m: m.update(map_pool_k=0))
    with pytest.raises(ArtifactError, match="map_pool_k"):
        Predictor.load(copy)


def test_moving_average_weights_are_the_ones_kept(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "d", {"ok": 24, "scratch": 24}, seed=7)
    base = dict(epochs=2, input_size=(96, 64), crop=(48, 32), batch_size=12, threads=1)
    plain = train(data, tmp_path / "plain", TrainConfig(**base)).manifest
    averaged = train(data, tmp_path / "ema", TrainConfig(**base, ema_decay=0.9)).manifest
    assert averaged["training"]["config"]["ema_decay"] == 0.9
    # same seed, same batches: only the averaging differs, and it shows in the kept weights
    assert averaged["files"]["weights.pt"] != plain["files"]["weights.pt"]
    p = Predictor.load(tmp_path / "ema")
    assert 0.0 <= p.predict(np.full((64, 96, 3), 128, np.uint8)).p_defect <= 1.0
    with pytest.raises(ModelError, match="EMA decay in \\(0, 1\\)"):
        train(data, tmp_path / "bad", TrainConfig(**base, ema_decay=1.5))
