"""Serving by onnxruntime: the ONNX copy saved with an artifact answers like the torch weights,
and wherever it cannot be trusted or run, torch serves and says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from artifact_copy import edited_copy

from model import Predictor, bundled_model_path
from model.artifact import MANIFEST, file_sha256, manifest_sha256, read_manifest
from model.errors import ArtifactError, BadImage, ModelError, TamperedArtifact
from model.preprocess import InputSpec, prepare, preprocess, to_tensor
from model.serving import ENGINE_ENV, ONNX_FILE

pytest.importorskip("onnxruntime")


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.full((180, 320, 3), 120, np.uint8)
        img[30:150, 40:280] = 230
        img[80 + i : 83 + i, 90:200] = 30  # a dark line, moved a little per frame
        out.append(np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8))
    return out


def same_predictions(a, b, tol: float) -> None:
    assert a.label == b.label
    for k, v in a.probabilities.items():
        assert abs(v - b.probabilities[k]) <= tol, (k, v, b.probabilities[k])
    assert abs(a.p_defect - b.p_defect) <= tol


def test_the_trained_artifact_carries_a_checked_onnx_copy(trained) -> None:
    m = read_manifest(trained.artifact)
    assert m["onnx"]["file"] == ONNX_FILE and ONNX_FILE in m["files"]
    assert m["onnx"]["max_difference"] <= 1e-5
    served = Predictor.load(trained.artifact)
    reference = Predictor.load(trained.artifact, engine="torch")
    assert served.served.engine == "onnxruntime" and reference.served.engine == "torch"
    for img in frames(3):
        same_predictions(served.predict(img), reference.predict(img), 1e-5)
        # the heat-map is the defect map computed by the serving engine: the same picture
        assert np.abs(served.explain(img) - reference.explain(img)).max() <= 1e-4


def test_the_bundled_model_is_served_by_onnxruntime_and_agrees_with_torch() -> None:
    served = Predictor.load()
    reference = Predictor.load(engine="torch")
    assert served.served.engine == "onnxruntime", served.served.note
    for img in frames(2, seed=3):
        same_predictions(served.predict(img), reference.predict(img), 1e-5)


def test_the_environment_can_force_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENGINE_ENV, "torch")
    assert Predictor.load().served.engine == "torch"
    monkeypatch.setenv(ENGINE_ENV, "tensorrt")
    with pytest.raises(ModelError, match="expected a model engine among auto, onnxruntime, torch"):
        Predictor.load()


def test_an_artifact_without_a_copy_is_served_by_torch_and_says_why(trained, tmp_path) -> None:
    copy = tmp_path / "no-onnx"
    shutil.copytree(trained.artifact, copy)
    (copy / ONNX_FILE).unlink()
    m = json.loads((copy / MANIFEST).read_text())
    del m["files"][ONNX_FILE]
    del m["onnx"]  # as artifacts saved before ONNX copies existed
    m["sha256"] = manifest_sha256(m)
    (copy / MANIFEST).write_text(json.dumps(m))
    p = Predictor.load(copy)
    assert p.served.engine == "torch"
    assert "no ONNX copy" in p.served.note
    assert p.predict(frames(1)[0]).label in p.manifest.classes
    with pytest.raises(ArtifactError, match="cannot serve with onnxruntime: the artifact has no"):
        Predictor.load(copy, engine="onnxruntime")


def test_a_changed_onnx_file_is_refused_like_changed_weights(trained, tmp_path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(trained.artifact, copy)
    data = bytearray((copy / ONNX_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(TamperedArtifact, match=f"{ONNX_FILE} has sha256"):
        Predictor.load(copy)


def test_a_copy_that_disagrees_with_the_weights_is_not_served(trained, tmp_path) -> None:
    """Another network's ONNX file, consistently rehashed: the check on the test image at load
    finds the difference and torch serves the weights the manifest names."""
    other = Predictor.load(bundled_model_path(), engine="torch")
    from model.serving import export

    data, names = export(other.net, Predictor.load(trained.artifact).spec)

    def swap(m: dict) -> None:
        m["onnx"]["outputs"] = list(names)

    copy = tmp_path / "swapped"
    shutil.copytree(trained.artifact, copy)
    (copy / ONNX_FILE).write_bytes(data)
    m = json.loads((copy / MANIFEST).read_text())
    swap(m)
    m["files"][ONNX_FILE] = file_sha256(copy / ONNX_FILE)
    m["sha256"] = manifest_sha256(m)
    (copy / MANIFEST).write_text(json.dumps(m))
    p = Predictor.load(copy)
    assert p.served.engine == "torch"
    assert "cannot run" in p.served.note or "differs from torch" in p.served.note
    with pytest.raises(ArtifactError, match="cannot serve with onnxruntime"):
        Predictor.load(copy, engine="onnxruntime")


def test_an_unusable_onnx_section_is_refused_or_ignored_clearly(trained, tmp_path) -> None:
    def no_file(m: dict) -> None:
        m["onnx"] = {"file": None, "reason": "export failed: SomeOperator"}

    copy = tmp_path / "edited"
    edited = edited_copy(trained.artifact, copy, no_file)
    (edited / ONNX_FILE).unlink()
    m = json.loads((edited / MANIFEST).read_text())
    del m["files"][ONNX_FILE]
    m["sha256"] = manifest_sha256(m)
    (edited / MANIFEST).write_text(json.dumps(m))
    p = Predictor.load(edited)
    assert p.served.engine == "torch" and "export failed: SomeOperator" in p.served.note


def test_an_onnx_section_naming_an_unhashed_file_is_refused(trained, tmp_path) -> None:
    def unlisted(m: dict) -> None:
        del m["files"][ONNX_FILE]

    copy = edited_copy(trained.artifact, tmp_path / "unlisted", unlisted)
    (copy / ONNX_FILE).unlink()  # else refused as a file the manifest does not list
    with pytest.raises(ArtifactError, match="names model.onnx, which 'files' does not list"):
        Predictor.load(copy)


@pytest.mark.parametrize("fit", ["stretch", "letterbox"])
def test_serving_preprocessing_is_bit_for_bit_the_training_one(fit: str) -> None:
    spec = InputSpec(96, 64, fit=fit)
    rng = np.random.default_rng(5)
    images = [
        rng.integers(0, 256, (72, 128, 3), dtype=np.uint8),  # BGR, shrunk
        rng.integers(0, 256, (30, 20), dtype=np.uint8),  # grayscale, grown
        rng.integers(0, 65536, (40, 200, 4), dtype=np.uint16),  # 16-bit BGRA
        rng.random((64, 96, 3)),  # float in [0, 1], already at size
        rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)[::-1, ::-1],  # a view, at size
        rng.integers(0, 256, (130, 70, 3), dtype=np.uint8).transpose(1, 0, 2),  # strided view
    ]
    for img in images:
        fast = preprocess(img, spec)
        assert fast.is_contiguous() and fast.shape == (3, 64, 96)
        assert torch.equal(fast, to_tensor(prepare(img, spec), spec))


def test_a_batch_answers_as_each_image_alone_in_order(trained) -> None:
    p = Predictor.load(trained.artifact)
    images = frames(5, seed=9)
    batch = p.predict_batch(images)
    assert len(batch) == 5
    for one, img in zip(batch, images, strict=True):
        same_predictions(one, p.predict(img), 1e-6)
    with pytest.raises(BadImage, match="expected an HxW grayscale"):
        p.predict_batch([images[0], np.zeros((4, 5, 6, 7), np.uint8), images[1]])
    assert p.predict_batch([]) == []


def test_saving_without_a_copy_is_a_choice_the_manifest_records(tmp_path: Path) -> None:
    from model.serving import onnx_copy

    files, section = onnx_copy(torch.nn.Identity(), InputSpec(32, 32), 1.0)
    assert files == {} and section["file"] is None
    assert section["reason"].startswith("export failed") or "differs" in section["reason"]
