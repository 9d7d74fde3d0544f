"""An item's timeline: stamps from capture to the screen become milliseconds per stage."""

from __future__ import annotations

import time

import pytest

from station.pipeline.timeline import Timeline


def test_stages_are_measured_between_the_stamps_that_exist() -> None:
    t = Timeline()
    t.mark("captured")
    t.mark("assess")
    time.sleep(0.02)
    t.mark("model")
    t.mark("answered")
    partial = t.stage_ms()
    assert set(partial) == {"wait", "plan", "model"}  # not on a screen yet
    assert partial["plan"] >= 19.0
    t.mark("shown")
    full = t.stage_ms()
    assert set(full) == {"wait", "plan", "model", "total"}  # no picture sent nor received
    t2 = Timeline()
    for mark in ("captured", "assess", "model", "answered", "sent", "received", "shown"):
        t2.mark(mark)
    full = t2.stage_ms()
    assert set(full) == {"wait", "plan", "model", "convert", "hop", "paint", "total"}
    parts = sum(v for k, v in full.items() if k != "total")
    assert full["total"] == pytest.approx(parts, abs=0.05)


def test_a_stamp_is_kept_once_and_unknown_marks_are_refused() -> None:
    t = Timeline()
    t.mark("captured")
    t.mark("shown")
    first = t.stage_ms()["total"]
    time.sleep(0.01)
    t.mark("shown")  # painted again (the heat-map arrived): the first paint counts
    assert t.stage_ms()["total"] == first
    with pytest.raises(ValueError, match="expected a timeline mark among captured"):
        t.mark("decided")
