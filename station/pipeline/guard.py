"""The input guard: a frame too dark, too bright, blurred, clipped or far from the reference
statistics goes to a human, never to the model alone. Its version is stored with every item."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from station.settings import GuardSettings
from station.stages import stage_version

GUARD_VERSION = "guard-1"
STAT_NAMES = ("brightness", "contrast", "sharpness", "clipped_share")


@dataclass(frozen=True)
class Reference:
    """Mean and spread of each statistic on the data the model was trained on."""

    mean: Mapping[str, float]
    std: Mapping[str, float]
    max_z: float = 6.0


@dataclass(frozen=True)
class GuardResult:
    passed: bool
    reason: str = ""
    version: str = GUARD_VERSION
    checks: Mapping[str, float] = field(default_factory=dict)


class InputGuard:
    def __init__(self, settings: GuardSettings, reference: Reference | None = None) -> None:
        self.settings = settings
        self.reference = reference
        # Recorded with every item: the code's version and its bounds (station/stages.py).
        self.version = stage_version(
            GUARD_VERSION,
            {
                "settings": settings.model_dump(),
                "reference": None
                if reference is None
                else {
                    "mean": dict(reference.mean),
                    "std": dict(reference.std),
                    "max_z": reference.max_z,
                },
            },
        )

    def check(self, stats: Any) -> GuardResult:
        s = self.settings
        values = {name: float(getattr(stats, name)) for name in STAT_NAMES}
        problems: list[str] = []
        if any(math.isnan(v) for v in values.values()):
            problems.append("statistics are not numbers (empty or corrupt frame)")
        b = values["brightness"]
        if b < s.min_brightness:
            problems.append(f"too dark: brightness {b:.0f} < {s.min_brightness:.0f}")
        if b > s.max_brightness:
            problems.append(f"too bright: brightness {b:.0f} > {s.max_brightness:.0f}")
        if values["sharpness"] < s.min_sharpness:
            problems.append(f"blurred: sharpness {values['sharpness']:.1f} < {s.min_sharpness:.1f}")
        if values["clipped_share"] > s.max_clipped_share:
            problems.append(
                f"clipped: {values['clipped_share']:.0%} of pixels saturated "
                f"> {s.max_clipped_share:.0%}"
            )
        if self.reference is not None:
            for name, mean in self.reference.mean.items():
                if name not in values:
                    continue
                std = max(float(self.reference.std.get(name, 0.0)), 1e-6)
                z = (values[name] - float(mean)) / std
                if abs(z) > self.reference.max_z:
                    problems.append(
                        f"unlike the reference: {name} {values[name]:.1f} is {z:+.1f} sd from "
                        f"{float(mean):.1f}"
                    )
        return GuardResult(
            passed=not problems, reason="; ".join(problems), version=self.version, checks=values
        )
