"""Operators' secrets and what each role may do: the one place role checks live."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session

from db.models import Operator, Role
from db.repo import find_operator
from station.errors import AuthError

# argon2id with the library's defaults (RFC 9106 "low memory" profile): salted, slow, memory-hard.
_hasher = PasswordHasher()

# action -> roles allowed. Later commands name an action here instead of checking roles themselves.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "inspect": frozenset({Role.inspector, Role.qa_lead, Role.engineer}),
    "review": frozenset({Role.qa_lead, Role.engineer}),
    "adjudicate": frozenset({Role.qa_lead}),
    "set_level": frozenset({Role.engineer}),
    "override_gate": frozenset({Role.engineer}),
    "deploy_model": frozenset({Role.engineer}),
    "set_thresholds": frozenset({Role.engineer}),
    "manage_users": frozenset({Role.engineer}),
}


_DUMMY_HASH = _hasher.hash("not-an-operator")


def hash_secret(secret: str) -> str:
    if not secret:
        raise AuthError("empty secret: expected at least one character")
    return _hasher.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(*, session: Session, name: str, secret: str) -> Operator:
    """The operator named `name` if `secret` is theirs; one message for both failures, so a
    wrong guess does not reveal which operator names exist."""
    operator = find_operator(session=session, name=name)
    # An unknown name still pays for one hash check, so timing does not reveal which names exist.
    secret_hash = operator.secret_hash if operator is not None else _DUMMY_HASH
    valid = verify_secret(secret_hash, secret)
    if operator is None or not operator.active or not valid:
        raise AuthError(f"unknown operator or wrong secret for {name!r}")
    return operator


def allowed(operator: Operator, action: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}; known: {', '.join(sorted(PERMISSIONS))}")
    return operator.role in PERMISSIONS[action]


def require(operator: Operator, action: str) -> None:
    if not allowed(operator, action):
        roles = " or ".join(sorted(r.value for r in PERMISSIONS[action]))
        raise AuthError(
            f"{operator.name} is {operator.role.value}; {action.replace('_', ' ')} needs {roles}"
        )
