"""The decision desk: where an assessed item is routed at the level in force, waits for a person
if it needs one, and is decided (or undone); every decision leaves as a record. One thread owns
it (the GUI's in the window, the loop's in `station simulate`), so it needs no locks.

"saved #N" is shown only after the record's commit comes back (`acknowledge`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from db.models import DecidedBy, Level
from review.labels import LabelSet
from station.errors import LineStopped
from station.pipeline.assess import Assessed
from station.pipeline.intake import utc_now
from station.pipeline.recorder import Ack
from station.pipeline.records import (
    ChallengeRecord,
    CorrectionRecord,
    DecisionRecord,
    Deferred,
    InspectionRecord,
    Record,
    inspection_record,
    new_uid,
)
from station.pipeline.router import Decider, Plan, Route, Router

UNDO_WINDOW_S = 5.0


@dataclass(frozen=True)
class Suggestion:
    """What assist shows: exists only where the inspector may see the model."""

    label: str
    confidence: float
    probabilities: Mapping[str, float]
    p_defect: float


@dataclass
class Waiting:
    """An item waiting for (or in front of) the inspector."""

    assessed: Assessed
    route: Route
    shown_at: float | None = None
    corrects: str | None = None  # uid of the decision this one replaces (undo)

    @property
    def seq(self) -> int:
        return self.assessed.seq

    @property
    def suggestion(self) -> Suggestion | None:
        pred = self.assessed.prediction
        if not self.route.show_suggestion or pred is None:
            return None
        return Suggestion(
            pred.label, float(pred.confidence), dict(pred.probabilities), float(pred.p_defect)
        )

    @property
    def kind(self) -> str:
        """Why this item waits: golden, audit or review (partial / full), else inspect."""
        if self.route.golden:
            return "golden"
        if self.route.audit:
            return "audit"
        if self.route.plan.level in (Level.partial, Level.full):
            return "review"
        return "inspect"


@dataclass
class Outcome:
    """One decided item, for the strip of recent items and the "saved" tick."""

    uid: str
    seq: int
    label: str
    decided_by: DecidedBy
    saved_item_id: int | None = None
    challenged: bool = False  # an automatic decision the inspector sent to adjudication


@dataclass
class ShiftTally:
    """What the person at the desk decided since they logged in: their own counters."""

    started: float  # on the desk's clock
    decided: int = 0
    failed: int = 0

    @property
    def passed(self) -> int:
        return self.decided - self.failed


class DecisionDesk:
    def __init__(
        self,
        *,
        router: Router,
        level: Callable[[], Level],  # the level last seen: never waits (this may be the GUI)
        labels: LabelSet,
        station_id: int,
        operator_id: int,
        send: Callable[[Record | Deferred], Any],
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.router = router
        self.level = level
        self.labels = labels
        self.station_id = station_id
        self.operator_id = operator_id
        self.send = send
        self.clock = clock
        self.now = now
        self.queue: deque[Waiting] = deque()
        self.recent: deque[Outcome] = deque(maxlen=40)
        self.pending_writes = 0
        self.last_saved: int | None = None
        # Why no decision can be taken now (decisions cannot be saved anywhere), or None.
        self.hold: str | None = None
        self._last: tuple[Outcome, Waiting, float] | None = None
        self.listeners: list[Callable[[], None]] = []
        self.tally = ShiftTally(started=clock())

    def change_operator(self, operator_id: int) -> None:
        """Another person at the desk: items still waiting are theirs to decide, their counters
        and strip start empty, and the last decision (someone else's) can no longer be undone."""
        self.operator_id = operator_id
        self.tally = ShiftTally(started=self.clock())
        self._last = None
        self.recent.clear()  # the strip (and the look back) shows the newcomer's own phones
        self._changed()

    # ------------------------------------------------------------------ items in

    def accept(self, assessed: Assessed) -> Route:
        """Route an item at the level in force now: the model's own decisions are recorded at
        once; the rest wait for a person. A demotion seen since the item was planned (after its
        model answered, or by the station since) applies to it already; a promotion waits for
        the next item."""
        level = min(self.level(), assessed.level_after, key=lambda lv: lv.rank)
        if self.hold is not None and level.rank > Level.shadow.rank:
            level = Level.shadow  # the model decides nothing it could not record: all wait
        route = self._route(assessed, self._plan_at(level, assessed.plan))
        if route.decider is Decider.model and not route.audit:
            assert route.model_label is not None
            rec = self._record(assessed, route, None, route.model_label, DecidedBy.model)
            self._sent(rec, Outcome(rec.uid, assessed.seq, route.model_label, DecidedBy.model))
        # An audited model decision: the model's call is in force (the phone moves on) and a
        # blind audit waits; the item is written with the audit, in one transaction. Nothing on
        # screen shows the model's call before the auditor has decided.
        if route.needs_human:
            self.queue.append(Waiting(assessed, route))
        self._changed()
        return route

    def _plan_at(self, level: Level, plan: Plan) -> Plan:
        """`plan`, or the plan of the lower `level` when the station was demoted since."""
        if level.rank >= plan.level.rank:
            return plan
        return self.router.plan(
            level, golden=plan.golden, model_available=plan.run_model, rule=plan.rule
        )

    def _route(self, assessed: Assessed, plan: Plan) -> Route:
        pred = assessed.prediction
        inference = assessed.inference
        return self.router.route(
            plan,
            probabilities=dict(pred.probabilities) if pred is not None else None,
            model_label=pred.label if pred is not None else None,
            error=inference.error if inference is not None else None,
            guard_passed=assessed.guard.passed,
            guard_reason=assessed.guard.reason,
        )

    @property
    def current(self) -> Waiting | None:
        """The item in front of the person. An item about to be shown is routed again if the
        station was demoted while it waited (assist -> shadow hides the suggestion it would
        have shown); the model's calls already in force (audits) and golden samples stay."""
        if not self.queue:
            return None
        head = self.queue[0]
        if head.shown_at is None:
            if head.route.decider is Decider.human and not head.route.golden:
                plan = self._plan_at(self.level(), head.route.plan)
                if plan is not head.route.plan:
                    route = self._route(head.assessed, plan)
                    if route.decider is Decider.human:  # a demotion never decides an item
                        head.route = route
            head.shown_at = self.clock()
        return head

    # ------------------------------------------------------------------ decisions

    def decide(self, label: str, *, decision_ms: float | None = None) -> str:
        """The person's decision on the current item; returns the record's uid."""
        if label not in self.labels.all:
            raise ValueError(f"label {label!r} is not one of the station's {list(self.labels.all)}")
        if self.hold is not None:
            raise LineStopped(f"the line is stopped: {self.hold}")
        w = self.current
        if w is None:
            raise LookupError("no item is waiting for a decision")
        self.queue.popleft()
        t = self.clock()
        ms = decision_ms if decision_ms is not None else (t - (w.shown_at or t)) * 1e3
        decision = DecisionRecord(
            operator_id=self.operator_id,
            label=label,
            decided_at=self.now(),
            decision_ms=ms,
            suggestion_shown=w.suggestion is not None,
            blind=w.route.blind,
            audit=w.route.audit,
            golden=w.route.golden,
            defect_types=tuple(self.labels.defect_types(label)),
        )
        if w.route.decider is Decider.model:  # an audit: the model's call stays in force
            assert w.route.model_label is not None
            final, by = w.route.model_label, DecidedBy.model
        else:
            final, by = label, DecidedBy.human
        rec: Record | Deferred
        if w.corrects is not None:
            rec = CorrectionRecord(
                uid=new_uid(),
                corrects_uid=w.corrects,
                decision=decision,
                final_label=final,
                level=w.route.plan.level.value,
                threshold_version=w.route.plan.rule_version,
                decided_by=by.value,
            )
        else:
            truth = self.router.truth_sample(w.route)
            # An auditor who disagrees with the model's call sends the item to adjudication:
            # the audit counts (review.audits) once a QA lead has settled it.
            flagged = w.route.audit and label != w.route.model_label
            rec = self._record(
                w.assessed, w.route, decision, final, by, truth_sample=truth, audit_flagged=flagged
            )
        outcome = Outcome(rec.uid, w.seq, label, DecidedBy.human)
        self._count(label, +1)
        # An undo corrects the item's first record; the correction's own uid is only for acks.
        self._last = (replace(outcome, uid=w.corrects or rec.uid), w, t)
        self._sent(rec, outcome)
        return rec.uid

    def challenge(self) -> Outcome | None:
        """The inspector doubts the newest automatic decision still on the strip: it goes to a
        QA lead for adjudication (recorded, durable like a decision). None when there is no
        automatic decision to challenge, or it was challenged already."""
        for o in self.recent:
            if o.decided_by is DecidedBy.model and not o.challenged:
                o.challenged = True
                rec = ChallengeRecord(
                    uid=new_uid(), item_uid=o.uid, operator_id=self.operator_id, at=self.now()
                )
                self.pending_writes += 1
                result = self.send(rec)
                if isinstance(result, Ack):
                    self.acknowledge(result)
                self._changed()
                return o
        return None

    def _count(self, label: str, step: int) -> None:
        self.tally.decided += step
        if self.labels.is_defect(label):
            self.tally.failed += step

    def undo_seconds_left(self) -> float:
        if self._last is None:
            return 0.0
        return max(0.0, UNDO_WINDOW_S - (self.clock() - self._last[2]))

    def can_undo(self) -> bool:
        return self.undo_seconds_left() > 0

    def undo(self) -> bool:
        """Put the last decided item back in front of the person (within the undo window); the
        next decision on it supersedes the first."""
        if not self.can_undo():
            return False
        assert self._last is not None
        outcome, w, _ = self._last
        self._last = None
        self._count(outcome.label, -1)  # counted again when decided again
        self.queue.appendleft(Waiting(w.assessed, w.route, corrects=outcome.uid))
        # One label per item on the strip: the undone one leaves it, the new decision joins it.
        for o in [o for o in self.recent if o.seq == w.seq and o.decided_by is DecidedBy.human]:
            self.recent.remove(o)
        self._changed()
        return True

    @property
    def undoing(self) -> bool:
        """The item in front of the person is one they undid: their next key corrects it."""
        return bool(self.queue) and self.queue[0].corrects is not None

    # ------------------------------------------------------------------ records out, acks in

    def _record(
        self,
        assessed: Assessed,
        route: Route,
        decision: DecisionRecord | None,
        final_label: str,
        decided_by: DecidedBy,
        *,
        truth_sample: float | None = None,
        audit_flagged: bool = False,
    ) -> InspectionRecord | Deferred:
        """The item's record; Deferred (built by the recorder's thread) while its image is still
        being written, so this thread never waits for the disk."""
        uid = new_uid()

        def build() -> InspectionRecord:
            return inspection_record(
                assessed,
                route,
                uid=uid,
                station_id=self.station_id,
                decision=decision,
                final_label=final_label,
                decided_by=decided_by,
                threshold_version=route.plan.rule_version,
                truth_sample=truth_sample,
                audit_flagged=audit_flagged,
            )

        ready = assessed.captured.stored.done() and (
            assessed.shadow is None or assessed.shadow.future.done()
        )
        return build() if ready else Deferred(uid, build)

    def _sent(self, rec: Record | Deferred, outcome: Outcome) -> None:
        self.recent.appendleft(outcome)
        self.pending_writes += 1
        result = self.send(rec)
        if isinstance(result, Ack):  # a synchronous sink (tests, benches)
            self.acknowledge(result)
        self._changed()

    def acknowledge(self, ack: Ack) -> None:
        """A record committed (call on the desk's thread)."""
        self.pending_writes = max(0, self.pending_writes - 1)
        self.last_saved = ack.item_id
        for o in self.recent:
            if o.uid == ack.uid:
                o.saved_item_id = ack.item_id
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()
