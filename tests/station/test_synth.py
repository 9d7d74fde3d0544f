"""The synthetic line: determinism, truth that matches what was drawn, drift knobs, export."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from frames_fixtures import DATA, small_config

from station.errors import SourceError, StationError
from station.frames.stats import compute_stats
from station.synth.config import DEFECT_CLASSES, LABELS, SynthConfig
from station.synth.export import export_dataset
from station.synth.line import SyntheticLine
from station.synth.render import build_phone, item_label, render_item


def test_same_seed_gives_the_same_line_bit_for_bit() -> None:
    a, b = SyntheticLine(small_config(seed=3)), SyntheticLine(small_config(seed=3))
    for i in (0, 20, 45, 70, 130):
        fa, fb = a.frame(i), b.frame(i)
        assert np.array_equal(fa.image, fb.image) and fa.meta == fb.meta
    ia, ib = render_item(small_config(seed=3), 4), render_item(small_config(seed=3), 4)
    assert np.array_equal(ia.image, ib.image) and np.array_equal(ia.mask, ib.mask)
    assert ia.meta == ib.meta


def test_different_seeds_give_different_lines() -> None:
    a, b = render_item(small_config(seed=1), 0), render_item(small_config(seed=2), 0)
    assert not np.array_equal(a.image, b.image)


def test_an_item_does_not_depend_on_what_was_rendered_before() -> None:
    config = small_config(seed=9)
    direct = render_item(config, 5)
    for i in range(5):
        render_item(config, i)
    again = render_item(config, 5)
    assert np.array_equal(direct.image, again.image)
    line = SyntheticLine(config)
    assert line.truth(5) == direct.label


def test_mask_is_non_empty_exactly_when_a_defect_is_present() -> None:
    config = small_config(seed=4, defect_rate=0.6, severity=0.5)
    labels = Counter()
    for i in range(60):
        item = render_item(config, i)
        labels[item.label] += 1
        assert item.mask.shape == item.image.shape[:2] and item.mask.dtype == np.uint8
        assert set(np.unique(item.mask)) <= {0, 255}
        if item.label == "ok":
            assert not item.mask.any() and item.meta["defects"] == []
        else:
            assert item.mask.any(), (i, item.label)
            assert item.meta["defects"][0]["type"] == item.label
    assert set(labels) == set(LABELS)  # every class appeared


@pytest.mark.parametrize("label", DEFECT_CLASSES)
def test_each_defect_changes_the_pixels_inside_its_mask(label: str) -> None:
    """The mask marks where the drawing differs from the same phone without the defect."""
    found = None
    for i in range(200):
        config = small_config(
            seed=21, defect_rate=1.0, mix={label: 1.0}, width=640, height=360, noise=0.0
        )
        if item_label(config, i) == label:
            found = i
            break
    assert found is not None
    config = small_config(
        seed=21, defect_rate=1.0, mix={label: 1.0}, width=640, height=360, noise=0.0
    )
    defective = render_item(config, found)
    clean = render_item(
        small_config(seed=21, defect_rate=0.0, width=640, height=360, noise=0.0), found
    )
    diff = cv2.absdiff(defective.image, clean.image).max(axis=2)
    inside = diff[defective.mask > 0]
    outside = diff[defective.mask == 0]
    assert inside.max() >= 25, f"{label} is not visible: max change {inside.max()}"
    assert np.count_nonzero(outside > 25) <= 0.02 * max(1, np.count_nonzero(defective.mask))


def test_defect_rate_and_class_mix_are_respected() -> None:
    config = SynthConfig(seed=5, defect_rate=0.25, mix={"crack": 3.0, "scratch": 1.0})
    labels = Counter(item_label(config, i) for i in range(4000))
    assert labels["ok"] / 4000 == pytest.approx(0.75, abs=0.025)
    assert set(labels) == {"ok", "crack", "scratch"}
    assert labels["crack"] / (labels["crack"] + labels["scratch"]) == pytest.approx(0.75, abs=0.04)


def test_line_frames_carry_the_truth_of_the_phone_in_view() -> None:
    line = SyntheticLine(small_config(seed=2, defect_rate=0.5))
    for i in range(line.total_frames(5)):
        item, phase, _ = line.locate(i)
        meta = line.frame(i).meta if i % 7 == 0 else None
        if meta is None:
            continue
        assert meta["phase"] == phase and meta["item_id"] == item
        assert meta["truth"] == (None if item is None else line.truth(item))
        assert line.truth_for(i) == meta["truth"]


def test_a_still_looks_like_the_line_while_its_phone_dwells() -> None:
    config = small_config(seed=6, width=640, height=360)
    line = SyntheticLine(config)
    for item in (0, 3):
        dwell_mid = line.lead + item * line.cycle + line.enter + line.dwell // 2
        frame = line.frame(dwell_mid).image.astype(np.int16)
        still = render_item(config, item).image.astype(np.int16)
        assert np.abs(frame - still).mean() < 4.0


def test_drift_knobs_change_the_input_statistics() -> None:
    base = small_config(seed=8, width=640, height=360)
    plain = compute_stats(render_item(base, 3).image)
    dim = compute_stats(
        render_item(small_config(seed=8, width=640, height=360, light=0.5), 3).image
    )
    blur = compute_stats(
        render_item(small_config(seed=8, width=640, height=360, defocus=3.0), 3).image
    )
    assert dim.brightness < 0.6 * plain.brightness
    assert blur.sharpness < 0.5 * plain.sharpness
    later = small_config(seed=8, light=0.5, drift_after=10, drift_ramp_items=0)
    assert (
        compute_stats(render_item(later, 3).image).brightness
        > compute_stats(render_item(later, 12).image).brightness
    )


def test_new_colour_and_new_defect_look_are_recorded() -> None:
    config = small_config(
        seed=8, phone_color="blue", defect_style="v2", defect_rate=1.0, drift_after=2
    )
    before, after = render_item(config, 0), render_item(config, 2)
    assert after.meta["phone"]["colour"] == "blue" and before.meta["phone"]["colour"] in {
        "white",
        "black",
    }
    assert before.meta["defect_style"] == "v1" and after.meta["defect_style"] == "v2"
    assert after.meta["drift"]["new_colour"] == "blue"


def test_bad_settings_are_refused_with_what_was_expected() -> None:
    with pytest.raises(SourceError, match="mix has unknown classes"):
        SynthConfig(mix={"smudge": 1.0})
    with pytest.raises(SourceError, match="phone_color must be one of"):
        SynthConfig(phone_color="mauve")
    with pytest.raises(SourceError, match="class:weight"):
        SynthConfig.from_options({"mix": "crack:lots"})


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"travel_s": "nan"}, "travel_s must be a finite number, got nan"),
        ({"dwell_s": "inf"}, "dwell_s must be a finite number, got inf"),
        ({"gap_s": "-inf"}, "gap_s must be a finite number, got -inf"),
        ({"fps": "nan"}, "fps must be a finite number, got nan"),
        ({"severity": "nan"}, "severity must be a finite number, got nan"),
        ({"light": "inf"}, "light must be a finite number, got inf"),
        ({"mix": "crack:nan"}, "mix weight of crack must be a finite number >= 0, got nan"),
        ({"mix": "crack:1+dent:inf"}, "mix weight of dent must be a finite number >= 0, got inf"),
        ({"mix": "crack:1e300+dent:1e300"}, r"mix weights must be in \[0, 1e\+06\]"),
        ({"travel_s": "0"}, r"travel_s must be in \(0, 3600\] seconds, got 0.0"),
        ({"dwell_s": "1e9"}, r"dwell_s must be in \(0, 3600\] seconds, got 1000000000.0"),
        ({"gap_s": "-1"}, r"gap_s must be in \[0, 3600\] seconds, got -1.0"),
    ],
)
def test_non_finite_or_out_of_range_numbers_are_refused_naming_the_key(
    options: dict[str, str], expected: str
) -> None:
    with pytest.raises(SourceError, match=expected):
        SynthConfig.from_options(options)


def test_non_finite_numbers_given_directly_are_refused_too() -> None:
    with pytest.raises(SourceError, match="defect_rate must be a finite number, got nan"):
        SynthConfig(defect_rate=float("nan"))
    with pytest.raises(SourceError, match="mix weight of stain must be a finite number"):
        SynthConfig(mix={"stain": float("inf")})


def test_max_items_ends_the_source() -> None:
    from station.synth.line import SyntheticLineSource

    source = SyntheticLineSource(small_config(max_items=2, width=160, height=90))
    source.open()
    n = 0
    while source.read() is not None:
        n += 1
    assert n == source.line.total_frames(2)


def test_sprite_mask_lies_on_the_phone() -> None:
    config = small_config(
        seed=12, defect_rate=1.0, mix={"crack": 1.0, "scratch": 1.0, "stain": 1.0}
    )
    sprite = build_phone(config, 0)
    covered = sprite.keep["sharp"][..., 0] < 128
    marked = sprite.mask > 0
    assert np.count_nonzero(marked & covered) >= 0.9 * np.count_nonzero(marked)


# ---------------------------------------------------------------------- export


def test_export_writes_imagefolder_layout_masks_and_manifest(tmp_path: Path) -> None:
    config = small_config(seed=3, defect_rate=0.5)
    summary = export_dataset(tmp_path / "ds", 14, config)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["n"] == 14 and len(manifest["items"]) == 14
    assert sum(summary.counts.values()) == 14
    for entry in manifest["items"]:
        folder, name = entry["file"].split("/")
        assert folder == entry["label"]
        assert entry["mask"] == f"{folder}/{name[:-4]}.mask.png"
        image = cv2.imread(str(tmp_path / "ds" / entry["file"]))
        mask = cv2.imread(str(tmp_path / "ds" / entry["mask"]), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (180, 320, 3) and mask.shape == (180, 320)
        assert bool(mask.any()) == (entry["label"] != "ok")  # ok masks are all black
        assert entry["defect_pixels"] == np.count_nonzero(mask)
    again = render_item(config, manifest["items"][3]["index"])
    assert np.array_equal(
        again.image, cv2.imread(str(tmp_path / "ds" / manifest["items"][3]["file"]))
    )


def test_export_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "precious.txt").write_text("keep me")
    with pytest.raises(StationError, match="not empty"):
        export_dataset(tmp_path / "ds", 2, small_config())
    export_dataset(tmp_path / "ds", 2, small_config(), overwrite=True)
    assert (tmp_path / "ds" / "precious.txt").exists()


def _pngs(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}


def _listed(folder: Path) -> set[str]:
    items = json.loads((folder / "manifest.json").read_text())["items"]
    return {e["file"] for e in items} | {e["mask"] for e in items}


def test_overwrite_removes_the_earlier_export_but_nothing_else(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    export_dataset(ds, 10, small_config(seed=1, width=96, height=64, defect_rate=0.7))
    (ds / "README.txt").write_text("keep me")
    (ds / "ok" / "notes.txt").write_text("keep me too")
    (ds / "crack" / ".tmp-999-s1_000001.png").write_bytes(b"left by a crash")
    export_dataset(ds, 3, small_config(seed=2, width=96, height=64), overwrite=True)
    assert _pngs(ds) == _listed(ds) and len(_listed(ds)) == 6
    assert (ds / "README.txt").read_text() == "keep me"
    assert (ds / "ok" / "notes.txt").read_text() == "keep me too"


def test_overwrite_never_deletes_outside_the_export_folder(tmp_path: Path) -> None:
    ds, elsewhere = tmp_path / "ds", tmp_path / "elsewhere"
    elsewhere.mkdir()
    victims = [elsewhere / "photo.png", tmp_path / "beside.png"]
    for victim in victims:
        victim.write_bytes(b"precious")
    export_dataset(ds, 2, small_config(seed=1, width=96, height=64))
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["items"] += [
        {"file": "../beside.png", "mask": "ok/../../beside.png"},
        {"file": str(victims[0]), "mask": "../elsewhere/photo.png"},
    ]
    (ds / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(ds / "dent")
    (ds / "dent").symlink_to(elsewhere, target_is_directory=True)  # a class folder elsewhere
    export_dataset(ds, 2, small_config(seed=3, width=96, height=64), overwrite=True)
    assert all(victim.read_bytes() == b"precious" for victim in victims)


def test_overwrite_of_a_folder_without_a_manifest_clears_only_class_folder_pngs(
    tmp_path: Path,
) -> None:
    """An export cut short before its manifest was written is still cleaned up."""
    ds = tmp_path / "ds"
    (ds / "scratch").mkdir(parents=True)
    (ds / "scratch" / "s0_000099.png").write_bytes(b"old")
    (ds / "scratch" / "s0_000099.mask.png").write_bytes(b"old")
    (ds / "photo.png").write_bytes(b"not in a class folder")
    export_dataset(ds, 2, small_config(seed=1, width=96, height=64), overwrite=True)
    assert _pngs(ds) == _listed(ds) | {"photo.png"}


# ---------------------------------------------------------------------- realism


def test_brightness_and_contrast_are_in_the_range_of_the_real_photos() -> None:
    msd = DATA / "msd"
    if not msd.is_dir():
        pytest.skip(f"real photos not found at {msd} (../shared/data is absent)")
    real = [compute_stats(cv2.imread(str(p))) for p in sorted(msd.glob("*/*.jpg"))[::6]]
    synth = [
        compute_stats(render_item(SynthConfig(seed=1, width=640, height=360), i).image)
        for i in range(8)
    ]
    lo = min(s.brightness for s in real) - 10
    hi = max(s.brightness for s in real) + 10
    assert all(lo <= s.brightness <= hi for s in synth), (lo, hi, [s.brightness for s in synth])
    mean_contrast_real = np.mean([s.contrast for s in real])
    mean_contrast_synth = np.mean([s.contrast for s in synth])
    assert 0.5 * mean_contrast_real <= mean_contrast_synth <= 2.0 * mean_contrast_real


def test_public_names_resolve() -> None:
    import station.frames
    import station.synth

    for module in (station.frames, station.synth):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, (module.__name__, missing)


def test_export_with_two_workers_writes_the_same_files(tmp_path: Path) -> None:
    config = small_config(seed=4, defect_rate=0.5, width=160, height=90)
    export_dataset(tmp_path / "one", 6, config)
    export_dataset(tmp_path / "two", 6, config, workers=2)
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert one["items"] == two["items"]
    for entry in one["items"]:
        assert (tmp_path / "one" / entry["file"]).read_bytes() == (
            tmp_path / "two" / entry["file"]
        ).read_bytes()
