"""A dark, high-contrast theme with big type: readable from a metre away, standing.

Sizes are for a 1920x1080 screen; `style(scale)` shrinks every one of them alike for a smaller
screen (the station window picks the scale from its height), so nothing is cut off at 1280x720.
"""

import re

BG = "#111418"
PANEL = "#1b2027"
TEXT = "#f2f4f7"
MUTED = "#9aa4b2"
PASS = "#1f9d55"
FAIL = "#c0392b"
WARN = "#e6a700"
ACCENT = "#3d8bfd"

_STYLE_1080 = f"""
QWidget {{ background: {BG}; color: {TEXT}; font-size: 22px; }}
QFrame#panel {{ background: {PANEL}; border-radius: 10px; }}
QLabel#status {{ font-size: 26px; font-weight: 600; padding: 8px 14px; background: {PANEL}; }}
QLabel#banner {{ font-size: 28px; font-weight: 700; padding: 12px; color: #000; background: {WARN}; }}
QLabel#banner[severity="error"] {{ background: {FAIL}; color: #fff; }}
QLabel#queue {{ font-size: 24px; color: {MUTED}; }}
QLabel#saved {{ font-size: 34px; font-weight: 700; color: {PASS}; }}
QLabel#saving {{ font-size: 30px; color: {WARN}; }}
QLabel#badge {{ font-size: 30px; font-weight: 800; padding: 6px 12px; border-radius: 6px; }}
QLabel#kind {{ font-size: 28px; font-weight: 800; color: {TEXT}; background: {PANEL};
               padding: 4px 12px; border-radius: 6px; }}
QLabel#kind[attention="true"] {{ color: #000; background: {WARN}; }}
QLabel#liveCaption {{ font-size: 18px; color: {MUTED}; }}
QLabel#recent {{ font-size: 28px; font-family: monospace; padding-left: 12px; }}
QLabel#aiLabel {{ font-size: 40px; font-weight: 800; }}
QLabel#caption {{ font-size: 20px; color: {MUTED}; }}
QProgressBar {{ height: 34px; border: 2px solid {MUTED}; border-radius: 6px; text-align: center;
                font-size: 22px; font-weight: 700; }}
QProgressBar::chunk {{ background: {ACCENT}; }}
QPushButton {{ font-size: 30px; font-weight: 800; min-height: 96px; border-radius: 10px;
               border: 3px solid #000; padding: 6px 12px; }}
QPushButton#pass {{ background: {PASS}; color: #fff; min-height: 140px; font-size: 40px; }}
QPushButton#defect {{ background: {FAIL}; color: #fff; }}
QPushButton#undo {{ background: #39424e; color: #fff; min-height: 64px; font-size: 24px; }}
QPushButton:disabled, QPushButton#pass:disabled, QPushButton#defect:disabled,
QPushButton#undo:disabled {{ background: #23272e; color: #4d545e; border-color: #23272e; }}
QLineEdit {{ font-size: 28px; padding: 8px; background: {PANEL}; border: 2px solid {MUTED}; }}
QLabel#error {{ color: #ff6b5b; font-size: 22px; font-weight: 700; }}
"""


def style(scale: float = 1.0) -> str:
    """The style sheet with every size (fonts, paddings, button heights) times `scale`."""
    if scale == 1.0:
        return _STYLE_1080
    return re.sub(r"(\d+)px", lambda m: f"{max(1, round(int(m.group(1)) * scale))}px", _STYLE_1080)


STYLE = style(1.0)
