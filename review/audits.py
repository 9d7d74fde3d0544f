"""Watching the model after it has taken over: Wald's sequential probability ratio test on the
audits of its auto-passes (partial and full automation).

Each audited auto-pass is an escape or not: not when the blind auditor passed it, and, when the
auditor flagged it, as its adjudication says (`audit_outcomes`). The test weighs
"the escape rate is p1" (too many: demote) against "it is p0" (acceptable) after every audit:
it rejects (demotes) when the log likelihood ratio reaches log((1 - beta) / alpha), and when it
falls to log(beta / (1 - alpha)) the rate is accepted as p0 and the test starts again (a repeated
SPRT: it keeps watching the line instead of stopping). alpha is the chance a station whose rate
is p0 is demoted within one test, beta the chance one at p1 is accepted in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from db.models import Adjudication, HumanDecision, Item, Level, LevelChange, Prediction, Slot
from db.repo import record_automatic_demotion


class Verdict(StrEnum):
    continue_ = "continue"
    accept = "accept"  # the rate looks like p0: the test starts again
    reject = "reject"  # the rate looks like p1: demote


@dataclass
class AuditSPRT:
    # Defaults: station.settings.AuditSettings'.
    p0: float = 0.005
    p1: float = 0.03
    alpha: float = 0.01
    beta: float = 0.10
    llr: float = 0.0
    audits: int = 0  # in the test now running
    escapes: int = 0

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
            return Verdict.reject
        if self.llr <= self.lower:  # the rate looks like p0: a fresh test watches on
            self.llr, self.audits, self.escapes = 0.0, 0, 0
            return Verdict.accept
        return Verdict.continue_

    def describe(self) -> str:
        return (
            f"{self.escapes} escapes in {self.audits} audited auto-passes (SPRT p0={self.p0}, "
            f"p1={self.p1}, alpha={self.alpha}, beta={self.beta})"
        )


def audit_outcomes(conn: Connection, station_id: int, ok: str) -> list[bool]:
    """The final outcomes of the station's audited auto-passes since its last level change,
    oldest first: True for an escape.

    An audit the auditor passed is final (not an escape). One the auditor flagged is queued for
    adjudication and counts only once adjudicated, as the adjudication says: an auditor's false
    alarm (a good phone called defective, 5% of the time for a 95% inspector) must not demote a
    model that made no mistake. Flagged audits still waiting are left out."""
    lc = LevelChange.__table__  # type: ignore[attr-defined]
    hd = HumanDecision.__table__  # type: ignore[attr-defined]
    item = Item.__table__  # type: ignore[attr-defined]
    pred = Prediction.__table__  # type: ignore[attr-defined]
    adj = Adjudication.__table__  # type: ignore[attr-defined]
    since = conn.execute(
        select(lc.c.changed_at)
        .where(lc.c.station_id == station_id)
        .order_by(lc.c.id.desc())
        .limit(1)
    ).scalar()
    latest_adj = (
        select(adj.c.label)
        .where(adj.c.item_id == hd.c.item_id)
        .order_by(adj.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    q = (
        select(hd.c.label, latest_adj)
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
    out: list[bool] = []
    for auditor, adjudicated in conn.execute(q):
        if adjudicated is not None:
            out.append(str(adjudicated) != ok)
        elif str(auditor) == ok:
            out.append(False)
    return out


def replay(test: AuditSPRT, outcomes: Iterable[bool]) -> Verdict:
    """Feed outcomes into a fresh test; the verdict that stopped it (reject: demote now)."""
    verdict = Verdict.continue_
    for escaped in outcomes:
        verdict = test.update(escaped)
        if verdict is Verdict.reject:
            break
    return verdict


#: How a reject's automatic demotion begins its cause (station/ramp.py rolls a champion back on it).
AUDIT_REJECT = "audits show too many escapes"


def demote_on_audits(
    session: Session, station_id: int, ok: str, test: AuditSPRT
) -> LevelChange | None:
    """After an audit's outcome became final (its adjudication): a reject steps a station at
    partial or full down to assist, recorded as automatic. A running station follows within a
    second (its level watch)."""
    if replay(test, audit_outcomes(session.connection(), station_id, ok)) is not Verdict.reject:
        return None
    cause = f"{AUDIT_REJECT}: {test.describe()}"
    return record_automatic_demotion(
        session=session, station_id=station_id, cause=cause, to_level=Level.assist
    )
