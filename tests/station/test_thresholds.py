"""Thresholds as approved data: fitted on a station's evidence, approved by an engineer, run by
the router, and exactly what the partial / full gates judge."""

from __future__ import annotations

import json

import pytest

from db.engine import session_scope
from db.models import Level, Role
from db.repo import find_operator
from review.rules import DecisionRule, ModelCall, fit_rule, measure_rule
from station.levels import evaluate
from station.pipeline.predictor import FakePredictor, confident
from station.pipeline.simulate import SimulateConfig, simulate
from station.pipeline.testing import ensure_operator, open_station_db
from station.settings import LevelSettings, Settings
from station.thresholds import ThresholdsRefused, approve, fit, propose

SMALL = {"width": 160, "height": 90}


def mixed(img):
    """Sure of most phones, unsure of some; wrong now and then."""
    k = int(img[::5, ::5].sum()) % 10
    if k < 6:
        return confident("ok", 0.999)
    if k < 8:
        return confident("scratch", 0.995)
    return confident("ok", 0.6)


@pytest.fixture
def shadow_station(tmp_path):
    """A simulation station with 300 shadow items of a fake model, and an engineer."""
    settings = Settings(data_dir=tmp_path, station_name="A1")
    engine = open_station_db(f"sqlite:///{tmp_path / 'st.db'}")
    simulate(
        settings,
        engine,
        SimulateConfig(items=300, level=Level.shadow, station="sim", **SMALL),
        predictor=FakePredictor(mixed),
    )
    ensure_operator(engine, "eve", Role.engineer)
    with session_scope(engine) as s:
        eve = find_operator(session=s, name="eve")
    return settings, engine, eve


def test_the_rule_decides_by_its_thresholds_and_caps():
    rule = DecisionRule(0.98, 0.95, {"crack": 0.01})
    assert rule.call(confident("ok", 0.99), "ok")[0] is ModelCall.auto_pass
    almost = {**confident("ok", 0.985), "crack": 0.02}
    assert rule.call(almost, "ok")[0] is ModelCall.review  # a possible crack is never passed
    assert rule.call(confident("dent", 0.97), "ok")[:2] == (ModelCall.auto_fail, "dent")
    assert rule.call(confident("ok", 0.9), "ok")[0] is ModelCall.review


def test_a_fitted_rule_keeps_its_escape_bound_within_the_target():
    items = [(confident("ok", 0.999), "ok")] * 3000 + [(confident("ok", 0.999), "dent")] * 3
    items += [(confident("ok", 0.9), "dent")] * 200 + [(confident("dent", 0.99), "dent")] * 500
    rule, measured, _ = fit_rule(items, "ok", target_escape=0.005, target_false_fail=0.02, caps={})
    assert measured.escape_upper95 is not None and measured.escape_upper95 <= 0.005
    assert rule.auto_pass > 0.9  # the unsure phones stay with people
    assert measured == measure_rule(items, rule, "ok")


def test_fit_proposes_and_only_an_approved_set_is_judged_by_the_gate(shadow_station):
    settings, engine, eve = shadow_station
    before, _, _ = evaluate(engine, settings, Level.partial, station_name="sim", store=False)
    failed = {c.name for c in before.failed_checks}
    assert "assist->partial: approved thresholds in force" in failed
    row, measured, _ = fit(engine, settings, station_name="sim")
    assert row.approved_at is None and measured.n > 200
    still, _, _ = evaluate(engine, settings, Level.partial, station_name="sim", store=False)
    assert "assist->partial: approved thresholds in force" in {c.name for c in still.failed_checks}
    approve(engine, settings, row.version, operator=eve, reason="QA signed", station_name="sim")
    after, _, _ = evaluate(engine, settings, Level.partial, station_name="sim", store=False)
    checks = {c.name: c for c in after.checks}
    assert checks["assist->partial: approved thresholds in force"].passed
    assert checks["assist->partial: approved thresholds in force"].value == row.version
    coverage = checks["assist->partial: coverage of the rule in force"].value
    assert coverage == pytest.approx(measured.coverage)
    assert after.numbers["rule"] == row.values  # exactly the rule that was approved


def test_gate_check_json_carries_the_thresholds_it_judged(shadow_station, cli, tmp_path):
    settings, engine, eve = shadow_station
    row, _, _ = fit(engine, settings, station_name="sim")
    approve(engine, settings, row.version, operator=eve, reason="ok", station_name="sim")
    url = f"sqlite:///{tmp_path / 'st.db'}"
    result = cli(
        "gate", "check", "--to", "partial", "--station", "sim", "--format", "json", "--db", url
    )
    data = json.loads(result.out)
    assert data["thresholds"]["version"] == row.version
    assert data["thresholds"]["values"] == row.values
    shown = cli("thresholds", "show", "--station", "sim", "--db", url)
    assert row.version in shown.out and "approved" in shown.out and "by eve" in shown.out


def test_approval_needs_an_engineer_and_a_known_proposal(shadow_station):
    settings, engine, _ = shadow_station
    ensure_operator(engine, "lan")
    with session_scope(engine) as s:
        lan = find_operator(session=s, name="lan")
        eve = find_operator(session=s, name="eve")
    row, _, _ = fit(engine, settings, station_name="sim")
    with pytest.raises(Exception, match="set thresholds needs engineer"):
        approve(engine, settings, row.version, operator=lan, reason="x", station_name="sim")
    with pytest.raises(ThresholdsRefused, match="no threshold set 'thr-nope'"):
        approve(engine, settings, "thr-nope", operator=eve, reason="x", station_name="sim")


def test_a_simulation_at_partial_decides_by_its_approved_rule_and_records_its_version(tmp_path):
    settings = Settings(data_dir=tmp_path, levels=LevelSettings(audit_share_partial=0.0))
    engine = open_station_db(f"sqlite:///{tmp_path / 'st.db'}")
    s = simulate(
        settings,
        engine,
        SimulateConfig(items=30, level=Level.partial, **SMALL),
        predictor=FakePredictor(mixed),
    )
    assert s.model_decisions > 0
    from sqlmodel import select

    from db.models import DecidedBy, Disposition

    expected = DecisionRule(0.98, 0.98, {"crack": 0.01}).version  # the settings' proposal
    with session_scope(engine) as ses:
        auto = [d for d in ses.exec(select(Disposition)) if d.decided_by is DecidedBy.model]
    assert auto and {d.threshold_version for d in auto} == {expected}


def _gate_block_twice(cli, url):
    """`gate check --format json` and the report's gates block on the same database: equal."""
    gate = json.loads(
        cli(
            "gate", "check", "--to", "assist", "--station", "sim", "--format", "json", "--db", url
        ).out
    )
    report = json.loads(
        cli("report", "--station", "sim", "--format", "json", "--out", "-", "--db", url).out
    )
    gate.pop("evaluation_id")
    assert report["gates"] == gate
    return gate


def test_the_reports_gates_block_is_gate_check_and_escapes_come_from_the_truth_sample(
    shadow_station, cli, tmp_path
):
    from sqlmodel import select

    from db.models import AdjudicationRequest, ChosenFor, Item
    from review.browse import adjudicate

    settings, engine, eve = shadow_station
    row, _, _ = fit(engine, settings, station_name="sim")
    approve(engine, settings, row.version, operator=eve, reason="ok", station_name="sim")
    # Items after the fit, half of the model's passes drawn into the truth sample.
    simulate(
        Settings(data_dir=tmp_path, station_name="A1", levels=LevelSettings(truth_share=0.5)),
        engine,
        SimulateConfig(items=120, level=Level.shadow, station="sim", **SMALL),
        predictor=FakePredictor(mixed),
    )
    qa = ensure_operator(engine, "quinn", Role.qa_lead)
    with session_scope(engine) as s:
        qa = find_operator(session=s, name="quinn")
        drawn = [
            (r.item_id, s.get(Item, r.item_id).ground_truth)  # type: ignore[union-attr]
            for r in s.exec(select(AdjudicationRequest)).all()
            if r.reason == ChosenFor.truth_sample.value
        ]
    assert len(drawn) > 10
    for item_id, truth in drawn:
        adjudicate(
            engine,
            item_id=item_id,
            operator=qa,
            label=truth or "ok",
            reason_code="ambiguous",
            labels=settings.labels,
        )
    url = f"sqlite:///{tmp_path / 'st.db'}"
    gate = _gate_block_twice(cli, url)
    judged = gate["numbers"]
    assert judged["rule_holdout_after_item"] == 300
    assert judged["rule_items"] == 120  # only the items after the fit judge the fitted rule

    # A proposal not fitted on data (the settings' values) is judged on every item, its
    # escapes on the adjudicated truth sample.
    proposal = propose(
        engine, settings, DecisionRule(0.98, 0.95), note="settings", station_name="sim"
    )
    approve(engine, settings, proposal.version, operator=eve, reason="ok", station_name="sim")
    gate = _gate_block_twice(cli, url)
    judged = gate["numbers"]
    assert judged["rule_holdout_after_item"] is None and judged["rule_items"] == 420
    assert judged["rule_truth_checked"] > 0
    assert judged["rule_truth_checked"] + judged["rule_truth_pending"] == judged["rule_truth_drawn"]
    assert "truth sample" in judged["rule_escape_reference"]
    assert "inspector" in judged["rule_escape_vs_inspector"]["reference"]
    assert gate["thresholds"]["version"] == proposal.version


def test_the_pass_side_is_fitted_on_the_truth_sample_once_there_is_enough(tmp_path, monkeypatch):
    from sqlmodel import select

    import station.thresholds as T
    from db.models import AdjudicationRequest, Item
    from review.browse import adjudicate

    settings = Settings(data_dir=tmp_path, station_name="A1", levels=LevelSettings(truth_share=1.0))
    engine = open_station_db(f"sqlite:///{tmp_path / 'st.db'}")
    simulate(
        settings,
        engine,
        SimulateConfig(items=200, level=Level.shadow, station="sim", **SMALL),
        predictor=FakePredictor(mixed),
    )
    ensure_operator(engine, "quinn", Role.qa_lead)
    with session_scope(engine) as s:
        quinn = find_operator(session=s, name="quinn")
        drawn = [
            (r.item_id, s.get(Item, r.item_id).ground_truth)  # type: ignore[union-attr]
            for r in s.exec(select(AdjudicationRequest)).all()
        ]
    _, _, info = fit(engine, settings, station_name="sim")
    assert "inspector's labels" in info["auto_pass_fitted_on"]
    for item_id, truth in drawn:
        adjudicate(
            engine,
            item_id=item_id,
            operator=quinn,
            label=truth or "ok",
            reason_code="confirmed",
            labels=settings.labels,
        )
    monkeypatch.setattr(T, "MIN_TRUTH_FOR_FIT", 50)
    _, _, info = fit(engine, settings, station_name="sim")
    assert info["auto_pass_fitted_on"].startswith(f"the truth sample ({len(drawn)} adjudicated")


def test_model_info_and_config_show_name_the_same_thresholds_in_force(
    shadow_station, cli, tmp_path
):
    settings, engine, eve = shadow_station
    env = {
        "STATION_STATION_NAME": "sim",
        "STATION_DATABASE_URL": f"sqlite:///{tmp_path / 'st.db'}",
    }
    for args in (("config", "show"), ("model", "info")):
        out = cli(*args, env=env).out
        assert "none at station sim: the model decides nothing alone" in out, args
    # Before any approval the escape check says how far off the evidence is, not "unknown".
    gate = cli(
        "gate", "check", "--to", "partial", "--station", "sim", "--db", env["STATION_DATABASE_URL"]
    )
    assert "unknown" not in gate.out
    assert "no approved rule in force; the best bound this evidence reaches is" in gate.out
    row, _, _ = fit(engine, settings, station_name="sim")
    approve(engine, settings, row.version, operator=eve, reason="ok", station_name="sim")
    rule = DecisionRule.from_dict(row.values)
    for args in (("config", "show"), ("model", "info")):
        out = " ".join(cli(*args, env=env).out.split())  # rich wraps long lines
        assert f"set {row.version} at station sim" in out, args
        assert f"auto-pass at P(ok) >= {rule.auto_pass:g}" in out, args
    info = cli("model", "info", env=env).out
    assert "for reference, never in force" in info
