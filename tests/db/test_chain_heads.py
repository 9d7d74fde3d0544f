"""The report's chain heads: each chain's length and last hash, as `verify` walks them."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from db import chain, driver
from db.engine import session_scope
from db.models import DecidedBy, Disposition, HumanDecision, Item, Level, Role
from db.repo import add_operator, get_or_create_station, record_inspection


def test_each_chains_head_is_its_last_entry(engine: Engine, monkeypatch: pytest.MonkeyPatch):
    with session_scope(engine) as s:
        op = add_operator(session=s, name="lan", role=Role.inspector, secret_hash="x")
        add_operator(session=s, name="qa", role=Role.qa_lead, secret_hash="y")
        stations = [get_or_create_station(session=s, name=n).id for n in ("A1", "B2", "C3")]
    for i in range(7):  # 3, 2 and 2 items: each item chains its decision and its disposition
        with session_scope(engine) as s:
            record_inspection(
                session=s,
                item=Item(station_id=stations[i % 3], image_sha256=f"{i:064x}", image_path=""),
                decision=HumanDecision(operator_id=op.id, label="ok"),
                disposition=Disposition(
                    final_label="ok", decided_by=DecidedBy.human, level=Level.shadow
                ),
            )
    with engine.connect() as conn:
        found = chain.heads(conn)
        walked = chain.verify(conn)
        monkeypatch.setattr(driver, "usable", lambda _conn: False)  # grouped, as on PostgreSQL
        grouped = chain.heads(conn)
    assert walked.intact
    assert {name: c["length"] for name, c in found.items()} == {
        "operators": 2,
        f"station:{stations[0]}": 6,
        f"station:{stations[1]}": 4,
        f"station:{stations[2]}": 4,
    }
    assert found == {
        name: {"length": c.length, "head": c.head} for name, c in walked.chains.items()
    }
    assert grouped == found
