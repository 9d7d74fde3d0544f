"""Kept gate evidence (review/evidence_cache.py): a gate check read from the kept rows equals the
one computed from the whole history, through later writes of every kind, a new champion, rows
written inside a report's snapshot, a file whose ids fell below the mark, a lost race and a
database that cannot be written; and a check with nothing new recomputes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from review_records import LABELS, T0, Records, existing_records, random_records, same
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db import repo
from db.engine import _read_only_engine
from db.models import (
    Adjudication,
    GateEvidenceMark,
    GateEvidenceRow,
    HumanDecision,
    Level,
    Prediction,
    Role,
    Slot,
    Station,
)
from review import evidence_cache
from review.query import ReportFilters, frame
from review.report import build_report, gate_check

_row = GateEvidenceRow.__table__  # type: ignore[attr-defined]
_mark = GateEvidenceMark.__table__  # type: ignore[attr-defined]


def _check(engine: Engine, station: str) -> dict[str, Any]:
    with engine.connect() as conn:
        block = gate_check(conn, station, labels=LABELS)[1]
        conn.rollback()
    return block


def _computed(engine: Engine, station: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The gate check the way it was made before: the station's frame computed whole."""
    with monkeypatch.context() as m:
        m.setattr(evidence_cache, "basis_of", lambda conn, filters: None)
        return _check(engine, station)


def _kept(engine: Engine, station: str) -> tuple[int, str | None]:
    with engine.connect() as conn:
        sid = conn.execute(select(Station.id).where(Station.name == station)).scalar_one()  # type: ignore[call-overload]
        n = conn.execute(select(func.count()).where(_row.c.station_id == sid)).scalar_one()
        basis = conn.execute(select(_mark.c.basis).where(_mark.c.station_id == sid)).scalar()
    return int(n), basis


def _evidence_count(engine: Engine, block: dict[str, Any]) -> int:
    """The items in the frame the block's gates judged, counted straight from the records."""
    filters = ReportFilters(
        station=block["station"], model_version=block["model_version"], evidence_only=True
    )
    with engine.connect() as conn:
        f = frame(conn, filters, columns=["item_id"])
        return int(conn.execute(select(func.count()).select_from(f)).scalar_one())


@pytest.fixture
def line(engine: Engine) -> Iterator[Engine]:
    with Session(engine) as session:
        random_records(Records(session), 300, seed=11)
        session.commit()
    yield engine


def _records(session: Session) -> Records:
    r = existing_records(session)
    r.n = 50_000 + int(session.execute(select(func.count(HumanDecision.id))).scalar_one())  # type: ignore[arg-type]
    return r


def _later_writes(engine: Engine, *, version: str = "v1") -> None:
    """New evidence at A1 (shadow and blind items), and for old items of A1: a correction, an
    adjudication, a new answer of the champion version, a disposition at assist (the item stops
    being evidence of the shadow kind)."""
    with Session(engine) as session:
        r = _records(session)
        for i in range(14):
            r.item(
                "ok" if i % 4 else "crack",
                "ok" if i % 5 else "scratch",
                station="A1",
                level=Level.shadow if i % 2 else Level.assist,
                blind=i % 3 == 0,
                version=version,
                when=T0 + timedelta(days=4, minutes=i),
            )
        olds = [
            int(i)
            for i in session.execute(
                select(HumanDecision.item_id)  # type: ignore[call-overload]
                .join(Prediction, Prediction.item_id == HumanDecision.item_id)  # type: ignore[arg-type]
                .where(HumanDecision.suggestion_shown.is_(False))  # type: ignore[attr-defined]
                .order_by(HumanDecision.item_id)
                .limit(40)
            ).scalars()
        ]
        r.correct(olds[0], "scratch")
        repo.record_adjudication(
            session=session,
            adjudication=Adjudication(
                item_id=olds[5],
                operator_id=r.operator("qa", Role.qa_lead),
                label="missing",
                reason_code="test",
            ),
            level=Level.shadow,
        )
        session.add(
            Prediction(
                item_id=olds[9],
                model_version_id=r.model("v1"),
                label="stain",
                slot=Slot.challenger,  # another slot: gate evidence counts the version's answers
                confidence=0.66,
                p_defect=0.66,
            )
        )
        session.commit()


@pytest.mark.parametrize("station", ["A1", "B2"])
def test_kept_evidence_equals_the_computed_one_through_later_writes(
    line: Engine, station: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _check(line, station)
    rows, basis = _kept(line, station)
    assert basis is not None and basis.startswith(f"v{evidence_cache.VERSION} ")
    counted = _evidence_count(line, first)
    assert rows > 0 and rows == counted  # the kept rows are the evidence
    same(first, _computed(line, station, monkeypatch))

    _later_writes(line)
    later = _check(line, station)
    same(later, _computed(line, station, monkeypatch))
    assert _kept(line, station)[0] == _evidence_count(line, later)
    if station == "A1":
        assert _evidence_count(line, later) > counted  # the writes were evidence


def test_a_check_with_nothing_new_recomputes_nothing(line: Engine) -> None:
    _check(line, "A1")
    with line.connect() as conn:
        spec = ReportFilters(station="A1", model_version="v1", evidence_only=True)
        assert evidence_cache.refresh(conn, spec) is False
    _later_writes(line)
    with line.connect() as conn:
        assert evidence_cache.refresh(conn, spec) is True
        assert evidence_cache.refresh(conn, spec) is False


def test_the_reports_gates_read_the_kept_rows_and_equal_the_computed_ones(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    filters = ReportFilters(station="A1")
    report = build_report(line, filters, labels=LABELS)
    assert _kept(line, "A1")[0] == _evidence_count(line, report["gates"])
    with monkeypatch.context() as m:
        m.setattr(evidence_cache, "basis_of", lambda conn, f: None)
        full = build_report(line, filters, labels=LABELS)
    same(report["gates"], full["gates"])


def test_rows_written_after_the_mark_are_read_within_a_snapshot(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a caller's transaction nothing is stored: the items touched since the mark are
    computed in it and the kept rows of the others are read."""
    _check(line, "A1")
    _later_writes(line)
    with line.connect() as conn:
        conn.exec_driver_sql("BEGIN")
        inside = gate_check(conn, "A1", labels=LABELS)[1]
        conn.rollback()
    same(inside, _computed(line, "A1", monkeypatch))
    with line.connect() as conn:  # the snapshot stored nothing: the mark is where it was
        spec = ReportFilters(station="A1", model_version="v1", evidence_only=True)
        assert evidence_cache.refresh(conn, spec) is True


def test_a_new_champion_rebuilds_the_kept_rows(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check(line, "A1")
    before = _kept(line, "A1")[1]
    _later_writes(line, version="v9")  # the newest champion answers come from v9
    after = _check(line, "A1")
    assert after["model_version"].endswith(":v9")
    rows, basis = _kept(line, "A1")
    assert basis != before and rows == _evidence_count(line, after)
    same(after, _computed(line, "A1", monkeypatch))


def test_ids_below_the_mark_rebuild_the_kept_rows(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file restored from an older copy under a kept mark: the ids fell below it."""
    _check(line, "A1")
    with line.begin() as conn:
        conn.execute(
            update(_mark).values(
                item_id=10**9,
                prediction_id=10**9,
                human_decision_id=10**9,
                disposition_id=10**9,
                adjudication_id=10**9,
            )
        )
    _later_writes(line)  # rows below the mark's ids, which no catch-up from the mark would see
    same(_check(line, "A1"), _computed(line, "A1", monkeypatch))
    with line.connect() as conn:
        assert conn.execute(select(_mark.c.item_id)).scalar_one() < 10**9


def test_a_refresh_that_lost_the_race_stores_nothing_and_the_next_check_is_right(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check(line, "A1")
    _later_writes(line)
    spec = ReportFilters(station="A1", model_version="v1", evidence_only=True)
    computed = evidence_cache._frame_into
    raced: list[bool] = []

    def racing(conn: Any, *args: Any) -> None:
        computed(conn, *args)
        if not raced:  # another process refreshes while this one computes
            raced.append(True)
            with line.connect() as other:
                raced.append(evidence_cache.refresh(other, spec))

    monkeypatch.setattr(evidence_cache, "_frame_into", racing)
    with line.connect() as conn:
        assert evidence_cache.refresh(conn, spec) is False
    assert raced == [True, True]
    monkeypatch.undo()
    same(_check(line, "A1"), _computed(line, "A1", monkeypatch))


def test_a_database_that_cannot_be_written_gets_the_computed_evidence(
    line: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check(line, "A1")
    _later_writes(line)
    path = Path(str(line.url.database))
    read_only = _read_only_engine(path, echo=False)
    try:
        got = _check(read_only, "A1")
    finally:
        read_only.dispose()
    same(got, _computed(line, "A1", monkeypatch))
    with line.connect() as conn:  # nothing was stored through the read-only engine
        spec = ReportFilters(station="A1", model_version="v1", evidence_only=True)
        assert evidence_cache.refresh(conn, spec) is True


def test_kept_rows_deleted_without_their_mark_are_built_again(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Derived data: deleting the rows (and not the mark) only makes the next check slower."""
    first = _check(line, "A1")
    with line.begin() as conn:
        conn.execute(_row.delete())
    again = _check(line, "A1")
    same(again, first)
    same(again, _computed(line, "A1", monkeypatch))
    assert _kept(line, "A1")[0] == _evidence_count(line, again)


def test_a_database_opened_for_reading_computes_the_evidence_once_per_check(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No refresh is tried (it would compute the whole history, then fail to store it)."""
    path = Path(str(line.url.database))
    computed = evidence_cache._frame_into
    calls: list[int] = []
    monkeypatch.setattr(
        evidence_cache, "_frame_into", lambda *a: (calls.append(1), computed(*a))[1]
    )
    read_only = _read_only_engine(path, echo=False)
    try:
        for _ in range(2):
            _check(read_only, "A1")
    finally:
        read_only.dispose()
    assert calls == []


def test_a_file_that_refuses_writes_is_tried_once(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that opened for writing but refuses them (a read-only mount: here its error, raised
    where the rows would be stored): the first check finds out, the next ones compute the
    evidence without computing the whole history for a refresh first."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from db.engine import make_engine

    refusing = make_engine(str(line.url))
    computed = evidence_cache._frame_into
    calls: list[int] = []

    def computing_then_refused(conn: Any, table: Any, *a: Any) -> None:
        calls.append(1)
        computed(conn, table, *a)
        if table.name.startswith("gate_ev_") and conn.engine is refusing and len(calls) == 1:
            raise OperationalError(
                "INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database")
            )

    monkeypatch.setattr(evidence_cache, "_frame_into", computing_then_refused)
    try:
        first = _check(refusing, "A1")
        second = _check(refusing, "A1")
    finally:
        refusing.dispose()
    assert len(calls) == 1  # the refresh computed once, then was never tried again
    monkeypatch.undo()
    same(first, _computed(line, "A1", monkeypatch))
    same(second, first)
    assert _kept(line, "A1") == (0, None)  # nothing was stored


def test_a_refresh_committed_while_the_gates_read_does_not_mix_two_states(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gates read their frame in several statements; outside a caller's transaction they
    read them in one snapshot of their own, so another process's refresh in between is not seen."""
    import review.query as Q

    _check(line, "A1")
    before = _computed(line, "A1", monkeypatch)
    groups = Q.label_groups
    fired: list[bool] = []

    def then_another_process(conn: Any, f: Any, **kw: Any) -> Any:
        out = groups(conn, f, **kw)
        if not fired:
            fired.append(True)
            _later_writes(line)
            with line.connect() as other:
                spec = ReportFilters(station="A1", model_version="v1", evidence_only=True)
                assert evidence_cache.refresh(other, spec) is True
        return out

    monkeypatch.setattr(Q, "label_groups", then_another_process)
    torn = _check(line, "A1")
    monkeypatch.undo()
    assert fired
    same(torn, before)
    assert _computed(line, "A1", monkeypatch) != before  # the other process did change it


def test_station_gate_check_in_its_own_process_keeps_up_with_the_records(
    line: Engine, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a user meets it: `station gate check` run twice as its own process, the station writing
    in between. Each time it judges the evidence as computed from the whole record, and leaves
    the station's kept rows up to date behind it."""
    import json

    def gate_check_cli() -> dict[str, Any]:
        args = ("gate", "check", "--to", "assist", "--station", "A1", "--format", "json")
        result = cli(*args, "--db", str(line.url))
        assert result.code in (0, 1), result.err  # passes or refuses; never an error
        return dict(json.loads(result.out))

    for step in range(2):
        if step:
            _later_writes(line)
        judged = gate_check_cli()
        computed = _computed(line, "A1", monkeypatch)
        same(judged["numbers"], computed["numbers"], "numbers")
        assert judged["station"] == "A1" and judged["to_level"] == "assist"
        assert _kept(line, "A1")[0] == _evidence_count(line, computed)
