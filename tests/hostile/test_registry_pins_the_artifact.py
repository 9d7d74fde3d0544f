"""An artifact edited and re-hashed after it was registered (classes reordered, another
temperature: every hash in it consistent again) is refused: the registry pins the sha256 of what an
engineer registered, and a station runs nothing else under that name and version."""

from __future__ import annotations

import json

import pytest

from db.engine import session_scope
from db.models import Level, Role
from db.repo import find_operator
from model.artifact import MANIFEST, manifest_sha256
from station.errors import ModelRefused
from station.pipeline.assess import open_model
from station.pipeline.lineup import model_to_run
from station.pipeline.testing import ensure_operator, make_rig
from station.registry import artifact_dir, deploy_version, register_artifact


def rehash_in_place(folder, edit) -> None:
    m = json.loads((folder / MANIFEST).read_text())
    edit(m)
    m["sha256"] = manifest_sha256(m)
    (folder / MANIFEST).write_text(json.dumps(m))


EDITS = [
    # (1e-4, the case, is refused already as out of range: model/artifact.py)
    lambda m: m.update(temperature=0.5),
    lambda m: m.update(classes=[m["classes"][0], *reversed(m["classes"][1:])]),
]


def station_with(tmp_path, artifacts, *champions: str):
    """A station whose engineer registered v3 and v4 and made each of `champions` the champion
    in turn (the one before becomes previous)."""
    rig = make_rig(tmp_path, level=Level.shadow, with_model=False)
    ensure_operator(rig.engine, "eve", Role.engineer)
    with session_scope(rig.engine) as s:
        eve = find_operator(session=s, name="eve")
    for key in ("v3", "v4"):
        register_artifact(rig.engine, rig.settings, artifacts[key], operator=eve)
    for spec in champions:
        deploy_version(rig.engine, rig.settings, spec, "champion", operator=eve, reason="r")
    return rig, eve


def stored_copy(rig, version: str):
    from sqlmodel import select

    from db.models import ModelVersion

    with session_scope(rig.engine) as s:
        mv = s.exec(select(ModelVersion).where(ModelVersion.version == version)).one()
        return artifact_dir(rig.settings, mv)


@pytest.mark.parametrize("edit", EDITS)
def test_a_station_refuses_to_start_with_a_registered_artifact_edited_and_rehashed(
    tmp_path, artifacts, edit
):
    rig, _ = station_with(tmp_path, artifacts, "synthetic-line:3")
    rehash_in_place(stored_copy(rig, "3"), edit)  # the store's copy, edited by someone
    path = model_to_run(rig.engine, rig.settings, rig.core.station_id)
    with pytest.raises(ModelRefused, match="already registered with sha256"):
        rig.core.use_model(open_model(path, rig.settings.labels, timeout_s=30))
    assert rig.core.model.get() is None


def test_an_edited_artifact_is_never_deployed_nor_swapped_into_a_running_station(
    tmp_path, artifacts
):
    from station.registry import RegistryRefused

    rig, eve = station_with(tmp_path, artifacts, "synthetic-line:3")
    path = model_to_run(rig.engine, rig.settings, rig.core.station_id)
    rig.core.use_model(open_model(path, rig.settings.labels, timeout_s=30))  # v3, intact
    rig.core.lineup.check()
    # an engineer deploys v4; its stored copy is edited before the station loads it
    deploy_version(
        rig.engine, rig.settings, "synthetic-line:4", "champion", operator=eve, reason="b"
    )
    rehash_in_place(stored_copy(rig, "4"), EDITS[0])
    rig.core.lineup.check()
    rig.core.lineup.wait_loaded()
    rig.core.lineup.check()
    assert rig.core.model.get().info.version == "3"  # keeps running what it ran
    problem = rig.core.lineup.problem or ""
    assert "synthetic-line:4 could not be loaded" in problem and "not the registered" in problem
    # and no engineer's command puts it in a role now (nor rolls back to it later)
    with pytest.raises(RegistryRefused, match="is not synthetic-line:4"):
        deploy_version(
            rig.engine, rig.settings, "synthetic-line:4", "challenger", operator=eve, reason="c"
        )
    rig.core.close()
