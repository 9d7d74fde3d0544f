"""`station teach`: the adjudication queue that teaches the next model (review/teach.py,
station/teach.py); every pick recorded with why, none mistaken for the random truth sample."""

from __future__ import annotations

from datetime import timedelta

import pytest
from review_records import T0, Records
from sqlmodel import Session, select

from db.models import AdjudicationRequest, Alarm, Operator, Role
from review.browse import awaiting_adjudication, chosen_for_item, item_detail, matrix_cells
from review.query import ReportFilters
from station.errors import AuthError
from station.settings import Settings
from station.teach import queue_teaching


def _operator(engine, role: Role) -> Operator:
    with Session(engine) as s:
        op = s.exec(select(Operator).where(Operator.role == role)).first()
        s.expunge(op)
        return op


@pytest.fixture
def line(engine, fill):
    ids: dict[str, list[int]] = {"sure": [], "unsure": [], "disagree": [], "rare": [], "late": []}

    def build(r: Records) -> None:
        r.operator("qa", Role.qa_lead)
        r.operator("lan", Role.inspector)
        for _ in range(30):  # plenty of verified crack/ok labels, none of missing
            r.item("ok", "ok", ground_truth="ok", confidence=0.99)
            r.item("crack", "crack", ground_truth="crack", confidence=0.99)
        for _ in range(5):
            ids["sure"].append(r.item("ok", "ok", confidence=0.999))
        for c in (0.41, 0.45, 0.5):
            ids["unsure"].append(r.item("scratch", "scratch", confidence=c))
        for _ in range(3):
            ids["disagree"].append(r.item("ok", "dent", confidence=0.97))
        for _ in range(3):
            ids["rare"].append(r.item("missing", "missing", confidence=0.98))
        r.item("ok", "scratch", adjudicated="scratch", confidence=0.6)  # settled already
        station = r.station("A1")
        r.session.add(
            Alarm(
                station_id=station,
                check="input.light",
                severity="warn",
                opened_at=T0 + timedelta(days=1),
            )
        )
        for _ in range(3):
            ids["late"].append(r.item("ok", "ok", confidence=0.95, when=T0 + timedelta(days=2)))

    fill(build)
    return ids


def test_the_queue_takes_each_kind_of_teaching_item_and_records_why(engine, line):
    qa = _operator(engine, Role.qa_lead)
    name, picks = queue_teaching(engine, Settings(), operator=qa, n=12)
    assert name == "A1" and len(picks) == 12 and len({p.item_id for p in picks}) == 12
    got = {p.item_id: p.reason for p in picks}
    assert all(got.get(i) == "low_confidence" for i in line["unsure"])
    assert [got.get(i) for i in line["disagree"]] == ["disagreement"] * 3
    assert [got.get(i) for i in line["rare"]] == ["rare_class"] * 3
    assert [got.get(i) for i in line["late"]] == ["drifted"] * 3
    with Session(engine) as s:
        reqs = s.exec(select(AdjudicationRequest)).all()
        assert sorted(r.reason for r in reqs) == sorted(f"teach:{p.reason}" for p in picks)
        assert all(r.probability == 1.0 and r.operator_id == qa.id for r in reqs)
        assert all(r.model_version_id is not None for r in reqs)  # the model each is about
        # Adjudicated, such an item is recorded as chosen to teach: never part of the truth
        # sample the escape-rate estimates rest on.
        assert chosen_for_item(s, line["rare"][0]) == "teach"
    with engine.connect() as conn:
        assert awaiting_adjudication(conn, ReportFilters()) == 12
        assert awaiting_adjudication(conn, ReportFilters(), teach_only=True) == 12
        # what the QA lead reads beside the item in the review window
        (why,) = item_detail(conn, line["rare"][0]).queued_for
        assert why == "to teach the next model (rare class; not in estimates)"
        cells = matrix_cells(conn, ReportFilters(), labels=Settings().labels)
        assert (cells.awaiting, cells.awaiting_teach) == (12, 12)
    # Nothing is queued twice; the sure, agreeing items come last of all.
    _, more = queue_teaching(engine, Settings(), operator=qa, n=100)
    assert not {p.item_id for p in more} & set(got)
    assert set(line["sure"]) <= {p.item_id for p in more}


def test_only_a_qa_lead_queues(engine, line):
    with pytest.raises(AuthError):
        queue_teaching(engine, Settings(), operator=_operator(engine, Role.inspector), n=5)


def test_the_cli_queues_and_reports_by_reason(engine, db_url, line, cli):
    from db.repo import find_operator
    from station.auth import hash_secret

    with Session(engine) as s:
        qa = find_operator(session=s, name="qa")
        qa.secret_hash = hash_secret("qa-secret-1")
        s.add(qa)
        s.commit()
    res = cli("teach", "--n", "6", "--user", "qa", "--db", db_url, input="qa-secret-1\n")
    assert res.code == 0, res.err
    assert "queued 6 items for adjudication" in res.out and "low_confidence" in res.out
