"""Evaluation reports and the `station model` commands."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from model_images import write_folder

from model import DataError, Predictor, evaluate, write_report
from model.predictor import bundled_model_path
from station.cli import app
from station.cli.common import run_guarded


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def station(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`station ...` in this process (torch is already loaded; a child would reload it)."""

    def run(*args: str) -> Ran:
        monkeypatch.setattr("sys.argv", ["station", *args])
        capsys.readouterr()
        code = run_guarded(app)
        got = capsys.readouterr()
        return Ran(code, got.out, got.err)

    return run


def test_evaluate_reports_every_required_measure(trained, tmp_path: Path) -> None:
    report = evaluate(Predictor.load(trained.artifact), trained.heldout)
    for key in (
        "accuracy",
        "per_class",
        "confusion_matrix",
        "auroc_defect",
        "ece_before",
        "ece_after",
        "risk_coverage",
    ):
        assert key in report, key
    assert report["n"] == 60
    assert sum(map(sum, report["confusion_matrix"])) == 60
    assert report["auroc_defect"] > 0.8
    out = write_report(report, tmp_path / "r.json")
    assert json.loads(out.read_text())["accuracy"] == report["accuracy"]
    html = write_report(report, tmp_path / "r.html").read_text()
    assert "Risk / coverage" in html and "data:image/png;base64," in html
    assert "Defect vs defect-free" in html and "auto-pass" in html


def test_the_most_confident_mistakes_are_listed_for_a_look(trained, tmp_path: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(trained.heldout, data)
    # three defect-free pictures filed as scratches: the mistakes a QA lead should see first
    moved = sorted((data / "ok").glob("ok_00[0-2].png"))
    for f in moved:
        f.rename(data / "scratch" / f.name)
    report = evaluate(Predictor.load(trained.artifact), data)
    worst = report["most_confident_mistakes"]
    assert 0 < len(worst) <= 10
    confidences = [w["confidence"] for w in worst]
    assert confidences == sorted(confidences, reverse=True)
    assert all(w["truth"] != w["predicted"] for w in worst)
    assert all((data / w["file"]).is_file() for w in worst)
    misfiled = {f"scratch/{f.name}" for f in moved}
    assert misfiled & {w["file"] for w in worst}
    html = write_report(report, tmp_path / "r.html").read_text()
    assert "Most confident mistakes" in html and worst[0]["file"] in html


def test_ok_class_under_another_name_is_mapped(trained, tmp_path: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(trained.heldout, data)
    (data / "ok").rename(data / "free")
    p = Predictor.load(trained.artifact)
    with pytest.raises(DataError, match="free"):
        evaluate(p, data)
    report = evaluate(p, data, ok_class="free")
    assert report["per_class"]["ok"]["support"] == 20


def test_cli_train_info_evaluate(station, tmp_path: Path) -> None:
    data = write_folder(tmp_path / "d", {"ok": 16, "stain": 16})
    art = tmp_path / "art"
    res = station(
        "model",
        "train",
        "--data",
        str(data),
        "--out",
        str(art),
        "--epochs",
        "1",
        "--size",
        "48x32",
        "--fit",
        "letterbox",
        "--flips",
        "h, v",
        "--select-on",
        "auroc",
        "--batch-size",
        "8",
        "--no-onnx",
    )
    assert res.code == 0, res.err
    assert "artifact:" in res.out and (art / "manifest.json").is_file()
    # saved without an ONNX copy: torch serves, and info says why; add-onnx gives it one
    assert "served by     torch (the artifact has no ONNX copy (not asked for (--no-onnx)))" in (
        station("model", "info", str(art)).out
    )
    added = station("model", "add-onnx", str(art))
    assert added.code == 0 and "added model.onnx" in added.out, added.err
    assert "served by     onnxruntime (agrees with torch" in station("model", "info", str(art)).out
    refused = station("model", "add-onnx", str(bundled_model_path()))
    assert refused.code == 2 and "is the bundled model" in refused.err
    assert "on validation auroc" in res.out
    info = station("model", "info", str(art), "--json")
    assert info.code == 0 and json.loads(info.out)["classes"] == ["ok", "stain"]
    assert json.loads(info.out)["input"]["fit"] == "letterbox"
    assert json.loads(info.out)["test_time_flips"] == ["h", "v"]
    assert "(letterbox, averaged with h/v flips)" in station("model", "info", str(art)).out
    ev = station(
        "model", "evaluate", str(art), "--data", str(data), "--out", str(tmp_path / "r.json")
    )
    assert ev.code == 0, ev.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert "accuracy" in report and report["model"]["test_time_flips"] == ["h", "v"]


def test_cli_bad_inputs_are_one_line_errors(station, tmp_path: Path) -> None:
    write_folder(tmp_path / "one", {"ok": 2})
    write_folder(tmp_path / "two", {"ok": 2, "stain": 2})

    def train_on(folder: str, *extra: str) -> tuple[str, ...]:
        data, out = str(tmp_path / folder), str(tmp_path / "a")
        return ("model", "train", "--data", data, "--out", out, *extra)

    for args, words in (
        (train_on("one"), "at least 2 classes"),
        (("model", "info", str(tmp_path / "nothing")), "not one"),
        (train_on("one", "--arch", "nope"), "unknown architecture"),
        (train_on("two", "--crop", "320"), "expected --crop WxH such as 320x192"),
        (
            train_on("two", "--fit", "squash"),
            "'squash' is not one of 'stretch', 'letterbox'",
        ),
        (train_on("two", "--flips", "h,d"), "test-time flips among h, v, hv"),
        (train_on("two", "--flips", "h,,v"), "expected --flips as comma-separated names"),
        (train_on("two", "--select-on", "accuracy"), "'accuracy' is not one of 'auto', 'nll'"),
    ):
        res = station(*args)
        assert res.code == 2, (args, res.out, res.err)
        assert words in res.err and "Traceback" not in res.err
        assert len(res.err.strip().splitlines()) == 1


@pytest.mark.skipif(
    not (bundled_model_path() / "manifest.json").is_file(), reason="no bundled model yet"
)
def test_bundled_model_loads_and_is_small(station) -> None:
    p = Predictor.load()
    assert p.manifest.ok_class == "ok"
    size = sum(f.stat().st_size for f in bundled_model_path().iterdir())
    assert size < 10 * 1024 * 1024
    res = station("model", "info")
    assert res.code == 0 and p.manifest.sha256 in res.out


def test_info_still_reads_an_artifact_that_cannot_be_loaded(station, trained, tmp_path) -> None:
    from artifact_copy import edited_copy

    def one_more_class(m: dict) -> None:
        m["classes"] = [*m["classes"], "extra"]

    art = edited_copy(trained.artifact, tmp_path / "extra", one_more_class)
    info = station("model", "info", str(art))
    assert info.code == 0, info.err
    assert (
        "served by     nothing: it cannot be loaded" in info.out
        and "weights do not fit" in info.out
    )


def test_the_engine_can_be_forced_from_the_environment_of_any_command(
    station, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model.serving import ENGINE_ENV

    monkeypatch.setenv(ENGINE_ENV, "torch")
    info = station("model", "info", str(bundled_model_path()))
    assert info.code == 0, info.err
    assert "served by     torch (torch was asked for)" in info.out
