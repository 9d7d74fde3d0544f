"""The system's own changes of role, each recorded with its numbers (operator: none):

    canary_step      judge the canary's current step (review.canary) and apply it: Failed puts
                     its weight to 0 (it runs on, hidden), Successful ramps it to the next step,
                     and past the last one below 100 makes it the champion (the old one becomes
                     previous; the level is settled on its own evidence); Inconclusive holds
    watch_champion   a champion with a previous one is rolled back when its errors or timeouts
                     or its latency p95 breach the limits ([lifecycle])

A running station (and `station simulate`) calls both every `lifecycle.check_every_items` items
(StationCore); `station model compare` shows the judgement without applying it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.models import LevelChange, Prediction, Slot
from db.repo import deploy
from review.audits import AUDIT_REJECT
from review.canary import Outcome, compare, health_breach, judge_step
from station.registry import crown, end_roles, lineup, rollback, settle_level, spec_of, station_row
from station.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    station: str
    canary: str
    champion: str
    weight: float
    outcome: Outcome
    reason: str
    numbers: dict[str, Any]
    next_weight: float | None  # after a successful step: the next weight (100: champion)
    applied: bool
    level_change: LevelChange | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "station": self.station,
            "canary": self.canary,
            "champion": self.champion,
            "weight": self.weight,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "next_weight": self.next_weight,
            "applied": self.applied,
            "numbers": self.numbers,
        }


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def canary_step(
    engine: Engine,
    settings: Settings,
    *,
    station_name: str | None = None,
    apply: bool = True,
    now: datetime | None = None,
) -> StepResult | None:
    """Judge the canary's current step and (with `apply`) record what follows; None when the
    station runs no canary."""
    life = settings.lifecycle
    with session_scope(engine) as s:
        station = station_row(s, settings, station_name)
        assert station.id is not None
        roles = lineup(s, station.id)
        canary, champion = roles.challenger, roles.champion
        if roles.weight <= 0 or canary is None or champion is None or roles.canary_since is None:
            return None
        station_id, name = station.id, station.name
        step_ids = roles.deployment_ids
        since = _aware(roles.canary_since)
        assert canary.id is not None and champion.id is not None
        canary_id, champion_id = canary.id, champion.id
        canary_spec, champion_spec = spec_of(canary), spec_of(champion)
    minutes = ((now or datetime.now(UTC)) - since).total_seconds() / 60.0
    with engine.connect() as conn:
        cmp = compare(
            conn,
            station_id=station_id,
            new=canary_id,
            old=champion_id,
            ok=settings.ok_class,
            since=since,
        )
        conn.rollback()
    verdict = judge_step(cmp, minutes, life.canary_rules)
    weight = roles.weight
    later = [w for w in life.canary_steps if w > weight + 1e-9]
    next_weight = (later[0] if later else 100.0) if verdict.outcome is Outcome.successful else None
    result = StepResult(
        name,
        canary_spec,
        champion_spec,
        weight,
        verdict.outcome,
        verdict.reason,
        verdict.numbers,
        next_weight,
        applied=False,
    )
    if not apply or verdict.outcome is Outcome.inconclusive:
        return result
    promoted = False
    with session_scope(engine) as s:
        station = station_row(s, settings, name)
        assert station.id is not None
        now_roles = lineup(s, station.id)
        if now_roles.deployment_ids != step_ids:
            log.info("the lineup changed while the canary step was judged: not applied")
            return result
        assert now_roles.challenger is not None and now_roles.champion is not None
        if verdict.outcome is Outcome.failed:
            end_roles(s, station.id, (Slot.canary,))
            deploy(
                session=s,
                station=station,
                model=now_roles.challenger,
                slot=Slot.challenger,
                traffic_share=0.0,
                reason=f"canary step at {weight:g}% failed: {verdict.reason}; weight 0, hidden",
            )
        elif next_weight is not None and next_weight < 100.0:
            deploy(
                session=s,
                station=station,
                model=now_roles.challenger,
                slot=Slot.canary,
                traffic_share=next_weight / 100.0,
                reason=f"canary step at {weight:g}% successful: {verdict.reason}; "
                f"ramped to {next_weight:g}%",
            )
        else:
            crown(
                s,
                station,
                now_roles,
                now_roles.challenger,
                operator_id=None,
                reason=f"canary step at {weight:g}% successful: {verdict.reason}; champion",
                replaced_reason=f"replaced by {canary_spec}, whose canary ramp ended successfully",
            )
            promoted = True
    change = (
        settle_level(engine, settings, name, why=f"new champion {canary_spec}")
        if promoted
        else None
    )
    return replace(result, applied=True, level_change=change)


@dataclass(frozen=True)
class ChampionHealth:
    champion: str
    answers: int
    errors: int
    latency_p95_ms: float | None
    breach: str | None  # what tripped, in words; None: healthy


#: How many of the champion's latest answers its health is judged on.
HEALTH_WINDOW = 200


def champion_health(engine: Engine, settings: Settings, station_id: int) -> ChampionHealth | None:
    """The champion's health since it became champion: a reject of the audit SPRT on its
    auto-passes (review.audits), or its errors, timeouts and latency over its latest answers;
    None when it has no previous one to roll back to."""
    with session_scope(engine) as s:
        roles = lineup(s, station_id)
        champ = roles.champion
        if champ is None or roles.previous is None or roles.champion_since is None:
            return None
        spec = spec_of(champ)
        champ_id = champ.id
        since = roles.champion_since
    table = Prediction.__table__  # type: ignore[attr-defined]
    query = (
        sa_select(table.c.error, table.c.label, table.c.latency_ms)
        .where(
            table.c.model_version_id == champ_id,
            table.c.slot == Slot.champion.name,
            table.c.created_at >= since,
        )
        .order_by(table.c.id.desc())
        .limit(HEALTH_WINDOW)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    answers = len(rows)
    errors = sum(1 for e, label, _ in rows if e is not None or label is None)
    lat = [float(ms) for _, _, ms in rows if ms is not None]
    p95 = float(np.percentile(lat, 95)) if lat else None
    breach = _audits_rejected(engine, station_id, since) or health_breach(
        answers, errors, p95, settings.lifecycle.canary_rules, of=f"its last {answers} answers"
    )
    return ChampionHealth(spec, answers, errors, p95, breach)


def _audits_rejected(engine: Engine, station_id: int, since: datetime) -> str | None:
    """The audit SPRT rejected (and demoted the station) since the champion took over."""
    table = LevelChange.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.execute(
            sa_select(table.c.reason)
            .where(
                table.c.station_id == station_id,
                table.c.automatic.is_(True),
                table.c.changed_at >= since,
                table.c.reason.like(f"{AUDIT_REJECT}%"),
            )
            .order_by(table.c.id.desc())
            .limit(1)
        ).first()
    return str(row[0]) if row is not None else None


def watch_champion(engine: Engine, settings: Settings, station_id: int) -> str | None:
    """Roll the champion back to the previous one when its health breaches a limit; returns
    what was recorded, or None."""
    health = champion_health(engine, settings, station_id)
    if health is None or health.breach is None:
        return None
    with session_scope(engine) as s:
        from db.models import Station

        station = s.get(Station, station_id)
        assert station is not None
        name = station.name
    reason = f"automatic: {health.champion} {health.breach}"
    change = rollback(engine, settings, operator=None, reason=reason, station_name=name)
    log.warning("rolled back to %s: %s", change.spec, reason)
    return f"rolled back to {change.spec}: {reason}"
