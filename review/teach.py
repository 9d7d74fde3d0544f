"""An adjudication queue that teaches: besides the truth sample (a random draw, the only
adjudications that estimate the line's escape rate), the items whose verified labels would help
the next model most.

Why an item is chosen (recorded as the request's reason, `teach:<why>`, so that no estimate ever
mistakes these picks for a random draw):
- low_confidence: the model's calibrated confidence in its own label is lowest (the decision
  boundary, where a label moves a retrained model most);
- disagreement: inspector and model differ (one of them is wrong);
- rare_class: the human or model label is a class with the fewest verified labels so far;
- drifted: captured while a drift alarm is open (the world the next model must learn).
Only paired items not adjudicated and not already queued are candidates; the quota is shared
between the reasons that have candidates, an item counted once (under its first reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from db.models import AdjudicationRequest, Alarm, ChosenFor, Station
from review import query as Q

REASONS = ("low_confidence", "disagreement", "rare_class", "drifted")
_req = AdjudicationRequest.__table__  # type: ignore[attr-defined]
_alarm = Alarm.__table__  # type: ignore[attr-defined]
_station = Station.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Pick:
    item_id: int
    reason: str  # one of REASONS

    @property
    def request_reason(self) -> str:
        return f"{ChosenFor.teach.value}:{self.reason}"


def rare_classes(conn: Connection, station: str, classes: Sequence[str]) -> list[str]:
    """The classes with the fewest verified labels (adjudicated or known truth) at the station:
    those at or below the median count, fewest first."""
    f = Q.frame(
        conn,
        Q.ReportFilters(station=station),
        columns=["item_id", "adjudicated_label", "ground_truth"],
    )
    verified = func.coalesce(f.c.adjudicated_label, f.c.ground_truth)
    counts = dict.fromkeys(classes, 0)
    for label, n in conn.execute(
        select(verified, func.count()).where(verified.is_not(None)).group_by(verified)
    ):
        if label in counts:
            counts[label] = int(n)
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    median = ordered[len(ordered) // 2][1]
    return [c for c, n in ordered if n <= median]


def _drift_since(conn: Connection, station: str) -> object | None:
    q = (
        select(func.min(_alarm.c.opened_at))
        .select_from(_alarm.join(_station, _station.c.id == _alarm.c.station_id))
        .where(_station.c.name == station, _alarm.c.closed_at.is_(None))
    )
    return conn.execute(q).scalar()


def teaching_picks(conn: Connection, station: str, classes: Sequence[str], n: int) -> list[Pick]:
    """Up to `n` items to queue, each with the reason it was chosen."""
    f = Q.frame(conn, Q.ReportFilters(station=station))
    base = [
        f.c.paired == 1,
        f.c.adjudicated_label.is_(None),
        f.c.item_id.not_in(select(_req.c.item_id)),
    ]
    rare = rare_classes(conn, station, classes)
    since = _drift_since(conn, station)
    queries = {
        "low_confidence": select(f.c.item_id)
        .where(*base, f.c.model_confidence.is_not(None))
        .order_by(f.c.model_confidence.asc(), f.c.item_id.desc()),
        "disagreement": select(f.c.item_id)
        .where(*base, f.c.human_label != f.c.model_label)
        .order_by(f.c.item_id.desc()),
        "rare_class": select(f.c.item_id)
        .where(*base, or_(f.c.human_label.in_(rare), f.c.model_label.in_(rare)))
        .order_by(f.c.item_id.desc()),
    }
    if since is not None:
        queries["drifted"] = (
            select(f.c.item_id)
            .where(and_(*base, f.c.captured_at >= since))
            .order_by(f.c.item_id.desc())
        )
    found = {why: [int(r[0]) for r in conn.execute(q.limit(n))] for why, q in queries.items()}
    picks: list[Pick] = []
    taken: set[int] = set()
    # Round robin over the reasons: each gets its share, and a reason short of candidates
    # leaves its share to the others.
    cursors = {why: 0 for why in found}
    while len(picks) < n and cursors:
        for why in list(cursors):
            ids = found[why]
            i = cursors[why]
            while i < len(ids) and ids[i] in taken:
                i += 1
            if i >= len(ids):
                del cursors[why]
                continue
            picks.append(Pick(ids[i], why))
            taken.add(ids[i])
            cursors[why] = i + 1
            if len(picks) >= n:
                break
    return picks
