"""The model's packages are imported while the login dialog waits, so the camera starts soon
after login (the pipeline thread imported torch first: 6-10 s of "cam: STARTING")."""

from __future__ import annotations

import sys


def test_the_model_packages_are_imported_on_a_thread_of_their_own(tmp_path, monkeypatch):
    from station.ui import app

    (tmp_path / "warm_a.py").write_text(
        "import threading\nWHERE = threading.current_thread().name\n"
    )
    (tmp_path / "warm_c.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("warm_a", "warm_c"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    # one that cannot be imported is passed over quietly (the pipeline thread's own import
    # reports it, as before) and the next is warmed all the same
    monkeypatch.setattr(app, "WARM_IMPORTS", ("warm_a", "warm_b_missing", "warm_c"))
    thread = app.warm_imports()
    thread.join(30)
    assert not thread.is_alive() and thread.daemon
    assert sys.modules["warm_a"].WHERE == "warm-imports"
    assert sys.modules["warm_c"].X == 1


def test_the_window_warms_the_model_packages_before_the_login_dialog(engine, monkeypatch):
    """run_window starts the warm-up before it asks anyone to log in."""
    from PySide6.QtWidgets import QDialog

    from db.engine import session_scope
    from db.models import Role
    from db.repo import add_operator
    from station.settings import Settings
    from station.ui import app

    with session_scope(engine) as s:
        add_operator(session=s, name="eve", role=Role.engineer, secret_hash="x")
    calls = []
    monkeypatch.setattr(app, "warm_imports", lambda: calls.append("warm"))

    class Cancelled:
        DialogCode = QDialog.DialogCode
        failures, max_tries, operator = 0, 3, None

        def __init__(self, *a, **k):
            calls.append("login")

        def exec(self):
            return QDialog.DialogCode.Rejected

    monkeypatch.setattr(app, "LoginDialog", Cancelled)
    assert app.run_window(Settings(), engine) == 1
    assert calls == ["warm", "login"]
    assert app.WARM_IMPORTS[0] == "model"
    # the drift checks' code too: the item that ran the first check waited 0.8 s for it
    assert app.WARM_IMPORTS[-1] == "station.monitor" == app.MONITOR_MODULE
