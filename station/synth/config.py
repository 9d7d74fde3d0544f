"""The synthetic line's parameters, and their parsing from a `synthetic:key=value,...` spec."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from station.errors import SourceError

DEFECT_CLASSES = ("crack", "scratch", "dent", "stain", "missing")
OK = "ok"
LABELS = (OK, *DEFECT_CLASSES)
#: Colours the drift knob `phone_color` accepts (BGR body colour).
NEW_COLOURS = {
    "blue": (150, 95, 45),
    "gold": (120, 175, 215),
    "red": (45, 40, 170),
    "green": (80, 120, 60),
    "silver": (185, 182, 178),
}
DEFECT_STYLES = ("v1", "v2")
#: Upper bound of travel_s, dwell_s and gap_s: an hour per phase is already no line.
MAX_PHASE_S = 3600.0
#: Upper bound of one mix weight (keeps the sum of weights finite).
MAX_WEIGHT = 1e6


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides what the line shows. Same config (seed included) -> same pixels.

    Geometry is designed at 1280x720 and scaled to (width, height). Timing: each phone slides in
    for travel_s, dwells for dwell_s, slides out for travel_s, then gap_s of empty table; the
    defaults give 26 phones a minute at 30 fps (`items_per_minute`).
    Drift knobs (light, defocus, phone_color, defect_style) act from item `drift_after` on;
    light ramps over `drift_ramp_items` items so a monitor sees a drift, not a step.
    """

    seed: int = 0
    width: int = 1280
    height: int = 720
    defect_rate: float = 0.3
    #: Relative weights of the defect classes among defective items.
    mix: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DEFECT_CLASSES, 1.0))
    #: 0..1: size and contrast of defects (each item draws around this value).
    severity: float = 0.6
    fps: float = 30.0
    travel_s: float = 0.5
    dwell_s: float = 1.0
    gap_s: float = 0.3
    realtime: bool = True
    max_items: int | None = None
    noise: float = 2.5
    # drift knobs
    light: float = 1.0
    defocus: float = 0.0
    phone_color: str = ""
    color_share: float = 1.0
    defect_style: str = "v1"
    drift_after: int = 0
    drift_ramp_items: int = 3

    def __post_init__(self) -> None:
        # Non-finite numbers pass every `<`/`<=` range test below (nan) or overflow later in
        # round() (inf), so they are refused first, each named with what is expected.
        problems = _non_finite(self)
        if problems:
            raise SourceError("bad synthetic line setting: " + "; ".join(problems))
        if not (64 <= self.width <= 7680 and 36 <= self.height <= 4320):
            problems.append(
                f"width x height must be within 64x36..7680x4320, got {self.width}x{self.height}"
            )
        if not 0.0 <= self.defect_rate <= 1.0:
            problems.append(f"defect_rate must be in [0, 1], got {self.defect_rate}")
        if not 0.0 <= self.severity <= 1.0:
            problems.append(f"severity must be in [0, 1], got {self.severity}")
        unknown = set(self.mix) - set(DEFECT_CLASSES)
        if unknown:
            problems.append(
                f"mix has unknown classes {sorted(unknown)}; expected some of {list(DEFECT_CLASSES)}"
            )
        if any(not 0 <= w <= MAX_WEIGHT for w in self.mix.values()) or (
            self.defect_rate > 0 and sum(self.mix.values()) <= 0
        ):
            problems.append(
                f"mix weights must be in [0, {MAX_WEIGHT:g}] with a positive sum, got {self.mix}"
            )
        if not 1.0 <= self.fps <= 240.0:
            problems.append(f"fps must be in [1, 240], got {self.fps}")
        for name, low, high in (
            ("travel_s", 0.0, MAX_PHASE_S),
            ("dwell_s", 0.0, MAX_PHASE_S),
        ):
            value = getattr(self, name)
            if not low < value <= high:
                problems.append(f"{name} must be in (0, {high:g}] seconds, got {value}")
        if not 0.0 <= self.gap_s <= MAX_PHASE_S:
            problems.append(f"gap_s must be in [0, {MAX_PHASE_S:g}] seconds, got {self.gap_s}")
        if self.max_items is not None and self.max_items < 0:
            problems.append(f"max_items must be >= 0, got {self.max_items}")
        if not 0.05 <= self.light <= 3.0:
            problems.append(f"light must be in [0.05, 3], got {self.light}")
        if not 0.0 <= self.defocus <= 20.0:
            problems.append(
                f"defocus must be in [0, 20] (blur sigma in pixels), got {self.defocus}"
            )
        if self.phone_color and self.phone_color not in NEW_COLOURS:
            problems.append(
                f"phone_color must be one of {sorted(NEW_COLOURS)}, got {self.phone_color!r}"
            )
        if not 0.0 <= self.color_share <= 1.0:
            problems.append(f"color_share must be in [0, 1], got {self.color_share}")
        if self.defect_style not in DEFECT_STYLES:
            problems.append(
                f"defect_style must be one of {list(DEFECT_STYLES)}, got {self.defect_style!r}"
            )
        if self.drift_after < 0 or self.drift_ramp_items < 0:
            problems.append("drift_after and drift_ramp_items must be >= 0")
        if not 0.0 <= self.noise <= 30.0:
            problems.append(f"noise must be in [0, 30], got {self.noise}")
        if problems:
            raise SourceError("bad synthetic line setting: " + "; ".join(problems))

    @property
    def class_weights(self) -> dict[str, float]:
        return {c: float(self.mix.get(c, 0.0)) for c in DEFECT_CLASSES}

    @property
    def items_per_minute(self) -> float:
        """The line's rate: one phone per travel-in + dwell + travel-out + gap."""
        enter, dwell, leave, gap = self.frames_per_phase()
        return 60.0 * self.fps / (enter + dwell + leave + gap)

    def frames_per_phase(self) -> tuple[int, int, int, int]:
        """(enter, dwell, exit, gap) in frames."""
        travel = max(2, round(self.travel_s * self.fps))
        dwell = max(2, round(self.dwell_s * self.fps))
        gap = max(0, round(self.gap_s * self.fps))
        return travel, dwell, travel, gap

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_options(cls, options: dict[str, str], **overrides: Any) -> SynthConfig:
        """From `synthetic:` spec options (strings); unknown keys are refused with the known ones."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in options.items():
            if key not in fields:
                raise SourceError(
                    f"unknown synthetic parameter {key!r}; expected some of: {', '.join(fields)} "
                    "(e.g. synthetic:seed=3,defect_rate=0.2,mix=crack:2+scratch:1)"
                )
            values[key] = _convert(key, raw, fields[key].type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _non_finite(config: SynthConfig) -> list[str]:
    """One line per float setting (mix weights included) that is nan or infinite."""
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{f.name} must be a finite number, got {value}")
    for name, weight in config.mix.items():
        if isinstance(weight, float) and not math.isfinite(weight):
            problems.append(f"mix weight of {name} must be a finite number >= 0, got {weight}")
    return problems


def _convert(key: str, raw: str, typ: Any) -> Any:
    t = str(typ)
    try:
        if key == "mix":
            mix: dict[str, float] = {}
            for part in filter(None, raw.split("+")):
                name, _, weight = part.partition(":")
                mix[name.strip()] = float(weight) if weight else 1.0
            return mix
        if key == "max_items":
            return None if raw.lower() in {"", "none"} else int(raw)
        if t in {"bool", "<class 'bool'>"}:
            v = raw.strip().lower()
            if v in {"1", "true", "yes", "on"}:
                return True
            if v in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if t in {"int", "<class 'int'>"}:
            return int(raw)
        if t in {"float", "<class 'float'>"}:
            return float(raw)
        return raw
    except ValueError as e:
        raise SourceError(
            f"synthetic parameter {key}={raw!r} is not a valid {t}"
            + (
                " (mix is class:weight+class:weight, e.g. crack:2+scratch:1)"
                if key == "mix"
                else ""
            )
        ) from e
