"""A row's hash in the audit chain never changes with the code that computes it: entries written
by earlier versions must keep verifying. The digests below were computed by the code of
0cba1c9 (before row_hash took its faster path for UTC times and plain values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from db.chain import row_hash
from db.models import DecidedBy, Level

ROWS = [
    (
        {
            "id": 7,
            "item_id": 3,
            "label": "ok",
            "decided_at": datetime(2026, 12, 2, 8, 30, 15, 123456, tzinfo=UTC),
            "decision_ms": 900.0,
            "blind": False,
            "defect_types": ["scratch"],
            "supersedes_id": None,
        },
        "b617906ef6ec45ecd85cdd08b368f79d44c2c40a1569fd2cdfa6670541e23848",
    ),
    (
        {
            "id": 8,
            "final_label": "scratch",
            "decided_by": DecidedBy.model,
            "level": Level.partial,
            "created_at": datetime(2026, 12, 2, 8, 30, 15, tzinfo=UTC),  # no microseconds
            "p": 0.1,
        },
        "94077741138230248d84bdc8096f89e302c69babc8f50a768f90a72ac27071ff",
    ),
    (
        {
            "id": 9,
            "at": datetime(2026, 12, 2, 10, 30, 15, 5, tzinfo=timezone(timedelta(hours=2))),
            "naive": datetime(2026, 1, 1, 0, 0),
            "old": datetime(999, 1, 1, tzinfo=UTC),
            "stats": {"b": 1.5, "a": [1, 2]},
        },
        "b080ebe94d67cf1fa1f132ad999d35e3c52f7b9ebd8983591e8fc92e6bdd1334",
    ),
]


@pytest.mark.parametrize(("row", "digest"), ROWS)
def test_a_rows_hash_is_what_earlier_versions_computed(row, digest) -> None:
    assert row_hash(row) == digest
    assert row_hash(dict(reversed(row.items()))) == digest  # the order of the columns aside
