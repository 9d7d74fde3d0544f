"""Test-time flips: class probabilities averaged over mirrored views of the input.

Training augments with horizontal and vertical flips, so every mirrored view is an image the
net has learnt to judge, and the views disagree most where the net is guessing. Averaging their
probabilities is a small ensemble for the price of one forward pass per view. An artifact asks
for it in its manifest (`test_time_flips`); without that key, nothing changes.

Probabilities, not logits, are averaged: one view's extreme logit would otherwise outvote the
others. The result is returned as log-probabilities, so temperature scaling and everything
downstream treat it as the logits they already take.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from model.errors import ModelError

# the mirrored views besides the image itself, and the tensor dims (N, C, H, W) each flips
FLIP_DIMS: dict[str, tuple[int, ...]] = {"h": (3,), "v": (2,), "hv": (2, 3)}
FLIPS = tuple(FLIP_DIMS)


def check_flips(flips: object) -> tuple[str, ...]:
    """The flips as a tuple, refused if any is unknown or repeated, or if they are not a list
    (a string such as "hv" would otherwise read as the flips h and v)."""
    if not isinstance(flips, list | tuple):
        raise ModelError(
            f"expected test-time flips as a list such as ['h', 'v', 'hv'], got {flips!r}"
        )
    out = tuple(flips)
    unknown = [f for f in out if not isinstance(f, str) or f not in FLIP_DIMS]
    if unknown or len(set(out)) != len(out):
        raise ModelError(
            f"expected test-time flips among {', '.join(FLIPS)}, each at most once; got "
            f"{', '.join(map(str, out)) or 'none'}"
        )
    return out


def describe_flips(flips: Sequence[str] | None) -> str:
    """'averaged with h/v/hv flips' for summaries and reports; '' without flips."""
    return f"averaged with {'/'.join(flips)} flips" if flips else ""


def flip(x: torch.Tensor, name: str) -> torch.Tensor:
    """The `name` view of an (N, C, H, W) batch; flipping it again turns it back."""
    return torch.flip(x, FLIP_DIMS[name])


def flip_averaged(
    logits_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flips: tuple[str, ...]
) -> torch.Tensor:
    """Log of the mean class probabilities of `x` and its `flips`.

    One call per view rather than one batch of all views: on one CPU thread at 384x448 a batch
    of four took 426-510 ms against 208-315 ms for four single calls (bench/flip_views.py's
    model, quiet machine); the bigger batch spills the caches.
    """
    if not flips:
        return logits_of(x)
    views = [x, *(flip(x, f) for f in flips)]
    log_p = torch.stack([torch.log_softmax(logits_of(v).double(), dim=1) for v in views])
    return torch.logsumexp(log_p, dim=0) - math.log(len(views))
