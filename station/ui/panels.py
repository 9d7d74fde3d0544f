"""The station window's two pop-ups: the key help (F1 or ?) and a look back at the last phones
decided (P). Both are read-only and close with the key that opened them or Esc; while one is open
no key decides anything, so a stray Space cannot pass a phone nobody looked at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QKeyEvent, QPixmap
from PySide6.QtWidgets import QDialog, QGridLayout, QLabel, QVBoxLayout, QWidget

from station.ui import theme

#: How many decided phones the look back shows.
LOOK_BACK = 8


def key_help(
    defect_keys: Sequence[tuple[str, str]], *, auto: bool, engineer: bool
) -> list[tuple[str, str]]:
    """(key, what it does) for every key of the station window, in the order an inspector
    needs them. `defect_keys`: (key, label) of each defect type."""
    rows = [("Space", "PASS: no defect")]
    rows += [(k, f"FAIL: {label}") for k, label in defect_keys]
    rows += [
        ("Backspace", "undo the last decision (for a few seconds): the phone comes back"),
        ("wheel / + -", "zoom in and out (the wheel zooms where the pointer is)"),
        ("arrows / drag", "move around a zoomed phone"),
        ("0", "fit the whole phone again"),
        ("H", "heat-map on or off, where a suggestion shows"),
        ("C", "capture now"),
        ("P", "look back at the last phones decided"),
    ]
    if auto:
        rows.append(("X", "challenge the newest automatic decision: a QA lead looks at it"))
    rows.append(("Ctrl+L", "log out, or hand the station to another operator"))
    if engineer:
        rows.append(("F9", "the engineer's dashboard"))
    rows.append(("F1 or ?", "this help"))
    return rows


class _Popup(QDialog):
    def __init__(self, title: str, close_keys: Sequence[int], parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setModal(True)
        self._close_keys = (*close_keys, Qt.Key.Key_Escape)
        self.setStyleSheet(parent.styleSheet() if parent is not None else theme.STYLE)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() in self._close_keys:
            self.accept()
        # every other key is swallowed: nothing is decided from behind a pop-up


class HelpPanel(_Popup):
    def __init__(self, rows: Sequence[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__("Keys", (Qt.Key.Key_F1, Qt.Key.Key_Question), parent)
        lay = QVBoxLayout(self)
        title = QLabel("KEYS   (F1, ? or Esc closes)")
        title.setObjectName("status")
        lay.addWidget(title)
        grid = QGridLayout()
        for i, (key, what) in enumerate(rows):
            k = QLabel(key)
            k.setObjectName("kind")
            grid.addWidget(k, i, 0)
            grid.addWidget(QLabel(what), i, 1)
        lay.addLayout(grid)


@dataclass(frozen=True)
class Looked:
    """One decided phone as the look back shows it."""

    seq: int
    label: str
    by: str  # "you", "auto", or another operator's name
    defect: bool
    image: QImage | None


class LookBackPanel(_Popup):
    """The last phones decided, newest first, with their labels: to check "did I just pass that
    one?" without leaving the station. Only the newest can be undone (Backspace, in the window)."""

    def __init__(self, items: Sequence[Looked], parent: QWidget | None = None) -> None:
        super().__init__("Last phones", (Qt.Key.Key_P,), parent)
        lay = QVBoxLayout(self)
        title = QLabel("LAST PHONES DECIDED, newest first   (P or Esc closes)")
        title.setObjectName("status")
        lay.addWidget(title)
        if not items:
            lay.addWidget(QLabel("No phone has been decided yet on this shift."))
            return
        grid = QGridLayout()
        for i, item in enumerate(items[:LOOK_BACK]):
            box = QVBoxLayout()
            pic = QLabel()
            pic.setObjectName("thumb")
            pic.setFixedSize(320, 180)
            pic.setAlignment(Qt.AlignmentFlag.AlignCenter)
            if item.image is not None:
                pic.setPixmap(
                    QPixmap.fromImage(item.image).scaled(
                        pic.size(),
                        Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation,
                    )
                )
            else:
                pic.setText("(no image)")
            text = QLabel(f"#{item.seq}  {item.label.upper()}  · {item.by}")
            text.setObjectName("lookedLabel")
            text.setStyleSheet(f"color: {theme.FAIL if item.defect else theme.PASS};")
            box.addWidget(pic)
            box.addWidget(text)
            grid.addLayout(box, i // 4, i % 4)
        lay.addLayout(grid)
