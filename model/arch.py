"""Architectures by name.

Two kinds of network, both returning `(logits, defect_map)`:

* `DefectNet` (any backbone with a `.features` stack: mobilenet_v3_small (default),
  mobilenet_v3_large, mobilenet_v2, efficientnet_b*, mnasnet*, efficientnet_lite0): fully
  convolutional at stride 8, so thin defects survive. A per-cell defect-logit map is pooled
  (top-k mean) into the image's defect score; a defect-type head pools features where the map
  points. With a defect-free class the class logits are log-probabilities:
  log p(ok) = log sigmoid(-s), log p(c) = log sigmoid(s) + log softmax(t)_c.
* `GlobalNet` (any other torchvision classifier, e.g. resnet18): a plain image classifier with
  no map; the heat-map is Grad-CAM on its last convolution.

BatchNorm momentum is reset to 0.1 everywhere: torchvision's MobileNetV3 uses 0.01, whose
running statistics never settle in a short CPU run and make eval-mode outputs garbage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from model.errors import UnknownArchitecture

if TYPE_CHECKING:
    from model.anomaly import AnomalyNet

DEFAULT_ARCH = "mobilenet_v3_small"
BN_MOMENTUM = 0.1
HEAD_CHANNELS = 64


class NetOutput(NamedTuple):
    logits: torch.Tensor  # (B, K) class logits (log-probabilities for DefectNet with an ok class)
    defect_map: torch.Tensor | None  # (B, 1, h, w) defect logits per cell, or None
    # (B, D) the penultimate layer (what the heads read), for embedding drift; None: not exposed
    embedding: torch.Tensor | None = None


def _features_of(name: str) -> nn.Sequential:
    if name == "efficientnet_lite0":
        from model.lite import efficientnet_lite0_features

        return efficientnet_lite0_features()
    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError as e:
        raise UnknownArchitecture(_unknown(name)) from e
    feats = getattr(net, "features", None)
    if not isinstance(feats, nn.Sequential):
        raise UnknownArchitecture(f"{name!r} has no .features stack to build a defect map from")
    return feats


def _stride_cuts(features: nn.Sequential) -> tuple[int, int, int, int]:
    """Index just past the last stride-8 and stride-16 stages, with their channel counts."""
    x = torch.zeros(1, 3, 64, 64)
    cut8 = cut16 = -1
    c8 = c16 = 0
    with torch.no_grad():
        was_training = features.training
        features.eval()
        for i, layer in enumerate(features):
            x = layer(x)
            stride = 64 // x.shape[-1]
            if stride == 8:
                cut8, c8 = i + 1, x.shape[1]
            elif stride == 16:
                cut16, c16 = i + 1, x.shape[1]
            elif stride > 16:
                break
        features.train(was_training)
    if cut8 < 0 or cut16 < 0:
        raise UnknownArchitecture("backbone has no stride-8 and stride-16 stages")
    return cut8, c8, cut16, c16


def _cbr(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def topk_mean(m: torch.Tensor, k: int) -> torch.Tensor:
    """(B, 1, h, w) -> (B,) mean of the k largest cells: a max that is not one noisy cell."""
    flat = m.flatten(1)
    k = max(1, min(k, flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


class DefectNet(nn.Module):
    """`pool_k`: how many of the map's hottest cells make the image's defect score. Fixed by
    default, so a small defect weighs the same in a training crop and in the whole served image;
    None is the first artifacts' rule (one cell per 512 of the map)."""

    def __init__(
        self, backbone: str, num_classes: int, ok_index: int | None, pool_k: int | None = None
    ) -> None:
        super().__init__()
        self.pool_k = pool_k
        if num_classes < 2:
            raise UnknownArchitecture(f"need at least 2 classes, got {num_classes}")
        feats = _features_of(backbone)
        cut8, c8, cut16, c16 = _stride_cuts(feats)
        self.stage8 = nn.Sequential(*list(feats)[:cut8])
        self.stage16 = nn.Sequential(*list(feats)[cut8:cut16])
        self.lat8 = _cbr(c8, HEAD_CHANNELS, 1)
        self.lat16 = _cbr(c16, HEAD_CHANNELS, 1)
        self.fuse = _cbr(HEAD_CHANNELS, HEAD_CHANNELS, 3)
        self.map_head = nn.Conv2d(HEAD_CHANNELS, 1, 1)
        self.ok_index = ok_index
        n_types = num_classes - 1 if ok_index is not None else num_classes
        self.type_head = nn.Linear(2 * HEAD_CHANNELS, n_types)
        self.score_scale = nn.Parameter(torch.ones(1))
        self.score_bias = nn.Parameter(torch.zeros(1))
        self.num_classes = num_classes
        with torch.no_grad():  # start the map mostly "no defect"
            self.map_head.bias.fill_(-2.0)  # type: ignore[union-attr]

    def cam_layer(self) -> nn.Module:
        return self.fuse

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(raw defect score (B,) before scale and bias, type logits (B, T), map (B, 1, h, w))."""
        raw, t, m, _ = self.parts_with_embedding(x)
        return raw, t, m

    def parts_with_embedding(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`parts` and the pooled features the type head reads (B, 2 * HEAD_CHANNELS)."""
        f8 = self.stage8(x)
        f16 = self.stage16(f8)
        f = self.lat8(f8) + F.interpolate(self.lat16(f16), size=f8.shape[-2:], mode="nearest")
        f = self.fuse(f)
        m = self.map_head(f)  # (B, 1, h, w)
        attn = torch.softmax(m.flatten(2), dim=2)  # where the map points
        fl = f.flatten(2)
        pooled = torch.cat([(fl * attn).sum(2), fl.mean(2)], dim=1)
        t = self.type_head(pooled)
        k = self.pool_k if self.pool_k is not None else max(1, m.shape[-1] * m.shape[-2] // 512)
        return topk_mean(m, k), t, m, pooled

    def compose(
        self,
        raw_score: torch.Tensor,
        t: torch.Tensor,
        scale: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits from the parts (log-probabilities when there is a defect-free class)."""
        if self.ok_index is None:
            return t
        a = self.score_scale if scale is None else scale
        b = self.score_bias if bias is None else bias
        s = raw_score * a + b
        log_defect = F.logsigmoid(s).unsqueeze(1) + torch.log_softmax(t, dim=1)
        log_ok = F.logsigmoid(-s).unsqueeze(1)
        i = self.ok_index
        return torch.cat([log_defect[:, :i], log_ok, log_defect[:, i:]], dim=1)

    def forward(self, x: torch.Tensor) -> NetOutput:
        raw, t, m, pooled = self.parts_with_embedding(x)
        return NetOutput(self.compose(raw, t), m, pooled)


class GlobalNet(nn.Module):
    """A torchvision classifier as is; explained by Grad-CAM on its last convolution."""

    def __init__(self, name: str, num_classes: int) -> None:
        super().__init__()
        try:
            self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        except (ValueError, TypeError) as e:
            raise UnknownArchitecture(_unknown(name)) from e
        convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise UnknownArchitecture(f"{name!r} has no convolution to explain with Grad-CAM")
        self._cam = convs[-1]
        self.num_classes = num_classes

    def cam_layer(self) -> nn.Module:
        return self._cam

    def forward(self, x: torch.Tensor) -> NetOutput:
        return NetOutput(self.net(x), None)


def _unknown(name: str) -> str:
    return (
        f"unknown architecture {name!r}: expected one of {', '.join(available_architectures())}"
        " (or another torchvision classification model name)"
    )


def available_architectures() -> list[str]:
    return [
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "mobilenet_v2",
        "efficientnet_b0",
        "efficientnet_lite0",
        "resnet18",
    ]


def fix_batchnorm_momentum(net: nn.Module, momentum: float = BN_MOMENTUM) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def check_architecture(arch: str) -> None:
    """Raise UnknownArchitecture unless `arch` names a network `build` can make."""
    if isinstance(arch, str) and arch.startswith("patchcore_"):  # model/anomaly.py
        _features_of(arch.removeprefix("patchcore_"))
        return
    known = set(torchvision.models.list_models(module=torchvision.models)) | {"efficientnet_lite0"}
    if not isinstance(arch, str) or arch not in known:
        raise UnknownArchitecture(_unknown(str(arch)))


def build(
    arch: str,
    num_classes: int,
    ok_index: int | None,
    pool_k: int | None = None,
    anomaly: dict | None = None,
) -> DefectNet | GlobalNet | AnomalyNet:
    """The network named `arch` for these classes, BatchNorm momentum fixed. An anomaly model
    (`patchcore_<backbone>`) takes its memory's size from the manifest's `anomaly` section."""
    check_architecture(arch)
    if arch.startswith("patchcore_"):
        from model.anomaly import build_anomaly

        if num_classes != 2:
            raise UnknownArchitecture(f"{arch} has 2 classes, the manifest lists {num_classes}")
        return build_anomaly(arch, ok_index, anomaly)
    builder: Callable[[], DefectNet | GlobalNet]
    try:
        _features_of(arch)
        builder = lambda: DefectNet(arch, num_classes, ok_index, pool_k)  # noqa: E731
    except UnknownArchitecture:
        builder = lambda: GlobalNet(arch, num_classes)  # noqa: E731
    net = builder()
    fix_batchnorm_momentum(net)
    return net
