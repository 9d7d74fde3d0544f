"""One tiny real model per test session: generated images with masks, trained for one epoch,
exported as a real artifact that the tests load, tamper with and evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from model_images import write_folder

from model import TrainConfig, train

EPOCHS = 1
PER_CLASS = {"ok": 120, "scratch": 90, "stain": 90}


@dataclass(frozen=True)
class Trained:
    data: Path
    artifact: Path
    heldout: Path
    manifest: dict


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("model-session")
    data = write_folder(root / "data", PER_CLASS, seed=1)
    # two unreadable files: skipped and counted, never fatal
    (data / "ok" / "broken.png").write_bytes(b"not a png")
    (data / "stain" / "empty.jpg").write_bytes(b"")
    heldout = write_folder(root / "heldout", {"ok": 20, "scratch": 20, "stain": 20}, seed=2)
    cfg = TrainConfig(epochs=EPOCHS, input_size=(96, 64), batch_size=12, lr=3e-3, threads=1, seed=0)
    result = train(data, root / "artifact", cfg)
    return Trained(data, result.path, heldout, result.manifest)
