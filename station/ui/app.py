"""Start the station window: log in, open the core on the database, start the pipeline thread."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.models import Level, Operator, OperatorSession, Role
from db.repo import (
    current_level,
    end_operator_session,
    get_or_create_station,
    list_operators,
    start_operator_session,
)
from review import summary
from station.auth import authenticate, require
from station.errors import AuthError, StationError
from station.frames.sources import open_source
from station.frames.store import ImageStore
from station.frames.types import FrameSource
from station.golden import golden_source
from station.levels import set_level
from station.pipeline.assess import ModelInUse, open_model
from station.pipeline.core import MONITOR_MODULE, StationCore
from station.pipeline.intake import Intake
from station.pipeline.lineup import model_to_run
from station.pipeline.predictor import ModelInfo, Predictor, load_predictor
from station.pipeline.recorder import BackgroundRecorder, Recorder
from station.settings import Settings
from station.ui import theme
from station.ui.login import LoginDialog
from station.ui.window import StationWindow
from station.ui.workers import PipelineThread, PipelineWorker, RecorderBridge

log = logging.getLogger(__name__)

#: How often the level in force is read while no item arrives (each item reads it anyway).
LEVEL_POLL_S = 1.0
#: How often the report summaries catch up with the line (review/summary.py): a report then only
#: adds what came since, whenever it is asked for.
SUMMARIES_EVERY_S = 300.0


def login_check(engine: Engine) -> Callable[[str, str], Operator]:
    """What the login dialog calls: the operator, if the secret is right and they may inspect;
    AuthError (its message shown as it is) otherwise."""

    def check(name: str, secret: str) -> Operator:
        with session_scope(engine) as session:
            operator = authenticate(session=session, name=name, secret=secret)
        require(operator, "inspect")
        return operator

    return check


class StationApp:
    """Everything `station run` starts, and stops in order."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        operator: Operator,
        *,
        level: Level | None = None,
        loader: Callable[[str | Path | None], tuple[Predictor, ModelInfo]] | None = None,
        source_factory: Callable[[str], FrameSource] | None = None,
        load_model: bool = True,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.summaries = summary.Keeper(engine, settings.ok_class, SUMMARIES_EVERY_S)
        assert operator.id is not None
        with session_scope(engine) as session:
            station = get_or_create_station(session=session, name=settings.station_name)
            assert station.id is not None
            self.station_id = station.id
            self.login: OperatorSession | None = start_operator_session(
                session=session, operator=operator, station=station
            )
            in_db = current_level(
                session=session, station_id=station.id, default=Level(settings.levels.default)
            )
        level_note = ""
        if level is not None and level is not in_db:
            # The same gated path as `station level set`: a promotion without evidence is
            # recorded as an override by this engineer, with this reason.
            try:
                set_level(
                    engine,
                    settings,
                    level,
                    operator=operator,
                    reason="set at start with `station run --level` (demo)",
                    override=True,
                )
                in_db = level
            except AuthError as e:
                level_note = f"{e}: staying at {in_db.value}"
        self.bridge = RecorderBridge()
        self.recorder = Recorder(
            engine,
            spool_dir=settings.files_dir,
            on_ack=self.bridge.acked.emit,
            on_problem=self.bridge.problem.emit,
            ok_label=settings.ok_class,
        )
        self.background = BackgroundRecorder(self.recorder)
        self.core = StationCore(
            settings,
            engine,
            station_id=self.station_id,
            station_name=settings.station_name,
            operator_id=operator.id,
            operator_name=operator.name,
            sink=self.background.submit,
            opener=lambda path: open_model(
                path,
                settings.labels,
                timeout_s=settings.thresholds.model_timeout_s,
                loader=loader or load_predictor,
            ),
        )
        if level_note or self.recorder.unclaimed:
            self.core.status.notice(level_note or self.recorder.unclaimed)
        source = (source_factory or open_source)(settings.camera_source)
        store = ImageStore(settings.image_dir)
        golden, golden_note = golden_source(
            engine, settings.levels.golden_share, store, camera_source=settings.camera_source
        )
        if golden_note:  # beside any notice already up
            earlier = level_note or self.recorder.unclaimed
            self.core.status.notice(f"{earlier}; {golden_note}" if earlier else golden_note)
        intake = Intake(
            source,
            store=store,
            source_name=settings.camera_source,
            golden=golden,
            keep_trying_to_open=True,
            # The model starts on an item as it is captured, while the pipeline thread reads
            # the level and plans it (its record reads took 3-7 ms of the wait).
            early=self.core.assessor.start,
        )

        def model_loader() -> ModelInUse:
            # The record's champion (or, on a first start, the configured model).
            return open_model(
                model_to_run(engine, settings, self.station_id),
                settings.labels,
                timeout_s=settings.thresholds.model_timeout_s,
                loader=loader or load_predictor,
            )

        # Loaded whatever the level at start: a promotion later must find the model ready.
        self.worker = PipelineWorker(
            self.core, intake, load_model=model_loader if load_model else None
        )
        self.dashboard: Any = None
        self.operator = operator
        self.window = StationWindow(
            self.core,
            request_capture=self.worker.request_capture,
            open_dashboard=self.show_dashboard if operator.role == Role.engineer else None,
            switch_operator=self.switch_operator,
        )
        self.window.model_loading = load_model
        view = self.window.view
        self.worker.view_size = lambda: view.size_now
        # Queued: every slot runs on the GUI thread, whichever thread emits.
        queued = Qt.ConnectionType.QueuedConnection
        w = self.worker
        w.item_ready.connect(self.window.on_item, queued)
        w.live_frame.connect(self.window.on_live, queued)
        w.camera_state.connect(self.window.on_camera, queued)
        w.model_ready.connect(self.window.on_model_ready, queued)
        w.model_failed.connect(self.window.on_model_failed, queued)
        w.problem.connect(self.window.on_problem, queued)
        w.heat_ready.connect(self.window.on_heat, queued)
        w.capture_paused.connect(self.window.on_capture_paused, queued)
        self.bridge.acked.connect(self.window.on_ack, queued)
        self.bridge.problem.connect(self.window.on_db_problem, queued)
        self.thread = PipelineThread(self.worker)

    def switch_operator(self) -> bool:
        """Ctrl+L: the operator logs out and the login dialog asks who takes over. Cancelled (or
        locked after too many tries), nobody is logged in and the station closes. The pipeline
        runs on meanwhile: phones wait (capture pauses at the queue's bound) for whoever logs in."""
        self._end_login()
        dialog = LoginDialog(
            login_check(self.engine), station_name=self.settings.station_name, parent=self.window
        )
        dialog.setWindowTitle(
            f"Station {self.settings.station_name} — {self.operator.name} logged out: who takes over?"
        )
        if dialog.exec() != LoginDialog.DialogCode.Accepted or dialog.operator is None:
            self.window.close()
            return False
        operator = dialog.operator
        assert operator.id is not None
        with session_scope(self.engine) as session:
            station = get_or_create_station(session=session, name=self.settings.station_name)
            self.login = start_operator_session(session=session, operator=operator, station=station)
        self.operator = operator
        self.core.switch_operator(operator.id, operator.name)
        engineer = operator.role == Role.engineer
        self.window.open_dashboard = self.show_dashboard if engineer else None
        if not engineer and self.dashboard is not None:
            self.dashboard.close()
        return True

    def _end_login(self) -> None:
        if self.login is None:
            return
        login, self.login = self.login, None
        try:
            with session_scope(self.engine) as session:
                end_operator_session(session=session, login=login)
        except Exception as e:  # logging out must not lose the shift's records
            log.warning("could not record the logout: %s", e)

    def show_dashboard(self) -> None:
        """F9 for an engineer: the dashboard, with what only this running station knows."""
        from station.dashboard import process_memory_mb
        from station.ui.dashboard import DashboardWindow, fetcher

        if self.dashboard is None:
            core = self.core
            self.dashboard = DashboardWindow(
                fetcher(self.engine, self.settings, self.station_id, self.settings.station_name),
                live=lambda: {
                    "items waiting for the inspector": float(len(core.desk.queue)),
                    "decisions waiting for the disk": float(core.desk.pending_writes),
                    "hidden-model items dropped": float(core.shadow.dropped),
                    "memory MiB": round(process_memory_mb(), 1),
                },
            )
            self.dashboard.resize(1400, 900)
        self.dashboard.show()
        self.dashboard.raise_()

    def start(self) -> None:
        # Everything loaded so far (Qt, SQLAlchemy, the model) lives for the whole shift: keep it
        # out of the collector's full passes, which hold the GIL and so pause the GUI thread too.
        gc.freeze()
        self.window.showMaximized()  # a station screen is the station's; nothing else shares it
        self.core.levels.poll(LEVEL_POLL_S)  # the level shown follows a change made elsewhere
        self.summaries.start()
        self.thread.start()

    def stop(self) -> int:
        """Close the station; how many of its decisions are on no disk at the end: given up on
        by the recorder (a write that hangs: it logs an error) or held in memory only (neither
        the database nor the spool took them). 0 normally."""
        if self.dashboard is not None:
            self.dashboard.close()
        self.summaries.stop()
        self.thread.stop()
        lost = self.background.close() + self.recorder.unsaved
        self.core.close()
        self._end_login()
        return lost


#: What the pipeline thread imports before its first frame: the model package (torch,
#: torchvision, onnxruntime). That took 6-10 s after login on this 2-core machine, with the
#: camera shown STARTING all that time. Then the drift checks' code, which the pipeline thread
#: imported at the first check (the 100th item waited 0.8 s for SciPy's statistics).
WARM_IMPORTS = ("model", "onnxruntime", MONITOR_MODULE)


def warm_imports() -> threading.Thread:
    """Import the model's packages on a thread of their own while the login dialog waits for
    the operator: the pipeline thread's own import then finds them done (or waits for the one
    under way: Python's import lock). A failed import here is left for the pipeline thread to
    meet and report as it does now; the next module is warmed all the same."""

    def run() -> None:
        for name in WARM_IMPORTS:
            try:
                importlib.import_module(name)
            except Exception:  # the pipeline thread's own import says what is wrong
                log.debug("warming up %s failed", name, exc_info=True)

    thread = threading.Thread(target=run, name="warm-imports", daemon=True)
    thread.start()
    return thread


def run_window(
    settings: Settings,
    engine: Engine,
    *,
    level: Level | None = None,
    on_start: Callable[[StationApp], None] | None = None,
) -> int:
    with session_scope(engine) as session:
        if not list_operators(session=session):
            raise StationError(
                f"no operators in {engine.url.render_as_string(hide_password=True)}: create one "
                "first, e.g. `station user add lan --role inspector` (the secret is asked for)"
            )
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setStyleSheet(theme.STYLE)

    warm_imports()
    dialog = LoginDialog(login_check(engine), station_name=settings.station_name)
    if dialog.exec() != LoginDialog.DialogCode.Accepted or dialog.operator is None:
        if dialog.failures >= dialog.max_tries:
            QMessageBox.critical(
                None, "Login", "Too many failed attempts; the station stays locked."
            )
            raise AuthError("too many failed login attempts")
        return 1
    station = StationApp(settings, engine, dialog.operator, level=level)
    station.start()
    if on_start is not None:
        on_start(station)
    with closing_on_signals(app):
        try:
            code = int(app.exec())
        finally:
            lost = station.stop()
    if lost:
        # The window is gone: the terminal, or the service's log, is where this is seen.
        print(
            f"ERROR: {lost} decision(s) were not saved when the station closed (the database "
            "and the spool did not take them; see the errors above): they are lost",
            file=sys.stderr,
        )
        return 1
    return code


#: Signals that close the station as its window's close button does: a service manager's stop
#: or a logout (SIGTERM), Ctrl-C in the terminal it was started from (SIGINT), that terminal
#: closing (SIGHUP; not on Windows).
CLOSING_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
#: How often Python gets to run a signal's handler while Qt's event loop waits.
SIGNAL_CHECK_MS = 200


@contextlib.contextmanager
def closing_on_signals(app: QApplication) -> Iterator[None]:
    """While the block runs, CLOSING_SIGNALS end the event loop instead of the process, so the
    station stops as after its close button: the decisions in flight written (or spooled), the
    login ended, exit code 0 (1 if decisions could not be saved). Left to their defaults,
    SIGTERM and SIGHUP ended the process at once, with whatever was decided and not yet
    written, and Ctrl-C did not close the window (its KeyboardInterrupt was raised in whichever
    slot ran next). A second signal while the station stops changes nothing. Python runs a
    handler only between its own bytecodes: a timer wakes it while Qt's loop waits. Only the
    main thread may set handlers; elsewhere the block runs with the signals as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def close(signum: int, _frame: object) -> None:
        log.warning(
            "%s: closing the station (the decisions in flight are written first)",
            signal.Signals(signum).name,
        )
        # Queued, not at once: a quit before the loop runs would be ignored, and this runs in
        # the middle of whatever Python code the signal interrupted.
        QTimer.singleShot(0, app.quit)

    previous = {}
    for name in CLOSING_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, close)
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(SIGNAL_CHECK_MS)
    try:
        yield
    finally:
        wake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
