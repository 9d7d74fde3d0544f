"""The one settings object: defaults < TOML file < STATION_* environment < command-line flags.

Loaded once at the entry point and passed down; each component receives only its own section.
Unknown keys and bad values are refused with the key, the value, where it came from and what was
expected. The layers are read here rather than by pydantic-settings because we need two things it
does not give: the source of every effective value (`station config show`) and refusal of unknown
STATION_* variables (a typo in the environment must not silently fall back to a default).
Validation itself is pydantic's.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from review.gates import GateRules
from review.labels import MAX_DEFECTS, LabelSet
from station.errors import SettingsError

APP_NAME = "inspection-station"
ENV_PREFIX = "STATION_"
ENV_NESTED = "__"
# Environment variables with our prefix that are not settings (read by the test suite).
ENV_NOT_SETTINGS = {"STATION_TEST_PG_URL"}

LevelName = Literal["human_only", "shadow", "assist", "partial", "full"]
Share = float


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class LevelSettings(_Section):
    """The automation level a new station starts at and the sampling shares of each level."""

    # Only levels where the human decides and sees no model: anything higher must be reached
    # through a gate (`station level set`), never by editing a file.
    default: Literal["human_only", "shadow"] = "human_only"
    blind_share_assist: Share = Field(0.10, ge=0.0, le=1.0)
    audit_share_partial: Share = Field(0.05, ge=0.0, le=1.0)
    audit_share_full: Share = Field(0.02, ge=0.0, le=1.0)
    # Partial and full: the share of items sent to the inspector blind whatever the model says
    # (the model's call is recorded, not shown, not in force): a uniform sample of the stream,
    # on which coverage and risk are estimated again after the model has taken over.
    blind_share_auto: Share = Field(0.02, ge=0.0, le=1.0)
    # The truth sample: the share of uniform items (shadow, blind checks) the model would pass
    # that is queued for adjudication, whatever the inspector said. Escape rates for the gates
    # are measured on it (review.rules), never against the inspector alone.
    truth_share: Share = Field(0.05, ge=0.0, le=1.0)
    # Chance that a golden sample (a known-truth still that measures inspectors) follows a line
    # item: 0.05 makes about one item in 21 a golden sample.
    golden_share: Share = Field(0.0, ge=0.0, le=1.0)


class AuditSettings(_Section):
    """Wald's sequential probability ratio test on audited auto-passes (partial and full): it
    demotes the station as soon as the audits show an escape rate of `sprt_p1` rather than
    `sprt_p0`, with error chances `sprt_alpha` (demoting a good station) and `sprt_beta`."""

    sprt_p0: float = Field(0.005, gt=0.0, lt=1.0, description="acceptable escape rate")
    sprt_p1: float = Field(0.03, gt=0.0, lt=1.0, description="escape rate that must demote")
    sprt_alpha: float = Field(0.01, gt=0.0, lt=0.5)
    sprt_beta: float = Field(0.10, gt=0.0, lt=0.5)

    @model_validator(mode="after")
    def _p0_below_p1(self) -> AuditSettings:
        if not self.sprt_p0 < self.sprt_p1:
            raise ValueError(
                f"audits.sprt_p0 ({self.sprt_p0}) must be below audits.sprt_p1 ({self.sprt_p1})"
            )
        return self


class LifecycleSettings(_Section):
    """Model lifecycle at the station: the canary's ramp (review.canary.CanaryRules) and the
    limits whose breach rolls a new champion back to the previous one."""

    canary_steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    min_items: int = Field(200, ge=1, description="items in the canary's arm per step")
    min_minutes: float = Field(60.0, ge=0.0, description="baking time per step")
    min_reference: int = Field(50, ge=1, description="paired items with a known truth per step")
    max_worse: float = Field(0.02, ge=0.0, lt=1.0, description="non-inferiority margin")
    alpha: float = Field(0.01, gt=0.0, lt=0.5, description="one-sided McNemar: it is worse")
    max_error_rate: float = Field(0.02, ge=0.0, lt=1.0, description="errors and timeouts")
    latency_p95_ms: float = Field(1500.0, gt=0.0)
    min_answers: int = Field(20, ge=1, description="answers before errors or latency judge")
    check_every_items: int = Field(50, ge=1, description="how often a running station checks")

    @field_validator("canary_steps")
    @classmethod
    def _steps_rise_to_100(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 < w <= 100.0 for w in v) or sorted(set(v)) != v or v[-1] != 100:
            raise ValueError(
                f"lifecycle.canary_steps must rise strictly within (0, 100] and end at 100, got {v}"
            )
        return v

    @property
    def canary_rules(self):  # -> review.canary.CanaryRules (review is imported lazily)
        from review.canary import CanaryRules

        return CanaryRules(
            min_items=self.min_items,
            min_minutes=self.min_minutes,
            min_reference=self.min_reference,
            max_worse=self.max_worse,
            alpha=self.alpha,
            max_error_rate=self.max_error_rate,
            latency_p95_ms=self.latency_p95_ms,
            min_answers=self.min_answers,
        )


class MonitorSettings(_Section):
    """Drift checks and alarms (station/monitor.py): each check reads the last `window` items,
    every `every_items` items, against the reference captured when the level was approved."""

    enabled: bool = True
    window: int = Field(500, ge=50, description="items each check reads")
    every_items: int = Field(100, ge=1, description="how often a running station checks")
    reference_items: int = Field(500, ge=50, description="items in a level's reference")
    input_warn: float = Field(0.1, gt=0.0, description="normalised Wasserstein distance")
    input_fail: float = Field(0.2, gt=0.0)
    # Embedding drift: MMD permutation tests, over all items and over the items the model
    # called defective (a new defect look moves only those); a verdict needs both the p-value
    # and a floor on the effect (MMD^2), so a large window does not alarm on a difference no
    # one would act on.
    embedding_warn_p: float = Field(0.001, gt=0.0, lt=1.0)
    embedding_fail_p: float = Field(0.001, gt=0.0, lt=1.0)
    embedding_warn_mmd: float = Field(0.01, ge=0.0, description="MMD^2 (RBF, median bandwidth)")
    embedding_fail_mmd: float = Field(0.02, ge=0.0)
    permutations: int = Field(1000, ge=50, le=10000)
    # Output drift: p-chart limits on the predicted-defect rate, in standard errors.
    defect_rate_warn_sigma: float = Field(3.0, gt=0.0)
    defect_rate_fail_sigma: float = Field(4.0, gt=0.0)
    confidence_warn: float = Field(0.1, gt=0.0, description="normalised Wasserstein distance")
    confidence_fail: float = Field(0.2, gt=0.0)
    error_rate_warn: float = Field(0.01, ge=0.0, le=1.0)
    error_rate_fail: float = Field(0.05, ge=0.0, le=1.0)
    # Concept drift: ADWIN (river) on the human/model disagreement and audited-error streams.
    adwin_delta: float = Field(0.002, gt=0.0, lt=1.0)
    #: A rise ADWIN finds smaller than this (absolute, in disagreement rate) only warns.
    concept_fail_rise: float = Field(0.05, ge=0.0, le=1.0)
    #: Where a failing check takes the station (never up): humans decide every item again.
    demote_to: str = "assist"

    @field_validator("demote_to")
    @classmethod
    def _a_level(cls, v: str) -> str:
        from db.models import Level

        if v not in {level.value for level in Level}:
            raise ValueError(
                f"monitor.demote_to must be one of {[level.value for level in Level]}, got {v!r}"
            )
        return v

    @model_validator(mode="after")
    def _fail_beyond_warn(self) -> MonitorSettings:
        for warn, fail in (
            ("input_warn", "input_fail"),
            ("embedding_warn_mmd", "embedding_fail_mmd"),
            ("defect_rate_warn_sigma", "defect_rate_fail_sigma"),
            ("confidence_warn", "confidence_fail"),
            ("error_rate_warn", "error_rate_fail"),
        ):
            if getattr(self, fail) < getattr(self, warn):
                raise ValueError(
                    f"monitor.{fail} ({getattr(self, fail)}) must be at least monitor.{warn} "
                    f"({getattr(self, warn)})"
                )
        if self.embedding_fail_p > self.embedding_warn_p:
            raise ValueError("monitor.embedding_fail_p must be at most monitor.embedding_warn_p")
        if self.embedding_fail_p < 1.0 / (self.permutations + 1):
            raise ValueError(
                f"monitor.embedding_fail_p ({self.embedding_fail_p}) is below the smallest "
                f"p-value {self.permutations} permutations can give; raise monitor.permutations"
            )
        return self


class ThresholdSettings(_Section):
    """When the model may decide alone (partial / full), on calibrated confidence."""

    auto_pass: float = Field(0.98, gt=0.5, le=1.0, description="min calibrated P(ok) to auto-pass")
    auto_fail: float = Field(
        0.98, gt=0.5, le=1.0, description="min calibrated P(defect) to auto-fail"
    )
    # Per-class cap on P(class) above which an item is never auto-passed (e.g. a possible crack).
    never_pass_above: dict[str, float] = Field(default_factory=lambda: {"crack": 0.01})
    model_timeout_s: float = Field(2.0, gt=0.0, le=60.0)

    @field_validator("never_pass_above")
    @classmethod
    def _caps_are_probabilities(cls, v: dict[str, float]) -> dict[str, float]:
        for k, p in v.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"cap for {k!r} must be a probability in [0, 1], got {p}")
        return v


class GuardSettings(_Section):
    """The input guard: frames outside these bounds go to a human, never to the model alone."""

    min_brightness: float = Field(25.0, ge=0, le=255)
    max_brightness: float = Field(230.0, ge=0, le=255)
    min_sharpness: float = Field(15.0, ge=0)
    max_clipped_share: float = Field(0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> GuardSettings:
        if self.min_brightness >= self.max_brightness:
            raise ValueError(
                f"min_brightness ({self.min_brightness}) must be below max_brightness "
                f"({self.max_brightness})"
            )
        return self


_RULES = GateRules()  # the gate defaults live in review/gates.py only


class GateSettings(_Section):
    """Evidence each promotion needs (DESIGN.md "Gates"); demotion needs none. The defaults are
    review.gates.GateRules'; review/ checks the values again when it builds its rules."""

    shadow_to_assist_min_items: int = Field(_RULES.shadow_to_assist_min_items, ge=1)
    shadow_to_assist_min_days: int = Field(_RULES.shadow_to_assist_min_days, ge=1)
    shadow_to_assist_min_kappa_lower: float = Field(
        _RULES.shadow_to_assist_min_kappa_lower, ge=-1.0, le=1.0
    )
    shadow_to_assist_min_per_class: int = Field(_RULES.shadow_to_assist_min_per_class, ge=0)
    assist_to_partial_min_coverage: float = Field(
        _RULES.assist_to_partial_min_coverage, ge=0.0, le=1.0
    )
    max_escape_upper95: float = Field(_RULES.max_escape_upper95, gt=0.0, le=1.0)
    partial_to_full_min_coverage: float = Field(_RULES.partial_to_full_min_coverage, ge=0.0, le=1.0)
    partial_to_full_min_audited: int = Field(_RULES.partial_to_full_min_audited, ge=0)
    partial_to_full_max_audit_escapes: int = Field(_RULES.partial_to_full_max_audit_escapes, ge=0)
    # Per critical defect class, the most its miss rate's upper 95% bound may be at partial and
    # full, e.g. {crack = 0.02}; measured on the truth sample (review.misses).
    max_miss_upper95: dict[str, float] = Field(default_factory=dict)

    @field_validator("max_miss_upper95")
    @classmethod
    def _miss_limits_are_rates(cls, v: dict[str, float]) -> dict[str, float]:
        for k, p in v.items():
            if not 0.0 < p < 1.0:
                raise ValueError(f"miss limit for {k!r} must be a rate in (0, 1), got {p}")
        return v

    @property
    def rules(self) -> GateRules:
        return GateRules.from_mapping(self.model_dump())


class Settings(_Section):
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    database_url: str = Field("", description="empty: sqlite:///<data_dir>/station.db")
    station_name: str = Field("A1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    camera_source: str = "synthetic"
    model_path: str = Field("", description="empty: the bundled default model")
    ok_class: str = Field("ok", min_length=1)
    defect_classes: list[str] = Field(
        default_factory=lambda: ["crack", "scratch", "dent", "stain", "missing"],
        min_length=1,
        max_length=MAX_DEFECTS,  # one key each, 1-9, in the station and review windows
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    levels: LevelSettings = Field(default_factory=lambda: LevelSettings())
    thresholds: ThresholdSettings = Field(default_factory=lambda: ThresholdSettings())
    guard: GuardSettings = Field(default_factory=lambda: GuardSettings())
    gates: GateSettings = Field(default_factory=lambda: GateSettings())
    audits: AuditSettings = Field(default_factory=lambda: AuditSettings())
    lifecycle: LifecycleSettings = Field(default_factory=lambda: LifecycleSettings())
    monitor: MonitorSettings = Field(default_factory=lambda: MonitorSettings())

    @model_validator(mode="after")
    def _classes_consistent(self) -> Settings:
        if self.ok_class in self.defect_classes:
            raise ValueError(
                f"ok_class {self.ok_class!r} is also listed in defect_classes {self.defect_classes}"
            )
        if len(set(self.defect_classes)) != len(self.defect_classes):
            raise ValueError(f"defect_classes has duplicates: {self.defect_classes}")
        unknown = sorted(set(self.thresholds.never_pass_above) - set(self.defect_classes))
        if unknown:
            # A typo here would silently drop a safety cap ("never auto-pass a possible crack").
            raise ValueError(
                f"thresholds.never_pass_above names {unknown}, which are not defect classes "
                f"(expected some of {self.defect_classes})"
            )
        unknown = sorted(set(self.gates.max_miss_upper95) - set(self.defect_classes))
        if unknown:  # a typo would silently drop a per-class gate condition
            raise ValueError(
                f"gates.max_miss_upper95 names {unknown}, which are not defect classes "
                f"(expected some of {self.defect_classes})"
            )
        return self

    @property
    def labels(self) -> LabelSet:
        """The label vocabulary every window, record and report uses."""
        return LabelSet.of(self.ok_class, self.defect_classes)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'station.db'}"

    @property
    def files_dir(self) -> Path:
        """Where the files that belong with the database live (images, the decision spool):
        beside a SQLite file, so `--db` elsewhere keeps them together; data_dir for a server."""
        from db.engine import sqlite_path  # settings load before any database is touched

        path = sqlite_path(self.effective_database_url)
        return path.parent if path is not None else self.data_dir

    @property
    def image_dir(self) -> Path:
        return self.files_dir / "images"


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


# --------------------------------------------------------------------------- loading


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and (_is_section(key) or key not in _known_keys()):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_section(dotted: str) -> bool:
    field = Settings.model_fields.get(dotted)
    return (
        field is not None
        and isinstance(field.annotation, type)
        and issubclass(field.annotation, BaseModel)
    )


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for name, field in Settings.model_fields.items():
        if _is_section(name):
            assert isinstance(field.annotation, type)
            keys.update(f"{name}.{sub}" for sub in field.annotation.model_fields)  # type: ignore[attr-defined]
        else:
            keys.add(name)
    return keys


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def _suggest(key: str, known: set[str], *, env: bool = False) -> str:
    """'; did you mean X?' for a near miss, else the list of sections and top-level keys."""

    def show(k: str) -> str:
        return ENV_PREFIX + k.upper().replace(".", ENV_NESTED) if env else k

    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {show(close[0])}?"
    return f"; expected one of {', '.join(show(k) for k in sorted(known))} (`station config show` lists them)"


#: A settings file is a few kilobytes; anything far larger is not one (or is /dev/zero).
MAX_CONFIG_BYTES = 1 << 20


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            raise SettingsError(f"config file {path} is not a regular file; expected a TOML file")
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as e:
        raise SettingsError(f"config file {path} does not exist") from e
    except IsADirectoryError as e:
        raise SettingsError(f"config file {path} is a directory; expected a TOML file") from e
    except OSError as e:  # /proc/self/mem, a device, a file that cannot be read
        raise SettingsError(f"config file {path} cannot be read ({e.strerror or e})") from e
    if len(data) > MAX_CONFIG_BYTES:
        raise SettingsError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; expected a "
            "small TOML file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SettingsError(
            f"config file {path} is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r}); "
            "expected a TOML file saved as UTF-8"
        ) from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path} is not valid TOML: {e}") from e


def _read_env(environ: dict[str, str]) -> dict[str, tuple[Any, str]]:
    """STATION_FOO and STATION_SECTION__KEY; values that look like JSON lists/dicts are parsed."""
    known = _known_keys()
    out: dict[str, tuple[Any, str]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        key = name[len(ENV_PREFIX) :].lower().replace(ENV_NESTED, ".")
        if key not in known:
            raise SettingsError(
                f"unknown setting {name} in the environment{_suggest(key, known, env=True)}"
            )
        value: Any = raw
        if raw.strip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as e:
                raise SettingsError(f"{name}={raw!r} is not valid JSON: {e.msg}") from e
        out[key] = (value, f"env {name}")
    return out


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Build the effective settings and, for each key, where its value came from.

    `config_file` None means the user config file if it exists; an explicit path must exist.
    `overrides` are command-line flags, as dotted keys (None values are ignored).
    """
    environ = dict(os.environ if environ is None else environ)
    if config_file is None and "STATION_CONFIG" in environ:
        config_file = Path(environ["STATION_CONFIG"])
    environ.pop("STATION_CONFIG", None)
    layers: dict[str, tuple[Any, str]] = {}

    path = config_file if config_file is not None else default_config_path()
    if config_file is not None or path.exists():
        data = _read_toml(path)
        flat = _flatten(data)
        known = _known_keys()
        for key, value in flat.items():
            if key not in known:
                raise SettingsError(f"unknown setting {key!r} in {path}{_suggest(key, known)}")
            layers[key] = (value, f"file {path}")

    layers.update(_read_env(environ))
    for key, value in (overrides or {}).items():
        if value is not None:
            layers[key] = (value, "flag")

    try:
        settings = Settings.model_validate(_nest({k: v for k, (v, _) in layers.items()}))
    except ValidationError as e:
        raise SettingsError(_describe(e, layers)) from e

    sources = {key: layers[key][1] if key in layers else "default" for key in sorted(_known_keys())}
    return settings, sources


def _describe(e: ValidationError, layers: dict[str, tuple[Any, str]]) -> str:
    problems = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not key:  # a rule across several keys: the message names them
            problems.append(message)
            continue
        top = key.split(".")[0] if key.split(".")[0] in layers else key
        origin = layers.get(key, layers.get(top, (None, "default")))[1]
        problems.append(f"{key} = {err.get('input')!r} (from {origin}): {message}")
    return "bad setting: " + "; ".join(problems)


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url  # malformed: shown as given, the database layer explains what is wrong


def effective_items(settings: Settings) -> dict[str, Any]:
    """Dotted key -> value, with the derived defaults (database URL) filled in for display."""
    flat = _flatten(settings.model_dump(mode="json"))
    flat["database_url"] = _hide_password(settings.effective_database_url)
    return dict(sorted(flat.items()))
