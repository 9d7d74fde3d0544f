"""Watching the model after it has taken over: Wald's sequential probability ratio test on the
audits of its auto-passes (partial and full automation).

Each audited auto-pass is an escape (the blind auditor found a defect) or not. The test weighs
"the escape rate is p1" (too many: demote) against "it is p0" (acceptable) after every audit:
it rejects (demotes) when the log likelihood ratio reaches log((1 - beta) / alpha), and when it
falls to log(beta / (1 - alpha)) the rate is accepted as p0 and the test starts again (a repeated
SPRT: it keeps watching the line instead of stopping). alpha is the chance a station whose rate
is p0 is demoted within one test, beta the chance one at p1 is accepted in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.engine import Connection

from db.models import HumanDecision, Item, LevelChange, Prediction, Slot


class Verdict(StrEnum):
    continue_ = "continue"
    accept = "accept"  # the rate looks like p0: the test starts again
    reject = "reject"  # the rate looks like p1: demote


@dataclass
class AuditSPRT:
    p0: float
    p1: float
    alpha: float
    beta: float
    llr: float = 0.0
    audits: int = 0  # in the test now running
    escapes: int = 0
    history: list[Verdict] = field(default_factory=list)  # verdicts of finished tests

    def __post_init__(self) -> None:
        if not 0.0 < self.p0 < self.p1 < 1.0:
            raise ValueError(f"expected 0 < p0 < p1 < 1, got p0={self.p0}, p1={self.p1}")
        for name in ("alpha", "beta"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} = {getattr(self, name)}: expected in (0, 0.5)")

    @property
    def upper(self) -> float:
        return math.log((1.0 - self.beta) / self.alpha)

    @property
    def lower(self) -> float:
        return math.log(self.beta / (1.0 - self.alpha))

    def update(self, escaped: bool) -> Verdict:
        """One audited auto-pass."""
        self.audits += 1
        self.escapes += escaped
        if escaped:
            self.llr += math.log(self.p1 / self.p0)
        else:
            self.llr += math.log((1.0 - self.p1) / (1.0 - self.p0))
        if self.llr >= self.upper:
            return self._finish(Verdict.reject)
        if self.llr <= self.lower:
            return self._finish(Verdict.accept)
        return Verdict.continue_

    def describe(self) -> str:
        return (
            f"{self.escapes} escapes in {self.audits} audited auto-passes (SPRT p0={self.p0}, "
            f"p1={self.p1}, alpha={self.alpha}, beta={self.beta})"
        )

    def _finish(self, verdict: Verdict) -> Verdict:
        self.history.append(verdict)
        if verdict is Verdict.accept:
            self.llr, self.audits, self.escapes = 0.0, 0, 0
        return verdict


def audit_outcomes(conn: Connection, station_id: int, ok: str) -> list[bool]:
    """The audited auto-passes of the station since its last level change, oldest first: True
    where the auditor found a defect. What a station replays into its SPRT when it starts, so a
    restart does not wipe the evidence against the model."""
    lc = LevelChange.__table__  # type: ignore[attr-defined]
    hd = HumanDecision.__table__  # type: ignore[attr-defined]
    item = Item.__table__  # type: ignore[attr-defined]
    pred = Prediction.__table__  # type: ignore[attr-defined]
    since = conn.execute(
        select(lc.c.changed_at)
        .where(lc.c.station_id == station_id)
        .order_by(lc.c.id.desc())
        .limit(1)
    ).scalar()
    q = (
        select(hd.c.label)
        .select_from(hd.join(item, item.c.id == hd.c.item_id))
        .where(
            item.c.station_id == station_id,
            hd.c.audit.is_(True),
            hd.c.supersedes_id.is_(None),
            hd.c.item_id.in_(
                select(pred.c.item_id).where(pred.c.slot == Slot.champion.name, pred.c.label == ok)
            ),
        )
        .order_by(hd.c.id)
    )
    if since is not None:
        q = q.where(hd.c.decided_at >= since)
    return [str(label) != ok for (label,) in conn.execute(q)]


def replay(test: AuditSPRT, outcomes: Iterable[bool]) -> Verdict:
    """Feed recorded outcomes into a fresh test; the last verdict (reject: demote now)."""
    verdict = Verdict.continue_
    for escaped in outcomes:
        verdict = test.update(escaped)
        if verdict is Verdict.reject:
            break
    return verdict
