"""The review window's data layer, headless: cells, the items behind them, adjudication, gate, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from review_records import CLASSES, LABELS, Records, random_records
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from db.models import Adjudication, DecidedBy, Disposition, Level, Operator, Role
from db.repo import final_disposition
from review import browse
from review.errors import ReportFormatError
from review.query import ReportFilters
from review.report import build_report


def _operator(engine: Engine, name: str, role: Role) -> Operator:
    with Session(engine, expire_on_commit=False) as s:
        r = Records(s)
        op_id = r.operator(name, role)
        s.commit()
        op = s.get(Operator, op_id)
        assert op is not None
        return op


def _matrix(engine: Engine, **filters) -> browse.CellMatrix:
    with engine.connect() as conn:
        return browse.matrix_cells(conn, ReportFilters.parse(**filters), labels=LABELS)


def _cell(engine: Engine, human: str, model: str, **filters) -> list[browse.ItemRow]:
    with engine.connect() as conn:
        return browse.items_in_cell(conn, ReportFilters.parse(**filters), human, model)


@pytest.mark.parametrize(
    "filters", [{}, {"station": "B2"}, {"evidence_only": True}, {"level": "assist"}]
)
def test_cells_add_up_to_the_report_matrix(engine: Engine, fill, filters: dict) -> None:
    fill(lambda r: random_records(r, 300, seed=3))
    cells = _matrix(engine, **filters)
    report = build_report(engine, ReportFilters.parse(**filters), labels=LABELS)
    # The window's matrix is over all paired items (the report's headline is evidence only).
    assert cells.labels == report["matrix"]["labels"]
    assert cells.counts == report["by_basis"]["all"]["matrix"]["counts"]
    assert cells.total == cells.paired == report["counts"]["paired"] > 0
    assert cells.items == report["counts"]["items"]
    assert cells.messages == []


def test_every_cell_lists_exactly_the_items_it_counts(engine: Engine, fill) -> None:
    fill(lambda r: random_records(r, 250, seed=5))
    cells = _matrix(engine)
    seen: set[int] = set()
    for h in cells.labels:
        for m in cells.labels:
            rows = _cell(engine, h, m)
            assert len(rows) == cells.count(h, m)
            assert all(r.human_label == h and r.model_label == m for r in rows)
            seen |= {r.item_id for r in rows}
    assert len(seen) == cells.paired


def test_items_in_cell_are_the_right_ones_and_follow_the_filters(engine: Engine, fill) -> None:
    ids: dict[str, list[int]] = {"a1": [], "b2": [], "other": []}

    def build(r: Records) -> None:
        ids["a1"] += [r.item("ok", "scratch", station="A1") for _ in range(3)]
        ids["b2"] += [r.item("ok", "scratch", station="B2") for _ in range(2)]
        ids["other"] += [r.item("scratch", "ok", station="A1"), r.item("ok", "ok", station="A1")]
        r.item("ok", None, station="A1")  # unpaired: in no cell
        r.item(None, "scratch", station="A1")

    fill(build)
    assert {r.item_id for r in _cell(engine, "ok", "scratch")} == set(ids["a1"] + ids["b2"])
    assert {r.item_id for r in _cell(engine, "ok", "scratch", station="A1")} == set(ids["a1"])
    assert _cell(engine, "crack", "dent") == []
    row = _cell(engine, "scratch", "ok")[0]
    assert (row.item_id, row.station, row.inspector) == (ids["other"][0], "A1", "lan")
    assert row.disagrees and row.model_confidence == pytest.approx(0.9)
    assert row.level == "shadow" and row.evidence and row.basis == "model not shown"


def test_item_list_puts_unadjudicated_first_and_respects_the_limit(engine: Engine, fill) -> None:
    def build(r: Records) -> None:
        r.item("ok", "dent", adjudicated="dent")
        for _ in range(4):
            r.item("ok", "dent")

    fill(build)
    with engine.connect() as conn:
        rows = browse.items(conn, ReportFilters(), disagreements_only=True)
        assert [r.adjudicated_label for r in rows] == [None, None, None, None, "dent"]
        assert len(browse.items(conn, ReportFilters(), disagreements_only=True, limit=2)) == 2


def test_adjudication_writes_an_adjudication_and_the_final_disposition(
    engine: Engine, fill
) -> None:
    box: dict[str, int] = {}
    fill(lambda r: box.setdefault("id", r.item("ok", "scratch", level=Level.assist)))
    lead = _operator(engine, "quynh", Role.qa_lead)
    browse.adjudicate(
        engine,
        item_id=box["id"],
        operator=lead,
        label="scratch",
        reason_code="human_missed",
        note=" faint line near the camera ",
        labels=LABELS,
    )
    with Session(engine) as s:
        adj = s.exec(select(Adjudication)).one()
        assert (adj.item_id, adj.operator_id, adj.label, adj.reason_code, adj.note) == (
            box["id"],
            lead.id,
            "scratch",
            "human_missed",
            "faint line near the camera",
        )
        final = final_disposition(session=s, item_id=box["id"])
        assert final is not None
        assert (final.final_label, final.decided_by, final.level) == (
            "scratch",
            DecidedBy.adjudication,
            Level.assist,
        )
        assert len(s.exec(select(Disposition)).all()) == 2  # the human's stays in the history
    row = _cell(engine, "ok", "scratch")[0]
    assert (row.adjudicated_label, row.final_label) == ("scratch", "scratch")


@pytest.mark.parametrize("role", [Role.engineer, Role.inspector])
def test_a_non_qa_lead_is_refused_and_nothing_is_written(engine: Engine, fill, role: Role) -> None:
    box: dict[str, int] = {}
    fill(lambda r: box.setdefault("id", r.item("ok", "scratch")))
    who = _operator(engine, "eng", role)
    with pytest.raises(browse.AdjudicationRefused, match="needs qa_lead"):
        browse.adjudicate(
            engine,
            item_id=box["id"],
            operator=who,
            label="ok",
            reason_code="model_false_reject",
            labels=LABELS,
        )
    with Session(engine) as s:
        assert s.exec(select(Adjudication)).all() == []
        assert len(s.exec(select(Disposition)).all()) == 1


@pytest.mark.parametrize(
    ("label", "reason", "item", "message"),
    [
        ("scuff", "ambiguous", None, "not a class"),
        ("ok", "because", None, "reason code 'because' is unknown"),
        ("ok", "ambiguous", 999, "no item #999"),
    ],
)
def test_adjudication_refuses_what_it_cannot_record(
    engine: Engine, fill, label: str, reason: str, item: int | None, message: str
) -> None:
    box: dict[str, int] = {}
    fill(lambda r: box.setdefault("id", r.item("ok", "scratch")))
    lead = _operator(engine, "quynh", Role.qa_lead)
    with pytest.raises(browse.AdjudicationRefused, match=message):
        browse.adjudicate(
            engine,
            item_id=item or box["id"],
            operator=lead,
            label=label,
            reason_code=reason,
            labels=LABELS,
        )


def test_an_empty_database_and_unmatched_filters_say_why_instead_of_failing(
    engine: Engine, fill
) -> None:
    empty = _matrix(engine)
    assert empty.total == 0 and len(empty.counts) == len(CLASSES)
    assert any("holds no items yet" in m for m in empty.messages)
    fill(lambda r: [r.item("ok", "ok"), r.item("ok", None)])
    nothing = _matrix(engine, station="Z9")
    assert any("no station is named 'Z9'" in m for m in nothing.messages)
    assert any("no items match these filters" in m for m in nothing.messages)
    with engine.connect() as conn:
        assert browse.items(conn, ReportFilters(station="Z9")) == []
        status = browse.gate_status(conn, ReportFilters(), labels=LABELS)
    assert status.station == "A1" and status.next_level == "shadow" and status.passed


def test_unpaired_items_are_counted_but_explained(engine: Engine, fill) -> None:
    fill(lambda r: [r.item("ok", None), r.item(None, "dent")])
    cells = _matrix(engine)
    assert (cells.items, cells.paired, cells.total) == (2, 0, 0)
    assert any("none has both a human decision and a model label" in m for m in cells.messages)


def test_gate_status_names_the_failing_checks(engine: Engine, fill) -> None:
    def build(r: Records) -> None:
        for i in range(30):
            r.item("ok" if i % 3 else "scratch", "ok" if i % 3 else "scratch", station="A1")
        r.item("ok", "ok", station="B2")

    fill(build)
    with Session(engine) as s:
        from db.models import LevelChange

        s.add(
            LevelChange(
                station_id=1, from_level=Level.human_only, to_level=Level.shadow, reason="t"
            )
        )
        s.commit()
    with engine.connect() as conn:
        assert (
            browse.gate_status(conn, ReportFilters(), labels=LABELS).passed is None
        )  # two stations: which?
        status = browse.gate_status(conn, ReportFilters(station="A1"), labels=LABELS)
    assert (status.level, status.next_level, status.passed) == ("shadow", "assist", False)
    assert "paired unbiased items 30 (needs >= 500)" in status.text


def test_filter_choices_list_what_the_database_holds(engine: Engine, fill) -> None:
    fill(lambda r: [r.item("ok", "ok", station="B2", inspector="minh", version="v7")])
    with engine.connect() as conn:
        c = browse.filter_choices(conn)
    assert (c.stations, c.inspectors, c.model_versions) == (["B2"], ["minh"], ["defect:v7"])
    assert c.levels[0] == "human_only"


def test_export_follows_the_file_suffix(engine: Engine, fill, tmp_path: Path) -> None:
    fill(lambda r: random_records(r, 60, seed=2))
    out = browse.export_report(
        engine, ReportFilters(station="A1"), tmp_path / "r.json", labels=LABELS
    )
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["filters"]["station"] == "A1" and out["counts"] == data["counts"]
    browse.export_report(engine, ReportFilters(), tmp_path / "r.html", labels=LABELS)
    assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")
    with pytest.raises(ReportFormatError, match=r"expected a file ending in \.json"):
        browse.export_report(engine, ReportFilters(), tmp_path / "r.docx", labels=LABELS)


def test_image_file_never_leaves_the_image_root(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "ab").mkdir(parents=True)
    (root / "ab" / "x.png").write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"png")
    assert browse.image_file(root, "ab/x.png") == (root / "ab" / "x.png").resolve()
    assert browse.image_file(root, "../secret.png") is None
    assert browse.image_file(root, "ab/missing.png") is None
    assert browse.image_file(root, "") is None and browse.image_file(None, "ab/x.png") is None


def test_item_detail_gives_probabilities_and_adjudication_history(engine: Engine, fill) -> None:
    box: dict[str, int] = {}
    fill(lambda r: box.setdefault("id", r.item("ok", "dent", adjudicated="dent")))
    with engine.connect() as conn:
        d = browse.item_detail(conn, box["id"])
    assert d.probabilities == {}  # the records helper stores none
    assert [(a["label"], a["by"]) for a in d.adjudications] == [("dent", "qa")]


def test_item_detail_names_the_model_version_that_judged_the_item(engine: Engine, fill) -> None:
    box: dict[str, int] = {}
    fill(
        lambda r: box.update(judged=r.item("ok", "dent", version="v2"), unjudged=r.item("ok", None))
    )
    with engine.connect() as conn:
        judged = browse.item_detail(conn, box["judged"])
        unjudged = browse.item_detail(conn, box["unjudged"])
    assert judged.model is not None and judged.model.spec == "defect:v2"
    assert judged.model.sha256 == "v2" * 8 and judged.p_defect == pytest.approx(0.9)
    assert unjudged.model is None and unjudged.p_defect is None


@pytest.mark.parametrize(
    ("human", "model", "label", "reason"),
    [
        ("ok", "scratch", "scratch", "human_missed"),
        ("scratch", "ok", "scratch", "model_missed"),
        ("dent", "ok", "ok", "human_false_reject"),
        ("ok", "dent", "ok", "model_false_reject"),
        ("dent", "scratch", "scratch", "human_false_reject"),  # named the wrong defect
        ("ok", "dent", "stain", None),  # both wrong: judgement
        ("ok", "ok", "ok", "confirmed"),  # a truth-sample item where both were right
    ],
)
def test_suggested_reason_follows_from_who_was_wrong(
    human: str, model: str, label: str, reason: str | None
) -> None:
    assert browse.suggest_reason(human, model, label) == reason
    assert reason is None or reason in browse.REASON_CODES


def test_the_adjudication_queue_lists_the_truth_sample_and_challenges(engine: Engine, fill) -> None:
    """Items queued for adjudication (paired or not) are listed until adjudicated, and the
    adjudication records why the item was chosen."""
    from db.models import AdjudicationRequest, ChosenFor

    ids: list[int] = []

    def build(r: Records) -> None:
        for _ in range(6):
            ids.append(r.item("ok", "ok"))

    fill(build)
    with Session(engine) as s:
        s.add(
            AdjudicationRequest(
                item_id=ids[1], station_id=1, reason="truth_sample", probability=0.05
            )
        )
        s.add(AdjudicationRequest(item_id=ids[4], station_id=1, reason="challenge"))
        s.commit()
    with engine.connect() as conn:
        queued = browse.items(conn, ReportFilters(), requested=True)
        assert [r.item_id for r in queued] == [ids[1], ids[4]]
        assert browse.matrix_cells(conn, ReportFilters(), labels=LABELS).awaiting == 2
    qa = _operator(engine, "quynh", Role.qa_lead)
    browse.adjudicate(
        engine, item_id=ids[1], operator=qa, label="ok", reason_code="confirmed", labels=LABELS
    )
    with Session(engine) as s:
        adj = s.exec(select(Adjudication).where(Adjudication.item_id == ids[1])).one()
    assert adj.chosen_for == ChosenFor.truth_sample.value
    with engine.connect() as conn:
        assert [r.item_id for r in browse.items(conn, ReportFilters(), requested=True)] == [ids[4]]
