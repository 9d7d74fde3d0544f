"""`station capture` and `station synth` end to end, through the real CLI entry point."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import typer
from frames_fixtures import line_frames, make_bad_folder, small_config, write_video

from station.cli import capture_cmd, synth_cmd
from station.cli.common import run_guarded
from station.errors import StationError


@pytest.fixture(autouse=True)
def no_capture_thread_left_behind() -> Iterator[None]:
    yield
    leaked = [
        t.name for t in threading.enumerate() if t.name.startswith("capture:") and t.is_alive()
    ]
    assert not leaked, f"capture threads still running after the test: {leaked}"


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """Test app with only the frames commands."""

    synth_cmd.register(app)
    capture_cmd.register(app)
    return app


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["station", *args])
    code = run_guarded(_app())
    out, err = capsys.readouterr()
    return code, out, err


def test_capture_from_the_synthetic_line_writes_items_with_truth(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "cap"
    code, stdout, _ = _run(
        monkeypatch,
        capsys,
        "capture",
        "--source",
        "synthetic:seed=4,width=320,height=180",
        "--max-items",
        "3",
        "--out",
        str(out),
    )
    assert code == 0, stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 3 and summary["stopped_by"] == "max items"
    assert summary["frames_read"] >= summary["frames_processed"] > 0
    assert summary["frames_dropped"] == 0 and summary["reconnects"] == 0
    assert [c["meta"]["item_id"] for c in summary["captured"]] == [0, 1, 2]
    for c in summary["captured"]:
        data = (out / c["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == c["sha256"]
        assert c["truth"] in {"ok", "crack", "scratch", "dent", "stain", "missing"}
        assert set(c["stats"]) == {
            "brightness",
            "contrast",
            "sharpness",
            "clipped_share",
            "width",
            "height",
            "chroma_rg",
            "chroma_yb",
        }
    assert "3 items" in stdout


def test_capture_from_a_folder_counts_skipped_files_and_goes_on(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    expected = make_bad_folder(tmp_path / "stills")
    out = tmp_path / "cap"
    code, stdout, _ = _run(
        monkeypatch,
        capsys,
        "capture",
        "--source",
        f"folder:{tmp_path / 'stills'}",
        "--max-items",
        "10",
        "--out",
        str(out),
        "--plain",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 2 and summary["stopped_by"] == "source ended"
    assert {Path(s["path"]).name for s in summary["skipped"]} == set(expected)
    assert sorted(p.name for p in (out / "items").iterdir()) == ["item_00001.png", "item_00002.png"]
    assert "skipped files 6" in stdout


def test_capture_from_a_video_file(tmp_path: Path, monkeypatch, capsys) -> None:
    video = write_video(
        tmp_path / "line.avi", [f.image for f in line_frames(small_config(seed=2), 3)]
    )
    out = tmp_path / "cap"
    code, _, _ = _run(
        monkeypatch,
        capsys,
        "capture",
        "--source",
        f"file:{video}",
        "--max-items",
        "9",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 3 and summary["stopped_by"] == "source ended"
    assert [s["state"] for s in summary["states"]] == ["connected", "ended"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("camera-one", "accepted forms"),
        ("file:/nonexistent/line.mp4", "does not exist"),
        ("synthetic:speed=3", "unknown synthetic parameter"),
        ("synthetic:travel_s=nan", "travel_s must be a finite number, got nan"),
        ("synthetic:dwell_s=inf", "dwell_s must be a finite number, got inf"),
        ("synthetic:mix=crack:nan", "mix weight of crack must be a finite number >= 0, got nan"),
        ("synthetic:dwell_s=1e9", "dwell_s must be in (0, 3600] seconds, got 1000000000.0"),
    ],
)
def test_capture_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, monkeypatch, capsys, spec: str, message: str
) -> None:
    code, _, err = _run(
        monkeypatch, capsys, "capture", "--source", spec, "--out", str(tmp_path / "cap")
    )
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_synth_exports_the_requested_items(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "ds"
    code, stdout, _ = _run(
        monkeypatch,
        capsys,
        "synth",
        "--n",
        "6",
        "--seed",
        "3",
        "--out",
        str(out),
        "--width",
        "320",
        "--height",
        "180",
        "--defect-rate",
        "0.5",
        "--options",
        "light=0.8",
        "--quiet",
    )
    assert code == 0, stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["seed"] == 3 and manifest["config"]["light"] == 0.8 and len(manifest["items"]) == 6
    )
    first = manifest["items"][0]
    assert cv2.imread(str(out / first["file"])).shape == (180, 320, 3)
    assert "wrote 6 items" in stdout


def test_synth_refuses_a_non_empty_folder_and_conflicting_options(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "x.txt").write_text("x")
    code, _, err = _run(monkeypatch, capsys, "synth", "--n", "1", "--out", str(tmp_path / "ds"))
    assert code == 2 and "not empty" in err
    code, _, err = _run(
        monkeypatch,
        capsys,
        "synth",
        "--n",
        "1",
        "--seed",
        "2",
        "--options",
        "seed=3",
        "--out",
        str(tmp_path / "new"),
    )
    assert code == 2 and "both" in err


def test_synth_workers_option_reaches_the_export_and_gives_the_same_files(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import station.synth.export as export

    real = export.export_dataset
    workers_seen: list[int] = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        workers_seen.append(kwargs["workers"])
        return real(*args, **kwargs)

    monkeypatch.setattr(export, "export_dataset", spy)
    common = ["synth", "--n", "5", "--seed", "4", "--width", "96", "--height", "64", "--quiet"]
    common += ["--defect-rate", "0.6"]
    for workers in ("1", "2"):
        code, stdout, err = _run(
            monkeypatch, capsys, *common, "--workers", workers, "--out", str(tmp_path / workers)
        )
        assert code == 0, err
    assert workers_seen == [1, 2]
    one = sorted(p.relative_to(tmp_path / "1") for p in (tmp_path / "1").rglob("*.png"))
    two = sorted(p.relative_to(tmp_path / "2") for p in (tmp_path / "2").rglob("*.png"))
    assert one == two and len(one) == 10  # 5 images + 5 masks
    for rel in one:
        assert (tmp_path / "1" / rel).read_bytes() == (tmp_path / "2" / rel).read_bytes()
    assert (tmp_path / "1" / "manifest.json").read_bytes() == (
        tmp_path / "2" / "manifest.json"
    ).read_bytes()


def test_synth_overwrite_leaves_only_the_new_export_in_the_class_folders(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "ds"
    base = ["synth", "--width", "96", "--height", "64", "--quiet", "--out", str(out)]
    code, _, err = _run(monkeypatch, capsys, *base, "--n", "8", "--seed", "1")
    assert code == 0, err
    code, _, err = _run(monkeypatch, capsys, *base, "--n", "3", "--seed", "2", "--overwrite")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {e["file"] for e in manifest["items"]} | {e["mask"] for e in manifest["items"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert on_disk == listed and len(listed) == 6


def test_capture_refuses_a_timeout_that_is_not_a_number(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    args = ["capture", "--source", "synthetic:width=96,height=64", "--out", str(tmp_path / "c")]
    code, _, err = _run(monkeypatch, capsys, *args, "--timeout-s", "nan")
    assert code == 2 and "--timeout-s" in err and "Traceback" not in err
    with pytest.raises(StationError, match="finite number of seconds >= 0, got nan"):
        capture_cmd.run_capture("synthetic", tmp_path / "c", max_items=1, timeout_s=float("nan"))
    assert not (tmp_path / "c").exists()
