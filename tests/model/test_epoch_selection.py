"""Which epoch training keeps: the selection rule picks it from the validation figures, the
kept weights are that epoch's, rules that need defect-free images refuse data without, and the
default (auto) selects on the defect-vs-ok NLL where it can and on the full NLL where it cannot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from model_images import write_folder

from model import DataError, ModelError, Predictor, TrainConfig, train
from model.artifact import load_weights
from model.calibrate import fit_temperature
from model.train import validation_figures

BASE = dict(epochs=3, input_size=(96, 64), batch_size=12, lr=3e-3, threads=1, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("select")
    return write_folder(root / "d", {"ok": 30, "scratch": 20, "stain": 20}, seed=11)


@pytest.mark.parametrize(
    ("rule", "applied", "key", "best_of"),
    [
        ("auroc", "auroc", "val_auroc_defect", max),
        ("defect_nll", "defect_nll", "val_defect_nll", min),
        ("auto", "defect_nll", "val_defect_nll", min),  # the default, with both kinds
    ],
)
def test_the_kept_epoch_is_the_rules_pick_and_its_weights_are_served(
    data: Path, tmp_path: Path, rule: str, applied: str, key: str, best_of
) -> None:
    epochs = tmp_path / "epochs"
    result = train(data, tmp_path / "a", TrainConfig(**BASE, select_on=rule), keep_epochs=epochs)
    t = result.manifest["training"]
    figures = [h[key] for h in t["history"]]
    assert len(figures) == 3 and all(f is not None for f in figures)
    # earliest epoch with the best figure
    assert t["best_epoch"] == figures.index(best_of(figures)) + 1
    # on this data the full NLL would keep another epoch (3; auroc keeps 1, defect_nll 2),
    # so a rule that went unheeded would show
    nlls = [h["val_nll"] for h in t["history"]]
    assert t["best_epoch"] != nlls.index(min(nlls)) + 1
    assert t["selected_on"] == applied
    assert f"on validation {applied}" in result.manifest["summary"]
    # one weights file per epoch, and the artifact serves the kept epoch's
    assert sorted(p.name for p in epochs.iterdir()) == [f"epoch-0{i}.pt" for i in (1, 2, 3)]
    kept = load_weights(epochs / f"epoch-{t['best_epoch']:02d}.pt")
    served = Predictor.load(result.path).net.state_dict()
    assert all(torch.equal(kept[k], served[k]) for k in kept)


def test_defect_nll_ignores_mixed_up_defect_types() -> None:
    # classes (ok, scratch, stain); ok vs defect right by a margin, half the defect types swapped
    y = np.array([0] * 4 + [1] * 4 + [2] * 4)
    right, wrong = [0, 2, 1], [0, 1, 2]  # a scratch's logits either way round
    z = np.array(
        [[3, 0, 0]] * 4 + [right] * 2 + [wrong] * 2 + [wrong] * 2 + [right] * 2, dtype=np.float64
    )
    # the temperature calibration fits (and defect_nll uses) is a real fit, not a reset to 1
    calibration = fit_temperature(torch.from_numpy(z), torch.from_numpy(y))
    assert calibration.kept and 0.5 < calibration.temperature < 2.0
    figures = validation_figures(z, y, ok_index=0)
    assert figures["val_nll"] > 0.6  # the full NLL charges the type mix-up
    assert figures["val_defect_nll"] < 0.1  # defect vs ok was right every time
    assert figures["val_auroc_defect"] == 1.0
    swapped = z[:, [1, 0, 2]]  # now ok and defects confused
    assert validation_figures(swapped, y, ok_index=0)["val_defect_nll"] > 1.0


def test_a_diverged_epoch_scores_inf_like_a_stale_one() -> None:
    y = np.array([0, 0, 1, 1])
    z = np.array([[1, 0], [np.nan, 0], [0, 1], [0, 1]], dtype=np.float64)
    assert validation_figures(z, y, ok_index=0)["val_defect_nll"] == math.inf


def test_bad_selection_rules_are_refused_before_training(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="one of auto, nll, defect_nll, auroc, got 'accuracy'"):
        train(data, tmp_path / "a", TrainConfig(**BASE, select_on="accuracy"))
    with pytest.raises(ModelError, match="needs a defect-free class"):
        train(data, tmp_path / "a", TrainConfig(**BASE, select_on="auroc", ok_class=None))
    no_ok = write_folder(tmp_path / "no_ok", {"scratch": 12, "stain": 12}, seed=12)
    # the class is configured but the folder has none: say so, not "another --seed"
    with pytest.raises(DataError, match="needs the defect-free class 'ok' among the classes"):
        train(
            no_ok,
            tmp_path / "b",
            TrainConfig(**BASE, select_on="defect_nll"),
            keep_epochs=tmp_path / "epochs",
        )
    assert not any((tmp_path / d).exists() for d in ("a", "b", "epochs"))


def test_the_default_rule_falls_back_to_the_full_nll_without_a_defect_free_class(
    tmp_path: Path,
) -> None:
    # a defect-type set such as the phone screens: nothing to rank defects against
    types = write_folder(tmp_path / "types", {"scratch": 16, "stain": 16}, seed=13)
    result = train(types, tmp_path / "a", TrainConfig(**BASE, ok_class=None))
    t = result.manifest["training"]
    nlls = [h["val_nll"] for h in t["history"]]
    assert t["selected_on"] == "nll"
    assert t["best_epoch"] == nlls.index(min(nlls)) + 1
    assert "on validation nll" in result.manifest["summary"]
