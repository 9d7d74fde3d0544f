"""Content-addressed image files: the name of a file is the sha256 of its bytes.

Layout: <root>/<h[0:2]>/<h[2:4]>/<h>.<ext>. A path is derived only from the hash (checked to be 64
hex digits) and an extension from a fixed list, never from outside input, so nothing a camera, a
file name or a user types can steer a write outside the root. Writes are atomic: bytes go to a
temporary file in the target folder, are fsynced, then renamed over the final name, and the folder
is fsynced; every folder the store creates (the root, the fan-out folders) is fsynced in its parent,
so a file behind an acknowledged write survives a power cut. A crash leaves either the whole file
or none (plus, at worst, a `.tmp-*` file that `remove_stale_temp_files` clears). Storing the same
bytes twice stores them once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from station.errors import ImageStoreError
from station.frames import png

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: Encodings the store writes; PNG (lossless) is the default.
FORMATS = {"png": ".png", "jpg": ".jpg"}
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True, slots=True)
class StoredImage:
    sha256: str
    #: Relative to the store root, with forward slashes: what db.models.Item.image_path holds.
    relpath: str
    path: Path
    #: False when the same bytes were already stored (dedupe).
    created: bool
    size_bytes: int


def encode_image(image: np.ndarray, fmt: str = "png", *, jpeg_quality: int = 95) -> bytes:
    """The one encoding of a captured image, so the same frame gives the same bytes (and hash)
    whichever path stores it. PNG (station/frames/png.py): lossless, zlib-ng at level 1 with
    run-length matching, every row filtered "up", which encodes a synthetic 1280x720 frame in 16
    ms where OpenCV's libpng took 33.5 at the same settings and size; the store's writer
    competes with the model for the same cores. (Images stored before a change of encoder keep
    their bytes; an identical frame stored now hashes differently from one stored then.)"""
    if not isinstance(image, np.ndarray) or not png.can_encode(image):
        raise ImageStoreError(
            "expected a non-empty uint8 image (grey, BGR or BGRA), got "
            f"{type(image).__name__} {getattr(image, 'dtype', '?')} {getattr(image, 'shape', '')}"
        )
    if fmt == "png":
        return png.encode_png(image)
    if fmt != "jpg":
        raise ImageStoreError(
            f"image format {fmt!r} not supported: expected one of {list(FORMATS)}"
        )
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ImageStoreError(f"could not encode an image of shape {image.shape} as {fmt}")
    return buf.tobytes()


class ImageStore:
    def __init__(self, root: Path | str, *, fmt: str = "png", jpeg_quality: int = 95) -> None:
        if fmt not in FORMATS:
            raise ImageStoreError(
                f"image format {fmt!r} not supported: expected one of {list(FORMATS)}"
            )
        self.root = Path(root)
        self.fmt = fmt
        self.jpeg_quality = int(jpeg_quality)
        #: Fan-out folders whose directory entry this process has fsynced in their parent.
        self._durable: set[Path] = set()
        try:
            _make_dirs_durable(self.root)
        except OSError as e:
            raise ImageStoreError(f"cannot create the image store folder {self.root}: {e}") from e

    # ------------------------------------------------------------------ paths

    @staticmethod
    def check_hash(sha256: str) -> str:
        if not isinstance(sha256, str) or not _HEX64.match(sha256):
            raise ImageStoreError(f"expected a sha256 as 64 lowercase hex digits, got {sha256!r}")
        return sha256

    def relpath_for(self, sha256: str, fmt: str | None = None) -> str:
        self.check_hash(sha256)
        ext = FORMATS.get(fmt or self.fmt)
        if ext is None:
            raise ImageStoreError(
                f"image format {fmt!r} not supported: expected one of {list(FORMATS)}"
            )
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}{ext}"

    def path_for(self, sha256: str, fmt: str | None = None) -> Path:
        return self.root / self.relpath_for(sha256, fmt)

    # ------------------------------------------------------------------ writing

    def encode(self, image: np.ndarray) -> bytes:
        return encode_image(image, self.fmt, jpeg_quality=self.jpeg_quality)

    def put(self, image: np.ndarray) -> StoredImage:
        """Encode (lossless PNG unless the store was made with fmt="jpg") and store."""
        return self.put_bytes(self.encode(image))

    def put_bytes(self, data: bytes) -> StoredImage:
        """Store already-encoded bytes in this store's format."""
        sha = hashlib.sha256(data).hexdigest()
        rel = self.relpath_for(sha)
        final = self.root / rel
        if final.exists() and final.stat().st_size == len(data):
            return StoredImage(sha, rel, final, created=False, size_bytes=len(data))
        folder = final.parent
        try:
            self._ensure_folder(folder)
            self._write_atomic(folder, final, data)
        except OSError as e:
            raise ImageStoreError(f"cannot write {final}: {e}") from e
        return StoredImage(sha, rel, final, created=True, size_bytes=len(data))

    def _ensure_folder(self, folder: Path) -> None:
        """Create root/ab and root/ab/cd as needed and fsync each in its parent, once per process.

        Also done for folders that already exist: another writer may have created one and not yet
        fsynced its parent, and our acknowledged file must not hang on that writer's progress.
        """
        for level in (folder.parent, folder):
            if level in self._durable:
                continue
            level.mkdir(parents=True, exist_ok=True)
            _fsync_dir(level.parent)
            self._durable.add(level)

    def _write_atomic(self, folder: Path, final: Path, data: bytes) -> None:
        tmp = folder / f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # Same bytes under the same name: replacing a concurrent writer's file is harmless.
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(folder)

    # ------------------------------------------------------------------ reading

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def read_bytes(self, sha256: str) -> bytes:
        path = self.path_for(sha256)
        try:
            return path.read_bytes()
        except FileNotFoundError as e:
            raise ImageStoreError(f"no image {sha256} in the store at {self.root}") from e

    def get(self, sha256: str) -> np.ndarray:
        data = self.read_bytes(sha256)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ImageStoreError(f"stored image {sha256} cannot be decoded")
        return image

    def verify(self, sha256: str) -> bool:
        """True when the file's bytes still hash to its name."""
        return hashlib.sha256(self.read_bytes(sha256)).hexdigest() == sha256

    def remove_stale_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files left by a crash; returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for tmp in self.root.glob(f"*/*/{TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
        return removed


def _make_dirs_durable(folder: Path) -> None:
    """mkdir -p that fsyncs the parent of each folder it had to create, so the new directory
    entries reach the disk together with the file later renamed into them."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for new in reversed(missing):
        # exist_ok: a concurrent writer may create the same folder; its entry is fsynced below
        # all the same, since that writer may not have reached its own fsync yet.
        new.mkdir(exist_ok=True)
        _fsync_dir(new.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable; not possible on every platform (Windows), hence the suppress.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
