"""`station simulate`: the station's pipeline, headless, with simulated inspectors on the synthetic
line. Items go through the same intake, guard, router, model, decision desk and recorder as in
the window; only the camera (one rendered still per phone, so no trigger is needed) and the
person differ, so a week of line data takes minutes. Time is simulated: each phone arrives
`interval_s` after the last.

A simulation records into a simulation station of its own (`sim` unless named), never into a
real line's: the level it simulates and the history it writes stay out of a real station's
record.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import cv2
from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.models import DecidedBy, Level, Role, Station
from db.repo import add_operator, find_operator, find_station
from station.errors import SimulationRefused
from station.frames.store import ImageStore
from station.frames.types import FrameSource
from station.levels import set_simulated_level
from station.pipeline.assess import ModelInUse, open_model
from station.pipeline.core import StationCore
from station.pipeline.intake import GoldenSamples, Intake
from station.pipeline.predictor import ModelInfo, Predictor
from station.pipeline.recorder import BackgroundRecorder, Recorder
from station.pipeline.records import Deferred, InspectionRecord, Record
from station.registry import artifact_dir, lineup
from station.settings import Settings
from station.thresholds import approve_for_simulation, proposal_from_settings

log = logging.getLogger(__name__)

SHIFT_S = 8 * 3600.0  # simulated inspectors tire over a shift, then a fresh one starts
DEFAULT_STATION = "sim"
#: Records the loop may run ahead of the recorder (in memory, not yet on any disk).
MAX_BACKLOG = 8
#: How long a run waits for a recorder that makes no progress (a write that hangs): at its
#: end, and whenever it waits for the recorder to catch up.
CLOSE_WAIT_S = 600.0
#: Simulated inspectors are operators no one can log in as (not an argon2 hash).
NO_LOGIN_HASH = "!no-login"


class Inspector(Protocol):
    def decide(
        self, truth: str, suggestion: str | None, shown: bool, t_shift_s: float
    ) -> tuple[str, float]: ...


@dataclass(frozen=True)
class SimulateConfig:
    items: int
    seed: int = 0
    level: Level = Level.shadow
    station: str = DEFAULT_STATION
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
    # Drift injected on the line (`--drift light=0.6@300`): synthetic-line knobs, from item
    # `drift_after` of this run on (station/synth/config.py).
    drift: dict[str, Any] = field(default_factory=dict)
    drift_after: int = 0


#: `--drift` knob names (and their aliases) -> SynthConfig fields.
DRIFT_KNOBS = {
    "light": "light",
    "defocus": "defocus",
    "phone_color": "phone_color",
    "color": "phone_color",
    "colour": "phone_color",
    "color_share": "color_share",
    "defect_style": "defect_style",
    "style": "defect_style",
}


def parse_drift(spec: str) -> tuple[dict[str, Any], int]:
    """`KNOB=VALUE[,KNOB=VALUE...][@ITEM]` -> (SynthConfig fields, first drifted item). The
    values are checked by the synthetic line's own validation, so the message names the range."""
    from station.synth.config import SynthConfig

    text = spec.strip()
    body, at, onset = text.partition("@")
    try:
        after = int(onset) if at else 0
    except ValueError:
        after = -1
    if after < 0:
        raise SimulationRefused(
            f"--drift {spec!r}: the onset after '@' must be an item number >= 0 (e.g. light=0.6@300)"
        )
    knobs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        name, eq, value = part.partition("=")
        field_name = DRIFT_KNOBS.get(name.strip().lower())
        if not eq or field_name is None or not value.strip():
            raise SimulationRefused(
                f"--drift {spec!r}: expected KNOB=VALUE[,KNOB=VALUE][@ITEM] with knobs "
                f"light, defocus, phone_color, color_share, defect_style "
                "(e.g. light=0.6@300, defocus=3@100, phone_color=blue@0, defect_style=v2@200)"
            )
        knobs[field_name] = value.strip()
    if not knobs:
        raise SimulationRefused(f"--drift {spec!r}: name at least one knob (e.g. light=0.6@300)")
    try:
        config = SynthConfig.from_options({k: str(v) for k, v in knobs.items()})
    except Exception as e:
        raise SimulationRefused(f"--drift {spec!r}: {e}") from e
    return {k: getattr(config, k) for k in knobs}, after


@dataclass
class Summary:
    station: str = ""
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
    pending_writes: int = 0  # records waiting in the spool file, on disk
    unsaved: int = 0  # records on no disk at all (the spool could not be written): lost
    stopped: str | None = None  # why the run stopped before its last item
    rejected: int = 0  # records the database refused, kept aside in the rejected file
    seconds: float = 0.0  # wall time of the whole run, start-up (model load, set-up) included
    items_per_s: float = 0.0  # items over the time spent processing them (start-up excluded)
    banners: list[str] = field(default_factory=list)
    # The lineup once the run ended: the canary's ramp and the champion's watch run in it.
    champion_after: str | None = None
    challenger_after: str | None = None
    canary_weight_after: float = 0.0
    lifecycle: str | None = None  # the last automatic change of role, in words
    # Drift monitoring (station/monitor.py): alarms opened in this run, in words, and the
    # item (0-based, of this run) at which the first failure demoted the station.
    alarms: list[str] = field(default_factory=list)
    demoted_at_item: int | None = None

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


def synthetic_stills(config: SimulateConfig) -> FrameSource:
    """The camera stand-in: one rendered still per phone of the synthetic line (drifting from
    `config.drift_after` on when `config.drift` names knobs)."""
    from station.synth.config import SynthConfig
    from station.synth.line import SyntheticStillsSource

    return SyntheticStillsSource(
        SynthConfig(
            seed=config.seed,
            width=config.width,
            height=config.height,
            defect_rate=config.defect_rate,
            realtime=False,
            drift_after=config.drift_after,
            **config.drift,
        )
    )


def synthetic_inspectors(config: SimulateConfig) -> list[Inspector]:
    """`--inspector-accuracy P`: every defect caught, and every ok item passed, with chance P."""
    from station.synth.config import DEFECT_CLASSES
    from station.synth.inspectors import SimulatedInspector

    p = config.inspector_accuracy
    out: list[Inspector] = []
    for k in range(config.inspectors):
        seed = config.seed * 1000 + k
        out.append(
            SimulatedInspector(
                sensitivity=dict.fromkeys(DEFECT_CLASSES, p),
                specificity=p,
                automation_bias=config.assist_bias,
                seed=seed,
                name=f"sim-{k + 1}",
            )
        )
    return out


def check_labels_fit_the_line(settings: Settings) -> None:
    """The synthetic line renders its own defect types; a station configured with other labels
    cannot be simulated on it (its inspectors and its model would answer in other words)."""
    from station.synth.config import DEFECT_CLASSES, OK

    if settings.labels.all != (OK, *DEFECT_CLASSES):
        raise SimulationRefused(
            f"the synthetic line's labels are {[OK, *DEFECT_CLASSES]}; this station's settings "
            f"name {list(settings.labels.all)}: simulate with the default ok_class and "
            "defect_classes"
        )


def simulated_model(
    engine: Engine, settings: Settings, station_id: int, given: str | None
) -> str | None:
    """The model a simulation runs: --model when given (its own station's champion from then
    on), else the station's champion in the record, else the configured or bundled model."""
    if given:
        return given
    with session_scope(engine) as session:
        champion = lineup(session, station_id).champion
    if champion is not None:
        path = artifact_dir(settings, champion)
        if path is not None:
            return str(path)
    return settings.model_path or None


def simulation_station(engine: Engine, name: str) -> int:
    """The id of simulation station `name`, created if absent; a real station is refused."""
    with session_scope(engine) as session:
        station = find_station(session=session, name=name)
        if station is None:
            station = Station(name=name, simulated=True)
            session.add(station)
            session.flush()
        elif not station.simulated:
            raise SimulationRefused(
                f"station {name} is a real station: a simulation never records into one (its "
                "level and history are the line's). Name a simulation station with --station "
                f"(default {DEFAULT_STATION})"
            )
        assert station.id is not None
        return station.id


def simulated_operators(engine: Engine, n: int) -> list[int]:
    """Operators sim-1 .. sim-n, who can never log in."""
    ids = []
    with session_scope(engine) as session:
        for k in range(n):
            name = f"sim-{k + 1}"
            op = find_operator(session=session, name=name) or add_operator(
                session=session, name=name, role=Role.inspector, secret_hash=NO_LOGIN_HASH
            )
            assert op.id is not None
            ids.append(op.id)
    return ids


def _identity(predictor: Predictor) -> ModelInfo:
    """A given predictor's identity: the fake's own, or read from a real one's manifest."""
    info = getattr(predictor, "info", None)
    if isinstance(info, ModelInfo):
        return info
    return ModelInfo.from_manifest(getattr(predictor, "manifest", {}))


def simulate(
    settings: Settings,
    engine: Engine,
    config: SimulateConfig,
    *,
    source: FrameSource | None = None,
    inspectors: list[Inspector] | None = None,
    predictor: Predictor | None = None,
    model: ModelInfo | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Run `config.items` phones; `source`, `inspectors` and `predictor` (with its `model`
    identity) replace the synthetic line, its inspectors and the configured model.

    `progress(done, total)` is called on this thread after each item (a call per item costs
    nothing beside an item's work, and a test can act at an exact item); it should return
    quickly, as the next item waits for it."""
    t_start = time.perf_counter()
    if source is None or inspectors is None:
        check_labels_fit_the_line(settings)
    if config.station == settings.station_name:
        raise SimulationRefused(
            f"station {config.station} is this station's own name (station_name in the "
            "settings): a simulation records into a station of its own; pass another --station"
        )
    station_id = simulation_station(engine, config.station)
    operator_ids = simulated_operators(engine, config.inspectors)
    set_simulated_level(
        engine,
        station_id=station_id,
        level=config.level,
        reason=f"station simulate --level {config.level.value}",
        default=Level(settings.levels.default),
        settings=settings,
    )

    counter = _Counter(settings.ok_class)
    recorder = Recorder(engine, spool_dir=settings.files_dir, ok_label=settings.ok_class)
    background = BackgroundRecorder(recorder)

    def sink(rec: Record | Deferred) -> None:
        # Built and counted on the recorder's thread (one thread counts; a record waiting for
        # its image never holds this loop up).
        build = rec.build if isinstance(rec, Deferred) else (lambda: rec)

        def counted() -> Record:
            built = build()
            counter.add(built)
            return built

        background.submit(Deferred(rec.uid, counted))

    def until_written() -> None:
        # A check reads the record: every decision before it written first, unless the recorder
        # is stuck (the backlog's wait then stops the run).
        background.wait_until_written(stall_s=CLOSE_WAIT_S)

    done = [0]
    start = datetime.now(UTC) - timedelta(seconds=config.items * config.interval_s)
    core = StationCore(
        settings,
        engine,
        station_id=station_id,
        station_name=config.station,
        operator_id=operator_ids[0],
        operator_name="sim-1",
        sink=sink,
        rng=random.Random(config.seed),
        clock=lambda: done[0] * config.interval_s,
        now=lambda: start + timedelta(seconds=done[0] * config.interval_s),
        before_checks=until_written,
    )
    if config.level is not Level.human_only:
        try:
            if predictor is not None:
                given = (predictor, model or _identity(predictor))
                loaded = open_model(
                    None,
                    settings.labels,
                    timeout_s=settings.thresholds.model_timeout_s,
                    loader=lambda _p: given,
                )
            else:
                loaded = open_model(
                    simulated_model(engine, settings, station_id, config.model_path),
                    settings.labels,
                    timeout_s=settings.thresholds.model_timeout_s,
                )
            core.use_model(loaded)
            # The rest of the lineup (previous, challenger or canary) loaded before the first
            # item, so a seed gives the same run.
            core.lineup.check()
            core.lineup.wait_loaded()
        except Exception as e:  # any failure to load or to register: humans decide
            core.fallback.unusable(f"failed to load: {e}")
        else:
            decides = config.level in (Level.partial, Level.full)
            if decides and core.rules.model_version_id is not None:
                # A simulation decides by the settings' proposal, approved for its own station.
                approve_for_simulation(
                    engine,
                    station_id=station_id,
                    model_version_id=core.rules.model_version_id,
                    rule=proposal_from_settings(settings),
                )
    in_use: ModelInUse | None = core.model.get()

    intake = Intake(
        source if source is not None else synthetic_stills(config),
        store=ImageStore(settings.image_dir),
        golden=GoldenSamples(
            settings.levels.golden_share,
            seed=config.seed + 7919,
            size=(config.width, config.height),
        )
        if settings.levels.golden_share > 0
        else None,
        # The n-th item arrives n - 1 intervals after the first, whenever it is read ahead.
        now=lambda: start + timedelta(seconds=(intake.items_out - 1) * config.interval_s),
        writers=2,  # two fsyncs in flight overlap the model
        lowered_writers=True,  # the model's thread is the run's critical path
        early=core.assessor.start,  # the model works on the items read ahead
    )
    people = inspectors if inspectors is not None else synthetic_inspectors(config)

    # Routing, inference and decisions stay in order on this thread, so a seed gives the same
    # run; rendering runs ahead on the source's threads, statistics on the intake's, image
    # writes on its writers', database writes on the recorder's.
    stopped: str | None = None
    # Every core is busy with this run's own threads (rendering, encoding, the model): OpenCV's
    # pool splitting one resize or colour conversion across them only adds its hand-offs, 2.4 ms
    # of CPU per item at assist (bench/simulate_rate.py). The process's setting is restored after.
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        core.import_checks()  # a start-up cost, like the model's load: not the 100th item's
        t_loop = time.perf_counter()
        for captured in intake.items(should_stop=lambda: intake.items_out >= config.items, ahead=4):
            assessed = core.assessor.assess(captured)
            core.accept(assessed)
            k = done[0] % len(people)
            core.desk.operator_id = operator_ids[k % len(operator_ids)]
            while (w := core.desk.current) is not None:
                sug = w.suggestion
                label, seconds = people[k].decide(
                    w.assessed.captured.ground_truth or settings.ok_class,
                    sug.label if sug is not None else None,
                    sug is not None,
                    (done[0] * config.interval_s) % SHIFT_S,
                )
                core.desk.decide(label, decision_ms=seconds * 1000.0)
            done[0] += 1
            if progress is not None:
                progress(done[0], config.items)
            if not background.wait_for_backlog(MAX_BACKLOG, stall_s=CLOSE_WAIT_S):
                stopped = (
                    f"stopped after {done[0]} item(s): the recorder has written nothing for "
                    f"{CLOSE_WAIT_S:g} s (a write that hangs)"
                    if background.alive
                    else f"stopped after {done[0]} item(s): the recorder's thread has stopped"
                )
                break
            if recorder.unsaved:  # neither the database nor the spool takes decisions: stop
                stopped = (
                    f"stopped after {done[0]} item(s): decisions cannot be saved "
                    f"({recorder.spool_error or recorder.last_error})"
                )
                break
    finally:
        # However the run ends (the last item, an error, Ctrl-C), what was decided is written or
        # spooled before this returns.
        cv2.setNumThreads(opencv_threads)
        # Records given up on (none handled for 10 minutes: a write hangs) are in memory only:
        # counted as unsaved, so the run says so and exits 1.
        gave_up = background.close(timeout_s=CLOSE_WAIT_S)
        model_kept = core.model.get() is not None
        roles = core.lineup.roles()
        core.close()

    summary = counter.summary()
    summary.station = config.station
    summary.level = config.level.value
    summary.final_level = core.levels.read().value
    summary.model = (
        f"{in_use.info.name} {in_use.info.short}" if in_use is not None and model_kept else None
    )
    summary.champion_after = roles.champion
    summary.challenger_after = roles.challenger
    summary.canary_weight_after = roles.weight
    summary.lifecycle = core.lifecycle_news
    summary.alarms = list(core.monitor_news)
    summary.demoted_at_item = core.demoted_at_item
    summary.pending_writes = recorder.pending - recorder.unsaved
    summary.unsaved = recorder.unsaved + gave_up
    summary.stopped = stopped
    summary.rejected = recorder.rejected
    summary.banners = list(core.status.banners.values())
    if recorder.unclaimed:
        summary.banners.append(recorder.unclaimed)
    t_end = time.perf_counter()
    summary.seconds = t_end - t_start
    loop_s = t_end - t_loop
    summary.items_per_s = summary.items / loop_s if loop_s > 0 else 0.0
    return summary
