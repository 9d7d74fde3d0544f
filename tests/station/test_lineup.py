"""A running station follows its model lineup: a challenger runs hidden beside the champion and
its answers are recorded against the same items; a new champion or a rollback decides from the
next item on, whole; a configured model that is not the champion is refused."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from db.engine import session_scope
from db.models import Level, ModelVersion, Prediction, Role, Slot
from db.repo import find_operator
from station.errors import ModelRefused
from station.pipeline.assess import open_model
from station.pipeline.lineup import model_to_run
from station.pipeline.testing import ensure_operator, make_rig, phone_image, put_level
from station.registry import deploy_version, register_artifact, rollback
from station.settings import Settings


@pytest.fixture
def station(tmp_path, artifacts):
    """A station at shadow whose champion is v3, registered and deployed by an engineer, and
    started the way `station run` starts it (the record's champion)."""
    rig = make_rig(tmp_path, level=Level.shadow, with_model=False)
    ensure_operator(rig.engine, "eve", Role.engineer)
    with session_scope(rig.engine) as s:
        eve = find_operator(session=s, name="eve")
    for key in ("v3", "v4"):
        register_artifact(rig.engine, rig.settings, artifacts[key], operator=eve)
    deploy_version(
        rig.engine, rig.settings, "synthetic-line:3", "champion", operator=eve, reason="a"
    )
    path = model_to_run(rig.engine, rig.settings, rig.core.station_id)
    rig.core.use_model(open_model(path, rig.settings.labels, timeout_s=30))
    yield rig, eve
    rig.core.close()


def inspect(rig, n: int, seed: int = 0) -> None:
    """n phones through the station, each decided by the inspector (shadow)."""
    for i in range(n):
        rig.feed(phone_image(seed + i), truth="ok")
        rig.core.lineup.wait_loaded()
        rig.core.desk.decide("ok")


def predictions(engine) -> list[tuple[int, str, str]]:
    """(item, slot, version) of every recorded prediction, in order."""
    with session_scope(engine) as s:
        rows = s.exec(
            select(Prediction.item_id, Prediction.slot, ModelVersion.version)
            .join(ModelVersion, col(ModelVersion.id) == col(Prediction.model_version_id))
            .order_by(col(Prediction.id))
        ).all()
        return [(i, Slot(slot).value, v) for i, slot, v in rows]


def test_a_challenger_runs_hidden_beside_the_champion_on_the_same_items(station):
    rig, eve = station
    inspect(rig, 1)
    deploy_version(
        rig.engine, rig.settings, "synthetic-line:4", "challenger", operator=eve, reason="b"
    )
    inspect(rig, 1, seed=1)  # the lineup is read before this item; v4 loads meanwhile
    inspect(rig, 2, seed=2)
    got = predictions(rig.engine)
    champion = [(i, v) for i, slot, v in got if slot == "champion"]
    challenger = [(i, v) for i, slot, v in got if slot == "challenger"]
    assert [v for _, v in champion] == ["3", "3", "3", "3"]
    assert [v for _, v in challenger][-2:] == ["4", "4"]  # at the latest from the third item
    assert {i for i, _ in challenger} <= {i for i, _ in champion}
    # never shown: the inspector's suggestion is the champion's, or none (shadow: none)
    assert rig.core.desk.recent[0].decided_by.value == "human"
    assert rig.core.shadow.dropped == 0


def test_a_new_champion_and_a_rollback_decide_from_the_next_item(station):
    rig, eve = station
    inspect(rig, 1)
    deploy_version(
        rig.engine, rig.settings, "synthetic-line:4", "champion", operator=eve, reason="b"
    )
    rig.core.lineup.check()
    rig.core.lineup.wait_loaded()
    inspect(rig, 1, seed=1)
    assert rig.core.rules.model_version_id == rig.core.lineup.champion_id
    rollback(rig.engine, rig.settings, operator=eve, reason="escapes")
    inspect(rig, 1, seed=2)  # v3 stayed loaded as previous: no wait, the very next item
    champion = [v for _, slot, v in predictions(rig.engine) if slot == "champion"]
    assert champion == ["3", "4", "3"]
    roles = rig.core.lineup.roles()
    assert (roles.champion, roles.previous) == ("synthetic-line:3", "synthetic-line:4")


def test_a_configured_model_that_is_not_the_champion_is_refused(station, artifacts):
    rig, _ = station
    other = Settings(data_dir=rig.settings.data_dir, model_path=str(artifacts["v4"]))
    with pytest.raises(ModelRefused, match="champion is synthetic-line:3; the configured model"):
        model_to_run(rig.engine, other, rig.core.station_id)
    same = Settings(data_dir=rig.settings.data_dir, model_path=str(artifacts["v3"]))
    assert model_to_run(rig.engine, same, rig.core.station_id).endswith(
        rig.core.model.get().info.sha256
    )
    # loading another model into the running station is refused the same way
    with pytest.raises(ModelRefused, match="an engineer changes it"):
        rig.core.use_model(open_model(str(artifacts["v4"]), rig.settings.labels, timeout_s=30))


def test_a_canary_answers_for_its_share_of_items_with_the_champion_hidden_beside_it(station):
    from db.models import Disposition

    rig, eve = station
    deploy_version(
        rig.engine, rig.settings, "synthetic-line:4", "canary", operator=eve, reason="c", weight=50
    )
    rig.core.lineup.check()
    rig.core.lineup.wait_loaded()
    inspect(rig, 24)
    with session_scope(rig.engine) as s:
        acted = {d.item_id: d.prediction_id for d in s.exec(select(Disposition)).all()}
        rows = s.exec(select(Prediction).order_by(col(Prediction.id))).all()
        by_item: dict[int, list[tuple[str, int]]] = {}
        for p in rows:
            by_item.setdefault(p.item_id, []).append((Slot(p.slot).value, p.id))
    arms = [slots[0][0] for slots in by_item.values()]
    assert set(arms) == {"champion", "canary"}  # 24 items at 50%: both arms (p of not: 1e-7)
    for item, slots in by_item.items():
        first_slot, first_id = slots[0]
        assert acted[item] == first_id  # the disposition rests on the answer acted on
        other = {"canary": "champion", "champion": "challenger"}[first_slot]
        assert [s for s, _ in slots] == [first_slot, other]  # every item stays paired
    assert rig.core.lineup.roles().weight == 50


def test_the_canary_arm_is_sticky_uniform_and_drawn_afresh_at_each_step():
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from station.pipeline.lineup import canary_arm

    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    items = [
        SimpleNamespace(source="synthetic", captured_at=t0 + timedelta(seconds=i), frame_index=i)
        for i in range(4000)
    ]
    arm = [canary_arm("canary-7", c, 5.0) for c in items]
    assert arm == [canary_arm("canary-7", c, 5.0) for c in items]  # the same item, the same arm
    assert 0.04 < sum(arm) / len(items) < 0.06
    afresh = [canary_arm("canary-8", c, 5.0) for c in items]
    assert arm != afresh
    # a step up keeps most of the arm's items in it (a growing share, not a reshuffle) only
    # within one salt: the 25% arm of a salt holds its 5% arm
    wider = [canary_arm("canary-7", c, 25.0) for c in items]
    assert all(w for a, w in zip(arm, wider, strict=True) if a)


def test_with_passes_started_at_capture_the_champion_answers_each_item_once(station):
    """`station simulate` starts the champion on each item as the intake reads it ahead. In the
    canary's arm that pass is the hidden champion answer: never run a second time, and every
    item stays paired."""
    from station.pipeline.testing import still_intake

    rig, eve = station
    deploy_version(
        rig.engine, rig.settings, "synthetic-line:4", "canary", operator=eve, reason="c", weight=50
    )
    rig.core.lineup.check()
    rig.core.lineup.wait_loaded()
    champion = rig.core.model.get().worker.predictor
    calls, predict = [], champion.predict
    champion.predict = lambda image: calls.append(1) or predict(image)
    images = [phone_image(40 + i) for i in range(16)]
    intake = still_intake(images, rig.store, truth="ok")
    intake.early = rig.core.assessor.start
    for captured in intake.items(ahead=4):
        rig.core.accept(rig.core.assessor.assess(captured))
        rig.core.desk.decide("ok")
    slots: dict[int, list[str]] = {}
    for item, slot, _version in predictions(rig.engine):
        slots.setdefault(item, []).append(slot)
    assert len(slots) == 16
    assert {s[0] for s in slots.values()} == {"champion", "canary"}  # p of one arm only: 3e-5
    assert all(s in (["champion", "challenger"], ["canary", "champion"]) for s in slots.values())
    assert len(calls) == 16


def test_a_canary_items_heat_map_is_drawn_by_the_canary_that_answered(station, tmp_path):
    # At assist the suggestion shows with its heat-map: in the canary's arm both are the
    # canary's, never the champion's map beside the canary's answer.
    import numpy as np

    from tests.station.model_variants import variant

    rig, eve = station
    # v6's defect map is v3's negated: the two draw different heat-maps of any phone
    register_artifact(
        rig.engine, rig.settings, variant(tmp_path / "v6", "6", weak=True), operator=eve
    )
    deploy_version(
        rig.engine, rig.settings, "synthetic-line:6", "canary", operator=eve, reason="c", weight=50
    )
    rig.core.lineup.check()
    rig.core.lineup.wait_loaded()
    put_level(rig.engine, rig.settings, Level.assist)
    arms = set()
    for i in range(16):
        image = phone_image(i)
        assessed = rig.assess(image)  # the lineup is followed before the item
        champion, canary = rig.core.model.get(), rig.core.assessor.challenger.get()
        assert assessed.plan.show_suggestion and assessed.prediction is not None
        heat = rig.core.assessor.heatmap(assessed)
        answered, other = (canary, champion) if assessed.canary else (champion, canary)
        assert assessed.model == answered.info
        assert np.array_equal(heat, answered.worker.explain(image))
        assert not np.array_equal(heat, other.worker.explain(image))
        arms.add(assessed.canary)
        rig.core.accept(assessed)
        rig.core.desk.decide("ok")
    assert arms == {True, False}  # 16 items at 50%: both arms (p of not: 3e-5)
    # The model that answered was replaced by the other since: no heat-map rather than the
    # other model's.
    last = rig.assess(phone_image(99))
    holder, replacement = (
        (rig.core.assessor.challenger, champion) if last.canary else (rig.core.model, canary)
    )
    kept = holder.set(replacement)
    try:
        assert rig.core.assessor.heatmap(last) is None
    finally:
        holder.set(kept)
