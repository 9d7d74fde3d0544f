"""`station model retrain`: export -> train from the champion -> paired comparison on the
holdout -> register -> shadow challenger (station/retrain.py, station/compare.py)."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from db.engine import session_scope
from db.models import Item, Role
from db.repo import find_operator, get_or_create_station, record_inspection
from model import TrainConfig, train
from station.errors import AuthError
from station.pipeline.testing import ensure_operator, open_station_db
from station.registry import deploy_version, lineup, register_artifact
from station.retrain import RetrainRefused, next_version, retrain
from station.settings import Settings

CLASSES = list(Settings().labels.all)  # ok, crack, scratch, dent, stain, missing
SIZE = (96, 64)


def phone(label: str, rng: np.random.Generator) -> np.ndarray:
    """A dark phone on a grey table, and the defect drawn on it."""
    w, h = SIZE
    img = np.clip(128 + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)
    cv2.rectangle(img, (12, 9), (w - 12, h - 9), (30, 30, 34), -1)
    if label == "scratch":
        x, y = int(rng.integers(16, 60)), int(rng.integers(14, 48))
        cv2.line(img, (x, y), (x + 18, y + int(rng.integers(-6, 7))), (230, 230, 230), 1)
    elif label == "stain":
        cv2.circle(
            img, (int(rng.integers(24, 70)), int(rng.integers(18, 44))), 4, (90, 140, 170), -1
        )
    return img


@pytest.fixture
def line(tmp_path):
    """A station whose champion is a tiny model trained on a folder, and 150 items of the line
    with known truth and their images."""
    settings = Settings(data_dir=tmp_path, station_name="A1")
    engine = open_station_db(settings.effective_database_url)
    rng = np.random.default_rng(0)
    folder = tmp_path / "first"
    for label in CLASSES:
        (folder / label).mkdir(parents=True)
        for i in range(16):
            cv2.imwrite(str(folder / label / f"{label}_{i}.png"), phone(label, rng))
    champ = train(
        folder, tmp_path / "champ", TrainConfig(epochs=1, input_size=SIZE, name="tiny", version="1")
    ).path
    ensure_operator(engine, "eve", Role.engineer)
    with session_scope(engine) as s:
        eve = find_operator(session=s, name="eve")
    spec = register_artifact(engine, settings, champ, operator=eve).spec
    deploy_version(engine, settings, spec, "champion", operator=eve, reason="first model")
    settings.image_dir.mkdir(parents=True, exist_ok=True)
    with session_scope(engine) as s:
        station = get_or_create_station(session=s, name="A1")
        for i in range(150):
            label = ("ok", *CLASSES)[i % (len(CLASSES) + 1)]
            img = phone(label, rng)
            sha = hashlib.sha256(img.tobytes()).hexdigest()
            cv2.imwrite(str(settings.image_dir / f"{sha}.png"), img)
            record_inspection(
                session=s,
                item=Item(
                    station_id=station.id,
                    image_sha256=sha,
                    image_path=f"{sha}.png",
                    ground_truth=label,
                    source="synthetic",
                ),
            )
    return settings, engine, eve, spec


def test_retrain_makes_a_shadow_challenger_with_a_paired_comparison(line, tmp_path, cli):
    settings, engine, eve, champion = line
    out = tmp_path / "models" / "tiny-2"
    done = retrain(
        engine, settings, out=out, operator=eve, epochs=1, input_size=SIZE, min_holdout=10
    )
    assert done.spec == "tiny:2" and done.champion == champion
    assert (out / "manifest.json").is_file() and (
        out.parent / "tiny-2.data" / "manifest.json"
    ).is_file()
    c = json.loads((out.parent / "tiny-2.comparison.json").read_text())
    held = sum(done.export.counts()["holdout"].values())
    assert c["images"] == held >= 10 and c["models"] == [champion, "tiny:2"]
    m = c["mcnemar"]
    assert m["champion_right_challenger_wrong"] + m["challenger_right_champion_wrong"] <= held
    assert c["verdict"]["favours"] in ("champion", "challenger") and c["verdict"]["why"]
    assert "Favours the" in (out.parent / "tiny-2.comparison.html").read_text()
    with session_scope(engine) as s:
        up = lineup(s, get_or_create_station(session=s, name="A1").id)
        assert up.champion.version == "1" and up.challenger.version == "2"
    listed = cli(
        "model",
        "list",
        env={"STATION_DATA_DIR": str(tmp_path)},
    )
    assert "tiny:2" in listed.out and "challenger" in listed.out


def test_retrain_refuses_what_it_cannot_do_well(line, tmp_path):
    settings, engine, eve, _ = line
    with pytest.raises(RetrainRefused, match="held-out verified images: expected at least 500"):
        retrain(engine, settings, out=tmp_path / "x", operator=eve, epochs=1, min_holdout=500)
    (tmp_path / "used").mkdir()
    with pytest.raises(RetrainRefused, match="exists"):
        retrain(engine, settings, out=tmp_path / "used", operator=eve)
    ensure_operator(engine, "lan")
    with session_scope(engine) as s:
        lan = find_operator(session=s, name="lan")
    with pytest.raises(AuthError):
        retrain(engine, settings, out=tmp_path / "y", operator=lan)
    other = Settings(data_dir=tmp_path, station_name="B9")
    with pytest.raises(RetrainRefused, match="has no champion"):
        retrain(engine, other, out=tmp_path / "z", operator=eve)


def test_next_version():
    assert [next_version(v) for v in ("2", "v7", "1.4", "beta")] == ["3", "v8", "1.5", "beta-r1"]


def test_the_cli_retrains_and_says_what_the_comparison_favours(line, tmp_path, cli):
    from station.pipeline.testing import TEST_SECRET

    out = tmp_path / "models" / "tiny-7"
    args = ["model", "retrain", "--out", str(out), "--user", "eve", "--version", "7"]
    args += ["--size", "96x64", "--epochs", "1", "--holdout", "0.4"]
    res = cli(*args, input=TEST_SECRET + "\n", env={"STATION_DATA_DIR": str(tmp_path)})
    assert res.code == 0, res.err
    assert "tiny:7 trained on" in res.out and "favours the" in res.out
    assert "runs at the station as the shadow challenger" in res.out
    assert (out.parent / "tiny-7.comparison.html").is_file()
    again = cli(*args, input=TEST_SECRET + "\n", env={"STATION_DATA_DIR": str(tmp_path)})
    assert again.code == 2 and "exists: expected a new artifact folder" in again.err


def _scored(truth, pred, classes):
    from station.compare import Scored

    probs = np.zeros((len(truth), len(classes)))
    probs[np.arange(len(truth)), [classes.index(p) for p in pred]] = 1.0
    return Scored(
        [f"{i}.png" for i in range(len(truth))], np.array([classes.index(t) for t in truth]), probs
    )


def test_the_verdict_needs_mcnemar_and_no_class_passed_as_ok_more_often():
    from station.compare import compare

    classes = ["ok", "crack", "stain"]
    truth = ["ok"] * 60 + ["crack"] * 30 + ["stain"] * 30
    champ = ["ok"] * 60 + ["crack"] * 30 + ["ok"] * 30  # passes every stain
    better = ["ok"] * 60 + ["crack"] * 30 + ["stain"] * 30
    c = compare(
        _scored(truth, champ, classes), _scored(truth, better, classes), classes, "ok", 0.01
    )
    assert c["verdict"]["favours"] == "challenger" and c["mcnemar"]["p_value"] < 0.05
    assert c["champion"]["missed"]["stain"]["rate"] == 1.0
    # Right more often overall, but now passing cracks as ok: the champion stays.
    risky = ["ok"] * 60 + ["ok"] * 12 + ["crack"] * 18 + ["stain"] * 30
    c = compare(_scored(truth, champ, classes), _scored(truth, risky, classes), classes, "ok", 0.01)
    assert (
        c["mcnemar"]["challenger_right_champion_wrong"]
        > c["mcnemar"]["champion_right_challenger_wrong"]
    )
    assert (
        c["verdict"]["favours"] == "champion" and "passes more crack as ok" in c["verdict"]["why"]
    )
    # Calling a stain a crack is a wrong label, not an escape: no veto.
    mixed = ["ok"] * 60 + ["crack"] * 30 + ["crack"] * 10 + ["stain"] * 20
    c = compare(_scored(truth, champ, classes), _scored(truth, mixed, classes), classes, "ok", 0.01)
    assert c["verdict"]["favours"] == "challenger"
    # Two cracks passed by the challenger alone: not significant, so it is favoured, and the
    # verdict names the class to watch.
    slight = ["ok"] * 60 + ["ok"] * 2 + ["crack"] * 28 + ["stain"] * 30
    c = compare(
        _scored(truth, champ, classes), _scored(truth, slight, classes), classes, "ok", 0.01
    )
    assert c["verdict"]["favours"] == "challenger" and "watch crack" in c["verdict"]["why"]
    assert c["escapes_paired"]["crack"] == {
        "only_champion": 0,
        "only_challenger": 2,
        "p_challenger_worse": 0.25,
    }
    same = compare(
        _scored(truth, champ, classes), _scored(truth, champ, classes), classes, "ok", 0.01
    )
    assert same["verdict"]["favours"] == "champion" and "no significant" in same["verdict"]["why"]


def test_bad_retrain_options_are_refused_before_the_secret_is_asked(cli, tmp_path):
    for args, words in (
        (("--size", "12"), "expected --size WxH"),
        (("--holdout", "3"), "--holdout"),
    ):
        res = cli(
            "model", "retrain", "--out", str(tmp_path / "m"), "--user", "eve", *args, input=""
        )
        assert res.code == 2 and words in res.err and "secret" not in res.err, res.err
        assert not (tmp_path / "m").exists()
