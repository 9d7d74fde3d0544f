"""The station window: the captured item large, one key per decision, and nothing about the
model where the inspector must not see it (shadow, blind checks, audits).

A thin view: every state lives in the StationCore (its desk and status); `refresh()` redraws from
them. Labels, keys and buttons come from the settings' label set (Space = the defect-free label,
1-9 = the defect types in order, as in the review window). Widgets that show the model's opinion
exist only while the current item may show it, so a walk of the widget tree on a shadow or blind
item finds no trace of the model.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import (
    QCloseEvent,
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from db.models import DecidedBy, Level
from station.errors import LineStopped
from station.frames.types import CaptureState
from station.pipeline.assess import Assessed
from station.pipeline.core import StationCore
from station.pipeline.desk import UNDO_WINDOW_S, Waiting
from station.pipeline.predictor import ModelInfo
from station.pipeline.recorder import Ack, Problem
from station.pipeline.router import Decider, ModelCall
from station.pipeline.timeline import Timeline
from station.ui import theme
from station.ui.images import Picture, overlay, scale_to, to_qimage
from station.ui.panels import LOOK_BACK, HelpPanel, LookBackPanel, Looked, key_help

#: How long "undo has expired" stays in place of the saved tick.
UNDO_NOTE_S = 3.0


#: (the empty item view, the live view) while the camera gives no frames, by its state.
CAMERA_WORDS = {
    None: ("Camera starting…", "camera starting…"),
    CaptureState.LOST: ("No camera image: reconnecting (see the banner above)", "no camera image"),
    CaptureState.RECONNECTING: (
        "No camera image: reconnecting (see the banner above)",
        "no camera image",
    ),
    CaptureState.ENDED: ("The camera has ended: no more phones will come", "camera ended"),
}

#: Arrow keys pan a zoomed item: (dx, dy) in steps.
PAN_KEYS: dict[Any, tuple[int, int]] = {
    Qt.Key.Key_Left: (-1, 0),
    Qt.Key.Key_Right: (1, 0),
    Qt.Key.Key_Up: (0, -1),
    Qt.Key.Key_Down: (0, 1),
}


def key_text(key: int) -> str:
    """The label key a Qt key stands for: " " for Space, "1".."9" for the digits (keypad too)."""
    if key == Qt.Key.Key_Space:
        return " "
    if Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
        return str(key - Qt.Key.Key_0)
    return ""


class ItemView(QWidget):
    """The captured item, as large as possible. Zoom at the cursor with the wheel (or +/- at the
    centre), pan by dragging or with the arrow keys, 0 to fit. A new item starts fitted: the
    inspector sees the whole phone before any part of it."""

    MAX_ZOOM = 8.0

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("itemView")
        self.setMinimumSize(640, 360)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image: QImage | None = None
        self._pixels: np.ndarray | None = None  # what `_image` shows, as BGR
        # `_image` already scaled to this view's size off the GUI thread (images.Picture)
        self._fitted: QImage | None = None
        self._scaled: tuple[tuple[int, int, int], QPixmap] | None = None
        #: The view's size, for the pipeline thread to fit the next item's image to (a plain
        #: tuple: read from another thread, never a Qt call there).
        self.size_now: tuple[int, int] | None = None
        #: New images drawn from the pipeline's fitted copy (True) or scaled here (False).
        self.prefitted = {True: 0, False: 0}
        self.zoom = 1.0
        # The image point at the centre of the view, as fractions of its width and height.
        self.centre = QPointF(0.5, 0.5)
        self._drag: QPointF | None = None  # where the last drag event was
        self._aim: tuple[QPointF, QPointF] | None = None  # (cursor, image point) being zoomed at
        self.placeholder = "Waiting for the next phone…"
        self.badge = ""
        self.badge_colour = QColor(theme.PASS)
        self.scale = 1.0  # the window's type scale (theme.style), for the text drawn here
        # called once, after the next paint: when an item's picture really reached the screen
        self._on_painted: Callable[[], None] | None = None

    def _font(self, size: int, weight: QFont.Weight = QFont.Weight.Normal) -> QFont:
        return QFont(self.font().family(), max(8, round(size * self.scale)), weight)

    def set_image(
        self,
        bgr: np.ndarray | None,
        heat: np.ndarray | None = None,
        ready: Picture | None = None,
        *,
        fit: bool = True,
        on_painted: Callable[[], None] | None = None,
    ) -> None:
        """`ready`: the same image already converted (by the pipeline thread), perhaps fitted to
        this view too. `fit`: a new item (not the same one redrawn with the heat-map) starts
        fitted. `on_painted`: called once the image has been painted."""
        self._on_painted = on_painted
        self._fitted = None
        self._pixels = overlay(bgr, heat) if bgr is not None and heat is not None else bgr
        if self._pixels is None:
            self._image = None
        elif heat is None and ready is not None:
            self._image, self._fitted = ready.full, ready.fitted
        else:
            self._image = to_qimage(self._pixels)
        if fit:
            self.zoom, self.centre, self._aim = 1.0, QPointF(0.5, 0.5), None
        self.update()

    # ------------------------------------------------------------------ geometry

    def _source(self) -> tuple[QRectF, float]:
        """The part of the image in view, and the scale from image to widget pixels."""
        assert self._image is not None
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih) * self.zoom
        sw, sh = min(iw, self.width() / scale), min(ih, self.height() / scale)
        # The centre is clamped so the view never runs past an edge of the image.
        x = min(max(self.centre.x() * iw - sw / 2, 0.0), iw - sw)
        y = min(max(self.centre.y() * ih - sh / 2, 0.0), ih - sh)
        return QRectF(x, y, sw, sh), scale

    def _target(self, source: QRectF, scale: float) -> QRectF:
        tw, th = source.width() * scale, source.height() * scale
        return QRectF((self.width() - tw) / 2, (self.height() - th) / 2, tw, th)

    def image_point(self, at: QPointF) -> QPointF | None:
        """The image pixel under a widget position, or None (no image, or outside it)."""
        if self._image is None:
            return None
        source, scale = self._source()
        target = self._target(source, scale)
        if not target.contains(at):
            return None
        return QPointF(
            source.x() + (at.x() - target.x()) / scale, source.y() + (at.y() - target.y()) / scale
        )

    def widget_point(self, image_pt: QPointF) -> QPointF:
        """Where an image pixel is drawn in the widget now (it may lie outside the view)."""
        source, scale = self._source()
        target = self._target(source, scale)
        return QPointF(
            target.x() + (image_pt.x() - source.x()) * scale,
            target.y() + (image_pt.y() - source.y()) * scale,
        )

    def _look_at(self, source_x: float, source_y: float) -> None:
        """Set the centre so the view's source rectangle starts at (source_x, source_y)."""
        assert self._image is not None
        source, _ = self._source()
        iw, ih = self._image.width(), self._image.height()
        x = min(max(source_x, 0.0), iw - source.width())
        y = min(max(source_y, 0.0), ih - source.height())
        self.centre = QPointF((x + source.width() / 2) / iw, (y + source.height() / 2) / ih)

    # ------------------------------------------------------------------ zoom and pan

    def reset_zoom(self) -> None:
        self.zoom, self.centre, self._aim = 1.0, QPointF(0.5, 0.5), None
        self.update()

    def zoom_by(self, factor: float, at: QPointF | None = None) -> None:
        """Zoom keeping the image point under `at` (the cursor) where it is; the centre of the
        view when None."""
        if self._image is None:
            return
        anchor = at if at is not None else QPointF(self.width() / 2, self.height() / 2)
        # Notch after notch at the same place, aim at the point first pointed at: where the view
        # had to stop at an edge, re-reading the point under the cursor would drift off it.
        kept = self._aim
        point = kept[1] if kept is not None and kept[0] == anchor else self.image_point(anchor)
        self._aim = (anchor, point) if point is not None else None
        self.zoom = float(min(self.MAX_ZOOM, max(1.0, self.zoom * factor)))
        if point is not None:
            source, scale = self._source()
            target = self._target(source, scale)
            self._look_at(
                point.x() - (anchor.x() - target.x()) / scale,
                point.y() - (anchor.y() - target.y()) / scale,
            )
        self.update()

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the view by (dx, dy) widget pixels: positive shows more to the right / below."""
        if self._image is None or self.zoom == 1.0:
            return
        source, scale = self._source()
        self._look_at(source.x() + dx / scale, source.y() + dy / scale)
        self._aim = None
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt API)
        self.zoom_by(1.25 if event.angleDelta().y() > 0 else 0.8, event.position())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.zoom > 1.0:
            self._drag = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is not None:
            d = event.position() - self._drag
            self._drag = event.position()
            self.pan_by(-d.x(), -d.y())  # the image follows the hand

    def mouseReleaseEvent(self, _event: QMouseEvent) -> None:  # noqa: N802
        self._drag = None
        self.unsetCursor()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self.size_now = (event.size().width(), event.size().height())

    # ------------------------------------------------------------------ drawing

    def paintEvent(self, _event: Any) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#000000"))
        if self._image is None:
            p.setPen(QColor(theme.MUTED))
            p.setFont(self._font(30))
            p.drawText(
                self.rect(),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
            p.end()
            return
        source, scale = self._source()
        target = self._target(source, scale)
        if self.zoom == 1.0:
            w, h = max(1, round(target.width())), max(1, round(target.height()))
            key = (self._image.cacheKey(), w, h)
            if self._scaled is None or self._scaled[0] != key:
                # Scale once per image and size, not on every paint; a new item's image usually
                # comes scaled already, while the model ran (station/ui/workers.py).
                ready = self._fitted
                usable = ready is not None and (ready.width(), ready.height()) == (w, h)
                if ready is None or not usable:
                    assert self._pixels is not None
                    ready = scale_to(self._pixels, (w, h))
                self.prefitted[usable] += 1
                self._scaled = (key, QPixmap.fromImage(ready))
            p.drawPixmap(QPointF((self.width() - w) / 2, (self.height() - h) / 2), self._scaled[1])
        else:
            # Zoomed: draw only the part of the image in view.
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom <= 2)
            p.drawImage(target, self._image, source)
            p.setPen(QColor(theme.TEXT))
            p.setFont(self._font(18))
            p.drawText(
                QPointF(16, self.height() - 16),
                f"zoom {self.zoom:.1f}x   drag or arrows to move   0 = fit",
            )
        if self.badge:
            font = self._font(40, QFont.Weight.Black)
            p.setFont(font)
            m = QFontMetrics(font)
            box = QRectF(24, 24, m.horizontalAdvance(self.badge) + 64, m.height() * 1.5)
            p.fillRect(box, self.badge_colour)
            p.setPen(QColor("#ffffff"))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, self.badge)
        p.end()
        done, self._on_painted = self._on_painted, None
        if done is not None:
            done()


class SuggestionPanel(QFrame):
    """Assist only: the model's label, calibrated confidence and the heat-map key. Created per item
    that may show it and removed from the tree otherwise."""

    def __init__(
        self, label: str, confidence: float, is_defect: bool, has_heat: bool, heat_on: bool
    ) -> None:
        super().__init__()
        self.setObjectName("panel")
        lay = QVBoxLayout(self)
        # A calibrated probability is never certainty: 0.9996 reads ">99%", not "100%".
        shown = ">99%" if confidence > 0.99 else f"{confidence:.0%}"
        head = QLabel(f"AI: {label.upper()}   {shown}")
        head.setObjectName("aiLabel")
        head.setStyleSheet(f"color: {theme.FAIL if is_defect else theme.PASS};")
        bar = QProgressBar()
        bar.setObjectName("confidence")
        bar.setRange(0, 100)
        bar.setValue(round(confidence * 100))
        bar.setFormat(f"calibrated confidence {shown}")  # same text as the head, never "100%"
        caption = QLabel(
            ("heat-map ON  [H]  red = defect likely" if heat_on else "heat-map off  [H]")
            if has_heat
            else "heat-map coming…"
        )
        caption.setObjectName("caption")  # one line: the panel's height is the slot's (below)
        lay.addWidget(head)
        lay.addWidget(bar)
        lay.addWidget(caption)


class StationWindow(QMainWindow):
    def __init__(
        self,
        core: StationCore,
        *,
        request_capture: Any = None,
        open_dashboard: Any = None,
        switch_operator: Any = None,
    ) -> None:
        super().__init__()
        self.core = core
        # F9: the engineer's dashboard (station/ui/dashboard.py); None for other roles.
        self.open_dashboard = open_dashboard
        # Ctrl+L: log out / hand over (StationApp.switch_operator); None where nobody can log in.
        self.switch_operator = switch_operator
        self.popup: Any = None  # the help or look-back pop-up while one is open
        self._thumbs: OrderedDict[int, QImage] = OrderedDict()  # seq -> small decided phone
        self.desk = core.desk
        self.labels = core.labels
        self.request_capture = request_capture
        self.setWindowTitle(f"Inspection Station {core.station_name}")
        self.scale = 0.0  # the type scale in use (theme.style); set by fit_to_screen below
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.heat_on = False
        self._undo_note: tuple[str, float] | None = None  # why Backspace did nothing, until when
        self._passing: tuple[Assessed, str, str] | None = None  # auto-decided item passing by
        self._shown_seq: int | None = None
        self._view_seq: int | None = None  # the item whose image is in view (negative: auto)
        self._camera_shown: CaptureState | None | bool = False  # False: nothing drawn yet
        # True while the model is loading (StationApp): at assist and above the inspector is
        # told, since every item comes to them without a suggestion until it is ready.
        self.model_loading = False
        self._qimages: dict[int, Picture] = {}  # seq -> converted image, for items in view
        self._heats: dict[int, np.ndarray] = {}  # seq -> heat-map, for items with a suggestion

        root = QWidget()
        outer = QVBoxLayout(root)
        outer.setContentsMargins(10, 10, 10, 10)
        outer.setSpacing(8)
        self.status = QLabel()
        self.status.setObjectName("status")
        # A long status (model, canary, camera) is clipped, never widens the window past the
        # screen: the decision buttons on the right must stay on it.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setMinimumWidth(0)
        outer.addWidget(self.status)
        self.banner_box = QVBoxLayout()
        outer.addLayout(self.banner_box)
        self._banner_labels: list[QLabel] = []
        self._banners_fitted = 0

        main = QHBoxLayout()
        outer.addLayout(main, 1)
        left = QVBoxLayout()
        main.addLayout(left, 3)
        self.view = ItemView()
        left.addWidget(self.view, 1)
        bottom = QHBoxLayout()
        left.addLayout(bottom)
        self.live = QLabel("camera starting…")
        self.live.setObjectName("live")
        self.live.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.live.setStyleSheet("background: #000; color: #9aa4b2; font-size: 18px;")
        live_box = QVBoxLayout()
        live_caption = QLabel("LIVE CAMERA   (C = capture now)")
        live_caption.setObjectName("liveCaption")
        live_box.addWidget(live_caption)
        live_box.addWidget(self.live)
        bottom.addLayout(live_box)
        self.recent = QLabel()
        self.recent.setObjectName("recent")
        self.recent.setWordWrap(True)
        self.recent.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        bottom.addWidget(self.recent, 1)

        side = QVBoxLayout()
        side.setSpacing(10)
        main.addLayout(side, 1)
        self.kind = QLabel()
        self.kind.setObjectName("kind")
        self.kind.setAlignment(Qt.AlignmentFlag.AlignCenter)
        side.addWidget(self.kind)
        # The suggestion's place, the same height whether it shows or not (shadow, blind checks,
        # audits): items look alike apart from the missing suggestion, and nothing jumps.
        self.suggestion_slot = QWidget()
        self.suggestion_slot.setObjectName("slot")
        self.suggestion_box = QVBoxLayout(self.suggestion_slot)
        self.suggestion_box.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.suggestion_slot)
        self.suggestion: SuggestionPanel | None = None
        ok = self.labels.ok
        self.pass_button = QPushButton(f"PASS  ({self.labels.key(ok)})")
        self.pass_button.setObjectName("pass")
        self.pass_button.clicked.connect(lambda: self.decide(ok))
        side.addWidget(self.pass_button)
        fail_title = QLabel("FAIL — defect type:")
        fail_title.setObjectName("caption")
        side.addWidget(fail_title)
        grid = QGridLayout()
        self.defect_buttons: dict[str, QPushButton] = {}
        columns = 2 if len(self.labels.defects) <= 6 else 3  # at most 3 rows
        for i, label in enumerate(self.labels.defects):
            b = QPushButton(f"{label.upper()}  ({self.labels.key(label)})")
            b.setObjectName("defect")
            b.clicked.connect(lambda _=False, lab=label: self.decide(lab))
            grid.addWidget(b, i // columns, i % columns)
            self.defect_buttons[label] = b
        side.addLayout(grid)
        self.undo_button = QPushButton("UNDO  (Backspace)")
        self.undo_button.setObjectName("undo")
        self.undo_button.clicked.connect(self.undo)
        side.addWidget(self.undo_button)
        self.saved = QLabel()
        self.saved.setObjectName("saved")
        self.saved.setAlignment(Qt.AlignmentFlag.AlignCenter)
        side.addWidget(self.saved)
        self.queue_label = QLabel()
        self.queue_label.setObjectName("queue")
        self.queue_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        side.addWidget(self.queue_label)
        side.addStretch(1)
        for b in (self.pass_button, self.undo_button, *self.defect_buttons.values()):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys go to the window, never to a button

        self.footer = QLabel()
        self.footer.setObjectName("status")
        outer.addWidget(self.footer)
        self.setCentralWidget(root)
        # The window may be made smaller than its contents at full size: resizeEvent then picks
        # a smaller scale (fit_to) instead of Qt refusing the size and running off the screen.
        frame = self.layout()
        assert frame is not None
        frame.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
        self._root, self._outer = root, outer
        screen = self.screen().availableGeometry()
        self.resize(min(1920, screen.width()), min(1080, screen.height()))
        self.fit_to(self.size())

        core.on_change(self.refresh)
        self.ticker = QTimer(self)  # undo countdown, items/hour
        self.ticker.setInterval(250)
        self.ticker.timeout.connect(self.refresh)
        self.ticker.start()
        self.refresh()

    # ------------------------------------------------------------------ size

    def apply_scale(self, scale: float) -> None:
        """Every size in the window times `scale` (1 = made for 1920x1080)."""
        if scale == self.scale:
            return
        self.scale = scale
        self.setStyleSheet(theme.style(scale))
        self.view.scale = scale
        self.view.setMinimumSize(round(480 * scale), round(270 * scale))
        self.live.setFixedSize(round(360 * scale), round(203 * scale))
        # The slot holds a suggestion panel exactly: measured on one, outside the window.
        probe = SuggestionPanel("probe", 0.5, True, True, True)
        probe.setStyleSheet(theme.style(scale))
        probe.ensurePolished()
        self.suggestion_slot.setFixedHeight(probe.sizeHint().height())
        probe.deleteLater()

    def fit_to(self, size: QSize) -> None:
        """The largest scale (in steps of 0.05, down to 0.5) at which everything fits `size`:
        the window works from 1280x720 up, with its buttons on the screen."""
        for step in range(20, 9, -1):
            self.apply_scale(step / 20)
            # The new sizes reach the layout's hints only once its events are handled.
            QApplication.sendPostedEvents()
            self._outer.invalidate()
            self._outer.activate()
            need = self._root.minimumSizeHint()
            if need.width() <= size.width() and need.height() <= size.height():
                return

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        # Only on a change of screen or window size, not of content: re-styling is not free.
        if event.oldSize() != event.size():
            self.fit_to(event.size())

    # ------------------------------------------------------------------ slots from workers

    def on_item(self, assessed: Assessed, ready: Picture | None = None) -> None:
        assessed.captured.timeline.mark("received")
        if ready is not None:
            self._qimages[assessed.seq] = ready
        route = self.core.accept(assessed)
        if route.decider is Decider.model and not route.needs_human:
            auto_pass = route.model_call is ModelCall.auto_pass
            badge = "AUTO PASS" if auto_pass else f"AUTO FAIL · {(route.model_label or '').upper()}"
            self._passing = (assessed, badge, theme.PASS if auto_pass else theme.FAIL)
            self._keep_thumb(assessed.seq, assessed.captured.image)
            self.refresh()

    def on_capture_paused(self, paused: bool, waiting: int) -> None:
        """The pipeline holds capture while too many phones wait (station/ui/workers.py)."""
        self.core.status.queue_banner(
            f"CAPTURE PAUSED — {waiting} phones wait for a decision: stop the line or get help; "
            "capture resumes as they are decided"
            if paused
            else None
        )

    def on_heat(self, seq: int, heat: np.ndarray) -> None:
        """The heat-map of an item, computed after its suggestion was shown."""
        self._heats[seq] = heat
        w = self.desk.current
        if w is not None and w.seq == seq:
            self._shown_seq = None  # redraw the panel (and the overlay if H is on)
            self.refresh()

    def heat_for(self, w: Waiting) -> np.ndarray | None:
        """The heat-map as shown: the model scales its map to a peak of 1 on every image, so it
        is weighted by the calibrated P(defect), else a sure-ok phone would glow somewhere."""
        sug = w.suggestion
        heat = self._heats.get(w.seq)
        if sug is None or heat is None:
            return None
        return heat * float(np.clip(sug.p_defect, 0.0, 1.0))

    def on_live(self, image: QImage) -> None:
        self.live.setPixmap(
            QPixmap.fromImage(image).scaled(self.live.size(), Qt.AspectRatioMode.KeepAspectRatio)
        )

    def on_camera(self, state: CaptureState, detail: str) -> None:
        self.core.status.camera_changed(CaptureState(state), detail)

    def on_ack(self, ack: Ack) -> None:
        self.core.acknowledge(ack)

    def on_db_problem(self, problem: Problem | None) -> None:
        self.core.database_problem(problem)

    def on_problem(self, message: str) -> None:
        self.core.status.notice(message)

    def on_model_ready(self, _info: ModelInfo) -> None:
        self.model_loading = False
        self.core.status.model_banner(None)

    def on_model_failed(self, reason: str) -> None:
        self.model_loading = False
        self.core.fallback.unusable(f"failed to load: {reason}")

    # ------------------------------------------------------------------ actions

    def decide(self, label: str) -> bool:
        w = self.desk.current
        if w is None:
            return False
        try:
            self.desk.decide(label)
        except LineStopped:
            return False  # the banner says why; the item stays in front of the inspector
        self._keep_thumb(w.seq, w.assessed.captured.image)
        return True  # the heat-map stays as the inspector set it (H), item after item

    def _keep_thumb(self, seq: int, bgr: np.ndarray) -> None:
        """A small copy of a decided phone, for the look back (P)."""
        ready = self._qimages.get(seq)
        image = ready.full if ready is not None else to_qimage(bgr)
        self._thumbs[seq] = image.scaled(
            320, 180, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
        )
        self._thumbs.move_to_end(seq)
        while len(self._thumbs) > LOOK_BACK + 4:  # an undone and re-decided phone counts once
            self._thumbs.popitem(last=False)

    def look_back(self) -> LookBackPanel:
        """P: the last phones decided, newest first, with their labels."""
        items = [
            Looked(
                o.seq,
                o.label,
                "auto" if o.decided_by is DecidedBy.model else "you",
                self.labels.is_defect(o.label),
                self._thumbs.get(o.seq),
            )
            for o in list(self.desk.recent)[:LOOK_BACK]
        ]
        return self._popup(LookBackPanel(items, self))

    def show_help(self) -> HelpPanel:
        """F1 or ?: every key, for this station's labels and level."""
        rows = key_help(
            [(self.labels.key(d), d) for d in self.labels.defects],
            auto=self.core.level in (Level.partial, Level.full),
            engineer=self.open_dashboard is not None,
        )
        return self._popup(HelpPanel(rows, self))

    def _popup(self, panel: Any) -> Any:
        # open(), not exec(): the window keeps drawing (banners, the queue) behind it.
        self.popup = panel
        panel.finished.connect(lambda _r: setattr(self, "popup", None))
        panel.open()
        return panel

    def undo(self) -> bool:
        """Backspace: the last decision back in front of the inspector, or why not."""
        done = self.desk.undo()  # the desk's listeners redraw on an undo
        if not done:
            self._undo_note = (
                f"undo has expired (a decision can be undone for {UNDO_WINDOW_S:g} s)"
                if self.desk.recent
                else "nothing to undo yet",
                time.monotonic() + UNDO_NOTE_S,
            )
            self.refresh()
        return done

    def challenge(self) -> bool:
        """X: the newest automatic decision goes to a QA lead (partial / full)."""
        return self.desk.challenge() is not None

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        key = event.key()
        label = self.labels.from_key(key_text(key))
        if label is not None:
            self.decide(label)
        elif key == Qt.Key.Key_Backspace:
            self.undo()
        elif key == Qt.Key.Key_H:
            self.heat_on = not self.heat_on
            self._shown_seq = None
            self.refresh()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.view.zoom_by(1.25)
        elif key == Qt.Key.Key_Minus:
            self.view.zoom_by(0.8)
        elif key == Qt.Key.Key_0:
            self.view.reset_zoom()
        elif key in PAN_KEYS:
            dx, dy = PAN_KEYS[key]
            step = 0.2 * min(self.view.width(), self.view.height())  # a fifth of the view
            self.view.pan_by(dx * step, dy * step)
        elif key == Qt.Key.Key_C and self.request_capture is not None:
            self.request_capture()
        elif key == Qt.Key.Key_X:
            self.challenge()
        elif key == Qt.Key.Key_F9 and self.open_dashboard is not None:
            self.open_dashboard()
        elif key in (Qt.Key.Key_F1, Qt.Key.Key_Question):
            self.show_help()
        elif key == Qt.Key.Key_P:
            self.look_back()
        elif (
            key == Qt.Key.Key_L
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
            and self.switch_operator is not None
        ):
            self.switch_operator()
        else:
            super().keyPressEvent(event)

    # ------------------------------------------------------------------ drawing

    def _set_suggestion(self, w: Waiting | None) -> None:
        sug = w.suggestion if w is not None else None
        if self.suggestion is not None:
            # Out of the tree at once (deleteLater alone would leave it there until the next loop).
            self.suggestion_box.removeWidget(self.suggestion)
            self.suggestion.setParent(None)
            self.suggestion.deleteLater()
            self.suggestion = None
        if sug is not None:
            assert w is not None
            self.suggestion = SuggestionPanel(
                sug.label,
                sug.confidence,
                self.labels.is_defect(sug.label),
                self.heat_for(w) is not None,
                self.heat_on,
            )
            self.suggestion_box.addWidget(self.suggestion)

    def _set_attention(self, on: bool) -> None:
        if self.kind.property("attention") != on:
            self.kind.setProperty("attention", on)
            self.kind.style().unpolish(self.kind)
            self.kind.style().polish(self.kind)

    def _status_text(self) -> str:
        c = self.core
        parts = [
            f"STATION {c.station_name}",
            f"inspector: {c.operator_name}",
            f"level: {c.level.value.upper().replace('_', ' ')}",
        ]
        # The model's name appears only where its opinion may: beside a shown suggestion, or
        # over auto-decided items; never on shadow, blind, audit or golden items.
        w = self.desk.queue[0] if self.desk.queue else None
        may_show = (w is not None and w.suggestion is not None) or (
            w is None and c.level in (Level.partial, Level.full)
        )
        in_use = c.model.get()
        if may_show and in_use is not None:
            model = f"model {in_use.info.name}:{in_use.info.version}"
            roles = c.lineup.roles()
            if roles.challenger is not None:
                model += (
                    f" · canary {roles.challenger} {roles.weight:g}%"
                    if roles.weight > 0
                    else f" · challenger {roles.challenger}"
                )
            parts.append(model)
        elif self.model_loading and c.level in (Level.assist, Level.partial, Level.full):
            parts.append("model loading… every phone comes to you until it is ready")
        camera = c.status.camera
        cam = (
            "STARTING"
            if camera is None
            else "OK"
            if camera is CaptureState.CONNECTED
            else camera.value.upper()
        )
        parts.append(f"cam: {cam}")
        return "   |   ".join(parts)

    def _show_camera(self) -> None:
        """The camera's state, said the same way everywhere (status line, banner, live view,
        the empty item view), and only redrawn when it changes."""
        camera = self.core.status.camera
        if camera == self._camera_shown:
            return
        self._camera_shown = camera
        if camera is CaptureState.CONNECTED:
            self.view.placeholder = "Waiting for the next phone…"
            return  # the live view fills with the next frame
        self.view.placeholder, live = CAMERA_WORDS.get(camera, CAMERA_WORDS[None])
        self.live.clear()  # a frozen last frame would look live
        self.live.setText(live)
        self.view.update()

    def refresh(self) -> None:
        c = self.core
        desk = self.desk
        self._show_camera()
        self.status.setText(self._status_text())
        # banners
        texts = list(c.status.banners.items())
        while len(self._banner_labels) < len(texts):
            lab = QLabel()
            lab.setObjectName("banner")
            lab.setWordWrap(True)
            self.banner_box.addWidget(lab)
            self._banner_labels.append(lab)
        for i, lab in enumerate(self._banner_labels):
            if i < len(texts):
                banner_kind, text = texts[i]
                lab.setText(text)
                severity = "error" if banner_kind.value != "camera" else "warn"
                if lab.property("severity") != severity:
                    lab.setProperty("severity", severity)
                    lab.style().unpolish(lab)
                    lab.style().polish(lab)
                lab.show()
            else:
                lab.setText("")
                lab.hide()
        if len(texts) != self._banners_fitted:  # a banner came or went: does all still fit?
            self._banners_fitted = len(texts)
            self.fit_to(self.size())

        w = desk.current
        has_item = w is not None
        if len(self._qimages) > 8:
            keep = {x.seq for x in desk.queue}
            if self._passing is not None:
                keep.add(self._passing[0].seq)
            self._qimages = {k: v for k, v in self._qimages.items() if k in keep}
            self._heats = {k: v for k, v in self._heats.items() if k in keep}
        for b in (self.pass_button, *self.defect_buttons.values()):
            b.setEnabled(has_item and desk.hold is None)
        if w is not None:
            self._passing = None
            if self._shown_seq != w.seq or self.view.badge:
                self._shown_seq = w.seq
                self._set_suggestion(w)
                heat = self.heat_for(w) if self.heat_on else None
                self.view.badge = ""
                # The same item redrawn (heat-map on or off, its map arriving) keeps the zoom.
                fit, self._view_seq = self._view_seq != w.seq, w.seq
                self.view.set_image(
                    w.assessed.captured.image,
                    heat,
                    self._qimages.get(w.seq),
                    fit=fit,
                    on_painted=_marker(w.assessed.captured.timeline, "shown"),
                )
            # Review, audit and golden items look the same: telling them apart would tell the
            # inspector what the model thought (audit = it was sure) or that they are being tested.
            self.kind.setText(f"ITEM #{w.seq} — your call")
            # In partial / full most items pass by; one that waits needs to catch the eye.
            self._set_attention(c.level in (Level.partial, Level.full))
        else:
            if self.suggestion is not None:
                self._set_suggestion(None)
            if self._passing is not None:
                passing, badge, colour = self._passing
                if self._shown_seq != -passing.seq:
                    self._shown_seq = -passing.seq
                    self.view.badge = badge
                    self.view.badge_colour = QColor(colour)
                    self._view_seq = -passing.seq
                    self.view.set_image(
                        passing.captured.image,
                        None,
                        self._qimages.get(passing.seq),
                        on_painted=_marker(passing.captured.timeline, "shown"),
                    )
                self.kind.setText("auto-decided — nothing to do")
                self._set_attention(False)
            else:
                if self._shown_seq is not None:
                    self._shown_seq = None
                    self.view.badge = ""
                    self._view_seq = None
                    self.view.set_image(None)
                self.kind.setText("waiting for the next phone")
                self._set_attention(False)
        left = desk.undo_seconds_left()
        self.undo_button.setEnabled(left > 0)
        self.undo_button.setText(
            f"UNDO  (Backspace)  {left:.0f} s" if left > 0 else "UNDO  (Backspace)"
        )
        name = self.saved.objectName()
        note = self._undo_note
        if note is not None and time.monotonic() >= note[1]:
            note = self._undo_note = None
        if desk.undoing:
            name = "saving"
            self.saved.setText("↶ undone — decide this phone again")
        elif note is not None:
            name = "saving"
            self.saved.setText(note[0])
        elif desk.pending_writes:
            name = "saving"
            self.saved.setText(f"saving… ({desk.pending_writes})")
        elif desk.last_saved is not None:
            name = "saved"
            self.saved.setText(f"✔ saved #{desk.last_saved}")
        else:
            self.saved.setText("")
        if name != self.saved.objectName():  # re-style only on a change: polish is not free
            self.saved.setObjectName(name)
            self.saved.style().unpolish(self.saved)
            self.saved.style().polish(self.saved)
        strip = []
        auto = False
        for o in list(desk.recent)[:12]:
            s = self.labels.short(o.label)
            if o.decided_by is DecidedBy.model:
                s, auto = s + ("?" if o.challenged else "*"), True
            colour = theme.FAIL if self.labels.is_defect(o.label) else theme.PASS
            strip.append(f'<span style="color:{colour}">{s}</span>')
        self.recent.setText(
            "last items (newest first):<br>"
            + (" ".join(strip) if strip else "—")
            + (
                "<br><span style='font-size:18px'>* = auto-decided · X challenges the newest "
                "(? = sent to QA)</span>"
                if auto
                else ""
            )
        )
        self.queue_label.setText(f"waiting: {len(desk.queue)}")
        tally = desk.tally
        on_shift = max(0, int(desk.clock() - tally.started)) // 60
        self.footer.setText(
            f"you: {tally.decided} decided ({tally.passed} pass · {tally.failed} fail) · "
            f"{on_shift // 60} h {on_shift % 60:02d} min on shift   |   "
            f"items/h {c.status.items_per_hour:.0f}   |   "
            "keys: Space pass · "
            f"1-{len(self.labels.defects)} defect · Backspace undo · P last phones · F1 help"
        )

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.ticker.stop()
        for listeners in (self.desk.listeners, self.core.status.listeners):
            if self.refresh in listeners:
                listeners.remove(self.refresh)
        super().closeEvent(event)


def _marker(timeline: Timeline, name: str) -> Callable[[], None]:
    return lambda: timeline.mark(name)
