"""A fixed, small projection of the network's penultimate layer, stored with each prediction so
embedding drift can be tested on the record (station/monitor.py).

A Gaussian random projection (Johnson-Lindenstrauss) keeps the distances that a kernel two-sample
test reads, needs no fitting (the same matrix for every model with that layer width, so a
reference and a window are always comparable) and costs one small matrix product.
"""

from __future__ import annotations

import functools

import numpy as np

EMBEDDING_DIMS = 16
#: The projection's seed: changing it changes every stored embedding's meaning.
PROJECTION_SEED = 0xE3BED
#: Stored values are rounded: drift tests need no more, and the record stays small.
DECIMALS = 4


@functools.lru_cache(maxsize=8)
def _projection(width: int) -> np.ndarray:
    rng = np.random.default_rng(PROJECTION_SEED + width)
    return rng.standard_normal((width, EMBEDDING_DIMS)) / np.sqrt(EMBEDDING_DIMS)


def reduce_embedding(features: np.ndarray) -> np.ndarray:
    """(B, D) features -> (B, EMBEDDING_DIMS) float64, rounded to DECIMALS."""
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return np.round(f @ _projection(f.shape[1]), DECIMALS)
