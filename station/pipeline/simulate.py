"""`station simulate`: the station's pipeline, headless, with simulated inspectors on the synthetic
line. Items go through the same guard, router, inference worker and recorder as in the window;
only the camera + trigger (replaced by rendering one still per phone) and the person differ, so a
week of line data takes minutes. Time is simulated: each phone arrives `interval_s` after the last.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.models import DecidedBy, Level, LevelChange, Role
from db.repo import current_level, record_level_change
from station.frames.store import ImageStore
from station.pipeline.guard import InputGuard
from station.pipeline.predictor import ModelInfo, check_fits, load_predictor, model_info
from station.pipeline.recorder import BackgroundRecorder, Recorder
from station.pipeline.records import (
    Deferred,
    InspectionRecord,
    Record,
    ensure_operator,
    ensure_station,
)
from station.pipeline.router import Router
from station.pipeline.session import StationCore, Stored
from station.pipeline.worker import InferenceWorker
from station.settings import Settings

log = logging.getLogger(__name__)

SHIFT_S = 8 * 3600.0  # simulated inspectors tire over a shift, then a fresh one starts


class Inspector(Protocol):
    def decide(
        self, truth: str, suggestion: str | None, shown: bool, t_shift_s: float
    ) -> tuple[str, float]: ...


@dataclass(frozen=True)
class LineItem:
    image: np.ndarray
    truth: str
    meta: dict[str, Any] = field(default_factory=dict)


class LazyLineItem:
    """A line item rendered on first use, so rendering runs on the capture pool's threads."""

    def __init__(self, render: Callable[[], LineItem]) -> None:
        self._render = render
        self._item: LineItem | None = None

    def materialize(self) -> LineItem:
        if self._item is None:
            self._item = self._render()
        return self._item


@dataclass(frozen=True)
class SimulateConfig:
    items: int
    seed: int = 0
    level: Level = Level.shadow
    inspectors: int = 1
    inspector_accuracy: float = 0.95
    assist_bias: float = 0.3
    defect_rate: float = 0.3
    model_path: str | None = None
    interval_s: float = 4.0
    # Stills smaller than the line's 1280x720 keep simulate above 20 items/s on 2 shared cores;
    # the bundled model (served at 640x368) scored 0.96 on 200 of them, 1.0 on 1280x720 ones.
    width: int = 512
    height: int = 288


@dataclass
class Summary:
    items: int = 0
    human_decisions: int = 0
    model_decisions: int = 0
    shown: int = 0
    blind: int = 0
    audit: int = 0
    golden: int = 0
    paired: int = 0  # items with both a human decision and a model label
    agreement: float | None = None  # share of paired items where the labels agree
    agreement_pass_fail: float | None = None
    human_accuracy: float | None = None
    model_accuracy: float | None = None
    model_errors: int = 0
    guard_failed: int = 0
    level: str = ""
    final_level: str = ""
    model: str | None = None
    pending_writes: int = 0
    seconds: float = 0.0  # wall time of the whole run, start-up (model load, set-up) included
    items_per_s: float = 0.0  # items over the time spent processing them (start-up excluded)
    banners: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Counter:
    def __init__(self, ok_class: str) -> None:
        self.ok = ok_class
        self.s = Summary()
        self._agree = self._agree_pf = 0
        self._human_right = self._human_n = 0
        self._model_right = self._model_n = 0

    def add(self, rec: Record) -> None:
        if not isinstance(rec, InspectionRecord):
            return
        s = self.s
        s.items += 1
        s.guard_failed += not rec.guard_passed
        pred = rec.predictions[0] if rec.predictions else None
        model_label = pred.label if pred is not None else None
        if pred is not None and pred.error:
            s.model_errors += 1
        if rec.decided_by == DecidedBy.model.value:
            s.model_decisions += 1
        d = rec.decision
        if d is not None:
            s.human_decisions += 1
            s.shown += d.suggestion_shown
            s.blind += d.blind
            s.audit += d.audit
            s.golden += d.golden
            if rec.ground_truth is not None:
                self._human_n += 1
                self._human_right += d.label == rec.ground_truth
            if model_label is not None:
                s.paired += 1
                self._agree += d.label == model_label
                self._agree_pf += (d.label == self.ok) == (model_label == self.ok)
        if model_label is not None and rec.ground_truth is not None:
            self._model_n += 1
            self._model_right += model_label == rec.ground_truth

    def summary(self) -> Summary:
        s = self.s
        if s.paired:
            s.agreement = self._agree / s.paired
            s.agreement_pass_fail = self._agree_pf / s.paired
        if self._human_n:
            s.human_accuracy = self._human_right / self._human_n
        if self._model_n:
            s.model_accuracy = self._model_right / self._model_n
        return s


def synthetic_line(config: SimulateConfig) -> Iterator[LazyLineItem]:
    """One still per phone from the synthetic line (rendered directly, not played in real time)."""
    from station.synth.config import SynthConfig
    from station.synth.render import render_item

    synth = SynthConfig(
        seed=config.seed,
        width=config.width,
        height=config.height,
        defect_rate=config.defect_rate,
        realtime=False,
    )

    def render(index: int) -> LineItem:
        item = render_item(synth, index)
        return LineItem(item.image, item.label, {**item.meta, "index": index})

    index = 0
    while True:
        yield LazyLineItem(lambda i=index: render(i))  # type: ignore[misc]
        index += 1


class BasicInspector:
    """A simple simulated inspector: right with probability `accuracy` (a wrong answer is another
    label at random), follows a shown suggestion with probability `bias`, takes 1-3 s."""

    def __init__(self, *, accuracy: float, bias: float, seed: int, labels: tuple[str, ...]) -> None:
        self.accuracy = accuracy
        self.bias = bias
        self.labels = labels
        self.rng = random.Random(seed)

    def decide(
        self, truth: str, suggestion: str | None, shown: bool, t_shift_s: float
    ) -> tuple[str, float]:
        seconds = 1.0 + 2.0 * self.rng.random()
        if shown and suggestion is not None and self.rng.random() < self.bias:
            return suggestion, seconds * 0.6
        if self.rng.random() < self.accuracy:
            return truth, seconds
        return self.rng.choice([x for x in self.labels if x != truth]), seconds


def synthetic_inspectors(config: SimulateConfig, labels: tuple[str, ...]) -> list[Inspector]:
    """The frames issue's simulated inspectors where available, else BasicInspector."""
    try:
        from station.synth.inspectors import SimulatedInspector
    except ImportError:
        SimulatedInspector = None  # type: ignore[assignment,misc]
    out: list[Inspector] = []
    for k in range(config.inspectors):
        seed = config.seed * 1000 + k
        if SimulatedInspector is not None:
            out.append(_make_simulated(SimulatedInspector, config, seed))
        else:
            out.append(
                BasicInspector(
                    accuracy=config.inspector_accuracy,
                    bias=config.assist_bias,
                    seed=seed,
                    labels=labels,
                )
            )
    return out


def _make_simulated(cls: Any, config: SimulateConfig, seed: int) -> Inspector:
    """`--inspector-accuracy P`: every defect caught, and every ok item passed, with chance P."""
    p = config.inspector_accuracy
    return cls(
        sensitivity={c: p for c in ("crack", "scratch", "dent", "stain", "missing")},
        specificity=p,
        automation_bias=config.assist_bias,
        seed=seed,
        name=f"sim-{seed % 1000 + 1}",
    )


def _ordered_prefetch(
    pool: ThreadPoolExecutor, fn: Callable[[Any], Any], jobs: Iterator[Any], depth: int
) -> Iterator[Any]:
    """fn over jobs on the pool, at most `depth` ahead, results in order."""
    ahead: deque[Future[Any]] = deque()
    for job in jobs:
        ahead.append(pool.submit(fn, job))
        if len(ahead) >= depth:
            yield ahead.popleft().result()
    while ahead:
        yield ahead.popleft().result()


def set_level(
    engine: Engine, station_id: int, level: Level, reason: str, operator_id: int | None = None
) -> None:
    """Record a level change if the station is not already at `level`."""
    with session_scope(engine) as session:
        now = current_level(session=session, station_id=station_id)
        if now is not level:
            record_level_change(
                session=session,
                change=LevelChange(
                    station_id=station_id,
                    from_level=now,
                    to_level=level,
                    operator_id=operator_id,
                    reason=reason,
                    override=True,
                ),
            )


def simulate(
    settings: Settings,
    engine: Engine,
    config: SimulateConfig,
    *,
    line: Iterator[LineItem | LazyLineItem] | None = None,
    golden_line: Iterator[LineItem | LazyLineItem] | None = None,
    inspectors: list[Inspector] | None = None,
    predictor: Any | None = None,
    model: ModelInfo | None = None,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    t_start = time.perf_counter()
    station_id = ensure_station(engine, settings.station_name)
    operator_ids = [
        ensure_operator(engine, f"sim-{k + 1}", Role.inspector, secret=None)
        for k in range(config.inspectors)
    ]
    set_level(engine, station_id, config.level, f"station simulate --level {config.level.value}")

    worker: InferenceWorker | None = None
    model_problem: str | None = None
    if config.level is not Level.human_only:
        try:
            if predictor is None:
                predictor, model = load_predictor(config.model_path or settings.model_path or None)
            model = model or model_info(predictor, config.model_path or "")
            check_fits(model, settings.ok_class, settings.defect_classes)
            worker = InferenceWorker(predictor, timeout_s=settings.thresholds.model_timeout_s)
        except Exception as e:  # any failure to load: the station falls back to humans
            model_problem = f"model failed to load: {e}"

    counter = _Counter(settings.ok_class)
    recorder = Recorder(engine, spool_dir=settings.data_dir)
    background = BackgroundRecorder(recorder)

    def sink(rec: Record | Deferred) -> None:
        if isinstance(rec, Deferred):
            rec = rec.build()
        counter.add(rec)
        background.submit(rec)

    rng = random.Random(config.seed)
    router = Router(
        levels=settings.levels, thresholds=settings.thresholds, ok_class=settings.ok_class, rng=rng
    )
    sim_t = [0.0]
    start = datetime.now(UTC) - timedelta(seconds=config.items * config.interval_s)
    core = StationCore(
        engine=engine,
        station_id=station_id,
        station_name=settings.station_name,
        operator_id=operator_ids[0],
        operator_name="sim-1",
        level=config.level,
        router=router,
        guard=InputGuard(settings.guard),
        store=ImageStore(settings.image_dir),
        sink=sink,
        worker=worker,
        model=model,
        explain=False,
        clock=lambda: sim_t[0],
        now=lambda: start + timedelta(seconds=sim_t[0]),
        ok_class=settings.ok_class,
        rng=rng,
    )
    if model_problem is not None:
        core.model_unusable(model_problem)
    elif model is not None and worker is not None:
        core.register_model(model)
    line = line if line is not None else synthetic_line(config)
    if golden_line is None and settings.levels.golden_share > 0:
        golden_line = synthetic_line(
            SimulateConfig(**{**asdict(config), "seed": config.seed + 7919, "level": config.level})
        )
    people = (
        inspectors
        if inspectors is not None
        else synthetic_inspectors(config, (settings.ok_class, *settings.defect_classes))
    )
    source = f"synthetic:seed={config.seed},defect_rate={config.defect_rate}"

    def produce() -> Iterator[tuple[LineItem | LazyLineItem, bool, float]]:
        for i in range(config.items):
            golden = golden_line is not None and router.wants_golden()
            item = next(golden_line) if golden and golden_line is not None else next(line)
            yield item, golden, i * config.interval_s

    def capture(job: tuple[LineItem | LazyLineItem, bool, float]) -> tuple[LineItem, Stored]:
        lazy, golden, t = job
        item = lazy.materialize() if isinstance(lazy, LazyLineItem) else lazy
        stored = core.capture(
            item.image,
            source="golden:synthetic" if golden else source,
            ground_truth=item.truth,
            golden=golden,
            meta=item.meta,
            captured_at=start + timedelta(seconds=t),
        )
        return item, stored

    # Camera stand-in: render + statistics + image store run ahead on a small pool (their fsyncs
    # overlap the model); the database writes run on the recorder's thread. Routing, inference
    # and decisions stay in order on this thread, so a seed gives the same run.
    t_loop = time.perf_counter()
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="sim-capture") as pool:
        for i, (item, stored) in enumerate(_ordered_prefetch(pool, capture, produce(), depth=8)):
            sim_t[0] = i * config.interval_s
            cap = core.infer(stored)
            core.accept(cap)
            k = i % len(people)
            core.operator_id = operator_ids[k % len(operator_ids)]
            while core.current is not None:
                w = core.current
                sug = w.suggestion
                label, seconds = people[k].decide(
                    item.truth if w.captured is cap else (w.captured.ground_truth or "ok"),
                    sug.label if sug is not None else None,
                    sug is not None,
                    sim_t[0] % SHIFT_S,
                )
                core.decide(label, decision_ms=seconds * 1000.0)
            if progress is not None:
                progress(i + 1)
    background.close(timeout_s=600)

    if worker is not None:
        worker.close()
    summary = counter.summary()
    summary.level = config.level.value
    summary.final_level = core.level.value
    summary.model = (
        f"{model.name} {model.short}"
        if model is not None and core.level is not Level.human_only
        else None
    )
    summary.pending_writes = recorder.pending
    summary.banners = list(core.banners.values())
    t_end = time.perf_counter()
    summary.seconds = t_end - t_start
    loop_s = t_end - t_loop
    summary.items_per_s = summary.items / loop_s if loop_s > 0 else 0.0
    return summary
