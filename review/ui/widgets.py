"""The review window's parts that know nothing of the database: the heat-coloured matrix, the
zoomable image view, and image loading (Qt reads the files; no OpenCV needed here)."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QImage,
    QImageReader,
    QPainter,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
)

AGREE_RGB = (31, 157, 85)  # the diagonal: human and model agree
DISAGREE_RGB = (214, 69, 65)  # off the diagonal
EMPTY_RGB = (38, 43, 51)


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> QColor:
    return QColor(*(round(x + (y - x) * t) for x, y in zip(a, b, strict=True)))


def heat_colour(count: int, max_count: int, *, diagonal: bool) -> QColor:
    """Log-scaled heat: a handful of disagreements must stand out beside thousands of agreements."""
    if count <= 0 or max_count <= 0:
        return QColor(*EMPTY_RGB)
    t = 0.25 + 0.75 * math.log1p(count) / math.log1p(max_count)
    return _mix(EMPTY_RGB, AGREE_RGB if diagonal else DISAGREE_RGB, min(1.0, t))


class MatrixTable(QTableWidget):
    """Human (rows) x model (columns) counts; a click on a cell or a header asks for its items."""

    cell_chosen = Signal(object, object)  # human label | None, model label | None

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []
        self.counts: list[list[int]] = []
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setSectionsClickable(True)
        self.verticalHeader().setSectionsClickable(True)
        self.cellClicked.connect(self._on_cell)
        self.horizontalHeader().sectionClicked.connect(
            lambda c: self.cell_chosen.emit(None, self.labels[c])
        )
        self.verticalHeader().sectionClicked.connect(
            lambda r: self.cell_chosen.emit(self.labels[r], None)
        )

    def _on_cell(self, row: int, col: int) -> None:
        self.cell_chosen.emit(self.labels[row], self.labels[col])

    def set_counts(self, labels: list[str], counts: list[list[int]]) -> None:
        self.labels, self.counts = list(labels), [list(r) for r in counts]
        n = len(labels)
        self.clear()
        self.setRowCount(n)
        self.setColumnCount(n)
        self.setHorizontalHeaderLabels([f"{lab}" for lab in labels])
        self.setVerticalHeaderLabels([f"{lab}" for lab in labels])
        peak = max((c for row in counts for c in row), default=0)
        bold = QFont()
        bold.setBold(True)
        for i, row in enumerate(counts):
            row_total = sum(row)
            for j, c in enumerate(row):
                cell = QTableWidgetItem(str(c) if c else "·")
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                cell.setBackground(QBrush(heat_colour(c, peak, diagonal=i == j)))
                cell.setForeground(QBrush(QColor("#ffffff" if c else "#6b7380")))
                if c:
                    cell.setFont(bold)
                share = f"{100 * c / row_total:.1f}% of human {labels[i]!r}" if row_total else ""
                cell.setToolTip(
                    f"human {labels[i]} / model {labels[j]}: {c} items {share}\nclick to list them"
                )
                self.setItem(i, j, cell)

    def count(self, human: str, model: str) -> int:
        return self.counts[self.labels.index(human)][self.labels.index(model)]

    def index_of(self, human: str, model: str) -> tuple[int, int]:
        return self.labels.index(human), self.labels.index(model)


# --------------------------------------------------------------------------- images


def placeholder(size: QSize, text: str) -> QPixmap:
    pm = QPixmap(size)
    pm.fill(QColor("#2a2f36"))
    p = QPainter(pm)
    p.setPen(QColor("#9aa4b2"))
    p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
    p.end()
    return pm


def load_image(path: Path | None, max_size: QSize | None = None) -> QImage | None:
    """Read an image file, scaled (by the decoder where it can) to fit `max_size`; None on failure."""
    if path is None:
        return None
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    if max_size is not None:
        full = reader.size()
        if full.isValid() and (
            full.width() > max_size.width() or full.height() > max_size.height()
        ):
            reader.setScaledSize(full.scaled(max_size, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return None if image.isNull() else image


class ImageView(QGraphicsView):
    """One image, fitted to the view; the wheel or +/- zooms about the cursor, 0 fits again."""

    MIN_ZOOM, MAX_ZOOM = 0.05, 40.0

    def __init__(self) -> None:
        super().__init__()
        self._scene = QGraphicsScene(self)
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.addItem(self._item)
        self.setScene(self._scene)
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setBackgroundBrush(QColor("#0b0d10"))
        self.fitted = True

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_pixmap(self, pixmap: QPixmap, *, fit: bool = True) -> None:
        """`fit`: a new item starts fitted; False keeps the zoom and the view's place (the same
        item redrawn, with or without its heat-map), unless the size changed."""
        same_size = pixmap.size() == self._item.pixmap().size()
        self._item.setPixmap(pixmap)
        if fit or not same_size:
            self._scene.setSceneRect(QRectF(pixmap.rect()))
            self.fit()

    def pixmap(self) -> QPixmap:
        """What is shown (the item's image, with its heat-map when that is on)."""
        return self._item.pixmap()

    @property
    def image_size(self) -> QSize:
        return self._item.pixmap().size()

    def has_image(self) -> bool:
        return not self._item.pixmap().isNull()

    def fit(self) -> None:
        self.fitted = True
        if self.has_image():
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom_by(self, factor: float) -> None:
        target = min(self.MAX_ZOOM, max(self.MIN_ZOOM, self.zoom * factor))
        self.fitted = False
        self.scale(target / self.zoom, target / self.zoom)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt's name)
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(1.25**steps)
        event.accept()

    def resizeEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().resizeEvent(event)
        if self.fitted:
            self.fit()
