"""Drift monitoring through the real pipeline (simulate, fake model, small windows): a reference
captured at approval, checks stored every round, a failure that demotes a partial station and
keeps the partial -> full gate shut, a stable line that raises nothing, a new stage version that
starts a new reference, and the alarms and metrics a user reads."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import col, select

from db.engine import session_scope
from db.models import Alarm, DriftReference, Level, LevelChange, MonitorCheck, Role
from db.repo import find_operator
from station.levels import evaluate, level_of, set_level
from station.monitor import check_station, close_on_approval, drift_alarm_open
from station.pipeline.predictor import FakePredictor, confident
from station.pipeline.simulate import SimulateConfig, parse_drift, simulate
from station.pipeline.testing import ensure_operator, open_station_db
from station.settings import GuardSettings, MonitorSettings, Settings

SMALL = {"width": 320, "height": 180}
# Small windows keep these runs to a few hundred items; the defaults are measured in
# bench/drift_detection.py and tests/station/test_drift_story.py.
WINDOWS = MonitorSettings(
    window=100,
    every_items=50,
    reference_items=100,
    # a window of 100 reads a normalised distance near 0.1 from noise alone (0.05 at 500)
    input_warn=0.25,
    input_fail=0.4,
    confidence_warn=0.25,
    confidence_fail=0.4,
)


def answers(img):
    """Sure on most items, unsure on some; darker stills look defective to it (an output drift)."""
    mean = float(img.mean())
    if mean < 45:
        return confident("scratch", 0.9)
    return confident("ok", 0.995) if int(img[::7, ::7].sum()) % 4 else confident("ok", 0.7)


def override_to_partial(engine, settings, reason: str = "back up by hand") -> None:
    """An engineer forces station sim back to partial (an override, recorded as such)."""
    ensure_operator(engine, "eng", Role.engineer)
    with session_scope(engine) as s:
        op = find_operator(session=s, name="eng")
        s.expunge(op)
    set_level(
        engine,
        settings,
        Level.partial,
        operator=op,
        reason=reason,
        override=True,
        station_name="sim",
    )


def settings_at(tmp_path, **kw) -> Settings:
    return Settings(data_dir=tmp_path, monitor=WINDOWS, **kw)


def run(settings, engine, level, items, drift: str | None = None):
    knobs, after = parse_drift(drift) if drift else ({}, 0)
    return simulate(
        settings,
        engine,
        SimulateConfig(items=items, level=level, drift=knobs, drift_after=after, **SMALL),
        predictor=FakePredictor(answers),
    )


@pytest.fixture
def line(tmp_path):
    """A simulation station approved at partial on 100 shadow items (its drift reference)."""
    settings = settings_at(tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    run(settings, engine, Level.shadow, 100)
    return settings, engine


def test_the_reference_is_the_evidence_the_level_was_approved_on(line):
    settings, engine = line
    run(settings, engine, Level.partial, 60)
    with session_scope(engine) as s:
        refs = s.exec(select(DriftReference).order_by(col(DriftReference.id))).all()
        approval = s.exec(select(LevelChange).where(LevelChange.to_level == Level.partial)).one()
    latest = refs[-1]
    assert latest.level_change_id == approval.id
    # the 100 shadow items before the approval, none of the partial run's
    assert latest.n == 100 and latest.first_item_id == 1 and latest.last_item_id == 100
    assert latest.data["complete"] and len(latest.data["stats"]["brightness"]) == 100
    assert latest.stage_versions["guard"].startswith("guard-1+")


def test_a_stable_line_raises_no_alarm_and_the_gate_knows_it(line):
    settings, engine = line
    summary = run(settings, engine, Level.partial, 200)
    assert summary.alarms == [] and summary.final_level == "partial"
    with session_scope(engine) as s:
        checks = s.exec(select(MonitorCheck)).all()
        assert s.exec(select(Alarm)).all() == []
    judged = [c for c in checks if c.verdict != "skipped"]
    assert len({c.last_item_id for c in checks}) >= 4  # a round every 50 items
    assert {c.check for c in judged} >= {"input.brightness", "output.defect_rate"}
    assert all(c.verdict == "ok" for c in judged)
    station_id = checks[0].station_id
    assert drift_alarm_open(engine, settings, station_id) is False  # known, not unknown


def test_darker_light_demotes_a_partial_station_with_the_checks_numbers(line, cli, tmp_path):
    settings, engine = line
    summary = run(settings, engine, Level.partial, 200, drift="light=0.5@50")
    assert summary.final_level == "assist"  # monitor.demote_to: humans decide every item again
    assert summary.demoted_at_item is not None and summary.demoted_at_item <= 150
    assert any("input drift brightness" in a for a in summary.alarms)
    # the station's banner says it (the window shows the status' banners)
    assert any(b.startswith("DRIFT ALARM") and "input.brightness" in b for b in summary.banners)
    with session_scope(engine) as s:
        demotion = s.exec(
            select(LevelChange).where(LevelChange.automatic == True)  # noqa: E712
        ).one()
        alarms = s.exec(select(Alarm).where(Alarm.severity == "fail")).all()
    assert (demotion.from_level, demotion.to_level) == (Level.partial, Level.assist)
    assert "input drift brightness: normalised Wasserstein" in demotion.reason
    assert ">= fail 0.4" in demotion.reason and "over items #" in demotion.reason
    assert any(a.level_change_id == demotion.id for a in alarms)
    assert all(a.closed_at is None for a in alarms)

    # The partial -> full gate is shut while an alarm is open (it was unknown before monitoring)
    station_id = alarms[0].station_id
    assert drift_alarm_open(engine, settings, station_id) is True
    override_to_partial(engine, settings, "back up by hand")
    result, _, _ = evaluate(engine, settings, Level.full, station_name="sim", store=False)
    drift_check = next(c for c in result.checks if c.name == "no open drift alarm")
    assert drift_check.value is True and not drift_check.passed

    # `station alarms` lists them, open, with what demoted the station
    listed = cli(
        "alarms", "--station", "sim", "--format", "json", "--db", f"sqlite:///{tmp_path / 'sim.db'}"
    )
    assert listed.code == 0, listed.err
    rows = json.loads(listed.out)["alarms"]
    assert any(
        r["check"] == "input.brightness" and r["open"] and r["severity"] == "fail" for r in rows
    )
    text = cli("alarms", "--station", "sim", "--db", f"sqlite:///{tmp_path / 'sim.db'}")
    assert "OPEN" in text.out and "demoted the station" in text.out


def test_a_failure_that_persists_demotes_again_after_an_override(line):
    """An engineer forcing the level back up clears nothing and re-baselines nothing: the next
    round that still fails steps the station down again."""
    settings, engine = line
    run(settings, engine, Level.partial, 150, drift="light=0.5@0")
    assert level_of(engine, settings, "sim") is Level.assist
    override_to_partial(engine, settings, "the light is fine, we say")
    summary = run(settings, engine, Level.partial, 60, drift="light=0.5@0")  # still at partial
    assert summary.final_level == "assist" and summary.demoted_at_item is not None


def test_an_override_does_not_clear_an_alarm_and_a_passing_gate_does(line):
    settings, engine = line
    run(settings, engine, Level.partial, 150, drift="light=0.5@0")
    override_to_partial(engine, settings, "test")
    with session_scope(engine) as s:
        still_open = {a.id for a in s.exec(select(Alarm).where(col(Alarm.closed_at).is_(None)))}
        assert still_open  # the override closed none
        change = s.exec(select(LevelChange).order_by(col(LevelChange.id).desc())).first()
        assert change is not None and change.override
        assert close_on_approval(s, change.station_id, change) >= 1  # what a passing gate does
    with session_scope(engine) as s:
        closed = s.exec(select(Alarm).where(col(Alarm.id).in_(still_open))).all()
    assert all(a.closed_at is not None and "gate passed" in a.closed_reason for a in closed)


def test_a_new_guard_version_starts_a_new_reference_instead_of_alarming(line, tmp_path):
    settings, engine = line
    run(settings, engine, Level.partial, 60)
    changed = settings_at(tmp_path, guard=GuardSettings(min_brightness=20.0))
    summary = run(changed, engine, Level.partial, 160)
    assert summary.alarms == []
    with session_scope(engine) as s:
        refs = s.exec(select(DriftReference).order_by(col(DriftReference.id))).all()
    assert refs[-1].data["reason"].startswith("new stage version: guard")
    assert refs[-1].stage_versions["guard"] != refs[-2].stage_versions["guard"]

    # the report shows the change and what it did downstream, with intervals
    from review.html import render_html
    from review.query import ReportFilters
    from review.report import build_report

    report = build_report(engine, ReportFilters(station="sim"), labels=settings.labels)
    versions, changes = report["stages"]["versions"], report["stages"]["changes"]
    assert [v["items"] for v in versions] == [160, 160]  # 100 shadow + 60 partial, then 160
    (change,) = changes
    assert change["stages"] == ["guard"] and change["at_item_id"] == versions[1]["first_item_id"]
    diff = change["defect_rate_difference"]
    assert diff["ci95"][0] <= diff["difference"] <= diff["ci95"][1]
    assert versions[1]["guard_passed"]["n"] == 160 and versions[0]["agreement"]["ci95"]
    html = render_html(report)
    assert "Pipeline stages" in html and f"Change at item #{change['at_item_id']}" in html


def test_monitor_check_runs_a_round_from_the_cli(line, cli, tmp_path):
    settings, engine = line
    run(settings, engine, Level.partial, 20)
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    out = cli(
        "monitor",
        "check",
        "--station",
        "sim",
        "--format",
        "json",
        "--db",
        url,
        env={"STATION_MONITOR__WINDOW": "100", "STATION_MONITOR__REFERENCE_ITEMS": "100"},
    )
    assert out.code == 0, out.err
    body = json.loads(out.out)
    assert body["status"] == "checked"
    assert {c["check"] for c in body["checks"]} >= {"input.brightness", "embedding.mmd"}


def test_the_metrics_endpoint_serves_prometheus_text_a_parser_reads(line):
    from station.metrics import serve

    settings, engine = line
    run(settings, engine, Level.partial, 150, drift="light=0.5@0")
    server = serve(engine, settings, port=0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        server.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    items = families["inspection_items"]
    sim = [s for s in items.samples if s.labels["station"] == "sim" and s.name.endswith("_total")]
    assert sum(s.value for s in sim) == 250
    assert {s.labels["decided_by"] for s in sim} >= {"human", "model"}
    level = [
        s for s in families["inspection_automation_level"].samples if s.labels["station"] == "sim"
    ]
    assert level[0].labels["level"] == "assist" and level[0].value == 2
    latency = families["inspection_model_latency_seconds"]
    assert any(s.name.endswith("_bucket") and s.labels["le"] == "+Inf" for s in latency.samples)
    fails = [
        s
        for s in families["inspection_alarms_open"].samples
        if s.labels == {"station": "sim", "severity": "fail"}
    ]
    assert fails[0].value >= 1
    scores = families["inspection_drift_score"].samples
    assert any(s.labels["check"] == "input.brightness" and s.value >= 0.2 for s in scores)
    # no per-item label anywhere
    assert not any("item" in k for f in families.values() for s in f.samples for k in s.labels)


def test_metrics_caught_up_since_the_last_scrape_equal_a_fresh_read(line):
    """A collector keeps the history's counters as running totals and reads only newer rows:
    new items, an old item's new final disposition, an error answer, later decisions."""
    from prometheus_client import generate_latest

    from db.models import Adjudication, Disposition, Prediction, Slot
    from db.repo import add_operator, final_disposition, record_adjudication
    from station.metrics import registry_for

    counted = {
        "inspection_items",
        "inspection_model_errors",
        "inspection_model_latency_seconds",
        "inspection_decision_seconds",
    }

    def samples(registry):
        text = generate_latest(registry).decode()
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in text_string_to_metric_families(text)
            if f.name in counted
            for s in f.samples
        )

    settings, engine = line
    with session_scope(engine) as s:  # an error answer already counted by the first scrape
        s.add(Prediction(item_id=3, slot=Slot.champion, error="timeout", latency_ms=5000.0))
    kept = registry_for(engine, settings)
    first = samples(kept)
    run(settings, engine, Level.partial, 40)
    with session_scope(engine) as s:
        before = final_disposition(session=s, item_id=1)
        assert isinstance(before, Disposition) and before.decided_by != "adjudication"
        qa = add_operator(session=s, name="qa", role=Role.qa_lead, secret_hash="x")
        flipped = "ok" if before.final_label != "ok" else "scratch"
        record_adjudication(
            session=s,
            adjudication=Adjudication(item_id=1, operator_id=qa.id, label=flipped, reason_code="t"),
            level=Level.partial,
        )
        s.add(Prediction(item_id=2, slot=Slot.champion, error="timeout", latency_ms=5000.0))
    caught_up = samples(kept)
    fresh = samples(registry_for(engine, settings))
    # sums of sums add in another order: equal to 1e-9
    assert [s[:2] for s in caught_up] == [s[:2] for s in fresh] and caught_up != first
    assert all(
        abs(a[2] - b[2]) <= 1e-9 * max(1.0, abs(b[2]))
        for a, b in zip(caught_up, fresh, strict=True)
    )
    items = {
        (dict(k)["decided_by"], dict(k)["outcome"]): v
        for n, k, v in caught_up
        if n.endswith("items_total")
    }
    assert sum(items.values()) == 140
    assert items[("adjudication", "pass" if flipped == "ok" else "fail")] == 1
    errors = [v for n, _k, v in caught_up if n == "inspection_model_errors_total"]
    assert errors == [2.0]


def test_a_scrape_that_fails_half_way_leaves_the_running_totals_as_they_were(line, monkeypatch):
    from prometheus_client import generate_latest

    from station import metrics
    from station.metrics import registry_for

    def totals(registry):
        text = generate_latest(registry).decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        up = fams["inspection_record_up"].samples[0].value
        if "inspection_items" not in fams:
            return up, None
        return up, sum(
            s.value for s in fams["inspection_items"].samples if s.name.endswith("_total")
        )

    settings, engine = line
    kept = registry_for(engine, settings)
    assert totals(kept) == (1.0, 100)
    run(settings, engine, Level.partial, 30)
    real = metrics._add_histogram

    def went_away(*a):  # after the new items were counted: the database goes away
        raise RuntimeError("database went away")

    monkeypatch.setattr(metrics, "_add_histogram", went_away)
    assert totals(kept) == (0.0, None)
    monkeypatch.setattr(metrics, "_add_histogram", real)
    assert totals(kept) == (1.0, 130)


def test_metrics_read_everything_again_when_counted_rows_are_gone(line):
    """A backup restored under a running station: the ids past the marks are reused by other
    rows, which running totals would miss; the collector notices and reads the record whole."""
    from prometheus_client import generate_latest

    from station.metrics import registry_for

    def items(registry):
        text = generate_latest(registry).decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        return sorted(
            (tuple(sorted(s.labels.items())), s.value)
            for s in fams["inspection_items"].samples
            if s.name.endswith("_total")
        )

    settings, engine = line
    kept = registry_for(engine, settings)
    assert sum(v for _, v in items(kept)) == 100
    with engine.begin() as conn:  # the last 20 items as if never written
        for table in ("disposition", "prediction", "human_decision", "adjudication_request"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE item_id > 80")
        conn.exec_driver_sql("DELETE FROM item WHERE id > 80")
    run(settings, engine, Level.partial, 20)  # their ids again, other rows
    assert items(kept) == items(registry_for(engine, settings))
    assert sum(v for _, v in items(kept)) == 100


def test_metrics_serve_counts_what_a_station_writes_after_its_first_scrape(line, tmp_path):
    """`station metrics serve` in its own process beside a station that goes on writing: each
    scrape counts every item once, the later ones read only what is new."""
    import socket
    import subprocess
    import sys
    import time

    settings, engine = line
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    args = ["-m", "station", "metrics", "serve", "--db", url, "--port", str(port)]
    server = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL)

    def items_total() -> float:
        for _ in range(300):  # the server needs a moment to start
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("station metrics serve did not answer within 30 s")
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        return sum(s.value for s in fams["inspection_items"].samples if s.name.endswith("_total"))

    try:
        assert items_total() == 100
        run(settings, engine, Level.partial, 25)
        assert items_total() == 125
        assert items_total() == 125
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_round_on_a_station_without_items_says_why_it_did_not_check(tmp_path):
    settings = settings_at(tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'empty.db'}")
    from station.pipeline.testing import ensure_station

    sid = ensure_station(engine, "empty")
    result = check_station(engine, settings, sid)
    assert result.status == "no items yet" and result.checks == []


def test_a_running_station_adds_its_own_process_gauges(tmp_path):
    from prometheus_client import generate_latest

    from station.metrics import registry_for, station_gauges
    from station.pipeline.testing import make_rig

    rig = make_rig(tmp_path, level=Level.shadow)
    registry = registry_for(rig.engine, rig.settings, live=lambda: station_gauges(rig.core))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert families["inspection_queue_depth"].samples[0].value == 0
    assert families["inspection_shadow_dropped"].samples[0].name.endswith("_total")
    assert families["inspection_process_max_resident_bytes"].samples[0].value > 10e6
    assert families["inspection_record_up"].samples[0].value == 1


def _sample(rng, n, *, brightness=100.0, defect_share=0.3, errors=0, disagree=0.05):
    from station.monitor import Sample

    s = Sample(item_ids=list(range(n)), stats={"brightness": list(rng.normal(brightness, 10, n))})
    s.predicted = n
    s.errors = errors
    s.defects = int(round((n - errors) * defect_share))
    s.confidence = list(np.clip(rng.normal(0.95, 0.03, n - errors), 0, 1))
    s.disagreement = [int(v) for v in rng.random(n) < disagree]
    return s


def test_each_check_fails_on_its_own_kind_of_change():
    """Output and concept checks on windows built to differ in one way each."""
    from station.monitor import run_checks

    rng = np.random.default_rng(5)
    m = MonitorSettings()
    ref = _sample(rng, 500)

    def verdicts(win):
        return {c.check: c.verdict for c in run_checks(ref, win, m, new_items=win)}

    same = verdicts(_sample(rng, 500))
    assert {v for k, v in same.items() if not k.startswith("embedding")} <= {"ok", "skipped"}
    assert verdicts(_sample(rng, 500, defect_share=0.45))["output.defect_rate"] == "fail"
    assert verdicts(_sample(rng, 500, errors=40))["output.errors"] == "fail"  # 8% errors
    # inspectors now call defects the model does not: disagreement 5% -> 30% (concept drift)
    assert verdicts(_sample(rng, 500, disagree=0.30))["concept.disagreement"] == "fail"
    assert verdicts(_sample(rng, 500, brightness=106))["input.brightness"] in ("warn", "fail")


def test_bad_drift_specs_are_refused_in_one_line_before_anything_runs(cli, tmp_path):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    for spec, words in (
        ("foo=1", "expected KNOB=VALUE"),
        ("light=9@3", "light must be in [0.05, 3]"),
        ("light=0.5@x", "onset after '@' must be an item number"),
        ("light=0.5@-3", "onset after '@' must be an item number"),
        ("", "name at least one knob"),
    ):
        out = cli("simulate", "--items", "5", "--drift", spec, "--db", db)
        assert out.code == 2, (spec, out.err)
        lines = [ln for ln in out.err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], out.err
    assert not (tmp_path / "x.db").exists()  # nothing written


def test_the_dashboard_without_a_display_says_so_and_what_to_use_instead(cli, tmp_path):
    out = cli(
        "dashboard",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        env={"DISPLAY": "", "WAYLAND_DISPLAY": "", "QT_QPA_PLATFORM": ""},
    )
    assert out.code == 2 and out.err.startswith("error: no display")
    assert "station metrics serve" in out.err and not (tmp_path / "x.db").exists()
