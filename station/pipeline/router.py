"""The router: what the station's automation level means for one item.

Before inference `plan()` says whether the model runs, whether the inspector will see its
suggestion (assist, except a blind-check share) and whether the item is a golden sample. After
inference `route()` says who decides: the model (auto-pass / auto-fail, partial and full, only
above the thresholds on calibrated confidence) or a human (everything else, including every
error: a missing, failed, raising or slow model, or a frame the input guard refused). The model
never auto-passes on an error.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from db.models import Level
from station.settings import LevelSettings, ThresholdSettings


class ModelCall(StrEnum):
    auto_pass = "auto_pass"
    auto_fail = "auto_fail"
    review = "review"


class Decider(StrEnum):
    human = "human"
    model = "model"


def thresholds_version(thresholds: ThresholdSettings) -> str:
    """A short stable hash of the decision thresholds, stored on every disposition."""
    data = thresholds.model_dump(mode="json")
    data.pop("model_timeout_s", None)  # how long we wait is not part of what we decide
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return "thr-" + hashlib.sha256(blob).hexdigest()[:12]


def three_state(
    probabilities: Mapping[str, float], thresholds: ThresholdSettings, ok_class: str
) -> tuple[ModelCall, str, str]:
    """(call, label, why) from calibrated per-class probabilities.

    auto-pass: P(ok) >= auto_pass and no class over its never-pass cap (e.g. a possible crack);
    auto-fail: P(defect) >= auto_fail, labelled with the most probable defect; else review.
    """
    if not probabilities:
        return ModelCall.review, "", "no probabilities"
    p_ok = float(probabilities.get(ok_class, 0.0))
    p_defect = 1.0 - p_ok
    defects = {k: float(v) for k, v in probabilities.items() if k != ok_class}
    top_defect = max(defects, key=lambda k: defects[k]) if defects else ""
    if p_ok >= thresholds.auto_pass:
        for cls, cap in thresholds.never_pass_above.items():
            if defects.get(cls, 0.0) > cap:
                return (
                    ModelCall.review,
                    ok_class,
                    f"P({cls}) {defects[cls]:.3f} above its never-pass cap {cap}",
                )
        return ModelCall.auto_pass, ok_class, f"P(ok) {p_ok:.3f} >= {thresholds.auto_pass}"
    if p_defect >= thresholds.auto_fail and top_defect:
        return (
            ModelCall.auto_fail,
            top_defect,
            f"P(defect) {p_defect:.3f} >= {thresholds.auto_fail}",
        )
    return ModelCall.review, max(probabilities, key=lambda k: probabilities[k]), "below thresholds"


@dataclass(frozen=True)
class Plan:
    """Decided before inference."""

    level: Level
    run_model: bool
    show_suggestion: bool  # if the model answers and the frame passed the guard
    blind: bool  # assist: the model runs but is hidden, to keep an unbiased sample
    golden: bool


@dataclass(frozen=True)
class Route:
    """Decided after inference: who decides this item, and what the inspector may see."""

    plan: Plan
    decider: Decider
    model_call: ModelCall | None  # None when the model did not run or failed
    model_label: str | None  # the label the model decided (auto) or suggested
    show_suggestion: bool
    blind: bool
    audit: bool
    golden: bool
    reason: str

    @property
    def needs_human(self) -> bool:
        return self.decider is Decider.human or self.audit or self.golden


class Router:
    def __init__(
        self,
        *,
        levels: LevelSettings,
        thresholds: ThresholdSettings,
        ok_class: str,
        rng: random.Random | None = None,
        show_suggestion_in_partial: bool = False,
    ) -> None:
        self.levels = levels
        self.thresholds = thresholds
        self.ok_class = ok_class
        self.rng = rng or random.Random()
        self.show_suggestion_in_partial = show_suggestion_in_partial
        self.thresholds_version = thresholds_version(thresholds)

    def plan(self, level: Level, *, golden: bool = False, model_available: bool = True) -> Plan:
        level = Level(level)
        run = level is not Level.human_only and model_available
        blind = False
        show = False
        if run and level is Level.assist:
            blind = golden or self.rng.random() < self.levels.blind_share_assist
            show = not blind
        elif run and level is Level.partial:
            show = self.show_suggestion_in_partial and not golden
        return Plan(level=level, run_model=run, show_suggestion=show, blind=blind, golden=golden)

    def route(
        self,
        plan: Plan,
        *,
        probabilities: Mapping[str, float] | None,
        model_label: str | None = None,
        error: str | None = None,
        guard_passed: bool = True,
        guard_reason: str = "",
    ) -> Route:
        def human(reason: str, call: ModelCall | None = None, show: bool = False) -> Route:
            return Route(
                plan=plan,
                decider=Decider.human,
                model_call=call,
                model_label=model_label if probabilities else None,
                show_suggestion=show,
                blind=plan.blind,
                audit=False,
                golden=plan.golden,
                reason=reason,
            )

        if not plan.run_model:
            return human("human only" if plan.level is Level.human_only else "no model")
        if error is not None or probabilities is None:
            return human(f"model error: {error or 'no answer'}")
        if not guard_passed:
            # The model's view of a bad frame is not trusted: no suggestion, no auto decision.
            return human(f"input guard: {guard_reason}")
        if plan.level in (Level.shadow, Level.assist):
            return human(plan.level.value, show=plan.show_suggestion)
        call, label, why = three_state(probabilities, self.thresholds, self.ok_class)
        model_label = label or model_label
        if call is ModelCall.review or plan.golden:
            # Golden samples measure inspectors and the model alike: always to a human.
            reason = "golden sample" if plan.golden else f"review: {why}"
            return human(reason, call, show=plan.show_suggestion and not plan.golden)
        share = (
            self.levels.audit_share_partial
            if plan.level is Level.partial
            else self.levels.audit_share_full
        )
        audit = self.rng.random() < share
        return Route(
            plan=plan,
            decider=Decider.model,
            model_call=call,
            model_label=label,
            show_suggestion=False,  # audits are blind
            blind=False,
            audit=audit,
            golden=False,
            reason=why + ("; audit" if audit else ""),
        )
