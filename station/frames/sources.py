"""Frame sources (camera, video file, stream URL, GStreamer pipeline, image folder, synthetic line)
and the one source-spec string that selects them.

Accepted specs (see ACCEPTED_FORMS):
    synthetic | synthetic:seed=3,defect_rate=0.2,...   the synthetic phone line
    0 | device:0                                       camera by device index
    file:PATH | PATH (an existing video file)          video file; ends at its last frame
    rtsp://... | rtsps://... | http(s)://...           network stream; reconnects when it drops
    gst:PIPELINE                                       GStreamer pipeline ending in appsink
    folder:PATH | PATH (an existing folder)            one item per image, in natural name order
Suffix `?loop=1` on file: and folder: specs replays them forever.
"""

from __future__ import annotations

import logging
import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.errors import SourceError
from station.frames.types import Frame, FrameSource, SkippedFile, SourceLost

log = logging.getLogger(__name__)

ACCEPTED_FORMS = (
    "'synthetic' or 'synthetic:key=value,...' (e.g. synthetic:seed=3,defect_rate=0.2); "
    "a camera index such as '0' or 'device:0'; 'file:PATH' or the path of a video file; "
    "a stream URL 'rtsp://...', 'rtsps://...', 'http://...', 'https://...'; "
    "'gst:PIPELINE' (a GStreamer pipeline ending in appsink); "
    "'folder:PATH' or the path of a folder of images; "
    "file: and folder: accept a '?loop=1' suffix"
)

VIDEO_EXTENSIONS = {
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".m4v",
    ".mjpg",
    ".mjpeg",
    ".webm",
    ".wmv",
    ".ts",
}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
#: Images above this many pixels are skipped (a 100 MP photo would stall the line).
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024
_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
_TIMEOUT_MS = 5000


# ====================================================================== spec parsing


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed source spec. kind: synthetic | device | file | stream | gstreamer | folder."""

    kind: str
    target: str
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""


def _bad_spec(spec: str, why: str) -> SourceError:
    return SourceError(f"bad source spec {spec!r}: {why}; accepted forms: {ACCEPTED_FORMS}")


def _split_query(spec: str, rest: str) -> tuple[str, dict[str, str]]:
    if "?" not in rest:
        return rest, {}
    path, _, query = rest.rpartition("?")
    options: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or key not in {"loop"}:
            raise _bad_spec(spec, f"unknown option {part!r} (only loop=0|1 is accepted)")
        options[key] = value
    return path, options


def _parse_bool(spec: str, key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise _bad_spec(spec, f"{key}={value!r} must be 0 or 1")


def parse_source_spec(spec: str) -> SourceSpec:
    """Parse a spec string; a malformed one raises SourceError listing the accepted forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_spec(str(spec), "empty")
    text = spec.strip()
    low = text.lower()
    if low == "synthetic" or low.startswith("synthetic:"):
        params = text.partition(":")[2]
        options: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in params.split(","))):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise _bad_spec(text, f"synthetic parameter {part!r} is not key=value")
            options[key.strip()] = value.strip()
        return SourceSpec("synthetic", "", options, text)
    if re.fullmatch(r"\d+", text):
        return SourceSpec("device", text, {}, text)
    if low.startswith("device:"):
        index = text.partition(":")[2].strip()
        if not re.fullmatch(r"\d+", index):
            raise _bad_spec(text, f"device index {index!r} is not a non-negative integer")
        return SourceSpec("device", index, {}, text)
    if low.startswith(_STREAM_SCHEMES):
        return SourceSpec("stream", text, {}, text)
    if low.startswith("gst:"):
        pipeline = text[4:].strip()
        if "appsink" not in pipeline:
            raise _bad_spec(text, "a GStreamer pipeline must end in 'appsink'")
        return SourceSpec("gstreamer", pipeline, {}, text)
    if low.startswith("file:"):
        path, options = _split_query(text, text[5:])
        if not path:
            raise _bad_spec(text, "no file path after 'file:'")
        return SourceSpec("file", path, options, text)
    if low.startswith("folder:"):
        path, options = _split_query(text, text[7:])
        if not path:
            raise _bad_spec(text, "no folder path after 'folder:'")
        return SourceSpec("folder", path, options, text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise _bad_spec(text, f"unsupported URL scheme {scheme!r}")
    path, options = _split_query(text, text)
    p = Path(path).expanduser()
    if p.is_dir():
        return SourceSpec("folder", path, options, text)
    if p.is_file():
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            raise _bad_spec(text, "a single image is not a source; give the folder that holds it")
        return SourceSpec("file", path, options, text)
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        raise SourceError(f"video file {path} does not exist (source spec {text!r})")
    raise _bad_spec(text, "not a known form, an existing video file or an existing folder")


def open_source(spec: str | SourceSpec, *, realtime: bool | None = None) -> FrameSource:
    """Build the source a spec names (not yet opened: the capture thread calls `open()`).

    realtime: for the synthetic line, whether to pace frames at its fps (None: the spec decides,
    default paced). Cameras and streams are real-time anyway; files and folders are read as fast
    as the reader takes them.
    """
    s = parse_source_spec(spec) if isinstance(spec, str) else spec
    loop = (
        _parse_bool(s.text, "loop", s.options.get("loop", "0"))
        if s.kind in {"file", "folder"}
        else False
    )
    if s.kind == "synthetic":
        from station.synth.line import SyntheticLineSource  # the synth package imports frames

        return SyntheticLineSource.from_options(s.options, realtime=realtime, spec=s.text)
    if s.kind == "device":
        return OpenCVSource(int(s.target), name=f"device:{s.target}")
    if s.kind == "stream":
        return OpenCVSource(s.target, name=s.target)
    if s.kind == "gstreamer":
        return OpenCVSource(s.target, name=f"gst:{s.target}", backend=cv2.CAP_GSTREAMER)
    if s.kind == "file":
        return OpenCVSource(Path(s.target).expanduser(), name=f"file:{s.target}", loop=loop)
    if s.kind == "folder":
        return ImageFolderSource(Path(s.target).expanduser(), loop=loop)
    raise _bad_spec(s.text, f"unknown kind {s.kind!r}")


# ====================================================================== OpenCV


def has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


class OpenCVSource:
    """cv2.VideoCapture over a device index, a video file, a stream URL or a GStreamer pipeline.

    A device, stream or pipeline is live: a failed read raises SourceLost (the capture thread
    reconnects). A file is finite: a failed read is its end (a truncated file just ends early).
    """

    item_per_frame = False

    def __init__(
        self,
        target: int | str | Path,
        *,
        name: str | None = None,
        backend: int | None = None,
        loop: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.is_file = isinstance(target, Path)
        self.live = not self.is_file
        self.name = name or str(target)
        self.backend = backend
        self.loop = loop
        self.nominal_fps: float | None = None
        self._clock = clock
        self._cap: Any = None
        self._index = 0
        self._frames_this_open = 0

    @property
    def skipped(self) -> list[SkippedFile]:
        return []

    def open(self) -> None:
        self.close()
        if self.is_file:
            path = Path(str(self.target))
            if not path.exists():
                raise SourceError(f"video file {path} does not exist")
            if not path.is_file():
                raise SourceError(f"{path} is not a file; expected a video file")
            if path.stat().st_size == 0:
                raise SourceError(f"video file {path} is empty (0 bytes)")
        if self.backend == cv2.CAP_GSTREAMER and not has_gstreamer():
            raise SourceError(
                "this OpenCV build has no GStreamer support; use a device index, file or URL"
            )
        cap = self._make_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(self._cannot_open_message())
        self._cap = cap
        self._frames_this_open = 0
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps if 0.0 < fps < 1000.0 else None
        if self.is_file:
            # Decode one frame now so an unreadable file fails at open, not later as an empty run.
            ok, image = cap.read()
            if not ok or image is None:
                self.close()
                raise SourceError(
                    f"video file {self.target} cannot be decoded (no frame could be read); "
                    "expected a video OpenCV/FFmpeg can read"
                )
            self._pending = image
        else:
            self._pending = None

    def _make_capture(self) -> Any:
        target = str(self.target) if isinstance(self.target, Path) else self.target
        if self.backend is not None:
            return cv2.VideoCapture(target, self.backend)
        if isinstance(target, str) and target.lower().startswith(_STREAM_SCHEMES):
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                _TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                _TIMEOUT_MS,
            ]
            return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(target)

    def _cannot_open_message(self) -> str:
        if isinstance(self.target, int):
            return (
                f"camera device {self.target} could not be opened: no such device, or it is in use; "
                "expected a connected camera index (0, 1, ...)"
            )
        if self.is_file:
            return f"video file {self.target} cannot be opened; expected a video OpenCV/FFmpeg can read"
        return (
            f"stream {self.name} could not be opened (unreachable, refused or not a video stream)"
        )

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"source {self.name} is not open")
        image = getattr(self, "_pending", None)
        self._pending = None
        if image is None:
            ok, image = self._cap.read()
            if not ok or image is None:
                if self.live:
                    raise SourceLost(f"{self.name} stopped giving frames")
                if self.loop and self._frames_this_open > 0:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, image = self._cap.read()
                if not ok or image is None:
                    return None
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        self._frames_this_open += 1
        if self.is_file:
            fps = self.nominal_fps or 30.0
            ts = self._index / fps
        else:
            ts = self._clock()
        frame = Frame(image, self._index, ts, {"source": self.name})
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ====================================================================== image folder


def natural_key(name: str) -> list[Any]:
    """'img2' sorts before 'img10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (all but DHT C4, JPG C8 and DAC CC), whose segment holds the size.
_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_JPEG_SOS = 0xDA


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset of its 0xFF) of each segment with a length, up to and including the first
    start-of-scan (after which entropy-coded data follows)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker == 0xD9:  # end of image before any scan
            return
        yield marker, i
        if marker == _JPEG_SOS:
            return
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, i in _jpeg_segments(data):
        if marker in _JPEG_SOF and i + 9 <= len(data):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack("<HH", data[18:22])
        return int(w), int(h)
    w, h = struct.unpack("<ii", data[18:26])
    return int(w), abs(int(h))  # a negative height means rows stored top-down


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = struct.unpack("<I", data[21:25])[0]
        return int((bits & 0x3FFF) + 1), int(((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first image file directory (the page a decoder reads)."""
    order = "<" if data[:2] == b"II" else ">"
    n = len(data)
    ifd = struct.unpack(order + "I", data[4:8])[0]
    if ifd + 2 > n:
        return None
    found: dict[int, int] = {}
    count = struct.unpack(order + "H", data[ifd : ifd + 2])[0]
    for k in range(count):
        e = ifd + 2 + 12 * k
        if e + 12 > n:
            break
        tag, typ = struct.unpack(order + "HH", data[e : e + 4])
        if tag in (256, 257) and typ in (3, 4):  # ImageWidth / ImageLength as SHORT or LONG
            fmt = "H" if typ == 3 else "I"
            found[tag] = int(
                struct.unpack(order + fmt, data[e + 8 : e + 8 + struct.calcsize(fmt)])[0]
            )
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP, WebP or TIFF header without decoding; None when
    the format is not one of these or its header cannot be read."""
    try:
        if data[:8] == _PNG_SIGNATURE and len(data) >= 24 and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM":
            return _bmp_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except struct.error:  # a header cut short: the decoder will have its say
        return None
    return None


def _png_is_complete(data: bytes) -> bool:
    """True when the chunks run whole up to IEND; bytes after IEND are ignored, as decoders do."""
    pos, n = 8, len(data)
    while pos + 12 <= n:
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        end = pos + 12 + length
        if end > n:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = end
    return False


def _jpeg_is_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the start of the first scan. Cameras often append
    bytes after it (maker data, a second preview image), which decoders ignore, so do we. Inside
    the scan data every 0xFF byte is stuffed, so FF D9 there can only be the real marker; a
    thumbnail's own FF D9 inside an APP segment lies before the scan and is not counted."""
    for marker, i in _jpeg_segments(data):
        if marker == _JPEG_SOS and i + 4 <= len(data):
            scan_data = i + 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
            return data.find(b"\xff\xd9", scan_data) >= 0
    return False


def check_image_bytes(data: bytes, ext: str, *, max_pixels: int) -> str | None:
    """Why these bytes are not a usable image, or None. Catches what a decoder would let through."""
    if not data:
        return "empty file (0 bytes)"
    is_png = data[:8] == _PNG_SIGNATURE
    is_jpeg = data[:3] == b"\xff\xd8\xff"
    if ext == ".png" and not is_png or ext in {".jpg", ".jpeg"} and not is_jpeg:
        return f"not a {ext[1:].upper()} file (wrong signature)"
    size = image_header_size(data)
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0:
            return f"bad image header: {w}x{h}"
        if w * h > max_pixels:
            return f"too large: {w}x{h} = {w * h} pixels, limit {max_pixels}"
    if is_png and not _png_is_complete(data):
        return "truncated PNG (chunks end before the IEND chunk)"
    if is_jpeg and not _jpeg_is_complete(data):
        return "truncated JPEG (no end-of-image marker after the image data)"
    return None


class ImageFolderSource:
    """Every image in a folder is one item, in natural name order; bad files are skipped, logged
    and counted (see `skipped`), and the run goes on."""

    live = False
    item_per_frame = True
    nominal_fps: float | None = None

    def __init__(
        self,
        folder: Path | str,
        *,
        loop: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.folder = Path(folder)
        self.loop = loop
        self.max_pixels = max_pixels
        self.max_file_bytes = max_file_bytes
        self.name = f"folder:{folder}"
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0
        self._skipped: list[SkippedFile] = []
        self._bad: set[Path] = set()
        self._good_this_pass = 0

    @property
    def skipped(self) -> list[SkippedFile]:
        return list(self._skipped)

    def open(self) -> None:
        if not self.folder.exists():
            raise SourceError(f"image folder {self.folder} does not exist")
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder} is not a folder; expected a folder of images")
        entries = sorted(
            (p for p in self.folder.iterdir() if p.is_file()), key=lambda p: natural_key(p.name)
        )
        self._files = []
        for p in entries:
            if p.name.startswith("."):
                continue
            # Masks next to images (NAME.mask.png, as in our exports) are not items.
            if p.name.lower().endswith(".mask.png"):
                continue
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                self._skip(p, f"not an image file (extension {p.suffix or 'none'!r})")
                continue
            self._files.append(p)
        self._pos = 0

    def _skip(self, path: Path, reason: str) -> None:
        if path in self._bad:
            return
        self._bad.add(path)
        self._skipped.append(SkippedFile(str(path), reason))
        log.warning("skipped %s: %s", path, reason)

    def read(self) -> Frame | None:
        while True:
            if self._pos >= len(self._files):
                if not self.loop or self._good_this_pass == 0:
                    return None
                self._pos = 0
                self._good_this_pass = 0
            path = self._files[self._pos]
            self._pos += 1
            if path in self._bad:
                continue
            image = self._load(path)
            if image is None:
                continue
            self._good_this_pass += 1
            frame = Frame(
                image, self._index, float(self._index), {"path": str(path), "item_id": path.name}
            )
            self._index += 1
            return frame

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            size = path.stat().st_size
            if size > self.max_file_bytes:
                self._skip(path, f"file too large: {size} bytes, limit {self.max_file_bytes}")
                return None
            data = path.read_bytes()
        except OSError as e:
            self._skip(path, f"cannot read: {e.strerror or e}")
            return None
        why = check_image_bytes(data, path.suffix.lower(), max_pixels=self.max_pixels)
        if why is not None:
            self._skip(path, why)
            return None
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            self._skip(path, "cannot be decoded as an image")
            return None
        if image.shape[0] * image.shape[1] > self.max_pixels:
            self._skip(
                path,
                f"too large: {image.shape[1]}x{image.shape[0]}, limit {self.max_pixels} pixels",
            )
            return None
        return image

    def close(self) -> None:
        self._files = []


# ====================================================================== fake (for tests and demos)


class ListSource:
    """A source that replays given images; the seam's first-class fake.

    `fail_after`: raise SourceLost after that many frames per open (a dropping stream);
    `reopen_failures`: how many following `open()` calls fail before one succeeds again.
    """

    nominal_fps: float | None = 30.0

    def __init__(
        self,
        images: Sequence[np.ndarray] | Iterable[np.ndarray],
        *,
        live: bool = False,
        fail_after: int | None = None,
        reopen_failures: int = 0,
        metas: Sequence[dict[str, Any]] | None = None,
        name: str = "list",
        item_per_frame: bool = False,
    ) -> None:
        self.images = list(images)
        self.item_per_frame = item_per_frame  # True: every image is one item (no trigger)
        self.metas = list(metas) if metas is not None else None
        self.live = live
        self.name = name
        self.fail_after = fail_after
        self.reopen_failures = reopen_failures
        self.open_calls = 0
        self._pos = 0
        self._since_open = 0
        self._is_open = False

    @property
    def skipped(self) -> list[SkippedFile]:
        return []

    def open(self) -> None:
        self.open_calls += 1
        if self.open_calls > 1 and self.reopen_failures > 0:
            self.reopen_failures -= 1
            raise SourceError(f"{self.name} cannot be reached")
        self._is_open = True
        self._since_open = 0

    def read(self) -> Frame | None:
        if not self._is_open:
            raise SourceError(f"{self.name} is not open")
        if self._pos >= len(self.images):
            return None
        if self.fail_after is not None and self._since_open >= self.fail_after:
            self._is_open = False
            raise SourceLost(f"{self.name} dropped")
        i = self._pos
        self._pos += 1
        self._since_open += 1
        meta = dict(self.metas[i]) if self.metas is not None else {}
        return Frame(self.images[i], i, i / 30.0, meta)

    def close(self) -> None:
        self._is_open = False
