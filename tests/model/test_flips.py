"""Test-time flips: the served probabilities are the mean over the image and its mirrored views."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from artifact_copy import edited_copy
from model_images import make_image

from model import ArtifactError, ModelError, Predictor, evaluate
from model.evaluate import to_html
from model.views import check_flips, flip_averaged

# the views as numpy sees them: image rows are H, columns W
NUMPY_FLIP = {
    "h": lambda a: a[:, ::-1],
    "v": lambda a: a[::-1],
    "hv": lambda a: a[::-1, ::-1],
}


def _lopsided(x: torch.Tensor) -> torch.Tensor:
    """Logits that depend on which side is brighter, so mirrored views score differently."""
    half = x.shape[-1] // 2
    lean = x[..., :half].mean(dim=(1, 2, 3)) - x[..., half:].mean(dim=(1, 2, 3))
    return torch.stack([10 * lean, torch.zeros_like(lean), torch.zeros_like(lean)], dim=1)


def test_the_views_probabilities_are_averaged_not_their_logits() -> None:
    x = torch.rand(2, 3, 8, 12)
    x[0, :, :, :6] += 3.0  # the first image is bright on its left: its h view is not
    got = flip_averaged(_lopsided, x, ("h", "v", "hv"))
    views = [x, torch.flip(x, (3,)), torch.flip(x, (2,)), torch.flip(x, (2, 3))]
    want = torch.stack([torch.softmax(_lopsided(v).double(), 1) for v in views]).mean(0)
    assert torch.allclose(torch.exp(got), want, atol=1e-9)
    mean_logits = torch.stack([_lopsided(v).double() for v in views]).mean(0)
    assert not torch.allclose(torch.softmax(mean_logits, 1), want, atol=1e-3)


def test_without_flips_the_logits_are_untouched() -> None:
    x = torch.rand(3, 3, 8, 12)
    assert torch.equal(flip_averaged(_lopsided, x, ()), _lopsided(x))


def test_unknown_or_repeated_flips_are_refused() -> None:
    assert check_flips(["h", "hv"]) == ("h", "hv")
    for bad in (["d"], ["h", "h"], ["rot90"], [["h"]], [3]):
        with pytest.raises(ModelError, match="among h, v, hv, each at most once"):
            check_flips(bad)
    for not_a_list in ("hv", {"h": 1}):  # "hv" must not read as the flips h and v
        with pytest.raises(ModelError, match="as a list such as"):
            check_flips(not_a_list)


@pytest.fixture(scope="module")
def plain_and_flipped(trained) -> tuple[Predictor, Predictor]:
    """The session's model as trained, and the same weights serving three flips (temperature 1
    in both, so the served probabilities are the views' own)."""
    plain = Predictor.load(trained.artifact)
    bare = dataclasses.replace(plain.manifest, temperature=1.0)
    flipped = dataclasses.replace(bare, test_time_flips=("h", "v", "hv"))
    return Predictor(plain.net, bare, plain.spec), Predictor(plain.net, flipped, plain.spec)


def test_a_flipped_prediction_is_the_mean_of_the_mirrored_images_predictions(
    plain_and_flipped,
) -> None:
    plain, flipped = plain_and_flipped
    for label, seed in (("scratch", 3), ("stain", 4), ("ok", 5)):
        img = make_image(label, np.random.default_rng(seed))[0]  # at input size: no resampling
        views = [img, *(np.ascontiguousarray(f(img)) for f in NUMPY_FLIP.values())]
        got = flipped.predict(img)
        want = np.mean([plain.predict(v).p_defect for v in views])
        assert got.p_defect == pytest.approx(want, abs=1e-5)
        assert got.p_defect != pytest.approx(plain.predict(img).p_defect, abs=1e-6)
        batch = flipped.predict_batch([img, views[1]])
        assert batch[0].p_defect == pytest.approx(got.p_defect, abs=1e-6)


def test_a_flipped_heat_map_is_the_mean_of_the_views_maps_turned_back(plain_and_flipped) -> None:
    plain, flipped = plain_and_flipped
    img = make_image("scratch", np.random.default_rng(8))[0]
    maps = [plain.explain(img)] + [
        f(plain.explain(np.ascontiguousarray(f(img)))) for f in NUMPY_FLIP.values()
    ]
    assert np.allclose(flipped.explain(img), np.mean(maps, axis=0), atol=1e-5)


def test_a_bad_flip_list_in_the_manifest_is_refused(trained, tmp_path) -> None:
    copy = edited_copy(trained.artifact, tmp_path / "a", lambda m: m.update(test_time_flips=["x"]))
    with pytest.raises(ArtifactError, match="test_time_flips"):
        Predictor.load(copy)


def test_a_report_says_which_views_were_averaged(plain_and_flipped, trained) -> None:
    plain, flipped = plain_and_flipped
    report = evaluate(flipped, trained.heldout)
    assert report["model"]["test_time_flips"] == ["h", "v", "hv"]
    assert "averaged with h/v/hv flips" in to_html(report)
    assert evaluate(plain, trained.heldout)["model"]["test_time_flips"] == []
