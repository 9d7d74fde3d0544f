"""Can a window open here? Qt aborts the whole process (no exception to catch) when it cannot
reach a display or lacks its platform libraries, so the window commands ask first: the
environment, then a throwaway QApplication in a child process."""

from __future__ import annotations

import os
import subprocess
import sys

#: What a bare Debian needs for Qt's xcb platform (the README's list).
APT_HINT = (
    "apt-get install -y libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 "
    "libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libegl1 "
    "libgl1 libfontconfig1 libdbus-1-3"
)
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")
PROBE = "from PySide6.QtWidgets import QApplication; QApplication(['probe'])"


def window_problem(command: str, instead: str) -> str | None:
    """Why `command` cannot open its window here, with what to do instead; None when it can."""
    env = os.environ
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform in HEADLESS_PLATFORMS or sys.platform in ("win32", "darwin"):
        return None
    if not platform and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return (
            f"no display: `{command}` opens a window, and neither DISPLAY nor WAYLAND_DISPLAY is "
            f"set. Run it on a desktop or under a virtual display (`xvfb-run {command} ...`); "
            f"{instead}"
        )
    try:
        probe = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot tell whether a window can open here ({e}); {instead}"
    if probe.returncode == 0:
        return None
    lines = [ln.strip() for ln in probe.stderr.splitlines() if ln.strip()]
    said = next(
        (ln for ln in lines if "could not connect" in ln.lower() or "needed" in ln.lower()),
        lines[0] if lines else f"exit status {probe.returncode}",
    )
    where = env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or platform
    return (
        f"the window cannot open on {where!r}: Qt says {said[:300]!r}. Check that the display "
        f"is running, or install Qt's libraries ({APT_HINT}); {instead}"
    )
