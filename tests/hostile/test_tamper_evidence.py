"""Tamper evidence: the rows that carry authority are hash-chained as the program writes them;
`station audit verify` (and `station db check`) name a row edited, deleted or inserted behind the
program's back, and an edited chain; the report shows each chain's head."""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy import text

from db.engine import session_scope
from db.models import Level, Role
from db.repo import find_operator
from station.levels import set_level
from station.pipeline.testing import ensure_operator, make_rig, phone_image


@pytest.fixture
def line(tmp_path):
    """A station's real record: three inspected phones, a level change, a gate evaluation."""
    rig = make_rig(tmp_path, level=Level.human_only)
    for i in range(3):
        rig.feed(phone_image(i))
        rig.core.desk.decide("ok" if i else "scratch")
    ensure_operator(rig.engine, "eve", Role.engineer)
    with session_scope(rig.engine) as s:
        eve = find_operator(session=s, name="eve")
    set_level(rig.engine, rig.settings, Level.shadow, operator=eve, reason="start")
    # a QA lead's adjudication (a new disposition too) and an undo (a correcting decision)
    from review.browse import adjudicate

    ensure_operator(rig.engine, "quynh", Role.qa_lead)
    with session_scope(rig.engine) as s:
        quynh = find_operator(session=s, name="quynh")
    adjudicate(
        rig.engine,
        item_id=1,
        operator=quynh,
        label="ok",
        reason_code="human_false_reject",
        labels=rig.settings.labels,
    )
    rig.feed(phone_image(9))
    rig.core.desk.decide("ok")
    assert rig.core.desk.undo()
    rig.core.desk.decide("dent")
    rig.core.close()
    db = tmp_path / "station.db"
    return rig, f"sqlite:///{db}", db


def verify(cli, url):
    r = cli("audit", "verify", "--format", "json", "--db", url)
    assert r.code in (0, 1), r.err
    return r.code, json.loads(r.out)


def test_a_record_written_by_the_program_verifies_intact(cli, line):
    rig, url, _ = line
    code, out = verify(cli, url)
    assert code == 0 and out["intact"] and out["problems"] == []
    station = out["chains"]["station:1"]
    # 3 dispositions + 3 human decisions + the level changes + the champion's deployment
    assert station["length"] >= 8 and len(station["head"]) == 64
    assert out["chains"]["operators"]["length"] >= 2
    text_out = cli("audit", "verify", "--db", url)
    assert text_out.code == 0 and text_out.out.startswith("INTACT")


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (
            "UPDATE level_change SET to_level = 'full' WHERE id = (SELECT max(id) FROM level_change)",
            "differs from what was recorded",
        ),
        ("DELETE FROM human_decision WHERE id = 1", "human_decision #1 (entry"),
        ("UPDATE operator SET role = 'engineer' WHERE name = 'lan'", "operator #"),
        (
            "INSERT INTO level_change (station_id, from_level, to_level, operator_id, reason, "
            "override, automatic, changed_at) VALUES (1, 'shadow', 'full', NULL, 'x', 0, 0, "
            "'2026-12-01 00:00:00.000000')",
            "has no chain entry",
        ),
        (
            "UPDATE audit_chain SET row_hash = (CASE WHEN substr(row_hash, 1, 1) = '0' THEN '1' "
            "ELSE '0' END) || substr(row_hash, 2) WHERE seq = 2 AND chain = 'station:1'",
            "does not link to the one before it",
        ),
        ("DELETE FROM audit_chain WHERE seq = 3 AND chain = 'station:1'", "missing"),
    ],
)
def test_each_kind_of_tampering_is_found_and_named(cli, line, tamper, words):
    _, url, db = line
    with sqlite3.connect(db) as raw:
        raw.execute(tamper)
    code, out = verify(cli, url)
    assert code == 1 and not out["intact"]
    assert any(words in p for p in out["problems"]), out["problems"]
    check = cli("db", "check", "--db", url)
    assert check.code == 1 and "tamper" in check.err.lower()


def test_the_report_shows_each_chains_head(cli, line, tmp_path):
    rig, url, _ = line
    out = tmp_path / "r.json"
    assert cli("report", "--format", "json", "--out", str(out), "--db", url).code == 0
    chain = json.loads(out.read_text())["chain"]
    code, verified = verify(cli, url)
    assert chain["station:1"] == {
        "length": verified["chains"]["station:1"]["length"],
        "head": verified["chains"]["station:1"]["head"],
    }


def test_a_database_from_before_the_chain_is_adopted_whole_at_its_upgrade(tmp_path, cli):
    from alembic import command

    from db.engine import make_engine
    from db.migrate import alembic_config, upgrade

    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0009")
        conn.execute(
            text("INSERT INTO station (name, created_at, simulated) VALUES ('A3', '2026-11-01', 0)")
        )
        conn.execute(
            text(
                "INSERT INTO level_change (station_id, from_level, to_level, operator_id, reason, "
                "override, automatic, changed_at) VALUES (1, 'human_only', 'shadow', NULL, 'old', "
                "0, 0, '2026-11-02 00:00:00.000000')"
            )
        )
    upgrade(engine)
    code, out = verify(cli, f"sqlite:///{path}")
    assert code == 0 and out["chains"]["station:1"]["length"] == 1
