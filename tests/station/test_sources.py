"""Frame sources, the source spec, and the capture thread (queue, drops, reconnects, states)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from frames_fixtures import (
    StateLog,
    jpg_bytes,
    make_bad_folder,
    png_bytes,
    small_config,
    write_video,
)

from station.errors import SourceError
from station.frames.capture import Backoff, Capture
from station.frames.sources import (
    ImageFolderSource,
    ListSource,
    OpenCVSource,
    has_gstreamer,
    open_source,
    parse_source_spec,
)
from station.frames.types import CaptureState, FrameSource
from station.synth.line import SyntheticLineSource


@pytest.fixture(autouse=True)
def no_capture_thread_left_behind() -> Iterator[None]:
    yield
    leaked = [
        t.name for t in threading.enumerate() if t.name.startswith("capture:") and t.is_alive()
    ]
    assert not leaked, f"capture threads still running after the test: {leaked}"


FAST = Backoff(initial_s=0.001, factor=2.0, maximum_s=0.004)


def _read_all(source: FrameSource) -> list:
    source.open()
    frames = []
    while (f := source.read()) is not None:
        frames.append(f)
    source.close()
    return frames


def _gray_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    return [np.full((h, w, 3), (i * 7) % 256, np.uint8) for i in range(n)]


# ---------------------------------------------------------------------- spec


@pytest.mark.parametrize(
    ("spec", "kind", "target"),
    [
        ("synthetic", "synthetic", ""),
        ("synthetic:seed=3,defect_rate=0.2", "synthetic", ""),
        ("0", "device", "0"),
        ("device:2", "device", "2"),
        ("file:line.mp4", "file", "line.mp4"),
        ("rtsp://cam.local:554/stream1", "stream", "rtsp://cam.local:554/stream1"),
        ("https://cam.local/video.mjpg", "stream", "https://cam.local/video.mjpg"),
        (
            "gst:videotestsrc ! videoconvert ! appsink",
            "gstreamer",
            "videotestsrc ! videoconvert ! appsink",
        ),
        ("folder:/data/stills", "folder", "/data/stills"),
    ],
)
def test_spec_parser_accepts_each_documented_form(spec: str, kind: str, target: str) -> None:
    parsed = parse_source_spec(spec)
    assert (parsed.kind, parsed.target) == (kind, target)


def test_synthetic_spec_options_are_parsed() -> None:
    parsed = parse_source_spec("synthetic:seed=3,defect_rate=0.2")
    assert parsed.options == {"seed": "3", "defect_rate": "0.2"}


def test_bare_paths_select_folder_or_video_file(tmp_path: Path) -> None:
    video = write_video(tmp_path / "line.avi", _gray_frames(3))
    assert parse_source_spec(str(tmp_path)).kind == "folder"
    assert parse_source_spec(str(video)).kind == "file"
    assert parse_source_spec(f"folder:{tmp_path}?loop=1").options == {"loop": "1"}


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "   ",
        "bogus",
        "device:abc",
        "ftp://host/x",
        "synthetic:seed",
        "gst:videotestsrc",
        "file:",
        "folder:x?speed=2",
    ],
)
def test_malformed_spec_message_lists_accepted_forms(spec: str) -> None:
    with pytest.raises(SourceError) as err:
        parse_source_spec(spec)
    assert "accepted forms" in str(err.value)
    assert "synthetic" in str(err.value) and "folder:PATH" in str(err.value)


def test_unknown_synthetic_parameter_names_the_known_ones() -> None:
    with pytest.raises(SourceError, match="unknown synthetic parameter 'sed'.*seed"):
        open_source("synthetic:sed=3")


def test_bad_synthetic_value_says_what_was_expected() -> None:
    with pytest.raises(SourceError, match=r"defect_rate must be in \[0, 1\], got 2"):
        open_source("synthetic:defect_rate=2")
    with pytest.raises(SourceError, match="not a valid float"):
        open_source("synthetic:severity=high")


def test_missing_video_path_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        parse_source_spec(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="does not exist"):
        open_source(f"file:{tmp_path / 'nope.mp4'}").open()


# ---------------------------------------------------------------------- OpenCV


def test_video_file_source_reads_every_frame_with_frame_clock(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", _gray_frames(12), fps=25.0)
    frames = _read_all(open_source(f"file:{video}"))
    assert [f.index for f in frames] == list(range(12))
    assert frames[5].timestamp == pytest.approx(5 / 25.0)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8


def test_video_file_loop_replays_it(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", _gray_frames(5))
    source = open_source(f"file:{video}?loop=1")
    source.open()
    frames = [source.read() for _ in range(12)]
    source.close()
    assert all(f is not None for f in frames)


def test_truncated_video_ends_early_without_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", _gray_frames(30))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    frames = _read_all(OpenCVSource(video))
    assert 0 < len(frames) < 30


@pytest.mark.parametrize("content", [b"", os.urandom(4096)], ids=["zero-byte", "garbage"])
def test_unreadable_video_is_a_source_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(SourceError, match=r"bad\.mp4"):
        OpenCVSource(bad).open()


def test_missing_camera_device_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="camera device 63 could not be opened"):
        open_source("63").open()


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV build has GStreamer")
def test_gstreamer_without_support_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="no GStreamer support"):
        open_source("gst:videotestsrc ! appsink").open()


def test_file_source_is_finite_and_device_source_is_live(tmp_path: Path) -> None:
    assert OpenCVSource(tmp_path / "x.avi").live is False
    assert OpenCVSource(0).live is True
    assert OpenCVSource("rtsp://h/x").live is True


# ---------------------------------------------------------------------- image folder


def test_folder_source_skips_bad_files_with_reasons_and_goes_on(tmp_path: Path) -> None:
    expected = make_bad_folder(tmp_path / "stills")
    source = ImageFolderSource(tmp_path / "stills")
    frames = _read_all(source)
    assert [Path(f.meta["path"]).name for f in frames] == ["img2.png", "img10.jpg"]  # natural order
    reasons = {Path(s.path).name: s.reason for s in source.skipped}
    assert set(reasons) == set(expected)
    for name, keyword in expected.items():
        assert keyword in reasons[name], (name, reasons[name])


def test_folder_source_pixel_limit_is_configurable(tmp_path: Path) -> None:
    make_bad_folder(tmp_path / "stills")
    source = ImageFolderSource(tmp_path / "stills", max_pixels=1000)
    assert _read_all(source) == []
    reasons = {Path(s.path).name: s.reason for s in source.skipped}
    assert "too large: 80x60 = 4800 pixels, limit 1000" in reasons["img2.png"]
    assert "too large" in reasons["img10.jpg"] and "too large" in reasons["huge.png"]


def test_folder_source_loops_over_good_files_only(tmp_path: Path) -> None:
    make_bad_folder(tmp_path / "stills")
    source = open_source(f"folder:{tmp_path / 'stills'}?loop=1")
    source.open()
    names = [Path(source.read().meta["path"]).name for _ in range(5)]  # type: ignore[union-attr]
    assert names == ["img2.png", "img10.jpg", "img2.png", "img10.jpg", "img2.png"]
    assert len(source.skipped) == 6  # each bad file reported once, not once per pass


def test_folder_source_ignores_masks_and_hidden_files(tmp_path: Path) -> None:
    make_bad_folder(tmp_path)
    (tmp_path / "img2.mask.png").write_bytes((tmp_path / "img2.png").read_bytes())
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    source = ImageFolderSource(tmp_path)
    assert len(_read_all(source)) == 2


def _reasons(source: ImageFolderSource) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in source.skipped}


def test_images_with_bytes_after_their_end_marker_are_read(tmp_path: Path) -> None:
    """Cameras append maker data or a preview after JPEG's end marker; decoders ignore it."""
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    tail = b"\x00\x00MakerNote" + jpg_bytes(image[:8, :8])  # a preview JPEG, as some cameras do
    (tmp_path / "a.jpg").write_bytes(jpg_bytes(image) + tail)
    (tmp_path / "b.png").write_bytes(png_bytes(image) + b"\x00" * 37)
    source = ImageFolderSource(tmp_path)
    frames = _read_all(source)
    assert source.skipped == []
    assert [Path(f.meta["path"]).name for f in frames] == ["a.jpg", "b.png"]
    assert frames[0].image.shape == (48, 64, 3) and np.array_equal(frames[1].image, image)


def _with_thumbnail(main: bytes, thumbnail: bytes) -> bytes:
    """`main` with an APP1 (EXIF) segment carrying a whole JPEG thumbnail, as cameras write."""
    payload = b"Exif\x00\x00" + thumbnail
    return main[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + main[2:]


def test_a_cut_jpeg_is_truncated_even_when_its_thumbnail_has_an_end_marker(
    tmp_path: Path,
) -> None:
    image = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    whole = _with_thumbnail(jpg_bytes(image), jpg_bytes(image[:8, :8]))
    (tmp_path / "whole.jpg").write_bytes(whole)
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) - 200])
    (tmp_path / "cut_in_exif.jpg").write_bytes(whole[:300])
    source = ImageFolderSource(tmp_path)
    assert [Path(f.meta["path"]).name for f in _read_all(source)] == ["whole.jpg"]
    reasons = _reasons(source)
    assert "truncated JPEG" in reasons["cut.jpg"] and "truncated JPEG" in reasons["cut_in_exif.jpg"]


@pytest.mark.parametrize("ext", [".bmp", ".tif", ".webp"])
def test_large_bmp_tiff_webp_are_skipped_from_their_header_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str
) -> None:
    image = np.random.default_rng(5).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    (tmp_path / f"big{ext}").write_bytes(buf.tobytes())
    decoded: list[int] = []
    real_imdecode = cv2.imdecode

    def counting_imdecode(*args: object) -> object:
        decoded.append(1)
        return real_imdecode(*args)

    monkeypatch.setattr(cv2, "imdecode", counting_imdecode)
    source = ImageFolderSource(tmp_path, max_pixels=10_000)
    assert _read_all(source) == []
    assert "too large: 120x100 = 12000 pixels, limit 10000" in _reasons(source)[f"big{ext}"]
    assert decoded == []  # refused from the header alone
    allowed = ImageFolderSource(tmp_path, max_pixels=12_000)
    assert [f.image.shape for f in _read_all(allowed)] == [(100, 120, 3)]


def test_a_bmp_header_claiming_an_enormous_image_is_skipped(tmp_path: Path) -> None:
    header = b"BM" + bytes(12) + (40).to_bytes(4, "little")
    header += (60_000).to_bytes(4, "little") + (-60_000).to_bytes(4, "little", signed=True)
    (tmp_path / "bomb.bmp").write_bytes(header + bytes(64))
    source = ImageFolderSource(tmp_path)
    assert _read_all(source) == []
    assert "too large: 60000x60000" in _reasons(source)["bomb.bmp"]


def test_a_file_over_the_byte_limit_is_skipped_before_it_is_read(tmp_path: Path) -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    (tmp_path / "a.bmp").write_bytes(cv2.imencode(".bmp", image)[1].tobytes())
    source = ImageFolderSource(tmp_path, max_file_bytes=1000)
    assert _read_all(source) == []
    assert "file too large: 4854 bytes, limit 1000" in _reasons(source)["a.bmp"]


def test_missing_or_non_folder_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        ImageFolderSource(tmp_path / "nope").open()
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(SourceError, match="not a folder"):
        ImageFolderSource(tmp_path / "f.txt").open()


# ---------------------------------------------------------------------- capture thread


def test_capture_delivers_every_frame_of_a_finite_source() -> None:
    log = StateLog()
    source = ListSource(_gray_frames(60), live=False)
    with Capture(source, queue_size=3, on_state=log) as cap:
        frames = list(cap)
    assert [f.index for f in frames] == list(range(60))
    counts = cap.counts()
    assert (counts.frames_read, counts.frames_dropped) == (60, 0)
    assert log.states == [CaptureState.CONNECTED, CaptureState.ENDED]
    assert not cap.running


def test_live_source_drops_oldest_frames_when_reader_is_slow() -> None:
    log = StateLog()
    cap = Capture(ListSource(_gray_frames(100), live=True), queue_size=5, on_state=log).start()
    assert log.ended.wait(10)  # the reader has not read anything yet
    frames = list(cap)
    cap.stop()
    assert [f.index for f in frames] == [95, 96, 97, 98, 99]
    assert cap.counts().frames_dropped == 95


def test_dropped_stream_reconnects_with_backoff_and_reports_states() -> None:
    log = StateLog()
    source = ListSource(_gray_frames(30), live=True, fail_after=10, reopen_failures=2)
    with Capture(source, queue_size=64, on_state=log, backoff=FAST) as cap:
        assert log.ended.wait(10)
        frames = list(cap)
    assert [f.index for f in frames] == list(range(30))
    assert cap.counts().reconnects == 2
    s = log.states
    assert s[0] == CaptureState.CONNECTED and s[-1] == CaptureState.ENDED
    lost = s.index(CaptureState.LOST)
    # lost, then three attempts (two fail), then connected again
    assert s[lost : lost + 5] == [
        CaptureState.LOST,
        CaptureState.RECONNECTING,
        CaptureState.RECONNECTING,
        CaptureState.RECONNECTING,
        CaptureState.CONNECTED,
    ]
    assert s.count(CaptureState.LOST) == 2


def test_backoff_delays_grow_to_a_cap() -> None:
    b = Backoff(initial_s=0.5, factor=2.0, maximum_s=3.0)
    assert [b.delay(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_capture_gives_up_after_max_reconnect_attempts() -> None:
    log = StateLog()
    source = ListSource(_gray_frames(30), live=True, fail_after=3, reopen_failures=99)
    backoff = Backoff(initial_s=0.001, maximum_s=0.002, max_attempts=3)
    with Capture(source, on_state=log, backoff=backoff) as cap:
        assert log.ended.wait(10)
        assert len(list(cap)) == 3
    assert cap.counts().error is not None and "gave up after 3" in cap.counts().error
    assert log.states.count(CaptureState.RECONNECTING) == 3


def test_capture_start_raises_when_the_source_cannot_be_opened(tmp_path: Path) -> None:
    cap = Capture(ImageFolderSource(tmp_path / "missing"))
    with pytest.raises(SourceError):
        cap.start()
    assert not cap.running


def test_stop_ends_an_endless_source_and_joins_the_thread() -> None:
    source = SyntheticLineSource(small_config(width=160, height=90))
    cap = Capture(source, queue_size=2).start()
    assert cap.get(timeout=10) is not None
    cap.stop()
    assert not cap.running
    assert cap.counts().state == CaptureState.ENDED


def test_a_failing_state_callback_does_not_stop_capture() -> None:
    def bad(state: CaptureState, detail: str) -> None:
        raise RuntimeError("UI bug")

    with Capture(ListSource(_gray_frames(10)), on_state=bad) as cap:
        assert len(list(cap)) == 10


# ---------------------------------------------------------------------- synthetic as a source


def test_synthetic_spec_gives_frames_with_ground_truth() -> None:
    source = open_source("synthetic:seed=3,width=160,height=90,max_items=2,realtime=0")
    frames = _read_all(source)
    assert source.live is False
    dwell = [f for f in frames if f.meta["phase"] == "dwell"]
    assert {f.meta["item_id"] for f in dwell} == {0, 1}
    assert all(
        f.meta["truth"] in {"ok", "crack", "scratch", "dent", "stain", "missing"} for f in dwell
    )
    assert all(f.meta["truth"] is None for f in frames if f.meta["phase"] == "empty")
    assert frames[-1].index == len(frames) - 1


def test_realtime_synthetic_source_is_live() -> None:
    assert open_source("synthetic:width=160,height=90").live is True
    assert open_source("synthetic:width=160,height=90", realtime=False).live is False


def test_realtime_synthetic_source_paces_frames_at_its_fps() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    source = SyntheticLineSource(
        small_config(width=160, height=90, fps=20.0, realtime=True),
        clock=lambda: now[0],
        sleep=sleep,
    )
    source.open()
    stamps = [source.read().timestamp for _ in range(5)]  # type: ignore[union-attr]
    assert stamps == pytest.approx([100.0, 100.05, 100.1, 100.15, 100.2])
    assert slept == pytest.approx([0.05] * 4)
    now[0] += 1.0  # the reader fell behind by a second: no sleeping until it has caught up
    source.read()
    assert len(slept) == 4
