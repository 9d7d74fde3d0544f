"""The agreement report: aggregates from review.query, statistics from review.stats, gates.

`build_report` returns a JSON-ready dict (finite numbers or None, never NaN); `write_json`,
`write_csv` (one row per item, streamed) and `write_html` (one self-contained file, see
review.html) write it out. A report over nothing is still a report: `messages` says why it is
empty, and every statistic that does not exist is None.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.selectable import FromClause

from db.chain import heads as chain_heads
from db.models import Level, Station
from review import evidence_cache, summary
from review import query as Q
from review import stats as S
from review.canary import CanaryRules, models_block
from review.errors import ReportFormatError, ReviewError
from review.gates import Evidence, GateResult, GateRules, evaluate_gate, parse_level
from review.labels import LabelSet, reference_label
from review.rules import (
    KNOWN_TRUTH_REFERENCE,
    EvidenceRow,
    RuleInForce,
    judge_rule,
    rule_in_force,
)
from review.samples import SampleRow, kappa_sample

FORMATS = ("json", "csv", "html", "pdf")

#: Told what the report is doing now, in words (`station report` shows it on a terminal): over a
#: million decisions a report takes tens of seconds.
OnStage = Callable[[str], None]
#: The stages `build_report` goes through, in order; `write_report` adds "writing FORMAT".
STAGES = (
    "selecting items",
    "counting items",
    "agreement",
    "gates",
    "models and pipeline stages",
)


def _ignore_stage(_what: str) -> None:
    return None


DEFINITIONS = {
    "paired": "an item with an effective human decision (latest, not superseded) and a model label",
    "evidence": (
        "a paired item whose human decision was taken without seeing the model: shadow level, "
        "blind check, audit or golden sample; other items are reported but are not evidence"
    ),
    "evidence_uniform": (
        "evidence items that are neither audits nor golden samples (shadow, blind checks): drawn "
        "from the whole stream; golden samples measure inspectors only. Audits are drawn only from items the model decided itself (high "
        "confidence), so they are kept apart: they feed only the audited-escape check and the "
        "`audits` block"
    ),
    "basis": (
        "the headline numbers (matrix, pass_fail, agreement, kappa, escape / miss / false-reject "
        "rates, McNemar, risk/coverage, selective threshold, reliability) are over the uniform "
        "evidence items only, the basis the gates use; by_basis.all holds the same numbers over "
        "all paired items (biased by the suggestion where it was shown)"
    ),
    "reference": "the adjudicated label where one exists, else the human label",
    "escape_rate": "among items the model passes, the share the reference calls defective",
    "miss_rate": "among items the reference calls defective, the share the model passes",
    "false_reject_rate": "among items the reference calls ok, the share the model fails",
    "kappa_ci": "ci95_standard: Wald interval with the Fleiss-Cohen-Everitt (1969) large-sample "
    "variance; ci95 (what the gate uses): that interval widened to at least the exact "
    "(Clopper-Pearson) interval of observed agreement mapped onto the kappa scale",
    "ci95": "two-sided 95% exact (Clopper-Pearson) interval of a proportion",
    "upper95": "one-sided 95% Clopper-Pearson upper bound",
    "risk_coverage": (
        "threshold on the calibrated confidence of the model's label, over uniform evidence "
        "items: coverage = share of those with a confidence that are at or above it, "
        "risk = escape rate among the "
        "model passes at or above it (pointwise upper bounds); confidence floored to 1e-4"
    ),
    "selective_threshold": (
        "Geifman & El-Yaniv (2017) SGR binary search, Clopper-Pearson bound at delta / steps "
        "(Bonferroni over the search steps), target = max_escape_upper95"
    ),
}


#: What the report's headline escape / miss / false-reject rates are measured against.
RATE_REFERENCE = (
    "the adjudicated label where one exists, else the inspector's: not the truth (the gates "
    "judge the rule in force on the truth sample: gates.numbers.rule_*)"
)

BASIS_UNIFORM = (
    "evidence only (unbiased, uniformly sampled: shadow and blind checks; audits and golden "
    "samples apart)"
)
BASIS_TEXT = {
    "evidence_uniform": BASIS_UNIFORM,
    "audits": "audits only: blind human checks of items the model decided (not a uniform sample)",
    "not_evidence": "not evidence: decided with the suggestion shown, or not blind (biased)",
    "all": "all paired items (includes biased items and audits; not used by gates)",
}


def _jsonable(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return S._finite(float(v))
    if isinstance(v, float):
        return S._finite(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


# --------------------------------------------------------------------------- pieces


def _agreement_block(
    groups: Sequence[Mapping[str, Any]], labels: Sequence[str], ok: str
) -> dict[str, Any]:
    """Matrix, pass/fail, agreement, kappa and error rates of a set of label groups."""
    order, mat = S.matrix_from_counts(
        [(g["human"], g["model"], g["n"]) for g in groups], labels, ok
    )
    keys = (
        "ref_ok_model_ok",
        "ref_defect_model_ok",
        "ref_ok_model_defect",
        "ref_defect_model_defect",
    )
    confusion = dict.fromkeys(keys, 0)
    known = dict.fromkeys(keys, 0)  # against the known truth, where the line knows it
    for g in groups:
        model = "_model_defect" if g["model"] != ok else "_model_ok"
        ref = reference_label(g["adjudicated"], g["human"])
        confusion[("ref_defect" if ref != ok else "ref_ok") + model] += g["n"]
        if g.get("ground_truth") is not None:
            known[("ref_defect" if g["ground_truth"] != ok else "ref_ok") + model] += g["n"]
    rates = {
        name: {**r.to_dict(), "reference": RATE_REFERENCE}
        for name, r in S.error_rates(confusion).items()
    }
    if sum(known.values()):
        for name, r in S.error_rates(known).items():
            rates[name]["known_truth"] = {**r.to_dict(), "reference": KNOWN_TRUTH_REFERENCE}
    return {
        "labels": order,
        "matrix": {"rows": "human", "cols": "model", "labels": order, "counts": mat.tolist()},
        "pass_fail": S.pass_fail(order, mat, ok),
        "agreement": S.observed_agreement(mat).to_dict(),
        "kappa": S.cohens_kappa(mat).to_dict(),
        "confusion_vs_reference": confusion,
        **rates,
    }


def _mcnemar(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    b = c = n = 0
    for g in groups:
        truth = g["adjudicated"]
        if truth is None:
            continue
        n += g["n"]
        m_ok, h_ok = g["model"] == truth, g["human"] == truth
        if m_ok and not h_ok:
            b += g["n"]
        elif h_ok and not m_ok:
            c += g["n"]
    out = S.mcnemar_exact(b, c).to_dict()
    out["adjudicated_items"] = n
    out["basis"] = BASIS_UNIFORM
    out["meaning"] = (
        "b: model right and human wrong; c: human right and model wrong (vs adjudication)"
    )
    return out


def _bias(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    agree_s = n_s = agree_b = n_b = 0
    for g in groups:
        same = g["human"] == g["model"]
        if g["shown"]:
            n_s += g["n"]
            agree_s += g["n"] * same
        elif g["blind"]:
            n_b += g["n"]
            agree_b += g["n"] * same
    return S.automation_bias(agree_s, n_s, agree_b, n_b)


def _histogram(rows: Sequence[Mapping[str, Any]]) -> S.ScoreHistogram:
    """Risk/coverage histogram (escape rate among model passes) from score rows."""
    merged: dict[float, list[int]] = {}
    for r in rows:
        m = merged.setdefault(r["score"], [0, 0, 0])
        m[0] += r["n"]
        m[1] += r["model_pass"]
        m[2] += r["escapes"]
    return S.histogram_from_rows([(s, t, c, e) for s, (t, c, e) in merged.items()])


def _reliability(rows: Sequence[Mapping[str, Any]], bins: int = 10) -> dict[str, Any]:
    """Calibration: accuracy against the reference per confidence bin, and the expected error."""
    merged: dict[int, list[float]] = {}
    for r in rows:
        b = min(int(r["score"] * bins), bins - 1)
        m = merged.setdefault(b, [0, 0.0, 0])
        m[0] += r["n"]
        m[1] += r["score_sum"]
        m[2] += r["correct"]
    out: list[dict[str, Any]] = []
    total, ece = sum(int(m[0]) for m in merged.values()), 0.0
    for b in sorted(merged):
        n_f, conf_sum, correct_f = merged[b]
        n, correct = int(n_f), int(correct_f)
        conf, acc = conf_sum / n, correct / n
        ece += n / total * abs(acc - conf)
        out.append(
            {
                "bin": [b / bins, (b + 1) / bins],
                "n": n,
                "mean_confidence": conf,
                "accuracy": acc,
                "accuracy_ci95": S.proportion(correct, n).ci95,
            }
        )
    return {"bins": out, "ece": ece if total else None}


def _inspectors(hours: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, float]] = {}
    trend: dict[str, list[dict[str, Any]]] = {}
    for h in hours:
        t = totals.setdefault(h["inspector"], dict.fromkeys(Q.INSPECTOR_SUMS, 0))
        for k in Q.INSPECTOR_SUMS:
            t[k] += h[k]
        trend.setdefault(h["inspector"], []).append(
            {
                "hour_utc": h["hour"],
                "paired": h["paired"],
                "agreement": S.proportion(h["agree_model"], h["paired"]).rate,
            }
        )
    out = []
    for name in sorted(totals):
        r: dict[str, Any] = {
            k: (v if k == "decision_ms_sum" else int(v)) for k, v in totals[name].items()
        }
        out.append(
            {
                "inspector": name,
                "decisions": r["decisions"],
                "paired": r["paired"],
                "evidence": r["evidence"],
                "agreement_with_model": S.proportion(r["agree_model"], r["paired"]).to_dict(),
                "agreement_with_adjudication": S.proportion(
                    r["agree_adjudicated"], r["adjudicated"]
                ).to_dict(),
                "agreement_with_golden": S.proportion(r["agree_golden"], r["golden"]).to_dict(),
                "mean_decision_ms": (r["decision_ms_sum"] / r["timed"] if r["timed"] else None),
                "automation_bias": S.automation_bias(
                    r["agree_shown"], r["shown"], r["agree_blind"], r["blind"]
                ),
                "trend_by_hour": trend[name],
            }
        )
    return out


def gate_evidence(
    conn: Connection,
    filters: Q.ReportFilters,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    drift_alarm_open: bool | None = None,
    rule: RuleInForce | None = None,
) -> tuple[Evidence, dict[str, Any]]:
    """Everything the gates look at, from unbiased items only, plus the SGR result in full.

    `rule`: the approved rule in force, judged on the uniform evidence after its holdout and on
    its truth sample (review.rules.judge_rule: what the partial and full gates judge); None: no
    rule is in force, and those gates fail."""
    rules = rules or GateRules()
    ev_filters = dataclasses.replace(filters, evidence_only=True)
    with evidence_cache.evidence_frame(conn, ev_filters) as f:
        ev, sel = _evidence_from(conn, f, list(labels.all), labels.ok, rules, drift_alarm_open)
    judged = rule_evidence(
        conn, ev_filters, labels.ok, rule, rules.max_escape_upper95, labels.defects
    )
    ev.update(judged)  # type: ignore[typeddict-item]
    return ev, sel


def rule_evidence(
    conn: Connection,
    filters: Q.ReportFilters,
    ok: str,
    rule: RuleInForce | None,
    target_escape: float,
    classes: Sequence[str] = (),
) -> dict[str, Any]:
    if rule is None:
        return {"rule_version": None}
    from sqlalchemy import select

    from db.models import AdjudicationRequest, ChosenFor

    f = Q.frame(
        conn,
        filters,
        columns=[
            "item_id",
            "probabilities",
            "human_label",
            "adjudicated_label",
            "adjudicated_for",
            "ground_truth",
            "uniform",
        ],
    )
    req = AdjudicationRequest.__table__  # type: ignore[attr-defined]
    drawn = {
        int(item_id): float(p)
        for item_id, p in conn.execute(
            select(req.c.item_id, req.c.probability).where(
                req.c.reason == ChosenFor.truth_sample.value,
                req.c.item_id.in_(select(f.c.item_id)),
            )
        )
    }
    rows = (
        EvidenceRow(
            item_id=int(r["item_id"]),
            probabilities={str(k): float(v) for k, v in dict(r["probabilities"]).items()},
            human=r["human_label"],
            adjudicated=r["adjudicated_label"],
            adjudicated_for=r["adjudicated_for"],
            ground_truth=r["ground_truth"],
            truth_probability=drawn.get(int(r["item_id"])),
        )
        for r in conn.execute(f.select().order_by(f.c.item_id)).mappings()
        if r["uniform"] and r["probabilities"]
    )
    judged = judge_rule(
        rows,
        rule.rule,
        ok,
        target_escape=target_escape,
        holdout_after=rule.holdout_after,
        classes=classes,
    )
    return {"rule_version": rule.version, "rule": rule.rule.to_dict(), **judged}


def _evidence_from(
    conn: Connection,
    f: FromClause,
    labels: Sequence[str],
    ok: str,
    rules: GateRules,
    drift_alarm_open: bool | None,
) -> tuple[Evidence, dict[str, Any]]:
    ev, sel = _evidence(
        [g for g in Q.label_groups(conn, f) if g["evidence"]],
        [r for r in Q.score_rows(conn, f, ok=ok) if r["uniform"]],
        labels,
        ok,
        rules,
        drift_alarm_open,
    )
    ev.update(_sample_evidence(conn, f, labels, ok, rules))  # type: ignore[typeddict-item]
    return ev, sel


def _sample_evidence(
    conn: Connection, f: FromClause, labels: Sequence[str], ok: str, rules: GateRules
) -> dict[str, Any]:
    """The shadow -> assist numbers on its fixed evaluation sample (review.samples): the first
    uniform items that complete it, read in capture order and no further."""
    from sqlalchemy import select

    q = (
        select(f.c.item_id, f.c.day, f.c.human_label, f.c.model_label, f.c.reference_label)
        .where(f.c.uniform == 1)
        .order_by(f.c.item_id)
    )
    # Statement-level options: on a Connection they would stay set and put the temporary
    # table's DROP into a PostgreSQL server-side cursor.
    result = conn.execute(q.execution_options(stream_results=True, yield_per=2000))
    sample = kappa_sample(
        (SampleRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in result),
        labels,
        min_items=rules.shadow_to_assist_min_items,
        min_days=rules.shadow_to_assist_min_days,
        min_per_class=rules.shadow_to_assist_min_per_class,
    )
    result.close()
    kappa = sample.kappa(ok)
    return {
        "paired": sample.n,
        "days": len(sample.per_day),
        "per_day": dict(sample.per_day),
        "per_class": dict(sample.per_class),
        "kappa": kappa.value,
        "kappa_lower95": kappa.ci95[0] if kappa.ci95 else None,
        "kappa_sample": {
            "complete": sample.complete,
            "through_item": sample.through_item,
            "rule": (
                "the first uniform paired items of the champion, in capture order, that reach "
                "the minimum items, days and items per class; fixed once complete"
            ),
        },
    }


def _evidence(
    groups: Sequence[Mapping[str, Any]],
    scores: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    ok: str,
    rules: GateRules,
    drift_alarm_open: bool | None,
) -> tuple[Evidence, dict[str, Any]]:
    """The audit check and the selective-risk search, from label groups of evidence items and
    score rows of uniform ones (the shadow -> assist numbers come from `_sample_evidence`, the
    rule's from `rule_evidence`). Audits are drawn from the model's own decisions only: pooled
    unweighted with the uniform items they would overstate coverage and understate risk."""
    # Only audited auto-passes can reveal an escape: an audited auto-fail cannot.
    audited = audit_escapes = 0
    for g in groups:
        if g["audit"] and g["evidence"] and g["model"] == ok:
            ref = reference_label(g["adjudicated"], g["human"])
            audited += g["n"]
            audit_escapes += g["n"] * (ref != ok)
    sel = S.select_threshold(_histogram(scores), rules.max_escape_upper95)
    ev: Evidence = {
        "basis": BASIS_UNIFORM,
        "classes": list(labels),
        "selective_threshold": sel.threshold,
        "selective_coverage": sel.coverage,
        "selective_escape_upper95": sel.bound if sel.met else None,
        # The lowest bound the search reached, met or not: what a gate says while no rule is
        # in force ("how far off is this evidence?").
        "selective_best_upper95": sel.bound,
        "audited": audited,
        "audit_escapes": audit_escapes,
        "drift_alarm_open": drift_alarm_open,
    }
    return ev, sel.to_dict()


def thresholds_numbers(numbers: Mapping[str, Any]) -> dict[str, Any]:
    """The rule a partial / full gate judged, with its values (stored with the result)."""
    return {
        "version": numbers.get("rule_version"),
        "values": numbers.get("rule"),
        "coverage": numbers.get("rule_coverage"),
        "escape_upper95": numbers.get("rule_escape_upper95"),
        "escape_reference": numbers.get("rule_escape_reference"),
        "truth_checked": numbers.get("rule_truth_checked"),
        "items": numbers.get("rule_items"),
        "holdout_after_item": numbers.get("rule_holdout_after_item"),
    }


GATE_BASIS = (
    BASIS_UNIFORM + "; audits (auto-passes only) for the audited-escape check; scoped to the "
    "station's champion model version and its approved rule; the report's other filters do "
    "not apply"
)


def champion_evidence(
    conn: Connection,
    station: str,
    *,
    labels: LabelSet,
    rules: GateRules,
    drift_alarm_open: bool | None,
) -> tuple[str | None, Evidence, dict[str, Any]]:
    """The station's champion (NAME:VERSION) and the gate evidence of that version under the
    approved rule in force for it: what every gate of the station judges."""
    from sqlmodel import Session

    station_id, spec, version_id = _champion_spec(conn, station)
    with Session(bind=conn) as s:
        in_force = rule_in_force(s, station_id, version_id)
    evidence, selective = gate_evidence(
        conn,
        Q.ReportFilters(station=station, model_version=spec),
        labels=labels,
        rules=rules,
        drift_alarm_open=drift_alarm_open,
        rule=in_force,
    )
    return spec, evidence, selective


def _champion_spec(conn: Connection, station: str) -> tuple[int, str | None, int | None]:
    """The station's id, its champion as NAME:VERSION and the version's id (None, None: no
    champion yet)."""
    from sqlmodel import Session, select

    from db.repo import champion_version
    from review.errors import FilterError

    with Session(bind=conn) as s:
        row = s.exec(select(Station).where(Station.name == station)).first()
        if row is None or row.id is None:
            raise FilterError(f"no station is named {station!r}")
        mv = champion_version(s, row.id)
    if mv is None:
        return row.id, None, None
    return row.id, f"{mv.name}:{mv.version}", mv.id


def gate_check(
    conn: Connection,
    station: str,
    to_level: Level | str | None = None,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    default_level: Level = Level.human_only,
    drift_alarm_open: bool | None = None,
) -> tuple[GateResult, dict[str, Any]]:
    """The gate from the station's level now to `to_level` (None: the next level up), on the
    evidence of its champion model version and the approved rule in force for it: the one
    function behind `station gate check`, the level service and the report's gates block.
    Returns the result and a JSON-ready block (the result, thresholds, evidence, scope)."""
    rules = rules or GateRules()
    spec, evidence, selective = champion_evidence(
        conn, station, labels=labels, rules=rules, drift_alarm_open=drift_alarm_open
    )
    level = Q.current_level(conn, station) or default_level
    ladder = list(Level)
    target = (
        parse_level(to_level)
        if to_level is not None
        else ladder[min(level.rank + 1, len(ladder) - 1)]
    )
    result = evaluate_gate(level, target, evidence, rules)
    block = {
        **result.to_dict(),
        "station": station,
        "current_level": level.value,
        "model_version": spec,
        "basis": GATE_BASIS,
        "thresholds": thresholds_numbers(result.numbers),
        "selective_threshold": selective,
    }
    return result, _jsonable(block)


def supported_level(
    conn: Connection,
    station: str,
    ceiling: Level,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    drift_alarm_open: bool | None = None,
) -> tuple[Level, str]:
    """The highest level up to `ceiling` that the station's champion's own evidence (and its
    approved rule) supports: every gate from human_only up to it passes. With the level it
    names the checks that failed one step above (for the record), or "" when `ceiling` holds."""
    rules = rules or GateRules()
    _spec, evidence, _ = champion_evidence(
        conn, station, labels=labels, rules=rules, drift_alarm_open=drift_alarm_open
    )
    best = Level.human_only
    for level in list(Level)[1 : ceiling.rank + 1]:
        result = evaluate_gate(best, level, evidence, rules)
        if not result.passed:
            return best, f"{best.value} -> {level.value} fails: {result.failed_text}"
        best = level
    return best, ""


def _gate_station(conn: Connection, filters: Q.ReportFilters) -> str | None:
    """The station whose gates a report shows: its --station, or the only one there is."""
    if filters.station is not None:
        return filters.station
    table = Station.__table__  # type: ignore[attr-defined]
    names = [
        str(r[0]) for r in conn.execute(table.select().with_only_columns(table.c.name).limit(2))
    ]
    return names[0] if len(names) == 1 else None


def _gates(
    conn: Connection,
    filters: Q.ReportFilters,
    labels: LabelSet,
    rules: GateRules,
    default_level: Level,
    drift_alarm_open: bool | None,
) -> Any:
    """The report's gates block: `gate_check` to the next level, for the report's station (or
    the only one there is); None with a reason when the report spans several stations."""
    station = _gate_station(conn, filters)
    if station is None:
        return {"note": "gates are per station: filter the report by --station"}
    try:
        return gate_check(
            conn,
            station,
            labels=labels,
            rules=rules,
            default_level=default_level,
            drift_alarm_open=drift_alarm_open,
        )[1]
    except ReviewError as e:
        return {"note": str(e)}


# --------------------------------------------------------------------------- the report


def build_report(
    engine: Engine | Connection,
    filters: Q.ReportFilters | None = None,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    drift_alarm_open: bool | None = None,
    disagreement_limit: int = 60,
    default_level: Level = Level.human_only,
    canary_rules: CanaryRules | None = None,
    on_stage: OnStage | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict: counts, matrices, rates with bounds, gates, the
    station's models (lineup, challenger against champion, the canary's step).
    `default_level`: a station's level before any change was recorded (settings);
    `canary_rules`: what a canary step needs (settings [lifecycle]); `on_stage`: told each of
    STAGES as it begins.

    Given an engine, the daily summaries the report brought up to date are stored afterwards
    (review/summary.py), in their own transaction; given a connection, whose transaction is the
    caller's, they are not."""
    say = on_stage or _ignore_stage
    filters = filters or Q.ReportFilters()
    rules = rules or GateRules()
    args = (filters, labels, rules, drift_alarm_open, disagreement_limit, default_level)
    if isinstance(engine, Connection):
        return _build(engine, *args, canary_rules, say)[0]
    with engine.connect() as conn:
        _keep_gate_evidence(conn, filters)
        report, refresh = _build(conn, *args, canary_rules, say)
        if refresh is not None:
            conn.rollback()  # the report only read; the summaries are written in their own
            summary.save(conn, refresh)
    return report


def _keep_gate_evidence(conn: Connection, filters: Q.ReportFilters) -> None:
    """The kept gate evidence of the report's station brought up to date before the report's
    snapshot begins (review/evidence_cache.py), so that its gates read it instead of computing
    the station's whole history: the report cannot write while it reads."""
    station = _gate_station(conn, filters)
    if station is not None:
        try:
            spec = _champion_spec(conn, station)[1]
        except ReviewError:
            spec = None
        if spec is not None:
            evidence_cache.refresh(
                conn,
                Q.ReportFilters(station=station, model_version=spec, evidence_only=True),
            )
    conn.rollback()


def _build(
    conn: Connection,
    filters: Q.ReportFilters,
    labels: LabelSet,
    rules: GateRules,
    drift_alarm_open: bool | None,
    disagreement_limit: int,
    default_level: Level,
    canary_rules: CanaryRules | None,
    say: OnStage,
) -> tuple[dict[str, Any], summary.Refresh | None]:
    order = S.label_order(list(labels.all), labels.ok)
    say("selecting items")
    refresh = None
    if summary.applies(conn, filters):
        # Summed from the daily summaries, the days changed since the last report recomputed.
        parts, refresh = summary.aggregates(conn, filters, labels.ok)
        latest = summary.disagreements(conn, filters, parts.days, disagreement_limit)
    else:
        with Q.materialized(conn, filters) as f:
            parts = summary.Parts(
                days=Q.day_rows(conn, f, ok=labels.ok),
                groups=Q.label_groups(conn, f),
                scores=Q.score_rows(conn, f, ok=labels.ok),
                hours=Q.inspector_hour_rows(conn, f),
            )
            latest = Q.disagreements(conn, f, disagreement_limit)
    report = _report_from(
        conn, parts, latest, filters, order, labels.ok, rules, drift_alarm_open, say
    )
    say("gates")
    report["gates"] = _gates(conn, filters, labels, rules, default_level, drift_alarm_open)
    say("models and pipeline stages")
    report["models"] = _models(conn, filters, labels.ok, canary_rules)
    report["stages"] = _stages(conn, filters, labels.ok, parts.stages)
    # Each tamper-evidence chain's length and head (db/chain.py; `station audit verify` walks
    # them): a head kept from an earlier report must be a prefix of this one's chain.
    report["chain"] = chain_heads(conn)
    return report, refresh


def _one_station(conn: Connection, filters: Q.ReportFilters) -> int | None:
    """The id of the report's one station (its --station, or the only one), else None."""
    table = Station.__table__  # type: ignore[attr-defined]
    query = table.select().with_only_columns(table.c.id)
    if filters.station is not None:
        query = query.where(table.c.name == filters.station)
    rows = conn.execute(query.limit(2)).all()
    return int(rows[0][0]) if len(rows) == 1 else None


def _models(
    conn: Connection, filters: Q.ReportFilters, ok: str, canary_rules: CanaryRules | None
) -> dict[str, Any]:
    """The report's models block (review.canary.models_block) for its one station."""
    station_id = _one_station(conn, filters)
    if station_id is None:
        return {"note": "models are per station: filter the report by --station"}
    return _jsonable(models_block(conn, station_id, ok=ok, rules=canary_rules))


def _stages(
    conn: Connection, filters: Q.ReportFilters, ok: str, summed: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The report's pipeline-stages block (review/stages.py) for its one station: from the daily
    summaries' stage rows when the report was summed from them, else from the records."""
    from review.stages import block_from_rows, stages_block

    if summed is not None:
        return _jsonable(block_from_rows(summed))
    station_id = _one_station(conn, filters)
    if station_id is None:
        return {"note": "pipeline stages are per station: filter the report by --station"}
    return _jsonable(stages_block(conn, station_id, ok))


def _report_from(
    conn: Connection,
    parts: summary.Parts,
    latest: list[dict[str, Any]],
    filters: Q.ReportFilters,
    labels: Sequence[str],
    ok: str,
    rules: GateRules,
    drift_alarm_open: bool | None,
    say: OnStage = _ignore_stage,
) -> dict[str, Any]:
    say("counting items")
    messages = Q.unmatched_filters(conn, filters)
    days = parts.days
    n = {
        "items": sum(d["items"] for d in days),
        "paired": sum(d["paired"] for d in days),
        "evidence": sum(d["evidence"] for d in days),
    }
    groups = parts.groups
    uniform = [g for g in groups if g["uniform"]]
    n["evidence_uniform"] = sum(d["uniform"] for d in days)
    n["audited"] = sum(g["n"] for g in groups if g["evidence"] and g["audit"])
    scores = parts.scores
    say("agreement")
    main = _agreement_block(uniform, labels, ok)
    basis = {
        "evidence_uniform": main,
        "audits": _agreement_block([g for g in groups if g["evidence"] and g["audit"]], labels, ok),
        "not_evidence": _agreement_block([g for g in groups if not g["evidence"]], labels, ok),
        "all": _agreement_block(groups, labels, ok),
    }
    by_basis = {}
    for key, b in basis.items():
        b = {k: v for k, v in b.items() if k != "labels"}
        b["basis"] = BASIS_TEXT[key]
        by_basis[key] = b
    uniform_scores = [r for r in scores if r["uniform"]]
    hist = _histogram(uniform_scores)
    curve = [p.to_dict() for p in S.risk_coverage_curve(hist)]
    sel = S.select_threshold(hist, rules.max_escape_upper95).to_dict()

    if n["items"] == 0:
        messages.append(
            "no items match the filters"
            if any(filters.to_dict().values())
            else "the database holds no items yet"
        )
    elif n["paired"] == 0:
        messages.append(
            f"{n['items']} items, but none has both a human decision and a model label: "
            "nothing to compare (is the model running, in shadow at least?)"
        )
    else:
        if n["evidence"] == 0:
            messages.append(
                "no paired item is evidence (all decisions were taken with the suggestion shown): "
                "the headline numbers are empty, by_basis.all holds the biased ones, and no gate "
                "can pass"
            )
        elif n["evidence_uniform"] == 0:
            messages.append(
                f"the {n['evidence']} evidence items are all audits (a sample of the model's own "
                "decisions, not of the stream): the headline numbers and risk/coverage are empty"
            )
        if n["evidence_uniform"] and main["kappa"]["value"] is None:
            messages.append(
                "kappa does not exist: human and model used one and the same class only"
            )
        used = {g["human"] for g in groups} | {g["model"] for g in groups}
        if len(used) == 1:
            messages.append(
                f"only one class ({next(iter(used))!r}) occurs: rates that need both are empty"
            )
        if n["evidence_uniform"] and not curve:
            messages.append("no prediction carries a calibrated confidence: no risk/coverage curve")

    report = {
        "generated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "filters": filters.to_dict(),
        "messages": messages,
        "counts": n,
        "basis": BASIS_UNIFORM,
        "labels": main["labels"],
        "matrix": main["matrix"],
        "pass_fail": main["pass_fail"],
        "agreement": main["agreement"],
        "kappa": main["kappa"],
        "escape_rate": main["escape_rate"],
        "miss_rate": main["miss_rate"],
        "false_reject_rate": main["false_reject_rate"],
        "confusion_vs_reference": main["confusion_vs_reference"],
        "by_basis": by_basis,
        "mcnemar": _mcnemar(uniform),
        "automation_bias": _bias(groups),
        "risk_coverage": curve,
        "selective_threshold": sel,
        "reliability": _reliability(uniform_scores),
        "inspectors": _inspectors(parts.hours),
        "by_day": days,
        "disagreements": latest,
        "definitions": DEFINITIONS,
    }
    return _jsonable(report)  # type: ignore[no-any-return]


def dumps(report: Mapping[str, Any]) -> str:
    """JSON text; refuses NaN/inf outright rather than writing something a parser rejects."""
    return json.dumps(report, indent=2, allow_nan=False)


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def write_csv(engine: Engine, filters: Q.ReportFilters, out: Any) -> int:
    """One row per item (Q.CSV_COLUMNS) to a text stream; rows are streamed. Returns the count."""
    n = 0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(Q.CSV_COLUMNS)
    with engine.connect() as conn:
        f = Q.frame(conn, filters)
        for row in Q.iter_item_rows(conn, f):
            writer.writerow([_csv_value(v) for v in row])
            n += 1
    return n


def check_out_path(out_path: Path) -> Path:
    """The report file to write: refused (one-line ReviewError) if it is a folder or its folder
    does not exist. Returns the path with ~ expanded."""
    out_path = Path(out_path).expanduser()
    if out_path.is_dir():
        raise ReviewError(
            f"--out {out_path} is a folder: expected a file name, e.g. {out_path / 'report.html'}"
        )
    if not out_path.parent.is_dir():
        raise ReviewError(
            f"--out {out_path}: the folder {out_path.parent} does not exist "
            "(expected an existing folder; create it first)"
        )
    return out_path


def write_report(
    engine: Engine,
    filters: Q.ReportFilters,
    fmt: str,
    out_path: Path,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    image_root: Path | None = None,
    default_level: Level = Level.human_only,
    canary_rules: CanaryRules | None = None,
    on_stage: OnStage | None = None,
) -> dict[str, Any]:
    """Write the report in `fmt` to `out_path` (atomically); returns a short summary.
    `on_stage`: told build_report's STAGES, then "writing FORMAT"."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ReportFormatError(
            f"report format {fmt!r} is not supported: expected one of {', '.join(FORMATS)}"
        )
    out_path = check_out_path(out_path)
    tmp = out_path.with_name(out_path.name + ".partial")
    summary: dict[str, Any] = {"format": fmt, "path": str(out_path)}
    say = on_stage or _ignore_stage
    try:
        if fmt == "csv":
            say("writing csv")
            with tmp.open("w", newline="", encoding="utf-8") as fh:
                summary["rows"] = write_csv(engine, filters, fh)
        else:
            report = build_report(
                engine,
                filters,
                labels=labels,
                rules=rules,
                default_level=default_level,
                canary_rules=canary_rules,
                on_stage=say,
            )
            say(f"writing {fmt}")
            if fmt == "json":
                tmp.write_text(dumps(report), encoding="utf-8")
            else:
                from review.html import render_html

                page = render_html(report, image_root=image_root)
                if fmt == "pdf":  # the same page, laid out on A4 by its print style
                    from review.pdf import write_pdf

                    summary["pages"] = write_pdf(page, tmp)
                else:
                    tmp.write_text(page, encoding="utf-8")
            summary["counts"] = report["counts"]
            summary["messages"] = report["messages"]
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return summary
