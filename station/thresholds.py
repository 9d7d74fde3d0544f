"""Thresholds as approved data: the rule by which a station's model decides alone is fitted on
its evidence, stored as a proposal, and runs only once an engineer approves it. The settings'
[thresholds] are a starting proposal (caps included), never the rule in force.

The rule in force at a station is its newest approved set for its champion model version: a
new champion brings no rule with it (evidence belongs to a model version).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import ChosenFor, Operator, Station, ThresholdSet
from db.repo import champion_version
from review.rules import (
    DecisionRule,
    RuleEvidence,
    RuleInForce,
    fit_rule,
    rule_in_force,
)
from station.auth import require
from station.errors import StationError
from station.levels import resolve_station
from station.settings import Settings
from station.text import readable

log = logging.getLogger(__name__)


class ThresholdsRefused(StationError):
    pass


#: Adjudicated truth-sample items wanted before the auto-pass side is fitted on them.
MIN_TRUTH_FOR_FIT = 200


def proposal_from_settings(settings: Settings) -> DecisionRule:
    t = settings.thresholds
    return DecisionRule(t.auto_pass, t.auto_fail, dict(t.never_pass_above))


def evidence_items(
    conn: Connection,
    station: str,
    model_version: str | None,
    ok: str,
    *,
    through_item_id: int | None = None,
    truth_sample: bool = False,
) -> Iterator[tuple[dict[str, float], str]]:
    """(calibrated probabilities, reference label) of the station's uniform evidence items for
    that model version (up to `through_item_id`), one at a time; `truth_sample`: only those
    adjudicated from the truth sample (the reference is then the adjudication)."""
    from review import query as Q
    from review.query import ReportFilters

    f = Q.frame(
        conn,
        ReportFilters(station=station, model_version=model_version, evidence_only=True),
        columns=["item_id", "probabilities", "reference_label", "uniform", "adjudicated_for"],
    )
    query = f.select()
    if through_item_id is not None:
        query = query.where(f.c.item_id <= through_item_id)
    if truth_sample:
        query = query.where(f.c.adjudicated_for == ChosenFor.truth_sample.value)
    for r in conn.execute(query).mappings():
        if r["uniform"] and r["probabilities"] and r["reference_label"] is not None:
            probs = {str(k): float(v) for k, v in dict(r["probabilities"]).items()}
            yield probs, str(r["reference_label"])


def last_item_id(conn: Connection, station_id: int) -> int:
    """The newest item of the station now (0: none): a fit uses items up to it, and the gates
    measure the fitted rule only on items after it, never on the items it was chosen on."""
    from sqlalchemy import func
    from sqlalchemy import select as sa_select

    from db.models import Item

    item = Item.__table__  # type: ignore[attr-defined]
    found = conn.execute(
        sa_select(func.max(item.c.id)).where(item.c.station_id == station_id)
    ).scalar()
    return int(found or 0)


def fit(
    engine: Engine,
    settings: Settings,
    *,
    station_name: str | None = None,
    target_escape: float | None = None,
    target_false_fail: float = 0.02,
    proposed_by: Operator | None = None,
) -> tuple[ThresholdSet, RuleEvidence, dict[str, Any]]:
    """Fit thresholds on the station's uniform evidence for its champion and store them as a
    proposal (not in force until approved)."""
    target = target_escape if target_escape is not None else settings.gates.max_escape_upper95
    for name, value in (("--target-escape", target), ("--target-false-fail", target_false_fail)):
        if not 0.0 < value < 1.0:
            raise ThresholdsRefused(f"{name} must be a rate in (0, 1), got {value}")
    with session_scope(engine) as s:
        station = resolve_station(s, settings, station_name)
        assert station.id is not None
        mv = champion_version(s, station.id)
        if mv is None or mv.id is None:
            raise ThresholdsRefused(
                f"station {station.name} has no champion model yet: thresholds are fitted on a "
                "model's own evidence (run the station in shadow first)"
            )
        station_id, name, mv_id, spec = station.id, station.name, mv.id, f"{mv.name}:{mv.version}"
    with engine.connect() as conn:
        through = last_item_id(conn, station_id)
        items = list(evidence_items(conn, name, spec, settings.ok_class, through_item_id=through))
    if not items:
        raise ThresholdsRefused(
            f"station {name} has no uniform evidence for {spec} (shadow items, blind checks): "
            "collect some before fitting thresholds"
        )
    with engine.connect() as conn:
        truth = list(
            evidence_items(
                conn, name, spec, settings.ok_class, through_item_id=through, truth_sample=True
            )
        )
    caps = dict(settings.thresholds.never_pass_above)
    use_truth = len(truth) >= MIN_TRUTH_FOR_FIT
    rule, evidence, info = fit_rule(
        items,
        settings.ok_class,
        target_escape=target,
        target_false_fail=target_false_fail,
        caps=caps,
        pass_items=truth if use_truth else None,
    )
    info["auto_pass_fitted_on"] = (
        f"the truth sample ({len(truth)} adjudicated model passes)"
        if use_truth
        else (
            f"the inspector's labels ({len(items)} items; only {len(truth)} adjudicated from the "
            f"truth sample, {MIN_TRUTH_FOR_FIT} wanted): defects both miss stay hidden and the "
            "inspector's false alarms count as escapes; the gate judges the rule on the truth "
            "sample whatever it was fitted on"
        )
    )
    row = _store(
        engine,
        station_id,
        mv_id,
        rule,
        evidence={
            "model_version": spec,
            "measured": evidence.to_dict(),
            "fit": info,
            # The gates judge this rule only on items after these (a holdout: the bound of
            # a threshold chosen on some items is not valid on those same items).
            "fitted_through_item_id": through,
        },
        proposed_by=proposed_by,
        note=f"fitted on {len(items)} uniform evidence items of {spec}",
    )
    return row, evidence, info


def propose(
    engine: Engine,
    settings: Settings,
    rule: DecisionRule,
    *,
    note: str,
    station_name: str | None = None,
    proposed_by: Operator | None = None,
) -> ThresholdSet:
    """Store `rule` as a proposal for the station's champion (e.g. the settings' own values);
    it is in force only once approved."""
    with session_scope(engine) as s:
        station = resolve_station(s, settings, station_name)
        assert station.id is not None
        mv = champion_version(s, station.id)
        if mv is None or mv.id is None:
            raise ThresholdsRefused(f"station {station.name} has no champion model yet")
        station_id, mv_id = station.id, mv.id
    return _store(engine, station_id, mv_id, rule, evidence={}, proposed_by=proposed_by, note=note)


def _store(
    engine: Engine,
    station_id: int,
    model_version_id: int,
    rule: DecisionRule,
    *,
    evidence: dict[str, Any],
    proposed_by: Operator | None,
    note: str,
) -> ThresholdSet:
    with session_scope(engine) as s:
        row = ThresholdSet(
            station_id=station_id,
            model_version_id=model_version_id,
            version=rule.version,
            values=rule.to_dict(),
            evidence=evidence,
            proposed_by=proposed_by.id if proposed_by is not None else None,
            note=note,
        )
        s.add(row)
        s.flush()
    return row


def approve(
    engine: Engine,
    settings: Settings,
    version: str,
    *,
    operator: Operator,
    reason: str,
    station_name: str | None = None,
) -> ThresholdSet:
    """An engineer puts a proposed set in force (recorded: who, when, why)."""
    require(operator, "set_thresholds")
    reason = readable(reason, "--reason")
    if not reason:
        raise ThresholdsRefused("approving thresholds needs a reason (--reason TEXT)")
    with session_scope(engine) as s:
        station = resolve_station(s, settings, station_name)
        row = s.exec(
            select(ThresholdSet)
            .where(ThresholdSet.station_id == station.id, ThresholdSet.version == version)
            .order_by(col(ThresholdSet.id).desc())
        ).first()
        if row is None:
            known = [
                r.version
                for r in s.exec(
                    select(ThresholdSet).where(ThresholdSet.station_id == station.id)
                ).all()
            ]
            raise ThresholdsRefused(
                f"no threshold set {version!r} at station {station.name}: known are "
                f"{', '.join(known) or 'none (run `station thresholds fit`)'}"
            )
        if row.approved_at is not None:
            raise ThresholdsRefused(f"threshold set {version} is already approved")
        row.approved_at = datetime.now(UTC)
        row.approved_by = operator.id
        row.note = f"{row.note}; approved: {reason.strip()}" if row.note else reason.strip()
        s.add(row)
    return row


def approve_for_simulation(
    engine: Engine, *, station_id: int, model_version_id: int, rule: DecisionRule
) -> None:
    """A simulation runs its own station under the settings' proposal (recorded as such);
    refused for a real station, whose rule only an engineer approves."""
    with session_scope(engine) as s:
        station = s.get(Station, station_id)
        if station is None or not station.simulated:
            raise ThresholdsRefused("only a simulation station approves its own thresholds")
        current = rule_in_force(s, station_id, model_version_id)
        if current is not None and current.version == rule.version:
            return
        now = datetime.now(UTC)
        s.add(
            ThresholdSet(
                station_id=station_id,
                model_version_id=model_version_id,
                version=rule.version,
                values=rule.to_dict(),
                evidence={"source": "settings [thresholds], for a simulation"},
                approved_at=now,
                note="station simulate: the settings' proposal",
            )
        )


class RuleWatch:
    """The rule in force at one running station, read like the level (see LevelWatch): before
    each item is planned, on the pipeline thread; `last` for the thread that must not wait."""

    def __init__(self, engine: Engine, station_id: int) -> None:
        self.engine = engine
        self.station_id = station_id
        self.model_version_id: int | None = None
        self.last: RuleInForce | None = None
        self._lock = threading.Lock()
        self._seen: tuple[Any, ...] | None = None  # the probe's answer `last` was read at
        self._probe = self._probe_for(None)

    def follow(self, model_version_id: int | None) -> None:
        """The champion changed: its own approved rule (or none) from now on."""
        self.model_version_id = model_version_id
        self._probe = self._probe_for(model_version_id)
        self._seen = None
        self.read()

    def _probe_for(self, model_version_id: int | None) -> Any:
        """Which set rule_in_force would pick, by id and approval time only: a Core query per
        item instead of loading and parsing the set (an approval updates approved_at). Built
        once per champion: building it for each item cost 0.2 ms, running it built 0.04."""
        return (
            select(col(ThresholdSet.id), col(ThresholdSet.approved_at))
            .where(
                ThresholdSet.station_id == self.station_id,
                ThresholdSet.model_version_id == model_version_id,
                col(ThresholdSet.approved_at).is_not(None),
            )
            .order_by(col(ThresholdSet.approved_at).desc(), col(ThresholdSet.id).desc())
            .limit(1)
        )

    def read(self) -> RuleInForce | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(self._probe).first()
            seen = ("set", *row) if row is not None else ("none",)
            if seen == self._seen:
                return self.last
            with Session(self.engine) as s:
                found = rule_in_force(s, self.station_id, self.model_version_id)
        except SQLAlchemyError as e:
            log.warning("cannot read the thresholds of station %d: %s", self.station_id, e)
            return self.last
        self.last, self._seen = found, seen
        return found


def measure_in_force(
    engine: Engine, settings: Settings, *, station_name: str | None = None
) -> tuple[RuleInForce | None, dict[str, Any] | None, str | None]:
    """The rule in force at the station and what the gates judge of it now
    (review.report.rule_evidence: coverage after its holdout, escapes on its truth sample), with
    the champion's name:version."""
    from review.query import ReportFilters
    from review.report import rule_evidence

    with session_scope(engine) as s:
        station = resolve_station(s, settings, station_name)
        assert station.id is not None
        mv = champion_version(s, station.id)
        in_force = rule_in_force(s, station.id, mv.id if mv is not None else None)
        name = station.name
        spec = f"{mv.name}:{mv.version}" if mv is not None else None
    if in_force is None:
        return None, None, spec
    with engine.connect() as conn:
        judged = rule_evidence(
            conn,
            ReportFilters(station=name, model_version=spec, evidence_only=True),
            settings.ok_class,
            in_force,
            settings.gates.max_escape_upper95,
        )
    return in_force, judged, spec


def in_force_words(
    engine: Engine | None, settings: Settings, station_name: str | None = None
) -> str:
    """One line on the thresholds a station decides by: the approved set in force for its
    champion, or none (then the model decides nothing alone). The settings' [thresholds] and a
    model file's own thresholds are proposals, never in force by themselves: `model info` and
    `config show` both print this line so that the two never seem to disagree."""
    name = station_name or settings.station_name
    if engine is None:
        return f"none at station {name} (no database yet): the model decides nothing alone"
    with session_scope(engine) as s:
        station = s.exec(select(Station).where(Station.name == name)).first()
        if station is None or station.id is None:
            return (
                f"none at station {name} (not in the record yet): the model decides nothing alone"
            )
        mv = champion_version(s, station.id)
        found = rule_in_force(s, station.id, mv.id if mv is not None else None)
    if found is None:
        return (
            f"none at station {name}: the model decides nothing alone "
            "(`station thresholds fit`, then `approve`)"
        )
    assert mv is not None
    r = found.rule
    caps = ", ".join(f"{k} {v:g}" for k, v in sorted(r.never_pass_above.items()))
    return (
        f"set {found.version} at station {name} for {mv.name}:{mv.version}: auto-pass at "
        f"P(ok) >= {r.auto_pass:g}, auto-fail at P(defect) >= {r.auto_fail:g}"
        + (f", never pass above {caps}" if caps else "")
    )
