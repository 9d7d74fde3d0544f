"""Audits at partial and full: only audited auto-passes are weighed, by a Wald SPRT whose reject
demotes the running station through the level service (recorded as automatic)."""

from __future__ import annotations

import numpy as np
from sqlmodel import select

from db.engine import session_scope
from db.models import Level, LevelChange, Role
from db.repo import find_operator
from review.audits import AuditSPRT, Verdict
from station.levels import level_of
from station.pipeline.predictor import FakePredictor, confident
from station.pipeline.testing import ensure_operator, make_rig, phone_image
from station.settings import LevelSettings, Settings


def _first_verdict(rate: float, rng: np.random.Generator) -> Verdict:
    test = AuditSPRT(p0=0.005, p1=0.03, alpha=0.01, beta=0.10)
    while True:
        verdict = test.update(bool(rng.random() < rate))
        if verdict is not Verdict.continue_:
            return verdict


def test_the_sprt_keeps_its_error_chances() -> None:
    rng = np.random.default_rng(5)
    good = [_first_verdict(0.005, rng) for _ in range(1000)]
    bad = [_first_verdict(0.03, rng) for _ in range(1000)]
    assert sum(v is Verdict.reject for v in good) / 1000 <= 0.02  # alpha = 0.01
    assert sum(v is Verdict.accept for v in bad) / 1000 <= 0.13  # beta = 0.10


def _audited_partial(tmp_path):
    """A station at partial whose model auto-passes every phone, each one audited."""
    settings = Settings(
        data_dir=tmp_path,
        levels=LevelSettings(audit_share_partial=1.0, blind_share_auto=0.0, truth_share=0.0),
    )
    predictor = FakePredictor(confident("ok", 0.999))
    return settings, make_rig(tmp_path, level=Level.partial, settings=settings, predictor=predictor)


def _adjudicate_flagged(rig, label: str) -> int:
    """A QA lead settles every flagged audit waiting (as the review window does)."""
    from db.models import AdjudicationRequest, ChosenFor
    from review.browse import adjudicate

    ensure_operator(rig.engine, "quinn", Role.qa_lead)
    with session_scope(rig.engine) as s:
        quinn = find_operator(session=s, name="quinn")
        waiting = [
            r.item_id
            for r in s.exec(select(AdjudicationRequest)).all()
            if r.reason == ChosenFor.disagreement.value
        ]
    for item_id in waiting:
        adjudicate(
            rig.engine,
            item_id=item_id,
            operator=quinn,
            label=label,
            reason_code="model_missed" if label != "ok" else "human_false_reject",
            labels=rig.settings.labels,
        )
    return len(waiting)


def test_confirmed_audit_escapes_demote_the_running_station_to_assist(tmp_path) -> None:
    settings, rig = _audited_partial(tmp_path)
    for i in range(3):  # every auto-pass is audited; the auditor flags a dent each time
        route = rig.feed(phone_image(i))
        assert route.audit and route.model_call is not None
        assert route.model_call.value == "auto_pass"
        rig.core.desk.decide("dent")
    # The auditor's word alone demotes nothing: the flagged audits wait for a QA lead.
    assert level_of(rig.engine, settings) is Level.partial
    assert _adjudicate_flagged(rig, "dent") == 3  # confirmed: three escapes
    assert level_of(rig.engine, settings) is Level.assist
    with session_scope(rig.engine) as s:
        change = s.exec(select(LevelChange).order_by(LevelChange.id.desc())).first()  # type: ignore[union-attr]
    assert change is not None and change.automatic and change.to_level is Level.assist
    assert "3 escapes in 3 audited auto-passes" in change.reason
    # The running station picks the demotion up: the next item is routed at assist.
    assert rig.core.levels.read() is Level.assist
    assert rig.feed(phone_image(9)).decider.value == "human"


def test_an_auditors_false_alarms_do_not_demote(tmp_path) -> None:
    """A 95% inspector calls 1 good phone in 20 defective: adjudicated ok, not escapes."""
    settings, rig = _audited_partial(tmp_path)
    for i in range(3):
        rig.feed(phone_image(i))
        rig.core.desk.decide("dent")
    assert _adjudicate_flagged(rig, "ok") == 3
    assert level_of(rig.engine, settings) is Level.partial


def test_audits_that_find_nothing_are_not_escapes(tmp_path) -> None:
    from review.audits import audit_outcomes

    settings, rig = _audited_partial(tmp_path)
    for i in range(5):
        rig.feed(phone_image(i))
        rig.core.desk.decide("ok")
    with rig.engine.connect() as conn:
        assert audit_outcomes(conn, rig.core.station_id, "ok") == [False] * 5
    assert level_of(rig.engine, settings) is Level.partial


def test_an_inspector_challenges_an_automatic_decision_with_one_key(tmp_path) -> None:
    from db.models import AdjudicationRequest, ChosenFor
    from station.pipeline.records import ChallengeRecord, from_json, to_json

    settings = Settings(
        data_dir=tmp_path,
        levels=LevelSettings(audit_share_partial=0.0, blind_share_auto=0.0, truth_share=0.0),
    )
    predictor = FakePredictor(confident("ok", 0.999))
    rig = make_rig(tmp_path, level=Level.partial, settings=settings, predictor=predictor)
    route = rig.feed(phone_image(1))
    assert route.decider.value == "model" and not route.needs_human
    challenged = rig.core.desk.challenge()
    assert challenged is not None and challenged.challenged
    assert rig.core.desk.challenge() is None  # nothing else to challenge
    with session_scope(rig.engine) as s:
        (req,) = s.exec(select(AdjudicationRequest)).all()
        assert req.reason == ChosenFor.challenge.value
        assert req.operator_id == rig.core.desk.operator_id and req.item_id == rig.acks[0].item_id
    # durable like a decision: it survives the spool's JSON
    rec = ChallengeRecord(uid="c1", item_uid="i1", operator_id=3, at=req.created_at)
    assert from_json(to_json(rec)) == rec
