"""Helpers for tests and benches: a real station database in a folder and a core on it, with a
fake (or real) predictor at the seam."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from db.engine import make_engine
from db.migrate import ensure_schema
from db.models import Level
from station.frames.store import ImageStore
from station.pipeline.guard import InputGuard
from station.pipeline.predictor import FakePredictor, ModelInfo
from station.pipeline.recorder import Recorder
from station.pipeline.records import ensure_operator, ensure_station
from station.pipeline.router import Router
from station.pipeline.session import StationCore
from station.pipeline.worker import InferenceWorker
from station.settings import Settings


def open_station_db(url: str) -> Engine:
    engine = make_engine(url)
    ensure_schema(engine)
    return engine


@dataclass
class Rig:
    settings: Settings
    engine: Engine
    core: StationCore
    recorder: Recorder
    predictor: Any
    acks: list[Any] = field(default_factory=list)


def make_rig(
    tmp_path: Path,
    *,
    level: Level = Level.shadow,
    predictor: Any | None = None,
    settings: Settings | None = None,
    seed: int = 0,
    timeout_s: float | None = None,
    engine: Engine | None = None,
) -> Rig:
    settings = settings or Settings(data_dir=tmp_path)
    engine = engine or open_station_db(f"sqlite:///{tmp_path / 'station.db'}")
    station_id = ensure_station(engine, settings.station_name)
    operator_id = ensure_operator(engine, "lan")
    acks: list[Any] = []
    recorder = Recorder(engine, spool_dir=tmp_path, on_ack=acks.append)
    predictor = predictor if predictor is not None else FakePredictor()
    info = getattr(predictor, "info", None) or ModelInfo("fake", "f1", "f" * 64)
    worker = InferenceWorker(predictor, timeout_s=timeout_s or settings.thresholds.model_timeout_s)
    rng = random.Random(seed)
    core = StationCore(
        engine=engine,
        station_id=station_id,
        station_name=settings.station_name,
        operator_id=operator_id,
        operator_name="lan",
        level=level,
        router=Router(levels=settings.levels, thresholds=settings.thresholds, rng=rng),
        guard=InputGuard(settings.guard),
        store=ImageStore(settings.image_dir),
        sink=recorder.record,
        worker=worker,
        model=info,
        rng=rng,
    )
    return Rig(settings, engine, core, recorder, predictor, acks)


def phone_image(seed: int = 0, h: int = 96, w: int = 128) -> np.ndarray:
    """A small textured BGR image that passes the default input guard."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 120, np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 30
    noise = rng.integers(-20, 20, size=(h, w, 1), dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
