"""Does a passing gate mean what it says? A simulation study on a line whose truth is known.

Each run plays the assist -> partial promotion as a station would: thresholds are fitted on
10,000 uniform items against the reference a station had (disagreements adjudicated, the rest as
the inspector said, who misses 20% of defects: those the model passes too stay hidden, so the
fit is optimistic), approved, and then judged by the gate (review.gates.evaluate_gate on
review.rules.judged_counts, the numbers the station's gate reads) on the items that follow,
with a truth sample of the model's passes adjudicated against the truth. The gate is checked
again after every `items_per_look` items, up to `looks` times, and the run counts as passed if
any look passed (a QA lead who keeps asking). The rule's true escape rate is known exactly from
the simulated population, so each pass can be called right or wrong.

`python -m review.study` prints the table quoted in the closing note; tests/review/test_study.py
holds the gate to it (>= 95% of passes have a true escape rate under the target).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from review.gates import GateRules, evaluate_gate
from review.rules import DecisionRule, ModelCall, fit_rule, judged_counts
from review.stats import clopper_pearson_upper

OK, DEFECT = "ok", "scratch"

# The line: 90% of phones from a clean process (P(defect) ~ Beta(0.5, 80), mean 0.6%), 10%
# from a faulty one (Beta(6, 2), mean 75%): about 8% defective overall. Chosen so that rules
# near the usual thresholds straddle the 0.5% target: a calibrated rule at auto_pass 0.95 lets
# 0.60% through, at 0.98 0.43%; a 1.6x over-confident model at 0.98 lets 0.62% through.
MIXTURE = ((0.90, 0.5, 80.0), (0.10, 6.0, 2.0))


@dataclass(frozen=True)
class Setting:
    name: str
    overconfidence: float = 1.0  # the model's logits are this many times the calibrated ones
    looks: int = 30
    items_per_look: int = 1000
    fit_items: int = 10_000
    truth_share: float = 0.2  # share of the model's passes adjudicated against the truth
    target: float = 0.005
    inspector_miss: float = 0.2  # the inspector passes this share of defective phones
    inspector_false_fail: float = 0.02


@dataclass(frozen=True)
class Outcome:
    runs: int
    passes: int
    passes_under_target: int  # passes whose rule's true escape rate is under the target
    bad_rules: int  # runs whose fitted rule's true escape rate is at or over the target
    bad_rules_passed: int
    naive_passes: int  # the old gate: fixed-sample bound against the inspector, every look
    naive_passes_under_target: int

    @property
    def share_right(self) -> float | None:
        return self.passes_under_target / self.passes if self.passes else None

    @property
    def naive_share_right(self) -> float | None:
        return self.naive_passes_under_target / self.naive_passes if self.naive_passes else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share_right": self.share_right, "naive": self.naive_share_right}


def _true_p_defect(rng: np.random.Generator, n: int) -> np.ndarray:
    which = rng.random(n) < MIXTURE[0][0]
    s = np.empty(n)
    s[which] = rng.beta(MIXTURE[0][1], MIXTURE[0][2], int(which.sum()))
    s[~which] = rng.beta(MIXTURE[1][1], MIXTURE[1][2], int((~which).sum()))
    return s


def _reported(s: np.ndarray, overconfidence: float) -> np.ndarray:
    """The model's P(defect): calibrated (== s) or with logits scaled (over-confident)."""
    s = np.clip(s, 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-overconfidence * np.log(s / (1 - s))))


def true_escape_rate(rule: DecisionRule, overconfidence: float) -> float:
    """Exact share of defective phones among those the rule auto-passes, on MIXTURE."""
    limit = 1.0 - rule.auto_pass  # passes when the reported P(defect) <= limit
    if limit <= 0.0:
        return 0.0
    c = 1.0 / (1.0 + math.exp(-math.log(limit / (1 - limit)) / overconfidence))
    passed = defective = 0.0
    for w, a, b in MIXTURE:
        passed += w * float(sps.beta.cdf(c, a, b))
        defective += w * a / (a + b) * float(sps.beta.cdf(c, a + 1, b))
    return defective / passed if passed > 0 else 0.0


def _probabilities(p: float) -> dict[str, float]:
    return {OK: 1.0 - p, DEFECT: p}


def run_once(setting: Setting, rng: np.random.Generator, rules: GateRules) -> dict[str, Any]:
    # Fit on the inspector's labels.
    s = _true_p_defect(rng, setting.fit_items)
    truth = rng.random(setting.fit_items) < s
    said_defect = np.where(
        truth,
        rng.random(setting.fit_items) >= setting.inspector_miss,
        rng.random(setting.fit_items) < setting.inspector_false_fail,
    )
    p = _reported(s, setting.overconfidence)
    # Half the runs judge a fitted rule, half a proposal approved as it stands (a spread of true
    # escape rates on both sides of the target). The reference a fit sees: disagreements adjudicated (to the truth), agreements taken as
    # the inspector said: defects that both missed stay hidden, so the fit is optimistic.
    reference = np.where(said_defect != (p >= 0.5), truth, said_defect)
    items = [
        (_probabilities(float(pi)), DEFECT if d else OK) for pi, d in zip(p, reference, strict=True)
    ]
    if rng.random() < 0.5:
        rule, _, _ = fit_rule(
            items, OK, target_escape=setting.target, target_false_fail=0.02, caps={}
        )
    else:  # an engineer approves a proposal as it stands (e.g. the settings' values)
        rule = DecisionRule(float(rng.uniform(0.95, 0.999)), 0.99)
    true_rate = true_escape_rate(rule, setting.overconfidence)

    # The items after the approval, judged look by look.
    n = setting.looks * setting.items_per_look
    s = _true_p_defect(rng, n)
    truth = rng.random(n) < s
    p = _reported(s, setting.overconfidence)
    auto_pass = (1.0 - p) >= rule.auto_pass
    auto_fail = ~auto_pass & (p >= rule.auto_fail)
    for i in range(min(200, n)):  # the vectorised calls are the rule's own
        call = rule.call(_probabilities(float(p[i])), OK)[0]
        assert (call is ModelCall.auto_pass) == bool(auto_pass[i]), (p[i], rule)
        assert (call is ModelCall.auto_fail) == bool(auto_fail[i]), (p[i], rule)
    drawn = (p < 0.5) & (rng.random(n) < setting.truth_share)  # the model's passes, at random
    checked = auto_pass & drawn
    inspector_missed = truth & (rng.random(n) < setting.inspector_miss)
    passed_at = naive_at = None
    for look in range(1, setting.looks + 1):
        upto = look * setting.items_per_look
        ap = int(auto_pass[:upto].sum())
        ev = {
            "rule_version": rule.version,
            "rule": rule.to_dict(),
            **judged_counts(
                items=upto,
                auto_pass=ap,
                auto_fail=int(auto_fail[:upto].sum()),
                drawn=int((auto_pass & drawn)[:upto].sum()),
                checked=int(checked[:upto].sum()),
                escapes=int((checked & truth)[:upto].sum()),
                target_escape=setting.target,
            ),
        }
        if passed_at is None and evaluate_gate("assist", "partial", ev, rules).passed:
            passed_at = look
        # The old gate: a fixed-sample bound, escapes counted against the inspector.
        naive = clopper_pearson_upper(int((auto_pass & inspector_missed)[:upto].sum()), ap)
        coverage = ev["rule_coverage"]
        if (
            naive_at is None
            and naive is not None
            and naive <= setting.target
            and coverage >= rules.assist_to_partial_min_coverage
        ):
            naive_at = look
        if passed_at is not None and naive_at is not None:
            break
    return {
        "rule": rule,
        "true_escape": true_rate,
        "passed_at": passed_at,
        "naive_passed_at": naive_at,
    }


def study(setting: Setting, runs: int = 200, seed: int = 0) -> Outcome:
    rng = np.random.default_rng([seed, int(setting.overconfidence * 100), setting.looks])
    rules = GateRules(max_escape_upper95=setting.target)
    passes = right = bad = bad_passed = naive = naive_right = 0
    for _ in range(runs):
        r = run_once(setting, rng, rules)
        under = r["true_escape"] < setting.target
        bad += not under
        if r["passed_at"] is not None:
            passes += 1
            right += under
            bad_passed += not under
        if r["naive_passed_at"] is not None:
            naive += 1
            naive_right += under
    return Outcome(runs, passes, right, bad, bad_passed, naive, naive_right)


SETTINGS = (
    Setting("calibrated, one look", looks=1, items_per_look=30_000),
    Setting("calibrated, 30 looks"),
    Setting("1.6x over-confident, 30 looks", overconfidence=1.6),
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"{'setting':34} runs  bad  passes  right   bad-passed  | old gate: passes right")
    for setting in SETTINGS:
        o = study(setting, args.runs, args.seed)
        share = f"{o.share_right:.3f}" if o.share_right is not None else "  -  "
        naive = f"{o.naive_share_right:.3f}" if o.naive_share_right is not None else "  -  "
        print(
            f"{setting.name:34} {o.runs:4} {o.bad_rules:4} {o.passes:6}  {share}  "
            f"{o.bad_rules_passed:6}      | {o.naive_passes:6}  {naive}"
        )


if __name__ == "__main__":
    main()
