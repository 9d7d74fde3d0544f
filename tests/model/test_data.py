"""Reading image folders: masks, unreadable files, bad folders, group-aware splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from model_images import write_folder

from model import DataError, TrainConfig, UnknownArchitecture, scan_folder, train
from model.data import Sample, group_split, load_samples, tile_groups
from model.preprocess import InputSpec


def test_masks_are_supervision_not_images(tmp_path: Path) -> None:
    write_folder(tmp_path, {"ok": 3, "stain": 4})
    scan = scan_folder(tmp_path)
    assert len(scan.samples) == 7
    assert all(not s.path.name.endswith(".mask.png") for s in scan.samples)
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in scan.samples)
    loaded = load_samples(scan, InputSpec(48, 32))
    stain = [m for m, y in zip(loaded.masks, loaded.labels, strict=True) if y == 1]
    assert all(m is not None and m.max() == 255 for m in stain)


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    write_folder(tmp_path, {"ok": 3, "stain": 3})
    (tmp_path / "ok" / "junk.jpg").write_bytes(b"\x00\x01garbage")
    scan = scan_folder(tmp_path)
    loaded = load_samples(scan, InputSpec(48, 32))
    assert len(loaded.images) == 6
    assert [Path(p).name for p, _ in loaded.skipped] == ["junk.jpg"]


def test_empty_and_single_class_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not one"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "ok").mkdir()
    with pytest.raises(DataError, match="found none"):
        scan_folder(tmp_path)
    write_folder(tmp_path, {"ok": 3})
    with pytest.raises(DataError, match="only 'ok'"):
        scan_folder(tmp_path)


def test_a_required_ok_class_must_exist(tmp_path: Path) -> None:
    write_folder(tmp_path, {"oil": 2, "stain": 2}, masks=False)
    assert scan_folder(tmp_path, "ok").ok_class is None  # a defect-type set: allowed
    with pytest.raises(DataError, match="'free'"):
        scan_folder(tmp_path, "free", require_ok=True)


def test_training_on_only_unreadable_images_fails_clearly(tmp_path: Path) -> None:
    for c in ("ok", "stain"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="unreadable"):
        train(tmp_path, tmp_path / "out", TrainConfig(epochs=1, input_size=(48, 32)))


def test_unknown_architecture_is_refused_before_reading_data(tmp_path: Path) -> None:
    write_folder(tmp_path, {"ok": 2, "stain": 2})
    with pytest.raises(UnknownArchitecture, match="mobilenet_v3_small"):
        train(tmp_path, tmp_path / "out", TrainConfig(arch="lenet9000", epochs=1))


def test_tile_regions_stay_on_one_side_of_the_split() -> None:
    names = []
    for base in (100, 1000, 5000, 9000, 20000, 30000):
        names += [f"exp{k}_num_{base + 15 * k}" for k in range(1, 7)]
    samples = [Sample(Path(f"free/{n}.jpg"), "free", None) for n in names]
    groups = tile_groups(samples)
    assert len(set(groups)) == 6
    labels = [0] * len(samples)
    tr, va = group_split(labels, groups, 0.3, seed=0)
    assert va and tr
    assert not {groups[i] for i in tr} & {groups[i] for i in va}


def test_auto_grouping_recognises_tile_names(tmp_path: Path) -> None:
    img = np.full((20, 30), 100, np.uint8)
    for c, nums in (("free", (10, 25, 900)), ("crack", (5000, 5020))):
        (tmp_path / c).mkdir()
        for k, n in enumerate(nums):
            cv2.imwrite(str(tmp_path / c / f"exp{k + 1}_num_{n}.jpg"), img)
    scan = scan_folder(tmp_path, "free")
    assert scan.group_by == "tiles"
    assert len({s.group for s in scan.samples}) == 3
