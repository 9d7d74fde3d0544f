"""A station window ended by a signal (a service manager's stop or a logout: SIGTERM; Ctrl-C in
its terminal: SIGINT) stops as after its close button: what the inspector decided is written,
and the process exits 0. Before, SIGTERM ended the process at once, decisions in flight with it.

For SIGTERM the window runs in a process of its own (sent to this one, the default action would
end the test run), on the synthetic line with the bundled model, with a login dialog that lets
its operator in; SIGINT and SIGHUP are raised here, with handlers of the test's set first."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select as sql_select

from db.engine import session_scope
from db.models import HumanDecision
from station.pipeline.testing import open_station_db

REPO = Path(__file__).resolve().parents[3]

STATION = r"""
import sys
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog

from db.engine import session_scope
from db.repo import find_operator
from station.pipeline.testing import ensure_operator, open_station_db
from station.settings import Settings
from station.ui import app

data = Path(sys.argv[1])
engine = open_station_db(f"sqlite:///{data / 'station.db'}")
ensure_operator(engine, "lan")
with session_scope(engine) as s:
    lan = find_operator(session=s, name="lan")


class LetIn:
    DialogCode = QDialog.DialogCode
    failures, max_tries = 0, 3

    def __init__(self, *_a, **_k):
        self.operator = lan

    def exec(self):
        return QDialog.DialogCode.Accepted


app.LoginDialog = LetIn


def on_start(station):
    def press():
        if station.core.desk.current is None:  # no phone on screen yet
            QTimer.singleShot(50, press)
            return
        QTest.keyClick(station.window, Qt.Key.Key_Space)
        print("DECIDED", flush=True)  # the signal comes now: the decision is in flight

    QTimer.singleShot(50, press)


sys.exit(app.run_window(Settings(data_dir=data), engine, on_start=on_start))
"""


def test_sigterm_closes_the_station_as_its_close_button_does(tmp_path):
    sig = signal.SIGTERM
    script = tmp_path / "station_window.py"
    script.write_text(STATION)
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "DECIDED":
            proc.kill()
            pytest.fail(f"the station decided nothing: {line!r}\n{proc.communicate()[1][-3000:]}")
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"{sig.name}: closing the station" in err
    with session_scope(open_station_db(f"sqlite:///{tmp_path / 'station.db'}")) as s:
        decided = s.exec(sql_select(HumanDecision)).all()
    assert [d.label for d in decided] == ["ok"]  # written before the process ended


def test_ctrl_c_and_a_closed_terminal_end_the_event_loop_and_leave_no_handler(qapp, caplog):
    """SIGINT and SIGHUP take the same path as SIGTERM (in this process: their handlers are set
    before they are raised, and the ones set before come back after)."""
    import logging
    import time

    from PySide6.QtCore import QTimer

    from station.ui.app import closing_on_signals

    seen: list[int] = []
    before = {
        s: signal.signal(s, lambda n, _f: seen.append(n)) for s in (signal.SIGINT, signal.SIGHUP)
    }
    try:
        for sig in before:
            mine = signal.getsignal(sig)
            with caplog.at_level(logging.WARNING), closing_on_signals(qapp):
                QTimer.singleShot(0, lambda sig=sig: signal.raise_signal(sig))
                fallback = QTimer()  # ends the loop if the signal did not
                fallback.setSingleShot(True)
                fallback.timeout.connect(qapp.quit)
                fallback.start(5000)
                t0 = time.monotonic()
                qapp.exec()
                fallback.stop()
            assert time.monotonic() - t0 < 2.5, f"{sig.name} did not end the event loop"
            assert f"{sig.name}: closing the station" in caplog.text
            assert signal.getsignal(sig) is mine  # the handler set before is back
        assert seen == []  # the station's handler took them, not the one set before
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
