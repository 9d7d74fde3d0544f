"""The model lifecycle's whole story, told by `station simulate` on a real station, headless:
a weaker model as canary fails its step (weight 0, the champion untouched); a good one ramps to
100 and becomes champion; a rollback puts the previous one back for the very next item; and
`station model history --format json` tells it."""

from __future__ import annotations

import json

from sqlmodel import col, select

from db.engine import session_scope
from db.models import ModelVersion, Prediction, Role, Slot
from db.repo import find_operator
from station.pipeline.testing import ensure_operator, open_station_db
from station.registry import deploy_version, register_artifact, rollback
from station.settings import load_settings
from tests.station.model_variants import variant

LIFECYCLE = """
[lifecycle]
canary_steps = [25.0, 50.0, 100.0]
min_items = 10
min_minutes = 0
min_reference = 20
check_every_items = 20
"""


def test_canary_fails_then_ramps_to_champion_then_rolls_back(cli, tmp_path):
    config = tmp_path / "station.toml"
    config.write_text(LIFECYCLE)
    db = f"sqlite:///{tmp_path / 'line.db'}"

    def simulate(items: int, seed: int):
        r = cli(
            "simulate",
            "--items",
            str(items),
            "--station",
            "story",
            "--size",
            "320x180",
            "--seed",
            str(seed),
            "--json",
            "--db",
            db,
            "--config",
            str(config),
        )
        assert r.code == 0, r.err
        return json.loads(r.out)

    first = simulate(20, 1)  # the station's first start: the bundled model is its champion
    assert first["champion_after"] == "synthetic-line:2"

    engine = open_station_db(db)
    settings = load_settings(config, {"database_url": db})[0]
    ensure_operator(engine, "eve", Role.engineer)
    with session_scope(engine) as s:
        eve = find_operator(session=s, name="eve")
    weak = variant(tmp_path / "weak", "3-weak", weak=True)
    good = variant(tmp_path / "good", "4")
    for artifact in (weak, good):
        register_artifact(engine, settings, artifact, operator=eve)

    # 1. the weaker model as a 25% canary: its first check finds it worse; weight 0
    deploy_version(
        engine,
        settings,
        "synthetic-line:3-weak",
        "canary",
        operator=eve,
        reason="few epochs",
        weight=25,
        station_name="story",
    )
    # the arm's draw hashes each item's capture time, which a simulation takes from the clock:
    # 80 items put the 10 the step needs in a 25% arm but about 1 run in 150 (40: half the runs)
    s1 = simulate(80, 2)
    assert s1["champion_after"] == "synthetic-line:2"
    assert (s1["challenger_after"], s1["canary_weight_after"]) == ("synthetic-line:3-weak", 0.0)
    assert "step at 25% failed" in s1["lifecycle"]

    # 2. a good model: 25 -> 50 -> 100, then champion (the old one kept as previous)
    deploy_version(
        engine,
        settings,
        "synthetic-line:4",
        "canary",
        operator=eve,
        reason="retrained",
        weight=25,
        station_name="story",
    )
    s2 = simulate(160, 3)
    assert s2["champion_after"] == "synthetic-line:4" and s2["challenger_after"] is None

    # 3. rollback: the previous champion answers the very next item
    rollback(engine, settings, operator=eve, reason="line manager's call", station_name="story")
    simulate(1, 4)
    with session_scope(engine) as s:
        last = s.exec(
            select(Prediction, ModelVersion)
            .join(ModelVersion, col(ModelVersion.id) == col(Prediction.model_version_id))
            .order_by(col(Prediction.id).desc())
        ).all()
        acted = [
            (Slot(p.slot).value, mv.version) for p, mv in last if p.item_id == last[0][0].item_id
        ]
    assert ("champion", "2") in acted and ("champion", "4") not in acted

    story = json.loads(
        cli("model", "history", "--station", "story", "--format", "json", "--db", db).out
    )
    told = [(h["version"].split(":")[1], h["role"], h["weight"], h["by"]) for h in story["history"]]
    assert told == [
        ("2", "champion", None, "system"),  # first start
        ("3-weak", "canary", 25.0, "eve"),
        ("3-weak", "challenger", None, "system"),  # failed: weight 0, runs on hidden
        ("4", "canary", 25.0, "eve"),
        ("4", "canary", 50.0, "system"),
        ("2", "previous", None, "system"),
        ("4", "champion", None, "system"),
        ("4", "previous", None, "eve"),
        ("2", "champion", None, "eve"),
    ]
    # every role change, decision and level change of the story is in the tamper-evidence chain
    assert cli("audit", "verify", "--db", db).code == 0
    reasons = [h["reason"] for h in story["history"]]
    assert "McNemar" in reasons[2] and "failed" in reasons[2]
    assert "successful" in reasons[4] and "ramped to 50%" in reasons[4]
    assert "successful" in reasons[6]
