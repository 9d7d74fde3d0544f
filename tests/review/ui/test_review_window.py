"""The review window, offscreen: matrix clicks, the gallery, keyboard adjudication, calm emptiness."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from db.models import Adjudication, Role
from review.ui import ReviewWindow, Selection


def _settle(qtbot, w: ReviewWindow) -> None:
    """Wait for the loader thread's answers (queries run off the GUI thread)."""
    qtbot.waitUntil(lambda: not w.loading, timeout=10_000)


def _adjudications(engine: Engine) -> list[tuple[int, str, str]]:
    with Session(engine) as s:
        rows = s.exec(select(Adjudication).order_by(Adjudication.id)).all()
        return [(a.item_id, a.label, a.reason_code) for a in rows]


def _click_cell(qtbot, w: ReviewWindow, human: str, model: str) -> None:
    row, col = w.matrix.index_of(human, model)
    rect = w.matrix.visualItemRect(w.matrix.item(row, col))
    qtbot.mouseClick(w.matrix.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    _settle(qtbot, w)


def test_clicking_a_matrix_cell_lists_its_items(qtbot, records, open_window) -> None:
    wanted = records(("ok", "scratch"), ("ok", "scratch"), ("ok", "scratch"))
    records(("scratch", "ok"), ("ok", "ok"), ("ok", "ok"), ("dent", "dent"))
    w = open_window()
    assert w.matrix.count("ok", "scratch") == 3 and w.matrix.count("ok", "ok") == 2
    assert w.gallery.count() == 4  # it opens on every disagreement

    _click_cell(qtbot, w, "ok", "scratch")

    assert w.selection == Selection("ok", "scratch", False)
    assert sorted(r.item_id for r in w.rows) == sorted(wanted)
    assert w.gallery.count() == 3
    assert "human ok × model scratch: 3 items" in w.gallery_title.text()
    qtbot.waitUntil(lambda: w.thumbnails_pending == 0)
    assert w.viewer.image_size.width() == 160  # the real image, not the placeholder
    assert "item #" in w.info.text() and "scratch" in w.info.text()


def test_the_summary_gives_agreement_and_kappa_with_their_intervals(
    qtbot, records, open_window
) -> None:
    from review.stats import cohens_kappa

    records(("ok", "scratch"), ("scratch", "ok"), ("ok", "ok"), ("ok", "ok"), ("dent", "dent"))
    records(("scratch", "scratch"), ("dent", "ok"), ("ok", "ok"))
    w = open_window()
    text = w.summary.text()
    assert "8 paired" in text and "agreement 62.5% (95% " in text
    k = cohens_kappa(w.cells.counts)
    assert f"kappa {k.value:.3f} (95% {k.ci95[0]:.3f}–{k.ci95[1]:.3f})" in text
    # Whatever the gate says, it never prints a bare None.
    assert "None" not in w.gate_label.text() and w.gate_label.text().startswith("station ")


def test_a_header_click_lists_a_whole_row(qtbot, records, open_window) -> None:
    records(("ok", "scratch"), ("ok", "ok"), ("dent", "ok"))
    w = open_window()
    w.matrix.verticalHeader().sectionClicked.emit(w.matrix.labels.index("ok"))
    _settle(qtbot, w)
    assert {r.human_label for r in w.rows} == {"ok"} and w.gallery.count() == 2


def test_keyboard_adjudication_saves_and_advances(qtbot, engine, records, open_window) -> None:
    ids = records(("ok", "scratch"), ("ok", "scratch"), ("ok", "scratch"))
    w = open_window()
    _click_cell(qtbot, w, "ok", "scratch")
    first, second = w.rows[0].item_id, w.rows[1].item_id

    qtbot.keyClick(w.gallery, Qt.Key.Key_2)  # scratch (as at the station): the human missed it
    assert w.chosen_label == "scratch" and w.chosen_reason == "human_missed"
    qtbot.keyClick(w.gallery, Qt.Key.Key_Return)

    assert _adjudications(engine) == [(first, "scratch", "human_missed")]
    assert w.current_index() == 1 and w.current_row().item_id == second
    assert "✓ scratch" in w.gallery.item(0).text()
    assert w.chosen_label is None and w.chosen_reason is None  # nothing carries over

    qtbot.keyClick(w.gallery, Qt.Key.Key_Space)  # ok ...
    assert w.chosen_reason == "model_false_reject"
    qtbot.keyClick(w.gallery, Qt.Key.Key_A)  # ... but a hard call
    qtbot.keyClick(w.gallery, Qt.Key.Key_Enter)
    assert _adjudications(engine)[-1] == (second, "ok", "ambiguous")
    assert w.current_index() == 2 and set(ids) >= {first, second}


def test_enter_in_the_note_saves_once_with_the_note(qtbot, engine, records, open_window) -> None:
    records(("ok", "dent"), ("ok", "dent"))
    w = open_window()
    qtbot.keyClick(w.gallery, Qt.Key.Key_3)  # dent
    w.note_edit.setFocus()
    qtbot.keyClicks(w.note_edit, "edge")
    qtbot.keyClick(w.note_edit, Qt.Key.Key_Return)
    with Session(engine) as s:
        notes = [a.note for a in s.exec(select(Adjudication)).all()]
    assert notes == ["edge"]
    assert w.current_index() == 1


def test_save_without_a_reason_says_what_is_missing(qtbot, engine, records, open_window) -> None:
    records(("ok", "dent"))
    w = open_window()
    qtbot.keyClick(w.gallery, Qt.Key.Key_Return)
    assert "pick the label first" in w.saved_label.text()
    qtbot.keyClick(w.gallery, Qt.Key.Key_4)  # stain: both were wrong, no obvious reason
    qtbot.keyClick(w.gallery, Qt.Key.Key_Return)
    assert "pick a reason code" in w.saved_label.text()
    assert _adjudications(engine) == []


def test_an_engineer_browses_but_cannot_adjudicate(qtbot, engine, records, open_window) -> None:
    records(("ok", "dent"))
    w = open_window(Role.engineer)
    assert w.browse_only.isVisible() and "needs a qa_lead" in w.browse_only.text()
    assert not w.save_button.isEnabled()
    qtbot.keyClick(w.gallery, Qt.Key.Key_1)
    qtbot.keyClick(w.gallery, Qt.Key.Key_M)
    qtbot.keyClick(w.gallery, Qt.Key.Key_Return)
    assert _adjudications(engine) == [] and "browse only" in w.saved_label.text()
    assert w.gallery.count() == 1  # browsing works


def test_an_empty_database_shows_a_clear_message(qtbot, open_window) -> None:
    w = open_window()
    assert w.message_label.isVisible()
    assert "the database holds no items yet" in w.message_label.text()
    assert w.gallery.count() == 0 and w.current_row() is None
    assert "no item selected" in w.info.text()
    qtbot.keyClick(w.gallery, Qt.Key.Key_1)
    qtbot.keyClick(w.gallery, Qt.Key.Key_Return)  # nothing to save: a message, no crash
    assert "select an item first" in w.saved_label.text()
    _click_cell(qtbot, w, "crack", "dent")
    assert w.gallery.count() == 0


def test_filters_narrow_the_matrix_and_a_bad_date_is_explained(qtbot, records, open_window) -> None:
    records(("ok", "dent"), ("ok", "ok"), station="A1")
    records(("ok", "dent"), station="B2")
    w = open_window()
    assert w.matrix.count("ok", "dent") == 2
    w.filter_bar.station.setCurrentIndex(w.filter_bar.station.findData("B2"))
    assert w.apply_filters()
    _settle(qtbot, w)
    assert w.matrix.count("ok", "dent") == 1 and w.matrix.count("ok", "ok") == 0
    assert "station B2" in w.gate_label.text()

    w.filter_bar.since.setText("2026-13-40")
    assert not w.apply_filters()
    assert w.filter_error.isVisible() and "is not a date" in w.filter_error.text()
    assert w.matrix.count("ok", "dent") == 1  # the last good view stays
    w.clear_filters()
    _settle(qtbot, w)
    assert w.matrix.count("ok", "dent") == 2 and not w.filter_error.isVisible()


def test_filters_that_match_nothing_say_so(qtbot, records, open_window) -> None:
    records(("ok", "dent"))
    w = open_window()
    w.filter_bar.since.setText("2030-01-01")
    assert w.apply_filters()
    _settle(qtbot, w)
    assert "no items match these filters" in w.message_label.text()


def test_export_writes_the_report_of_the_current_filters(
    qtbot, records, open_window, tmp_path: Path
) -> None:
    records(("ok", "dent"), ("ok", "ok"))
    w = open_window()
    summary = w.export_to(tmp_path / "review.html")
    assert summary is not None and (tmp_path / "review.html").is_file()
    assert summary["counts"]["items"] == 2 and "exported" in w.saved_label.text()
    pdf = w.export_to(tmp_path / "review.pdf")
    assert pdf is not None and pdf["pages"] >= 1
    assert (tmp_path / "review.pdf").read_bytes().startswith(b"%PDF-")
    assert w.export_to(tmp_path / "nowhere" / "review.html") is None
    assert "export failed" in w.saved_label.text() and "does not exist" in w.saved_label.text()
    assert w.export_to(tmp_path / "review.docx") is None


def test_zoom_keys_scale_the_large_view_and_zero_fits(qtbot, records, open_window) -> None:
    records(("ok", "dent"))
    w = open_window()
    fitted = w.viewer.zoom
    qtbot.keyClick(w.viewer, Qt.Key.Key_Plus)
    assert w.viewer.zoom == pytest.approx(fitted * 1.25)
    qtbot.keyClick(w.viewer, Qt.Key.Key_0)
    assert w.viewer.zoom == pytest.approx(fitted) and w.viewer.fitted
    assert isinstance(w.viewer.mapFromScene(0, 0), QPoint)


def test_only_the_latest_selection_is_shown_when_clicks_outrun_the_loader(
    qtbot, records, open_window
) -> None:
    records(("ok", "dent"), ("ok", "dent"), ("stain", "ok"))
    w = open_window()
    w.matrix.cell_chosen.emit("ok", "dent")
    w.matrix.cell_chosen.emit("ok", "ok")
    w.matrix.cell_chosen.emit("stain", "ok")  # no wait in between
    _settle(qtbot, w)
    assert w.selection == Selection("stain", "ok", False)
    assert [(r.human_label, r.model_label) for r in w.rows] == [("stain", "ok")]


def test_enter_in_a_date_box_applies_filters_and_saves_nothing(
    qtbot, engine, records, open_window
) -> None:
    records(("ok", "dent"))
    w = open_window()
    qtbot.keyClick(w.gallery, Qt.Key.Key_3)  # dent
    assert w.chosen_reason == "human_missed"
    w.filter_bar.since.setText("2030-01-01")
    qtbot.keyClick(w.filter_bar.since, Qt.Key.Key_Return)
    _settle(qtbot, w)
    assert _adjudications(engine) == []
    assert w.filters.since is not None and w.gallery.count() == 0
