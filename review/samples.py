"""The shadow -> assist gate's evaluation sample: fixed before anyone looks at the agreement.

A kappa bound recomputed on all the evidence every time somebody checks the gate passes wrongly
more often the more often it is checked (1.0% at one look, 4.6% over 26 looks, measured). So the
gate judges agreement on one sample, fixed by a stopping rule that never looks at agreement:
the champion's uniform paired items in the order they were captured, up to the first item at
which there are `min_items` of them over `min_days` days with every class seen `min_per_class`
times (by the reference label). Until then the gate fails for want of evidence; from then on
every look sees the same items and reaches the same decision, at the interval's nominal error.
Only a new model version (a new champion) starts a new sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from review import stats as S


@dataclass(frozen=True)
class SampleRow:
    item_id: int
    day: str
    human: str
    model: str
    reference: str


@dataclass
class KappaSample:
    labels: Sequence[str]
    min_items: int
    min_days: int
    min_per_class: int
    n: int = 0
    through_item: int | None = None
    per_day: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, int] = field(default_factory=dict)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (human, model) -> n

    @property
    def complete(self) -> bool:
        return (
            self.n >= self.min_items
            and len(self.per_day) >= self.min_days
            and all(self.per_class.get(c, 0) >= self.min_per_class for c in self.labels)
        )

    def add(self, row: SampleRow) -> None:
        self.n += 1
        self.through_item = row.item_id
        self.per_day[row.day] = self.per_day.get(row.day, 0) + 1
        self.per_class[row.reference] = self.per_class.get(row.reference, 0) + 1
        self.pairs[(row.human, row.model)] += 1

    def kappa(self, ok: str) -> S.Kappa:
        _, counts = S.matrix_from_counts(
            [(h, m, n) for (h, m), n in self.pairs.items()], self.labels, ok
        )
        return S.cohens_kappa(counts)


def kappa_sample(
    rows: Iterable[SampleRow],
    labels: Sequence[str],
    *,
    min_items: int,
    min_days: int,
    min_per_class: int,
) -> KappaSample:
    """The evaluation sample from `rows` (uniform paired items, oldest first): it stops at the
    first item that completes it and reads no further."""
    sample = KappaSample(list(labels), min_items, min_days, min_per_class)
    sample.per_class = dict.fromkeys(labels, 0)
    for row in rows:
        sample.add(row)
        if sample.complete:
            break
    return sample
