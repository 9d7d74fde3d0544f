"""Golden sets from real labelled images: registered by a QA lead from a folder, drawn among
line items to measure inspectors; synthetic renders only on the synthetic line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from db.engine import session_scope
from db.models import Role
from db.repo import find_operator
from station.frames.store import ImageStore
from station.golden import (
    GoldenRefused,
    RegisteredGolden,
    golden_source,
    register_folder,
    registered_samples,
)
from station.pipeline.intake import GoldenSamples
from station.pipeline.testing import TEST_SECRET, ensure_operator, open_station_db
from station.settings import Settings


def _folder(tmp_path):
    root = tmp_path / "golden"
    rng = np.random.default_rng(0)
    for label, n in (("ok", 3), ("scratch", 2)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
            cv2.imwrite(str(root / label / f"{i}.png"), img)
    (root / "scratch" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "ok" / "notes.txt").write_text("not an image")
    return root


def _engine(tmp_path):
    return open_station_db(f"sqlite:///{tmp_path / 'st.db'}")


def test_a_qa_lead_registers_a_folder_and_the_station_draws_from_it(tmp_path):
    engine = _engine(tmp_path)
    ensure_operator(engine, "quinn", Role.qa_lead)
    with session_scope(engine) as s:
        quinn = find_operator(session=s, name="quinn")
    store = ImageStore(tmp_path / "images")
    labels = Settings(data_dir=tmp_path).labels
    folder = _folder(tmp_path)
    out = register_folder(engine, store, folder, set_name="week49", labels=labels, operator=quinn)
    assert out.added == {"ok": 3, "scratch": 2}
    assert any("broken.png" in s and "truncated" in s for s in out.skipped)
    again = register_folder(engine, store, folder, set_name="week49", labels=labels, operator=quinn)
    assert again.added == {} and again.already == 5  # the same bytes are registered once
    samples = registered_samples(engine)
    assert len(samples) == 5 and all(store.exists(s.image_sha256) for s in samples)

    golden, note = golden_source(engine, 1.0, store, camera_source="usb:0")
    assert isinstance(golden, RegisteredGolden) and note is None
    frames = [golden.draw() for _ in range(20)]
    assert all(f is not None and f.meta["truth"] in ("ok", "scratch") for f in frames)
    truths = {f.meta["truth"] for f in frames if f is not None}
    assert truths == {"ok", "scratch"}


def test_only_the_synthetic_line_falls_back_to_synthetic_renders(tmp_path):
    engine = _engine(tmp_path)
    store = ImageStore(tmp_path / "images")
    synthetic, note = golden_source(engine, 0.05, store, camera_source="synthetic")
    assert isinstance(synthetic, GoldenSamples) and note is None
    real, note = golden_source(engine, 0.05, store, camera_source="usb:0")
    assert real is None and note is not None and "station golden add --folder" in note
    assert golden_source(engine, 0.0, store, camera_source="usb:0") == (None, None)


def test_bad_folders_and_roles_are_refused_with_what_was_expected(tmp_path):
    engine = _engine(tmp_path)
    ensure_operator(engine, "quinn", Role.qa_lead)
    ensure_operator(engine, "lan", Role.inspector)
    with session_scope(engine) as s:
        quinn = find_operator(session=s, name="quinn")
        lan = find_operator(session=s, name="lan")
    store = ImageStore(tmp_path / "images")
    labels = Settings(data_dir=tmp_path).labels
    with pytest.raises(GoldenRefused, match="not a folder"):
        register_folder(
            engine, store, tmp_path / "nope", set_name="x", labels=labels, operator=quinn
        )
    (tmp_path / "g" / "smudge").mkdir(parents=True)
    with pytest.raises(GoldenRefused, match="smudge are not classes"):
        register_folder(engine, store, tmp_path / "g", set_name="x", labels=labels, operator=quinn)
    with pytest.raises(Exception, match="register golden needs qa_lead"):
        register_folder(engine, store, _folder(tmp_path), set_name="x", labels=labels, operator=lan)


def test_golden_add_and_list_from_the_command_line(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 'st.db'}"
    engine = _engine(tmp_path)
    ensure_operator(engine, "quinn", Role.qa_lead)
    folder = _folder(tmp_path)
    env = {"STATION_DATA_DIR": str(tmp_path)}
    added = cli(
        "golden",
        "add",
        "--folder",
        str(folder),
        "--name",
        "w49",
        "--user",
        "quinn",
        "--db",
        url,
        input=TEST_SECRET + "\n",
        env=env,
    )
    assert added.code == 0, added.err
    assert "added 5 (3 ok, 2 scratch)" in added.out and "skipped" in added.out
    listed = cli("golden", "list", "--format", "json", "--db", url, env=env)
    assert json.loads(listed.out) == {"w49": {"ok": 3, "scratch": 2}}

    def retire():
        return cli(
            "golden",
            "retire",
            "--name",
            "w49",
            "--user",
            "quinn",
            "--db",
            url,
            input=TEST_SECRET + "\n",
            env=env,
        )

    retired = retire()
    assert retired.code == 0 and "5 images" in retired.out
    assert json.loads(cli("golden", "list", "--format", "json", "--db", url, env=env).out) == {}
    again = retire()
    assert again.code == 2 and "no active golden set 'w49'" in again.err
