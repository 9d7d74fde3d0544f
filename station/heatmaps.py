"""The review window's way to a model: open the artifact of the version that judged an item, from
this machine's store, and only if it holds that version's weights (review/ may not import the
model or know where the station keeps artifacts; `station review` hands it `model_opener`)."""

from __future__ import annotations

from pathlib import Path

from review.errors import HeatmapUnavailable
from review.heatmaps import Explainer, ModelRef, OpenModel
from station.pipeline.predictor import load_predictor
from station.registry import artifact_location


def model_opener(files_dir: Path) -> OpenModel:
    """An `OpenModel` for artifacts recorded relative to `files_dir` (the station's files)."""

    def open_model(ref: ModelRef) -> Explainer:
        return open_recorded(files_dir, ref)

    return open_model


def open_recorded(files_dir: Path, ref: ModelRef) -> Explainer:
    """The model version `ref` loaded from its recorded artifact; raises HeatmapUnavailable with
    the reason in one line (no artifact recorded, missing here, unreadable, other weights)."""
    path = artifact_location(files_dir, ref.artifact_path)
    if path is None:
        raise HeatmapUnavailable(f"model {ref.spec} has no artifact on record")
    if not path.is_dir():
        raise HeatmapUnavailable(
            f"the artifact of model {ref.spec} is not on this machine ({path})"
        )
    # Only now: the model's package pulls in torch (seconds); a missing folder is known at once.
    from model.errors import ModelError

    try:
        predictor, info = load_predictor(path)
    except (ModelError, OSError) as e:
        raise HeatmapUnavailable(f"model {ref.spec} cannot be loaded: {_one_line(e)}") from e
    if info.sha256 != ref.sha256:
        # Another model's map would explain a judgement that model never made.
        raise HeatmapUnavailable(
            f"the artifact at {path} holds other weights (sha {info.sha256[:12]}..) than model "
            f"{ref.spec} that judged the item (sha {ref.sha256[:12]}..)"
        )
    return predictor


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
