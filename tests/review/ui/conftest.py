"""Qt tests run offscreen: no display needed, same widgets."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"
