"""The engineer's dashboard draws the record: the level, its recent items' charts, the drift
checks against their thresholds and the open alarms; F9 opens it for an engineer only."""

from __future__ import annotations

from db.models import Level
from station.dashboard import snapshot
from station.pipeline.testing import open_station_db
from station.ui.dashboard import DashboardWindow, fetcher
from tests.station.test_monitor import run, settings_at


def test_the_dashboard_shows_a_demoted_station_with_its_alarm(qtbot, tmp_path):
    settings = settings_at(tmp_path)
    engine = open_station_db(f"sqlite:///{tmp_path / 'sim.db'}")
    run(settings, engine, Level.shadow, 100)
    run(settings, engine, Level.partial, 150, drift="light=0.5@0")

    snap = snapshot(engine, 1, station="sim", ok="ok", default_level=Level.shadow, bucket=50)
    assert snap.level == "assist" and snap.items == 250
    assert len(snap.throughput_per_min.y) == 5 and len(snap.model_p95_ms.y) == 5
    assert all(0.0 <= a <= 1.0 for a in snap.agreement.y)
    # a simulation's items never reach a screen: their stages stop at the model's answer
    assert {"wait", "plan", "model"} <= set(snap.stages_ms) and not snap.screen_p95_ms.y
    brightness = snap.drift["input.brightness"]
    assert max(brightness.y) >= snap.thresholds["input.brightness"][1]  # past its fail line
    assert any(a["check"] == "input.brightness" for a in snap.alarms)

    window = DashboardWindow(
        fetcher(engine, settings, 1, "sim"), live=lambda: {"memory MiB": 123.0}, refresh_ms=60_000
    )
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.snapshots >= 1, timeout=20_000)
    assert "level ASSIST" in window.header.text() and "memory MiB 123" in window.header.text()
    assert "median ms per stage: wait" in window.header.text()
    texts = [window.alarms.item(i).text() for i in range(window.alarms.count())]
    assert any(t.startswith("FAIL") and "input drift brightness" in t for t in texts)
    assert len(window.p_drift.listDataItems()) >= 5  # one line per check that was judged


def test_f9_opens_the_dashboard_only_where_the_window_was_given_one(qtbot, tmp_path):
    from PySide6.QtCore import Qt

    from station.pipeline.testing import make_rig
    from station.ui.window import StationWindow

    rig = make_rig(tmp_path, level=Level.shadow)
    opened = []
    engineer_window = StationWindow(rig.core, open_dashboard=lambda: opened.append(True))
    inspector_window = StationWindow(rig.core)  # StationApp gives none to other roles
    for w in (engineer_window, inspector_window):
        qtbot.addWidget(w)
    qtbot.keyClick(engineer_window, Qt.Key.Key_F9)
    assert opened == [True]
    qtbot.keyClick(inspector_window, Qt.Key.Key_F9)
    assert opened == [True]
