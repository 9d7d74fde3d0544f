"""Evidence gates for promotion along the automation ladder: rules as data, results with every number.

`GateRules` carries the same fields as station.settings.GateSettings (review/ may not import
station, so the caller hands the numbers over: `station.settings.GateSettings.rules`); these are the only
defaults, the settings take theirs from here.
`evaluate_gate(from_level, to_level, evidence, rules)` returns a `GateResult` whose checks list each
rule's value, what was required and whether it passed; `numbers` holds everything behind them, ready
to store in gate_evaluation. Demotion (or staying put) always passes. A promotion over more than one
step must meet the gate of every step it skips.

Evidence is a plain mapping (see `Evidence` for the keys; `review.report.gate_evidence` builds it
from the database). A missing piece of evidence fails its check: a gate never passes on what it
does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypedDict

from db.models import Level
from review.errors import GateRuleError, UnknownLevel


@dataclass(frozen=True)
class GateRules:
    """Thresholds per transition; defaults are DESIGN.md "Gates" (same fields as GateSettings)."""

    shadow_to_assist_min_items: int = 500
    shadow_to_assist_min_days: int = 2
    shadow_to_assist_min_kappa_lower: float = 0.6
    shadow_to_assist_min_per_class: int = 20
    assist_to_partial_min_coverage: float = 0.30
    max_escape_upper95: float = 0.005
    partial_to_full_min_coverage: float = 0.95
    partial_to_full_min_audited: int = 600
    partial_to_full_max_audit_escapes: int = 0
    # Per critical class, the most its miss rate's upper 95% bound may be at partial and full
    # (review.misses), e.g. {"crack": 0.02}. Empty: no per-class condition.
    max_miss_upper95: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GateRules:
        """Build from a dict (e.g. `settings.gates.model_dump()`); unknown keys are refused."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise GateRuleError(
                f"unknown gate rule(s) {', '.join(unknown)}: expected some of {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key == "max_miss_upper95":
                values[key] = _class_limits(raw)
                continue
            want = int if known[key].type in ("int", int) else float
            try:
                if isinstance(raw, bool):
                    raise TypeError
                values[key] = want(raw)
            except (TypeError, ValueError) as e:
                kind = "an integer" if want is int else "a number"
                raise GateRuleError(f"gate rule {key} = {raw!r}: expected {kind}") from e
        rules = cls(**values)
        rules.validate()
        return rules

    def validate(self) -> None:
        problems = []
        for name in ("assist_to_partial_min_coverage", "partial_to_full_min_coverage"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} = {getattr(self, name)} (expected a share in [0, 1])")
        if not 0.0 < self.max_escape_upper95 < 1.0:
            problems.append(f"max_escape_upper95 = {self.max_escape_upper95} (expected in (0, 1))")
        if not -1.0 <= self.shadow_to_assist_min_kappa_lower <= 1.0:
            problems.append(
                f"shadow_to_assist_min_kappa_lower = {self.shadow_to_assist_min_kappa_lower} "
                "(expected in [-1, 1])"
            )
        for name in (
            "shadow_to_assist_min_items",
            "shadow_to_assist_min_days",
            "shadow_to_assist_min_per_class",
            "partial_to_full_min_audited",
            "partial_to_full_max_audit_escapes",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} = {getattr(self, name)} (expected >= 0)")
        for cls, limit in self.max_miss_upper95.items():
            if not 0.0 < limit < 1.0:
                problems.append(f"max_miss_upper95[{cls}] = {limit} (expected in (0, 1))")
        if problems:
            raise GateRuleError("bad gate rules: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_miss_upper95"] = dict(self.max_miss_upper95)
        return d


def _class_limits(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise GateRuleError(
            f"gate rule max_miss_upper95 = {raw!r}: expected a table of class = rate, "
            "e.g. {crack = 0.02}"
        )
    out: dict[str, float] = {}
    for cls, limit in raw.items():
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise GateRuleError(f"gate rule max_miss_upper95[{cls}] = {limit!r}: expected a number")
        out[str(cls)] = float(limit)
    return out


class Evidence(TypedDict, total=False):
    """What the gates look at, all from unbiased items (human decided without the suggestion).

    Everything but `audited` / `audit_escapes` is estimated on the uniformly sampled ones (shadow,
    blind checks; golden samples measure inspectors only). Audits are drawn only from the model's own (high-confidence)
    decisions: pooled with the rest they would overstate coverage and understate risk.
    """

    basis: str  # the words for the items the numbers are over
    paired: int  # paired uniform unbiased items (human decision + model label)
    days: int  # distinct calendar days (UTC) with at least one of those items
    per_day: dict[str, int]  # those items per day, so a 499 + 1 split is visible
    kappa: float | None
    # Lower end of kappa's two-sided 95% interval (so a one-sided 97.5% bound: conservative).
    kappa_lower95: float | None
    per_class: dict[str, int]  # reference-label counts among them
    # The fixed evaluation sample the numbers above are over (review.samples).
    kappa_sample: dict[str, Any]
    classes: list[str]  # the classes that must each reach the per-class minimum
    # The selective-risk threshold for the target escape rate (review.stats.select_threshold).
    selective_threshold: float | None
    selective_coverage: float
    selective_escape_upper95: float | None
    selective_best_upper95: float | None  # the lowest bound the search reached, met or not
    # The approved rule in force (review.rules.judge_rule): coverage on the uniform items after
    # its holdout; escapes on its truth sample, with an anytime-valid bound.
    rule_version: str | None
    rule: dict[str, Any]
    rule_holdout_after_item: int | None
    rule_items: int
    rule_coverage: float
    rule_auto_passes: int
    rule_auto_fails: int
    rule_truth_drawn: int
    rule_truth_pending: int
    rule_truth_checked: int
    rule_escapes: int
    rule_escape_rate: float | None
    rule_escape_weighted: float | None
    rule_escape_upper95: float | None
    rule_escape_evalue: float
    rule_escape_reference: str
    rule_escape_vs_inspector: dict[str, Any]
    rule_escape_known_truth: dict[str, Any] | None
    rule_miss_by_class: dict[str, dict[str, Any]]  # review.misses.miss_rates
    # Audits (blind human checks) of auto-passed items, and escapes found among them.
    audited: int
    audit_escapes: int
    drift_alarm_open: bool | None  # None: unknown, which fails the partial -> full gate


@dataclass(frozen=True)
class Check:
    name: str
    value: Any
    required: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    from_level: str
    to_level: str
    passed: bool
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def failed_text(self) -> str:
        """The failed checks in one line, for a refusal or the record."""
        return "; ".join(
            f"{c.name} = {format_value(c.value)} (required {c.required})"
            for c in self.failed_checks
        )

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        head = f"gate {self.from_level} -> {self.to_level}: {verdict}"
        if self.note:
            head += f" ({self.note})"
        lines = [head]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.name}: {format_value(c.value)} (required {c.required})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_level": self.from_level,
            "to_level": self.to_level,
            "passed": self.passed,
            "note": self.note,
            "checks": [c.to_dict() for c in self.checks],
            "numbers": self.numbers,
            "rules": self.rules,
        }


def format_value(v: Any) -> str:
    """A check's value as a gate prints it (CLI, review window, report)."""
    if v is None:
        return "unknown"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def parse_level(name: str | Level) -> Level:
    if isinstance(name, Level):
        return name
    try:
        return Level(str(name).strip().lower())
    except ValueError:
        raise UnknownLevel(
            f"unknown automation level {name!r}: expected one of {', '.join(lv.value for lv in Level)}"
        ) from None


# --------------------------------------------------------------------------- per-step rules


def _at_least(name: str, value: Any, minimum: float) -> Check:
    ok = value is not None and value >= minimum
    return Check(name, value, f">= {minimum:g}", bool(ok))


def _at_most(name: str, value: Any, maximum: float) -> Check:
    ok = value is not None and value <= maximum
    return Check(name, value, f"<= {maximum:g}", bool(ok))


def _human_only_to_shadow(ev: Mapping[str, Any], r: GateRules) -> list[Check]:
    # Shadow changes nothing the customer sees: the model runs hidden. No evidence needed.
    return []


def _shadow_to_assist(ev: Mapping[str, Any], r: GateRules) -> list[Check]:
    checks = [
        _at_least("paired unbiased items", ev.get("paired"), r.shadow_to_assist_min_items),
        _at_least("distinct days", ev.get("days"), r.shadow_to_assist_min_days),
        _with_why(
            _at_least(
                "kappa lower 95% bound",
                ev.get("kappa_lower95"),
                r.shadow_to_assist_min_kappa_lower,
            ),
            "not measured: no paired unbiased items with two classes yet",
        ),
    ]
    per_class: Mapping[str, int] = ev.get("per_class") or {}
    classes = list(ev.get("classes") or per_class.keys())
    if not classes:
        checks.append(
            Check("items per class", None, f">= {r.shadow_to_assist_min_per_class} each", False)
        )
    for cls in classes:
        checks.append(
            _at_least(
                f"items of class {cls}",
                int(per_class.get(cls, 0)),
                r.shadow_to_assist_min_per_class,
            )
        )
    return checks


def _no_rule(ev: Mapping[str, Any]) -> str:
    """What an escape check says while no approved rule is in force: the best bound the
    evidence reaches (the threshold search of the report), so "how far off?" has an answer."""
    best = ev.get("selective_best_upper95")
    if best is None:
        return "no approved rule in force; no uniform evidence to bound an escape rate yet"
    head = f"no approved rule in force; the best bound this evidence reaches is {best:.4g}"
    threshold = ev.get("selective_threshold")
    if threshold is not None:
        cover = float(ev.get("selective_coverage") or 0.0)
        return head + f" (threshold {threshold:.3f}, {cover:.0%} coverage): fit and approve it"
    return head


def _with_why(check: Check, why: str) -> Check:
    """`check` with `why` in place of an unknown value."""
    return check if check.value is not None else replace(check, value=why)


def _escape_checks(ev: Mapping[str, Any], r: GateRules, min_coverage: float) -> list[Check]:
    """The rule the station runs, as approved (caps included), measured on uniform items: a
    gate certifies exactly that rule, never a threshold found by its own search."""
    version = ev.get("rule_version")
    in_force = version is not None
    misses: Mapping[str, Mapping[str, Any]] = ev.get("rule_miss_by_class") or {}
    why = _no_rule(ev) if not in_force else "no truth-sample item adjudicated yet"
    per_class = [
        _with_why(
            _at_most(
                f"miss rate of class {cls}, upper 95% bound (truth sample, any number of looks)",
                (misses.get(cls) or {}).get("upper95") if in_force else None,
                limit,
            ),
            "no approved rule in force" if not in_force else "no item of this class checked yet",
        )
        for cls, limit in sorted(r.max_miss_upper95.items())
    ]
    return [
        Check(
            "approved thresholds in force",
            version if in_force else "none approved",
            "an approved set (`station thresholds fit`, then `approve`)",
            in_force,
        ),
        _at_least(
            "coverage of the rule in force",
            ev.get("rule_coverage", 0.0) if in_force else 0.0,
            min_coverage,
        ),
        _with_why(
            _at_most(
                "escape rate of the rule in force, upper 95% bound on its truth sample "
                "(valid at any number of looks)",
                ev.get("rule_escape_upper95") if in_force else None,
                r.max_escape_upper95,
            ),
            why,
        ),
        *per_class,
    ]


def _assist_to_partial(ev: Mapping[str, Any], r: GateRules) -> list[Check]:
    return _escape_checks(ev, r, r.assist_to_partial_min_coverage)


def _partial_to_full(ev: Mapping[str, Any], r: GateRules) -> list[Check]:
    drift = ev.get("drift_alarm_open")
    return [
        *_escape_checks(ev, r, r.partial_to_full_min_coverage),
        _at_least("audited auto-passes", ev.get("audited"), r.partial_to_full_min_audited),
        _at_most(
            "escapes found by audits", ev.get("audit_escapes"), r.partial_to_full_max_audit_escapes
        ),
        _with_why(
            Check("no open drift alarm", drift, "False (known, and no alarm open)", drift is False),
            "unknown: no drift check of this station on record (`station monitor check`)",
        ),
    ]


STEPS: dict[tuple[Level, Level], Callable[[Mapping[str, Any], GateRules], list[Check]]] = {
    (Level.human_only, Level.shadow): _human_only_to_shadow,
    (Level.shadow, Level.assist): _shadow_to_assist,
    (Level.assist, Level.partial): _assist_to_partial,
    (Level.partial, Level.full): _partial_to_full,
}


def evaluate_gate(
    from_level: str | Level,
    to_level: str | Level,
    evidence: Mapping[str, Any],
    rules: GateRules | None = None,
) -> GateResult:
    """Decide whether `from_level -> to_level` may happen on this evidence."""
    src, dst = parse_level(from_level), parse_level(to_level)
    rules = rules or GateRules()
    numbers = {k: evidence[k] for k in sorted(evidence)}
    if dst.rank <= src.rank:
        note = "demotion needs no evidence" if dst.rank < src.rank else "no change of level"
        return GateResult(src.value, dst.value, True, [], numbers, rules.to_dict(), note)
    ladder = list(Level)
    checks: list[Check] = []
    for a, b in zip(ladder[src.rank : dst.rank], ladder[src.rank + 1 : dst.rank + 1], strict=True):
        step = STEPS[(a, b)]
        prefix = f"{a.value}->{b.value}: " if dst.rank - src.rank > 1 else ""
        checks.extend(
            Check(prefix + c.name, c.value, c.required, c.passed) for c in step(evidence, rules)
        )
    passed = all(c.passed for c in checks)
    return GateResult(src.value, dst.value, passed, checks, numbers, rules.to_dict())
