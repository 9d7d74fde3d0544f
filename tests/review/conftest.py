"""Fixtures for review tests; the record builder lives in review_records.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from review_records import Records
from sqlalchemy.engine import Engine
from sqlmodel import Session


@pytest.fixture
def fill(engine: Engine) -> Callable[[Callable[[Records], None]], None]:
    """Run a builder inside one committed transaction."""

    def run(build: Callable[[Records], None]) -> None:
        with Session(engine) as session:
            build(Records(session))
            session.commit()

    return run
