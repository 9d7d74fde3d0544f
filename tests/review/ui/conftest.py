"""Qt tests run offscreen: no display needed, same widgets. Fixtures: items with real images in
a real migrated database, and the review window opened on them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from review_records import LABELS, Records
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.models import Item, Operator, Role
from review.ui import ReviewConfig, ReviewWindow

# Read when pytest-qt makes the QApplication, which no import above does.
os.environ["QT_QPA_PLATFORM"] = "offscreen"


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    return tmp_path / "images"


def _grey_phone() -> np.ndarray:
    img = np.full((90, 160, 3), 120, np.uint8)
    cv2.rectangle(img, (50, 10), (110, 80), (30, 30, 30), -1)
    return img


@pytest.fixture
def records(engine: Engine, image_dir: Path) -> Iterator[Callable[..., list[int]]]:
    """Add items via db.repo and give each a real PNG in the image store (`image`: its pixels,
    else a small grey phone); `version`: the model version that judged them."""
    session = Session(engine)
    r = Records(session)

    def add(
        *pairs: tuple[str, str],
        station: str = "A1",
        version: str = "v1",
        image: np.ndarray | None = None,
    ) -> list[int]:
        ids = [r.item(h, m, station=station, version=version) for h, m in pairs]
        for item_id in ids:
            rel = f"{item_id:02d}/{item_id:064x}.png"
            (image_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(image_dir / rel), _grey_phone() if image is None else image)
            session.execute(update(Item).where(Item.id == item_id).values(image_path=rel))
        session.commit()
        return ids

    yield add
    session.close()


def _operator(engine: Engine, name: str, role: Role) -> Operator:
    with Session(engine, expire_on_commit=False) as s:
        op_id = Records(s).operator(name, role)
        s.commit()
        op = s.get(Operator, op_id)
        assert op is not None
        return op


@pytest.fixture
def open_window(qtbot, engine: Engine, image_dir: Path) -> Iterator[Callable[..., ReviewWindow]]:
    """`open_window(role, **config)`: the window as that role, ReviewConfig fields overridden."""
    made: list[ReviewWindow] = []

    def make(role: Role = Role.qa_lead, **config: Any) -> ReviewWindow:
        w = ReviewWindow(
            engine,
            _operator(engine, f"user_{role.value}", role),
            ReviewConfig(image_root=image_dir, labels=LABELS, **config),
        )
        made.append(w)
        qtbot.addWidget(w)
        w.resize(1600, 900)
        w.show()
        qtbot.waitExposed(w)
        qtbot.waitUntil(lambda: not w.loading, timeout=10_000)
        return w

    yield make
    for w in made:  # before the engine goes: no thread of the window outlives its test
        w.close()
        assert not w._thread.isRunning()
        assert w._heat_thread is None or not w._heat_thread.isRunning()
