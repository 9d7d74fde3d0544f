"""The recorder writes each inspection in one transaction, acknowledges only after the commit,
and keeps, retries and replays decisions the database could not take."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time

import pytest
from sqlmodel import create_engine, select

from db.engine import session_scope
from db.models import DecidedBy, Disposition, HumanDecision, Item, Level, Prediction
from station.pipeline.predictor import FakePredictor, confident
from station.pipeline.recorder import Recorder
from station.pipeline.records import Deferred, from_json, to_json
from station.pipeline.testing import make_rig, phone_image


def locked_engine(path):
    """An engine that gives up on a lock at once (the real one waits 10 s)."""
    return create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})


def lock(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


@contextlib.contextmanager
def database_locked(rig, tmp_path):
    """The rig's decisions go to a recorder that finds its database locked: they are spooled."""
    db = tmp_path / "station.db"
    recorder = Recorder(locked_engine(db), spool_dir=tmp_path)
    rig.core.desk.send = recorder.record
    conn = lock(db)
    try:
        yield recorder
    finally:
        conn.rollback()
        conn.close()


def counts(engine):
    with session_scope(engine) as s:
        return {
            t.__name__: len(s.exec(select(t)).all())
            for t in (Item, Prediction, HumanDecision, Disposition)
        }


def test_an_inspection_is_written_with_its_provenance(tmp_path):
    rig = make_rig(tmp_path, level=Level.shadow, predictor=FakePredictor(confident("dent")))
    rig.feed(phone_image(), truth="dent")
    rig.core.desk.decide("dent")
    assert counts(rig.engine) == {"Item": 1, "Prediction": 1, "HumanDecision": 1, "Disposition": 1}
    with session_scope(rig.engine) as s:
        item = s.exec(select(Item)).one()
        pred = s.exec(select(Prediction)).one()
        dec = s.exec(select(HumanDecision)).one()
        disp = s.exec(select(Disposition)).one()
        from db.models import ModelVersion

        mv = s.get(ModelVersion, pred.model_version_id)
    assert item.guard_version and item.guard_passed and item.ground_truth == "dent"
    assert len(item.image_sha256) == 64 and (tmp_path / "images" / item.image_path).exists()
    assert mv is not None and mv.sha256 == "f" * 64 and mv.version == "f1"
    assert dec.label == "dent" and dec.defect_types == ["dent"] and not dec.suggestion_shown
    assert dec.operator_id == rig.core.desk.operator_id
    assert disp.decided_by is DecidedBy.human and disp.level is Level.shadow
    assert disp.threshold_version == "none"  # shadow: no rule decides
    assert disp.human_decision_id == dec.id and disp.prediction_id == pred.id
    assert rig.acks and rig.acks[0].item_id == item.id and rig.core.desk.last_saved == item.id


def test_an_ack_comes_only_after_the_commit(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    seen = []

    def on_ack(ack):
        # the acknowledged rows are visible to a fresh connection: the transaction committed
        seen.append(counts(rig.engine)["Item"])

    rig.recorder.on_ack = on_ack
    rig.feed(phone_image())
    rig.core.desk.decide("ok")
    assert seen == [1]


def test_a_failing_write_keeps_the_decision_and_retries_it(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    db = tmp_path / "station.db"
    problems = []
    recorder = Recorder(
        locked_engine(db), spool_dir=tmp_path, on_ack=rig.acks.append, on_problem=problems.append
    )
    rig.core.desk.send = recorder.record
    conn = lock(db)
    try:
        rig.feed(phone_image(1))
        uid = rig.core.desk.decide("scratch")
        assert rig.acks == [] and recorder.pending == 1
        assert problems and "locked" in problems[-1].message
        spooled = recorder.spool_path.read_text().splitlines()
        assert [from_json(line).uid for line in spooled] == [uid]
        rig.feed(phone_image(2))
        rig.core.desk.decide("ok")  # queues behind the first, order kept
        assert recorder.pending == 2 and recorder.retry() == 0
    finally:
        conn.rollback()
        conn.close()
    assert recorder.retry() == 2
    assert [a.uid for a in rig.acks][0] == uid
    assert recorder.pending == 0 and not recorder.spool_path.exists()
    assert problems[-1] is None
    # the next decision is written at once again (its own connection, given up at the lock,
    # is opened anew)
    rig.feed(phone_image(3))
    rig.core.desk.decide("ok")
    assert recorder.pending == 0 and len(rig.acks) == 3
    with session_scope(rig.engine) as s:
        labels = [d.label for d in s.exec(select(HumanDecision).order_by(HumanDecision.id))]
    assert labels == ["scratch", "ok", "ok"]


def test_the_spool_is_replayed_on_restart_without_duplicates(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    with database_locked(rig, tmp_path) as first:
        for i in range(3):
            rig.feed(phone_image(i))
            rig.core.desk.decide("ok")
    assert first.pending == 3
    # The first record made it in before the crash, but the spool was not trimmed yet.
    spooled = [from_json(x) for x in first.spool_path.read_text().splitlines()]
    Recorder(rig.engine, spool_dir=tmp_path / "other").record(spooled[0])
    acks = []
    second = Recorder(rig.engine, spool_dir=tmp_path, on_ack=acks.append)  # "restart"
    assert second.pending == 3
    assert second.retry() == 3 and len(acks) == 3
    assert counts(rig.engine)["Item"] == 3 and counts(rig.engine)["HumanDecision"] == 3


def test_undo_records_a_correction_that_supersedes_the_first_decision(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    rig.feed(phone_image())
    rig.core.desk.decide("crack")
    assert rig.core.desk.undo()
    assert rig.core.desk.current is not None
    rig.core.desk.decide("ok")
    with session_scope(rig.engine) as s:
        decisions = s.exec(select(HumanDecision).order_by(HumanDecision.id)).all()
        disps = s.exec(select(Disposition).order_by(Disposition.id)).all()
    assert [d.label for d in decisions] == ["crack", "ok"]
    assert decisions[1].supersedes_id == decisions[0].id
    assert disps[-1].final_label == "ok" and counts(rig.engine)["Item"] == 1


def test_undo_is_refused_after_the_window(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    t = [0.0]
    rig.core.desk.clock = lambda: t[0]
    rig.feed(phone_image())
    rig.core.desk.decide("ok")
    t[0] = 5.5
    assert not rig.core.desk.undo() and rig.core.desk.current is None


def test_records_round_trip_through_json(tmp_path):
    rig = make_rig(tmp_path, level=Level.shadow)
    captured = []
    rig.core.desk.send = captured.append
    rig.feed(phone_image())
    rig.core.desk.decide("stain")
    rec = captured[0]
    rec = rec.build() if isinstance(rec, Deferred) else rec  # built once its image is stored
    assert from_json(to_json(rec)) == rec


def test_an_image_store_that_cannot_write_keeps_the_item_and_raises_a_banner(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)

    def full(_data):
        raise OSError(28, "No space left on device")

    rig.store.put_bytes = full
    rig.feed(phone_image())  # the rig waits for the write's verdict before the desk sees it
    assert "IMAGES NOT SAVED" in rig.core.status.banners["images"]
    rig.core.desk.decide("ok")
    with session_scope(rig.engine) as s:
        item = s.exec(select(Item)).one()
    assert len(item.image_sha256) == 64 and item.image_path == ""


def test_an_undo_of_a_spooled_decision_is_replayed_after_it_on_restart(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    with database_locked(rig, tmp_path) as first:
        rig.feed(phone_image())
        rig.core.desk.decide("scratch")
        assert rig.core.desk.undo()
        rig.core.desk.decide("ok")
    assert first.pending == 2
    second = Recorder(rig.engine, spool_dir=tmp_path)  # restart: nothing of the first in memory
    assert second.retry() == 2
    with session_scope(rig.engine) as s:
        ds = s.exec(select(HumanDecision).order_by(HumanDecision.id)).all()
        disp = s.exec(select(Disposition).order_by(Disposition.id)).all()
    assert [d.label for d in ds] == ["scratch", "ok"] and ds[1].supersedes_id == ds[0].id
    assert disp[-1].final_label == "ok" and counts(rig.engine)["Item"] == 1


def wait_for(condition, seconds=10.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def background_rig(tmp_path, monkeypatch, fails):
    """A rig whose records go through the background recorder, with `fails(calls)` deciding
    which calls of the database write raise a fault nobody foresaw."""
    from station.pipeline import recorder as recorder_module
    from station.pipeline.recorder import BackgroundRecorder

    rig = make_rig(tmp_path, level=Level.human_only)
    real, calls = recorder_module.write_inspection, []

    def flaky(**kw):
        calls.append(kw["rec"].uid)
        if fails(calls):
            raise RuntimeError("a bug nobody foresaw")
        return real(**kw)

    monkeypatch.setattr(recorder_module, "write_inspection", flaky)
    problems, acks = [], []
    recorder = Recorder(
        rig.engine, spool_dir=tmp_path, on_ack=acks.append, on_problem=problems.append
    )
    background = BackgroundRecorder(recorder, retry_every_s=0.05)
    rig.core.desk.send = background.submit
    rig.write_calls = calls
    return rig, recorder, background, problems, acks


def decide_three(rig):
    uids = []
    for i, label in enumerate(["crack", "ok", "dent"]):
        rig.feed(phone_image(i))
        uids.append(rig.core.desk.decide(label))
    return uids


def labels_written(engine):
    with session_scope(engine) as s:
        return [d.label for d in s.exec(select(HumanDecision).order_by(HumanDecision.id))]


def test_a_write_that_fails_unexpectedly_is_shown_retried_and_kept_in_order(tmp_path, monkeypatch):
    rig, recorder, background, problems, acks = background_rig(
        tmp_path, monkeypatch, lambda calls: len(calls) == 1
    )
    uids = decide_three(rig)
    assert wait_for(lambda: len(acks) == 3)
    assert background.alive
    assert any(
        p is not None and "RuntimeError: a bug nobody foresaw" in p.message for p in problems
    )
    assert [a.uid for a in acks] == uids  # the failed one first: order kept
    assert labels_written(rig.engine) == ["crack", "ok", "dent"] and recorder.pending == 0
    background.close()


def test_a_record_that_always_fails_is_set_aside_and_the_rest_are_written(tmp_path, monkeypatch):
    from station.pipeline.recorder import MAX_UNEXPECTED_TRIES

    def the_first_record_always_fails(calls: list[str]) -> bool:
        return calls[-1] == calls[0]

    rig, recorder, background, _problems, acks = background_rig(
        tmp_path, monkeypatch, the_first_record_always_fails
    )
    uids = decide_three(rig)
    assert wait_for(lambda: len(acks) == 2)
    assert [a.uid for a in acks] == uids[1:] and recorder.pending == 0
    assert labels_written(rig.engine) == ["ok", "dent"]
    rejected = [from_json(x) for x in recorder.rejected_path.read_text().splitlines()]
    assert [r.uid for r in rejected] == uids[:1]  # on disk, not lost
    assert background.alive and MAX_UNEXPECTED_TRIES >= 2
    assert rig.write_calls.count(uids[0]) == MAX_UNEXPECTED_TRIES  # retried, then set aside
    background.close()


def test_a_record_that_cannot_be_built_is_kept_aside_and_the_thread_goes_on(tmp_path):
    import json

    from station.pipeline.recorder import BackgroundRecorder

    rig = make_rig(tmp_path, level=Level.human_only)
    problems, acks = [], []
    recorder = Recorder(
        rig.engine, spool_dir=tmp_path, on_ack=acks.append, on_problem=problems.append
    )
    background = BackgroundRecorder(recorder, retry_every_s=0.05)

    def broken():
        raise ValueError("image write never finished")

    background.submit(Deferred("u-broken", broken))
    rig.core.desk.send = background.submit
    rig.feed(phone_image())
    rig.core.desk.decide("ok")
    assert wait_for(lambda: len(acks) == 1)
    assert background.alive and background.failures == 1
    assert any(p is not None and "image write never finished" in p.message for p in problems)
    kept = [json.loads(x) for x in recorder.rejected_path.read_text().splitlines()]
    assert kept == [{"uid": "u-broken", "unbuildable": "ValueError: image write never finished"}]
    background.close()


def test_a_spool_from_before_defect_types_were_recorded_reads_with_the_stations_ok_label(
    tmp_path,
):
    import json

    rig = make_rig(tmp_path, level=Level.human_only)
    held = []
    rig.core.desk.send = held.append
    rig.feed(phone_image())
    rig.core.desk.decide("ok")
    rec = held[0].build() if isinstance(held[0], Deferred) else held[0]
    old = json.loads(to_json(rec))
    del old["decision"]["defect_types"]  # the spool format of the previous version
    old["decision"]["label"] = "good"
    line = json.dumps(old)
    assert from_json(line, ok_label="good").decision.defect_types == ()
    assert from_json(line).decision.defect_types == ("good",)  # read as if ok were "ok"


def test_a_spool_replays_only_into_the_database_it_was_written_for(tmp_path):
    from station.pipeline.testing import open_station_db

    rig = make_rig(tmp_path, level=Level.human_only)  # database X: tmp_path/station.db
    with database_locked(rig, tmp_path) as first:
        rig.feed(phone_image())
        rig.core.desk.decide("dent")
    assert first.pending == 1
    y = open_station_db(f"sqlite:///{tmp_path / 'other.db'}")  # another database, same folder
    at_y = Recorder(y, spool_dir=tmp_path)
    assert at_y.pending == 0 and at_y.identity != first.identity
    assert at_y.retry() == 0 and counts(y)["Item"] == 0  # X's decision never lands in Y
    at_x = Recorder(rig.engine, spool_dir=tmp_path)
    assert at_x.pending == 1 and at_x.retry() == 1 and counts(rig.engine)["Item"] == 1


def test_an_earlier_versions_unnamed_spool_is_reported_not_replayed(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    held = []
    rig.core.desk.send = held.append
    rig.feed(phone_image())
    rig.core.desk.decide("ok")
    rec = held[0].build() if isinstance(held[0], Deferred) else held[0]
    (tmp_path / "decision-spool.jsonl").write_text(to_json(rec) + "\n")
    recorder = Recorder(rig.engine, spool_dir=tmp_path)
    assert recorder.pending == 0 and counts(rig.engine)["Item"] == 0
    assert recorder.unclaimed is not None and "decision-spool.jsonl" in recorder.unclaimed


def test_a_new_item_is_written_whole_with_its_model_and_review_requests(tmp_path, engine):
    """The write behind every decision (no ORM Session): the model version seen for the first
    time is registered and named by the prediction, the disposition and the review requests;
    the decision and disposition are chained; and the engine's pooled connections keep the
    engine's own lock wait, not the shorter one the recorder's writes use."""
    from records_fixtures import MODEL, new_item_record, station_and_operator

    from db.chain import verify
    from db.engine import BUSY_TIMEOUT_MS
    from db.models import AdjudicationRequest, ModelVersion

    station_id, operator_id = station_and_operator(engine)
    acks = []
    recorder = Recorder(engine, spool_dir=tmp_path, on_ack=acks.append)
    first = new_item_record("u1", station_id=station_id, operator_id=operator_id)
    drawn = new_item_record(
        "u2", station_id=station_id, operator_id=operator_id, truth_sample=0.05, audit_flagged=True
    )
    assert recorder.record(first) is not None and recorder.record(drawn) is not None
    assert [a.uid for a in acks] == ["u1", "u2"] and recorder.pending == 0
    with session_scope(engine) as s:
        (mv,) = s.exec(select(ModelVersion)).all()
        assert (mv.name, mv.version, mv.sha256) == (MODEL.name, MODEL.version, MODEL.sha256)
        items = s.exec(select(Item).order_by(Item.id)).all()
        assert [i.id for i in items] == [a.item_id for a in acks]
        assert [i.stats["record_uid"] for i in items] == ["u1", "u2"]
        assert [p.model_version_id for p in s.exec(select(Prediction))] == [mv.id, mv.id]
        disps = s.exec(select(Disposition).order_by(Disposition.id)).all()
        assert [(d.model_version_id, d.final_label, d.level) for d in disps] == [
            (mv.id, "scratch", Level.assist)
        ] * 2
        decs = s.exec(select(HumanDecision).order_by(HumanDecision.id)).all()
        assert [d.id for d in decs] == [a.decision_id for a in acks]
        assert [d.defect_types for d in decs] == [["scratch"], ["scratch"]]
        requests = s.exec(select(AdjudicationRequest).order_by(AdjudicationRequest.id)).all()
        assert [(r.item_id, r.reason, r.probability, r.model_version_id) for r in requests] == [
            (acks[1].item_id, "truth_sample", 0.05, mv.id),
            (acks[1].item_id, "disagreement", 1.0, mv.id),
        ]
    with engine.connect() as conn:
        assert verify(conn).intact
        wait = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert wait == BUSY_TIMEOUT_MS


def test_registering_a_new_model_waits_for_a_lock_no_longer_than_the_items_rows(
    tmp_path, engine, monkeypatch
):
    """The first item of a model registers it in a transaction of its own: under the recorder's
    short lock wait too, so a locked database spools the decision within it instead of holding
    the line for the engine's long wait."""
    from records_fixtures import new_item_record, station_and_operator

    from db.engine import BUSY_TIMEOUT_MS
    from station.pipeline import recorder as recorder_module

    station_id, operator_id = station_and_operator(engine)
    waits = []
    real = recorder_module.register_models

    def registering(*, session, **kw):
        waits.append(session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar())
        return real(session=session, **kw)

    monkeypatch.setattr(recorder_module, "register_models", registering)
    recorder = Recorder(engine, spool_dir=tmp_path)
    assert recorder.record(new_item_record("u1", station_id=station_id, operator_id=operator_id))
    assert waits == [recorder_module.WRITE_LOCK_WAIT_MS] != [BUSY_TIMEOUT_MS]


def test_a_correction_of_an_item_older_than_the_remembered_ones_is_recorded(tmp_path, monkeypatch):
    """The recorder keeps only the newest items' ids in memory; an older item is found by its
    uid in the database, and the correction supersedes its decision all the same."""
    import dataclasses

    from station.pipeline import recorder as recorder_module
    from station.pipeline.records import CorrectionRecord, find_item_by_uid, new_uid

    monkeypatch.setattr(recorder_module, "REMEMBERED_ITEMS", 2)
    rig = make_rig(tmp_path, level=Level.human_only)
    sent: list = []
    forward = rig.core.desk.send
    rig.core.desk.send = lambda rec: (sent.append(rec), forward(rec))[1]
    for label in ("crack", "ok", "ok", "ok"):
        rig.feed(phone_image())
        rig.core.desk.decide(label)
    first = sent[0].build() if isinstance(sent[0], Deferred) else sent[0]
    assert len(rig.recorder._uid_to_ids) == 2 and first.uid not in rig.recorder._uid_to_ids
    rig.recorder.record(
        CorrectionRecord(
            uid=new_uid(),
            corrects_uid=first.uid,
            decision=dataclasses.replace(first.decision, label="ok"),
            final_label="ok",
            level=Level.human_only.value,
            threshold_version="",
        )
    )
    with session_scope(rig.engine) as s:
        item = find_item_by_uid(session=s, uid=first.uid)
        assert item is not None
        decisions = s.exec(
            select(HumanDecision).where(HumanDecision.item_id == item.id).order_by(HumanDecision.id)
        ).all()
        final = s.exec(
            select(Disposition).where(Disposition.item_id == item.id).order_by(Disposition.id)
        ).all()[-1]
    assert [d.label for d in decisions] == ["crack", "ok"]
    assert decisions[1].supersedes_id == decisions[0].id and final.final_label == "ok"
    assert len(rig.recorder._uid_to_ids) == 2


def slow_background(tmp_path, monkeypatch, gate):
    """A background recorder whose every database write first waits for `gate()`."""
    from station.pipeline import recorder as recorder_module
    from station.pipeline.recorder import BackgroundRecorder

    rig = make_rig(tmp_path, level=Level.human_only)
    real = recorder_module.write_inspection

    def slow(**kw):
        gate()
        return real(**kw)

    monkeypatch.setattr(recorder_module, "write_inspection", slow)
    acks = []
    recorder = Recorder(rig.engine, spool_dir=tmp_path, on_ack=acks.append)
    background = BackgroundRecorder(recorder, retry_every_s=0.05)
    rig.core.desk.send = background.submit
    return rig, recorder, background, acks


def test_closing_waits_for_a_backlog_that_takes_longer_than_the_timeout(tmp_path, monkeypatch):
    # Eight writes of 0.1 s behind a 0.5 s timeout: the old close gave up after 0.5 s and the
    # decisions still queued were in memory only (lost when the window's process ended).
    rig, recorder, background, acks = slow_background(
        tmp_path, monkeypatch, lambda: time.sleep(0.1)
    )
    labels = ["crack", "ok", "dent", "ok", "ok", "crack", "ok", "ok"]
    for i, label in enumerate(labels):
        rig.feed(phone_image(i))
        rig.core.desk.decide(label)
    assert background.close(timeout_s=0.5) == 0
    assert not background.alive
    assert len(acks) == 8 and labels_written(rig.engine) == labels and recorder.pending == 0


def test_closing_gives_up_on_a_write_that_hangs_and_says_how_many_are_left(
    tmp_path, monkeypatch, caplog
):
    release = threading.Event()
    rig, recorder, background, acks = slow_background(
        tmp_path, monkeypatch, lambda: release.wait(30)
    )
    for i, label in enumerate(["crack", "ok", "dent"]):
        rig.feed(phone_image(i))
        rig.core.desk.decide(label)
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR):
        left = background.close(timeout_s=0.3)
    assert left == 3 and background.alive  # the hung write and the two behind it
    assert time.monotonic() - t0 < 5
    assert "3 decision(s)" in caplog.text and "not saved" in caplog.text
    release.set()  # the write goes through after all: nothing is lost once it does
    assert wait_for(lambda: not background.alive)
    assert len(acks) == 3 and labels_written(rig.engine) == ["crack", "ok", "dent"]


def test_closing_waits_while_the_spool_is_retried(tmp_path, monkeypatch):
    # Six decisions wait in the spool (an outage) when the window closes with two more queued
    # behind their retry; the retry takes no record from the queue, and still counts as progress.
    rig, recorder, background, acks = slow_background(
        tmp_path, monkeypatch, lambda: time.sleep(0.1)
    )
    held: list = []
    rig.core.desk.send = held.append
    for i in range(6):
        rig.feed(phone_image(i))
        rig.core.desk.decide("ok")
    for d in held:
        recorder.keep(d.build() if isinstance(d, Deferred) else d)
    assert wait_for(lambda: len(acks) >= 1)  # the thread is retrying them
    rig.core.desk.send = background.submit
    for i, label in enumerate(["crack", "dent"]):
        rig.feed(phone_image(10 + i))
        rig.core.desk.decide(label)
    assert background.close(timeout_s=0.5) == 0
    assert len(acks) == 8 and labels_written(rig.engine) == ["ok"] * 6 + ["crack", "dent"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_closing_counts_the_decisions_queued_behind_a_thread_that_died(
    tmp_path, monkeypatch, caplog
):
    from station.pipeline.recorder import BackgroundRecorder

    rig = make_rig(tmp_path, level=Level.human_only)
    recorder = Recorder(rig.engine, spool_dir=tmp_path)

    def cannot_say(*_args):  # the thread's last resort fails too: it ends
        raise RuntimeError("no one to tell")

    monkeypatch.setattr(recorder, "report", cannot_say)
    monkeypatch.setattr(recorder, "unbuildable", cannot_say)
    background = BackgroundRecorder(recorder, retry_every_s=0.05)

    def broken():
        raise ValueError("no image")

    background.submit(Deferred("u-broken", broken))
    assert wait_for(lambda: not background.alive)
    rig.core.desk.send = background.submit
    for i in range(2):
        rig.feed(phone_image(i))
        rig.core.desk.decide("ok")
    with caplog.at_level(logging.ERROR):
        # the one it died on and the two behind it (the old close said nothing of them)
        assert background.close(timeout_s=0.2) == 3
    assert "3 decision(s) not saved: the recorder's thread has stopped" in caplog.text
