"""The line's watch after deployment: drift checks over windows of items, and the alarms they raise.

One round (`check_station`, every `monitor.every_items` items of a running station, or
`station monitor check`):

  reference  the items nearest the approval of the level in force (captured by the level
             service when a level is approved; made here for a new champion or a new version of
             an upstream stage), for the station's champion
  window     the last `monitor.window` items
  checks     input drift per statistic (normalised Wasserstein), embedding drift (MMD,
             permutation test), output drift (p-chart of the predicted-defect rate, confidence
             shift, error rate), concept drift (ADWIN on disagreements and audited errors);
             each stored in monitor_check with its numbers
  alarms     a warning opens a warn alarm (a banner) until its check is back in bounds; a
             failure opens a fail alarm, demotes the station through the level service (recorded
             with the check's numbers) and stops a canary; a fail alarm closes only when a gate
             passes again (`close_on_approval`)

Statistics are review/drift.py's pure functions; this module only reads the record and writes
what it found.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import (
    Alarm,
    Disposition,
    DriftReference,
    HumanDecision,
    Item,
    Level,
    LevelChange,
    MonitorCheck,
    Prediction,
    Slot,
    Station,
)
from db.repo import deploy
from review import drift
from station.registry import end_roles, lineup, spec_of
from station.settings import MonitorSettings, Settings

log = logging.getLogger(__name__)

#: Input statistics watched, with the smallest spread that counts (their own units).
INPUT_FLOORS = {
    "brightness": 1.0,
    "contrast": 1.0,
    "sharpness": 1.0,
    "clipped_share": 0.02,  # 2% of the pixels: rarer clipping is no change anyone acts on
    "chroma_rg": 1.0,
    "chroma_yb": 1.0,
}
#: Fewer values than this in the window or the reference: the check is skipped, not judged.
MIN_VALUES = 30


class Verdict:
    ok = "ok"
    warn = "warn"
    fail = "fail"
    skipped = "skipped"


# --------------------------------------------------------------------------- reading the record


@dataclass
class Sample:
    """What a set of items shows, in item order (oldest first)."""

    item_ids: list[int] = field(default_factory=list)
    stats: dict[str, list[float]] = field(default_factory=dict)
    p_defect: list[float] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    predicted: int = 0  # answers (errors included)
    defects: int = 0  # answers that name a defect
    errors: int = 0
    embeddings: list[list[float]] = field(default_factory=list)
    defect_embeddings: list[list[float]] = field(default_factory=list)  # items it called defects
    # 0/1 per uniform paired item: did the human's pass/fail differ from the model's
    disagreement: list[int] = field(default_factory=list)
    audit_errors: list[int] = field(default_factory=list)  # 0/1 per audited item

    @property
    def n(self) -> int:
        return len(self.item_ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "item_ids": self.item_ids,
            "stats": self.stats,
            "p_defect": self.p_defect,
            "confidence": self.confidence,
            "predicted": self.predicted,
            "defects": self.defects,
            "errors": self.errors,
            "embeddings": self.embeddings,
            "defect_embeddings": self.defect_embeddings,
            "disagreement": self.disagreement,
            "audit_errors": self.audit_errors,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Sample:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _chunks(ids: Sequence[int], size: int = 500) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def read_sample(
    conn: Connection, item_ids: Sequence[int], model_version_id: int | None, ok: str
) -> Sample:
    """The items' statistics, the answers of `model_version_id` on them (any slot: a champion
    that ran hidden on a canary's item still answered), and their human decisions."""
    ids = sorted(item_ids)
    sample = Sample(item_ids=ids, stats={name: [] for name in INPUT_FLOORS})
    items: dict[int, Any] = {}
    preds: dict[int, Any] = {}
    decisions: dict[int, Any] = {}
    levels: dict[int, str] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(
            select(Item.id, Item.stats, Item.golden).where(col(Item.id).in_(chunk))
        ):
            items[row[0]] = row
        if model_version_id is not None:
            for row in conn.execute(
                core_select(
                    col(Prediction.item_id),
                    col(Prediction.label),
                    col(Prediction.p_defect),
                    col(Prediction.confidence),
                    col(Prediction.error),
                    col(Prediction.embedding),
                )
                .where(col(Prediction.item_id).in_(chunk))
                .where(col(Prediction.model_version_id) == model_version_id)
                .order_by(col(Prediction.id))
            ):
                preds.setdefault(row[0], row)
        for row in conn.execute(
            core_select(
                col(HumanDecision.item_id),
                col(HumanDecision.label),
                col(HumanDecision.audit),
                col(HumanDecision.blind),
                col(HumanDecision.golden),
                col(HumanDecision.suggestion_shown),
            )
            .where(col(HumanDecision.item_id).in_(chunk))
            .order_by(col(HumanDecision.id))
        ):
            decisions[row[0]] = row  # the latest decision (an undo's correction) wins
        for row in conn.execute(
            select(Disposition.item_id, Disposition.level)
            .where(col(Disposition.item_id).in_(chunk))
            .order_by(col(Disposition.id))
        ):
            levels[row[0]] = str(getattr(row[1], "value", row[1]))
    for item_id in ids:
        item = items.get(item_id)
        if item is None:
            continue
        stats = item[1] or {}
        for name in INPUT_FLOORS:
            v = stats.get(name)
            if isinstance(v, int | float) and math.isfinite(v):
                sample.stats[name].append(float(v))
        p = preds.get(item_id)
        if p is None:
            continue
        sample.predicted += 1
        if p[4] is not None or p[1] is None:
            sample.errors += 1
            continue
        sample.defects += p[1] != ok
        if p[2] is not None:
            sample.p_defect.append(float(p[2]))
        if p[3] is not None:
            sample.confidence.append(float(p[3]))
        if p[5]:
            vector = [float(v) for v in p[5]]
            sample.embeddings.append(vector)
            if p[1] != ok:
                sample.defect_embeddings.append(vector)
        d = decisions.get(item_id)
        if d is None or d[4] or item[2]:  # no decision, or a golden sample: not the line
            continue
        differs = int((d[1] == ok) != (p[1] == ok))
        if d[2]:
            sample.audit_errors.append(differs)
        elif not d[5] and (d[3] or levels.get(item_id) == Level.shadow.value):
            sample.disagreement.append(differs)
    return sample


def _recent_ids(conn: Connection, station_id: int, n: int) -> list[int]:
    rows = conn.execute(
        select(Item.id).where(Item.station_id == station_id).order_by(col(Item.id).desc()).limit(n)
    )
    return sorted(r[0] for r in rows)


def _newest_stages(conn: Connection, station_id: int) -> dict[str, str] | None:
    row = conn.execute(
        select(Item.trigger_version, Item.guard_version)
        .where(Item.station_id == station_id)
        .order_by(col(Item.id).desc())
        .limit(1)
    ).first()
    return None if row is None else {"trigger": row[0], "guard": row[1]}


def _max_item_id(conn: Connection, station_id: int) -> int:
    got = conn.execute(select(func.max(Item.id)).where(Item.station_id == station_id)).scalar()
    return int(got or 0)


def _ids_around(
    conn: Connection, station_id: int, anchor: int, n: int, stages: dict[str, str]
) -> list[int]:
    """Up to n items with these stage versions nearest the anchor: the last ones at or before
    it (the evidence the approval rested on), then the first ones after it."""
    same = (
        (Item.station_id == station_id)
        & (Item.trigger_version == stages["trigger"])
        & (Item.guard_version == stages["guard"])
    )
    before = [
        r[0]
        for r in conn.execute(
            select(Item.id)
            .where(same, col(Item.id) <= anchor)
            .order_by(col(Item.id).desc())
            .limit(n)
        )
    ]
    after: list[int] = []
    if len(before) < n:
        after = [
            r[0]
            for r in conn.execute(
                select(Item.id)
                .where(same, col(Item.id) > anchor)
                .order_by(col(Item.id))
                .limit(n - len(before))
            )
        ]
    return sorted(before + after)


# --------------------------------------------------------------------------- the reference


def champion_id(session: Session, station_id: int) -> int | None:
    champ = lineup(session, station_id).champion
    return champ.id if champ is not None else None


def capture_reference(
    engine: Engine,
    settings: Settings,
    station_id: int,
    *,
    level_change_id: int | None,
    reason: str,
) -> int:
    """Start the station's reference now (a level approved, a new champion, a new stage
    version): anchored at the newest item, completed from the items after it if the station
    has too few before. Returns the reference's id."""
    with session_scope(engine) as s:
        anchor = _max_item_id(s.connection(), station_id)
        stages = _newest_stages(s.connection(), station_id)
        ref = DriftReference(
            station_id=station_id,
            model_version_id=champion_id(s, station_id),
            level_change_id=level_change_id,
            stage_versions=stages or {},
            data={"anchor_item_id": anchor, "complete": False, "reason": reason},
        )
        s.add(ref)
        s.flush()
        assert ref.id is not None
        ref_id = ref.id
    _complete(engine, settings, ref_id)
    return ref_id


def _complete(engine: Engine, settings: Settings, ref_id: int) -> DriftReference | None:
    """Fill a reference that is still short of items; returns it once complete."""
    need = settings.monitor.reference_items
    with session_scope(engine) as s:
        ref = s.get(DriftReference, ref_id)
        if ref is None:
            return None
        if ref.data.get("complete"):
            return ref
        conn = s.connection()
        stages = ref.stage_versions or _newest_stages(conn, ref.station_id)
        if stages is None:
            return None
        if ref.model_version_id is None:
            ref.model_version_id = champion_id(s, ref.station_id)
        ids = _ids_around(
            conn, ref.station_id, int(ref.data.get("anchor_item_id", 0)), need, stages
        )
        if len(ids) < need:
            return None
        sample = read_sample(conn, ids, ref.model_version_id, settings.ok_class)
        ref.stage_versions = stages
        ref.n = sample.n
        ref.first_item_id, ref.last_item_id = ids[0], ids[-1]
        ref.data = {**ref.data, "complete": True, **sample.to_json()}
        s.add(ref)
        s.flush()
        s.expunge(ref)
        return ref


def current_reference(
    engine: Engine, settings: Settings, station_id: int
) -> tuple[DriftReference | None, str]:
    """The reference in force, complete; or None and why there is none yet. A reference made for
    another champion, or for other upstream stage versions, is replaced by a new one."""
    with session_scope(engine) as s:
        ref = s.exec(
            select(DriftReference)
            .where(DriftReference.station_id == station_id)
            .order_by(col(DriftReference.id).desc())
            .limit(1)
        ).first()
        champ = champion_id(s, station_id)
        stages = _newest_stages(s.connection(), station_id)
        if stages is None:
            return None, "no items yet"
        stale = None
        if ref is None:
            stale = "first reference"
        elif (
            ref.model_version_id is not None and champ is not None and ref.model_version_id != champ
        ):
            stale = "new champion"
        elif ref.data.get("complete") and ref.stage_versions != stages:
            changed = [k for k in stages if ref.stage_versions.get(k) != stages[k]]
            stale = "new stage version: " + ", ".join(
                f"{k} {ref.stage_versions.get(k)} -> {stages[k]}" for k in changed
            )
        ref_id = ref.id if ref is not None else None
    if stale is not None:
        ref_id = capture_reference(engine, settings, station_id, level_change_id=None, reason=stale)
    assert ref_id is not None
    done = _complete(engine, settings, ref_id)
    if done is None:
        return None, f"reference filling (needs {settings.monitor.reference_items} items)"
    return done, "ok"


# --------------------------------------------------------------------------- the checks


@dataclass(frozen=True)
class CheckResult:
    check: str
    n: int
    statistic: float | None
    warn: float | None
    fail: float | None
    verdict: str
    detail: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        if self.statistic is None or self.verdict == Verdict.skipped:
            return f"{self.check}: skipped ({self.detail.get('why', '')})"
        bound = self.fail if self.verdict == Verdict.fail else self.warn
        return (
            f"{self.check} {self.statistic:.3g} ({self.verdict}"
            + (f" >= {bound:g}" if self.verdict != Verdict.ok and bound is not None else "")
            + f", n={self.n})"
        )


def _judge(value: float, warn: float, fail: float) -> str:
    if not math.isfinite(value):
        return Verdict.skipped
    if value >= fail:
        return Verdict.fail
    if value >= warn:
        return Verdict.warn
    return Verdict.ok


def _skipped(check: str, n: int, why: str) -> CheckResult:
    return CheckResult(check, n, None, None, None, Verdict.skipped, {"why": why})


def _embedding_check(
    check: str, ref: list[list[float]], win: list[list[float]], m: MonitorSettings
) -> CheckResult:
    if len(ref) < MIN_VALUES or len(win) < MIN_VALUES:
        return _skipped(check, len(win), "too few embeddings")
    r = drift.mmd_permutation(np.array(ref), np.array(win), permutations=m.permutations)
    verdict = Verdict.ok
    if r.p_value <= m.embedding_fail_p and r.mmd2 >= m.embedding_fail_mmd:
        verdict = Verdict.fail
    elif r.p_value <= m.embedding_warn_p and r.mmd2 >= m.embedding_warn_mmd:
        verdict = Verdict.warn
    return CheckResult(
        check,
        r.n_window,
        r.mmd2,
        m.embedding_warn_mmd,
        m.embedding_fail_mmd,
        verdict,
        {"p_value": r.p_value, "bandwidth": r.bandwidth, "n_reference": r.n_reference},
    )


def run_checks(
    ref: Sample, win: Sample, m: MonitorSettings, *, new_items: Sample
) -> list[CheckResult]:
    """Every check of the window against the reference. `new_items`: the window's items after
    the reference (the concept streams continue the reference's, without counting any twice)."""
    out: list[CheckResult] = []
    for name, floor in INPUT_FLOORS.items():
        a, b = ref.stats.get(name, []), win.stats.get(name, [])
        check = f"input.{name}"
        if len(a) < MIN_VALUES or len(b) < MIN_VALUES:
            out.append(_skipped(check, len(b), "too few values"))
            continue
        w = drift.normalised_wasserstein(np.array(a), np.array(b), floor)
        out.append(
            CheckResult(
                check,
                len(b),
                w,
                m.input_warn,
                m.input_fail,
                _judge(w, m.input_warn, m.input_fail),
                {"reference_mean": float(np.mean(a)), "window_mean": float(np.mean(b))},
            )
        )
    for check, ref_vectors, win_vectors in (
        ("embedding.mmd", ref.embeddings, win.embeddings),
        ("embedding.mmd_defects", ref.defect_embeddings, win.defect_embeddings),
    ):
        out.append(_embedding_check(check, ref_vectors, win_vectors, m))
    answered_ref, answered_win = ref.predicted - ref.errors, win.predicted - win.errors
    if answered_ref < MIN_VALUES or answered_win < MIN_VALUES:
        out.append(_skipped("output.defect_rate", answered_win, "too few answers"))
    else:
        z = drift.p_chart_z(ref.defects / answered_ref, win.defects, answered_win, answered_ref)
        out.append(
            CheckResult(
                "output.defect_rate",
                answered_win,
                abs(z),
                m.defect_rate_warn_sigma,
                m.defect_rate_fail_sigma,
                _judge(abs(z), m.defect_rate_warn_sigma, m.defect_rate_fail_sigma),
                {
                    "z": z,
                    "reference_rate": ref.defects / answered_ref,
                    "window_rate": win.defects / answered_win,
                },
            )
        )
    if len(ref.confidence) < MIN_VALUES or len(win.confidence) < MIN_VALUES:
        out.append(_skipped("output.confidence", len(win.confidence), "too few answers"))
    else:
        w = drift.normalised_wasserstein(np.array(ref.confidence), np.array(win.confidence), 0.02)
        out.append(
            CheckResult(
                "output.confidence",
                len(win.confidence),
                w,
                m.confidence_warn,
                m.confidence_fail,
                _judge(w, m.confidence_warn, m.confidence_fail),
                {
                    "reference_mean": float(np.mean(ref.confidence)),
                    "window_mean": float(np.mean(win.confidence)),
                },
            )
        )
    if win.predicted < MIN_VALUES:
        out.append(_skipped("output.errors", win.predicted, "too few answers"))
    else:
        rate = win.errors / win.predicted
        out.append(
            CheckResult(
                "output.errors",
                win.predicted,
                rate,
                m.error_rate_warn,
                m.error_rate_fail,
                _judge(rate, m.error_rate_warn or 1e-12, m.error_rate_fail or 1e-12)
                if rate > 0
                else Verdict.ok,
                {"errors": win.errors},
            )
        )
    for check, old, new in (
        ("concept.disagreement", ref.disagreement, new_items.disagreement),
        ("concept.audit_errors", ref.audit_errors, new_items.audit_errors),
    ):
        stream = list(old) + list(new)
        if len(new) < MIN_VALUES or len(old) < MIN_VALUES:
            out.append(_skipped(check, len(new), "too few decisions in the stream"))
            continue
        found = drift.adwin_rise(np.array(stream, dtype=float), delta=m.adwin_delta)
        verdict = Verdict.ok
        if found.at is not None and found.at >= len(old):  # a rise after the reference
            verdict = Verdict.fail if found.rise >= m.concept_fail_rise else Verdict.warn
        out.append(
            CheckResult(
                check,
                len(new),
                found.rise,
                0.0,
                m.concept_fail_rise,
                verdict,
                {
                    "before": found.before,
                    "after": found.after,
                    "detected_at": found.at,
                    "stream": len(stream),
                },
            )
        )
    return out


# --------------------------------------------------------------------------- one round


@dataclass
class RoundResult:
    station_id: int
    status: str  # "checked", or why not
    checks: list[CheckResult] = field(default_factory=list)
    opened: list[Alarm] = field(default_factory=list)
    closed: list[Alarm] = field(default_factory=list)
    demoted: LevelChange | None = None
    canary_stopped: str | None = None

    @property
    def failing(self) -> list[CheckResult]:
        return [c for c in self.checks if c.verdict == Verdict.fail]


def check_station(engine: Engine, settings: Settings, station_id: int) -> RoundResult:
    """One round of checks for a station: read, judge, store, raise or clear alarms, demote."""
    m = settings.monitor
    ref, why = current_reference(engine, settings, station_id)
    if ref is None:
        return RoundResult(station_id, why)
    with session_scope(engine) as s:
        champ = champion_id(s, station_id)
    model_id = champ if champ is not None else ref.model_version_id
    with engine.connect() as conn:
        ids = _recent_ids(conn, station_id, m.window)
        win = read_sample(conn, ids, model_id, settings.ok_class)
        after = [i for i in ids if ref.last_item_id is None or i > ref.last_item_id]
        new_items = read_sample(conn, after, model_id, settings.ok_class)
        conn.rollback()
    results = run_checks(Sample.from_json(ref.data), win, m, new_items=new_items)
    outcome = RoundResult(station_id, "checked", results)
    _record(engine, settings, ref, model_id, ids, results, outcome)
    return outcome


def _record(
    engine: Engine,
    settings: Settings,
    ref: DriftReference,
    model_id: int | None,
    ids: list[int],
    results: list[CheckResult],
    outcome: RoundResult,
) -> None:
    station_id = ref.station_id
    failing = [r for r in results if r.verdict == Verdict.fail]
    with session_scope(engine) as s:
        rows: dict[str, MonitorCheck] = {}
        for r in results:
            row = MonitorCheck(
                station_id=station_id,
                model_version_id=model_id,
                reference_id=ref.id,
                check=r.check,
                first_item_id=ids[0] if ids else None,
                last_item_id=ids[-1] if ids else None,
                n=r.n,
                statistic=_finite(r.statistic),
                warn=r.warn,
                fail=r.fail,
                verdict=r.verdict,
                detail=_jsonable(r.detail),
            )
            s.add(row)
            rows[r.check] = row
        s.flush()
        open_now = {a.check: a for a in open_alarms(s, station_id)}
        now = datetime.now(UTC)
        for r in results:
            alarm = open_now.get(r.check)
            if r.verdict == Verdict.ok and alarm is not None and alarm.severity == Verdict.warn:
                alarm.closed_at = now
                alarm.closed_reason = f"back within bounds (check #{rows[r.check].id})"
                s.add(alarm)
                outcome.closed.append(alarm)
            elif r.verdict in (Verdict.warn, Verdict.fail):
                if alarm is not None and (
                    alarm.severity == Verdict.fail or r.verdict == Verdict.warn
                ):
                    continue  # already raised (a failure still demotes, below)
                if alarm is not None:  # a warning grown into a failure
                    alarm.closed_at = now
                    alarm.closed_reason = f"escalated to a failure (check #{rows[r.check].id})"
                    s.add(alarm)
                    outcome.closed.append(alarm)
                bound = r.fail if r.verdict == Verdict.fail else r.warn
                new = Alarm(
                    station_id=station_id,
                    check=r.check,
                    severity=r.verdict,
                    message=_describe(r, ids),
                    statistic=_finite(r.statistic),
                    threshold=bound,
                    monitor_check_id=rows[r.check].id,
                    opened_at=now,
                )
                s.add(new)
                outcome.opened.append(new)
        s.flush()
        for a in outcome.opened + outcome.closed:
            s.refresh(a)
            s.expunge(a)
    if failing:
        _act_on_failure(engine, settings, station_id, failing, ids, outcome)


def _act_on_failure(
    engine: Engine,
    settings: Settings,
    station_id: int,
    failing: list[CheckResult],
    ids: list[int],
    outcome: RoundResult,
) -> None:
    """A failing check steps the station down (never up) and stops a canary in progress."""
    from station.levels import demote_automatically

    first = failing[0]
    also = f"; also failing: {', '.join(f.check for f in failing[1:])}" if failing[1:] else ""
    cause = f"alarm: {_describe(first, ids)}{also}"
    target = Level(settings.monitor.demote_to)
    change = demote_automatically(
        engine,
        station_id=station_id,
        cause=cause,
        to_level=target,
        default=Level(settings.levels.default),
    )
    outcome.demoted = change
    with session_scope(engine) as s:
        if change is not None:
            for a in open_alarms(s, station_id):
                if a.severity == Verdict.fail and a.level_change_id is None:
                    a.level_change_id = change.id
                    s.add(a)
        roles = lineup(s, station_id)
        if roles.weight > 0 and roles.challenger is not None:
            station = s.get(Station, station_id)
            assert station is not None
            end_roles(s, station_id, (Slot.canary,))
            deploy(
                session=s,
                station=station,
                model=roles.challenger,
                slot=Slot.challenger,
                traffic_share=0.0,
                reason=f"canary stopped at {roles.weight:g}% by an alarm: {cause}; weight 0, hidden",
            )
            outcome.canary_stopped = spec_of(roles.challenger)


def _describe(r: CheckResult, ids: list[int]) -> str:
    span = f"items #{ids[0]}..#{ids[-1]}" if ids else "no items"
    bound = r.fail if r.verdict == Verdict.fail else r.warn
    stat = "nan" if r.statistic is None else f"{r.statistic:.3g}"
    extra = ""
    if r.check.startswith("embedding."):
        extra = f", p={r.detail.get('p_value', float('nan')):.3g}"
    elif r.check == "output.defect_rate":
        extra = (
            f", rate {r.detail.get('window_rate', 0):.1%} against "
            f"{r.detail.get('reference_rate', 0):.1%}"
        )
    elif "window_mean" in r.detail:
        extra = f", mean {r.detail['window_mean']:.4g} against {r.detail['reference_mean']:.4g}"
    return f"{_TITLES.get(r.check, r.check)} {stat} >= {r.verdict} {bound:g}{extra} over {span} (n={r.n})"


_TITLES = {
    **{f"input.{k}": f"input drift {k}: normalised Wasserstein" for k in INPUT_FLOORS},
    "embedding.mmd": "embedding drift: MMD^2",
    "embedding.mmd_defects": "embedding drift of the items called defective: MMD^2",
    "output.defect_rate": "output drift: predicted-defect rate |z|",
    "output.confidence": "output drift: confidence, normalised Wasserstein",
    "output.errors": "output: error and timeout rate",
    "concept.disagreement": "concept drift: disagreement rise (ADWIN)",
    "concept.audit_errors": "concept drift: audited-error rise (ADWIN)",
}


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in d.items()}


# --------------------------------------------------------------------------- alarms


def open_alarms(session: Session, station_id: int) -> list[Alarm]:
    return list(
        session.exec(
            select(Alarm)
            .where(Alarm.station_id == station_id, col(Alarm.closed_at).is_(None))
            .order_by(col(Alarm.id))
        ).all()
    )


def close_on_approval(session: Session, station_id: int, change: LevelChange) -> int:
    """A gate passed and the level went up: the failures it answered are closed (the reference
    is captured afresh by the caller). Returns how many were closed."""
    n = 0
    for a in open_alarms(session, station_id):
        a.closed_at = datetime.now(UTC)
        a.closed_reason = (
            f"gate passed: level {change.from_level} -> {change.to_level} (change #{change.id})"
        )
        session.add(a)
        n += 1
    return n


def drift_alarm_open(engine: Engine, settings: Settings, station_id: int) -> bool | None:
    """For the partial -> full gate: True while an alarm is open; False when the monitor has
    checked the station's current reference and none is; None (unknown) otherwise."""
    if not settings.monitor.enabled:
        return None
    with session_scope(engine) as s:
        if open_alarms(s, station_id):
            return True
        ref_id = s.exec(
            select(DriftReference.id)
            .where(DriftReference.station_id == station_id)
            .order_by(col(DriftReference.id).desc())
            .limit(1)
        ).first()
        if ref_id is None:
            return None
        checked = s.exec(
            select(MonitorCheck.id).where(
                MonitorCheck.reference_id == ref_id, MonitorCheck.verdict != Verdict.skipped
            )
        ).first()
        return False if checked is not None else None


def alarm_rows(
    session: Session, station_id: int | None, *, open_only: bool = False
) -> list[dict[str, Any]]:
    q = select(Alarm).order_by(col(Alarm.id))
    if station_id is not None:
        q = q.where(Alarm.station_id == station_id)
    if open_only:
        q = q.where(col(Alarm.closed_at).is_(None))
    return [
        {
            "id": a.id,
            "station_id": a.station_id,
            "check": a.check,
            "severity": a.severity,
            "open": a.closed_at is None,
            "message": a.message,
            "statistic": a.statistic,
            "threshold": a.threshold,
            "opened_at": a.opened_at.isoformat(),
            "closed_at": a.closed_at.isoformat() if a.closed_at else None,
            "closed_reason": a.closed_reason,
            "level_change_id": a.level_change_id,
        }
        for a in session.exec(q).all()
    ]
