"""Prometheus metrics, read from the record at each scrape (prometheus_client custom collector).

Names are `inspection_*` in base units (seconds, ratios), labelled by station only (never per
item): counters of items by who decided and the outcome, histograms of model latency and of the
inspector's time to decide, gauges of the automation level, the canary's weight, each drift
check's latest score and its thresholds, and open alarms. Read from the database, so
`station metrics serve` beside a running station, or on a fleet's PostgreSQL, shows every
station the database holds; a running station adds its own process's gauges (`live`).
"""

from __future__ import annotations

import logging
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

    def describe(self) -> list[Metric]:
        return []  # collected lazily: registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._from_record()
        except Exception as e:  # a scrape during a database outage says so, and nothing else
            log.warning("metrics: cannot read the record: %s", e)
            up = GaugeMetricFamily("inspection_record_up", "1 when the record could be read")
            up.add_metric([], 0.0)
            yield up
        if self.live is not None:
            yield from self.live()

    def _stations(self, conn: Any) -> dict[int, str]:
        q = select(Station.id, Station.name)
        if self.station is not None:
            q = q.where(Station.name == self.station)
        return {r[0]: r[1] for r in conn.execute(q)}

    def _from_record(self) -> Iterator[Metric]:
        ok = self.settings.ok_class
        with self.engine.connect() as conn:
            stations = self._stations(conn)
            ids = list(stations)
            up = GaugeMetricFamily("inspection_record_up", "1 when the record could be read")
            up.add_metric([], 1.0)
            yield up

            items = CounterMetricFamily(
                "inspection_items",
                "Items by who decided (final disposition) and outcome (pass / fail)",
                labels=["station", "decided_by", "outcome"],
            )
            latest = (
                select(func.max(Disposition.id).label("id"))
                .group_by(col(Disposition.item_id))
                .subquery()
            )
            passed = (col(Disposition.final_label) == ok).label("passed")
            rows = conn.execute(
                core_select(
                    col(Item.station_id),
                    col(Disposition.decided_by),
                    passed,
                    func.count(),
                )
                .join(latest, latest.c.id == Disposition.id)
                .join(Item, col(Item.id) == col(Disposition.item_id))
                .where(col(Item.station_id).in_(ids))
                .group_by(col(Item.station_id), col(Disposition.decided_by), passed)
            )
            for sid, by, is_pass, n in rows:
                items.add_metric(
                    [stations[sid], str(getattr(by, "value", by)), "pass" if is_pass else "fail"], n
                )
            yield items

            errors = CounterMetricFamily(
                "inspection_model_errors",
                "Model answers that were errors or timeouts",
                labels=["station"],
            )
            for sid, n in conn.execute(
                select(Item.station_id, func.count())
                .select_from(Prediction)
                .join(Item, col(Item.id) == col(Prediction.item_id))
                .where(col(Item.station_id).in_(ids), col(Prediction.error).is_not(None))
                .group_by(col(Item.station_id))
            ):
                errors.add_metric([stations[sid]], n)
            yield errors

            yield self._histogram(
                conn,
                stations,
                "inspection_model_latency_seconds",
                "Time the acting model took per item",
                col(Prediction.latency_ms),
                lambda *cols: (
                    select(*cols)
                    .select_from(Prediction)
                    .join(Item, col(Item.id) == col(Prediction.item_id))
                    .where(
                        col(Prediction.slot).in_([Slot.champion, Slot.canary]),
                        col(Prediction.latency_ms).is_not(None),
                    )
                ),
                LATENCY_BUCKETS_S,
            )
            yield self._histogram(
                conn,
                stations,
                "inspection_decision_seconds",
                "Time an inspector took to decide, from the item on screen to the key",
                col(HumanDecision.decision_ms),
                lambda *cols: (
                    select(*cols)
                    .select_from(HumanDecision)
                    .join(Item, col(Item.id) == col(HumanDecision.item_id))
                    .where(col(HumanDecision.decision_ms).is_not(None))
                ),
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

    def _histogram(
        self,
        conn: Any,
        stations: dict[int, str],
        name: str,
        doc: str,
        value_ms: Any,
        base: Callable[..., Any],
        buckets: tuple[float, ...],
    ) -> HistogramMetricFamily:
        h = HistogramMetricFamily(name, doc, labels=["station"])
        cols = [func.count(), func.coalesce(func.sum(value_ms), 0.0)] + [
            func.sum(case((value_ms <= b * 1000.0, 1), else_=0)) for b in buckets
        ]
        q = (
            base(col(Item.station_id), *cols)
            .where(col(Item.station_id).in_(list(stations)))
            .group_by(col(Item.station_id))
        )
        for row in conn.execute(q):
            sid, count, total = row[0], int(row[1]), float(row[2])
            cumulative = [(str(b), float(row[3 + i] or 0)) for i, b in enumerate(buckets)]
            cumulative.append(("+Inf", float(count)))
            h.add_metric([stations[sid]], cumulative, total / 1000.0)
        return h

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
