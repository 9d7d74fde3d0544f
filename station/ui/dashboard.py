"""The engineer's dashboard: live charts (pyqtgraph) of the station's recent items and its drift
checks, and its open alarms. The numbers come from station/dashboard.py (Qt-free), read on a
thread of its own every few seconds; this window only draws them.

`station dashboard` opens it alone; in the station window an engineer opens it with F9 (the
running station then adds what only it knows: decisions waiting for the disk, hidden-model items
dropped, memory).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from station.dashboard import Series, Snapshot, snapshot

log = logging.getLogger(__name__)

REFRESH_MS = 3000
WARN_COLOUR = "#d08a00"
FAIL_COLOUR = "#c0392b"


class _Fetcher(QObject):
    ready = Signal(object)  # Snapshot, or an error text
    failed = Signal(str)


class DashboardWindow(QWidget):
    def __init__(
        self,
        fetch: Callable[[], Snapshot],
        *,
        live: Callable[[], dict[str, float]] | None = None,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        super().__init__()
        self.setWindowTitle("Inspection Station — dashboard")
        self.fetch = fetch
        self.live = live
        self._busy = threading.Lock()
        self._fetcher = _Fetcher()
        self._fetcher.ready.connect(self.show_snapshot, Qt.ConnectionType.QueuedConnection)
        self._fetcher.failed.connect(self._show_error, Qt.ConnectionType.QueuedConnection)
        self.snapshots = 0  # drawn so far (tests wait on it)

        pg.setConfigOptions(antialias=True, background="w", foreground="k")
        layout = QVBoxLayout(self)
        self.header = QLabel("reading the record…")
        self.header.setStyleSheet("font-size: 14pt; font-weight: bold;")
        self.header.setWordWrap(True)  # a long line must not widen the window past the screen
        self.header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.header)
        self.charts = pg.GraphicsLayoutWidget()
        layout.addWidget(self.charts, stretch=1)
        self.alarms = QListWidget()
        self.alarms.setMaximumHeight(160)
        self.alarms.setStyleSheet("font-size: 11pt;")
        layout.addWidget(QLabel("Open alarms"))
        layout.addWidget(self.alarms)

        c = self.charts
        self.p_rate = self._plot(0, 0, "Throughput", "items / min")
        self.p_wait = self._plot(0, 1, "Capture → decision", "s (p50, p95)")
        self.p_model = self._plot(
            1, 0, "Model latency (blue) · capture → on screen (orange)", "ms (p50, p95)"
        )
        self.p_agree = self._plot(1, 1, "Human / model agreement (pass/fail)", "share")
        self.p_drift = self._plot(2, 0, "Drift: statistic / fail threshold", "1 = fail", colspan=2)
        self.p_drift.addLegend(offset=(10, 10))
        c.ci.layout.setRowStretchFactor(2, 2)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(refresh_ms)
        QTimer.singleShot(0, self.refresh)

    def _plot(self, row: int, col: int, title: str, unit: str, colspan: int = 1) -> pg.PlotItem:
        p = self.charts.addPlot(row=row, col=col, colspan=colspan, title=title)
        p.setLabel("left", unit)
        p.setLabel(
            "bottom", "items (last 2000)" if row < 2 else "item id (end of the round's window)"
        )
        p.showGrid(x=True, y=True, alpha=0.3)
        p.getAxis("left").enableAutoSIPrefix(False)  # "x0.001" on a share reads as a bug
        return p

    # ------------------------------------------------------------------ reading, off the GUI thread

    def refresh(self) -> None:
        if not self._busy.acquire(blocking=False):
            return  # the last read is still running: skip this tick

        def work() -> None:
            try:
                self._fetcher.ready.emit(self.fetch())
            except Exception as e:  # shown in the window; the next tick tries again
                self._fetcher.failed.emit(str(e))
            finally:
                self._busy.release()

        threading.Thread(target=work, name="dashboard-read", daemon=True).start()

    def _show_error(self, text: str) -> None:
        self.header.setText(f"cannot read the record: {text}")

    # ------------------------------------------------------------------ drawing, GUI thread

    def show_snapshot(self, snap: Snapshot) -> None:
        live = self.live() if self.live is not None else {}
        extra = "".join(f" · {k} {v:g}" for k, v in live.items())
        self.header.setText(
            f"{snap.station} · level {snap.level.upper()} · {snap.items} recent items · "
            f"{len(snap.alarms)} open alarm(s){extra}"
            + (
                "\nmedian ms per stage: "
                + " · ".join(f"{k} {v:.1f}" for k, v in snap.stages_ms.items())
                if snap.stages_ms
                else ""
            )
        )
        _lines(self.p_rate, [(snap.throughput_per_min, "#2c7fb8")])
        _lines(self.p_wait, [(snap.decision_p50_s, "#2c7fb8"), (snap.decision_p95_s, "#7b3294")])
        _lines(
            self.p_model,
            [
                (snap.model_p50_ms, "#2c7fb8"),
                (snap.model_p95_ms, "#7b3294"),
                (snap.screen_p50_ms, "#e66101"),
                (snap.screen_p95_ms, "#b35806"),
            ],
        )
        _lines(self.p_agree, [(snap.agreement, "#1a9641")])
        self.p_drift.clear()
        colours = [pg.intColor(i, hues=max(8, len(snap.drift))) for i in range(len(snap.drift))]
        warn_levels = []
        for colour, (check, series) in zip(colours, sorted(snap.drift.items()), strict=True):
            warn, fail = snap.thresholds.get(check, (None, None))
            if not fail:
                continue
            y = [v / fail if math.isfinite(v) else float("nan") for v in series.y]
            self.p_drift.plot(series.x, y, pen=pg.mkPen(colour, width=2), name=check)
            if warn is not None and fail > 0:
                warn_levels.append(warn / fail)
        self.p_drift.addLine(y=1.0, pen=pg.mkPen(FAIL_COLOUR, width=2, style=Qt.PenStyle.DashLine))
        if warn_levels:
            self.p_drift.addLine(
                y=min(warn_levels), pen=pg.mkPen(WARN_COLOUR, style=Qt.PenStyle.DashLine)
            )
        self.alarms.clear()
        for a in snap.alarms:
            item = QListWidgetItem(
                f"{a['severity'].upper()}  {a['opened_at'][:19]}  {a['message']}"
            )
            item.setForeground(QColor(FAIL_COLOUR if a["severity"] == "fail" else WARN_COLOUR))
            self.alarms.addItem(item)
        if not snap.alarms:
            self.alarms.addItem("none")
        self.snapshots += 1

    def closeEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802 (Qt API)
        self.timer.stop()
        super().closeEvent(event)


def fetcher(engine, settings, station_id: int, name: str) -> Callable[[], Snapshot]:  # type: ignore[no-untyped-def]
    from db.models import Level

    return lambda: snapshot(
        engine,
        station_id,
        station=name,
        ok=settings.ok_class,
        default_level=Level(settings.levels.default),
    )


def run_dashboard(engine, settings, station_id: int, name: str) -> int:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    window = DashboardWindow(fetcher(engine, settings, station_id, name))
    window.resize(1400, 900)
    window.show()
    code = app.exec()
    window.deleteLater()
    return int(code)


def _lines(plot: pg.PlotItem, series: list[tuple[Series, str]]) -> None:
    plot.clear()
    for s, colour in series:
        if s.x:
            plot.plot(s.x, s.y, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=4)
