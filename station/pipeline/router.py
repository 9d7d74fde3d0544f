"""The router: what the station's automation level means for one item.

Before inference `plan()` says whether the model runs, whether the inspector will see its
suggestion (assist, except a blind-check share) and whether the item is a golden sample. After
inference `route()` says who decides: the model (auto-pass / auto-fail, partial and full, only by
the approved rule in force: review.rules.DecisionRule, the same function the gates measure) or a
human (everything else, including every
error: a missing, failed, raising or slow model, or a frame the input guard refused). The model
never auto-passes on an error.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from db.models import Level
from review.rules import DecisionRule, ModelCall
from station.settings import LevelSettings

__all__ = ["NO_RULE", "Decider", "ModelCall", "Plan", "Route", "Router"]


class Decider(StrEnum):
    human = "human"
    model = "model"


#: What a disposition records when no rule was in force (the model decided nothing alone).
NO_RULE = "none"


@dataclass(frozen=True)
class Plan:
    """Decided before inference."""

    level: Level
    run_model: bool
    show_suggestion: bool  # if the model answers and the frame passed the guard
    blind: bool  # the model runs but is hidden and not in force: a uniform unbiased sample
    golden: bool
    # The approved rule the model may decide by (partial / full); None: it decides nothing.
    rule: DecisionRule | None = None

    @property
    def rule_version(self) -> str:
        return self.rule.version if self.rule is not None else NO_RULE


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
        ok_class: str,
        rng: random.Random | None = None,
        show_suggestion_in_partial: bool = False,
    ) -> None:
        self.levels = levels
        self.ok_class = ok_class
        self.rng = rng or random.Random()
        self.show_suggestion_in_partial = show_suggestion_in_partial

    def plan(
        self,
        level: Level,
        *,
        golden: bool = False,
        model_available: bool = True,
        rule: DecisionRule | None = None,
    ) -> Plan:
        level = Level(level)
        run = level is not Level.human_only and model_available
        blind = False
        show = False
        if run and level is Level.assist:
            blind = golden or self.rng.random() < self.levels.blind_share_assist
            show = not blind
        elif run and level in (Level.partial, Level.full):
            # The uniform blind share: the inspector decides without the model, whatever it
            # would have called; what coverage and risk are re-estimated on at these levels.
            blind = not golden and self.rng.random() < self.levels.blind_share_auto
            show = level is Level.partial and self.show_suggestion_in_partial and not golden
            show = show and not blind
        decides = run and level in (Level.partial, Level.full)
        return Plan(
            level=level,
            run_model=run,
            show_suggestion=show,
            blind=blind,
            golden=golden,
            rule=rule if decides else None,
        )

    def truth_sample(self, route: Route) -> float | None:
        """Draw a decided item into the truth sample: the chance it had (recorded with it) when
        drawn, else None. Candidates are the uniform items (shadow, blind checks; never golden
        samples or audits) that the model labels defect-free, whatever the inspector said: the
        escapes a gate counts are found among them by adjudication, not by the inspector."""
        share = self.levels.truth_share
        uniform = route.plan.level is Level.shadow or route.blind
        if (
            share <= 0.0
            or not uniform
            or route.golden
            or route.audit
            or route.show_suggestion
            or route.model_label != self.ok_class
        ):
            return None
        return share if self.rng.random() < share else None

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
        if plan.rule is None:
            return human("no approved thresholds: the model decides nothing alone")
        call, label, why = plan.rule.call(probabilities, self.ok_class)
        model_label = label or model_label
        if plan.blind:
            return human(f"blind check (the model would {call.value.replace('_', '-')})", call)
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
