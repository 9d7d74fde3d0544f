"""The label vocabulary of a station: the defect-free label, the defect types, the key that gives
each label (the same key means the same label in the station window and the review window), and
the rule that picks an item's reference label. Built from the settings by the caller (review/ may
not import station/); nothing else in the code spells a label out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement

from review.errors import LabelError

#: The key of the defect-free label; defect types take 1, 2, ... 9 in their configured order.
OK_KEY = "Space"
MAX_DEFECTS = 9


@dataclass(frozen=True)
class LabelSet:
    ok: str
    defects: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.ok or not self.defects or not all(self.defects):
            raise LabelError(
                f"a label set needs a defect-free label and at least one defect type, got ok="
                f"{self.ok!r}, defects={list(self.defects)}"
            )
        if self.ok in self.defects or len(set(self.defects)) != len(self.defects):
            raise LabelError(
                f"labels must be distinct: ok={self.ok!r}, defects={list(self.defects)}"
            )
        if len(self.defects) > MAX_DEFECTS:
            raise LabelError(
                f"{len(self.defects)} defect types: at most {MAX_DEFECTS} fit on the keys 1-9"
            )

    @classmethod
    def of(cls, ok: str, defects: Sequence[str]) -> LabelSet:
        return cls(str(ok), tuple(str(d) for d in defects))

    @property
    def all(self) -> tuple[str, ...]:
        """The defect-free label first, then the defect types in their configured order."""
        return (self.ok, *self.defects)

    def is_defect(self, label: str | None) -> bool:
        return label is not None and label != self.ok

    def defect_types(self, label: str) -> list[str]:
        """What an item decided as `label` is recorded as having: nothing when it is the
        defect-free label, else that one type."""
        return [] if label == self.ok else [label]

    def key(self, label: str) -> str:
        """The key that gives `label`, as shown on buttons: "Space", "1", "2", ..."""
        if label == self.ok:
            return OK_KEY
        return str(self.defects.index(label) + 1)

    def from_key(self, text: str) -> str | None:
        """The label a typed key gives (" " or "1".."9"), or None if the key gives none."""
        if text == " ":
            return self.ok
        if len(text) == 1 and text.isdigit() and 1 <= int(text) <= len(self.defects):
            return self.defects[int(text) - 1]
        return None

    def short(self, label: str) -> str:
        """A three-letter tag for strips of recent items."""
        return label if label == self.ok else label[:3].upper()


def reference_label(adjudicated: str | None, human: str) -> str:
    """An item's reference label: the latest adjudication where one exists, else the human's."""
    return adjudicated if adjudicated is not None else human


def reference_label_sql(adjudicated: Any, human: Any) -> ColumnElement[Any]:
    """`reference_label` as a SQL expression over the two columns."""
    return func.coalesce(adjudicated, human)
