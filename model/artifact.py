"""Versioned model artifacts: a folder with weights (a state_dict) and manifest.json.

The manifest lists the sha256 of every other file and its own `sha256` is the hash of the
manifest's content without that field, so neither a file nor a manifest value can change
unnoticed. Loading verifies everything and refuses pickled full models.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from model.errors import ArtifactError, PickledModel, TamperedArtifact

FORMAT = "inspection-station-model/1"
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
REQUIRED = (
    "format",
    "name",
    "version",
    "architecture",
    "classes",
    "ok_class",
    "input",
    "temperature",
    "thresholds",
    "files",
    "sha256",
)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_sha256(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_artifact(
    out: Path | str,
    state_dict: dict[str, torch.Tensor],
    manifest: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write weights, extra files and the manifest (hashes filled in) into folder `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"expected a folder for the model artifact, {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    stale = [p for p in out.iterdir()]
    for p in stale:
        if p.is_file() and p.name in {MANIFEST, WEIGHTS, *(extra_files or {})}:
            p.unlink()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, out / WEIGHTS)
    for name, data in (extra_files or {}).items():
        (out / name).write_bytes(data)
    names = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != MANIFEST)
    m = dict(manifest)
    m["format"] = FORMAT
    m["files"] = {n: file_sha256(out / n) for n in names}
    m["weights_sha256"] = m["files"][WEIGHTS]
    m["sha256"] = manifest_sha256(m)
    (out / MANIFEST).write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    return m


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The verified manifest of the artifact folder at `path` (every hash checked)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"expected a model artifact folder, {path} is not one")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"expected {MANIFEST} in {path}, found none: not a model artifact")
    try:
        m = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"expected valid JSON in {mpath}: {e}") from e
    if not isinstance(m, dict):
        raise ArtifactError(f"expected a JSON object in {mpath}, found {type(m).__name__}")
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise ArtifactError(f"{mpath} lacks {', '.join(missing)}")
    if m["format"] != FORMAT:
        raise ArtifactError(f"expected artifact format {FORMAT!r}, found {m['format']!r}")
    if manifest_sha256(m) != m["sha256"]:
        raise TamperedArtifact(
            f"{mpath}: content does not match its sha256 {str(m['sha256'])[:12]}..; the "
            "manifest was edited after export"
        )
    files = m["files"]
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ArtifactError(f"{mpath}: expected 'files' to map file names to sha256 strings")
    odd = [n for n in files if Path(n).name != n or n in ("", ".", "..")]
    if odd:
        raise ArtifactError(f"{mpath}: expected plain file names in 'files', found {odd}")
    present = {p.name for p in path.iterdir() if p.is_file() and p.name != MANIFEST}
    for name, digest in sorted(files.items()):
        f = path / name
        if not f.is_file():
            raise TamperedArtifact(f"{path}: manifest lists {name} but the file is missing")
        actual = file_sha256(f)
        if actual != digest:
            raise TamperedArtifact(
                f"{path}: {name} has sha256 {actual[:12]}.., manifest says {digest[:12]}..; "
                "the file was changed after export"
            )
    extra = sorted(present - set(files))
    if extra:
        raise TamperedArtifact(f"{path}: files not in the manifest: {', '.join(extra)}")
    if WEIGHTS not in files:
        raise ArtifactError(f"{path}: manifest lists no {WEIGHTS}")
    classes = m["classes"]
    if not (isinstance(classes, list) and len(classes) >= 2 and len(set(classes)) == len(classes)):
        raise ArtifactError(f"{mpath}: expected at least 2 distinct classes, found {classes!r}")
    if m["ok_class"] is not None and m["ok_class"] not in classes:
        raise ArtifactError(
            f"{mpath}: defect-free class {m['ok_class']!r} is not one of the classes {classes}"
        )
    _check_field_types(m, mpath)
    return m


#: Manifest fields and the JSON types they must have (a manifest edited and re-hashed by hand
#: must fail here, in one line, not deep in the loader or in `model info`).
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "version": (str,),
    "architecture": (str,),
    "thresholds": (dict,),
    "metrics": (dict,),
    "calibration": (dict,),
    "input": (dict,),
    "training": (dict,),
    "summary": (str,),
    "explain": (str,),
}


def _check_field_types(m: dict[str, Any], mpath: Path) -> None:
    for key, types in FIELD_TYPES.items():
        if key in m and m[key] is not None and not isinstance(m[key], types):
            want = " or ".join("a JSON object" if t is dict else "text" for t in types)
            raise ArtifactError(f"{mpath}: {key!r} = {str(m[key])[:60]!r}: expected {want}")
    if not all(isinstance(c, str) and c for c in m["classes"]):
        raise ArtifactError(f"{mpath}: expected class names as text, found {m['classes']!r}")
    t = m.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, int | float) or not 1e-3 <= float(t) <= 1e3:
        raise ArtifactError(
            f"{mpath}: 'temperature' = {str(t)[:60]!r}: expected a number in [0.001, 1000]"
        )
    for side, entry in (m.get("thresholds") or {}).items():
        if not isinstance(entry, dict | int | float) or isinstance(entry, bool):
            raise ArtifactError(
                f"{mpath}: thresholds[{side!r}] = {str(entry)[:60]!r}: expected a number or an "
                "object"
            )


def load_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """A state_dict from `path`, never unpickling code: full pickled models are refused."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # torch warns about a plain pickle before refusing it: the refusal below says it all
            warnings.simplefilter("ignore", UserWarning)
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PickledModel(
            f"{path} holds pickled Python objects (a full model?), not a plain state_dict; "
            "refusing to load it (export the state_dict instead)"
        ) from e
    except Exception as e:  # an untrusted file: whatever the unpickler trips on (KeyError, ...)
        raise ArtifactError(
            f"{path} is not a readable torch weights file ({type(e).__name__}: {e}): expected a "
            "state_dict saved with torch.save"
        ) from e
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise PickledModel(
            f"{path}: expected a state_dict (names -> tensors), found something else"
        )
    return sd
