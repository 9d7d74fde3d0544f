"""An anomaly model (built from good parts alone, model/anomaly.py) at a station: built from the
CLI, accepted with its two classes, run in shadow like the classifier, allowed to auto-pass by
an approved rule but never to auto-fail (it cannot name the defect), its never-pass caps read
on P(defect)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlmodel import select

from db.engine import session_scope
from db.models import Level, Prediction
from review.labels import LabelSet
from review.rules import UNNAMED_DEFECT, DecisionRule, ModelCall
from station.errors import ModelMismatch
from station.pipeline.predictor import ModelInfo, check_fits
from station.pipeline.simulate import SimulateConfig, simulate
from station.pipeline.testing import open_station_db
from station.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from model_images import write_folder  # noqa: E402


@pytest.fixture(scope="module")
def anomaly_artifact(tmp_path_factory) -> Path:
    from model.anomaly import DEFECT_CLASS, AnomalyConfig, fit_anomaly

    assert DEFECT_CLASS == UNNAMED_DEFECT  # the station's rule knows the model's class by name
    root = tmp_path_factory.mktemp("anomaly-station")
    data = write_folder(root / "data", {"ok": 24, "scratch": 3}, seed=5)
    cfg = AnomalyConfig(
        backbone="mobilenet_v3_small", input_size=(192, 128), bank_size=128, sample_patches=1000
    )
    return fit_anomaly(data, root / "artifact", cfg).path


def test_the_cli_builds_one_and_refuses_bad_weights_in_one_line(cli, tmp_path):
    data = write_folder(tmp_path / "data", {"ok": 16, "stain": 2}, seed=6)
    out = tmp_path / "art"
    args = ["model", "train-anomaly", "--data", str(data), "--out", str(out)]
    small = ["--backbone", "mobilenet_v3_small", "--size", "192x128", "--bank-size", "64"]
    done = cli(*args, *small)
    assert done.code == 0, done.err
    assert "anomaly model at 192x128" in done.out and "random backbone" in done.out
    assert "calibration: fitted on 2 defect and 4 defect-free images" in done.out
    assert (out / "manifest.json").is_file()
    info = cli("model", "info", str(out))
    assert info.code == 0 and "patchcore_mobilenet_v3_small" in info.out
    bad = cli(*args[:-1], str(tmp_path / "art2"), *small, "--init-weights", "/no/such.pt")
    assert bad.code == 2 and "expected 'lite0' or a weights file" in bad.err
    assert not (tmp_path / "art2").exists()


def test_a_station_runs_it_in_shadow_like_the_classifier(anomaly_artifact, tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    cfg = SimulateConfig(
        items=8, level=Level.shadow, model_path=str(anomaly_artifact), width=320, height=180
    )
    s = simulate(settings, engine, cfg)
    assert s.final_level == "shadow" and s.paired == 8 and s.model_errors == 0, s.banners
    with session_scope(engine) as ses:
        preds = ses.exec(select(Prediction)).all()
    assert len(preds) == 8
    assert {p.label for p in preds} <= {"ok", UNNAMED_DEFECT}


def test_its_classes_must_be_the_stations_ok_and_the_unnamed_defect():
    labels = LabelSet.of("ok", ["crack", "scratch"])
    fine = ModelInfo("a", "1", "0" * 64, ("defect", "ok"), "ok", architecture="patchcore_x")
    check_fits(fine, labels)
    other_ok = ModelInfo("a", "1", "0" * 64, ("defect", "free"), "free", architecture="patchcore_x")
    with pytest.raises(ModelMismatch, match="station's labels"):
        check_fits(other_ok, labels)
    with pytest.raises(ModelMismatch, match="one of the station's own labels"):
        check_fits(fine, LabelSet.of("ok", ["defect"]))
    # a classifier is still held to the station's labels exactly
    classifier = ModelInfo("c", "1", "0" * 64, ("defect", "ok"), "ok", architecture="resnet18")
    with pytest.raises(ModelMismatch):
        check_fits(classifier, labels)


def test_the_rule_auto_passes_it_but_sends_its_defects_to_the_inspector():
    rule = DecisionRule(0.9, 0.9, {"crack": 0.05})
    call, label, _ = rule.call({"ok": 0.97, UNNAMED_DEFECT: 0.03}, "ok")
    assert (call, label) == (ModelCall.auto_pass, "ok")
    # P(crack) is unknown; P(defect) 0.07 bounds it and is over the crack cap: a person looks
    call, label, why = rule.call({"ok": 0.93, UNNAMED_DEFECT: 0.07}, "ok")
    assert call is ModelCall.review and "crack's never-pass cap" in why
    call, label, why = rule.call({"ok": 0.01, UNNAMED_DEFECT: 0.99}, "ok")
    assert call is ModelCall.review and label == UNNAMED_DEFECT and "names no defect" in why
    # a classifier's confident defect is still auto-failed with its type
    call, label, _ = rule.call({"ok": 0.01, "crack": 0.01, "scratch": 0.98}, "ok")
    assert (call, label) == (ModelCall.auto_fail, "scratch")
