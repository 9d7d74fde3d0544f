"""Fixtures shared by the station's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real artifacts of the bundled architecture as versions 3, 4 and 5 (other weights each),
    and a version 3 with yet other weights (the same name:version reused)."""
    from tests.station.model_variants import variant

    root = tmp_path_factory.mktemp("artifacts")
    return {
        "v3": variant(root / "v3", "3", nudge=0.01),
        "v4": variant(root / "v4", "4", nudge=0.02),
        "v5": variant(root / "v5", "5", nudge=0.04),
        "v3-other": variant(root / "v3-other", "3", nudge=0.03),
    }
