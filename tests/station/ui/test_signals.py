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
import time
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

# Each write takes a second: the signal below comes while the decision is being written.
from station.pipeline import recorder as recorder_module

write = recorder_module.write_inspection


def slow_write(**kw):
    time.sleep(1.0)
    return write(**kw)


recorder_module.write_inspection = slow_write


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
    log = tmp_path / "stderr.txt"  # a file, not a pipe: nothing read from it can stall the child
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=REPO,
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "DECIDED":
            proc.kill()
            proc.wait()
            pytest.fail(f"the station decided nothing: {line!r}\n{log.read_text()[-3000:]}")
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    err = log.read_text()
    assert proc.returncode == 0, err
    assert f"{sig.name}: closing the station" in err
    with session_scope(open_station_db(f"sqlite:///{tmp_path / 'station.db'}")) as s:
        decided = s.exec(sql_select(HumanDecision)).all()
    assert [d.label for d in decided] == ["ok"]  # written before the process ended


def test_ctrl_c_and_a_closed_terminal_end_the_event_loop_and_leave_no_handler(qapp, caplog):
    """SIGINT and SIGHUP take the same path as SIGTERM. In this process: the test's own handlers
    are set first (the station's replace them, then are replaced by them again), and each
    signal is sent from another thread while the loop waits with no Python to run, as a signal
    from outside comes; one more is sent before the loop runs (a quit then would be lost)."""
    import logging
    import threading
    import time

    from PySide6.QtCore import QTimer

    from station.ui.app import closing_on_signals

    seen: list[int] = []
    before = {
        s: signal.signal(s, lambda n, _f: seen.append(n)) for s in (signal.SIGINT, signal.SIGHUP)
    }
    try:
        for sig, early in ((signal.SIGINT, False), (signal.SIGHUP, False), (signal.SIGINT, True)):
            mine = signal.getsignal(sig)
            with caplog.at_level(logging.WARNING), closing_on_signals(qapp):
                if early:
                    signal.raise_signal(sig)
                else:
                    threading.Timer(0.3, os.kill, (os.getpid(), sig)).start()
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
            caplog.clear()
        assert seen == []  # the station's handler took them, not the one set before
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_the_window_exits_1_and_says_so_when_decisions_could_not_be_saved(
    engine, monkeypatch, capsys
):
    """The window is gone by then: the exit code and the terminal (or the service's log) are
    where a lost decision shows. The station itself is a stand-in whose stop() reports two
    decisions on no disk (StationApp.stop counts them: the recorder's test)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QDialog

    from db.models import Role
    from db.repo import add_operator, find_operator
    from station.settings import Settings
    from station.ui import app

    with session_scope(engine) as s:
        add_operator(session=s, name="eve", role=Role.engineer, secret_hash="x")
        eve = find_operator(session=s, name="eve")

    class LetIn:
        DialogCode = QDialog.DialogCode
        failures, max_tries, operator = 0, 3, eve

        def __init__(self, *_a, **_k):
            pass

        def exec(self):
            return QDialog.DialogCode.Accepted

    class Station:
        def __init__(self, *_a, **_k):
            pass

        def start(self):
            QTimer.singleShot(0, QApplication.instance().quit)

        def stop(self):
            return 2

    monkeypatch.setattr(app, "warm_imports", lambda: None)
    monkeypatch.setattr(app, "LoginDialog", LetIn)
    monkeypatch.setattr(app, "StationApp", Station)
    assert app.run_window(Settings(), engine) == 1
    assert "ERROR: 2 decision(s) were not saved when the station closed" in capsys.readouterr().err
