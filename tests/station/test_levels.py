"""The automation ladder: gated promotion, free demotion, recorded overrides, engineers only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlmodel import Session, select

from db.engine import session_scope
from db.models import (
    DecidedBy,
    Disposition,
    GateEvaluation,
    HumanDecision,
    Item,
    Level,
    LevelChange,
    ModelVersion,
    Prediction,
    Role,
    Slot,
    Station,
)
from db.repo import (
    add_operator,
    deploy,
    get_or_create_station,
    record_inspection,
    record_level_change,
    register_model_version,
)
from station.auth import hash_secret
from station.errors import AuthError
from station.levels import LevelChangeRefused, evaluate, level_of, set_level
from station.settings import load_settings

CLASSES = ["ok", "crack", "scratch", "dent", "stain", "missing"]


@pytest.fixture
def settings():
    return load_settings(overrides={"station_name": "A3"})[0]


@pytest.fixture
def people(engine):
    with session_scope(engine) as s:
        eng = add_operator(session=s, name="kim", role=Role.engineer, secret_hash=hash_secret("k"))
        insp = add_operator(
            session=s, name="lan", role=Role.inspector, secret_hash=hash_secret("l")
        )
    return eng, insp


def add_shadow_evidence(
    engine, operator_id: int, n: int, *, agree: float, seed: int = 0, model_id: int | None = None
) -> None:
    """`n` shadow items over three days, every class present, the model agreeing at rate `agree`."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 11, 2, 6, tzinfo=UTC)
    with session_scope(engine) as s:
        station = get_or_create_station(session=s, name="A3")
        for i in range(n):
            truth = CLASSES[(i // 2) % len(CLASSES)] if i % 2 else "ok"
            model = truth if rng.random() < agree else CLASSES[(CLASSES.index(truth) + 1) % 6]
            when = t0 + timedelta(hours=72 * i / n)
            record_inspection(
                session=s,
                item=Item(station_id=station.id, captured_at=when, image_sha256=f"{i:064x}"),
                predictions=[
                    Prediction(
                        model_version_id=model_id,
                        slot=Slot.champion,
                        label=model,
                        confidence=0.9,
                        p_defect=0.1 if model == "ok" else 0.9,
                    )
                ],
                decision=HumanDecision(operator_id=operator_id, label=truth, decided_at=when),
                disposition=Disposition(
                    final_label=truth, decided_by=DecidedBy.human, level=Level.shadow
                ),
            )


def _to_shadow(engine, settings, engineer) -> None:
    set_level(engine, settings, "shadow", operator=engineer, reason="start")


def test_promotion_without_evidence_is_refused_and_the_level_stays(
    engine, settings, people
) -> None:
    engineer, _ = people
    _to_shadow(engine, settings, engineer)
    with pytest.raises(LevelChangeRefused, match="paired unbiased items = 0"):
        set_level(engine, settings, "assist", operator=engineer, reason="go")
    assert level_of(engine, settings) == Level.shadow
    with Session(engine) as s:
        evaluations = s.exec(select(GateEvaluation)).all()
        assert [e.passed for e in evaluations] == [True, False]  # both evaluations stored


def test_promotion_passes_with_enough_agreeing_shadow_evidence(engine, settings, people) -> None:
    engineer, inspector = people
    _to_shadow(engine, settings, engineer)
    add_shadow_evidence(engine, inspector.id, 720, agree=0.97)
    result, _, _ = evaluate(engine, settings, "assist", store=False)
    assert result.passed, result.summary()
    # judged on its fixed evaluation sample: the first 500 items (over 2 days, every class)
    assert result.numbers["paired"] == 500 and result.numbers["kappa_lower95"] > 0.6
    assert result.numbers["kappa_sample"]["complete"]
    outcome = set_level(engine, settings, "assist", operator=engineer, reason="gate passed")
    assert not outcome.change.override and outcome.evaluation_id is not None
    assert level_of(engine, settings) == Level.assist


def test_poor_agreement_fails_the_kappa_check(engine, settings, people) -> None:
    engineer, inspector = people
    _to_shadow(engine, settings, engineer)
    add_shadow_evidence(engine, inspector.id, 720, agree=0.5)
    result, _, _ = evaluate(engine, settings, "assist", store=False)
    assert not result.passed
    assert any("kappa" in c.name for c in result.failed_checks)


def test_override_is_recorded_with_its_reason(engine, settings, people) -> None:
    engineer, _ = people
    _to_shadow(engine, settings, engineer)
    outcome = set_level(
        engine,
        settings,
        "assist",
        operator=engineer,
        reason="customer demo, signed off by QA",
        override=True,
    )
    assert outcome.change.override
    with Session(engine) as s:
        change = s.exec(select(LevelChange).order_by(LevelChange.id.desc())).first()
        assert change.override and change.reason == "customer demo, signed off by QA"
        assert s.get(GateEvaluation, change.gate_evaluation_id).passed is False


def test_demotion_needs_no_evidence(engine, settings, people) -> None:
    engineer, _ = people
    set_level(engine, settings, "assist", operator=engineer, reason="demo", override=True)
    outcome = set_level(engine, settings, "human_only", operator=engineer, reason="model recalled")
    assert outcome.gate is None and not outcome.change.override
    assert level_of(engine, settings) == Level.human_only


def test_an_inspector_cannot_set_the_level(engine, settings, people) -> None:
    _, inspector = people
    with pytest.raises(AuthError, match="needs engineer"):
        set_level(engine, settings, "human_only", operator=inspector, reason="x")


def test_level_set_cli_needs_an_engineers_secret(cli, db_url: str, engine, people) -> None:
    wrong = cli(
        "level",
        "set",
        "shadow",
        "--reason",
        "x",
        "--user",
        "kim",
        "--db",
        db_url,
        input="not-kims\n",
    )
    assert wrong.code == 2 and "wrong secret" in wrong.err
    inspector = cli(
        "level", "set", "shadow", "--reason", "x", "--user", "lan", "--db", db_url, input="l\n"
    )
    assert inspector.code == 2 and "needs engineer" in inspector.err
    ok = cli(
        "level",
        "set",
        "shadow",
        "--reason",
        "start shadow",
        "--user",
        "kim",
        "--db",
        db_url,
        input="k\n",
    )
    assert ok.code == 0, ok.err
    shown = cli("level", "show", "--db", db_url)
    assert "shadow" in shown.out and "start shadow" in shown.out


def test_gate_check_cli_exits_1_when_refused_and_prints_numbers(cli, db_url: str, engine) -> None:
    result = cli("gate", "check", "--to", "shadow", "--db", db_url, "--format", "json")
    assert result.code == 0  # human_only -> shadow needs no evidence
    refused = cli("gate", "check", "--to", "full", "--db", db_url)
    assert refused.code == 1 and "FAIL" in refused.out and "required" in refused.out


def test_unknown_level_name_is_refused(cli, db_url: str, engine) -> None:
    result = cli("gate", "check", "--to", "turbo", "--db", db_url)
    assert result.code == 2 and "human_only" in result.err


def test_evidence_for_an_older_model_does_not_promote_a_newer_one(engine, settings, people) -> None:
    engineer, inspector = people
    _to_shadow(engine, settings, engineer)
    with session_scope(engine) as s:
        station = get_or_create_station(session=s, name="A3")
        v1 = register_model_version(
            session=s, model=ModelVersion(name="d", version="1", sha256="1" * 64)
        )
        v2 = register_model_version(
            session=s, model=ModelVersion(name="d", version="2", sha256="2" * 64)
        )
        deploy(session=s, station=station, model=v1, slot=Slot.champion)
        v1_id = v1.id
    add_shadow_evidence(engine, inspector.id, 720, agree=0.97, model_id=v1_id)
    assert evaluate(engine, settings, "assist", store=False)[0].passed
    with session_scope(engine) as s:
        deploy(
            session=s,
            station=get_or_create_station(session=s, name="A3"),
            model=s.get(ModelVersion, v2.id),
            slot=Slot.champion,
        )
    result, evaluation_id, _ = evaluate(engine, settings, "assist")
    assert not result.passed and result.numbers["paired"] == 0
    with Session(engine) as s:
        assert s.get(GateEvaluation, evaluation_id).numbers["model_version"] == "d:2"


def test_read_commands_refuse_an_unknown_station(cli, db_url: str, engine) -> None:
    result = cli("level", "show", "--station", "TYPO", "--db", db_url)
    assert result.code == 2 and "unknown station 'TYPO'" in result.err
    with Session(engine) as s:
        assert s.exec(select(Station).where(Station.name == "TYPO")).first() is None


def test_a_promotion_is_refused_if_an_alarm_demoted_the_station_meanwhile(
    engine, settings, people, monkeypatch
) -> None:
    import station.levels as levels

    engineer, _ = people
    set_level(engine, settings, "assist", operator=engineer, reason="demo", override=True)
    real_evaluate = levels.evaluate

    def evaluate_while_an_alarm_fires(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        with session_scope(engine) as s:  # what the station records when its model fails
            station_id = get_or_create_station(session=s, name="A3").id
            record_level_change(
                session=s,
                change=LevelChange(
                    station_id=station_id,
                    from_level=Level.assist,
                    to_level=Level.human_only,
                    reason="model unusable",
                    automatic=True,
                ),
            )
        return result

    monkeypatch.setattr(levels, "evaluate", evaluate_while_an_alarm_fires)
    with pytest.raises(LevelChangeRefused, match="changed to human_only"):
        set_level(engine, settings, "partial", operator=engineer, reason="go", override=True)
    assert level_of(engine, settings) == Level.human_only


def test_a_level_watch_follows_changes_and_survives_a_database_that_fails(
    engine, settings, people
) -> None:
    from sqlalchemy.exc import OperationalError

    from station.levels import LevelWatch

    eng, _ = people
    with session_scope(engine) as s:
        station_id = get_or_create_station(session=s, name="A3").id
    watch = LevelWatch(engine, station_id, Level.human_only)
    assert watch.last is Level.human_only
    _to_shadow(engine, settings, eng)
    assert watch.last is Level.human_only and watch.read() is Level.shadow  # read, then known

    class Down:
        calls = 0

        def connect(self):
            Down.calls += 1
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    watch.engine = Down()
    assert watch.read() is Level.shadow and Down.calls == 1  # the last level holds
    assert watch.read() is Level.shadow and Down.calls == 1  # and items do not wait on it
    watch.cap(Level.human_only)  # the station's own fail-safe, unrecorded
    assert watch.last is Level.human_only
    watch.engine = engine
    assert watch.read(retrying=True) is Level.human_only  # the poller's read gets through
    watch.cap(None)
    assert watch.last is Level.shadow
