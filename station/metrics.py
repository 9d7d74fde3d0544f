"""Prometheus metrics, read from the record at each scrape (prometheus_client custom collector).

Names are `inspection_*` in base units (seconds, ratios), labelled by station only (never per
item): counters of items by who decided and the outcome, histograms of model latency and of the
inspector's time to decide, gauges of the automation level, the canary's weight, each drift
check's latest score and its thresholds, and open alarms. Read from the database, so
`station metrics serve` beside a running station, or on a fleet's PostgreSQL, shows every
station the database holds; a running station adds its own process's gauges (`live`).

The counters and histograms sum the whole history, so on SQLite a collector keeps them as
running totals (`_Totals`): its first scrape reads everything up to the newest ids, each later
one only the rows past them (and, for the items counter, the items whose latest disposition is
among those rows: taken out as they stood, put back as they stand). On 1,010,000 items a scrape
took 1.4-2.9 s read whole; PostgreSQL sequences do not give ids in commit order, so there every
scrape reads everything.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import and_, case, func
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from db.models import (
    Alarm,
    Disposition,
    HumanDecision,
    Item,
    Level,
    LevelChange,
    MonitorCheck,
    Prediction,
    Slot,
    Station,
)
from station.settings import Settings

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DECISION_BUCKETS_S = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 60.0)


class RecordCollector:
    """Everything the record can tell, computed at each scrape (a few aggregate queries)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        station: str | None = None,
        live: Callable[[], Iterable[Metric]] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.station = station
        self.live = live
        self._totals: _Totals | None = None
        self._lock = threading.Lock()  # one scrape at a time updates the totals

    def describe(self) -> list[Metric]:
        return []  # collected lazily: registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        try:
            # Read whole before any is given out: a read failing half-way gives "up 0" alone,
            # not "up 1", some families, then "up 0" (two samples of one series).
            read = list(self._from_record())
        except Exception as e:  # a scrape during a database outage says so, and nothing else
            log.warning("metrics: cannot read the record: %s", e)
            up = GaugeMetricFamily("inspection_record_up", "1 when the record could be read")
            up.add_metric([], 0.0)
            read = [up]
        yield from read
        if self.live is not None:
            yield from self.live()

    def _stations(self, conn: Any) -> dict[int, str]:
        q = select(Station.id, Station.name)
        if self.station is not None:
            q = q.where(Station.name == self.station)
        return {r[0]: r[1] for r in conn.execute(q)}

    def _from_record(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            stations = self._stations(conn)
            up = GaugeMetricFamily("inspection_record_up", "1 when the record could be read")
            up.add_metric([], 1.0)
            yield up

            totals = self._current_totals(conn, stations)
            items = CounterMetricFamily(
                "inspection_items",
                "Items by who decided (final disposition) and outcome (pass / fail)",
                labels=["station", "decided_by", "outcome"],
            )
            for (sid, by, is_pass), n in sorted(totals.items.items()):
                if n:
                    items.add_metric([stations[sid], by, "pass" if is_pass else "fail"], n)
            yield items
            errors = CounterMetricFamily(
                "inspection_model_errors",
                "Model answers that were errors or timeouts",
                labels=["station"],
            )
            for sid, n in sorted(totals.errors.items()):
                if n:
                    errors.add_metric([stations[sid]], n)
            yield errors
            yield _histogram(
                stations,
                "inspection_model_latency_seconds",
                "Time the acting model took per item",
                totals.latency,
                LATENCY_BUCKETS_S,
            )
            yield _histogram(
                stations,
                "inspection_decision_seconds",
                "Time an inspector took to decide, from the item on screen to the key",
                totals.decisions,
                DECISION_BUCKETS_S,
            )

            level = GaugeMetricFamily(
                "inspection_automation_level",
                "Automation level in force: 0 human_only, 1 shadow, 2 assist, 3 partial, 4 full",
                labels=["station", "level"],
            )
            newest = (
                select(func.max(LevelChange.id).label("id"))
                .group_by(col(LevelChange.station_id))
                .subquery()
            )
            held = {
                sid: Level(lv)
                for sid, lv in conn.execute(
                    select(LevelChange.station_id, LevelChange.to_level).join(
                        newest, newest.c.id == LevelChange.id
                    )
                )
            }
            for sid, name in stations.items():
                lv = held.get(sid, Level(self.settings.levels.default))
                level.add_metric([name, lv.value], float(lv.rank))
            yield level

            yield self._canary(conn, stations)
            yield from self._drift(conn, stations)

    def _current_totals(self, conn: Any, stations: dict[int, str]) -> _Totals:
        """The running totals brought up to the newest rows (read whole when there are none
        yet, the stations changed, or the database is not SQLite)."""
        with self._lock:
            kept = self._totals
            if kept is None or kept.stations != set(stations) or conn.dialect.name != "sqlite":
                totals = _Totals(set(stations), self.settings.ok_class)
            else:
                # Kept totals are never changed in place: a catch-up failing half-way leaves
                # them as they were, and a scrape still reading them sees them whole.
                totals = copy.deepcopy(kept)
            totals.catch_up(conn)
            self._totals = totals
            return totals

    def _canary(self, conn: Any, stations: dict[int, str]) -> GaugeMetricFamily:
        from sqlmodel import Session

        from station.registry import lineup

        g = GaugeMetricFamily(
            "inspection_canary_weight_ratio",
            "Share of items the canary answers (0: none)",
            labels=["station"],
        )
        with Session(bind=conn) as s:
            for sid, name in stations.items():
                g.add_metric([name], lineup(s, sid).weight / 100.0)
        return g

    def _drift(self, conn: Any, stations: dict[int, str]) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "inspection_drift_score",
            "Latest statistic of each drift check",
            labels=["station", "check"],
        )
        bound = GaugeMetricFamily(
            "inspection_drift_threshold",
            "Thresholds the latest drift check was judged with",
            labels=["station", "check", "severity"],
        )
        newest = (
            select(func.max(MonitorCheck.id).label("id"))
            .where(col(MonitorCheck.station_id).in_(list(stations)))
            .group_by(col(MonitorCheck.station_id), col(MonitorCheck.check))
            .subquery()
        )
        for sid, check, stat, warn, fail in conn.execute(
            core_select(
                col(MonitorCheck.station_id),
                col(MonitorCheck.check),
                col(MonitorCheck.statistic),
                col(MonitorCheck.warn),
                col(MonitorCheck.fail),
            ).join(newest, newest.c.id == MonitorCheck.id)
        ):
            if stat is not None:
                score.add_metric([stations[sid], check], float(stat))
            for severity, value in (("warn", warn), ("fail", fail)):
                if value is not None:
                    bound.add_metric([stations[sid], check, severity], float(value))
        yield score
        yield bound
        alarms = GaugeMetricFamily(
            "inspection_alarms_open", "Open drift alarms", labels=["station", "severity"]
        )
        counts = {
            (sid, sev): n
            for sid, sev, n in conn.execute(
                select(Alarm.station_id, Alarm.severity, func.count())
                .where(
                    and_(col(Alarm.closed_at).is_(None), col(Alarm.station_id).in_(list(stations)))
                )
                .group_by(col(Alarm.station_id), col(Alarm.severity))
            )
        }
        for sid, name in stations.items():
            for sev in ("warn", "fail"):
                alarms.add_metric([name, sev], float(counts.get((sid, sev), 0)))
        yield alarms


_item = Item.__table__  # type: ignore[attr-defined]
_disp = Disposition.__table__  # type: ignore[attr-defined]
_pred = Prediction.__table__  # type: ignore[attr-defined]
_hd = HumanDecision.__table__  # type: ignore[attr-defined]


# The tables whose newest id marks what the totals hold, with when each row was written.
_MARKED = {
    "disposition": (_disp, _disp.c.created_at),
    "prediction": (_pred, _pred.c.created_at),
    "human_decision": (_hd, _hd.c.decided_at),
}


def _stamps(conn: Any, marks: dict[str, int]) -> dict[str, Any]:
    """When the row at each nonzero mark was written (None: it is gone)."""
    return {
        k: conn.execute(core_select(_MARKED[k][1]).where(_MARKED[k][0].c.id == mark)).scalar()
        for k, mark in marks.items()
        if mark
    }


class _Totals:
    """The history's counters and histograms for `stations`, as of `marks` (the newest id of
    each table they read): every query is bounded by the marks read first, so rows committed
    meanwhile are counted by the next catch-up, once."""

    def __init__(self, stations: set[int], ok: str) -> None:
        self.stations = stations
        self.ok = ok
        self._reset()

    def _reset(self) -> None:
        self.marks = {"disposition": 0, "prediction": 0, "human_decision": 0}
        self.stamps: dict[str, Any] = {}  # the time of each table's row at its mark
        self.items: Counter[tuple[int, str, bool]] = Counter()
        self.errors: Counter[int] = Counter()
        # station id -> [count, sum of ms, count at or below each bucket's bound]
        self.latency: dict[int, list[float]] = {}
        self.decisions: dict[int, list[float]] = {}

    def catch_up(self, conn: Any) -> None:
        new = {
            k: int(conn.execute(core_select(func.max(t.c.id))).scalar() or 0)
            for k, (t, _when) in _MARKED.items()
        }
        if _stamps(conn, self.marks) != self.stamps:
            # A row at a mark is gone or another (a backup restored under a running station):
            # ids past the marks need not be new rows. Read everything again.
            self._reset()
        old, ids = self.marks, list(self.stations)

        def newer(key: str) -> list[Any]:  # the rows of `key`'s table past the old mark
            table = _MARKED[key][0]
            return [table.c.id > old[key], table.c.id <= new[key]]

        lo, hi = old["disposition"], new["disposition"]
        if hi > lo:
            # Items whose latest disposition is past the mark: out as they stood, in as they stand.
            touched = core_select(_disp.c.item_id).where(*newer("disposition"))
            if lo:
                self.items.subtract(self._outcomes(conn, ids, lo, touched))
            self.items.update(self._outcomes(conn, ids, hi, touched if lo else None))
        if new["prediction"] > old["prediction"]:
            for sid, n in conn.execute(
                core_select(_item.c.station_id, func.count())
                .select_from(_pred.join(_item, _item.c.id == _pred.c.item_id))
                .where(
                    _item.c.station_id.in_(ids), _pred.c.error.is_not(None), *newer("prediction")
                )
                .group_by(_item.c.station_id)
            ):
                self.errors[int(sid)] += int(n)
            acting = _pred.c.slot.in_([Slot.champion.name, Slot.canary.name])
            _add_histogram(
                self.latency,
                conn,
                ids,
                _pred,
                _pred.c.latency_ms,
                [acting, _pred.c.latency_ms.is_not(None), *newer("prediction")],
                LATENCY_BUCKETS_S,
            )
        if new["human_decision"] > old["human_decision"]:
            _add_histogram(
                self.decisions,
                conn,
                ids,
                _hd,
                _hd.c.decision_ms,
                [_hd.c.decision_ms.is_not(None), *newer("human_decision")],
                DECISION_BUCKETS_S,
            )
        self.marks, self.stamps = new, _stamps(conn, new)

    def _outcomes(
        self, conn: Any, ids: list[int], upto: int, items: Any | None
    ) -> Counter[tuple[int, str, bool]]:
        """(station, decided by, passed) -> items, by each item's latest disposition up to id
        `upto` (of `items` only, a select of item ids, when given)."""
        latest = core_select(func.max(_disp.c.id).label("id")).where(_disp.c.id <= upto)
        if items is not None:
            latest = latest.where(_disp.c.item_id.in_(items))
        newest = latest.group_by(_disp.c.item_id).subquery()
        passed = (_disp.c.final_label == self.ok).label("passed")
        rows = conn.execute(
            core_select(_item.c.station_id, _disp.c.decided_by, passed, func.count())
            .select_from(
                _disp.join(newest, newest.c.id == _disp.c.id).join(
                    _item, _item.c.id == _disp.c.item_id
                )
            )
            .where(_item.c.station_id.in_(ids))
            .group_by(_item.c.station_id, _disp.c.decided_by, passed)
        )
        return Counter(
            {(int(sid), str(getattr(by, "value", by)), bool(ok)): int(n) for sid, by, ok, n in rows}
        )


def _add_histogram(
    into: dict[int, list[float]],
    conn: Any,
    ids: list[int],
    table: Any,
    value_ms: Any,
    where: list[Any],
    buckets: tuple[float, ...],
) -> None:
    cols = [func.count(), func.coalesce(func.sum(value_ms), 0.0)] + [
        func.sum(case((value_ms <= b * 1000.0, 1), else_=0)) for b in buckets
    ]
    q = (
        core_select(_item.c.station_id, *cols)
        .select_from(table.join(_item, _item.c.id == table.c.item_id))
        .where(_item.c.station_id.in_(ids), *where)
        .group_by(_item.c.station_id)
    )
    for sid, *sums in conn.execute(q):
        have = into.setdefault(int(sid), [0.0] * (2 + len(buckets)))
        for i, v in enumerate(sums):
            have[i] += float(v or 0)


def _histogram(
    stations: dict[int, str],
    name: str,
    doc: str,
    sums: dict[int, list[float]],
    buckets: tuple[float, ...],
) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=["station"])
    for sid in sorted(sums):
        count, total, *below = sums[sid]
        if not count:
            continue
        cumulative = [(str(b), below[i]) for i, b in enumerate(buckets)]
        cumulative.append(("+Inf", count))
        h.add_metric([stations[sid]], cumulative, total / 1000.0)
    return h


@dataclass
class MetricsServer:
    port: int
    close: Callable[[], None]


def registry_for(
    engine: Engine,
    settings: Settings,
    *,
    station: str | None = None,
    live: Callable[[], Iterable[Metric]] | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecordCollector(engine, settings, station=station, live=live))  # type: ignore[arg-type]
    return registry


def serve(
    engine: Engine,
    settings: Settings,
    *,
    port: int = 9108,
    host: str = "127.0.0.1",
    station: str | None = None,
    live: Callable[[], Iterable[Metric]] | None = None,
) -> MetricsServer:
    """Start the /metrics endpoint on a thread of its own; port 0 picks a free one."""
    from prometheus_client import start_http_server

    from station.errors import StationError

    registry = registry_for(engine, settings, station=station, live=live)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise StationError(
            f"cannot serve metrics on {host}:{port}: {e.strerror or e} (pick another --port)"
        ) from e
    bound = int(server.server_address[1])

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5.0)

    return MetricsServer(bound, close)


def station_gauges(core: Any) -> Iterator[Metric]:
    """What only a running station knows (its process), for `station run --metrics-port`.
    Read from the metrics server's thread: plain integers, read without a lock."""
    from station.dashboard import process_memory_mb

    name = core.station_name
    queue = GaugeMetricFamily(
        "inspection_queue_depth", "Items waiting for the inspector", labels=["station"]
    )
    queue.add_metric([name], float(len(core.desk.queue)))
    yield queue
    pending = GaugeMetricFamily(
        "inspection_pending_writes",
        "Decisions not yet committed to the database",
        labels=["station"],
    )
    pending.add_metric([name], float(core.desk.pending_writes))
    yield pending
    dropped = CounterMetricFamily(
        "inspection_shadow_dropped",
        "Items the hidden model (challenger) skipped because it fell behind",
        labels=["station"],
    )
    dropped.add_metric([name], float(core.shadow.dropped))
    yield dropped
    memory = GaugeMetricFamily(
        "inspection_process_max_resident_bytes", "Peak resident memory of the station process"
    )
    memory.add_metric([], process_memory_mb() * 1024 * 1024)
    yield memory
