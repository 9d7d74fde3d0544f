"""Artifacts are verified on load: tampering, missing files, pickled models, mismatches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from model import ArtifactError, PickledModel, Predictor, TamperedArtifact, UnknownArchitecture
from model.artifact import MANIFEST, WEIGHTS, file_sha256, manifest_sha256


@pytest.fixture
def copy(trained, tmp_path: Path) -> Path:
    dst = tmp_path / "artifact"
    shutil.copytree(trained.artifact, dst)
    return dst


def _rehash(folder: Path, **changes) -> None:
    """Rewrite the manifest consistently, as a careless (not malicious-looking) editor would."""
    m = json.loads((folder / MANIFEST).read_text())
    m.update(changes)
    m["files"] = {n: file_sha256(folder / n) for n in m["files"]}
    m["sha256"] = manifest_sha256(m)
    (folder / MANIFEST).write_text(json.dumps(m))


def test_changed_weights_are_refused_naming_the_file(copy: Path) -> None:
    data = bytearray((copy / WEIGHTS).read_bytes())
    data[-20] ^= 0xFF
    (copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(TamperedArtifact, match=WEIGHTS):
        Predictor.load(copy)


def test_edited_manifest_value_is_refused(copy: Path) -> None:
    m = json.loads((copy / MANIFEST).read_text())
    m["temperature"] = 0.01
    (copy / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(TamperedArtifact, match="manifest was edited"):
        Predictor.load(copy)


def test_missing_manifest_is_refused(copy: Path) -> None:
    (copy / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match="manifest.json"):
        Predictor.load(copy)


def test_missing_and_unlisted_files_are_refused(copy: Path) -> None:
    (copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(TamperedArtifact, match="extra.bin"):
        Predictor.load(copy)
    (copy / "extra.bin").unlink()
    (copy / "reliability.png").unlink()
    with pytest.raises(TamperedArtifact, match="reliability.png"):
        Predictor.load(copy)


def test_pickled_full_model_is_refused_even_with_matching_hashes(copy: Path) -> None:
    full = Predictor.load(copy).net
    torch.save(full, copy / WEIGHTS)
    _rehash(copy)
    with pytest.raises(PickledModel, match="pickled"):
        Predictor.load(copy)


def test_classes_that_do_not_match_the_weights_are_refused(copy: Path) -> None:
    _rehash(copy, classes=["ok", "scratch", "stain", "dent"])
    with pytest.raises(ArtifactError, match="do not fit"):
        Predictor.load(copy)


def test_ok_class_outside_the_classes_is_refused(copy: Path) -> None:
    _rehash(copy, ok_class="free")
    with pytest.raises(ArtifactError, match="free"):
        Predictor.load(copy)


def test_unknown_architecture_in_manifest_is_refused(copy: Path) -> None:
    _rehash(copy, architecture="no_such_net")
    with pytest.raises(UnknownArchitecture, match="no_such_net"):
        Predictor.load(copy)


def test_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not one"):
        Predictor.load(tmp_path / "nowhere")
