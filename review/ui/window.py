"""The QA lead's review window: filters, the agreement matrix, the gallery of a cell's items, a
zoomable view, adjudication by keyboard, gate status and export.

A thin view: every read and write goes through review.browse (Qt-free, tested headless). Queries
are aggregates over the filtered frame, so they stay quick on a large record; thumbnails load a few
per event-loop turn, so a long gallery never freezes the window, and loads for a gallery that has
since been replaced are dropped by generation number. The heat-map (H) comes from the model
version that judged the item, opened on first use on a thread of its own (review/ui/heat.py).
"""

from __future__ import annotations

import dataclasses
import html
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import (
    QCloseEvent,
    QColor,
    QIcon,
    QImage,
    QKeyEvent,
    QKeySequence,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.errors import DbError
from db.models import Level, Operator
from review import browse
from review.audits import AuditSPRT
from review.errors import ReviewError
from review.gates import GateRules
from review.heatmaps import OpenModel
from review.labels import LabelSet
from review.query import ReportFilters
from review.stats import cohens_kappa, observed_agreement
from review.ui.heat import HeatRequest, HeatResult, HeatWorker
from review.ui.widgets import ImageView, MatrixTable, load_image, placeholder

THUMB = QSize(192, 108)
THUMBS_PER_TICK = 4
HEATMAP_NOTE = (
    "H: the heat-map of the model version that judged the item: red where it sees a defect, "
    "weighted by the P(defect) it gave (a sure-ok item does not glow)"
)
#: Overlays kept for going back and forth between items (a 1280x720 overlay is 2.7 MB).
HEAT_CACHE = 24

STYLE = """
QWidget { background: #14181d; color: #e8ebef; font-size: 15px; }
QFrame#panel { background: #1b2027; border-radius: 8px; }
QLabel#title { font-size: 17px; font-weight: 700; }
QLabel#muted, QLabel#note { color: #9aa4b2; }
QLabel#message { color: #ffd166; font-size: 17px; font-weight: 600; padding: 6px; }
QLabel#error { color: #ff6b5b; font-weight: 700; }
QLabel#gate { font-weight: 700; padding: 6px 10px; border-radius: 6px; background: #2a2f36; }
QLabel#gate[state="pass"] { background: #1f6f43; }
QLabel#gate[state="fail"] { background: #7a4b00; }
QLabel#saved { color: #5fd38d; font-weight: 700; }
QLabel#info { font-size: 15px; }
QLabel#heat { font-weight: 600; }
QLabel#heat[state="off"] { color: #9aa4b2; font-weight: 400; }
QLabel#heat[state="busy"] { color: #8ab8ff; }
QLabel#heat[state="none"] { color: #ffd166; }
QTableWidget { gridline-color: #14181d; font-size: 17px; }
QHeaderView::section { background: #232830; color: #e8ebef; padding: 4px 2px; border: none;
                       font-weight: 700; font-size: 14px; }
QListWidget { background: #0f1216; }
QListWidget::item:selected { background: #3d8bfd; color: #ffffff; }
QPushButton { background: #2c333d; border: 1px solid #3c4654; border-radius: 6px;
              padding: 6px 10px; }
QPushButton:checked { background: #3d8bfd; color: #ffffff; border-color: #8ab8ff; }
QPushButton:disabled { color: #59616c; }
QPushButton#save { background: #1f9d55; color: #ffffff; font-weight: 700; font-size: 17px;
                   min-height: 40px; }
QPushButton#save:disabled { background: #2a2f36; color: #59616c; }
QLineEdit, QComboBox { background: #0f1216; border: 1px solid #3c4654; border-radius: 4px;
                       padding: 4px; }
QLineEdit:disabled, QComboBox:disabled { color: #59616c; border-color: #2a2f36; }
QCheckBox#evidenceSwitch { font-weight: 700; padding: 4px 10px; border: 2px solid #8ab8ff;
                           border-radius: 6px; }
QCheckBox#evidenceSwitch:checked { background: #3d8bfd; color: #ffffff; }
QCheckBox#evidenceSwitch::indicator { width: 18px; height: 18px; border: 2px solid #e8ebef;
                                      border-radius: 3px; background: #0f1216; }
QCheckBox#evidenceSwitch::indicator:checked { background: #ffffff; }
"""


@dataclass(frozen=True)
class ReviewConfig:
    """What the window needs from the settings (review/ may not import station/)."""

    labels: LabelSet
    image_root: Path | None = None
    rules: GateRules | None = None
    default_level: Level = Level.human_only
    item_limit: int = browse.DEFAULT_ITEM_LIMIT
    filters: ReportFilters = field(default_factory=ReportFilters)
    # The audit SPRT an adjudication of an audit runs (settings [audits]).
    audit_test: Callable[[], AuditSPRT] = AuditSPRT
    # How the heat-map reaches the model version that judged an item (`station review` passes
    # station.heatmaps.model_opener); None: no heat-maps in this window.
    open_model: OpenModel | None = None


@dataclass(frozen=True)
class Selection:
    """Which items the gallery lists: a cell, a row, a column, or every disagreement."""

    human: str | None = None
    model: str | None = None
    disagreements: bool = True
    requested: bool = False  # the adjudication queue: truth sample and challenges

    def describe(self) -> str:
        if self.requested:
            return "awaiting adjudication (truth sample, challenges)"
        if self.human is not None and self.model is not None:
            return f"human {self.human} × model {self.model}"
        if self.human is not None:
            return f"human {self.human} (any model label)"
        if self.model is not None:
            return f"model {self.model} (any human label)"
        return "every disagreement" if self.disagreements else "every paired item"


def _combo(all_text: str) -> QComboBox:
    box = QComboBox()
    box.addItem(all_text, None)
    box.setMinimumContentsLength(10)
    return box


def _fill_combo(box: QComboBox, values: Sequence[str], keep: str | None) -> None:
    box.blockSignals(True)
    while box.count() > 1:
        box.removeItem(1)
    for v in values:
        box.addItem(v, v)
    i = box.findData(keep) if keep is not None else 0
    box.setCurrentIndex(max(0, i))
    box.blockSignals(False)


def _when(dt: datetime | None) -> str:
    return "—" if dt is None else f"{dt:%Y-%m-%d %H:%M:%S}"


def summary_text(cells: browse.CellMatrix) -> str:
    """The matrix in one line: agreement and Cohen's kappa, each with its 95% interval (the
    conservative kappa interval the shadow -> assist gate judges), and what they rest on."""
    if not cells.total:
        return f"{cells.items} items · no paired item"
    agree = observed_agreement(cells.counts)
    kappa = cohens_kappa(cells.counts)
    assert agree.rate is not None and agree.ci95 is not None
    text = (
        f"{cells.items} items · {cells.paired} paired · {cells.evidence} evidence\n"
        f"agreement {100 * agree.rate:.1f}% (95% {100 * agree.ci95[0]:.1f}–"
        f"{100 * agree.ci95[1]:.1f}%) · {cells.total - cells.agreeing} disagreements\n"
    )
    if kappa.value is None or kappa.ci95 is None:
        return text + "kappa: undefined (every item in one class)"
    return text + f"kappa {kappa.value:.3f} (95% {kappa.ci95[0]:.3f}–{kappa.ci95[1]:.3f})"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.0f}%"


class FilterBar(QWidget):
    """Station, inspector, model version, level, since/until and evidence-only, applied at once."""

    def __init__(self, on_apply: Any) -> None:
        super().__init__()
        self.station = _combo("all stations")
        self.inspector = _combo("all inspectors")
        self.model_version = _combo("champion (any version)")
        self.level = _combo("all levels")
        self.since = QLineEdit()
        self.since.setPlaceholderText("since YYYY-MM-DD")
        self.until = QLineEdit()
        self.until.setPlaceholderText("until YYYY-MM-DD")
        for edit in (self.since, self.until):
            edit.setMaximumWidth(170)
            edit.returnPressed.connect(on_apply)
        # A switch that changes every number on the screen: it must be seen, on or off.
        self.evidence_only = QCheckBox("Evidence only (unbiased items)")
        self.evidence_only.setObjectName("evidenceSwitch")
        self.apply = QPushButton("Apply")
        self.clear = QPushButton("Clear")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for text, w in (
            ("Station", self.station),
            ("Inspector", self.inspector),
            ("Model", self.model_version),
            ("Level", self.level),
        ):
            lab = QLabel(text)
            lab.setObjectName("muted")
            row.addWidget(lab)
            row.addWidget(w)
            w.activated.connect(lambda _i: on_apply())
        row.addWidget(self.since)
        row.addWidget(self.until)
        row.addWidget(self.evidence_only)
        row.addWidget(self.apply)
        row.addWidget(self.clear)
        row.addStretch(1)
        self.evidence_only.toggled.connect(lambda _b: on_apply())
        self.apply.clicked.connect(on_apply)

    def set_choices(self, choices: browse.FilterChoices) -> None:
        for box, values in (
            (self.station, choices.stations),
            (self.inspector, choices.inspectors),
            (self.model_version, choices.model_versions),
            (self.level, choices.levels),
        ):
            _fill_combo(box, values, box.currentData())

    def set_filters(self, f: ReportFilters) -> None:
        for box, value in (
            (self.station, f.station),
            (self.inspector, f.inspector),
            (self.model_version, f.model_version),
            (self.level, f.level.value if f.level else None),
        ):
            if value is not None and box.findData(value) < 0:
                box.addItem(value, value)
            box.setCurrentIndex(max(0, box.findData(value)) if value is not None else 0)
        self.since.setText(f.since.date().isoformat() if f.since else "")
        self.until.setText(f.until.date().isoformat() if f.until else "")
        self.evidence_only.blockSignals(True)
        self.evidence_only.setChecked(f.evidence_only)
        self.evidence_only.blockSignals(False)

    def filters(self) -> ReportFilters:
        """The filters as typed; raises FilterError (a ReviewError) when one is malformed."""
        return ReportFilters.parse(
            station=self.station.currentData(),
            inspector=self.inspector.currentData(),
            model_version=self.model_version.currentData(),
            level=self.level.currentData(),
            since=self.since.text().strip() or None,
            until=self.until.text().strip() or None,
            evidence_only=self.evidence_only.isChecked(),
        )


@dataclass(frozen=True)
class LoadRequest:
    """What the loader is asked for; the generations say which answer is still wanted."""

    matrix_gen: int
    gallery_gen: int
    filters: ReportFilters
    selection: Selection
    matrix: bool  # the matrix and the gate too, not only the gallery
    choices: bool  # and the filter boxes' contents


@dataclass(frozen=True)
class LoadResult:
    request: LoadRequest
    choices: browse.FilterChoices | None = None
    cells: browse.CellMatrix | None = None
    rows: list[browse.ItemRow] | None = None
    gate: browse.GateStatus | None = None
    error: str | None = None
    last: bool = True  # the final answer to this request


class Loader(QObject):
    """Runs the queries off the GUI thread: the matrix and the gallery first, then the gate (the
    slowest). A request older than the newest one asked for is skipped, not run."""

    loaded = Signal(object)

    def __init__(self, engine: Engine, config: ReviewConfig) -> None:
        super().__init__()
        self.engine = engine
        self.config = config
        self.latest = (0, 0)  # set from the GUI thread; an int pair, replaced whole

    @Slot(object)
    def load(self, req: LoadRequest) -> None:
        latest_matrix, latest_gallery = self.latest
        if req.matrix_gen < latest_matrix or (not req.matrix and req.gallery_gen < latest_gallery):
            self.loaded.emit(LoadResult(req))  # superseded: nothing to show
            return
        labels = self.config.labels
        try:
            with self.engine.connect() as conn:
                choices = browse.filter_choices(conn) if req.choices else None
                cells = (
                    browse.matrix_cells(conn, req.filters, labels=labels) if req.matrix else None
                )
                sel = req.selection
                rows = browse.items(
                    conn,
                    req.filters,
                    human_label=sel.human,
                    model_label=sel.model,
                    disagreements_only=sel.disagreements,
                    requested=sel.requested,
                    limit=self.config.item_limit,
                )
                if not req.matrix:
                    self.loaded.emit(LoadResult(req, rows=rows))
                    return
                self.loaded.emit(LoadResult(req, choices, cells, rows, last=False))
                gate = browse.gate_status(
                    conn,
                    req.filters,
                    labels=labels,
                    rules=self.config.rules,
                    default_level=self.config.default_level,
                )
                self.loaded.emit(LoadResult(req, gate=gate))
        except (ReviewError, DbError, SQLAlchemyError) as e:
            self.loaded.emit(LoadResult(req, error=f"cannot read the database: {e}"))


class ReviewWindow(QMainWindow):
    def __init__(
        self,
        engine: Engine,
        operator: Operator,
        config: ReviewConfig,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.operator = operator
        self.config = config
        self.label_set = config.labels
        self.labels = list(config.labels.all)
        self.can_adjudicate = browse.may_adjudicate(operator)
        self.filters = self.config.filters
        self.selection = Selection()
        self.rows: list[browse.ItemRow] = []
        self.cells: browse.CellMatrix | None = None
        self.chosen_label: str | None = None
        self.saved_count = 0
        self._reason_by_hand = False
        self._generation = 0  # of the thumbnails being loaded
        self._matrix_gen = 0
        self._gallery_gen = 0
        self._pending = 0
        self._thumb_queue: list[int] = []
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setInterval(0)
        self._thumb_timer.timeout.connect(self._load_some_thumbnails)
        self.heat_on = False  # kept from item to item, as the QA lead set it (H)
        self._plain: QPixmap | None = None  # the selected item's image without the map
        self._detail: browse.ItemDetail | None = None  # the selected item's
        self._heat_gen = 0
        self._heat_pending = 0
        self._heat_images: OrderedDict[tuple[int, int], QImage] = OrderedDict()
        self._heat_tried: set[int] = set()  # model versions the worker has opened or refused
        self._heat_thread: QThread | None = None  # started on the first H: no model, no thread
        self._heat_worker: HeatWorker | None = None

        role = getattr(operator.role, "value", operator.role)
        self.setWindowTitle(f"Inspection review — {operator.name} ({role})")
        self.setStyleSheet(STYLE)
        self._build()
        self._install_keys()

        self._thread = QThread(self)
        self._loader = Loader(engine, self.config)
        self._loader.moveToThread(self._thread)
        self._ask.connect(self._loader.load)
        self._loader.loaded.connect(self._on_loaded)
        self._thread.start()
        self.refresh(reload_choices=True)

    _ask = Signal(object)
    _ask_heat = Signal(object)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        root = QWidget()
        outer = QVBoxLayout(root)
        outer.setContentsMargins(10, 8, 10, 8)

        self.filter_bar = FilterBar(self.apply_filters)
        self.filter_bar.clear.clicked.connect(self.clear_filters)
        self.filter_error = QLabel("")
        self.filter_error.setObjectName("error")
        self.filter_error.hide()
        outer.addWidget(self.filter_bar)
        outer.addWidget(self.filter_error)

        split = QSplitter(Qt.Orientation.Horizontal)
        self._key_panels = [
            self._build_matrix_panel(),
            self._build_gallery_panel(),
            self._build_adjudication_panel(),
        ]
        for panel in self._key_panels:
            split.addWidget(panel)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 0)
        split.setSizes([560, 900, 440])
        outer.addWidget(split, 1)

        bottom = QHBoxLayout()
        self.gate_label = QLabel("gate: …")
        self.gate_label.setObjectName("gate")
        self.gate_label.setWordWrap(True)
        self.refresh_button = QPushButton("Refresh (F5)")
        self.refresh_button.clicked.connect(lambda: self.refresh(reload_choices=True))
        self.export_button = QPushButton("Export report…")
        self.export_button.clicked.connect(self._ask_export)
        bottom.addWidget(self.gate_label, 1)
        bottom.addWidget(self.refresh_button)
        bottom.addWidget(self.export_button)
        outer.addLayout(bottom)
        self.setCentralWidget(root)
        # Made now: made by its first message, it would push the panels up under the user.
        self.statusBar()
        QShortcut(QKeySequence("F5"), self, lambda: self.refresh(reload_choices=True))
        QShortcut(QKeySequence("Ctrl+E"), self, self._ask_export)

    def _panel(self) -> tuple[QFrame, QVBoxLayout]:
        frame = QFrame()
        frame.setObjectName("panel")
        lay = QVBoxLayout(frame)
        lay.setContentsMargins(10, 10, 10, 10)
        return frame, lay

    def _build_matrix_panel(self) -> QWidget:
        frame, lay = self._panel()
        title = QLabel("Agreement: human (rows) × model (columns)")
        title.setObjectName("title")
        self.matrix = MatrixTable()
        self.matrix.setMinimumSize(380, 300)
        self.matrix.cell_chosen.connect(lambda h, m: self.show_items(Selection(h, m, False)))
        self.summary = QLabel("")
        self.summary.setObjectName("muted")
        self.summary.setWordWrap(True)
        self.disagreements_button = QPushButton("All disagreements")
        self.disagreements_button.clicked.connect(lambda: self.show_items(Selection()))
        # The truth sample first: only its adjudications measure the escape rate the gates judge.
        self.awaiting_button = QPushButton("Awaiting adjudication")
        self.awaiting_button.clicked.connect(
            lambda: self.show_items(Selection(disagreements=False, requested=True))
        )
        hint = QLabel("Click a cell to list its items; a header lists a whole row or column.")
        hint.setObjectName("note")
        hint.setWordWrap(True)
        lay.addWidget(title)
        lay.addWidget(self.matrix, 1)
        lay.addWidget(self.summary)
        lay.addWidget(self.disagreements_button)
        lay.addWidget(self.awaiting_button)
        lay.addWidget(hint)
        return frame

    def _build_gallery_panel(self) -> QWidget:
        frame, lay = self._panel()
        self.gallery_title = QLabel("")
        self.gallery_title.setObjectName("title")
        self.message_label = QLabel("")
        self.message_label.setObjectName("message")
        self.message_label.setWordWrap(True)
        self.message_label.hide()
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(THUMB)
        self.gallery.setGridSize(QSize(THUMB.width() + 16, THUMB.height() + 62))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setWordWrap(True)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.gallery.currentRowChanged.connect(self._on_current_changed)
        self.viewer = ImageView()
        self.viewer.setMinimumHeight(260)
        self.heat_button = QPushButton("Heat-map (H)")
        self.heat_button.setCheckable(True)
        self.heat_button.setToolTip(HEATMAP_NOTE)
        self.heat_button.clicked.connect(lambda: self.set_heat(self.heat_button.isChecked()))
        self.heat_status = QLabel("")
        self.heat_status.setObjectName("heat")
        self.heat_status.setWordWrap(True)
        self._heat_state("off", "heat-map off")
        heat_row = QHBoxLayout()
        heat_row.addWidget(self.heat_button)
        heat_row.addWidget(self.heat_status, 1)
        note = QLabel("wheel or +/− zoom, 0 fits, drag pans · H heat-map")
        note.setObjectName("note")
        note.setToolTip(HEATMAP_NOTE)
        inner = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_lay = QVBoxLayout(top)
        top_lay.setContentsMargins(0, 0, 0, 0)
        top_lay.addWidget(self.gallery_title)
        top_lay.addWidget(self.message_label)
        top_lay.addWidget(self.gallery, 1)
        bottom = QWidget()
        bottom_lay = QVBoxLayout(bottom)
        bottom_lay.setContentsMargins(0, 0, 0, 0)
        bottom_lay.addWidget(self.viewer, 1)
        bottom_lay.addLayout(heat_row)
        bottom_lay.addWidget(note)
        inner.addWidget(top)
        inner.addWidget(bottom)
        inner.setSizes([380, 520])
        lay.addWidget(inner, 1)
        return frame

    def _build_adjudication_panel(self) -> QWidget:
        frame, lay = self._panel()
        self.adjudication_panel = frame
        title = QLabel("Adjudication")
        title.setObjectName("title")
        self.info = QLabel("no item selected")
        self.info.setObjectName("info")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        grid = QGridLayout()
        self.label_group = QButtonGroup(self)
        self.label_group.setExclusive(True)
        self.label_buttons: dict[str, QPushButton] = {}
        for i, lab in enumerate(self.labels):
            # The same key gives the same label as at the station (Space = defect-free, 1-9).
            b = QPushButton(f"{lab}  ({self.label_set.key(lab)})")
            b.setCheckable(True)
            b.setMinimumHeight(36)
            b.clicked.connect(lambda _c=False, lab=lab: self.choose_label(lab))
            self.label_group.addButton(b)
            self.label_buttons[lab] = b
            grid.addWidget(b, i // 2, i % 2)

        self.reason_box = QComboBox()
        self.reason_box.setPlaceholderText(
            "reason: " + " ".join(k for k, _ in browse.REASON_CODES.values())
        )
        for code, (key, meaning) in browse.REASON_CODES.items():
            self.reason_box.addItem(f"{key} · {code}", code)
            self.reason_box.setItemData(
                self.reason_box.count() - 1, meaning, Qt.ItemDataRole.ToolTipRole
            )
        self.reason_box.setCurrentIndex(-1)
        self.reason_box.activated.connect(lambda _i: setattr(self, "_reason_by_hand", True))
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (optional); Enter saves, Esc leaves")
        self.note_edit.returnPressed.connect(self.save)
        QShortcut(
            QKeySequence("Esc"),
            self.note_edit,
            lambda: self.gallery.setFocus(),
            Qt.ShortcutContext.WidgetShortcut,
        )
        self.save_button = QPushButton("Save (Enter)")
        self.save_button.setObjectName("save")
        self.save_button.clicked.connect(self.save)
        self.saved_label = QLabel("")
        self.saved_label.setObjectName("saved")
        self.saved_label.setWordWrap(True)
        keys = QLabel(
            f"Keys: Space / 1–{len(self.label_set.defects)} label · "
            + " ".join(k for k, _ in browse.REASON_CODES.values())
            + " reason · Enter save and next · PgUp/PgDn previous/next"
        )
        keys.setObjectName("note")
        keys.setWordWrap(True)
        reasons = QLabel(
            "<br>".join(
                f"<b>{k}</b> {html.escape(code)}: {html.escape(meaning)}"
                for code, (k, meaning) in browse.REASON_CODES.items()
            )
        )
        reasons.setObjectName("note")
        reasons.setWordWrap(True)

        lay.addWidget(title)
        lay.addWidget(self.info)
        lay.addSpacing(8)
        lay.addLayout(grid)
        lay.addWidget(self.reason_box)
        lay.addWidget(self.note_edit)
        lay.addWidget(self.save_button)
        lay.addWidget(self.saved_label)
        lay.addStretch(1)
        lay.addWidget(keys)
        lay.addWidget(reasons)
        if not self.can_adjudicate:
            role = getattr(self.operator.role, "value", self.operator.role)
            self.browse_only = QLabel(
                f"Browse only: you are logged in as {role}; adjudication needs a qa_lead login."
            )
            self.browse_only.setObjectName("error")
            self.browse_only.setWordWrap(True)
            lay.insertWidget(1, self.browse_only)
            for w in (*self.label_buttons.values(), self.reason_box, self.note_edit):
                w.setEnabled(False)
            self.save_button.setEnabled(False)
        return frame

    # ------------------------------------------------------------------ keyboard

    def _install_keys(self) -> None:
        """Adjudication keys work wherever the focus is in the three panels, except in the note:
        an event filter rather than shortcuts, so a focused list or table cannot swallow a digit
        for its own keyboard search. The filter bar is outside the panels, so what is typed or
        pressed there (Enter in a date box) never reaches these keys."""
        for panel in self._key_panels:
            for w in [panel, *panel.findChildren(QWidget)]:
                if w is not self.note_edit:
                    w.installEventFilter(self)
        self.gallery.setFocus()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            # A key the note did not use travels up to its parents, which carry this filter: it
            # is still typing, not a command (Enter there must not save twice).
            if isinstance(QApplication.focusWidget(), QLineEdit):
                return False
            return self.handle_key(event)
        return super().eventFilter(obj, event)

    def handle_key(self, event: QKeyEvent) -> bool:
        """True when the key was one of ours (and has been acted on)."""
        mods = event.modifiers() & ~(
            Qt.KeyboardModifier.KeypadModifier | Qt.KeyboardModifier.ShiftModifier
        )
        if mods != Qt.KeyboardModifier.NoModifier:
            return False
        key, text = event.key(), event.text().upper()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.save()
            return True
        if key == Qt.Key.Key_PageDown:
            self.step(+1)
            return True
        if key == Qt.Key.Key_PageUp:
            self.step(-1)
            return True
        if text in ("+", "="):
            self.viewer.zoom_by(1.25)
            return True
        if text == "-":
            self.viewer.zoom_by(0.8)
            return True
        if text == "0":
            self.viewer.fit()
            return True
        if text == "H":
            self.set_heat(not self.heat_on)
            return True
        chosen = self.label_set.from_key(event.text())
        if chosen is not None:
            if self.can_adjudicate:
                self.choose_label(chosen)
            else:
                self._say("browse only: adjudication needs a qa_lead login", error=True)
            return True
        for code, (letter, _) in browse.REASON_CODES.items():
            if text == letter:
                if self.can_adjudicate:
                    self.choose_reason(code)
                return True
        return False

    # ------------------------------------------------------------------ data

    def apply_filters(self) -> bool:
        try:
            self.filters = self.filter_bar.filters()
        except ReviewError as e:
            self.filter_error.setText(str(e))
            self.filter_error.show()
            return False
        self.filter_error.hide()
        self.refresh()
        return True

    def clear_filters(self) -> None:
        self.filter_bar.set_filters(ReportFilters())
        self.apply_filters()

    @property
    def loading(self) -> bool:
        """True while the loader has answers to give."""
        return self._pending > 0

    def _request(self, *, matrix: bool, choices: bool = False) -> None:
        if matrix:
            self._matrix_gen += 1
        self._gallery_gen += 1
        req = LoadRequest(
            self._matrix_gen, self._gallery_gen, self.filters, self.selection, matrix, choices
        )
        self._loader.latest = (req.matrix_gen, req.gallery_gen)
        self._pending += 1
        if matrix:
            self.summary.setText("loading…")
            self.gate_label.setText("gate: evaluating…")
        self.gallery_title.setText(f"{self.selection.describe()}: loading…")
        self._ask.emit(req)

    def refresh(self, *, reload_choices: bool = False) -> None:
        """Reload the matrix, the gate line and the gallery for the current filters."""
        self._request(matrix=True, choices=reload_choices)

    def show_items(self, selection: Selection) -> None:
        self.selection = selection
        self._request(matrix=False)

    @Slot(object)
    def _on_loaded(self, res: LoadResult) -> None:
        req = res.request
        if res.last:
            self._pending -= 1
        if res.error:
            self.message_label.setText(res.error)
            self.message_label.show()
            self._say(res.error, error=True)
            return
        matrix_current = req.matrix_gen == self._matrix_gen
        if res.choices is not None and matrix_current:
            self.filter_bar.set_choices(res.choices)
            self.filter_bar.set_filters(self.filters)
        if res.cells is not None and matrix_current:
            self._show_cells(res.cells)
        if res.gate is not None and matrix_current:
            self._show_gate(res.gate)
        if res.rows is not None and req.gallery_gen == self._gallery_gen:
            self._set_rows(res.rows)

    def _show_cells(self, cells: browse.CellMatrix) -> None:
        self.cells = cells
        self.matrix.set_counts(cells.labels, cells.counts)
        self.summary.setText(summary_text(cells))
        self.disagreements_button.setText(f"All disagreements ({cells.total - cells.agreeing})")
        teach = f", {cells.awaiting_teach} to teach" if cells.awaiting_teach else ""
        self.awaiting_button.setText(f"Awaiting adjudication ({cells.awaiting}{teach})")

    def _show_gate(self, gate: browse.GateStatus) -> None:
        state = "none" if gate.passed is None else ("pass" if gate.passed else "fail")
        self.gate_label.setText(gate.text)
        self.gate_label.setProperty("state", state)
        self.gate_label.style().unpolish(self.gate_label)
        self.gate_label.style().polish(self.gate_label)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the loader and heat-map threads (each finishes what it is running first)."""
        self._thumb_timer.stop()
        for thread in (self._thread, self._heat_thread):
            if thread is not None and thread.isRunning():
                thread.quit()
                thread.wait()

    def _expected_count(self) -> int | None:
        c, s = self.cells, self.selection
        if c is None:
            return None
        if s.requested:
            return c.awaiting
        if s.human is not None and s.model is not None:
            return c.count(s.human, s.model)
        if s.human is not None:
            return sum(c.counts[c.labels.index(s.human)])
        if s.model is not None:
            j = c.labels.index(s.model)
            return sum(row[j] for row in c.counts)
        return c.total - c.agreeing if s.disagreements else c.total

    def _set_rows(self, rows: list[browse.ItemRow]) -> None:
        self._generation += 1
        self.rows = rows
        self.gallery.blockSignals(True)
        self.gallery.clear()
        blank = QIcon(placeholder(THUMB, "loading…"))
        for i, row in enumerate(rows):
            it = QListWidgetItem(blank, self._caption(row))
            it.setData(Qt.ItemDataRole.UserRole, i)
            it.setToolTip(self._tooltip(row))
            self._colour(it, row)
            self.gallery.addItem(it)
        self.gallery.blockSignals(False)
        total = self._expected_count()
        shown = (
            f"{len(rows)} items"
            if total is None or total == len(rows)
            else f"{len(rows)} of {total} items (not adjudicated first)"
        )
        self.gallery_title.setText(f"{self.selection.describe()}: {shown}")
        messages = list(self.cells.messages) if self.cells else []
        if not rows and not messages:
            messages.append(
                "nothing to review here: no item in this selection"
                + (" (no disagreements)" if self.selection.disagreements else "")
            )
        self.message_label.setText("\n".join(messages))
        self.message_label.setVisible(bool(messages))
        self._thumb_queue = list(range(len(rows)))
        if rows:
            self._thumb_timer.start()
            self.gallery.setCurrentRow(0)
            self._on_current_changed(0)
            # The keys act on the gallery's item; take the focus unless text is being typed.
            if not isinstance(QApplication.focusWidget(), QLineEdit):
                self.gallery.setFocus()
        else:
            self._thumb_timer.stop()
            self._on_current_changed(-1)

    def _caption(self, row: browse.ItemRow) -> str:
        conf = _pct(row.model_confidence)
        head = f"#{row.item_id} · {row.inspector or '—'}"
        labels = f"H {row.human_label} · M {row.model_label} {conf}".rstrip()
        if row.adjudicated_label is not None:
            return f"{head}\n{labels}\n✓ {row.adjudicated_label}"
        return f"{head}\n{labels}"

    def _tooltip(self, row: browse.ItemRow) -> str:
        return (
            f"item #{row.item_id}, station {row.station}, captured {_when(row.captured_at)} UTC\n"
            f"human {row.human_label} ({row.inspector}), model {row.model_label} "
            f"{_pct(row.model_confidence)} ({row.model_version})\n"
            f"{row.basis}{' · evidence' if row.evidence else ' · not evidence'}"
        )

    def _colour(self, it: QListWidgetItem, row: browse.ItemRow) -> None:
        if row.adjudicated_label is not None:
            it.setForeground(QColor("#5fd38d"))
        elif row.disagrees:
            it.setForeground(QColor("#ffb4a8"))

    def _load_some_thumbnails(self) -> None:
        generation = self._generation
        for _ in range(THUMBS_PER_TICK):
            if not self._thumb_queue or generation != self._generation:
                self._thumb_timer.stop()
                return
            i = self._thumb_queue.pop(0)
            row = self.rows[i]
            path = browse.image_file(self.config.image_root, row.image_path)
            image = load_image(path, THUMB)
            pm = (
                QPixmap.fromImage(image)
                if image is not None
                else placeholder(THUMB, "no image" if path is None else "unreadable image")
            )
            item = self.gallery.item(i)
            if item is not None:
                item.setIcon(QIcon(pm))
        if not self._thumb_queue:
            self._thumb_timer.stop()

    @property
    def thumbnails_pending(self) -> int:
        return len(self._thumb_queue)

    # ------------------------------------------------------------------ the selected item

    def current_index(self) -> int:
        return self.gallery.currentRow()

    def current_row(self) -> browse.ItemRow | None:
        i = self.current_index()
        return self.rows[i] if 0 <= i < len(self.rows) else None

    def step(self, delta: int) -> None:
        if not self.rows:
            return
        i = min(len(self.rows) - 1, max(0, self.current_index() + delta))
        self.gallery.setCurrentRow(i)

    def _on_current_changed(self, i: int) -> None:
        self._reset_choice()
        row = self.rows[i] if 0 <= i < len(self.rows) else None
        self._plain, self._detail = None, None
        if row is None:
            self.info.setText("no item selected")
            self.viewer.set_pixmap(placeholder(QSize(640, 360), "no item selected"))
            self._show_heat()
            return
        path = browse.image_file(self.config.image_root, row.image_path)
        image = load_image(path)
        if image is not None:
            self._plain = QPixmap.fromImage(image)
        self.viewer.set_pixmap(
            self._plain
            if self._plain is not None
            else placeholder(
                QSize(640, 360),
                f"no image for item #{row.item_id}"
                + (
                    f"\n(expected {row.image_path} under the image folder)"
                    if row.image_path
                    else ""
                ),
            )
        )
        try:
            with self.engine.connect() as conn:
                detail = browse.item_detail(
                    conn, row.item_id, model_version=self.filters.model_version
                )
        except (ReviewError, DbError, SQLAlchemyError):
            detail = browse.ItemDetail(row.item_id, {}, [])
        self._detail = detail
        self.info.setText(self._info_html(row, detail))
        self._show_heat()

    def _info_html(self, row: browse.ItemRow, detail: browse.ItemDetail) -> str:
        e = html.escape
        evidence = (
            "<span style='color:#5fd38d'>evidence</span>"
            if row.evidence
            else "<span style='color:#ffd166'>not evidence</span>"
        )
        lines = [
            f"<span style='font-size:19px; font-weight:700'>item #{row.item_id}</span>",
            f"captured {_when(row.captured_at)} UTC · station {e(row.station)}",
            f"inspector {e(row.inspector or '—')} · {e(row.level or '—')} · {e(row.basis)} · "
            + evidence,
            f"model {e(row.model_version or '—')}",
            "<table cellspacing='0' cellpadding='3' style='margin-top:6px'>"
            f"<tr><td style='font-size:19px; color:#9aa4b2'>HUMAN</td><td style='font-size:19px'><b>{e(str(row.human_label))}"
            "</b></td></tr>"
            f"<tr><td style='font-size:19px; color:#9aa4b2'>MODEL</td><td style='font-size:19px'><b>{e(str(row.model_label))}"
            f"</b> {_pct(row.model_confidence)}</td></tr>"
            + (
                f"<tr><td style='font-size:19px; color:#9aa4b2'>ADJUDICATED</td><td style='font-size:19px; color:#5fd38d'><b>"
                f"{e(row.adjudicated_label)}</b></td></tr>"
                if row.adjudicated_label
                else ""
            )
            + "</table>",
        ]
        if detail.probabilities:
            top = sorted(detail.probabilities.items(), key=lambda kv: -kv[1])[:3]
            lines.append(
                "model probabilities: " + ", ".join(f"{e(k)} {100 * v:.0f}%" for k, v in top)
            )
        if row.ground_truth:
            lines.append(f"known truth (synthetic / golden): {e(row.ground_truth)}")
        for why in detail.queued_for:
            lines.append(f"queued for adjudication: {e(why)}")
        for a in detail.adjudications:
            lines.append(
                f"adjudicated {e(a['label'])} by {e(a['by'])} ({e(a['reason_code'])})"
                + (f": {e(a['note'])}" if a["note"] else "")
            )
        return "<br>".join(lines)

    # ------------------------------------------------------------------ the heat-map

    def set_heat(self, on: bool) -> None:
        """The heat-map on or off (H, or the button); it stays so from item to item."""
        self.heat_on = on
        self.heat_button.setChecked(on)
        self._show_heat()

    @property
    def heat_loading(self) -> bool:
        """True while the heat-map worker has answers to give."""
        return self._heat_pending > 0

    def _heat_state(self, state: str, text: str) -> None:
        self.heat_status.setText(text)
        self.heat_status.setProperty("state", state)
        self.heat_status.style().unpolish(self.heat_status)
        self.heat_status.style().polish(self.heat_status)

    def _show_plain(self) -> None:
        if self._plain is not None:
            self.viewer.set_pixmap(self._plain, fit=False)

    def _heat_refusal(self, row: browse.ItemRow | None) -> str | None:
        """Why the selected item can have no heat-map, known without the model; None: it may."""
        if row is None:
            return "no item selected"
        if self.config.open_model is None:
            return "this window was opened without the model store (open it with `station review`)"
        if self._detail is None or self._detail.model is None:
            return f"item #{row.item_id} has no model prediction"
        if self._plain is None:
            return f"item #{row.item_id} has no readable image"
        return None

    def _show_heat(self) -> None:
        """Show the selected item as the heat-map switch says: the overlay from the cache, or ask
        the worker for it (the plain image stays until it comes), or say why there is none."""
        self._heat_gen += 1  # whatever was asked for another item is no longer wanted
        if self._heat_worker is not None:
            self._heat_worker.latest = self._heat_gen
        if not self.heat_on:
            self._show_plain()
            self._heat_state("off", "heat-map off")
            return
        row = self.current_row()
        refusal = self._heat_refusal(row)
        if refusal is not None:
            self._show_plain()
            self._heat_state("none", f"no heat-map: {refusal}")
            return
        assert row is not None and self._detail is not None and self._detail.model is not None
        model = self._detail.model
        cached = self._heat_images.get((row.item_id, model.id))
        if cached is not None:
            self._heat_images.move_to_end((row.item_id, model.id))
            self.viewer.set_pixmap(QPixmap.fromImage(cached), fit=False)
            self._heat_state("on", self._heat_on_text(model.spec, self._detail.p_defect))
            return
        self._show_plain()
        if model.id in self._heat_tried:
            self._heat_state("busy", f"heat-map: model {model.spec} is drawing it…")
        else:
            self._heat_state(
                "busy", f"heat-map: loading model {model.spec} (the first time takes seconds)…"
            )
        path = browse.image_file(self.config.image_root, row.image_path)
        assert path is not None  # the plain image was read from it
        self._send_heat(
            HeatRequest(self._heat_gen, row.item_id, path, model, self._detail.p_defect)
        )

    def _heat_on_text(self, spec: str, p_defect: float | None) -> str:
        weight = "unweighted" if p_defect is None else f"× P(defect) {100 * p_defect:.0f}%"
        return f"heat-map on · {spec} · red = defect likely · {weight}"

    def _send_heat(self, req: HeatRequest) -> None:
        if self._heat_worker is None:
            assert self.config.open_model is not None
            self._heat_thread = QThread(self)
            self._heat_worker = HeatWorker(self.config.open_model)
            self._heat_worker.moveToThread(self._heat_thread)
            self._ask_heat.connect(self._heat_worker.compute)
            self._heat_worker.computed.connect(self._on_heat)
            self._heat_thread.start()
        self._heat_worker.latest = req.gen
        self._heat_pending += 1
        self._ask_heat.emit(req)

    @Slot(object)
    def _on_heat(self, res: HeatResult) -> None:
        self._heat_pending -= 1
        req = res.request
        if res.skipped:
            return
        self._heat_tried.add(req.model.id)
        if res.image is not None:
            self._heat_images[(req.item_id, req.model.id)] = res.image
            while len(self._heat_images) > HEAT_CACHE:
                self._heat_images.popitem(last=False)
        if res.load_ms is not None and res.draw_ms is not None:
            self.statusBar().showMessage(
                f"model {req.model.spec} loaded in {res.load_ms / 1000:.1f} s; "
                f"heat-map drawn in {res.draw_ms:.0f} ms",
                10_000,
            )
        if req.gen != self._heat_gen:
            return  # the QA lead has moved on; the overlay waits in the cache
        if res.image is None:
            self._heat_state("none", f"no heat-map: {res.error}")
            return
        self.viewer.set_pixmap(QPixmap.fromImage(res.image), fit=False)
        self._heat_state("on", self._heat_on_text(req.model.spec, req.p_defect))

    # ------------------------------------------------------------------ adjudication

    def _reset_choice(self) -> None:
        self.chosen_label = None
        self._reason_by_hand = False
        self.label_group.setExclusive(False)
        for b in self.label_buttons.values():
            b.setChecked(False)
        self.label_group.setExclusive(True)
        self.reason_box.setCurrentIndex(-1)
        self.note_edit.clear()

    def choose_label(self, label: str) -> None:
        self.chosen_label = label
        self.label_buttons[label].setChecked(True)
        row = self.current_row()
        if row is not None and not self._reason_by_hand:
            reason = browse.suggest_reason(
                row.human_label, row.model_label, label, self.label_set.ok
            )
            self.reason_box.setCurrentIndex(self.reason_box.findData(reason) if reason else -1)

    def choose_reason(self, code: str) -> None:
        self._reason_by_hand = True
        self.reason_box.setCurrentIndex(self.reason_box.findData(code))

    @property
    def chosen_reason(self) -> str | None:
        data = self.reason_box.currentData()
        return str(data) if data else None

    def save(self) -> bool:
        """Record the adjudication of the selected item, then select the next one."""
        row = self.current_row()
        if not self.can_adjudicate:
            self._say("browse only: adjudication needs a qa_lead login", error=True)
            return False
        if row is None:
            self._say("select an item first", error=True)
            return False
        if self.chosen_label is None:
            self._say(f"pick the label first: Space or 1–{len(self.label_set.defects)}", error=True)
            return False
        reason = self.chosen_reason
        if reason is None:
            keys = " ".join(k for k, _ in browse.REASON_CODES.values())
            self._say(f"pick a reason code: keys {keys}", error=True)
            return False
        try:
            browse.adjudicate(
                self.engine,
                item_id=row.item_id,
                operator=self.operator,
                label=self.chosen_label,
                reason_code=reason,
                note=self.note_edit.text(),
                labels=self.label_set,
                audit_test=self.config.audit_test,
            )
        except (ReviewError, DbError, SQLAlchemyError) as e:
            self._say(f"not saved: {e}", error=True)
            return False
        i = self.current_index()
        done = dataclasses.replace(
            row, adjudicated_label=self.chosen_label, final_label=self.chosen_label
        )
        self.rows[i] = done
        item = self.gallery.item(i)
        item.setText(self._caption(done))
        self._colour(item, done)
        self.saved_count += 1
        self._say(f"saved #{row.item_id}: {self.chosen_label} ({reason})")
        if i + 1 < len(self.rows):
            self.gallery.setCurrentRow(i + 1)
        else:
            self._on_current_changed(i)
            self._say(f"saved #{row.item_id}: {done.adjudicated_label} — last item of the list")
        self.gallery.setFocus()
        return True

    # ------------------------------------------------------------------ export and messages

    def _ask_export(self) -> None:
        default = f"review-{datetime.now():%Y%m%d-%H%M}.html"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export report", default, "HTML (*.html);;PDF (*.pdf);;JSON (*.json);;CSV (*.csv)"
        )
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> dict[str, Any] | None:
        """Write the report for the current filters (format from the suffix)."""
        try:
            args: dict[str, Any] = {
                "labels": self.label_set,
                "rules": self.config.rules,
                "image_root": self.config.image_root,
            }
            summary = browse.export_report(self.engine, self.filters, Path(path), **args)
        except (ReviewError, DbError, SQLAlchemyError, OSError) as e:
            self._say(f"export failed: {e}", error=True)
            return None
        self._say(f"exported {summary.get('format', '')} report to {summary['path']}")
        return summary

    def _say(self, text: str, *, error: bool = False) -> None:
        self.saved_label.setObjectName("error" if error else "saved")
        self.saved_label.setStyleSheet("")
        self.saved_label.style().unpolish(self.saved_label)
        self.saved_label.style().polish(self.saved_label)
        self.saved_label.setText(text)
        self.statusBar().showMessage(text, 10_000)


def run(engine: Engine, operator: Operator, config: ReviewConfig) -> int:
    """Open the window and run the event loop until it is closed; returns the exit code."""
    app = QApplication.instance() or QApplication(["station review"])
    window = ReviewWindow(engine, operator, config)
    window.resize(1880, 1020)
    window.show()
    return int(app.exec())
