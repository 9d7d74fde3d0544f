"""The anomaly model (model/anomaly.py) from the outside: built from defect-free images alone,
it finds defects it never saw, points at them, says honestly how it was calibrated, and loads
and serves like the classifier."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from model_images import write_folder

from model import ModelError, Predictor, TrainConfig, bundled_model_path, evaluate, train
from model.anomaly import (
    DEFECT_CLASS,
    AnomalyConfig,
    AnomalyNet,
    _init_backbone,
    fit_anomaly,
    fit_calibration,
    greedy_coreset,
    nearest_distance,
)
from model.errors import DataError

# A random backbone (no weights can be downloaded in a test) at twice the images' size: the
# 8x8 patches must be small beside a stain
SIZE = (192, 128)


def config(**kw) -> AnomalyConfig:
    base = dict(backbone="mobilenet_v3_small", input_size=SIZE, bank_size=256, sample_patches=2000)
    return AnomalyConfig(**(base | kw))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path, dict]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("anomaly")
    # a new line: plenty of good parts, a handful of defects
    data = write_folder(root / "data", {"ok": 40, "stain": 3, "scratch": 3}, seed=1)
    held = write_folder(root / "held", {"ok": 20, "stain": 20, "scratch": 20}, seed=2)
    result = fit_anomaly(data, root / "artifact", config())
    return result.path, held, result.manifest


def test_built_from_good_parts_it_tells_unseen_defects_from_good_ones(fitted):
    artifact, held, manifest = fitted
    assert manifest["architecture"] == "patchcore_mobilenet_v3_small"
    assert manifest["classes"] == [DEFECT_CLASS, "ok"] and manifest["ok_class"] == "ok"
    mem = manifest["training"]["data"]
    # the memory holds good parts only: 30 of the 40 (whole groups held out to calibrate on)
    assert mem["train_images"] == 30 and mem["validation_images"] == 10 + 6
    cal = manifest["calibration"]["score_line"]
    assert cal["kind"] == "logistic" and "6 defect and 10 defect-free" in cal["note"]
    # every folder class other than ok is a defect to evaluate(): stain and scratch -> defect
    report = evaluate(Predictor.load(artifact), held)
    assert report["n"] == 60 and report["auroc_defect"] >= 0.9
    assert report["per_class"][DEFECT_CLASS]["support"] == 40


def test_it_predicts_and_points_at_the_defect_like_the_classifier(fitted):
    artifact, held, _ = fitted
    p = Predictor.load(artifact)
    scratches = sorted((held / "scratch").glob("*[0-9].png"))
    goods = sorted((held / "ok").glob("*[0-9].png"))
    on_scratch = [p.predict(cv2.imread(str(f))) for f in scratches]
    on_good = [p.predict(cv2.imread(str(f))) for f in goods]
    assert np.mean([r.p_defect for r in on_scratch]) > np.mean([r.p_defect for r in on_good])
    assert sum(r.label == DEFECT_CLASS for r in on_scratch) >= 15
    r = on_scratch[0]
    assert set(r.probabilities) == {DEFECT_CLASS, "ok"}
    assert r.p_defect == pytest.approx(r.probabilities[DEFECT_CLASS])
    assert r.embedding is not None and len(r.embedding) == 16
    # served from its ONNX copy (memory search included), answering as the torch weights do
    reference = Predictor.load(artifact, engine="torch")
    assert p.served.engine == "onnxruntime", p.served.note
    for f, served in zip(scratches[:3], on_scratch, strict=False):
        alone = reference.predict(cv2.imread(str(f)))
        assert abs(alone.p_defect - served.p_defect) <= 1e-5
    # the heat-map's hottest point lies on the stain's mask for most stains
    hits = 0
    stains = sorted((held / "stain").glob("*[0-9].png"))
    for f in stains:
        heat = p.explain(cv2.imread(str(f)))
        mask = cv2.imread(str(f).replace(".png", ".mask.png"), cv2.IMREAD_GRAYSCALE)
        assert heat.shape == mask.shape and heat.min() >= 0.0 and heat.max() <= 1.0
        y, x = np.unravel_index(heat.argmax(), heat.shape)
        hits += bool(mask[max(0, y - 4) : y + 5, max(0, x - 4) : x + 5].max())
    assert hits >= 15, f"heat-map on the stain in {hits} of {len(stains)}"


def test_the_artifact_is_verified_like_any_other(fitted, tmp_path):
    import shutil

    artifact, _, _ = fitted
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["anomaly"]["bank_size"] = 12  # the memory's size edited by hand
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="sha256"):
        Predictor.load(copy)


def test_from_good_parts_alone_it_says_its_score_is_no_probability(tmp_path):
    data = write_folder(tmp_path / "data", {"ok": 24}, seed=3)
    m = fit_anomaly(data, tmp_path / "a", config()).manifest
    line = m["calibration"]["score_line"]
    assert line["kind"] == "typicality" and "not a probability" in line["note"]
    assert "AUROC unknown" in m["summary"]
    p = Predictor.load(tmp_path / "a")
    assert p.predict(cv2.imread(str(next((data / "ok").glob("*.png"))))).label in ("ok", "defect")
    # a score at the 99% quantile of the held-out good parts' scores is P(defect) 0.5
    scores = np.linspace(1, 2, 50)
    cal = fit_calibration(scores, np.zeros(50, bool), 0.01)
    assert cal.scale * (np.quantile(scores, 0.99) - cal.centre) == pytest.approx(0.0)


def test_a_folder_without_good_parts_or_a_classifier_arch_is_refused_clearly(tmp_path):
    data = write_folder(tmp_path / "data", {"stain": 5, "scratch": 5}, seed=4)
    with pytest.raises(DataError, match="defect-free class folder 'ok'"):
        fit_anomaly(data, tmp_path / "a", config())
    with pytest.raises(ModelError, match="train-anomaly"):
        train(data, tmp_path / "b", TrainConfig(arch="patchcore_mobilenet_v3_small"))
    with pytest.raises(ModelError, match="unknown architecture"):
        fit_anomaly(data, tmp_path / "c", config(backbone="no_such_net"))


def test_greedy_coreset_covers_every_point_better_than_a_random_pick():
    g = torch.Generator().manual_seed(0)
    # one big cluster and a few far-off points: a random pick misses the rare ones
    pts = torch.cat([torch.randn(2000, 8, generator=g), torch.randn(10, 8, generator=g) + 12])
    k = 40
    core = pts[greedy_coreset(pts, k)]
    rand = pts[torch.randperm(len(pts), generator=g)[:k]]
    assert nearest_distance(pts, core).max() < 0.5 * nearest_distance(pts, rand).max()
    assert len(set(greedy_coreset(pts, k).tolist())) == k
    assert torch.equal(greedy_coreset(pts, 5000), torch.arange(len(pts)))


def test_nearest_distance_matches_a_brute_force():
    g = torch.Generator().manual_seed(1)
    q, b = torch.randn(1500, 20, generator=g), torch.randn(300, 20, generator=g)
    want = torch.cdist(q, b).min(dim=1).values
    assert torch.allclose(nearest_distance(q, b), want, atol=1e-4)


def test_the_backbone_can_start_from_a_model_artifacts_weights():
    net = AnomalyNet("mobilenet_v3_small", 1, 16)
    info = _init_backbone(net, str(bundled_model_path() / "weights.pt"))
    assert info["matched"] > 50
    bundled = torch.load(bundled_model_path() / "weights.pt", weights_only=True)
    key = next(k for k in net.state_dict() if k.startswith("stage16."))
    assert torch.equal(net.state_dict()[key], bundled[key])
