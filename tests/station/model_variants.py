"""Real model artifacts for registry tests: the bundled model's architecture with its weights
nudged, saved under a new version through the real export (so each loads, verifies and differs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model import bundled_model_path
from model.artifact import MANIFEST, save_artifact


def variant(out: Path, version: str, *, nudge: float = 0.01, **changes: Any) -> Path:
    """The bundled model as NAME:VERSION `version`, its classifier scaled by 1 + `nudge` (other
    weights, same behaviour near enough); `changes` edit the manifest (classes, name, ...)."""
    import torch

    src = Path(bundled_model_path())
    manifest = json.loads((src / MANIFEST).read_text())
    weights = torch.load(src / "weights.pt", map_location="cpu", weights_only=True)
    last = sorted(k for k in weights if k.endswith(".weight") and weights[k].dim() == 2)[-1]
    weights[last] = weights[last] * (1.0 + nudge)
    body = {k: v for k, v in manifest.items() if k not in ("files", "sha256", "weights_sha256")}
    body.update(version=version, **changes)
    save_artifact(out, weights, body)
    return out
