"""Shared fixtures: every test runs with its own data dir and no user config or STATION_* leaks."""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# `make test` runs one worker per core (pytest-xdist): torch and BLAS on one thread in each worker
# and in each command it runs. Two threads per worker on two cores made training about 2x slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, "1")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No STATION_* variable from the developer's shell, no user config file, a fresh data dir."""
    for name in list(os.environ):
        if name.startswith("STATION_") and name != "STATION_TEST_PG_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    data_dir = tmp_path / "data"
    monkeypatch.setenv("STATION_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'station.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A real SQLite file brought to head through the real migrations."""
    from db.engine import make_engine
    from db.migrate import upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


#: The environment before any test changed it: the CLI zygote's own (tests/cli_zygote.py).
_BASE_ENV = dict(os.environ)
import cli_zygote  # noqa: E402  (reads STATION_TEST_CLI before any test clears it)

_zygote: cli_zygote.Zygote | None = None


def _cli_zygote() -> cli_zygote.Zygote:
    global _zygote
    if _zygote is None:
        _zygote = cli_zygote.Zygote(_BASE_ENV)
        atexit.register(_zygote.close)
    return _zygote


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> CliResult:
    """Run `station ...` as the user does, in a child process (exit codes, stderr, no tracebacks):
    forked from a process with the heavy imports done (tests/cli_zygote.py), or a fresh
    interpreter with STATION_TEST_CLI=subprocess."""
    full_env = {**os.environ, **(env or {})}
    if cli_zygote.usable():
        code, out, err = _cli_zygote().run(args, input=input, env=full_env, timeout=120)
        return CliResult(code, out, err)
    return CliResult(*cli_zygote.run_fresh(args, input=input, env=full_env))


@pytest.fixture
def cli():
    return run_cli


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
