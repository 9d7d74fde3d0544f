"""Simulated inspectors for `station simulate`, tests and benchmarks: pure Python, seeded.

A decision is drawn in this order:
1. Automation bias: if a suggestion is shown and it is wrong, the inspector follows it with
   probability `automation_bias`.
2. Otherwise their own look: an ok item is passed with probability `specificity`, else flagged as
   a defect class drawn from the class mix; a defective item of class c is caught with probability
   `sensitivity[c]` and then named correctly with probability `class_accuracy` (else another
   defect class); a missed defect is passed as "ok".
3. If a correct suggestion was shown and their own look disagrees, they take the suggestion with
   probability `follow_correct`.
Fatigue lowers sensitivity and specificity by `fatigue_per_hour` (absolute) per hour into the
shift, and slows decisions by `slowdown_per_hour` (relative). Decision times are log-normal
around `median_time_s` (`defect_time_factor` longer on defective items, `follow_time_factor`
when a suggestion is taken), never under `min_time_s`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from station.synth.config import DEFECT_CLASSES, OK


@dataclass
class SimulatedInspector:
    sensitivity: dict[str, float] = field(
        default_factory=lambda: {
            "crack": 0.95,
            "scratch": 0.85,
            "dent": 0.9,
            "stain": 0.8,
            "missing": 0.97,
        }
    )
    specificity: float = 0.97
    class_accuracy: float = 0.92
    automation_bias: float = 0.3
    follow_correct: float = 0.6
    median_time_s: float = 2.5
    time_sigma: float = 0.35
    defect_time_factor: float = 1.4
    follow_time_factor: float = 0.8
    min_time_s: float = 0.4
    fatigue_per_hour: float = 0.01
    slowdown_per_hour: float = 0.03
    seed: int = 0
    name: str = "sim"

    def __post_init__(self) -> None:
        problems = []
        for c, v in self.sensitivity.items():
            if c not in DEFECT_CLASSES:
                problems.append(
                    f"sensitivity for unknown class {c!r}; expected some of {list(DEFECT_CLASSES)}"
                )
            elif not 0.0 <= v <= 1.0:
                problems.append(f"sensitivity[{c}] must be in [0, 1], got {v}")
        for name in ("specificity", "class_accuracy", "automation_bias", "follow_correct"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {v}")
        if self.median_time_s <= 0 or self.time_sigma < 0 or self.min_time_s < 0:
            problems.append("median_time_s must be > 0, time_sigma and min_time_s >= 0")
        if self.fatigue_per_hour < 0 or self.slowdown_per_hour < 0:
            problems.append("fatigue_per_hour and slowdown_per_hour must be >= 0")
        if problems:
            raise ValueError("bad simulated inspector: " + "; ".join(problems))
        self._rng = random.Random(self.seed)

    # ------------------------------------------------------------------ rates over the shift

    def sensitivity_at(self, cls: str, t_shift_s: float) -> float:
        base = self.sensitivity.get(cls, 0.9)
        return max(0.0, base - self.fatigue_per_hour * max(0.0, t_shift_s) / 3600.0)

    def specificity_at(self, t_shift_s: float) -> float:
        return max(0.0, self.specificity - self.fatigue_per_hour * max(0.0, t_shift_s) / 3600.0)

    # ------------------------------------------------------------------ deciding

    def decide(
        self, truth: str, suggestion: str | None = None, shown: bool = False, t_shift_s: float = 0.0
    ) -> tuple[str, float]:
        """(label, seconds to decide) for an item whose true label is `truth`."""
        if truth != OK and truth not in DEFECT_CLASSES:
            raise ValueError(f"truth must be 'ok' or one of {list(DEFECT_CLASSES)}, got {truth!r}")
        rng = self._rng
        followed = False
        visible = shown and suggestion is not None
        if visible and suggestion != truth and rng.random() < self.automation_bias:
            label = str(suggestion)
            followed = True
        else:
            label = self._own_look(truth, t_shift_s)
            if (
                visible
                and suggestion == truth
                and label != truth
                and rng.random() < self.follow_correct
            ):
                label = truth
                followed = True
        return label, self._time(truth, followed, t_shift_s)

    def _own_look(self, truth: str, t: float) -> str:
        rng = self._rng
        if truth == OK:
            if rng.random() < self.specificity_at(t):
                return OK
            return rng.choice(DEFECT_CLASSES)
        if rng.random() >= self.sensitivity_at(truth, t):
            return OK
        if rng.random() < self.class_accuracy:
            return truth
        return rng.choice([c for c in DEFECT_CLASSES if c != truth])

    def _time(self, truth: str, followed: bool, t: float) -> float:
        median = self.median_time_s * (self.defect_time_factor if truth != OK else 1.0)
        if followed:
            median *= self.follow_time_factor
        median *= 1.0 + self.slowdown_per_hour * max(0.0, t) / 3600.0
        seconds = median * math.exp(self._rng.gauss(0.0, self.time_sigma))
        return max(self.min_time_s, seconds)
