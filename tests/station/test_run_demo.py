"""`station run --demo` (what `make run` uses) adds a login only to a database without operators."""

from __future__ import annotations

from sqlmodel import Session, select

from db.engine import session_scope
from db.models import Operator, Role
from db.repo import add_operator
from station.auth import authenticate, hash_secret
from station.cli.run_cmd import _create_demo_operator


def test_demo_engineer_is_created_in_an_empty_database_only_once(engine) -> None:
    _create_demo_operator(engine)
    _create_demo_operator(engine)
    with session_scope(engine) as s:
        assert authenticate(session=s, name="demo", secret="demo").role == Role.engineer
        assert len(s.exec(select(Operator)).all()) == 1


def test_no_demo_login_is_added_to_a_database_with_operators(engine) -> None:
    with session_scope(engine) as s:
        add_operator(session=s, name="kim", role=Role.engineer, secret_hash=hash_secret("k"))
    _create_demo_operator(engine)
    with Session(engine) as s:
        assert [o.name for o in s.exec(select(Operator)).all()] == ["kim"]
