"""The intake: one loop from frames to stored items, the same on every path (window, `station
capture`, `station simulate`)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from frames_fixtures import small_config

from station.cli.capture_cmd import run_capture
from station.errors import SourceError
from station.frames.sources import ListSource
from station.frames.stats import compute_stats
from station.frames.store import ImageStore
from station.frames.types import CaptureState
from station.pipeline.intake import GOLDEN_SOURCE, GoldenSamples, Intake
from station.pipeline.testing import make_rig, phone_image
from station.synth.line import SyntheticLineSource


def test_the_same_frame_is_stored_with_the_same_bytes_on_every_path(tmp_path: Path) -> None:
    image = phone_image(3, h=120, w=200)
    folder = tmp_path / "stills"
    folder.mkdir()
    cv2.imwrite(str(folder / "phone.png"), image)  # lossless: the folder gives back `image`

    at_station = make_rig(tmp_path / "station").capture(image).image_sha256  # window, simulate
    captured = run_capture(f"folder:{folder}", tmp_path / "cap", max_items=1)
    plain = run_capture(f"folder:{folder}", tmp_path / "plain", max_items=1, plain=True)
    plain_bytes = (tmp_path / "plain" / plain.captured[0]["file"]).read_bytes()

    assert captured.captured[0]["sha256"] == at_station
    assert plain.captured[0]["sha256"] == at_station == hashlib.sha256(plain_bytes).hexdigest()


def test_items_from_a_moving_line_carry_the_triggers_statistics_and_truth(tmp_path: Path) -> None:
    source = SyntheticLineSource(small_config(max_items=3))
    intake = Intake(source, store=ImageStore(tmp_path / "images"))
    items = list(intake.items())
    assert len(items) == 3 and intake.frames_seen > 3 * 10
    for item in items:
        assert item.trigger_reason == "auto" and item.ground_truth is not None
        assert item.stats == compute_stats(item.image)  # computed once, by the trigger
        stored = ImageStore(tmp_path / "images").get(item.image_sha256)
        assert np.array_equal(stored, item.image)  # lossless, and written before the end


def test_golden_samples_follow_line_items_at_their_share(tmp_path: Path) -> None:
    source = ListSource([phone_image(i) for i in range(40)], item_per_frame=True)
    golden = GoldenSamples(0.5, seed=1, size=(160, 90))
    items = list(Intake(source, store=ImageStore(tmp_path), golden=golden).items())
    gold = [i for i in items if i.golden]
    assert 40 + 8 <= len(items) <= 40 + 32 and len(gold) == len(items) - 40
    assert all(g.source == GOLDEN_SOURCE and g.ground_truth is not None for g in gold)
    assert all(not items[k].golden for k in range(len(items)) if k == 0 or items[k - 1].golden)


class Absent(ListSource):
    def open(self) -> None:
        raise SourceError("no camera at device 7")


def test_a_camera_that_is_not_there_is_retried_and_reported_until_stopped() -> None:
    states: list[tuple[CaptureState, str]] = []
    stop = threading.Event()

    def on_state(state: CaptureState, detail: str) -> None:
        states.append((state, detail))
        if len(states) == 2:
            stop.set()

    intake = Intake(Absent([]), store=None, on_state=on_state, keep_trying_to_open=True)
    assert list(intake.items(stop.is_set)) == []
    assert [s for s, _ in states] == [CaptureState.LOST, CaptureState.LOST]
    assert "device 7" in states[0][1] and "(try 2)" in states[1][1]


def test_without_retries_a_missing_source_is_the_callers_error() -> None:
    with pytest.raises(SourceError, match="device 7"):
        list(Intake(Absent([]), store=None).items())


def test_a_failure_to_start_the_model_at_capture_costs_the_item_nothing(tmp_path: Path) -> None:
    """The early start is a head start only: when it raises, the item goes on without one and
    the pipeline asks the model itself."""

    def broken(_image):
        raise RuntimeError("worker gone")

    intake = Intake(
        ListSource([phone_image(i) for i in range(2)], item_per_frame=True),
        store=ImageStore(tmp_path / "images"),
        early=broken,
    )
    items = list(intake.items())
    assert len(items) == 2 and all(c.early is None for c in items)
