"""The report: SQL aggregates agree with the per-item CSV and with hand counts; bad input is calm."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from review_records import LABELS, T0, Records, random_records
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.models import Level, Slot
from review.errors import FilterError, ReportFormatError, UnknownLevel
from review.query import CSV_COLUMNS, ReportFilters
from review.report import STAGES, build_report, dumps, write_csv, write_report


def _report(engine: Engine, **filters: Any) -> dict[str, Any]:
    rep = build_report(engine, ReportFilters.parse(**filters), labels=LABELS)
    json.loads(dumps(rep))  # strict JSON: dumps raises on NaN or infinity
    return rep


def _csv(engine: Engine, **filters: Any) -> list[dict[str, str]]:
    buf = io.StringIO()
    write_csv(engine, ReportFilters.parse(**filters), buf)
    buf.seek(0)
    return list(csv.DictReader(buf))


FILTER_CASES = [
    {},
    {"station": "A1"},
    {"evidence_only": True},
    {"level": "assist"},
    {"inspector": "minh"},
    {"since": "2026-11-03", "until": "2026-11-03"},
    {"model_version": "defect:v1"},
]


@pytest.fixture(scope="module")
def mixed_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One mixed record (levels, blind, audits, golden, adjudications, undo) for many filters."""
    from db.engine import make_engine
    from db.migrate import upgrade

    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('mixed') / 'mixed.db'}")
    upgrade(eng)
    with Session(eng) as session:
        random_records(Records(session), 400, seed=1)
        session.commit()
    yield eng
    eng.dispose()


@pytest.mark.parametrize("filters", FILTER_CASES, ids=lambda f: ",".join(f) or "none")
def test_json_equals_what_the_csv_rows_add_up_to(mixed_engine: Engine, filters: dict) -> None:
    engine = mixed_engine
    rep = _report(engine, **filters)
    rows = _csv(engine, **filters)
    assert list(rows[0].keys()) == CSV_COLUMNS
    every = [r for r in rows if r["human_label"] and r["model_label"]]
    assert rep["counts"] == {
        "items": len(rows),
        "paired": len(every),
        "evidence": sum(r["evidence"] == "1" for r in every),
        "evidence_uniform": sum(
            r["evidence"] == "1" and r["audit"] == "0" and r["golden"] == "0" for r in every
        ),
        "audited": sum(r["evidence"] == "1" and r["audit"] == "1" for r in every),
    }
    labels = rep["matrix"]["labels"]
    cells_all = Counter((r["human_label"], r["model_label"]) for r in every)
    expected_all = [[cells_all[(h, m)] for m in labels] for h in labels]
    assert rep["by_basis"]["all"]["matrix"]["counts"] == expected_all
    assert rep["by_basis"]["all"]["agreement"]["n"] == len(every)
    # The headline is the uniform evidence: evidence rows that are neither audits nor golden.
    assert rep["basis"].startswith("evidence only")
    paired = [r for r in every if r["evidence"] == "1" and r["audit"] == "0" and r["golden"] == "0"]
    cells = Counter((r["human_label"], r["model_label"]) for r in paired)
    expected = [[cells[(h, m)] for m in labels] for h in labels]
    assert rep["matrix"]["counts"] == expected
    pf = Counter(
        ("human_pass" if r["human_label"] == "ok" else "human_fail")
        + ("_model_pass" if r["model_label"] == "ok" else "_model_fail")
        for r in paired
    )
    assert rep["pass_fail"] == {
        "both_pass": pf["human_pass_model_pass"],
        "both_fail": pf["human_fail_model_fail"],
        "human_fail_model_pass": pf["human_fail_model_pass"],
        "human_pass_model_fail": pf["human_pass_model_fail"],
    }
    ref = [(r["adjudicated_label"] or r["human_label"], r["model_label"]) for r in paired]
    passes = [x for x in ref if x[1] == "ok"]
    defects = [x for x in ref if x[0] != "ok"]
    oks = [x for x in ref if x[0] == "ok"]
    assert (rep["escape_rate"]["k"], rep["escape_rate"]["n"]) == (
        sum(x[0] != "ok" for x in passes),
        len(passes),
    )
    assert (rep["miss_rate"]["k"], rep["miss_rate"]["n"]) == (
        sum(x[1] == "ok" for x in defects),
        len(defects),
    )
    assert (rep["false_reject_rate"]["k"], rep["false_reject_rate"]["n"]) == (
        sum(x[1] != "ok" for x in oks),
        len(oks),
    )
    assert rep["agreement"]["k"] == sum(
        h == m for h, m in ((r["human_label"], r["model_label"]) for r in paired)
    )
    assert sum(d["items"] for d in rep["by_day"]) == len(rows)
    assert sum(p["n_covered"] for p in rep["risk_coverage"][-1:]) == len(paired)
    by_inspector = Counter(r["inspector"] for r in every if r["inspector"])
    assert {i["inspector"]: i["paired"] for i in rep["inspectors"]} == {
        k: v for k, v in by_inspector.items()
    } | {i["inspector"]: 0 for i in rep["inspectors"] if i["inspector"] not in by_inspector}


def test_report_numbers_match_a_hand_count(engine: Engine, fill) -> None:
    def build(r: Records) -> None:
        for _ in range(6):
            r.item("ok", "ok")
        r.item("crack", "crack")
        r.item("crack", "ok")  # an escape by the model
        r.item("ok", "dent")  # a false reject
        r.item("dent", "ok", adjudicated="ok")  # adjudication sides with the model

    fill(build)
    rep = _report(engine)
    assert rep["counts"] == {
        "items": 10,
        "paired": 10,
        "evidence": 10,
        "evidence_uniform": 10,
        "audited": 0,
    }
    assert rep["pass_fail"] == {
        "both_pass": 6,
        "both_fail": 1,
        "human_fail_model_pass": 2,
        "human_pass_model_fail": 1,
    }
    assert rep["agreement"]["rate"] == pytest.approx(0.7)
    # Reference: 8 ok (7 passed, 1 failed by the model), 2 defects (1 passed, 1 caught).
    assert "not the truth" in rep["escape_rate"].pop("reference")  # each rate says against what
    assert rep["escape_rate"] == pytest.approx(
        {"rate": 1 / 8, "upper95": rep["escape_rate"]["upper95"], "n": 8, "k": 1}
    )
    assert rep["miss_rate"]["rate"] == pytest.approx(1 / 2)
    assert rep["false_reject_rate"]["rate"] == pytest.approx(1 / 8)
    assert rep["mcnemar"]["b"] == 1 and rep["mcnemar"]["c"] == 0


def test_corrected_decision_replaces_the_one_it_supersedes(engine: Engine, fill) -> None:
    def build(r: Records) -> None:
        first = r.item("crack", "ok")
        r.correct(first, "ok")

    fill(build)
    rep = _report(engine)
    assert rep["counts"]["paired"] == 1
    assert rep["pass_fail"]["both_pass"] == 1


def test_assist_items_with_suggestion_shown_are_reported_but_not_evidence(
    engine: Engine, fill
) -> None:
    def build(r: Records) -> None:
        for _ in range(5):
            r.item("ok", "ok", level=Level.assist)  # shown
        for _ in range(3):
            r.item("crack", "ok", level=Level.assist, blind=True)  # blind check

    fill(build)
    rep = _report(engine)
    assert rep["counts"] == {
        "items": 8,
        "paired": 8,
        "evidence": 3,
        "evidence_uniform": 3,
        "audited": 0,
    }
    assert rep["agreement"]["n"] == 3 and rep["agreement"]["rate"] == 0.0  # the blind checks
    assert rep["by_basis"]["evidence_uniform"]["agreement"]["n"] == 3
    assert rep["by_basis"]["not_evidence"]["agreement"]["n"] == 5
    assert rep["by_basis"]["all"]["agreement"]["n"] == 8
    assert "not used by gates" in rep["by_basis"]["all"]["basis"]
    assert rep["automation_bias"]["shown"]["rate"] == 1.0
    assert rep["automation_bias"]["blind"]["rate"] == 0.0
    assert _report(engine, evidence_only=True)["counts"]["items"] == 3


def test_model_version_filter_judges_a_challenger_on_its_shadow_predictions(
    engine: Engine, fill
) -> None:
    def build(r: Records) -> None:
        r.item("crack", "ok", version="v1")
        r.item("crack", "crack", version="v2", slot=Slot.challenger)

    fill(build)
    assert _report(engine)["counts"]["paired"] == 1  # champion only
    rep = _report(engine, model_version="defect:v2")
    assert rep["counts"]["paired"] == 1 and rep["pass_fail"]["both_fail"] == 1


def test_empty_database_gives_a_report_with_a_message(engine: Engine) -> None:
    rep = _report(engine)
    assert rep["counts"] == {
        "items": 0,
        "paired": 0,
        "evidence": 0,
        "evidence_uniform": 0,
        "audited": 0,
    }
    assert rep["messages"] == ["the database holds no items yet"]
    assert rep["agreement"]["rate"] is None and rep["kappa"]["value"] is None
    assert rep["escape_rate"]["upper95"] is None
    assert rep["risk_coverage"] == [] and rep["inspectors"] == []
    # No station yet: the gates block says gates are per station instead of passing anything.
    assert "checks" not in rep["gates"] and "per station" in rep["gates"]["note"]


def test_filters_that_match_nothing_say_so(engine: Engine, fill) -> None:
    fill(lambda r: random_records(r, 30))
    rep = _report(engine, station="ZZ", model_version="nope:v9", inspector="ghost")
    assert rep["counts"]["items"] == 0
    text = " ".join(rep["messages"])
    assert "'ZZ'" in text and "'nope:v9'" in text and "'ghost'" in text and "no items match" in text


def test_items_without_model_labels_are_counted_but_not_paired(engine: Engine, fill) -> None:
    fill(lambda r: [r.item("ok", None, level=Level.human_only) for _ in range(4)])
    rep = _report(engine)
    assert rep["counts"]["items"] == 4 and rep["counts"]["paired"] == 0
    assert "none has both" in rep["messages"][0]


def test_one_class_only_gives_no_kappa_and_no_nan(engine: Engine, fill) -> None:
    fill(lambda r: [r.item("ok", "ok", confidence=0.99) for _ in range(20)])
    rep = _report(engine)
    assert rep["kappa"]["value"] is None
    assert rep["miss_rate"]["rate"] is None and rep["escape_rate"]["rate"] == 0.0
    assert any("kappa does not exist" in m for m in rep["messages"])


def test_bad_filters_are_refused_with_what_was_expected() -> None:
    with pytest.raises(UnknownLevel, match="expected one of human_only, shadow"):
        ReportFilters.parse(level="semi")
    with pytest.raises(FilterError, match="YYYY-MM-DD"):
        ReportFilters.parse(since="yesterday")
    with pytest.raises(FilterError, match="not before"):
        ReportFilters.parse(since="2026-11-05", until="2026-11-01")


def test_since_and_until_bound_capture_time_with_whole_days(engine: Engine, fill) -> None:
    def build(r: Records) -> None:
        for d in range(3):
            r.item("ok", "ok", when=T0 + timedelta(days=d))

    fill(build)
    assert _report(engine, since="2026-11-03", until="2026-11-03")["counts"]["items"] == 1
    assert _report(engine, until="2026-11-03")["counts"]["items"] == 2
    assert _report(engine, level="partial")["counts"]["items"] == 0


def test_unsupported_format_is_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ReportFormatError, match="expected one of json, csv, html"):
        write_report(engine, ReportFilters(), "docx", tmp_path / "r.docx", labels=LABELS)


def test_html_report_opens_with_no_external_files(engine: Engine, fill, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((120, 200, 3), 90, np.uint8))

    def build(r: Records) -> None:
        random_records(r, 120, seed=3)
        r.item("crack", "ok", level=Level.shadow)
        r.session.flush()

    fill(build)
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE item SET image_path = 'a.png'"))
    out = tmp_path / "report.html"
    write_report(engine, ReportFilters(), "html", out, labels=LABELS, image_root=images)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<svg" in page and "data:image/jpeg;base64," in page
    lowered = page.lower()
    for external in ("<script", "<link", "src='http", 'src="http', "@import"):
        assert external not in lowered
    import re

    assert not re.findall(r"url\((?!#)", lowered)  # only references inside the page (SVG clips)

    assert all(s.startswith("data:") for s in re.findall(r"src='([^']*)'", page))


def test_html_report_of_empty_database_carries_the_message(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    write_report(engine, ReportFilters(), "html", out, labels=LABELS)
    page = out.read_text(encoding="utf-8")
    assert "the database holds no items yet" in page and "No risk/coverage curve" in page


def test_the_report_tells_each_stage_before_it_runs_then_what_it_writes(
    mixed_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `station report` shows on a terminal while a large report is built."""
    import review.report as R

    told: list[str] = []
    real_gates = R._gates

    def gates(*args: Any) -> Any:
        told.append("(gates computed)")
        return real_gates(*args)

    monkeypatch.setattr(R, "_gates", gates)
    filters = ReportFilters(station="A1")
    write_report(
        mixed_engine, filters, "json", tmp_path / "r.json", labels=LABELS, on_stage=told.append
    )
    assert told == [*STAGES[:4], "(gates computed)", *STAGES[4:], "writing json"]
    told.clear()
    write_report(
        mixed_engine, filters, "csv", tmp_path / "r.csv", labels=LABELS, on_stage=told.append
    )
    assert told == ["writing csv"]
    quiet = build_report(mixed_engine, filters, labels=LABELS)
    told_report = build_report(mixed_engine, filters, labels=LABELS, on_stage=told.append)
    quiet.pop("generated_at"), told_report.pop("generated_at")
    assert told_report == quiet  # telling the stages changes nothing in the report


def test_report_leaves_no_temporary_table_behind(engine: Engine, fill) -> None:
    from sqlalchemy import text

    fill(lambda r: [r.item("ok", "ok") for _ in range(3)])
    with engine.connect() as conn:
        build_report(conn, ReportFilters(), labels=LABELS)
        build_report(conn, ReportFilters(evidence_only=True), labels=LABELS)
        temp = conn.execute(text("SELECT name FROM sqlite_temp_master WHERE type = 'table'")).all()
    assert temp == []


def test_agreement_with_golden_counts_only_golden_samples(engine: Engine, fill) -> None:
    def build(r: Records) -> None:
        for _ in range(5):  # the synthetic line knows every item's truth: not golden samples
            r.item("crack", "ok", ground_truth="ok")
        r.item("ok", "ok", ground_truth="ok", golden=True)
        r.item("dent", "dent", ground_truth="crack", golden=True)

    fill(build)
    (lan,) = _report(engine)["inspectors"]
    assert lan["agreement_with_golden"]["n"] == 2 and lan["agreement_with_golden"]["k"] == 1


def test_audits_are_reported_apart_from_the_uniform_headline(engine: Engine, fill) -> None:
    def build(r: Records) -> None:
        for _ in range(4):
            r.item("crack", "ok", confidence=0.7)  # shadow: uniform evidence, escapes
        for _ in range(6):
            r.item("ok", "ok", confidence=0.99, level=Level.partial, audit=True)

    fill(build)
    rep = _report(engine)
    assert rep["counts"]["evidence"] == 10 and rep["counts"]["evidence_uniform"] == 4
    assert rep["counts"]["audited"] == 6
    assert rep["escape_rate"]["k"] == rep["escape_rate"]["n"] == 4  # not diluted by audits
    assert rep["by_basis"]["audits"]["escape_rate"]["n"] == 6
    assert rep["risk_coverage"][-1]["n_covered"] == 4
    assert rep["gates"]["numbers"]["audited"] == 6
    assert rep["gates"]["numbers"]["paired"] == 4


def test_writing_to_a_folder_is_refused_before_anything_is_written(
    engine: Engine, tmp_path: Path
) -> None:
    from review.errors import ReviewError

    with pytest.raises(ReviewError, match="is a folder"):
        write_report(engine, ReportFilters(), "json", tmp_path, labels=LABELS)
    with pytest.raises(ReviewError, match="does not exist"):
        write_report(
            engine, ReportFilters(), "json", tmp_path / "missing" / "r.json", labels=LABELS
        )
    assert list(tmp_path.parent.glob(tmp_path.name + ".partial")) == []
    assert not (tmp_path / "missing").exists()


def test_on_the_synthetic_line_each_rate_shows_the_known_truth_beside_it(
    engine: Engine, fill
) -> None:
    def build(r: Records) -> None:
        for _ in range(5):  # the inspector fails good phones the model passes: "escapes"
            r.item("scratch", "ok", ground_truth="ok")
        for _ in range(5):
            r.item("ok", "ok", ground_truth="ok")

    fill(build)
    esc = _report(engine)["escape_rate"]
    assert esc["k"] == 5  # against the inspector
    assert esc["known_truth"]["k"] == 0 and esc["known_truth"]["n"] == 10
    assert "synthetic line" in esc["known_truth"]["reference"]


@pytest.mark.parametrize("filters", [{}, {"station": "A1"}, {"model_version": "defect:v1"}])
def test_latest_rows_grouped_as_on_postgresql_give_the_same_report(
    mixed_engine: Engine, filters: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite looks each item's latest rows up; PostgreSQL groups each table by item first
    (review.query.join_latest). The grouped form, run here on SQLite, gives the same report."""
    import review.query as Q
    from review import summary

    monkeypatch.setattr(summary, "applies", lambda conn, filters: False)  # the frame, every time
    looked_up = _report(mixed_engine, **filters)
    monkeypatch.setattr(Q, "looked_up", lambda conn: False)
    grouped = _report(mixed_engine, **filters)
    for rep in (looked_up, grouped):
        rep.pop("generated_at", None)
    assert looked_up["counts"]["items"] > 0 and looked_up == grouped
