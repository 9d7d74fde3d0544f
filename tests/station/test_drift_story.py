"""Each drift knob of the synthetic line, with the bundled model and the default monitor settings:
detected within 300 items of its onset, and the partial station demoted.

A station is approved at partial on 500 shadow items (its reference: the default
`monitor.reference_items`); then 400 items run at partial with the knob turned from item 100 on.
Rounds come every 100 items over the last 500 (the defaults), so the last round of the run sees
299 drifted items. Delays and false alarms at scale: bench/drift_detection.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import col, select

from db.engine import make_engine, session_scope
from db.migrate import backup_sqlite
from db.models import Alarm, Level, LevelChange
from station.pipeline.simulate import SimulateConfig, parse_drift, simulate
from station.pipeline.testing import open_station_db
from station.settings import Settings

pytestmark = pytest.mark.slow

ONSET = 100
ITEMS = 400


@pytest.fixture(scope="module")
def approved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding a station's 500 shadow items: the evidence partial is approved on."""
    folder = tmp_path_factory.mktemp("reference")
    engine = open_station_db(f"sqlite:///{folder / 'ref.db'}")
    simulate(Settings(data_dir=folder), engine, SimulateConfig(items=500, level=Level.shadow))
    copy = backup_sqlite(engine, folder / "approved.db")
    engine.dispose()
    return copy


@pytest.mark.parametrize(
    ("knob", "expected"),
    [
        ("light=0.6", {"input.brightness"}),
        ("defocus=3", {"input.sharpness"}),
        ("phone_color=blue", {"input.chroma_rg", "input.chroma_yb"}),
        ("defect_style=v2", {"embedding.mmd_defects"}),
    ],
)
def test_a_drift_knob_is_detected_within_300_items_and_demotes_partial(
    approved: Path, tmp_path: Path, knob: str, expected: set[str]
):
    db = tmp_path / "line.db"
    db.write_bytes(approved.read_bytes())
    engine = make_engine(f"sqlite:///{db}")
    settings = Settings(data_dir=tmp_path)
    drift, after = parse_drift(f"{knob}@{ONSET}")
    summary = simulate(
        settings,
        engine,
        SimulateConfig(items=ITEMS, level=Level.partial, drift=drift, drift_after=after),
    )
    assert summary.final_level == Level.assist.value, summary.alarms
    assert summary.demoted_at_item is not None
    assert ONSET < summary.demoted_at_item <= ONSET + 300
    with session_scope(engine) as s:
        demotion = s.exec(select(LevelChange).where(col(LevelChange.automatic).is_(True))).one()
        raised = {a.check for a in s.exec(select(Alarm))}
    assert demotion.from_level == Level.partial and "alarm:" in demotion.reason
    # the knob's own signature is among the alarms (which check fails first may be another:
    # defocus warns on sharpness at the first round and fails on the embeddings at the next)
    assert raised & expected, f"{knob}: alarms {sorted(raised)}, expected one of {sorted(expected)}"
