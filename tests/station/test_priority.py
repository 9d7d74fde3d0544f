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


def nice_here() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's"),
    pytest.mark.skipif(
        sys.platform == "linux" and nice_here() + BACKGROUND_NICE > 19,
        reason="the tests already run so low that a lowered thread could not be told apart",
    ),
]


def store_noting_priority(writes: list[int]) -> type[ImageStore]:
    """An ImageStore that notes the nice value of each thread that writes an image."""

    class Watched(ImageStore):
        def put_bytes(self, data: bytes):
            writes.append(nice_here())
            return super().put_bytes(data)

    return Watched


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


@pytest.mark.parametrize("lowered", [True, False])
def test_images_are_written_lowered_only_where_asked(tmp_path: Path, lowered: bool):
    """`station simulate` asks for it (its model's thread is its critical path); the window
    does not (a lowered thread holding Python's lock could hold up the GUI's)."""
    pipeline = nice_here()
    writes: list[int] = []

    Watched = store_noting_priority(writes)
    intake = Intake(
        ListSource([phone_image(i) for i in range(3)], item_per_frame=True),
        store=Watched(tmp_path / "images"),
        writers=2,
        lowered_writers=lowered,
    )
    items = list(intake.items())
    assert len(items) == 3 and all((tmp_path / "images" / c.image_path).exists() for c in items)
    expected = min(19, pipeline + BACKGROUND_NICE) if lowered else pipeline
    assert writes == [expected] * 3


def test_station_simulate_writes_its_images_lowered(tmp_path: Path, monkeypatch):
    import importlib

    from db.models import Level
    from station.pipeline.testing import open_station_db
    from station.settings import Settings

    sim = importlib.import_module("station.pipeline.simulate")  # the package exports the function
    pipeline = nice_here()
    writes: list[int] = []

    Watched = store_noting_priority(writes)
    monkeypatch.setattr(sim, "ImageStore", Watched)
    summary = sim.simulate(
        Settings(data_dir=tmp_path),
        open_station_db(f"sqlite:///{tmp_path / 'sim.db'}"),
        sim.SimulateConfig(items=3, level=Level.human_only, width=320, height=180),
    )
    assert summary.items == 3 and summary.unsaved == 0
    assert writes and set(writes) == {min(19, pipeline + BACKGROUND_NICE)}


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


def test_opencv_workers_started_from_a_lowered_pool_are_not_lowered():
    """A thread inherits its creator's nice value, and OpenCV starts its workers at its first
    parallel call: made by a lowered writer, the model's resizes would later be split onto
    lowered workers. A fresh interpreter, where OpenCV has started no worker yet."""
    import json
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import json, os, threading
        import cv2
        import numpy as np
        from station.priority import background_pool

        def nice(tid):
            return os.getpriority(os.PRIO_PROCESS, tid)

        def first_opencv_call():  # large enough to be split across OpenCV's workers
            cv2.resize(np.zeros((720, 1280, 3), np.uint8), (640, 368), interpolation=cv2.INTER_AREA)
            return threading.get_native_id()

        cv2.setNumThreads(2)
        with background_pool(1, "lowered") as pool:
            writer = pool.submit(first_opencv_call).result()
            tasks = {int(t): nice(int(t)) for t in os.listdir("/proc/self/task")}
        print(json.dumps({"main": nice(threading.get_native_id()), "writer": writer, "tasks": tasks}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    tasks = {int(k): v for k, v in got["tasks"].items()}
    assert len(tasks) >= 3  # the main thread, the writer and at least one OpenCV worker
    assert tasks.pop(got["writer"]) == min(19, got["main"] + BACKGROUND_NICE)
    assert set(tasks.values()) == {got["main"]}, "a thread besides the writer runs lowered"
