"""Daily report summaries (review/summary.py): a report summed from them equals the full report,
through later writes of every kind, and a report recomputes only the days a newer record touched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from review_records import LABELS, T0, Records, existing_records, random_records, same
from sqlalchemy import case, func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from db import repo
from db.models import (
    Adjudication,
    HumanDecision,
    Item,
    Level,
    Prediction,
    ReportSummary,
    ReportSummaryMark,
    Role,
    Slot,
)
from review import summary
from review.query import ReportFilters
from review.report import build_report

_summary = ReportSummary.__table__  # type: ignore[attr-defined]
_mark = ReportSummaryMark.__table__  # type: ignore[attr-defined]


def _full(engine: Engine, filters: ReportFilters, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The report the way it was made before summaries: every aggregate over the whole frame."""
    with monkeypatch.context() as m:
        m.setattr(summary, "applies", lambda conn, f: False)
        return build_report(engine, filters, labels=LABELS)


def _summed(engine: Engine, filters: ReportFilters) -> dict:
    with engine.connect() as conn:
        assert summary.applies(conn, filters)
    return build_report(engine, filters, labels=LABELS)


FILTERS = [
    ReportFilters(),
    ReportFilters.parse(station="A1"),
    ReportFilters.parse(since="2026-11-03", until="2026-11-03"),
    ReportFilters.parse(station="B2", since="2026-11-02"),
    ReportFilters.parse(station="nowhere"),
]


@pytest.fixture
def line(engine: Engine) -> Iterator[Engine]:
    with Session(engine) as session:
        random_records(Records(session), 240, seed=3)
        session.commit()
    with engine.begin() as conn:
        # Pipeline stages (review/stages.py): a trigger that changed and changed back, a guard
        # version on some items only, a guard that refused some. (Items are never updated in
        # the product: this is the line as a station would have recorded it.)
        item = Item.__table__  # type: ignore[attr-defined]
        conn.execute(
            update(item).values(
                trigger_version=case((item.c.id.between(81, 200), "t2"), else_="t1"),
                guard_version=case((item.c.id % 7 == 0, "g2"), else_="g1"),
                guard_passed=item.c.id % 5 != 0,
            )
        )
    yield engine


def _later_writes(engine: Engine) -> None:
    """A day later: new items; a correction, an adjudication and a new prediction, each of an
    old item of another day already summarised (ids above the mark)."""
    with Session(engine) as session:
        r = existing_records(session)
        r.n = 10_000
        for i in range(12):
            r.item(
                "ok" if i % 4 else "crack",
                "ok",
                station="A1",
                level=Level.assist,
                blind=i % 3 == 0,
                when=T0 + timedelta(days=3, minutes=i),
            )
        first = int(session.execute(select(func.min(HumanDecision.item_id))).scalar_one())
        r.correct(first, "scratch")  # the first day
        passed = session.exec(
            select(HumanDecision.item_id)
            .join(Prediction, Prediction.item_id == HumanDecision.item_id)  # type: ignore[arg-type]
            .where(
                HumanDecision.label == "ok",
                HumanDecision.item_id > 60,  # type: ignore[operator]
                Prediction.slot == Slot.champion,
                Prediction.label == "ok",
            )
            .order_by(HumanDecision.item_id)  # type: ignore[arg-type]
        ).first()
        assert passed is not None
        r.correct(passed, "crack")  # a pass turned fail: its stage's agreement changes
        # An item of the second day decided by its inspector, now adjudicated otherwise.
        second = session.exec(
            select(HumanDecision).where(HumanDecision.item_id.between(125, 140))  # type: ignore[attr-defined]
        ).first()
        assert second is not None
        repo.record_adjudication(
            session=session,
            adjudication=Adjudication(
                item_id=second.item_id,
                operator_id=r.operator("qa", Role.qa_lead),
                label="missing" if second.label != "missing" else "dent",
                reason_code="test",
            ),
            level=Level.shadow,
        )
        session.add(
            Prediction(
                item_id=230,  # the third day
                model_version_id=r.model("v1"),
                label="stain",
                slot=Slot.champion,
                confidence=0.77,
                p_defect=0.77,
            )
        )
        session.commit()


@pytest.mark.parametrize(
    "filters", FILTERS, ids=lambda f: ",".join(k for k, v in f.to_dict().items() if v) or "none"
)
def test_the_summed_report_equals_the_full_one_before_and_after_later_writes(
    line: Engine, filters: ReportFilters, monkeypatch: pytest.MonkeyPatch
) -> None:
    same(_full(line, filters, monkeypatch), _summed(line, filters))  # builds the summaries
    same(_full(line, filters, monkeypatch), _summed(line, filters))  # reads them
    _later_writes(line)
    same(_full(line, filters, monkeypatch), _summed(line, filters))  # refreshes the touched days


def test_a_report_recomputes_only_the_days_a_newer_record_touched(line: Engine) -> None:
    build_report(line, ReportFilters(), labels=LABELS)
    with line.connect() as conn:
        stored = {(s, d) for s, d in conn.execute(select(_summary.c.station_id, _summary.c.day))}
        _, refresh = summary.aggregates(conn, ReportFilters(), "ok")
    assert stored and refresh.cells == {} and not refresh.full  # nothing new: nothing recomputed

    with Session(line) as session:  # one adjudication of the first item, summarised long ago
        qa = existing_records(session).operator("qa", Role.qa_lead)
        session.add(Adjudication(item_id=1, operator_id=qa, label="dent", reason_code="test"))
        session.commit()
        first = session.get(Item, 1)
        assert first is not None
        touched = (first.station_id, first.captured_at.date().isoformat())
    with line.connect() as conn:
        _, refresh = summary.aggregates(conn, ReportFilters(), "ok")
    assert set(refresh.cells) == {touched}
    assert touched in stored and len(stored) > 3


def test_a_report_that_lost_the_race_stores_nothing_and_the_next_one_is_right(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_report(line, ReportFilters(), labels=LABELS)
    _later_writes(line)
    with line.connect() as conn:
        _, slow = summary.aggregates(conn, ReportFilters(), "ok")  # a report that began first
    build_report(line, ReportFilters(), labels=LABELS)  # another one stores its refresh
    with line.connect() as conn:
        assert summary.save(conn, slow) is False  # the mark moved: the slow one keeps out
    same(_full(line, ReportFilters(), monkeypatch), _summed(line, ReportFilters()))


def test_summaries_of_another_version_are_rebuilt(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_report(line, ReportFilters(), labels=LABELS)
    with line.begin() as conn:  # as left by a program whose aggregates differed
        conn.execute(update(_mark).values(version=summary.VERSION + 1))
        conn.execute(update(_summary).values(rows=[]))
    with line.connect() as conn:
        _, refresh = summary.aggregates(conn, ReportFilters(), "ok")
    assert refresh.full
    same(_full(line, ReportFilters(), monkeypatch), _summed(line, ReportFilters()))


def test_the_stages_summed_cover_the_stations_whole_history_whatever_the_days(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stages block reads every day of the station, also when the report asks for a few:
    summed from the summaries as computed from the records, through later writes."""
    late = ReportFilters.parse(station="A1", since="2026-11-04")
    for _ in range(2):
        summed = _summed(line, late)
        same(_full(line, late, monkeypatch)["stages"], summed["stages"])
        versions = summed["stages"]["versions"]
        assert [(v["trigger"], v["guard"]) for v in versions][:4] == [
            ("t1", "g1"),
            ("t1", "g2"),
            ("t2", "g1"),
            ("t2", "g2"),
        ]
        assert versions[0]["first_item_id"] < 81 < versions[0]["last_item_id"]  # t1 came back
        assert (
            sum(v["items"] for v in versions)
            == _summed(line, ReportFilters.parse(station="A1"))["counts"]["items"]
        )
        _later_writes(line)


def test_other_filters_take_the_full_path(line: Engine) -> None:
    with line.connect() as conn:
        for f in (
            ReportFilters.parse(inspector="lan"),
            ReportFilters.parse(level="assist"),
            ReportFilters.parse(model_version="defect:v1"),
            ReportFilters(evidence_only=True),
            ReportFilters.parse(since="2026-11-02T06:30"),
        ):
            assert not summary.applies(conn, f), f


def test_refreshing_between_reports_leaves_a_report_nothing_to_recompute(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert summary.refresh(line, "ok") is True  # the first one builds them
    assert summary.refresh(line, "ok") is False  # nothing new since
    _later_writes(line)
    assert summary.refresh(line, "ok") is True
    with line.connect() as conn:
        _, pending = summary.aggregates(conn, ReportFilters(), "ok")
    assert pending.cells == {} and not pending.full
    same(_full(line, ReportFilters(), monkeypatch), _summed(line, ReportFilters()))


def test_rows_committed_while_a_refresh_reads_are_counted_once(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest rows of every table land after the refresh read the newest ids (a station
    writing while a report runs): they belong to the next refresh, not to this one as well."""
    summary.refresh(line, "ok")
    _later_writes(line)
    current = summary.current_ids
    with monkeypatch.context() as m:
        m.setattr(
            summary,
            "current_ids",
            lambda conn: {t: max(0, v - 3) for t, v in current(conn).items()},
        )
        assert summary.refresh(line, "ok") is True
    assert summary.refresh(line, "ok") is True  # the rows it left out
    same(_full(line, ReportFilters(), monkeypatch), _summed(line, ReportFilters()))


def test_summaries_refreshed_with_latest_rows_grouped_equal_the_full_report(
    line: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh's `scope` and `upto` on the grouped form of review.query.join_latest (what
    PostgreSQL runs), here on SQLite: the same sums as the full report."""
    import review.query as Q

    monkeypatch.setattr(Q, "looked_up", lambda conn: False)
    filters = ReportFilters()
    same(_full(line, filters, monkeypatch), _summed(line, filters))
    _later_writes(line)
    same(_full(line, filters, monkeypatch), _summed(line, filters))


def test_score_rows_add_up_in_numpy_to_the_same_bits_as_row_by_row() -> None:
    """The risk/coverage histogram's rows of many days merged by numpy (review.summary
    _score_totals) equal the row-by-row sums exactly, floats included, in GROUP BY order."""
    import numpy as np

    rng = np.random.default_rng(5)
    cells = []
    for _ in range(30):
        bins = rng.integers(0, 10_001, 400)
        cells.append(
            [
                [
                    int(b),
                    bool(rng.random() < 0.5) if rng.random() < 0.5 else int(rng.random() < 0.5),
                ]
                + [int(x) for x in rng.integers(0, 50, 4)]
                + [float(b / 10_000 * rng.integers(1, 50))]
                for b in bins
            ]
        )
    by_rows = summary._row_by_row("scores", cells)
    assert summary._score_totals(cells) == by_rows
    assert list(summary._score_totals(cells)) == list(by_rows)  # the same order
    assert summary._score_totals([]) == {}
