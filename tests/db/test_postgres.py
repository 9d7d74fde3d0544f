"""The same code on PostgreSQL, by URL only. Runs when STATION_TEST_PG_URL names a scratch database."""

from __future__ import annotations

import os

import pytest
from sqlmodel import Session, select

PG_URL = os.environ.get("STATION_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not PG_URL,
        reason="PostgreSQL tests need STATION_TEST_PG_URL=postgresql://USER:PASS@HOST/SCRATCH_DB",
    ),
]


def test_migrations_and_an_inspection_on_postgres() -> None:
    from sqlalchemy import text

    from db.engine import make_engine, session_scope
    from db.migrate import check, upgrade
    from db.models import DecidedBy, Disposition, HumanDecision, Item, Level, Role
    from db.repo import add_operator, get_or_create_station, record_inspection

    engine = make_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    assert check(engine) == []
    with session_scope(engine) as s:
        st = get_or_create_station(session=s, name="PG1")
        op = add_operator(session=s, name="pg", role=Role.inspector, secret_hash="x")
        record_inspection(
            session=s,
            item=Item(station_id=st.id, image_sha256="0" * 64),
            decision=HumanDecision(operator_id=op.id, label="ok"),
            disposition=Disposition(
                final_label="ok", decided_by=DecidedBy.human, level=Level.shadow
            ),
        )
    with Session(engine) as s:
        assert s.exec(select(Item)).one().image_sha256 == "0" * 64
    # The report and the gate on PostgreSQL: temporary tables, streamed reads, the truth-sample
    # and audit queries (a connection-wide stream_results once put a DROP in a server cursor).
    from review.labels import LabelSet
    from review.query import ReportFilters
    from review.report import build_report, gate_check

    labels = LabelSet.of("ok", ["crack", "scratch"])
    report = build_report(engine, ReportFilters(station="PG1"), labels=labels)
    assert report["counts"]["items"] == 1 and report["gates"]["station"] == "PG1"
    with engine.connect() as conn:
        result, block = gate_check(conn, "PG1", "partial", labels=labels)
    assert not result.passed and block["to_level"] == "partial" and block["station"] == "PG1"
    # The tamper-evidence chain on PostgreSQL: intact as written, an edit found.
    from db.chain import verify

    with engine.connect() as conn:
        assert verify(conn).intact and report["chain"]["station:1"]["length"] == 2
    with engine.begin() as conn:
        conn.execute(text("UPDATE disposition SET final_label = 'crack'"))
    with engine.connect() as conn:
        problems = verify(conn).problems
    assert any("disposition #1 differs" in p for p in problems), problems
    engine.dispose()


def test_the_station_recorder_writes_a_new_item_on_postgres(tmp_path) -> None:
    """The write behind every decision, on PostgreSQL (Core inserts, not the SQLite driver): the
    model registered on first sight, the rows linked to it, the review requests queued."""
    import sys
    from pathlib import Path

    from sqlalchemy import text

    from db.chain import verify
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.models import AdjudicationRequest, Disposition, ModelVersion, Prediction
    from station.pipeline.recorder import Recorder

    sys.path.insert(0, str(Path(__file__).parents[1] / "station"))
    from records_fixtures import new_item_record, station_and_operator

    engine = make_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    station_id, operator_id = station_and_operator(engine)
    recorder = Recorder(engine, spool_dir=tmp_path)
    acks = [
        recorder.record(
            new_item_record(uid, station_id=station_id, operator_id=operator_id, truth_sample=p)
        )
        for uid, p in (("p1", None), ("p2", 0.1))
    ]
    assert all(a is not None for a in acks) and recorder.pending == 0
    with Session(engine) as s:
        (mv,) = s.exec(select(ModelVersion)).all()
        assert [p.model_version_id for p in s.exec(select(Prediction))] == [mv.id, mv.id]
        assert [d.model_version_id for d in s.exec(select(Disposition))] == [mv.id, mv.id]
        (req,) = s.exec(select(AdjudicationRequest)).all()
        assert (req.item_id, req.reason, req.probability) == (acks[1].item_id, "truth_sample", 0.1)
    with engine.connect() as conn:
        assert verify(conn).intact
    engine.dispose()
