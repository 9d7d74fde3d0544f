"""The champion's watch: a champion with a previous one is rolled back by the system when its
errors or timeouts, its latency or the audit SPRT say so, recorded with the numbers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from db.engine import session_scope
from db.models import (
    DecidedBy,
    Disposition,
    Item,
    Level,
    LevelChange,
    ModelVersion,
    Prediction,
    Role,
    Slot,
)
from db.repo import add_operator, get_or_create_station, record_inspection
from review.audits import AUDIT_REJECT
from station.auth import hash_secret
from station.ramp import watch_champion
from station.registry import deploy_version, history, register_artifact
from station.settings import load_settings


@pytest.fixture
def line(engine, db_url, artifacts):
    """Station A1: v3 was champion, v4 is now, v3 previous."""
    settings = load_settings(overrides={"database_url": db_url})[0]
    with session_scope(engine) as s:
        eve = add_operator(session=s, name="eve", role=Role.engineer, secret_hash=hash_secret("e"))
        station_id = get_or_create_station(session=s, name="A1").id
    for key in ("v3", "v4"):
        register_artifact(engine, settings, artifacts[key], operator=eve)
    for spec in ("synthetic-line:3", "synthetic-line:4"):
        deploy_version(engine, settings, spec, "champion", operator=eve, reason="r")
    return settings, station_id


def answers(engine, station_id: int, n: int, *, errors: int = 0, latency_ms: float = 20.0):
    with session_scope(engine) as s:
        v4 = s.exec(select(ModelVersion).where(ModelVersion.version == "4")).one().id
        for i in range(n):
            bad = i < errors
            record_inspection(
                session=s,
                item=Item(station_id=station_id, image_sha256=f"{i:064x}"),
                predictions=[
                    Prediction(
                        model_version_id=v4,
                        slot=Slot.champion,
                        label=None if bad else "ok",
                        error="model timed out after 2 s" if bad else None,
                        latency_ms=latency_ms,
                    )
                ],
                disposition=Disposition(
                    final_label="ok", decided_by=DecidedBy.human, level=Level.shadow
                ),
            )


def champion_now(engine, station_id) -> tuple[str, str, str]:
    with session_scope(engine) as s:
        last = history(s, station_id)[-1]
    return last["version"], last["by"], last["reason"]


def test_a_healthy_champion_stays(engine, line):
    settings, station_id = line
    answers(engine, station_id, 40, errors=0)
    assert watch_champion(engine, settings, station_id) is None
    assert champion_now(engine, station_id)[0] == "synthetic-line:4"


def test_errors_over_the_limit_roll_the_champion_back(engine, line):
    settings, station_id = line
    answers(engine, station_id, 40, errors=4)  # 10% > 2%
    said = watch_champion(engine, settings, station_id)
    assert said is not None and said.startswith("rolled back to synthetic-line:3")
    version, by, reason = champion_now(engine, station_id)
    assert (version, by) == ("synthetic-line:3", "system")
    assert "errors or timeouts on 4 of its last 40 answers (10.0%, limit 2.0%)" in reason
    assert watch_champion(engine, settings, station_id) is None  # v4 is previous now


def test_latency_over_budget_rolls_back_but_too_few_answers_judge_nothing(engine, line):
    settings, station_id = line
    answers(engine, station_id, 10, latency_ms=5000.0)
    assert watch_champion(engine, settings, station_id) is None  # 10 < min_answers
    answers(engine, station_id, 20, latency_ms=5000.0)
    assert watch_champion(engine, settings, station_id) is not None
    assert "latency p95 5000 ms" in champion_now(engine, station_id)[2]


def test_an_audit_sprt_reject_rolls_the_champion_back(engine, line):
    settings, station_id = line
    with session_scope(engine) as s:
        s.add(
            LevelChange(
                station_id=station_id,
                from_level=Level.partial,
                to_level=Level.assist,
                reason=f"{AUDIT_REJECT}: 3 escapes in 40 audits (SPRT p0 0.5%, p1 3%)",
                automatic=True,
                changed_at=datetime.now(UTC),
            )
        )
    assert watch_champion(engine, settings, station_id) is not None
    version, by, reason = champion_now(engine, station_id)
    assert version == "synthetic-line:3" and AUDIT_REJECT in reason and "3 escapes" in reason


def test_a_failing_drift_check_stops_a_canary_in_progress(engine, line):
    """station/monitor.py: a drift failure demotes and stops the canary (weight 0, hidden)."""
    import numpy as np

    from db.repo import find_operator
    from station.monitor import capture_reference, check_station
    from station.registry import lineup
    from station.settings import MonitorSettings

    settings, station_id = line
    settings = settings.model_copy(
        update={"monitor": MonitorSettings(window=100, reference_items=100)}
    )
    with session_scope(engine) as s:
        eve = find_operator(session=s, name="eve")
        s.expunge(eve)
    deploy_version(
        engine, settings, "synthetic-line:3", "canary", operator=eve, reason="r", weight=5
    )
    rng = np.random.default_rng(0)

    def items(n: int, brightness: float) -> None:
        with session_scope(engine) as s:
            for b in rng.normal(brightness, 10.0, n):
                record_inspection(
                    session=s,
                    item=Item(
                        station_id=station_id,
                        image_sha256=f"{rng.integers(1 << 62):064x}",
                        stats={"brightness": float(b)},
                    ),
                    disposition=Disposition(
                        final_label="ok", decided_by=DecidedBy.human, level=Level.shadow
                    ),
                )

    items(100, 100.0)
    capture_reference(engine, settings, station_id, level_change_id=None, reason="test")
    items(100, 60.0)  # the light went down
    result = check_station(engine, settings, station_id)
    assert "input.brightness" in {c.check for c in result.failing}
    assert result.canary_stopped == "synthetic-line:3"
    with session_scope(engine) as s:
        roles = lineup(s, station_id)
        last = history(s, station_id)[-1]
    assert roles.weight == 0 and roles.challenger is not None
    assert "canary stopped at 5% by an alarm" in last["reason"]
