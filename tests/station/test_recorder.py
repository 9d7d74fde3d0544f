"""The recorder writes each inspection in one transaction, acknowledges only after the commit,
and keeps, retries and replays decisions the database could not take."""

from __future__ import annotations

import sqlite3

from sqlmodel import create_engine, select

from db.engine import session_scope
from db.models import DecidedBy, Disposition, HumanDecision, Item, Level, Prediction
from station.pipeline.predictor import FakePredictor, confident
from station.pipeline.recorder import SPOOL_NAME, Recorder
from station.pipeline.records import Deferred, from_json, to_json
from station.pipeline.testing import make_rig, phone_image


def locked_engine(path):
    """An engine that gives up on a lock at once (the real one waits 10 s)."""
    return create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})


def lock(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


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
    assert disp.threshold_version == rig.core.router.thresholds_version
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
        spooled = (tmp_path / SPOOL_NAME).read_text().splitlines()
        assert [from_json(line).uid for line in spooled] == [uid]
        rig.feed(phone_image(2))
        rig.core.desk.decide("ok")  # queues behind the first, order kept
        assert recorder.pending == 2 and recorder.retry() == 0
    finally:
        conn.rollback()
        conn.close()
    assert recorder.retry() == 2
    assert [a.uid for a in rig.acks][0] == uid
    assert recorder.pending == 0 and not (tmp_path / SPOOL_NAME).exists()
    assert problems[-1] is None
    with session_scope(rig.engine) as s:
        labels = [d.label for d in s.exec(select(HumanDecision).order_by(HumanDecision.id))]
    assert labels == ["scratch", "ok"]


def test_the_spool_is_replayed_on_restart_without_duplicates(tmp_path):
    rig = make_rig(tmp_path, level=Level.human_only)
    db = tmp_path / "station.db"
    first = Recorder(locked_engine(db), spool_dir=tmp_path)
    rig.core.desk.send = first.record
    conn = lock(db)
    try:
        for i in range(3):
            rig.feed(phone_image(i))
            rig.core.desk.decide("ok")
    finally:
        conn.rollback()
        conn.close()
    assert first.pending == 3
    # The first record made it in before the crash, but the spool was not trimmed yet.
    spooled = [from_json(x) for x in (tmp_path / SPOOL_NAME).read_text().splitlines()]
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
    db = tmp_path / "station.db"
    first = Recorder(locked_engine(db), spool_dir=tmp_path)
    rig.core.desk.send = first.record
    conn = lock(db)
    try:
        rig.feed(phone_image())
        rig.core.desk.decide("scratch")
        assert rig.core.desk.undo()
        rig.core.desk.decide("ok")
    finally:
        conn.rollback()
        conn.close()
    assert first.pending == 2
    second = Recorder(rig.engine, spool_dir=tmp_path)  # restart: nothing of the first in memory
    assert second.retry() == 2
    with session_scope(rig.engine) as s:
        ds = s.exec(select(HumanDecision).order_by(HumanDecision.id)).all()
        disp = s.exec(select(Disposition).order_by(Disposition.id)).all()
    assert [d.label for d in ds] == ["scratch", "ok"] and ds[1].supersedes_id == ds[0].id
    assert disp[-1].final_label == "ok" and counts(rig.engine)["Item"] == 1


def test_an_exception_in_the_recorder_thread_is_shown_and_recording_goes_on(tmp_path, monkeypatch):
    import time

    from station.pipeline import recorder as recorder_module
    from station.pipeline.recorder import BackgroundRecorder

    rig = make_rig(tmp_path, level=Level.human_only)
    real, calls = recorder_module.write_inspection, []

    def fails_once(**kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug nobody foresaw")
        return real(**kw)

    monkeypatch.setattr(recorder_module, "write_inspection", fails_once)
    problems, acks = [], []
    recorder = Recorder(
        rig.engine, spool_dir=tmp_path, on_ack=acks.append, on_problem=problems.append
    )
    background = BackgroundRecorder(recorder, retry_every_s=0.05)
    rig.core.desk.send = background.submit
    uids = []
    for i in range(3):
        rig.feed(phone_image(i))
        uids.append(rig.core.desk.decide(["crack", "ok", "dent"][i]))
    deadline = time.monotonic() + 10
    while len(acks) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert background.alive and background.failures == 1
    assert any(
        p is not None and "RuntimeError: a bug nobody foresaw" in p.message for p in problems
    )
    assert [a.uid for a in acks] == uids  # the failed one first: order kept
    with session_scope(rig.engine) as s:
        labels = [d.label for d in s.exec(select(HumanDecision).order_by(HumanDecision.id))]
    assert labels == ["crack", "ok", "dent"] and recorder.pending == 0
    background.close()
