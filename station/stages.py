"""Versions of the pipeline's stages before the model (trigger, input guard).

A stage's version is its code's version and a hash of the settings it runs with: a changed
threshold changes what reaches the model just as changed code does. Items record the versions
that produced them; a new version starts a new drift reference (station/monitor.py) and the
report shows what changed downstream.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stage_version(code_version: str, settings: Any) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return f"{code_version}+{hashlib.sha256(blob).hexdigest()[:8]}"
