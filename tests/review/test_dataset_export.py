"""`station dataset export`: verified labels only, their sources named, one image never on both
sides of the split (station/dataset.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from review_records import LABELS, Records
from sqlalchemy import text

from db.models import Level
from review.query import ReportFilters
from station.dataset import ExportRefused, export_dataset, split_of


def _images(engine, root: Path, *, missing: set[int] = frozenset(), phone=lambda i: i) -> None:
    """A real image file for every item (but `missing`), named by a real hash as the image store
    names them; items with the same `phone(item_id)` share one image (the same phone)."""
    root.mkdir(exist_ok=True)
    with engine.begin() as conn:
        for (item_id,) in conn.execute(text("SELECT id FROM item")).all():
            sha = hashlib.sha256(f"phone {phone(item_id)}".encode()).hexdigest()
            conn.execute(
                text("UPDATE item SET image_sha256 = :s WHERE id = :i"), {"s": sha, "i": item_id}
            )
            if item_id in missing:
                continue
            cv2.imwrite(str(root / f"{sha}.png"), np.full((24, 32, 3), item_id % 250, np.uint8))
            conn.execute(
                text("UPDATE item SET image_path = :p WHERE id = :i"),
                {"p": f"{sha}.png", "i": item_id},
            )


def _export(engine, tmp_path, **kw):
    kw.setdefault("holdout", 0.0)
    return export_dataset(
        engine,
        ReportFilters(),
        tmp_path / "out",
        image_root=tmp_path / "images",
        classes=list(LABELS.all),
        **kw,
    )


def test_only_verified_labels_are_exported_with_their_source(engine, fill, tmp_path):
    ids = {}

    def build(r: Records) -> None:
        ids["adjudicated"] = r.item("ok", "scratch", adjudicated="scratch")
        ids["synthetic"] = r.item("ok", "ok", ground_truth="crack")  # both missed it
        ids["golden"] = r.item("dent", None, golden=True, ground_truth="dent")
        ids["agreed"] = r.item("stain", "stain", level=Level.shadow)
        ids["shown"] = r.item("stain", "stain", level=Level.assist)  # suggestion shown
        ids["disagree"] = r.item("ok", "dent", level=Level.shadow)

    fill(build)
    _images(engine, tmp_path / "images")
    strict = _export(engine, tmp_path)
    got = {it.item_id: (it.label, it.source, it.weak) for it in strict.items}
    assert got == {
        ids["adjudicated"]: ("scratch", "adjudicated", False),
        ids["synthetic"]: ("crack", "known_truth", False),
        ids["golden"]: ("dent", "golden", False),
    }
    assert strict.skipped == {"no verified label": 3}
    files = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    )
    assert files == sorted(it.file for it in strict.items)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["by_source"] == {"adjudicated": 1, "golden": 1, "known_truth": 1}
    assert {m["item_id"] for m in manifest["items"]} == set(got)

    # With --include-agreed the shadow item where both agreed comes in, weak; never the item
    # decided with the suggestion shown (the inspector may have echoed the model).
    loose = export_dataset(
        engine,
        ReportFilters(),
        tmp_path / "loose",
        image_root=tmp_path / "images",
        classes=list(LABELS.all),
        include_agreed=True,
        holdout=0.0,
    )
    got = {it.item_id: (it.label, it.source, it.weak) for it in loose.items}
    assert got[ids["agreed"]] == ("stain", "agreed", True)
    assert ids["shown"] not in got and ids["disagree"] not in got


def test_one_image_never_lands_on_both_sides_and_weak_labels_stay_out_of_the_holdout(
    engine, fill, tmp_path
):
    def build(r: Records) -> None:
        for i in range(120):
            truth = "ok" if i % 3 else "crack"
            r.item(truth, truth, ground_truth=truth if i % 2 else None)

    fill(build)
    _images(engine, tmp_path / "images", phone=lambda i: (i + 1) // 2)  # each phone twice
    out = _export(engine, tmp_path, include_agreed=True, holdout=0.3)
    sides: dict[str, set[str]] = {}
    for it in out.items:
        sides.setdefault(it.image_sha256, set()).add(it.split)
        assert it.split == split_of(it.image_sha256, 0.3)
        assert not (it.weak and it.split == "holdout")
    assert all(len(s) == 1 for s in sides.values())
    assert {it.split for it in out.items} == {"train", "holdout"}
    assert out.skipped["weak label in the holdout share"] > 0
    assert (tmp_path / "out" / "holdout" / "crack").is_dir()


def test_missing_images_and_guard_refusals_are_counted_and_a_used_folder_refused(
    engine, fill, tmp_path
):
    fill(lambda r: [r.item("ok", "ok", ground_truth="ok") for _ in range(4)])
    with engine.begin() as conn:
        conn.execute(text("UPDATE item SET guard_passed = 0 WHERE id = 2"))
    _images(engine, tmp_path / "images", missing={3})
    out = _export(engine, tmp_path)
    assert [it.item_id for it in out.items] == [1, 4]
    assert out.skipped == {"refused by the input guard": 1, "image file missing": 1}
    with pytest.raises(ExportRefused, match="not an empty folder"):
        _export(engine, tmp_path)


def test_the_cli_exports_and_model_train_reads_the_folder(engine, db_url, fill, cli, tmp_path):
    from model.data import scan_folder

    fill(lambda r: [r.item("ok", "ok", ground_truth=("ok", "scratch")[i % 2]) for i in range(12)])
    images = tmp_path / "images"
    _images(engine, images)
    out = tmp_path / "ds"
    res = cli(
        "dataset", "export", "--out", str(out), "--format", "json", "--holdout", "0",
        "--db", db_url,
    )  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["images"] == 12 and summary["counts"]["train"] == {"ok": 6, "scratch": 6}
    scan = scan_folder(out / "train")
    assert scan.classes == ["ok", "scratch"] and len(scan.samples) == 12
    # The images of one phone form one group for the training split (the hash in the name).
    assert scan.group_by == "hash" and len({s.group for s in scan.samples}) == 12
    bad = cli("dataset", "export", "--out", str(out), "--db", db_url)
    assert bad.code == 2 and "not an empty folder" in bad.err


def test_an_unknown_station_or_nothing_verified_is_refused_and_nothing_written(
    engine, db_url, fill, cli, tmp_path
):
    fill(lambda r: [r.item("ok", "ok") for _ in range(3)])  # paired, but nothing verified
    _images(engine, tmp_path / "images")
    out = tmp_path / "ds"
    for args, words in (
        (("--station", "NOPE"), "no station is named 'NOPE'"),
        ((), "nothing to export from 3 item(s) (3 no verified label)"),
    ):
        res = cli("dataset", "export", "--out", str(out), "--db", db_url, *args)
        assert res.code == 2 and words in res.err, res.err
        assert len(res.err.strip().splitlines()) == 1 and not out.exists()
