"""Architectures by name, their BatchNorm settings and starting weights from files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model import UnknownArchitecture, build
from model.arch import DefectNet, GlobalNet
from model.lite import efficientnet_lite0_features, lite_features_state_dict
from model.train import _init_from_file


def test_default_architecture_is_a_defect_map_net_with_settled_batchnorm() -> None:
    net = build("mobilenet_v3_small", 3, 0)
    assert isinstance(net, DefectNet)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.1 for m in bns)
    out = net.eval()(torch.zeros(2, 3, 64, 96))
    assert out.logits.shape == (2, 3) and out.defect_map.shape == (2, 1, 8, 12)
    # with a defect-free class the logits are log-probabilities
    assert torch.allclose(out.logits.exp().sum(1), torch.ones(2), atol=1e-5)


def test_models_without_a_feature_stack_are_global_classifiers() -> None:
    assert isinstance(build("shufflenet_v2_x0_5", 4, None), GlobalNet)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(UnknownArchitecture, match="mobilenet_v3_small"):
        build("resnet9000", 3, 0)


def test_lite0_weights_in_lukemelas_naming_load_completely(tmp_path: Path) -> None:
    feats = efficientnet_lite0_features()
    n = len(feats) - 1
    inverse = {}
    for k, v in feats.state_dict().items():
        head, rest = k.split(".", 1)
        i = int(head)
        if i == 0:
            key = ("_conv_stem." if rest.startswith("0.") else "_bn0.") + rest[2:]
        elif i == n:
            key = ("_conv_head." if rest.startswith("0.") else "_bn1.") + rest[2:]
        else:
            key = f"_blocks.{i - 1}.{rest}"
        inverse[key] = v.clone()
    inverse["_fc.weight"] = torch.zeros(1000, 1280)
    mapped = lite_features_state_dict(inverse)
    assert set(mapped) == set(feats.state_dict())
    torch.save(inverse, tmp_path / "lite0.pth")
    net = build("efficientnet_lite0", 3, 0)
    info = _init_from_file(net, str(tmp_path / "lite0.pth"))
    assert info["matched"] > 0.5 * info["in_file"]


def test_an_artifacts_own_weights_start_a_new_training(trained) -> None:
    net = build("mobilenet_v3_small", 3, 0)
    info = _init_from_file(net, str(trained.artifact / "weights.pt"))
    assert info["matched"] == info["in_file"] == len(net.state_dict())
