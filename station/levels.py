"""The level service: the one way a station's automation level changes, and how a running station
learns of a change.

Three writers, each recorded with who and why: a person (`set_level`: an engineer; a promotion
needs a passing gate or a recorded override, a demotion needs no evidence), the system
(`demote_automatically`: an unusable model, an alarm (station/monitor.py); never a promotion), and a simulation
(`set_simulated_level`, only on stations `station simulate` owns). A running station reads the
level in force through a `LevelWatch` before each item is routed, so a change committed anywhere
is obeyed from the next item on. Every evaluation and change is appended to the record."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import (
    GateEvaluation,
    Level,
    LevelChange,
    Operator,
    Station,
)
from db.repo import (
    current_level,
    find_station,
    get_or_create_station,
    record_automatic_demotion,
    record_gate_evaluation,
    record_level_change,
)
from review.gates import GateResult, parse_level
from station.auth import require
from station.errors import LevelChangeRefused, StationError
from station.settings import Settings
from station.text import readable

log = logging.getLogger(__name__)

__all__ = [
    "LevelChangeOutcome",
    "LevelChangeRefused",
    "LevelWatch",
    "demote_automatically",
    "evaluate",
    "level_of",
    "set_level",
    "set_simulated_level",
]


@dataclass(frozen=True)
class LevelChangeOutcome:
    change: LevelChange
    gate: GateResult | None
    evaluation_id: int | None


def resolve_station(session: Session, settings: Settings, name: str | None) -> Station:
    """The configured station (created on first use), or another one that already exists.

    Read commands must not invent stations from a typo, so an unknown name other than the
    configured one is refused with the list of known stations."""
    if name is None or name == settings.station_name:
        return get_or_create_station(session=session, name=settings.station_name)
    station = find_station(session=session, name=name)
    if station is None:
        known = [s.name for s in session.exec(select(Station).order_by(col(Station.name))).all()]
        raise StationError(
            f"unknown station {name!r}: known stations are {', '.join(known) or 'none yet'}"
        )
    return station


def level_of(engine: Engine, settings: Settings, station_name: str | None = None) -> Level:
    with session_scope(engine) as s:
        station = resolve_station(s, settings, station_name)
        assert station.id is not None
        return current_level(
            session=s, station_id=station.id, default=Level(settings.levels.default)
        )


def evaluate(
    engine: Engine,
    settings: Settings,
    to_level: str | Level,
    *,
    station_name: str | None = None,
    operator: Operator | None = None,
    store: bool = True,
) -> tuple[GateResult, int | None, dict[str, Any]]:
    """Evaluate the gate from the station's current level to `to_level` on the recorded evidence
    (review.report.gate_check: the same function the report's gates block is), store it, and
    return (result, evaluation id, the whole block).

    The evidence is read on its own connection, closed before the evaluation is written: a long
    read transaction could not be upgraded to a write while the station commits.
    """
    from review.report import gate_check
    from station.monitor import drift_alarm_open

    target = parse_level(to_level)
    with session_scope(engine) as s:
        station = resolve_station(s, settings, station_name)
        assert station.id is not None
        station_id, name = station.id, station.name
    alarm_state = drift_alarm_open(engine, settings, station_id)
    with engine.connect() as conn:
        result, block = gate_check(
            conn,
            name,
            target,
            labels=settings.labels,
            rules=settings.gates.rules,
            default_level=Level(settings.levels.default),
            drift_alarm_open=alarm_state,
        )
        conn.rollback()
    evaluation_id = None
    if store:
        with session_scope(engine) as s:
            evaluation = record_gate_evaluation(
                session=s,
                evaluation=GateEvaluation(
                    station_id=station_id,
                    from_level=Level(result.from_level),
                    to_level=Level(result.to_level),
                    passed=result.passed,
                    rules=result.rules,
                    numbers={
                        **result.numbers,
                        "model_version": block["model_version"],
                        "thresholds": block["thresholds"],
                        "selective": block["selective_threshold"],
                        "checks": [c.to_dict() for c in result.checks],
                    },
                    operator_id=operator.id if operator else None,
                ),
            )
            evaluation_id = evaluation.id
    return result, evaluation_id, block


def set_level(
    engine: Engine,
    settings: Settings,
    to_level: str | Level,
    *,
    operator: Operator,
    reason: str,
    override: bool = False,
    station_name: str | None = None,
) -> LevelChangeOutcome:
    """Change the level as `operator` (an engineer). A promotion runs the gate first and is refused
    when it fails, unless `override` (recorded as such, with the reason)."""
    require(operator, "set_level")
    reason = readable(reason, "--reason")
    if not reason:
        raise LevelChangeRefused(
            "a level change needs a reason (--reason TEXT); it is kept in the record"
        )
    target = parse_level(to_level)
    name = station_name or settings.station_name
    source = level_of(engine, settings, name)
    gate: GateResult | None = None
    evaluation_id: int | None = None
    if target.rank > source.rank:
        gate, evaluation_id, _ = evaluate(
            engine, settings, target, station_name=name, operator=operator
        )
        if not gate.passed and not override:
            raise LevelChangeRefused(
                f"promotion {source.value} -> {target.value} refused by its gate: "
                f"{gate.failed_text}. "
                "Collect more evidence, or pass --override with a reason (recorded)"
            )
        if override:
            require(operator, "override_gate")
    with session_scope(engine) as s:
        station = resolve_station(s, settings, name)
        assert station.id is not None and operator.id is not None
        # Re-read inside the writing transaction: an alarm may have demoted the station while the
        # gate was evaluated, and a promotion must not silently undo that.
        now = current_level(
            session=s, station_id=station.id, default=Level(settings.levels.default)
        )
        if now != source:
            raise LevelChangeRefused(
                f"the level changed to {now.value} while the gate was evaluated "
                f"(it was {source.value}); check `station level history` and try again"
            )
        change = record_level_change(
            session=s,
            change=LevelChange(
                station_id=station.id,
                from_level=source,
                to_level=target,
                operator_id=operator.id,
                reason=reason.strip(),
                gate_evaluation_id=evaluation_id,
                override=bool(override and gate is not None and not gate.passed),
            ),
        )
        if gate is not None and gate.passed:
            # A gate passed: the alarms it answers close (a promotion by override closes none).
            from station.monitor import close_on_approval

            close_on_approval(s, change.station_id, change)
    if gate is not None and gate.passed:
        # Only evidence re-baselines drift: after an override the checks still compare with
        # the line the level was last approved on (a persisting failure demotes again).
        _new_reference(engine, settings, change)
    return LevelChangeOutcome(change=change, gate=gate, evaluation_id=evaluation_id)


def _new_reference(engine: Engine, settings: Settings, change: LevelChange) -> None:
    """The line as it is now is what the approved level was approved on: drift is measured from
    it (station/monitor.py). A failure here never undoes the level change."""
    from station.monitor import capture_reference

    try:
        capture_reference(
            engine,
            settings,
            change.station_id,
            level_change_id=change.id,
            reason=f"level {change.from_level} -> {change.to_level}",
        )
    except Exception as e:
        log.warning("could not capture the drift reference: %s", e)


def demote_automatically(
    engine: Engine,
    *,
    station_id: int,
    cause: str,
    to_level: Level = Level.human_only,
    default: Level = Level.human_only,
) -> LevelChange | None:
    """The system steps the station down to `to_level` (recorded as automatic, with its cause);
    nothing when the station is already at or below it. Never a promotion."""
    with session_scope(engine) as s:
        return record_automatic_demotion(
            session=s, station_id=station_id, cause=cause, to_level=to_level, default=default
        )


def set_simulated_level(
    engine: Engine,
    *,
    station_id: int,
    level: Level,
    reason: str,
    default: Level,
    settings: Settings | None = None,
) -> None:
    """A simulation puts its own station at the level it simulates (recorded, with no operator).
    Refused for a real station: its level changes only through a person or the system."""
    with session_scope(engine) as s:
        station = s.get(Station, station_id)
        if station is None or not station.simulated:
            name = station.name if station is not None else f"#{station_id}"
            raise LevelChangeRefused(
                f"station {name} is not a simulation station: its level changes only with "
                "`station level set`"
            )
        now = current_level(session=s, station_id=station_id, default=default)
        change = None
        if now is not level:
            change = record_level_change(
                session=s,
                change=LevelChange(
                    station_id=station_id,
                    from_level=now,
                    to_level=level,
                    reason=reason,
                    override=level.rank > now.rank,
                ),
            )
    if change is not None and level.rank > now.rank and settings is not None:
        # Set like an override (no gate): its alarms stay open, but drift is measured from here.
        _new_reference(engine, settings, change)


class LevelWatch:
    """The level in force at one running station, as the station sees it.

    `read()` asks the record (any thread that may wait for the database: the pipeline's, before
    an item is planned and again after the model answered). `last` is the newest answer, for the
    one thread that must never wait (the GUI's) and for display; `poll()` keeps it fresh from a
    thread of its own while no items come. A change committed by anyone, from any process, is
    thus obeyed from the next item on.

    A read that fails keeps the last level, and reads skip the database for RETRY_S after it (the
    poller keeps trying), so a database that hangs does not stall every item. `cap()` is a
    ceiling the station holds on its own: the fail-safe's human_only when even its demotion could
    not be written.
    """

    RETRY_S = 10.0

    def __init__(self, engine: Engine, station_id: int, default: Level) -> None:
        self.engine = engine
        self.station_id = station_id
        self.default = default
        self._db_level = default
        self._ceiling: Level | None = None
        self._skip_until = 0.0
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        # A Core query, not the ORM: it runs twice per item (0.14 ms against 0.6 ms).
        self._latest = (
            select(LevelChange.to_level)
            .where(LevelChange.station_id == station_id)
            .order_by(col(LevelChange.id).desc())
            .limit(1)
        )
        self.read()

    @property
    def last(self) -> Level:
        level, ceiling = self._db_level, self._ceiling
        return level if ceiling is None or level.rank <= ceiling.rank else ceiling

    def read(self, *, retrying: bool = False) -> Level:
        if not retrying and time.monotonic() < self._skip_until:
            return self.last
        try:
            with self.engine.connect() as conn:
                row = conn.execute(self._latest).first()
        except SQLAlchemyError as e:
            # Unreadable now: keep the last level read (writes are failing too, and the window
            # says so); a demotion committed meanwhile is obeyed once the database answers.
            log.warning("cannot read the level of station %d: %s", self.station_id, e)
            self._skip_until = time.monotonic() + self.RETRY_S
            return self.last
        self._skip_until = 0.0
        self._db_level = Level(row[0]) if row is not None else self.default
        return self.last

    def note(self, level: Level) -> None:
        """A level this process has just written (its own demotion): known without a read."""
        self._db_level = level

    def cap(self, ceiling: Level | None) -> None:
        self._ceiling = ceiling

    def poll(self, every_s: float = 1.0) -> None:
        """Keep `last` fresh from a thread of its own until `stop()`."""
        if self._poller is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.read(retrying=True)

        self._poller = threading.Thread(target=loop, name="level-watch", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(5.0)
            self._poller = None
