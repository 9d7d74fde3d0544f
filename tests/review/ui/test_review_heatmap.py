"""The heat-map in the review window (H): drawn by the model version that judged the item, opened
on a thread of its own on first use, and a short reason in the window when it cannot be drawn."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.models import AdjudicationRequest, Item, ModelVersion
from review.heatmaps import ModelRef
from review.ui import ReviewWindow
from review.ui.heat import to_bgr
from station.heatmaps import model_opener


@pytest.fixture(scope="module")
def crack() -> np.ndarray:
    """A synthetic-line phone with a crack, which the bundled model (and its variants) finds."""
    from station.synth.config import SynthConfig
    from station.synth.render import item_label, render_item

    line = SynthConfig(seed=0, width=640, height=368, realtime=False)
    index = next(i for i in range(200) if item_label(line, i) == "crack")
    return render_item(line, index).image


def _judged_by(engine: Engine, version: str, *, artifact: str, sha256: str | None = None) -> None:
    """Point the record's model version at an artifact (its own sha256 unless told otherwise)."""
    from model import read_manifest

    if sha256 is None:
        sha256 = read_manifest(Path(artifact))["sha256"]
    with Session(engine) as s:
        s.execute(
            update(ModelVersion)
            .where(ModelVersion.version == version)  # type: ignore[arg-type]
            .values(artifact_path=artifact, sha256=sha256)
        )
        s.commit()


def _shown(w: ReviewWindow) -> np.ndarray:
    return to_bgr(w.viewer.pixmap().toImage())


def _wait_heat(qtbot, w: ReviewWindow) -> None:
    qtbot.waitUntil(lambda: not w.heat_loading, timeout=60_000)


def test_h_overlays_the_map_of_the_model_that_judged_the_item(
    qtbot, engine, records, open_window, artifacts, crack, tmp_path: Path
) -> None:
    from model import Predictor

    records(("ok", "crack"), version="v3", image=crack)
    _judged_by(engine, "v3", artifact=str(artifacts["v3"]))
    w = open_window(open_model=model_opener(tmp_path))
    assert "heat-map off" in w.heat_status.text() and w._heat_thread is None  # nothing loaded yet
    plain = _shown(w)

    qtbot.keyClick(w.gallery, Qt.Key.Key_H)
    assert w.heat_on and w.heat_button.isChecked()
    assert "loading model defect:v3" in w.heat_status.text()  # said before the model is in
    _wait_heat(qtbot, w)

    shown = _shown(w)
    assert shown.shape == plain.shape == crack.shape
    assert "heat-map on" in w.heat_status.text() and "defect:v3" in w.heat_status.text()
    heat = Predictor.load(artifacts["v3"]).explain(crack) * 0.9  # the record's P(defect)
    hot = np.unravel_index(np.argmax(heat), heat.shape)
    b, g, r = (int(c) for c in shown[hot])
    assert heat[hot] > 0.5 and r > b + 40 and r > g  # red where the map is high ...
    cold = heat < 0.01
    assert np.abs(shown[cold].astype(int) - plain[cold]).max() <= 2  # ... the image elsewhere

    qtbot.keyClick(w.gallery, Qt.Key.Key_H)  # off: the plain image again
    assert np.array_equal(_shown(w), plain) and "heat-map off" in w.heat_status.text()
    w.heat_button.click()  # on again: from the cache, at once
    assert not w.heat_loading and np.array_equal(_shown(w), shown)


@pytest.mark.parametrize(
    ("artifact", "sha256", "reason"),
    [
        ("missing", None, "the artifact of model defect:v7 is not on this machine"),
        ("", None, "model defect:v7 has no artifact on record"),
        ("garbage", None, "model defect:v7 cannot be loaded"),
        ("v4", "0" * 64, "holds other weights (sha"),
    ],
)
def test_an_item_whose_model_cannot_be_opened_says_why_and_keeps_its_image(
    qtbot, engine, records, open_window, artifacts, tmp_path: Path, artifact, sha256, reason
) -> None:
    records(("ok", "crack"), version="v7")
    folder = {"missing": tmp_path / "gone", "garbage": tmp_path / "garbage"}.get(artifact)
    if artifact == "garbage":
        folder.mkdir()
        (folder / "manifest.json").write_text("{not json")
    path = str(artifacts[artifact]) if artifact in artifacts else str(folder or "")
    _judged_by(engine, "v7", artifact=path, sha256=sha256 or "f" * 64)
    w = open_window(open_model=model_opener(tmp_path))
    plain = _shown(w)

    qtbot.keyClick(w.gallery, Qt.Key.Key_H)
    _wait_heat(qtbot, w)

    text = w.heat_status.text()
    assert text.startswith("no heat-map: ") and reason in text
    assert "Traceback" not in text and "\n" not in text
    assert np.array_equal(_shown(w), plain)


class BlockedModel:
    """An OpenModel that waits for the test before answering, and notes the threads it ran on."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.opened: list[str] = []
        self.threads: set[int] = set()

    def __call__(self, ref: ModelRef) -> BlockedModel:
        self.threads.add(threading.get_ident())
        self.opened.append(ref.spec)
        assert self.release.wait(30)
        return self

    def explain(self, bgr: np.ndarray) -> np.ndarray:
        self.threads.add(threading.get_ident())
        return np.ones(bgr.shape[:2], np.float32)


def test_the_model_loads_off_the_gui_thread_while_the_window_stays_usable(
    qtbot, records, open_window
) -> None:
    records(("ok", "dent"), ("ok", "dent"))
    opener = BlockedModel()
    w = open_window(open_model=opener)
    start = w.current_row().item_id

    qtbot.keyClick(w.gallery, Qt.Key.Key_H)
    qtbot.waitUntil(lambda: opener.opened == ["defect:v1"])  # the worker is inside the load
    qtbot.keyClick(w.gallery, Qt.Key.Key_PageDown)  # the GUI thread answers meanwhile
    assert w.current_row().item_id != start and "loading model defect:v1" in w.heat_status.text()
    opener.release.set()
    _wait_heat(qtbot, w)

    assert threading.get_ident() not in opener.threads
    assert opener.opened == ["defect:v1"]  # once per model version, not per item
    assert "heat-map on" in w.heat_status.text() and _shown(w)[0, 0, 2] > _shown(w)[0, 0, 0]
    qtbot.keyClick(w.gallery, Qt.Key.Key_PageUp)  # the first item's map, drawn meanwhile
    assert w.current_row().item_id == start
    assert not w.heat_loading and "heat-map on" in w.heat_status.text()


def test_an_item_without_a_model_prediction_says_so(
    qtbot, engine, records, open_window, tmp_path: Path
) -> None:
    (item_id,) = records(("ok", None))
    with Session(engine) as s:
        station_id = s.get(Item, item_id).station_id
        s.add(AdjudicationRequest(item_id=item_id, station_id=station_id, reason="challenge"))
        s.commit()
    w = open_window(open_model=model_opener(tmp_path))
    assert w.awaiting_button.text() == "Awaiting adjudication (1)"
    w.awaiting_button.click()
    qtbot.waitUntil(lambda: not w.loading and w.gallery.count() == 1)
    # why it waits, beside the item
    qtbot.waitUntil(lambda: "queued for adjudication" in w.info.text())
    assert "queued for adjudication: an automatic decision challenged by an inspector" in (
        w.info.text()
    )

    qtbot.keyClick(w.gallery, Qt.Key.Key_H)
    assert w.heat_status.text() == f"no heat-map: item #{item_id} has no model prediction"
    assert w._heat_thread is None  # nothing to load for it


def test_without_a_model_opener_the_window_says_where_heat_maps_come_from(
    qtbot, records, open_window
) -> None:
    records(("ok", "dent"))
    w = open_window()
    qtbot.keyClick(w.gallery, Qt.Key.Key_H)
    assert "station review" in w.heat_status.text()
