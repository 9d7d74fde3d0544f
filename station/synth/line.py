"""The synthetic line as a frame source: phones slide in from the left, dwell under the camera,
slide out to the right, one after another, each with known ground truth.

Frame meta: {"source": "synthetic", "item_id": i or None, "truth": label or None,
"phase": "empty" | "enter" | "dwell" | "exit"}. Item i is `render_item(config, i)`.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from station.frames.types import Frame, SkippedFile
from station.priority import background_pool
from station.synth.config import SynthConfig
from station.synth.render import (
    NOISE_BANKS,
    PhoneSprite,
    SyntheticItem,
    add_noise,
    apply_gain,
    background,
    build_phone,
    composite,
    item_label,
    light_gain,
    render_item,
    scale_of,
)

#: Empty-table frames before the first phone, so a trigger can learn the table.
MIN_LEAD_FRAMES = 8


class SyntheticLine:
    """The schedule and the frames of the line; deterministic, no clock, no threads."""

    def __init__(self, config: SynthConfig | None = None) -> None:
        self.config = config or SynthConfig()
        self.enter, self.dwell, self.exit, self.gap = self.config.frames_per_phase()
        self.cycle = self.enter + self.dwell + self.exit + self.gap
        self.lead = max(self.gap, MIN_LEAD_FRAMES)
        self._sprites: collections.OrderedDict[int, PhoneSprite] = collections.OrderedDict()

    # ------------------------------------------------------------------ schedule

    def total_frames(self, n_items: int) -> int:
        """Frames until n items have come and gone (each followed by its gap)."""
        return self.lead + n_items * self.cycle

    def locate(self, frame_index: int) -> tuple[int | None, str, int]:
        """(item index or None, phase, frame number within the phase)."""
        if frame_index < self.lead:
            return None, "empty", frame_index
        i, k = divmod(frame_index - self.lead, self.cycle)
        if k < self.enter:
            return i, "enter", k
        k -= self.enter
        if k < self.dwell:
            return i, "dwell", k
        k -= self.dwell
        if k < self.exit:
            return i, "exit", k
        return None, "empty", k - self.exit

    def truth(self, item_index: int) -> str:
        return item_label(self.config, item_index)

    def truth_for(self, frame_index: int) -> str | None:
        i, _, _ = self.locate(frame_index)
        return None if i is None else self.truth(i)

    def sprite(self, item_index: int) -> PhoneSprite:
        sp = self._sprites.get(item_index)
        if sp is None:
            sp = build_phone(self.config, item_index)
            self._sprites[item_index] = sp
            while len(self._sprites) > 2:
                self._sprites.popitem(last=False)
        else:
            self._sprites.move_to_end(item_index)
        return sp

    def item(self, item_index: int) -> SyntheticItem:
        """Item `item_index` as a still (the phone centred as the trigger captures it)."""
        return render_item(self.config, item_index)

    def _x(self, sp: PhoneSprite, phase: str, k: int) -> tuple[float, float]:
        """(x of the sprite's left edge, x one frame earlier)."""
        dwell_x = sp.dwell_xy[0]
        sw = sp.size[0]
        start, end = -sw, self.config.width

        def enter_x(j: int) -> float:
            u = (j + 1) / (self.enter + 1)  # reaches the dwell position on the first dwell frame
            return start + (dwell_x - start) * (1 - (1 - u) ** 2.5)

        def exit_x(j: int) -> float:
            u = (j + 1) / self.exit
            return dwell_x + (end - dwell_x) * u**2

        if phase == "enter":
            return enter_x(k), (enter_x(k - 1) if k > 0 else start)
        if phase == "exit":
            return exit_x(k), (exit_x(k - 1) if k > 0 else dwell_x)
        return dwell_x, dwell_x

    # ------------------------------------------------------------------ frames

    def frame(self, frame_index: int, timestamp: float | None = None) -> Frame:
        cfg = self.config
        item, phase, k = self.locate(frame_index)
        pos = frame_index - self.lead
        at_item = (pos / self.cycle) if pos > 0 else 0.0
        img = background(cfg, item if item is not None else math.floor(at_item)).copy()
        meta: dict[str, Any] = {
            "source": "synthetic",
            "item_id": item,
            "truth": None,
            "phase": phase,
        }
        if item is not None:
            sp = self.sprite(item)
            x, prev = self._x(sp, phase, k)
            speed = abs(x - prev)
            if speed > 6 * scale_of(cfg):
                version = "moving"
            elif phase == "dwell" and k < 2:
                version = "settle"
            else:
                version = "sharp"
            composite(img, sp, round(x), sp.dwell_xy[1], version)
            meta["truth"] = sp.label
            meta["x"] = round(x)
        t = frame_index / cfg.fps
        add_noise(img, cfg, (frame_index * 3 + cfg.seed) % NOISE_BANKS)
        flicker = 1.0 + 0.008 * math.sin(2 * math.pi * t / 37.0)
        apply_gain(img, light_gain(cfg, at_item) * flicker)
        return Frame(img, frame_index, t if timestamp is None else timestamp, meta)


class SyntheticLineSource:
    """FrameSource over the synthetic line. realtime=True paces frames at the line's fps (like a
    camera: live, a slow reader loses frames); realtime=False gives them as fast as they are read,
    with frame-clock timestamps, for tests, exports and benchmarks."""

    item_per_frame = False

    def __init__(
        self,
        config: SynthConfig | None = None,
        *,
        name: str = "synthetic",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.line = SyntheticLine(config)
        self.config = self.line.config
        self.name = name
        self.live = self.config.realtime
        self.nominal_fps: float | None = self.config.fps
        self._next = 0
        self._t0: float | None = None
        self._end = (
            None if self.config.max_items is None else self.line.total_frames(self.config.max_items)
        )

    @classmethod
    def from_options(
        cls, options: dict[str, str], *, realtime: bool | None = None, spec: str = "synthetic"
    ) -> SyntheticLineSource:
        return cls(SynthConfig.from_options(options, realtime=realtime), name=spec)

    @property
    def skipped(self) -> list[SkippedFile]:
        return []

    @property
    def frames_emitted(self) -> int:
        return self._next

    def open(self) -> None:
        self._t0 = self._clock() - self._next / self.config.fps

    def read(self) -> Frame | None:
        i = self._next
        if self._end is not None and i >= self._end:
            return None
        self._next += 1
        if self.config.realtime:
            if self._t0 is None:
                self.open()
            assert self._t0 is not None
            due = self._t0 + i / self.config.fps
            delay = due - self._clock()
            if delay > 0:
                self._sleep(delay)
            return self.line.frame(i, timestamp=due)
        return self.line.frame(i)

    def close(self) -> None:
        self._t0 = None

    def truth_for(self, frame_index: int) -> str | None:
        return self.line.truth_for(frame_index)


class SyntheticStillsSource:
    """One still per phone of the synthetic line, each frame an item (no trigger needed): the
    camera stand-in of `station simulate` and of golden samples. Frame meta is the phone's
    (`truth`, `index`, ...). Stills are rendered ahead, in order, on `render_threads` threads
    (0: on the reader's thread), so rendering overlaps the model instead of waiting for it."""

    item_per_frame = True
    live = False
    nominal_fps: float | None = None

    def __init__(
        self,
        config: SynthConfig,
        *,
        name: str | None = None,
        render_threads: int = 2,
        max_items: int | None = None,
    ) -> None:
        self.config = config
        self.name = name or f"synthetic:seed={config.seed},defect_rate={config.defect_rate}"
        self.render_threads = render_threads
        self.max_items = max_items
        self._next = 0
        self._ahead: collections.deque[Future[Frame]] = collections.deque()
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def at(
        cls, seed: int, width: int, height: int, *, defect_rate: float = 0.3, **kw: Any
    ) -> SyntheticStillsSource:
        return cls(
            SynthConfig(
                seed=seed, width=width, height=height, defect_rate=defect_rate, realtime=False
            ),
            **kw,
        )

    @property
    def skipped(self) -> list[SkippedFile]:
        return []

    def open(self) -> None:
        if self.render_threads > 0 and self._pool is None:
            # A stand-in for a camera, which asks nothing of the CPU: the rendering yields the
            # cores to the station's own work (station/priority.py).
            self._pool = background_pool(self.render_threads, "synth-render")

    def _render(self, index: int) -> Frame:
        item = render_item(self.config, index)
        meta = {**item.meta, "source": "synthetic", "index": index, "truth": item.label}
        return Frame(item.image, index, float(index), meta)

    def read(self) -> Frame | None:
        if self._pool is None:
            if self.max_items is not None and self._next >= self.max_items:
                return None
            self._next += 1
            return self._render(self._next - 1)
        depth = 2 * self.render_threads
        while len(self._ahead) < depth and (self.max_items is None or self._next < self.max_items):
            self._ahead.append(self._pool.submit(self._render, self._next))
            self._next += 1
        return self._ahead.popleft().result() if self._ahead else None

    def close(self) -> None:
        self._next -= len(self._ahead)  # a re-open continues with the first still not read
        for f in self._ahead:
            f.cancel()
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
