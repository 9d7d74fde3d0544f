"""The core runs without Qt: every module outside the `ui` packages imports, and the headless
pipeline runs, in a process where PySide6 cannot be imported (as napari proves its split)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib, pkgutil, sys, tempfile

class NoQt:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "shiboken6", "pytestqt"):
            raise ImportError(f"{name} is blocked: the core must run without Qt")
        return None

sys.meta_path.insert(0, NoQt())
imported = []
for top in ("db", "model", "review", "station"):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, prefix=top + "."):
        parts = info.name.split(".")
        if "ui" in parts or "__main__" in parts or info.name.startswith("db.migrations"):
            continue  # the windows; `python -m station`; alembic's env.py runs inside alembic
        importlib.import_module(info.name)
        imported.append(info.name)
assert "PySide6" not in sys.modules

from db.models import Level
from station.pipeline.simulate import SimulateConfig, simulate
from station.pipeline.testing import open_station_db
from station.settings import Settings

folder = tempfile.mkdtemp()
engine = open_station_db(f"sqlite:///{folder}/station.db")
summary = simulate(
    Settings(data_dir=folder),
    engine,
    SimulateConfig(items=3, level=Level.human_only, width=160, height=90),
)
assert summary.items == 3 and summary.pending_writes == 0, summary
print(len(imported), "modules")
"""


def test_every_non_ui_module_imports_and_the_pipeline_runs_without_qt() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout.split()[0]) > 50  # the walk found the packages' modules
