"""One running station, Qt-free: its parts wired together, and nothing else.

    Intake (frames -> Captured)                         station/pipeline/intake.py
      -> Assessor.assess: guard, plan, model            station/pipeline/assess.py   heavy, any thread
      -> StationCore.accept: fail-safe, then the desk   station/pipeline/status.py, desk.py
      -> DecisionDesk: route, queue, decide, undo       -> records -> Recorder (its own thread)

The window and `station simulate` drive it the same way: `assessor.assess` where waiting is
allowed, everything else on one thread. The level in force is read through a LevelWatch before
each item is planned and again once its model answered; the desk routes at the lower of that and
the level last seen (the window keeps it fresh with `levels.poll()`), and never waits for the
database itself.
"""

from __future__ import annotations

import importlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.errors import IntegrityProblem
from db.models import Level, LevelChange
from review.rules import DecisionRule
from station.errors import ModelRefused
from station.levels import LevelWatch, demote_automatically
from station.pipeline.assess import Assessed, Assessor, ModelHolder, ModelInUse, open_model
from station.pipeline.desk import DecisionDesk
from station.pipeline.guard import InputGuard
from station.pipeline.intake import utc_now
from station.pipeline.lineup import LineupWatch, Opener, ShadowRunner
from station.pipeline.recorder import Ack, Problem
from station.pipeline.records import Deferred, Record, ensure_champion
from station.pipeline.router import Route, Router
from station.pipeline.status import ModelFallback, StationStatus
from station.settings import Settings
from station.thresholds import RuleWatch

log = logging.getLogger(__name__)

#: The drift checks (station/monitor.py), imported where they are first needed: most commands
#: that build a core never run one, and the import takes SciPy's statistics with it.
MONITOR_MODULE = "station.monitor"


def _alarm_banner(result: Any) -> str | None:
    """The banner for the alarms a round left open (warnings and failures)."""
    failing = [c for c in result.checks if c.verdict == "fail"]
    warning = [c for c in result.checks if c.verdict == "warn"]
    if failing:
        level = f"; level now {result.demoted.to_level}" if result.demoted is not None else ""
        return (
            "DRIFT ALARM — "
            + ", ".join(c.check for c in failing)
            + level
            + " (engineer: `station alarms`, F9 dashboard)"
        )
    if warning:
        return "Drift warning — " + ", ".join(c.check for c in warning)
    return None


class StationCore:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        station_id: int,
        station_name: str,
        operator_id: int,
        operator_name: str,
        sink: Callable[[Record | Deferred], Any],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        opener: Opener | None = None,
        before_checks: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        # Called before a round of checks that read the record (station simulate: once every
        # decision so far is written, so a seed gives the same verdicts however the threads ran)
        self.before_checks = before_checks
        self.settings = settings
        self.station_id = station_id
        self._items_since_check = 0
        self.items_accepted = 0  # by the desk's thread: the pipeline reads it to bound the queue
        self._items_planned = 0
        self._items_since_monitor = 0
        self.lifecycle_news: str | None = None  # the last automatic change of role, in words
        self.monitor_news: list[str] = []  # alarms opened by this station's checks, in words
        self.demoted_at_item: int | None = None  # the item (0-based) an alarm demoted before
        self._banner_news: tuple[str | None] | None = None  # news for the desk's thread
        self.station_name = station_name
        self.operator_name = operator_name
        self.labels = settings.labels
        self.levels = LevelWatch(engine, station_id, Level(settings.levels.default))
        self.router = Router(
            levels=settings.levels, ok_class=settings.ok_class, rng=rng or random.Random()
        )
        self.rules = RuleWatch(engine, station_id)
        self.canary_rules = RuleWatch(engine, station_id)  # the challenger's, for a canary's arm
        self.model = ModelHolder()
        self.lineup = LineupWatch(
            engine,
            settings,
            station_id,
            champion=self.model,
            open_model=opener
            or (
                lambda path: open_model(
                    path, settings.labels, timeout_s=settings.thresholds.model_timeout_s
                )
            ),
            on_champion=lambda version_id, _m: self.rules.follow(version_id),
            on_challenger=lambda version_id: self.canary_rules.follow(version_id),
        )
        self.shadow = ShadowRunner()
        self.status = StationStatus(clock)
        self.assessor = Assessor(
            router=self.router,
            guard=InputGuard(settings.guard),
            level=self.levels.read,
            model=self.model,
            rule=self._rule,
            before=self._before_item,
            challenger=self.lineup.challenger,
            shadow=self.shadow,
            canary_share=self.lineup.canary_share,
        )
        self.desk = DecisionDesk(
            router=self.router,
            level=lambda: self.levels.last,
            labels=self.labels,
            station_id=station_id,
            operator_id=operator_id,
            send=sink,
            clock=clock,
            now=now,
        )
        self.fallback = ModelFallback(model=self.model, status=self.status, demote=self._demote)

    # ------------------------------------------------------------------ the model

    def use_model(self, model: ModelInUse) -> None:
        """Put a loaded model in use (any thread) and record it as the station's champion.

        Refused (ModelRefused, before any item) when the record already holds other weights
        under the model's name and version: every prediction of it would be refused by the
        database. Any other failure to record is only logged: each prediction names its model."""
        champion_id: int | None = None
        try:
            with session_scope(self.engine) as session:
                mv = ensure_champion(session=session, station_id=self.station_id, ref=model.info)
                champion_id = mv.id
        except ModelRefused:
            model.worker.close()
            raise
        except IntegrityProblem as e:
            model.worker.close()
            raise ModelRefused(
                f"{e} (retrain with `station model train --version ...`, or use the registered "
                "artifact)"
            ) from e
        except Exception as e:
            log.warning("could not record the champion deployment: %s", e)
        self.rules.follow(champion_id)  # its own approved rule, or none: it decides nothing
        self.model.set(model)
        self.lineup.started_with(champion_id, model)
        self.levels.cap(None)  # a usable model again: the record's level holds

    def _before_item(self) -> None:
        """Pipeline thread, before each item is planned: every `lifecycle.check_every_items`
        items the canary's step is judged and the champion's health checked (station/ramp.py,
        the system's own recorded changes of role); then the lineup in the record is followed."""
        self._items_since_check += 1
        self._items_since_monitor += 1
        lifecycle = self._items_since_check >= self.settings.lifecycle.check_every_items
        drift = self.settings.monitor.enabled and (
            self._items_since_monitor >= self.settings.monitor.every_items
        )
        if lifecycle or drift:
            self.before_checks()
        if lifecycle:
            self._items_since_check = 0
            self._check_lifecycle()
        if drift:
            self._items_since_monitor = 0
            self._check_drift()
        self._items_planned += 1
        self.lineup.check()

    def import_checks(self) -> None:
        """Import the drift checks' code now, before the first item. Left to the first check,
        the item that triggers it waited for SciPy's statistics to import on this thread: 0.8 s
        on this project's 2-core machine."""
        if self.settings.monitor.enabled:
            importlib.import_module(MONITOR_MODULE)

    def _check_drift(self) -> None:
        """A round of drift checks (station/monitor.py); a failure has demoted the station in
        the record by the time it returns, and the item about to be planned obeys it."""
        from station.monitor import check_station

        try:
            result = check_station(self.engine, self.settings, self.station_id)
        except Exception as e:  # the line goes on; the next round tries again
            log.warning("could not run the drift checks: %s", e)
            return
        for alarm in result.opened:
            text = f"{alarm.severity.upper()} {alarm.message}"
            self.monitor_news.append(text)
            log.info("drift alarm: %s", text)
        if result.demoted is not None:
            self.levels.note(Level(result.demoted.to_level))
            if self.demoted_at_item is None:
                self.demoted_at_item = self._items_planned
        if result.canary_stopped:
            self.lifecycle_news = f"canary {result.canary_stopped} stopped by a drift alarm"
        if result.status == "checked":
            # The status belongs to the desk's thread: shown with the next item it accepts.
            self._banner_news = (_alarm_banner(result),)

    def _check_lifecycle(self) -> None:
        from station.ramp import canary_step, watch_champion

        try:
            step = canary_step(self.engine, self.settings, station_name=self.station_name)
            if step is not None and step.applied:
                self.lifecycle_news = (
                    f"canary {step.canary}: step at {step.weight:g}% {step.outcome.value}"
                )
                log.warning("%s (%s)", self.lifecycle_news, step.reason)
            rolled = watch_champion(self.engine, self.settings, self.station_id)
            if rolled is not None:
                self.lifecycle_news = rolled
        except Exception as e:  # the line goes on; the next check tries again
            log.warning("could not check the model lifecycle: %s", e)

    def _rule(self, canary: bool = False) -> DecisionRule | None:
        """The approved rule in force for the model that answers (the champion's, or the
        canary's in its arm), read before each item is planned (pipeline thread)."""
        found = (self.canary_rules if canary else self.rules).read()
        return found.rule if found is not None else None

    def _demote(self, cause: str) -> LevelChange | None:
        # Held here first: items already on their way are routed as human_only even if the
        # record cannot be written now.
        self.levels.cap(Level.human_only)
        change = demote_automatically(
            self.engine, station_id=self.station_id, cause=cause, default=self.levels.default
        )
        self.levels.note(Level.human_only)
        return change

    # ------------------------------------------------------------------ one thread from here

    def accept(self, assessed: Assessed) -> Route:
        """An assessed item arrives: the image-store banner follows its write, the fail-safe
        counts its model errors, and the desk routes it."""
        if assessed.captured.stored.done():
            self.status.images_stored(assessed.captured.store_error)
        banner, self._banner_news = self._banner_news, None
        if banner is not None:
            self.status.alarm_banner(banner[0])
        self.status.item_seen()
        self.items_accepted += 1
        self.fallback.observe(assessed)
        return self.desk.accept(assessed)

    def acknowledge(self, ack: Ack) -> None:
        self.desk.acknowledge(ack)
        if self.desk.pending_writes == 0:
            self.database_problem(None)

    def database_problem(self, problem: Problem | None) -> None:
        """The recorder's news: the banner says it, and while decisions are on no disk at all
        the desk takes no more (nothing is decided into the void)."""
        self.status.database(problem)
        self.desk.hold = (
            f"decisions cannot be saved ({problem.message})"
            if problem is not None and problem.unsaved
            else None
        )

    @property
    def level(self) -> Level:
        """The level read last (cheap: for display; routing reads it afresh)."""
        return self.levels.last

    def switch_operator(self, operator_id: int, operator_name: str) -> None:
        """Another inspector logged in at this station (GUI thread): every decision from now
        on is theirs, the items waiting included."""
        self.operator_name = operator_name
        self.desk.change_operator(operator_id)

    def on_change(self, listener: Callable[[], None]) -> None:
        self.desk.listeners.append(listener)
        self.status.listeners.append(listener)

    def close(self) -> None:
        self.levels.stop()
        self.shadow.close()
        self.lineup.close()
        in_use = self.model.set(None)
        if in_use is not None:
            in_use.worker.close()
