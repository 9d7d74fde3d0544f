"""The exported artifact as the station uses it: load, predict, batch, explain, odd images."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from model_images import make_image

import model
from model import BadImage, Predictor, overlay, read_manifest
from model.arch import build
from model.predictor import ModelManifest
from model.preprocess import InputSpec


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.artifact)


def _image(label: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return make_image(label, np.random.default_rng(seed))


def test_public_names_resolve() -> None:
    for name in model.__all__:
        assert getattr(model, name) is not None, name


def test_round_trip_keeps_manifest_and_predictions(trained, predictor: Predictor) -> None:
    m = predictor.manifest
    assert m.classes == ("ok", "scratch", "stain")
    assert m.ok_class == "ok"
    assert m.sha256 == read_manifest(trained.artifact)["sha256"] == trained.manifest["sha256"]
    assert m.temperature > 0 and m.explain == "defect_map"
    assert trained.manifest["training"]["data"]["skipped"] == 2
    pred = predictor.predict(_image("scratch", 3)[0])
    assert pred.label in m.classes
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    assert pred.p_defect == pytest.approx(1.0 - pred.probabilities["ok"])
    assert pred.confidence == pytest.approx(max(pred.probabilities.values()))
    assert pred.latency_ms > 0
    again = Predictor.load(trained.artifact).predict(_image("scratch", 3)[0])
    assert again.probabilities == pytest.approx(dict(pred.probabilities))


def test_prediction_is_immutable(predictor: Predictor) -> None:
    pred = predictor.predict(_image("ok", 4)[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        pred.label = "crack"  # type: ignore[misc]
    with pytest.raises(TypeError):
        pred.probabilities["ok"] = 1.0  # type: ignore[index]
    assert pred.to_dict()["probabilities"] == dict(pred.probabilities)


def _answer(p) -> tuple:
    """A prediction without its timing."""
    return p.label, dict(p.probabilities), p.p_defect, p.confidence, p.embedding


@pytest.mark.parametrize("workers", [None, 1, 3])
def test_a_batch_answers_each_image_exactly_as_predict(predictor: Predictor, workers) -> None:
    # One forward pass per image on however many threads: the same numbers as predict(), in
    # the images' order, whatever the workers.
    labels = ["ok", "scratch", "stain", "ok", "stain"]
    images = [_image(lab, i)[0] for i, lab in enumerate(labels)]
    batch = predictor.predict_batch(images, workers=workers)
    assert [_answer(b) for b in batch] == [_answer(predictor.predict(img)) for img in images]
    assert all(b.latency_ms > 0 for b in batch)
    assert predictor.predict_batch([], workers=workers) == []
    assert _answer(predictor.predict_batch(images[:1], workers=workers)[0]) == _answer(batch[0])


def test_a_bad_image_in_a_batch_fails_it_whatever_the_workers(predictor: Predictor) -> None:
    images = [_image("ok", i)[0] for i in range(6)]
    images[2] = np.zeros((4, 5, 6, 7), np.uint8)
    for workers in (1, 2):
        with pytest.raises(BadImage, match="expected an HxW grayscale"):
            predictor.predict_batch(images, workers=workers)
    for given in (images, []):
        with pytest.raises(ValueError, match="at least one worker"):
            predictor.predict_batch(given, workers=0)
    with pytest.raises(ValueError, match="at least one worker"):
        predictor.logits_from_prepared([], workers=0)


def test_a_batch_still_answers_as_predict_after_torchs_thread_count_changes() -> None:
    # A thread keeps the count torch had when it first ran; summing over another count changes
    # the last bits. The bundled model on torch, big enough for torch to split its work.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        p = Predictor.load(engine="torch")
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(4)]
        p.predict_batch(images, workers=2)
        torch.set_num_threads(1)
        got = p.predict_batch(images, workers=2)
        assert [_answer(g) for g in got] == [_answer(p.predict(im)) for im in images]
    finally:
        torch.set_num_threads(threads)


def test_batches_asking_for_other_thread_counts_at_once_both_succeed(
    predictor: Predictor, monkeypatch
) -> None:
    # One batch is paused between queueing its first and second image while another asks for
    # a different number of threads (which replaces the pool): neither fails.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    images = [_image("ok", i)[0] for i in range(4)]
    predictor.predict_batch(images, workers=2)
    real_submit = ThreadPoolExecutor.submit
    paused, queued = threading.Event(), [0]

    def submit(pool, fn, *args, **kwargs):
        future = real_submit(pool, fn, *args, **kwargs)
        if threading.current_thread().name == "first":
            queued[0] += 1
            if queued[0] == 1:
                paused.set()
                threading.Event().wait(0.3)  # the other batch arrives meanwhile
        return future

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    results: dict[str, object] = {}

    def first() -> None:
        try:
            results["first"] = predictor.predict_batch(images, workers=2)
        except Exception as e:  # what the test is about
            results["first"] = e

    t = threading.Thread(target=first, name="first")
    t.start()
    assert paused.wait(30)
    second = predictor.predict_batch(images, workers=3)
    t.join(60)
    expected = [_answer(predictor.predict(im)) for im in images]
    assert [_answer(g) for g in second] == expected
    assert isinstance(results["first"], list), results["first"]
    assert [_answer(g) for g in results["first"]] == expected


def test_nothing_of_a_failed_batch_is_left_running(trained) -> None:
    import threading

    p = Predictor.load(trained.artifact)
    running, lock = [0], threading.Lock()
    real = p.runner

    def counted(x):
        with lock:
            running[0] += 1
        try:
            threading.Event().wait(0.05)  # a forward pass still going when the failure comes
            return real(x)
        finally:
            with lock:
                running[0] -= 1

    p.runner = counted
    images = [_image("ok", i)[0] for i in range(6)]
    images[0] = np.zeros((4, 5, 6, 7), np.uint8)  # fails at once, the next ones in flight
    with pytest.raises(BadImage):
        p.predict_batch(images, workers=2)
    assert running[0] == 0


def test_batch_threads_are_kept_not_piled_up_and_end_with_the_predictor(trained) -> None:
    # A long-running process (the retraining loop, evaluation) batches again and again: its
    # threads are reused, and go when the model does.
    import gc
    import threading
    import time

    def batch_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("batch")}

    others = batch_threads()  # other predictors' (this test's own are the ones added)
    p = Predictor.load(trained.artifact)
    images = [_image("ok", i)[0] for i in range(4)]
    for workers in (2, 2, 3, 2, 2):
        p.predict_batch(images, workers=workers)
        assert len(batch_threads() - others) <= workers
    del p
    gc.collect()
    deadline = time.monotonic() + 5
    while batch_threads() - others and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not batch_threads() - others


def test_evaluation_scores_what_serving_answers(predictor: Predictor) -> None:
    # model evaluate and the challenger's holdout comparison read logits_from_prepared: the
    # probabilities they compute are the served ones, with one worker or several.
    from model.preprocess import prepare

    images = [_image(lab, 20 + i)[0] for i, lab in enumerate(["ok", "scratch", "stain", "ok"])]
    rgbs = [prepare(img, predictor.spec) for img in images]
    one = predictor.logits_from_prepared(rgbs, workers=1)
    assert np.array_equal(one, predictor.logits_from_prepared(rgbs, workers=2))
    probs = torch.softmax(torch.from_numpy(one) / predictor.manifest.temperature, dim=1)
    for row, img in zip(probs.tolist(), images, strict=True):
        served = predictor.predict(img).probabilities
        assert row == pytest.approx(list(served.values()), abs=1e-12)
    assert predictor.logits_from_prepared([]).shape == (0, len(predictor.manifest.classes))


def test_grayscale_rgba_16bit_and_odd_sizes_are_accepted(predictor: Predictor) -> None:
    bgr = _image("stain", 7)[0]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    base = predictor.predict(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)).probabilities
    for variant in (gray, gray[:, :, None], gray.astype(np.uint16) << 8):
        got = predictor.predict(variant).probabilities
        assert dict(got) == pytest.approx(dict(base), abs=1e-6)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 17
    assert dict(predictor.predict(bgra).probabilities) == pytest.approx(
        dict(predictor.predict(bgr).probabilities), abs=1e-6
    )
    odd = cv2.resize(bgr, (101, 37))
    assert predictor.predict(odd).label in predictor.manifest.classes
    assert predictor.explain(odd).shape == (37, 101)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("a path", "numpy image"),
        (np.zeros(100, np.uint8), "shape"),
        (np.zeros((32, 32, 5), np.uint8), "shape"),
        (np.zeros((32, 32, 3), np.int32), "dtype"),
        (np.zeros((2, 2, 3), np.uint8), "at least"),
        (np.full((32, 32), np.nan, np.float32), "finite"),
    ],
)
def test_wrong_image_kind_is_refused_with_a_message(predictor: Predictor, bad, words) -> None:
    with pytest.raises(BadImage, match=words):
        predictor.predict(bad)


def test_heat_map_peaks_on_the_defect_mask_more_often_than_chance(predictor: Predictor) -> None:
    rng = np.random.default_rng(11)
    hits, chance, n = 0, 0.0, 40
    for i in range(n):
        img, mask = make_image(["scratch", "stain"][i % 2], rng)
        heat = predictor.explain(img)
        assert heat.shape == mask.shape and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0
        near = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0
        y, x = np.unravel_index(int(heat.argmax()), heat.shape)
        hits += bool(near[y, x])
        chance += float(near.mean())
    assert hits / n > max(0.4, 4 * chance / n)


def test_overlay_blends_the_heat_map_into_the_image(predictor: Predictor) -> None:
    img = _image("scratch", 5)[0]
    shown = overlay(img, predictor.explain(img))
    assert shown.shape == img.shape and shown.dtype == np.uint8
    assert np.array_equal(overlay(img, np.zeros(img.shape[:2], np.float32)), img)


def test_grad_cam_explains_a_model_without_a_defect_map() -> None:
    torch.manual_seed(0)
    net = build("shufflenet_v2_x0_5", 3, 0)
    manifest = ModelManifest(
        "g",
        "1",
        "0" * 64,
        "0" * 64,
        "shufflenet_v2_x0_5",
        ("ok", "scratch", "stain"),
        "ok",
        1.0,
        {},
        {},
        "grad_cam",
        (),
        {},
    )
    p = Predictor(net, manifest, InputSpec(96, 64))
    img = _image("stain", 9)[0]
    heat = p.explain(img)
    assert heat.shape == img.shape[:2] and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
