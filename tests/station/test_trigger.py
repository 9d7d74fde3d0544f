"""The item trigger on the synthetic line and on a video made from it; input statistics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from frames_fixtures import line_frames, small_config, write_video

from station.frames.sources import open_source
from station.frames.stats import InputStats, compute_stats
from station.frames.trigger import TRIGGER_VERSION, Trigger, TriggerConfig, TriggerState
from station.frames.types import Frame
from station.synth.line import SyntheticLine


def _run(trigger: Trigger, frames: list[Frame]) -> list:
    return [c for f in frames if (c := trigger.update(f)) is not None]


def _items_shown(frames: list[Frame]) -> list[int]:
    return sorted({f.meta["item_id"] for f in frames if f.meta.get("phase") == "dwell"})


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"gap_s": 0.0},  # the next phone enters as soon as the last one has left
        {"dwell_s": 0.2, "travel_s": 0.3},  # a short stop: 6 frames
        {"seed": 11, "defect_rate": 1.0, "severity": 1.0},
    ],
    ids=["default", "no-gap", "short-dwell", "all-defective"],
)
def test_trigger_captures_each_phone_exactly_once(kw: dict) -> None:
    frames = line_frames(small_config(**kw), 8)
    captured = _run(Trigger(), frames)
    ids = [c.frame.meta["item_id"] for c in captured]
    assert ids == _items_shown(frames) == list(range(8))  # none missed, no duplicates
    assert all(c.frame.meta["phase"] == "dwell" for c in captured)
    assert all(c.truth == c.frame.meta["truth"] for c in captured)


def test_trigger_picks_a_sharp_frame_not_a_settling_one() -> None:
    config = small_config(width=640, height=360)
    line = SyntheticLine(config)
    frames = [line.frame(i) for i in range(line.total_frames(4))]
    captured = _run(Trigger(), frames)
    assert len(captured) == 4
    for c in captured:
        _, phase, k = line.locate(c.frame.index)
        assert phase == "dwell" and k >= 2  # the first two dwell frames shake
        settle = next(
            f
            for f in frames
            if line.locate(f.index)[1:] == ("dwell", 0)
            and f.meta["item_id"] == c.frame.meta["item_id"]
        )
        assert c.stats.sharpness > compute_stats(settle.image).sharpness


def test_trigger_on_a_video_written_from_the_line(tmp_path: Path) -> None:
    config = small_config(width=480, height=270, seed=5)
    frames = line_frames(config, 6)
    video = write_video(tmp_path / "line.avi", [f.image for f in frames])
    source = open_source(f"file:{video}")
    source.open()
    trigger = Trigger()
    captured = []
    while (f := source.read()) is not None:
        if (c := trigger.update(f)) is not None:
            captured.append(c)
    source.close()
    line = SyntheticLine(config)
    located = [line.locate(c.frame.index) for c in captured]
    assert [item for item, _, _ in located] == list(range(6))
    assert all(phase == "dwell" for _, phase, _ in located)


def test_trigger_does_not_take_dimming_light_for_a_phone() -> None:
    frames = line_frames(small_config(light=0.55, drift_after=2, drift_ramp_items=1, gap_s=1.0), 6)
    assert [c.frame.meta["item_id"] for c in _run(Trigger(), frames)] == list(range(6))


def test_trigger_with_defocus_and_new_colour_drift_still_counts_right() -> None:
    frames = line_frames(small_config(defocus=2.5, phone_color="blue", drift_after=1), 5)
    assert [c.frame.meta["item_id"] for c in _run(Trigger(), frames)] == list(range(5))


def test_empty_table_with_sensor_noise_is_never_captured() -> None:
    line = SyntheticLine(small_config())
    frames = [line.frame(i) for i in range(line.lead)] * 6
    frames = [dataclasses.replace(f, index=i) for i, f in enumerate(frames)]
    trigger = Trigger()
    assert _run(trigger, frames) == []
    assert trigger.has_background and trigger.state == TriggerState.EMPTY


def test_a_phone_that_stays_is_captured_once() -> None:
    config = small_config(dwell_s=5.0)  # 150 frames of dwell
    frames = line_frames(config, 2)
    assert len(_run(Trigger(), frames)) == 2


def test_manual_capture_takes_the_next_frame_and_prevents_a_double_capture() -> None:
    line = SyntheticLine(small_config())
    trigger = Trigger()
    for i in range(line.lead):
        assert trigger.update(line.frame(i)) is None
    first_dwell = line.lead + line.enter
    for i in range(line.lead, first_dwell):
        trigger.update(line.frame(i))
    trigger.request_capture()
    item = trigger.update(line.frame(first_dwell))
    assert item is not None and item.reason == "manual" and item.frame.index == first_dwell
    rest = [trigger.update(line.frame(i)) for i in range(first_dwell + 1, line.total_frames(2))]
    auto = [c for c in rest if c is not None]
    assert [c.frame.meta["item_id"] for c in auto] == [1]  # phone 0 not captured again


def test_background_can_be_given_when_the_stream_starts_with_a_phone() -> None:
    line = SyntheticLine(small_config())
    empty = line.frame(0).image
    start = line.lead + line.enter  # begin mid-dwell of phone 0
    frames = [line.frame(i) for i in range(start, line.total_frames(3))]
    assert [c.frame.meta["item_id"] for c in _run(Trigger(background=empty), frames)] == [0, 1, 2]


def test_captured_item_records_trigger_version_and_candidates() -> None:
    captured = _run(Trigger(), line_frames(small_config(), 1))
    (item,) = captured
    assert item.trigger_version.startswith(TRIGGER_VERSION + "+")
    # the version follows the trigger's settings: another setting, another version
    other = Trigger(TriggerConfig(settle_frames=TriggerConfig().settle_frames + 1))
    assert other.version != Trigger().version
    assert item.frame.index in item.candidates
    assert len(item.candidates) == TriggerConfig().settle_frames + TriggerConfig().dwell_frames


def test_trigger_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="still_fraction"):
        TriggerConfig(still_fraction=1.5)
    with pytest.raises(ValueError, match="depart_motion"):
        TriggerConfig(depart_motion=0)


# ---------------------------------------------------------------------- input statistics


def test_input_stats_field_names_match_the_item_columns() -> None:
    from db.models import Item

    names = [f.name for f in dataclasses.fields(InputStats)]
    columns = ["brightness", "contrast", "sharpness", "clipped_share", "width", "height"]
    assert names == [*columns, "chroma_rg", "chroma_yb"]  # colour lives in Item.stats only
    assert all(n in Item.model_fields for n in columns)


def test_colour_statistics_tell_a_blue_phone_from_a_grey_one() -> None:
    grey = compute_stats(np.full((20, 20, 3), 120, np.uint8))
    blue = compute_stats(np.full((20, 20, 3), (180, 110, 90), np.uint8))  # BGR
    assert (grey.chroma_rg, grey.chroma_yb) == (0.0, 0.0)
    assert blue.chroma_yb < -50 and blue.chroma_rg < 0


def test_input_stats_measure_what_they_say() -> None:
    flat = np.full((100, 200, 3), 100, np.uint8)
    s = compute_stats(flat)
    assert (s.brightness, s.contrast, s.sharpness, s.clipped_share) == (100.0, 0.0, 0.0, 0.0)
    assert (s.width, s.height) == (200, 100)
    half = flat.copy()
    half[:, :100] = 255
    assert compute_stats(half).clipped_share == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(texture, (0, 0), 2)
    assert compute_stats(texture).sharpness > 10 * compute_stats(blurred).sharpness
    assert compute_stats(texture).contrast > compute_stats(blurred).contrast


def test_input_stats_refuse_non_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        compute_stats(np.zeros((4, 4, 3), np.float32))


def test_a_change_of_resolution_relearns_the_table_instead_of_failing() -> None:
    small_line = SyntheticLine(small_config(seed=3))
    big_line = SyntheticLine(small_config(seed=3, width=480, height=270))
    trigger = Trigger()
    _run(trigger, [small_line.frame(i) for i in range(small_line.total_frames(1))])
    frames = [big_line.frame(i) for i in range(big_line.total_frames(2))]
    assert [c.frame.meta["item_id"] for c in _run(trigger, frames)] == [0, 1]
