"""Work no item waits for (image writes, the synthetic camera's rendering) runs at a lower CPU
priority than the pipeline and the model, so on a full machine an item does not wait its turn
behind it (station/priority.py). Linux only: a thread has a nice value of its own there."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from station.frames.sources import ListSource
from station.frames.store import ImageStore
from station.pipeline.intake import Intake
from station.pipeline.testing import phone_image
from station.priority import BACKGROUND_NICE, lower_this_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def nice_here() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_thread_lowers_its_own_priority_and_no_other():
    before = nice_here()
    seen: list[int] = []

    def work() -> None:
        lower_this_thread()
        seen.append(nice_here())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [min(19, before + BACKGROUND_NICE)]
    assert nice_here() == before  # the caller, and so the pipeline's threads, keep theirs


def test_images_are_written_at_a_lower_priority_than_the_pipeline(tmp_path: Path):
    pipeline = nice_here()
    writes: list[int] = []

    class Watched(ImageStore):
        def put_bytes(self, data: bytes):
            writes.append(nice_here())
            return super().put_bytes(data)

    intake = Intake(
        ListSource([phone_image(i) for i in range(3)], item_per_frame=True),
        store=Watched(tmp_path / "images"),
        writers=2,
    )
    items = list(intake.items())
    assert len(items) == 3 and all((tmp_path / "images" / c.image_path).exists() for c in items)
    assert writes == [min(19, pipeline + BACKGROUND_NICE)] * 3


def test_the_synthetic_camera_renders_at_a_lower_priority(monkeypatch):
    from station.synth import line

    rendered: list[int] = []
    real = line.render_item

    def watched(config, index):
        rendered.append(nice_here())
        return real(config, index)

    monkeypatch.setattr(line, "render_item", watched)
    source = line.SyntheticStillsSource.at(0, 160, 90, render_threads=2)
    source.open()
    try:
        frames = [source.read() for _ in range(3)]
    finally:
        source.close()
    assert all(f is not None for f in frames)
    assert rendered and set(rendered) == {min(19, nice_here() + BACKGROUND_NICE)}
