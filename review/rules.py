"""The rule by which the model decides alone (partial and full automation), as data: one function
decides an item, the same one the station's router runs and the gates measure, so a gate
certifies exactly the rule in force.

A rule: auto-pass when the calibrated P(defect-free) >= `auto_pass` and no class is above its
never-pass cap (e.g. a possible crack); auto-fail when P(defect) >= `auto_fail`; else a person
reviews the item. `fit_rule` chooses the thresholds on evidence; `measure_rule` states what a rule
does on evidence, with the bounds a gate compares.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from db.models import ChosenFor, ThresholdSet
from review.errors import GateRuleError
from review.misses import miss_rates, tally
from review.stats import clopper_pearson_upper

#: The one defect class of a model that tells defect from defect-free without naming the type
#: (the anomaly model, model/anomaly.py DEFECT_CLASS).
UNNAMED_DEFECT = "defect"


class ModelCall(StrEnum):
    auto_pass = "auto_pass"
    auto_fail = "auto_fail"
    review = "review"


@dataclass(frozen=True)
class DecisionRule:
    auto_pass: float  # min calibrated P(defect-free) to auto-pass
    auto_fail: float  # min calibrated P(defect) to auto-fail
    never_pass_above: Mapping[str, float] = field(default_factory=dict)  # class -> cap on P(class)

    def __post_init__(self) -> None:
        for name in ("auto_pass", "auto_fail"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.5 < float(v) <= 1.0):
                raise GateRuleError(f"{name} = {v!r}: expected a probability in (0.5, 1]")
        for cls, cap in self.never_pass_above.items():
            if not (isinstance(cap, int | float) and 0.0 <= float(cap) <= 1.0):
                raise GateRuleError(f"never_pass_above[{cls}] = {cap!r}: expected in [0, 1]")

    @property
    def version(self) -> str:
        """A short stable hash of the values: what every disposition records."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return "thr-" + hashlib.sha256(blob).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["never_pass_above"] = {k: float(v) for k, v in sorted(self.never_pass_above.items())}
        d["auto_pass"], d["auto_fail"] = float(self.auto_pass), float(self.auto_fail)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionRule:
        unknown = set(data) - {"auto_pass", "auto_fail", "never_pass_above"}
        if unknown:
            raise GateRuleError(f"unknown threshold field(s) {sorted(unknown)}")
        try:
            return cls(
                auto_pass=float(data["auto_pass"]),
                auto_fail=float(data["auto_fail"]),
                never_pass_above={
                    str(k): float(v) for k, v in dict(data.get("never_pass_above", {})).items()
                },
            )
        except (KeyError, TypeError, ValueError) as e:
            raise GateRuleError(f"bad thresholds {dict(data)!r}: {e}") from e

    def call(self, probabilities: Mapping[str, float], ok: str) -> tuple[ModelCall, str, str]:
        """(call, label, why) for one item's calibrated per-class probabilities."""
        if not probabilities:
            return ModelCall.review, "", "no probabilities"
        p_ok = float(probabilities.get(ok, 0.0))
        p_defect = 1.0 - p_ok
        defects = {k: float(v) for k, v in probabilities.items() if k != ok}
        top_defect = max(defects, key=lambda k: defects[k]) if defects else ""
        unnamed = set(defects) == {UNNAMED_DEFECT}  # an anomaly model: no defect type
        if p_ok >= self.auto_pass:
            for cls, cap in self.never_pass_above.items():
                # a model that names no type gives no P(crack): P(defect) bounds it from above
                p_cls = p_defect if unnamed else defects.get(cls, 0.0)
                if p_cls > cap:
                    return (
                        ModelCall.review,
                        ok,
                        f"P({cls if not unnamed else 'defect'}) {p_cls:.3f} above {cls}'s "
                        f"never-pass cap {cap}",
                    )
            return ModelCall.auto_pass, ok, f"P({ok}) {p_ok:.3f} >= {self.auto_pass}"
        if unnamed and p_defect >= self.auto_fail:
            # the inspector names the defect: the line's records (and the next classifier's
            # training data) need its type, which this model cannot give
            return (
                ModelCall.review,
                UNNAMED_DEFECT,
                f"P(defect) {p_defect:.3f} >= {self.auto_fail}, but the model names no defect "
                "type: the inspector does",
            )
        if p_defect >= self.auto_fail and top_defect:
            return (
                ModelCall.auto_fail,
                top_defect,
                f"P(defect) {p_defect:.3f} >= {self.auto_fail}",
            )
        label = max(probabilities, key=lambda k: probabilities[k])
        return ModelCall.review, label, "below thresholds"


@dataclass(frozen=True)
class RuleEvidence:
    """What a rule does on a set of items whose reference label is known.

    coverage: share of items the model decides alone; escapes: defective items it auto-passed;
    the escape rate is over its auto-passes (what a QA lead signs: "of the phones it passes,
    at most this share is defective"), with the one-sided 95% Clopper-Pearson upper bound.
    """

    n: int
    auto_pass: int
    auto_fail: int
    escapes: int
    false_fails: int  # defect-free items it auto-failed
    coverage: float
    escape_rate: float | None
    escape_upper95: float | None
    false_fail_upper95: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_rule(
    items: Iterable[tuple[Mapping[str, float], str]], rule: DecisionRule, ok: str
) -> RuleEvidence:
    """`items`: (calibrated probabilities, reference label) of uniformly sampled items."""
    n = ap = af = esc = ff = 0
    for probs, reference in items:
        n += 1
        call, _, _ = rule.call(probs, ok)
        if call is ModelCall.auto_pass:
            ap += 1
            esc += reference != ok
        elif call is ModelCall.auto_fail:
            af += 1
            ff += reference == ok
    return RuleEvidence(
        n=n,
        auto_pass=ap,
        auto_fail=af,
        escapes=esc,
        false_fails=ff,
        coverage=(ap + af) / n if n else 0.0,
        escape_rate=esc / ap if ap else None,
        escape_upper95=clopper_pearson_upper(esc, ap),
        false_fail_upper95=clopper_pearson_upper(ff, af),
    )


def fit_rule(
    items: Sequence[tuple[Mapping[str, float], str]],
    ok: str,
    *,
    target_escape: float,
    target_false_fail: float,
    caps: Mapping[str, float],
    delta: float = 0.05,
    pass_items: Sequence[tuple[Mapping[str, float], str]] | None = None,
) -> tuple[DecisionRule, RuleEvidence, dict[str, Any]]:
    """Thresholds of largest coverage whose bounds stay within the targets on `items`.

    Each side is searched on its own (auto-pass on P(ok) among items within their caps,
    auto-fail on P(defect)), scanning candidate thresholds from the strictest down and keeping
    the loosest one whose Clopper-Pearson upper bound, at level delta / (number of candidates
    looked at), stays within its target: the union bound keeps the chosen rule's bound valid
    although the search looked many times. A side with no acceptable threshold is set to 1.0
    (it decides nothing unless a probability is exactly 1)."""

    def capped(probs: Mapping[str, float]) -> bool:
        return all(float(probs.get(c, 0.0)) <= cap for c, cap in caps.items())

    # The auto-pass side on `pass_items` where given (the truth sample: the inspector's labels
    # hide the defects both miss and count its false alarms as escapes).
    pass_scores = sorted(
        (
            (float(p.get(ok, 0.0)), ref != ok)
            for p, ref in (pass_items if pass_items is not None else items)
            if capped(p)
        ),
        reverse=True,
    )
    fail_scores = sorted(
        ((1.0 - float(p.get(ok, 0.0)), ref == ok) for p, ref in items), reverse=True
    )
    pass_t, pass_info = _loosest(pass_scores, target_escape, delta, floor=0.5)
    fail_t, fail_info = _loosest(fail_scores, target_false_fail, delta, floor=0.5)
    rule = DecisionRule(pass_t, fail_t, {str(c): float(v) for c, v in caps.items()})
    info = {
        "target_escape": target_escape,
        "target_false_fail": target_false_fail,
        "delta": delta,
        "auto_pass_search": pass_info,
        "auto_fail_search": fail_info,
    }
    return rule, measure_rule(items, rule, ok), info


#: Candidate thresholds per side: enough to find the coverage, few enough that the union bound
#: over them costs little (a delta / 64 bound instead of delta).
MAX_CANDIDATES = 64


def _loosest(
    scored: list[tuple[float, bool]], target: float, delta: float, *, floor: float
) -> tuple[float, dict[str, Any]]:
    """The lowest threshold t (> floor) among candidates whose bound on errors among
    score >= t is <= target; scored: (score, is_error), sorted by score descending."""
    if not scored:
        return 1.0, {"candidates": 0, "chosen": None}
    distinct = sorted({s for s, _ in scored if s > floor}, reverse=True)
    if not distinct:
        return 1.0, {"candidates": 0, "chosen": None}
    step = max(1, math.ceil(len(distinct) / MAX_CANDIDATES))
    candidates = distinct[::step]
    level = 1.0 - delta / len(candidates)
    best: float | None = None
    best_bound: float | None = None
    i = n = k = 0
    for t in candidates:  # strictest first; the bound can only be spent going looser
        while i < len(scored) and scored[i][0] >= t:
            n += 1
            k += scored[i][1]
            i += 1
        bound = clopper_pearson_upper(k, n, level)
        if bound is not None and bound <= target:
            best, best_bound = t, bound
    info = {
        "candidates": len(candidates),
        "level": level,
        "chosen": best,
        "bound_at_chosen": best_bound,
    }
    return (best if best is not None else 1.0), info


# --------------------------------------------------------------------------- judged for a gate

#: What the gate's escape rate is measured against, in words (the report's `reference`).
TRUTH_REFERENCE = (
    "truth sample: adjudicated labels of model passes drawn at random for adjudication "
    "(whatever the inspector said); anytime-valid one-sided 95% bound"
)
INSPECTOR_REFERENCE = "the inspector's own label: reported, never judged by the gate"
KNOWN_TRUTH_REFERENCE = "the known truth of a synthetic line (Item.ground_truth)"


@dataclass(frozen=True)
class EvidenceRow:
    """One uniform evidence item, as the gates judge a rule on it."""

    item_id: int
    probabilities: Mapping[str, float]
    human: str | None
    adjudicated: str | None
    adjudicated_for: str | None  # db.models.ChosenFor of the adjudication in force
    ground_truth: str | None
    truth_probability: float | None  # chance it had of the truth sample; None: not drawn


def judged_counts(
    *,
    items: int,
    auto_pass: int,
    auto_fail: int,
    drawn: int,
    checked: int,
    escapes: int,
    target_escape: float,
) -> dict[str, Any]:
    """The rule_* numbers a gate judges, from counts (also what review.study simulates)."""
    from review.stats import anytime_upper, rate_evalue

    return {
        "rule_items": items,
        "rule_coverage": (auto_pass + auto_fail) / items if items else 0.0,
        "rule_auto_passes": auto_pass,
        "rule_auto_fails": auto_fail,
        "rule_truth_drawn": drawn,
        "rule_truth_pending": drawn - checked,
        "rule_truth_checked": checked,
        "rule_escapes": escapes,
        "rule_escape_rate": escapes / checked if checked else None,
        "rule_escape_upper95": anytime_upper(escapes, checked),
        "rule_escape_evalue": rate_evalue(escapes, checked, target_escape),
        "rule_escape_reference": TRUTH_REFERENCE,
    }


def judge_rule(
    rows: Iterable[EvidenceRow],
    rule: DecisionRule,
    ok: str,
    *,
    target_escape: float,
    holdout_after: int | None = None,
    classes: Sequence[str] = (),
) -> dict[str, Any]:
    """What the gates need to know of a rule on uniform evidence items (review.gates.Evidence's
    rule_* keys). `classes`: the defect classes to give miss rates for (review.misses).

    Coverage is measured on every uniform item after the holdout. The escape rate a gate judges
    is measured on the truth sample only: the rule's auto-passes that were drawn at random for
    adjudication, whatever the inspector said, and adjudicated since. Its bound is
    `review.stats.anytime_upper`, valid however often the gate is checked. The rates against the
    inspector and against a known truth are reported beside it, labelled, never judged."""
    n = auto_pass = auto_fail = drawn = checked = escapes = 0
    human_n = human_escapes = truth_n = truth_escapes = 0
    weight_sum = weighted_escapes = 0.0
    per_item: list[tuple[str, bool, str | None, str | None]] = []  # for review.misses
    for r in rows:
        if holdout_after is not None and r.item_id <= holdout_after:
            continue
        n += 1
        call, _, _ = rule.call(r.probabilities, ok)
        top = max(r.probabilities, key=lambda k: r.probabilities[k])
        settled = r.adjudicated is not None and r.adjudicated_for == ChosenFor.truth_sample.value
        per_item.append(
            (
                "pass" if top == ok else "fail",
                call is ModelCall.auto_pass,
                r.adjudicated if settled and r.truth_probability is not None else None,
                r.adjudicated if r.adjudicated is not None else r.human,
            )
        )
        if call is ModelCall.auto_fail:
            auto_fail += 1
        if call is not ModelCall.auto_pass:
            continue
        auto_pass += 1
        if r.human is not None:
            human_n += 1
            human_escapes += r.human != ok
        if r.ground_truth is not None:
            truth_n += 1
            truth_escapes += r.ground_truth != ok
        if r.truth_probability is None:
            continue
        drawn += 1
        if r.adjudicated is None or r.adjudicated_for != ChosenFor.truth_sample.value:
            continue
        checked += 1
        escaped = r.adjudicated != ok
        escapes += escaped
        w = 1.0 / r.truth_probability if r.truth_probability > 0 else 0.0
        weight_sum += w
        weighted_escapes += w * escaped
    tallies, stratum, stratum_checked = tally(per_item)
    wanted = list(classes) or sorted({c for c in tallies if c != ok})
    return {
        "rule_holdout_after_item": holdout_after,
        "rule_miss_by_class": miss_rates(
            tallies, stratum_items=stratum, checked=stratum_checked, classes=wanted
        ),
        **judged_counts(
            items=n,
            auto_pass=auto_pass,
            auto_fail=auto_fail,
            drawn=drawn,
            checked=checked,
            escapes=escapes,
            target_escape=target_escape,
        ),
        # Weighted by 1 / the chance of each draw: differs from the plain rate only when the
        # truth share changed while the evidence was gathered.
        "rule_escape_weighted": weighted_escapes / weight_sum if weight_sum else None,
        "rule_escape_vs_inspector": {
            "k": human_escapes,
            "n": human_n,
            "rate": human_escapes / human_n if human_n else None,
            "upper95": clopper_pearson_upper(human_escapes, human_n),
            "reference": INSPECTOR_REFERENCE,
        },
        "rule_escape_known_truth": (
            {
                "k": truth_escapes,
                "n": truth_n,
                "rate": truth_escapes / truth_n,
                "reference": KNOWN_TRUTH_REFERENCE,
            }
            if truth_n
            else None
        ),
    }


# --------------------------------------------------------------------------- the rule in force


@dataclass(frozen=True)
class RuleInForce:
    rule: DecisionRule
    set_id: int
    version: str
    # A rule fitted on items: the gates judge it only on items after this id (a holdout).
    # None: not fitted on data (e.g. the settings' proposal), so every item may judge it.
    holdout_after: int | None = None


def rule_in_force(
    session: Session, station_id: int, model_version_id: int | None
) -> RuleInForce | None:
    """The station's newest approved set for that model version, or None (the model decides
    nothing alone then). Evidence belongs to a model version, and so does its rule."""
    if model_version_id is None:
        return None
    row = session.exec(
        select(ThresholdSet)
        .where(
            ThresholdSet.station_id == station_id,
            ThresholdSet.model_version_id == model_version_id,
            col(ThresholdSet.approved_at).is_not(None),
        )
        .order_by(col(ThresholdSet.approved_at).desc(), col(ThresholdSet.id).desc())
    ).first()
    if row is None:
        return None
    assert row.id is not None
    through = (row.evidence or {}).get("fitted_through_item_id")
    return RuleInForce(
        DecisionRule.from_dict(row.values),
        row.id,
        row.version,
        int(through) if through is not None else None,
    )
