"""Real model artifacts for registry tests: the bundled model's architecture with its weights
nudged, saved under a new version through the real export (so each loads, verifies and differs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model import bundled_model_path
from model.artifact import MANIFEST, save_artifact


def variant(
    out: Path, version: str, *, nudge: float = 0.01, weak: bool = False, **changes: Any
) -> Path:
    """The bundled model as NAME:VERSION `version`, its defect-type head scaled by 1 + `nudge`
    (other weights, the same pass/fail calls); `weak`: its defect map negated as well, so it
    calls good phones defective and defective ones good (a model that must not ship);
    `changes` edit the manifest (classes, name, ...)."""
    import torch

    src = Path(bundled_model_path())
    manifest = json.loads((src / MANIFEST).read_text())
    weights = torch.load(src / "weights.pt", map_location="cpu", weights_only=True)
    last = sorted(k for k in weights if k.endswith(".weight") and weights[k].dim() == 2)[-1]
    weights[last] = weights[last] * (1.0 + nudge)
    if weak:
        weights["map_head.weight"] = -weights["map_head.weight"]
        weights["map_head.bias"] = -weights["map_head.bias"]
    # no ONNX copy (its export takes seconds): served by torch, like an artifact of before
    skip = ("files", "sha256", "weights_sha256", "onnx")
    body = {k: v for k, v in manifest.items() if k not in skip}
    body.update(version=version, **changes)
    save_artifact(out, weights, body)
    return out
