"""The router applies the level: who decides, what the inspector sees, fail-safe to a human."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from sqlmodel import select

from db.engine import session_scope
from db.models import DecidedBy, Disposition, Level, LevelChange, Prediction
from review.rules import DecisionRule
from station.pipeline.predictor import FakePredictor, confident
from station.pipeline.router import Decider, ModelCall, Router
from station.pipeline.testing import make_rig, phone_image
from station.settings import LevelSettings

RULE = DecisionRule(0.98, 0.98, {"crack": 0.01})  # the settings' default proposal


def router(seed: int = 0, **levels: float) -> Router:
    return Router(levels=LevelSettings(**levels), ok_class="ok", rng=random.Random(seed))


def test_three_state_auto_passes_only_above_the_pass_threshold():
    assert RULE.call(confident("ok", 0.995), "ok")[0] is ModelCall.auto_pass
    assert RULE.call(confident("ok", 0.90), "ok")[0] is ModelCall.review


def test_three_state_auto_fails_with_the_most_likely_defect():
    call, label, _ = RULE.call(confident("dent", 0.99), "ok")
    assert call is ModelCall.auto_fail and label == "dent"


def test_a_possible_crack_is_never_auto_passed():
    probs = {"ok": 0.985, "crack": 0.015, "scratch": 0.0, "dent": 0.0, "stain": 0.0, "missing": 0.0}
    call, _, why = RULE.call(probs, "ok")
    assert call is ModelCall.review and "crack" in why


def test_a_rules_version_changes_with_its_values_only():
    assert RULE.version == DecisionRule(0.98, 0.98, {"crack": 0.01}).version
    assert RULE.version != DecisionRule(0.99, 0.98, {"crack": 0.01}).version
    assert RULE.version != DecisionRule(0.98, 0.98, {}).version


def test_human_only_runs_no_model():
    plan = router().plan(Level.human_only)
    assert not plan.run_model and not plan.show_suggestion


def test_shadow_runs_the_model_and_hides_it():
    r = router()
    plan = r.plan(Level.shadow)
    route = r.route(plan, probabilities=confident("ok"), model_label="ok")
    assert plan.run_model and not route.show_suggestion and route.decider is Decider.human


def test_assist_blind_share_is_close_to_the_setting():
    r = router(seed=1, blind_share_assist=0.10)
    plans = [r.plan(Level.assist) for _ in range(4000)]
    blind = sum(p.blind for p in plans) / len(plans)
    assert abs(blind - 0.10) < 3 * (0.1 * 0.9 / 4000) ** 0.5 + 0.001
    assert all(p.show_suggestion != p.blind for p in plans)


def test_partial_audit_share_is_close_to_the_setting():
    r = router(seed=2, audit_share_partial=0.05, blind_share_auto=0.0)
    routes = [
        r.route(r.plan(Level.partial, rule=RULE), probabilities=confident("ok"), model_label="ok")
        for _ in range(4000)
    ]
    assert all(x.decider is Decider.model for x in routes)
    audit = sum(x.audit for x in routes) / len(routes)
    assert abs(audit - 0.05) < 3 * (0.05 * 0.95 / 4000) ** 0.5 + 0.001
    assert not any(x.show_suggestion for x in routes if x.audit)


@pytest.mark.parametrize("level", [Level.partial, Level.full])
def test_an_error_never_auto_passes(level):
    r = router()
    route = r.route(r.plan(level, rule=RULE), probabilities=None, error="model raised")
    assert route.decider is Decider.human and route.model_call is None


def test_a_frame_failing_the_guard_goes_to_a_human_even_if_the_model_is_sure():
    r = router()
    route = r.route(
        r.plan(Level.full, rule=RULE),
        probabilities=confident("ok"),
        guard_passed=False,
        guard_reason="dark",
    )
    assert route.decider is Decider.human and not route.show_suggestion


def test_golden_samples_always_go_to_a_human():
    r = router()
    plan = r.plan(Level.full, golden=True, rule=RULE)
    route = r.route(plan, probabilities=confident("ok"), model_label="ok")
    assert route.needs_human and route.golden and route.decider is Decider.human


# ------------------------------------------------------------------ through the station core


def test_partial_auto_decides_only_above_threshold_and_routes_the_rest(tmp_path):
    answers = iter([confident("ok", 0.999), confident("ok", 0.80), confident("scratch", 0.995)])
    rig = make_rig(
        tmp_path,
        level=Level.partial,
        predictor=FakePredictor(lambda _img: next(answers)),
        settings=None,
    )
    rig.core.router.levels = LevelSettings(audit_share_partial=0.0)
    routes = [rig.feed(phone_image(i)) for i in range(3)]
    assert [r.decider for r in routes] == [Decider.model, Decider.human, Decider.model]
    assert len(rig.core.desk.queue) == 1 and rig.core.desk.queue[0].kind == "review"
    with session_scope(rig.engine) as s:
        disp = s.exec(select(Disposition).order_by(Disposition.id)).all()
    assert [(d.final_label, d.decided_by) for d in disp] == [
        ("ok", DecidedBy.model),
        ("scratch", DecidedBy.model),
    ]


def test_a_raising_predictor_routes_to_the_human_and_records_the_error(tmp_path):
    rig = make_rig(tmp_path, level=Level.full, predictor=FakePredictor(raises=RuntimeError("boom")))
    route = rig.feed(phone_image())
    assert route.decider is Decider.human and "boom" in route.reason
    rig.core.desk.decide("ok")
    with session_scope(rig.engine) as s:
        pred = s.exec(select(Prediction)).one()
    assert pred.label is None and "boom" in (pred.error or "")


def test_a_slow_predictor_times_out_to_the_human(tmp_path):
    release = threading.Event()
    rig = make_rig(
        tmp_path, level=Level.full, predictor=FakePredictor(release=release), timeout_s=0.05
    )
    try:
        route = rig.feed(phone_image())
    finally:
        release.set()
    assert route.decider is Decider.human and "timed out" in route.reason


def test_the_model_runs_off_the_calling_thread(tmp_path):
    fake = FakePredictor()
    rig = make_rig(tmp_path, level=Level.shadow, predictor=fake)
    rig.assess(phone_image())
    assert fake.threads and threading.get_ident() not in fake.threads


def test_repeated_model_failures_drop_the_station_to_human_only(tmp_path):
    rig = make_rig(tmp_path, level=Level.partial, predictor=FakePredictor(raises=OSError("gone")))
    for i in range(3):
        rig.feed(phone_image(i))
    assert rig.core.level is Level.human_only
    assert "MODEL UNUSABLE" in rig.core.status.banners["model"]
    with session_scope(rig.engine) as s:
        change = s.exec(select(LevelChange).order_by(LevelChange.id.desc())).first()
    assert change.automatic and change.to_level is Level.human_only
    assert change.from_level is Level.partial and change.operator_id is None


def test_a_hung_model_does_not_block_the_next_item_and_its_late_answer_is_dropped():
    from station.pipeline.worker import InferenceWorker

    release = threading.Event()
    hung = FakePredictor(release=release)
    worker = InferenceWorker(hung, timeout_s=0.05)
    first = worker.infer(phone_image(1))
    assert not first.ok and "timed out" in (first.error or "")
    hung.release = None
    second = worker.infer(phone_image(2))  # on a fresh thread, not behind the hung call
    assert second.ok and second.prediction is not None
    release.set()
    deadline = time.monotonic() + 10
    while worker.dropped == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.close()
    assert worker.dropped == 1 and worker.timeouts == 1


def test_the_pipeline_imports_neither_torch_nor_qt():
    import subprocess
    import sys

    code = (
        "import sys, station.pipeline as p; "
        "assert all(hasattr(p, n) for n in p.__all__); "
        "bad = [m for m in ('torch', 'PySide6') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_model_taken_out_of_use_mid_item_answers_with_an_error_not_an_exception():
    from station.pipeline.worker import InferenceWorker

    worker = InferenceWorker(FakePredictor(), timeout_s=5)
    worker.close()  # the fail-safe, on the GUI thread, while the pipeline still holds the worker
    result = worker.infer(phone_image())
    assert not result.ok and result.error == "model taken out of use"
    assert worker.explain(phone_image()) is None


@pytest.mark.parametrize("level", [Level.partial, Level.full])
def test_without_an_approved_rule_the_model_decides_nothing(level):
    r = router()
    route = r.route(r.plan(level), probabilities=confident("ok", 0.9999), model_label="ok")
    assert route.decider is Decider.human and "no approved thresholds" in route.reason


def test_an_auto_decision_records_the_version_of_the_approved_rule_it_followed(tmp_path):
    rig = make_rig(tmp_path, level=Level.full, predictor=FakePredictor(confident("ok", 0.999)))
    rig.core.router.levels = LevelSettings(audit_share_full=0.0)
    assert rig.feed(phone_image()).decider is Decider.model
    with session_scope(rig.engine) as s:
        disp = s.exec(select(Disposition)).one()
    assert disp.decided_by is DecidedBy.model and disp.threshold_version == RULE.version


def test_partial_and_full_send_a_uniform_blind_share_to_the_inspector():
    for level in (Level.partial, Level.full):
        r = router(seed=3, blind_share_auto=0.02)
        routes = [
            r.route(r.plan(level, rule=RULE), probabilities=confident("ok"), model_label="ok")
            for _ in range(5000)
        ]
        blind = [x for x in routes if x.blind]
        assert 60 < len(blind) < 140  # 2% of 5000 = 100
        # a blind check: the inspector decides without the suggestion, the model's call is not
        # in force, and it is recorded for the estimate
        assert all(x.decider is Decider.human and not x.show_suggestion for x in blind)
        assert all(x.model_call is ModelCall.auto_pass for x in blind)


def test_truth_sample_draws_only_uniform_model_passes_at_its_share():
    r = router(seed=4, truth_share=0.25)
    shadow = r.plan(Level.shadow)
    passes = [r.route(shadow, probabilities=confident("ok"), model_label="ok") for _ in range(4000)]
    drawn = [r.truth_sample(x) for x in passes]
    assert 850 < sum(d is not None for d in drawn) < 1150
    assert {d for d in drawn if d is not None} == {0.25}
    fails = [
        r.route(shadow, probabilities=confident("dent"), model_label="dent") for _ in range(200)
    ]
    assert all(r.truth_sample(x) is None for x in fails)
    assist = r.plan(Level.assist)  # the suggestion shown: not uniform
    shown = [r.route(assist, probabilities=confident("ok"), model_label="ok") for _ in range(400)]
    assert all(r.truth_sample(x) is None for x in shown if x.show_suggestion)


def test_a_pass_started_at_capture_is_collected_once_and_a_stale_one_is_asked_anew():
    """`station simulate` starts each item's forward pass as the intake reads it ahead; the
    item's assessment collects that answer. One pass per item, never another model's answer."""
    from station.pipeline.worker import InferenceWorker

    model = FakePredictor(lambda im: confident("ok") if im.mean() < 100 else confident("scratch"))
    worker = InferenceWorker(model, timeout_s=5)
    dark, bright = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)
    started = [worker.start(dark), worker.start(bright)]
    answers = [worker.infer(im, s) for im, s in zip((dark, bright), started, strict=True)]
    assert [a.prediction.label for a in answers] == ["ok", "scratch"]
    assert model.calls == 2  # collected, not run again

    other = InferenceWorker(FakePredictor(confident("crack")), timeout_s=5)
    from_other = other.start(dark)
    assert worker.infer(dark, from_other).prediction.label == "ok"
    assert model.calls == 3
    worker.close()
    other.close()


def test_a_pass_started_at_capture_does_not_keep_a_swapped_out_model_in_memory():
    """Items waiting for the inspector keep the pass started at their capture; once the model
    that ran it is swapped out and closed, the pass keeps its answer, not the model."""
    import gc
    import weakref

    from station.pipeline.worker import InferenceWorker

    model = FakePredictor(confident("scratch"))
    worker = InferenceWorker(model, timeout_s=5)
    started = worker.start(np.zeros((8, 8, 3), np.uint8))
    assert started is not None and started.worker is worker
    answer = started.future.result(5)
    gone = weakref.ref(model)
    worker.close()
    del worker, model
    gc.collect()
    assert gone() is None and started.worker is None
    assert started.future.result(0) is answer and answer.label == "scratch"


def test_an_item_whose_pass_was_cancelled_with_a_hung_model_is_answered_afresh():
    from station.pipeline.worker import InferenceWorker

    release = threading.Event()
    model = FakePredictor(release=release)
    worker = InferenceWorker(model, timeout_s=0.05)
    hung, queued = worker.start(phone_image(1)), worker.start(phone_image(2))
    assert not worker.infer(phone_image(1), hung).ok  # timed out: the executor is replaced
    assert queued is not None and queued.future.cancelled()
    model.release = None
    second = worker.infer(phone_image(2), queued)
    assert second.ok and second.prediction is not None
    release.set()
    worker.close()
    assert worker.start(phone_image(3)) is None  # closed: nothing is started


def test_a_pass_cancelled_while_its_item_waits_is_asked_again_not_counted_as_a_failure():
    """Two callers on one model (the pipeline, and the hidden-answer thread in a canary's arm):
    one's timeout replaces the executor and cancels what is queued on it, while the other waits
    on a queued pass. That item is answered afresh, not sent to a human as a model error."""
    from station.pipeline.worker import InferenceWorker

    release = threading.Event()
    model = FakePredictor(release=release)
    worker = InferenceWorker(model, timeout_s=0.4)
    hung = worker.start(phone_image(1))
    queued = worker.start(phone_image(2))
    model.release = None  # passes run from now on answer at once
    got = {}
    first = threading.Thread(target=lambda: got.update(h=worker.infer(phone_image(1), hung)))
    waiting = threading.Thread(target=lambda: got.update(r=worker.infer(phone_image(2), queued)))
    first.start()
    time.sleep(0.15)
    waiting.start()  # waits on its queued pass, behind the hung one
    first.join(5)  # timed out first: the executor is replaced, its queue cancelled
    waiting.join(5)
    assert not got["h"].ok and "timed out" in (got["h"].error or "")
    assert queued is not None and queued.future.cancelled()
    assert got["r"].ok, got["r"].error
    release.set()
    worker.close()
