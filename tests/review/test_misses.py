"""Miss rates per defect class, against the truth sample, and the per-class gate condition."""

from __future__ import annotations

import numpy as np
import pytest

from review.errors import GateRuleError
from review.gates import GateRules, evaluate_gate
from review.misses import ClassTally, miss_rates
from review.rules import DecisionRule, EvidenceRow, judge_rule
from station.settings import Settings

RULE = DecisionRule(auto_pass=0.95, auto_fail=0.95)
PASS = {"ok": 0.99, "crack": 0.01}
FAIL = {"ok": 0.02, "crack": 0.98}


def _rows(n_ok: int, cracks_passed: int, cracks_failed: int, share: float, seed: int = 0):
    """Uniform items; a `share` of the model's passes drawn and adjudicated to the truth."""
    rng = np.random.default_rng(seed)
    rows, i = [], 0
    for truth, probs, k in (
        ("ok", PASS, n_ok),
        ("crack", PASS, cracks_passed),
        ("crack", FAIL, cracks_failed),
    ):
        for _ in range(k):
            i += 1
            drawn = probs is PASS and rng.random() < share
            rows.append(
                EvidenceRow(
                    item_id=i,
                    probabilities=probs,
                    human="ok" if probs is PASS else "crack",  # the inspector misses them too
                    adjudicated=truth if drawn else None,
                    adjudicated_for="truth_sample" if drawn else None,
                    ground_truth=truth,
                    truth_probability=share if drawn else None,
                )
            )
    return rows


def test_misses_are_found_by_the_truth_sample_not_the_inspector() -> None:
    judged = judge_rule(
        _rows(3000, 60, 140, share=1.0), RULE, "ok", target_escape=0.005, classes=["crack"]
    )
    crack = judged["rule_miss_by_class"]["crack"]
    assert crack["rate"] == pytest.approx(60 / 200)  # every pass adjudicated: exact
    assert (
        crack["upper95"] > 0.3 and crack["truth_misses"] == 60 and crack["failed_by_model"] == 140
    )
    assert "truth sample" in crack["reference"]


def test_the_per_class_gate_condition_judges_the_bound() -> None:
    rules = GateRules(max_miss_upper95={"crack": 0.10}, max_escape_upper95=0.05)
    base = {"rule_version": RULE.version, "rule": RULE.to_dict()}
    bad = judge_rule(
        _rows(3000, 60, 140, share=0.5), RULE, "ok", target_escape=0.05, classes=["crack"]
    )
    result = evaluate_gate("assist", "partial", base | bad, rules)
    assert "miss rate of class crack, upper 95% bound (truth sample, any number of looks)" in {
        c.name for c in result.failed_checks
    }
    good = judge_rule(
        _rows(3000, 0, 200, share=0.5), RULE, "ok", target_escape=0.05, classes=["crack"]
    )
    checks = {c.name: c for c in evaluate_gate("assist", "partial", base | good, rules).checks}
    crack_check = checks[
        "miss rate of class crack, upper 95% bound (truth sample, any number of looks)"
    ]
    assert crack_check.passed and crack_check.value < 0.10


def test_the_miss_bound_covers_the_true_rate() -> None:
    """True miss rate 0.3 of cracks (5% of phones); 15% of the model's passes adjudicated:
    the anytime bound is at or above the truth in >= 95% of 400 simulated lines."""
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(400):
        n = 4000
        crack = rng.random(n) < 0.05
        passed = np.where(crack, rng.random(n) < 0.3, True)
        drawn = passed & (rng.random(n) < 0.15)
        t = ClassTally(
            truth_misses=int((drawn & crack).sum()),
            truth_caught=0,
            failed=int((crack & ~passed).sum()),
        )
        out = miss_rates(
            {"crack": t},
            stratum_items=int(passed.sum()),
            checked=int(drawn.sum()),
            classes=["crack"],
        )
        covered += out["crack"]["upper95"] is not None and out["crack"]["upper95"] >= 0.3
    assert covered / 400 >= 0.95


def test_per_class_limits_are_checked_where_they_are_written() -> None:
    assert GateRules.from_mapping({"max_miss_upper95": {"crack": 0.02}}).max_miss_upper95 == {
        "crack": 0.02
    }
    with pytest.raises(GateRuleError, match="expected a table"):
        GateRules.from_mapping({"max_miss_upper95": 0.02})
    with pytest.raises(ValueError, match="not defect classes"):
        Settings(gates={"max_miss_upper95": {"crak": 0.02}})
    with pytest.raises(ValueError, match="rate in"):
        Settings(gates={"max_miss_upper95": {"crack": 2}})
