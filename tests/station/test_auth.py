"""Operators: secrets are stored only as salted slow hashes; roles are checked in one place."""

from __future__ import annotations

import pytest

from db.engine import session_scope
from db.models import Operator, Role
from db.repo import add_operator
from station.auth import PERMISSIONS, authenticate, hash_secret, require, verify_secret
from station.errors import AuthError


def test_hash_is_salted_argon2_and_never_the_secret() -> None:
    a, b = hash_secret("hunter2"), hash_secret("hunter2")
    assert a != b and "hunter2" not in a
    assert a.startswith("$argon2id$")
    assert verify_secret(a, "hunter2") and not verify_secret(a, "hunter3")


def test_authenticate_accepts_the_secret_and_refuses_others(engine) -> None:
    with session_scope(engine) as s:
        add_operator(session=s, name="lan", role=Role.inspector, secret_hash=hash_secret("pw"))
    with session_scope(engine) as s:
        assert authenticate(session=s, name="lan", secret="pw").role == Role.inspector
        with pytest.raises(AuthError, match="unknown operator or wrong secret"):
            authenticate(session=s, name="lan", secret="nope")
        with pytest.raises(AuthError, match="unknown operator or wrong secret"):
            authenticate(session=s, name="ghost", secret="pw")


@pytest.mark.parametrize(
    ("role", "action", "ok"),
    [
        (Role.inspector, "inspect", True),
        (Role.inspector, "set_level", False),
        (Role.inspector, "adjudicate", False),
        (Role.qa_lead, "adjudicate", True),
        (Role.qa_lead, "set_level", False),
        (Role.engineer, "set_level", True),
        (Role.engineer, "deploy_model", True),
    ],
)
def test_role_checks(role: Role, action: str, ok: bool) -> None:
    op = Operator(name="x", role=role, secret_hash="")
    if ok:
        require(op, action)
    else:
        with pytest.raises(AuthError, match=f"{role.value}; .* needs"):
            require(op, action)


def test_every_action_names_at_least_one_role() -> None:
    assert all(PERMISSIONS.values())
