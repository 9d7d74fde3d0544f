"""Every record round-trips through a real migrated SQLite file; one item is one transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, func, select

from db.engine import session_scope
from db.errors import IntegrityProblem
from db.models import (
    Adjudication,
    DecidedBy,
    Disposition,
    GateEvaluation,
    HumanDecision,
    Item,
    Level,
    LevelChange,
    ModelVersion,
    Operator,
    Prediction,
    Role,
    Slot,
)
from db.repo import (
    active_deployments,
    add_operator,
    current_level,
    deploy,
    effective_decision,
    final_disposition,
    get_or_create_station,
    record_adjudication,
    record_gate_evaluation,
    record_human_decision,
    record_inspection,
    record_level_change,
    register_model_version,
    start_operator_session,
)


def _setup(session: Session):
    station = get_or_create_station(session=session, name="A3")
    inspector = add_operator(session=session, name="lan", role=Role.inspector, secret_hash="x")
    model = register_model_version(
        session=session,
        model=ModelVersion(
            name="defects",
            version="7",
            sha256="1f3c" * 16,
            architecture="fcn",
            classes=["ok", "crack", "scratch"],
            thresholds={"auto_pass": 0.98},
            temperature=1.7,
            metrics={"accuracy": 0.98},
        ),
    )
    return station, inspector, model


def _inspection(station_id: int, operator_id: int, model_id: int, *, bad_operator: bool = False):
    item = Item(
        station_id=station_id,
        image_sha256="ab" * 32,
        image_path="ab/ab/abab.png",
        width=1280,
        height=720,
        brightness=101.5,
        contrast=40.2,
        sharpness=350.0,
        clipped_share=0.001,
        stats={"extra": 1},
        source="synthetic:seed=1",
        ground_truth="scratch",
        trigger_version="t1",
        guard_version="g1",
    )
    preds = [
        Prediction(
            model_version_id=model_id,
            slot=Slot.champion,
            label="scratch",
            probabilities={"ok": 0.1, "crack": 0.05, "scratch": 0.85},
            p_defect=0.9,
            confidence=0.85,
            latency_ms=42.0,
        ),
        Prediction(model_version_id=model_id, slot=Slot.challenger, label=None, error="timeout"),
    ]
    decision = HumanDecision(
        operator_id=999_999 if bad_operator else operator_id,
        label="scratch",
        defect_types=["scratch"],
        decision_ms=1800.0,
        suggestion_shown=False,
        blind=True,
    )
    disposition = Disposition(
        final_label="scratch",
        decided_by=DecidedBy.human,
        level=Level.assist,
        threshold_version="th-1",
    )
    return item, preds, decision, disposition


def test_an_inspection_round_trips_with_its_links(engine) -> None:
    with session_scope(engine) as s:
        station, inspector, model = _setup(s)
        item, preds, decision, disposition = _inspection(station.id, inspector.id, model.id)
        record_inspection(
            session=s, item=item, predictions=preds, decision=decision, disposition=disposition
        )
        item_id = item.id
    with Session(engine) as s:
        item = s.get(Item, item_id)
        assert item.ground_truth == "scratch" and item.stats == {"extra": 1}
        assert item.captured_at.tzinfo is not None
        preds = s.exec(select(Prediction).where(Prediction.item_id == item_id)).all()
        assert {p.slot for p in preds} == {Slot.champion, Slot.challenger}
        champion = next(p for p in preds if p.slot == Slot.champion)
        assert champion.probabilities["scratch"] == pytest.approx(0.85)
        disp = final_disposition(session=s, item_id=item_id)
        assert disp.prediction_id == champion.id and disp.model_version_id == model.id
        assert disp.human_decision_id == effective_decision(session=s, item_id=item_id).id
        assert s.get(ModelVersion, model.id).classes == ["ok", "crack", "scratch"]


def test_a_failure_inside_the_transaction_leaves_nothing(engine) -> None:
    with session_scope(engine) as s:
        station, inspector, model = _setup(s)
        ids = (station.id, inspector.id, model.id)
    item, preds, decision, disposition = _inspection(*ids, bad_operator=True)
    with pytest.raises(IntegrityProblem), session_scope(engine) as s:
        record_inspection(
            session=s, item=item, predictions=preds, decision=decision, disposition=disposition
        )
    with Session(engine) as s:
        for table in (Item, Prediction, HumanDecision, Disposition):
            assert s.exec(select(func.count()).select_from(table)).one() == 0


def test_undo_chain_and_adjudication_decide_the_final_label(engine) -> None:
    with session_scope(engine) as s:
        station, inspector, model = _setup(s)
        qa = add_operator(session=s, name="mai", role=Role.qa_lead, secret_hash="y")
        item, preds, decision, disposition = _inspection(station.id, inspector.id, model.id)
        record_inspection(
            session=s, item=item, predictions=preds, decision=decision, disposition=disposition
        )
        corrected = record_human_decision(
            session=s,
            decision=HumanDecision(
                item_id=item.id, operator_id=inspector.id, label="ok", supersedes_id=decision.id
            ),
            disposition=Disposition(
                final_label="ok", decided_by=DecidedBy.human, level=Level.assist
            ),
        )
        assert effective_decision(session=s, item_id=item.id).id == corrected.id
        record_adjudication(
            session=s,
            adjudication=Adjudication(
                item_id=item.id,
                operator_id=qa.id,
                label="scratch",
                reason_code="missed_defect",
                note="visible at 2x",
            ),
            level=Level.assist,
        )
        final = final_disposition(session=s, item_id=item.id)
        assert final.final_label == "scratch" and final.decided_by == DecidedBy.adjudication


def test_levels_gates_deployments_and_logins_round_trip(engine) -> None:
    with session_scope(engine) as s:
        station, inspector, model = _setup(s)
        eng = add_operator(session=s, name="kim", role=Role.engineer, secret_hash="z")
        assert current_level(session=s, station_id=station.id) == Level.human_only
        gate = record_gate_evaluation(
            session=s,
            evaluation=GateEvaluation(
                station_id=station.id,
                from_level=Level.shadow,
                to_level=Level.assist,
                passed=True,
                rules={"min_items": 500},
                numbers={"items": 812, "kappa_lower": 0.71},
            ),
        )
        record_level_change(
            session=s,
            change=LevelChange(
                station_id=station.id,
                from_level=Level.shadow,
                to_level=Level.assist,
                operator_id=eng.id,
                reason="gate passed",
                gate_evaluation_id=gate.id,
            ),
        )
        assert current_level(session=s, station_id=station.id) == Level.assist
        deploy(session=s, station=station, model=model, slot=Slot.champion)
        v8 = register_model_version(
            session=s, model=ModelVersion(name="defects", version="8", sha256="2a" * 32)
        )
        deploy(session=s, station=station, model=v8, slot=Slot.champion, reason="blue/green")
        active = active_deployments(session=s, station_id=station.id)
        assert [(d.slot, d.model_version_id) for d in active] == [(Slot.champion, v8.id)]
        login = start_operator_session(session=s, operator=inspector, station=station)
        assert login.started_at <= datetime.now(UTC)
    with Session(engine) as s:
        stored = s.get(GateEvaluation, gate.id)
        assert stored.numbers["kappa_lower"] == pytest.approx(0.71)


def test_same_model_version_with_other_weights_is_refused(engine) -> None:
    with session_scope(engine) as s:
        _setup(s)
        with pytest.raises(IntegrityProblem, match="new version"):
            register_model_version(
                session=s, model=ModelVersion(name="defects", version="7", sha256="ff" * 32)
            )


def test_duplicate_operator_is_refused(engine) -> None:
    with session_scope(engine) as s:
        add_operator(session=s, name="lan", role=Role.inspector, secret_hash="x")
    with pytest.raises(IntegrityProblem, match="already exists"), session_scope(engine) as s:
        add_operator(session=s, name="lan", role=Role.engineer, secret_hash="y")
    with Session(engine) as s:
        assert [o.role for o in s.exec(select(Operator)).all()] == [Role.inspector]
