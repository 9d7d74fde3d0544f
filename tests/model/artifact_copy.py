"""A copy of a trained artifact with its manifest edited and consistently rehashed, as a
careless editor would leave it: the hashes match, so only the content checks can refuse it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.artifact import MANIFEST, file_sha256, manifest_sha256


def edited_copy(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    shutil.copytree(src, dst)
    m = json.loads((dst / MANIFEST).read_text())
    edit(m)
    m["files"] = {n: file_sha256(dst / n) for n in m["files"]}
    m["sha256"] = manifest_sha256(m)
    (dst / MANIFEST).write_text(json.dumps(m))
    return dst
