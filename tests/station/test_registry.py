"""The model registry from the outside: `station model register | list | deploy | rollback |
retire | history`, who may use it, what it refuses, and what a station at a level makes of a new
champion's evidence."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch
from sqlmodel import select

from db.engine import session_scope
from db.models import Level, ModelVersion, Role
from db.repo import add_operator
from station.auth import hash_secret
from station.levels import level_of, set_level
from station.registry import RegistryRefused, deploy_version, register_artifact, rollback
from station.settings import load_settings


@pytest.fixture
def people(engine):
    with session_scope(engine) as s:
        eve = add_operator(session=s, name="eve", role=Role.engineer, secret_hash=hash_secret("e"))
        lan = add_operator(session=s, name="lan", role=Role.inspector, secret_hash=hash_secret("l"))
    return eve, lan


def settings_for(db_url: str):
    return load_settings(overrides={"database_url": db_url})[0]


def registered_versions(engine) -> list[str]:
    with session_scope(engine) as s:
        return [
            f"{m.name}:{m.version}" for m in s.exec(select(ModelVersion).order_by(ModelVersion.id))
        ]


def stored(db_url: str) -> list[str]:
    root = Path(db_url.removeprefix("sqlite:///")).parent / "models"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_register_copies_a_verified_artifact_into_the_store_and_lists_it(
    cli, db_url, engine, people, artifacts
):
    done = cli(
        "model", "register", str(artifacts["v3"]), "--user", "eve", "--db", db_url, input="e\n"
    )
    assert done.code == 0, done.err
    assert "synthetic-line:3 registered" in done.out
    sha = json.loads((artifacts["v3"] / "manifest.json").read_text())["sha256"]
    assert stored(db_url) == [sha]
    again = cli(
        "model", "register", str(artifacts["v3"]), "--user", "eve", "--db", db_url, input="e\n"
    )
    assert again.code == 0 and "already registered (same weights)" in again.out
    listed = cli("model", "list", "--format", "json", "--db", db_url)
    rows = json.loads(listed.out)["versions"]
    assert [(r["version"], r["registered_by"], r["role"]) for r in rows] == [
        ("synthetic-line:3", "eve", None)
    ]


def test_the_same_name_and_version_with_other_weights_is_refused_before_anything_is_stored(
    cli, db_url, engine, people, artifacts
):
    register_artifact(engine, settings_for(db_url), artifacts["v3"], operator=people[0])
    before = stored(db_url)
    other = cli(
        "model",
        "register",
        str(artifacts["v3-other"]),
        "--user",
        "eve",
        "--db",
        db_url,
        input="e\n",
    )
    assert other.code == 2 and other.err.count("\n") == 1
    assert "already registered with other weights" in other.err and "new version" in other.err
    assert stored(db_url) == before and registered_versions(engine) == ["synthetic-line:3"]


def test_bad_artifacts_and_an_inspector_are_refused_and_nothing_is_registered(
    cli, db_url, engine, people, artifacts, tmp_path
):
    import shutil

    from model.errors import ModelError
    from station.errors import AuthError, StationError
    from tests.model.artifact_copy import edited_copy

    eve, lan = people
    settings = settings_for(db_url)
    tampered = tmp_path / "tampered"
    shutil.copytree(artifacts["v4"], tampered)
    with open(tampered / "weights.pt", "ab") as f:
        f.write(b"x")
    pickled = tmp_path / "pickled"
    shutil.copytree(artifacts["v4"], pickled)
    with open(pickled / "weights.pt", "wb") as f:
        pickle.dump({"model": object()}, f)
    edited_copy(pickled, tmp_path / "pickled-rehashed", lambda m: None)
    wrong_classes = edited_copy(
        artifacts["v4"],
        tmp_path / "classes",
        lambda m: m.update(classes=[*m["classes"][:-1], "chip"]),
    )
    cases = {
        tampered: "changed after export",
        tmp_path / "pickled-rehashed": "pickled",
        wrong_classes: "station's labels",
        tmp_path / "nowhere": "no model folder",
    }
    for path, words in cases.items():
        with pytest.raises((ModelError, StationError, OSError), match=words):
            register_artifact(engine, settings, path, operator=eve)
    with pytest.raises(AuthError, match="deploy model needs engineer"):
        register_artifact(engine, settings, artifacts["v4"], operator=lan)
    # as the user meets it: one line, exit 2
    r = cli(
        "model",
        "register",
        str(tmp_path / "pickled-rehashed"),
        "--user",
        "eve",
        "--db",
        db_url,
        input="e\n",
    )
    assert r.code == 2 and r.err.startswith("error: ") and r.err.count("\n") == 1, r.err
    assert "refusing to load it" in r.err
    assert registered_versions(engine) == [] and stored(db_url) == []


def test_deploy_and_rollback_refuse_what_cannot_be_done_in_one_line(
    cli, db_url, engine, people, artifacts
):
    eve, _ = people
    settings = settings_for(db_url)
    register_artifact(engine, settings, artifacts["v3"], operator=eve)

    def deploy(spec: str, role: str, weight: float | None = None) -> None:
        deploy_version(engine, settings, spec, role, operator=eve, reason="r", weight=weight)

    cases = [
        (lambda: deploy("synthetic-line:9", "challenger"), "no registered model version"),
        (lambda: deploy("nocolon", "challenger"), "NAME:VERSION"),
        (lambda: deploy("synthetic-line:3", "canary", 150), "0, 100"),
        (lambda: deploy("synthetic-line:3", "canary", 0), "0, 100"),
        (lambda: deploy("synthetic-line:3", "canary"), "needs --weight"),
        (lambda: deploy("synthetic-line:3", "challenger", 5), "takes none"),
        (lambda: deploy("synthetic-line:3", "boss"), "expected one of champion"),
        (lambda: rollback(engine, settings, operator=eve, reason="r"), "no previous model"),
    ]
    for attempt, words in cases:
        with pytest.raises(RegistryRefused, match=re.escape(words)):
            attempt()
    r = cli(
        "model",
        "deploy",
        "synthetic-line:9",
        "--as",
        "challenger",
        "--reason",
        "r",
        "--user",
        "eve",
        "--db",
        db_url,
        input="e\n",
    )
    assert r.code == 2 and r.err.count("\n") == 1
    assert "no registered model version synthetic-line:9: registered are synthetic-line:3" in r.err
    history = cli("model", "history", "--format", "json", "--db", db_url)
    assert json.loads(history.out)["history"] == []


def test_history_tells_who_gave_which_version_which_role_and_why(
    cli, db_url, engine, people, artifacts
):
    from station.registry import retire_challenger

    eve, _ = people
    settings = settings_for(db_url)
    for key in ("v3", "v4"):
        register_artifact(engine, settings, artifacts[key], operator=eve)

    def deploy(spec: str, role: str, reason: str, weight: float | None = None):
        return deploy_version(
            engine, settings, spec, role, operator=eve, reason=reason, weight=weight
        )

    deploy("synthetic-line:3", "champion", "first")
    deploy("synthetic-line:4", "challenger", "try it")
    deploy("synthetic-line:4", "canary", "it agrees", weight=5)
    deploy("synthetic-line:4", "canary", "again", weight=5)  # the same canary: allowed
    register_artifact(engine, settings, artifacts["v5"], operator=eve)
    with pytest.raises(RegistryRefused, match="a canary is already running"):
        deploy("synthetic-line:5", "canary", "a second one", weight=5)
    retire_challenger(engine, settings, operator=eve, reason="seen enough")
    deploy("synthetic-line:4", "champion", "better")
    back = rollback(engine, settings, operator=eve, reason="escapes up")
    assert (back.spec, back.replaced) == ("synthetic-line:3", "synthetic-line:4")
    rows = json.loads(cli("model", "history", "--format", "json", "--db", db_url).out)["history"]
    told = [
        (h["version"], h["role"], h["weight"], h["by"], h["reason"], h["until"] is None)
        for h in rows
    ]
    assert told == [
        ("synthetic-line:3", "champion", None, "eve", "first", False),
        ("synthetic-line:4", "challenger", None, "eve", "try it", False),
        ("synthetic-line:4", "canary", 5.0, "eve", "it agrees", False),
        ("synthetic-line:4", "canary", 5.0, "eve", "again", False),
        ("synthetic-line:4", "challenger", None, "eve", "retired: seen enough", False),
        (
            "synthetic-line:3",
            "previous",
            None,
            "eve",
            "replaced by synthetic-line:4: better",
            False,
        ),
        ("synthetic-line:4", "champion", None, "eve", "better", False),
        ("synthetic-line:4", "previous", None, "eve", "rolled back: escapes up", True),
        ("synthetic-line:3", "champion", None, "eve", "rollback: escapes up", True),
    ]
    text = cli("model", "history", "--db", db_url).out
    assert "synthetic-line:4 canary 5% until" in text and "by eve: it agrees" in text
    roles = {
        r["version"]: r["role"]
        for r in json.loads(cli("model", "list", "--format", "json", "--db", db_url).out)[
            "versions"
        ]
    }
    assert roles == {
        "synthetic-line:3": "champion",
        "synthetic-line:4": "previous",
        "synthetic-line:5": None,
    }


def test_a_new_champion_brings_only_its_own_evidence_and_the_station_drops(
    db_url, engine, people, artifacts
):
    from tests.station.test_levels import add_shadow_evidence

    eve, _ = people
    settings = load_settings(overrides={"database_url": db_url, "station_name": "A3"})[0]
    register_artifact(engine, settings, artifacts["v3"], operator=eve)
    register_artifact(engine, settings, artifacts["v4"], operator=eve)
    deploy_version(engine, settings, "synthetic-line:3", "champion", operator=eve, reason="first")
    with session_scope(engine) as s:
        v3 = s.exec(select(ModelVersion).where(ModelVersion.version == "3")).one().id
    add_shadow_evidence(engine, eve.id, 600, agree=0.97, model_id=v3)
    set_level(engine, settings, "shadow", operator=eve, reason="start")
    set_level(engine, settings, "assist", operator=eve, reason="evidence")  # passes on v3's items
    change = deploy_version(
        engine, settings, "synthetic-line:4", "champion", operator=eve, reason="retrained"
    )
    assert level_of(engine, settings) is Level.shadow
    assert change.level_change is not None and change.level_change.automatic
    assert "new champion synthetic-line:4" in change.level_change.reason
    assert "paired unbiased items = 0" in change.level_change.reason
    back = rollback(engine, settings, operator=eve, reason="v4 has no evidence yet")
    assert back.spec == "synthetic-line:3" and back.level_change is None  # no promotion back
    assert level_of(engine, settings) is Level.shadow


def test_only_an_engineer_changes_roles(engine, people, artifacts, db_url):
    eve, lan = people
    settings = settings_for(db_url)
    register_artifact(engine, settings, artifacts["v3"], operator=eve)
    from station.errors import AuthError

    with pytest.raises(AuthError, match="deploy model needs engineer"):
        deploy_version(engine, settings, "synthetic-line:3", "champion", operator=lan, reason="x")
    with pytest.raises(RegistryRefused, match="reason"):
        deploy_version(engine, settings, "synthetic-line:3", "champion", operator=eve, reason=" ")
    assert torch is not None
