"""Headless `station simulate`: the expected records at each level, and the blind / audit shares
within sampling error."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from sqlmodel import select

from db.engine import session_scope
from db.models import (
    DecidedBy,
    Disposition,
    HumanDecision,
    Item,
    Level,
    LevelChange,
    Prediction,
    Role,
    Station,
)
from db.repo import find_operator
from station.levels import level_of, set_level
from station.pipeline.predictor import FAKE_CLASSES as CLASSES
from station.pipeline.predictor import FakePredictor, confident
from station.pipeline.simulate import SimulateConfig, simulate
from station.pipeline.testing import (
    ensure_operator,
    ensure_station,
    make_rig,
    open_station_db,
    phone_image,
)
from station.settings import LevelSettings, Settings

SMALL = {"width": 320, "height": 180}


def mixed_answers(img):
    """Sure 'ok' on most items, unsure on some, so partial has both auto and review items."""
    return confident("ok", 0.995) if int(img[::7, ::7].sum()) % 4 else confident("ok", 0.7)


def run(tmp_path: Path, level: Level, items: int, *, levels: LevelSettings | None = None, seed=0):
    settings = Settings(data_dir=tmp_path, levels=levels or LevelSettings())
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    summary = simulate(
        settings,
        engine,
        SimulateConfig(items=items, level=level, seed=seed, **SMALL),
        predictor=None if level is Level.human_only else FakePredictor(mixed_answers),
    )
    with session_scope(engine) as s:
        rows = {
            "items": s.exec(select(Item)).all(),
            "predictions": s.exec(select(Prediction)).all(),
            "decisions": s.exec(select(HumanDecision)).all(),
            "dispositions": s.exec(select(Disposition)).all(),
        }
    return summary, rows


def within(count: int, n: int, p: float, sds: float = 3.5) -> bool:
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("level", list(Level))
def test_simulate_writes_the_expected_records_at_each_level(tmp_path, level):
    s, rows = run(tmp_path, level, 40)
    assert s.items == 40 and len(rows["items"]) == 40 and len(rows["dispositions"]) == 40
    assert all(i.ground_truth is not None for i in rows["items"])
    assert s.pending_writes == 0 and s.final_level == level.value
    by = [d.decided_by for d in rows["dispositions"]]
    if level is Level.human_only:
        assert rows["predictions"] == [] and all(b is DecidedBy.human for b in by)
    else:
        assert len(rows["predictions"]) == 40
    if level in (Level.human_only, Level.shadow, Level.assist):
        assert s.human_decisions == 40 and s.model_decisions == 0
    if level is Level.shadow:
        assert s.shown == 0 and s.paired == 40 and s.agreement is not None
    if level is Level.assist:
        assert s.shown + s.blind == 40
        assert not any(d.suggestion_shown for d in rows["decisions"] if d.blind)
    if level in (Level.partial, Level.full):
        auto = [d for d in rows["dispositions"] if d.decided_by is DecidedBy.model]
        assert 0 < len(auto) < 40 and s.model_decisions == len(auto)
        assert all(d.audit and not d.suggestion_shown for d in rows["decisions"] if d.audit)
        assert s.human_decisions == len(rows["decisions"]) == 40 - len(auto) + s.audit


def test_assist_blind_share_is_within_sampling_error(tmp_path):
    s, rows = run(tmp_path, Level.assist, 160, levels=LevelSettings(blind_share_assist=0.25))
    assert within(s.blind, 160, 0.25)
    assert sum(d.blind for d in rows["decisions"]) == s.blind


def test_partial_audit_share_is_within_sampling_error(tmp_path):
    s, _ = run(tmp_path, Level.partial, 160, levels=LevelSettings(audit_share_partial=0.2))
    assert s.model_decisions > 80
    assert within(s.audit, s.model_decisions, 0.2)


def test_golden_samples_are_injected_and_recorded(tmp_path):
    s, rows = run(tmp_path, Level.full, 60, levels=LevelSettings(golden_share=0.2))
    golden = [i for i in rows["items"] if i.golden]
    # a golden sample follows a line item with chance 0.2: a sixth of all items
    assert s.golden == len(golden) and within(len(golden), 60, 0.2 / 1.2)
    assert all(d.golden for d in rows["decisions"] if d.item_id in {i.id for i in golden})


def test_a_model_that_fails_to_load_drops_the_station_to_human_only(tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    s = simulate(
        settings,
        engine,
        SimulateConfig(items=5, level=Level.assist, model_path=str(tmp_path / "nope"), **SMALL),
    )
    assert s.final_level == "human_only" and s.human_decisions == 5
    assert any("MODEL UNUSABLE" in b for b in s.banners)
    with session_scope(engine) as ses:
        last = ses.exec(select(LevelChange).order_by(LevelChange.id.desc())).first()
    assert last.automatic and last.to_level is Level.human_only


def test_the_cli_prints_a_json_summary(tmp_path, monkeypatch, capsys):
    from station.cli import app
    from station.cli.common import run_guarded

    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["station"])
    code = run_guarded(
        lambda **kw: app(
            [
                "simulate",
                "--items",
                "6",
                "--level",
                "human_only",
                "--json",
                "--db",
                f"sqlite:///{tmp_path / 'cli.db'}",
            ],
            **kw,
        )
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in (
        "items",
        "human_decisions",
        "model_decisions",
        "shown",
        "blind",
        "audit",
        "golden",
        "agreement",
        "seconds",
    ):
        assert key in out
    assert out["items"] == 6 and out["human_decisions"] == 6 and out["station"] == "sim"


def test_the_cli_refuses_an_unknown_level_in_one_line(tmp_path, monkeypatch, capsys):
    from station.cli import app
    from station.cli.common import run_guarded

    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path))
    code = run_guarded(lambda **kw: app(["simulate", "--items", "1", "--level", "auto"], **kw))
    err = capsys.readouterr().err
    assert code == 2 and "unknown level 'auto'" in err and "human_only" in err


def test_the_model_is_recorded_as_the_stations_champion(tmp_path):
    from db.models import Deployment, ModelVersion, Slot

    run(tmp_path, Level.shadow, 3)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    with session_scope(engine) as s:
        dep = s.exec(select(Deployment)).one()
        mv = s.get(ModelVersion, dep.model_version_id)
    assert dep.slot is Slot.champion and dep.ended_at is None and mv.sha256 == "f" * 64


BUNDLED = Path(__file__).resolve().parents[2] / "model" / "bundled" / "default" / "manifest.json"


def test_simulate_with_the_real_bundled_model_records_its_version(tmp_path):
    from db.models import ModelVersion

    settings = Settings(data_dir=tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    s = simulate(settings, engine, SimulateConfig(items=12, level=Level.shadow, **SMALL))
    assert s.final_level == "shadow" and s.paired == 12 and s.model_errors == 0
    with session_scope(engine) as ses:
        preds = ses.exec(select(Prediction)).all()
        mv = ses.get(ModelVersion, preds[0].model_version_id)
    manifest = json.loads(BUNDLED.read_text())
    assert mv.sha256 == manifest["sha256"] and mv.version == str(manifest["version"])
    assert all(p.label in manifest["classes"] and 0 < p.confidence <= 1 for p in preds)


def test_a_model_whose_classes_are_not_the_stations_labels_is_refused(tmp_path):
    from station.pipeline.predictor import ModelInfo

    tiles = FakePredictor(
        {"free": 0.9, "defect": 0.1},
        info=ModelInfo("tiles", "t1", "a" * 64, classes=("free", "defect"), ok_class="free"),
    )
    settings = Settings(data_dir=tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    s = simulate(
        settings, engine, SimulateConfig(items=3, level=Level.shadow, **SMALL), predictor=tiles
    )
    assert s.final_level == "human_only" and s.paired == 0
    assert any("classes ['defect', 'free']" in b and "station's labels" in b for b in s.banners)


def history(engine, name):
    with session_scope(engine) as s:
        station = s.exec(select(Station).where(Station.name == name)).one()
        changes = s.exec(
            select(LevelChange).where(LevelChange.station_id == station.id).order_by(LevelChange.id)
        ).all()
        items = s.exec(select(Item).where(Item.station_id == station.id)).all()
        return [(c.from_level, c.to_level, c.reason) for c in changes], len(items)


def test_simulate_leaves_a_real_stations_level_and_history_untouched(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 'line.db'}"
    engine = open_station_db(url)
    rig = make_rig(tmp_path, level=Level.shadow, engine=engine)  # the real line A1, at shadow
    rig.feed(phone_image())
    rig.core.desk.decide("ok")
    before = history(engine, "A1")
    result = cli("simulate", "--items", "5", "--level", "full", "--db", url)
    assert result.code == 0, result.err
    assert "simulation station sim" in result.out
    assert history(engine, "A1") == before  # same level changes, same one item
    assert level_of(engine, Settings(data_dir=tmp_path), "A1") is Level.shadow
    changes, items = history(engine, "sim")
    assert items == 5 and changes[-1][1] is Level.full
    own = cli("simulate", "--items", "1", "--station", "A1", "--db", url)
    assert own.code == 2 and "station A1 is this station's own name" in own.err
    ensure_station(engine, "B7")  # another line of the fleet
    other = cli("simulate", "--items", "1", "--station", "B7", "--db", url)
    assert other.code == 2 and "station B7 is a real station" in other.err
    assert "Traceback" not in own.err + other.err and history(engine, "A1") == before
    assert history(engine, "B7") == ([], 0)


def test_a_demotion_committed_during_a_run_is_obeyed_from_the_next_item(tmp_path):
    settings = Settings(data_dir=tmp_path, levels=LevelSettings(audit_share_full=0.0))
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    ensure_operator(engine, "eve", Role.engineer)
    with session_scope(engine) as s:
        eve = find_operator(session=s, name="eve")

    def demote_after_ten(done, _total):
        if done == 10:  # an engineer elsewhere steps the running station down
            set_level(
                engine, settings, Level.human_only, operator=eve, reason="drift", station_name="sim"
            )

    s = simulate(
        settings,
        engine,
        SimulateConfig(items=30, level=Level.full, **SMALL),
        predictor=FakePredictor(confident("ok", 0.999)),
        progress=demote_after_ten,
    )
    with session_scope(engine) as ses:
        by = [d.decided_by for d in ses.exec(select(Disposition).order_by(Disposition.item_id))]
        levels = [d.level for d in ses.exec(select(Disposition).order_by(Disposition.item_id))]
    assert by[:10] == [DecidedBy.model] * 10  # sure of every phone: full automation decides
    assert by[10:] == [DecidedBy.human] * 20 and set(levels[10:]) == {Level.human_only}
    assert s.final_level == "human_only" and s.human_decisions == 20


def test_progress_is_told_each_item_done_of_the_total(tmp_path):
    """What `station simulate` draws its bar from: one call per item, in order, ending at the
    total."""
    calls: list[tuple[int, int]] = []
    s = simulate(
        Settings(data_dir=tmp_path),
        open_station_db(f"sqlite:///{tmp_path / 'sim.db'}"),
        SimulateConfig(items=30, level=Level.shadow, **SMALL),
        predictor=FakePredictor(mixed_answers),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert s.items == 30
    assert calls == [(k, 30) for k in range(1, 31)]


def test_a_retrained_model_reusing_a_registered_version_is_refused_before_the_first_item(
    tmp_path,
):
    from station.pipeline.predictor import ModelInfo

    settings = Settings(data_dir=tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    first = FakePredictor(confident("ok"), info=ModelInfo("m", "1", "a" * 64, CLASSES, "ok"))
    s1 = simulate(
        settings, engine, SimulateConfig(items=3, level=Level.shadow, **SMALL), predictor=first
    )
    assert s1.paired == 3 and s1.rejected == 0
    retrained = FakePredictor(confident("ok"), info=ModelInfo("m", "1", "b" * 64, CLASSES, "ok"))
    s2 = simulate(
        settings, engine, SimulateConfig(items=3, level=Level.shadow, **SMALL), predictor=retrained
    )
    assert s2.items == 3 and s2.rejected == 0 and s2.pending_writes == 0  # nothing lost
    assert s2.final_level == "human_only" and s2.paired == 0  # people decided, the model did not
    banner = next(b for b in s2.banners if "MODEL UNUSABLE" in b)
    assert "already registered" in banner and "--version" in banner
    with session_scope(engine) as s:
        assert len(s.exec(select(Item)).all()) == 6


def test_a_run_keeps_opencv_to_one_thread_and_gives_the_process_its_setting_back(tmp_path):
    """Its own threads fill the cores: OpenCV's pool only adds hand-offs while it runs. A program
    that embeds `simulate` finds OpenCV's threads as it set them, also after a failing item."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    seen: list[int] = []

    def fails_at_five(done: int, _total: int) -> None:
        seen.append(cv2.getNumThreads())
        if done == 5:
            raise KeyboardInterrupt  # the operator's Ctrl-C

    try:
        with pytest.raises(KeyboardInterrupt):
            simulate(
                Settings(data_dir=tmp_path),
                open_station_db(f"sqlite:///{tmp_path / 'sim.db'}"),
                SimulateConfig(items=20, level=Level.shadow, **SMALL),
                predictor=FakePredictor(mixed_answers),
                progress=fails_at_five,
            )
        assert seen == [1] * 5
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_the_drift_checks_are_imported_before_the_first_item_not_by_the_first_check(tmp_path):
    """Left to the first check (the 100th item), their import (SciPy's statistics, 0.8 s here)
    held that item up; it is part of the start, like the model's load. A fresh interpreter:
    this one has imported them long ago."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from db.models import Level
        from station.pipeline.simulate import SimulateConfig, simulate
        from station.pipeline.testing import open_station_db
        from station.settings import Settings

        assert "station.monitor" not in sys.modules, "imported before the run: nothing to test"
        tmp = Path({str(tmp_path)!r})
        seen = []
        simulate(
            Settings(data_dir=tmp),
            open_station_db(f"sqlite:///{{tmp / 'sim.db'}}"),
            # human_only: a run at a model's level captures a drift reference at its start,
            # which imports the checks anyway
            SimulateConfig(items=2, level=Level.human_only, width=320, height=180),
            progress=lambda done, total: seen.append("station.monitor" in sys.modules),
        )
        print(seen)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, True]"


def test_a_round_of_checks_sees_every_item_decided_before_it(tmp_path, monkeypatch):
    """The checks read the record; a seeded run gives the same verdicts only if every decision
    before a round is written when the round reads, however far the writers lag (here: slowed)."""
    import time as _time

    import station.monitor as monitor
    from db.models import Item
    from station.frames.store import ImageStore

    slow_put = ImageStore.put_bytes

    def put_slowly(self, data):
        _time.sleep(0.03)
        return slow_put(self, data)

    monkeypatch.setattr(ImageStore, "put_bytes", put_slowly)
    real_check = monitor.check_station
    seen: list[int] = []

    def counting(engine, settings, station_id):
        with session_scope(engine) as s:
            seen.append(len(s.exec(select(Item)).all()))
        return real_check(engine, settings, station_id)

    monkeypatch.setattr(monitor, "check_station", counting)
    from station.settings import MonitorSettings

    settings = Settings(data_dir=tmp_path, monitor=MonitorSettings(every_items=10))
    simulate(
        settings,
        open_station_db(f"sqlite:///{tmp_path / 'sim.db'}"),
        SimulateConfig(items=35, level=Level.shadow, **SMALL),
        predictor=FakePredictor(mixed_answers),
    )
    # the round before item 10 (0-based: the 10th planned) sees items 0-8 ... and so on
    assert seen == [9, 19, 29]


def run_with_a_write_that_hangs(tmp_path, monkeypatch, items: int):
    """Simulate `items` at human_only while every database write from the fourth on hangs, with
    CLOSE_WAIT_S at 0.5 s; the writes are let go once the run has returned (and after 20 s
    whatever happens, so code that waits for them fails on time instead of hanging the suite).
    Returns the summary, how many decisions were written in the end, and the run's seconds."""
    import sys
    import threading

    from station.pipeline import recorder as recorder_module

    simulate_module = sys.modules[simulate.__module__]  # the package exports the function
    real, calls, release = recorder_module.write_inspection, [], threading.Event()

    def hangs_from_the_fourth(**kw):
        calls.append(kw["rec"].uid)
        if len(calls) >= 4:
            release.wait()
        return real(**kw)

    monkeypatch.setattr(recorder_module, "write_inspection", hangs_from_the_fourth)
    monkeypatch.setattr(simulate_module, "CLOSE_WAIT_S", 0.5)
    watchdog = threading.Timer(20, release.set)
    watchdog.start()
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    t0 = time.monotonic()
    try:
        s = simulate(
            Settings(data_dir=tmp_path),
            engine,
            SimulateConfig(items=items, level=Level.human_only, **SMALL),
        )
    finally:
        release.set()
        watchdog.cancel()
    seconds = time.monotonic() - t0

    def written() -> int:
        with session_scope(engine) as session:
            return len(session.exec(select(HumanDecision)).all())

    deadline = time.monotonic() + 30  # released, the recorder's thread writes what it held
    while written() < 3 + s.unsaved and time.monotonic() < deadline:
        time.sleep(0.05)
    return s, written(), seconds


def test_decisions_a_hung_write_still_holds_at_the_end_are_counted_as_unsaved(
    tmp_path, monkeypatch
):
    """The run's end waits for the recorder as long as it makes progress; a write that hangs
    is given up on after CLOSE_WAIT_S, and the decisions it held (only in memory) are said to
    be unsaved, so the command exits 1 instead of reporting a clean run."""
    s, written, seconds = run_with_a_write_that_hangs(tmp_path, monkeypatch, items=6)
    assert seconds < 10  # well before the writes were let go
    assert s.unsaved == 3  # the fourth (its write hung) and the two behind it
    assert written == 6


def test_a_write_that_hangs_mid_run_stops_the_run_instead_of_holding_it_up_for_good(
    tmp_path, monkeypatch
):
    """With the recorder stuck on one write, the run fills its backlog, waits CLOSE_WAIT_S
    for any progress, then stops and says why; the decisions it could not save are counted
    (it used to wait as long as the write hung: for good)."""
    s, written, seconds = run_with_a_write_that_hangs(tmp_path, monkeypatch, items=40)
    assert seconds < 10
    assert s.stopped is not None and "the recorder has written nothing for 0.5 s" in s.stopped
    assert s.unsaved >= 9  # the write that hung and the backlog behind it
    assert written == 3 + s.unsaved
