"""Miss rates per defect class for the rule in force, against the truth where it is known.

A miss of class c: a phone truly of class c that the rule auto-passes. The items fall in two
strata by the model's own label:
- the model passes (labels ok): the truth is known only for the truth sample (drawn at random,
  adjudicated). Each adjudicated item stands for N_pass / n_checked of the stratum, so the
  misses of class c are estimated as N_pass * k_c / n_checked, where k_c counts the adjudicated
  ones of class c that the rule auto-passed.
- the model fails (labels a defect): never a miss; their class is the reference's (the
  adjudication, else the inspector), counted in full.

The rate is misses / (misses + the class's items the rule did not pass), and its upper bound
puts the anytime-valid upper bound of k_c / n_checked in place of the estimate (the rate grows
with it): valid however often it is checked, as the escape bound is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from review.stats import anytime_upper

REFERENCE = (
    "misses among the model's passes from the truth sample (scaled to the stratum), the model's "
    "fails by the adjudication or else the inspector; anytime-valid one-sided 95% bound"
)


@dataclass(frozen=True)
class ClassTally:
    """Counts for one class among the rule's uniform items."""

    truth_misses: int = 0  # adjudicated truth-sample items of the class the rule auto-passed
    truth_caught: int = 0  # adjudicated truth-sample items of the class the rule did not pass
    failed: int = 0  # items the model labelled a defect whose reference is the class


def miss_rates(
    tallies: Mapping[str, ClassTally],
    *,
    stratum_items: int,
    checked: int,
    classes: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per class: the estimated miss rate and its upper bound. `stratum_items`: uniform items the
    model labelled ok; `checked`: how many of them were adjudicated from the truth sample."""
    out: dict[str, dict[str, Any]] = {}
    scale = stratum_items / checked if checked else None
    for c in classes:
        t = tallies.get(c, ClassTally())
        entry: dict[str, Any] = {
            "truth_misses": t.truth_misses,
            "truth_caught": t.truth_caught,
            "failed_by_model": t.failed,
            "checked": checked,
            "rate": None,
            "upper95": None,
            "reference": REFERENCE,
        }
        if scale is not None:
            misses = scale * t.truth_misses
            caught = scale * t.truth_caught + t.failed
            entry["rate"] = misses / (misses + caught) if misses + caught > 0 else None
            bound = anytime_upper(t.truth_misses, checked)
            if bound is not None:
                worst = stratum_items * bound
                entry["upper95"] = worst / (worst + caught) if worst + caught > 0 else None
        out[c] = entry
    return out


def tally(
    rows: Iterable[tuple[str, bool, str | None, str | None]],
) -> tuple[dict[str, ClassTally], int, int]:
    """From (model label stratum: "pass"/"fail", rule auto-passed, truth-sample label or None,
    reference label or None) per item: the tallies, the pass-stratum size and how many of it
    were checked."""
    counts: dict[str, list[int]] = {}
    stratum = checked = 0
    for stratum_name, auto_passed, truth, reference in rows:
        if stratum_name == "pass":
            stratum += 1
            if truth is None:
                continue
            checked += 1
            c = counts.setdefault(truth, [0, 0, 0])
            c[0 if auto_passed else 1] += 1
        elif reference is not None:
            counts.setdefault(reference, [0, 0, 0])[2] += 1
    return (
        {k: ClassTally(v[0], v[1], v[2]) for k, v in counts.items()},
        stratum,
        checked,
    )
