"""Helpers shared by the frames/synth tests (not a conftest, so nobody else's fixtures collide)."""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

from station.frames.types import CaptureState
from station.synth.config import SynthConfig
from station.synth.line import SyntheticLine

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def small_config(**kw: object) -> SynthConfig:
    """A quick line: 320x180, unpaced."""
    base: dict[str, object] = {"width": 320, "height": 180, "realtime": False, "seed": 7}
    base.update(kw)
    return SynthConfig(**base)  # type: ignore[arg-type]


def line_frames(config: SynthConfig, n_items: int) -> list:
    line = SyntheticLine(config)
    return [line.frame(i) for i in range(line.total_frames(n_items))]


def write_video(path: Path, images: list[np.ndarray], fps: float = 30.0) -> Path:
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "this OpenCV cannot write MJPG video"
    for im in images:
        writer.write(im)
    writer.release()
    return path


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def jpg_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image (the rest is a token IDAT): an 'enormous' file
    without writing gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def make_bad_folder(folder: Path) -> dict[str, str]:
    """Two good images among bad files; returns {bad file name: expected reason keyword}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    (folder / "img2.png").write_bytes(png_bytes(good))
    (folder / "img10.jpg").write_bytes(jpg_bytes(good))
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    data = png_bytes(good)
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    jdata = jpg_bytes(good)
    (folder / "cut.jpg").write_bytes(jdata[: len(jdata) // 2])
    (folder / "huge.png").write_bytes(png_header_claiming(50_000, 50_000))
    (folder / "fake.jpg").write_bytes(b"hello, I am text in disguise" * 10)
    return {
        "notes.txt": "not an image",
        "empty.png": "empty",
        "cut.png": "truncated",
        "cut.jpg": "truncated",
        "huge.png": "too large",
        "fake.jpg": "not a JPG",
    }


class StateLog:
    """Collects capture state changes; `ended` is set when the capture ends."""

    def __init__(self) -> None:
        self.states: list[CaptureState] = []
        self.details: list[str] = []
        self.ended = threading.Event()

    def __call__(self, state: CaptureState, detail: str) -> None:
        self.states.append(state)
        self.details.append(detail)
        if state == CaptureState.ENDED:
            self.ended.set()
