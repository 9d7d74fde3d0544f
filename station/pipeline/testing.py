"""Helpers for tests and benches: a real station database in a folder and a core on it, with a
fake (or real) predictor at the seam, fed through the real intake. Not used by the product."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from db.engine import make_engine, session_scope
from db.migrate import ensure_schema
from db.models import Level, Role
from db.repo import add_operator, find_operator, get_or_create_station
from station.auth import hash_secret
from station.frames.sources import ListSource
from station.frames.store import ImageStore
from station.levels import level_of, set_level
from station.pipeline.assess import Assessed, open_model
from station.pipeline.core import StationCore
from station.pipeline.intake import Captured, Intake
from station.pipeline.predictor import FakePredictor, Predictor
from station.pipeline.recorder import Ack, Recorder
from station.pipeline.router import Route
from station.settings import Settings

#: The secret of every operator `ensure_operator` creates.
TEST_SECRET = "pw"


def open_station_db(url: str) -> Engine:
    engine = make_engine(url)
    ensure_schema(engine)
    return engine


def ensure_operator(engine: Engine, name: str, role: Role = Role.inspector) -> int:
    """The id of operator `name`, created with secret TEST_SECRET if absent."""
    with session_scope(engine) as session:
        op = find_operator(session=session, name=name)
        if op is None:
            op = add_operator(
                session=session, name=name, role=role, secret_hash=hash_secret(TEST_SECRET)
            )
        assert op.id is not None
        return op.id


def ensure_station(engine: Engine, name: str) -> int:
    with session_scope(engine) as session:
        st = get_or_create_station(session=session, name=name)
        assert st.id is not None
        return st.id


def put_level(engine: Engine, settings: Settings, level: Level) -> None:
    """Put the configured station at `level`, through the level service as an engineer's
    override (a test's set-up has no evidence)."""
    ensure_operator(engine, "rig-engineer", Role.engineer)
    with session_scope(engine) as session:
        engineer = find_operator(session=session, name="rig-engineer")
    assert engineer is not None
    if level_of(engine, settings) is not level:
        set_level(engine, settings, level, operator=engineer, reason="test set-up", override=True)


def still_intake(images: list[np.ndarray], store: ImageStore | None, **meta: Any) -> Intake:
    """The real intake over `images`, each one an item (a folder of stills would do the same)."""
    source = ListSource(images, metas=[dict(meta)] * len(images), item_per_frame=True)
    return Intake(source, store=store)


@dataclass
class Rig:
    settings: Settings
    engine: Engine
    core: StationCore
    recorder: Recorder
    predictor: Any
    store: ImageStore
    acks: list[Ack] = field(default_factory=list)

    def capture(self, image: np.ndarray, *, truth: str | None = None) -> Captured:
        """One still through the real intake (trigger-free source, image store, statistics)."""
        meta = {"truth": truth} if truth is not None else {}
        (captured,) = list(still_intake([image], self.store, **meta).items())
        captured.stored.result()
        return captured

    def assess(self, image: np.ndarray, *, truth: str | None = None) -> Assessed:
        return self.core.assessor.assess(self.capture(image, truth=truth))

    def feed(self, image: np.ndarray, *, truth: str | None = None) -> Route:
        """What the station does with one still: capture, assess, accept; returns its route."""
        return self.core.accept(self.assess(image, truth=truth))


def make_rig(
    tmp_path: Path,
    *,
    level: Level = Level.shadow,
    predictor: Predictor | None = None,
    settings: Settings | None = None,
    seed: int = 0,
    timeout_s: float | None = None,
    engine: Engine | None = None,
    with_model: bool = True,
) -> Rig:
    settings = settings or Settings(data_dir=tmp_path)
    engine = engine or open_station_db(f"sqlite:///{tmp_path / 'station.db'}")
    station_id = ensure_station(engine, settings.station_name)
    operator_id = ensure_operator(engine, "lan")
    put_level(engine, settings, level)
    acks: list[Ack] = []
    recorder = Recorder(engine, spool_dir=tmp_path, on_ack=acks.append)
    core = StationCore(
        settings,
        engine,
        station_id=station_id,
        station_name=settings.station_name,
        operator_id=operator_id,
        operator_name="lan",
        sink=recorder.record,
        rng=random.Random(seed),
    )
    predictor = predictor if predictor is not None else FakePredictor()
    if with_model:
        info = getattr(predictor, "info")  # noqa: B009 (a fake, or a caller's own object)
        core.use_model(
            open_model(
                None,
                settings.labels,
                timeout_s=timeout_s or settings.thresholds.model_timeout_s,
                loader=lambda _p: (predictor, info),
            )
        )
        approve_settings_rule(engine, settings)
    store = ImageStore(settings.image_dir)
    return Rig(settings, engine, core, recorder, predictor, store, acks)


def approve_settings_rule(engine: Engine, settings: Settings) -> None:
    """Put the settings' proposed thresholds in force for the station's champion (a test's
    set-up, through the real propose / approve path)."""
    from station.thresholds import approve, proposal_from_settings, propose

    ensure_operator(engine, "rig-engineer", Role.engineer)
    with session_scope(engine) as session:
        engineer = find_operator(session=session, name="rig-engineer")
    assert engineer is not None
    row = propose(engine, settings, proposal_from_settings(settings), note="test set-up")
    approve(engine, settings, row.version, operator=engineer, reason="test set-up")


def phone_image(seed: int = 0, h: int = 96, w: int = 128) -> np.ndarray:
    """A small textured BGR image that passes the default input guard."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 120, np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 30
    noise = rng.integers(-20, 20, size=(h, w, 1), dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
