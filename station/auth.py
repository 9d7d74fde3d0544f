"""Operators' secrets, login, and the check that an operator may do an action."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session

from db.models import Operator
from db.permissions import PERMISSIONS, allowed, refusal
from db.repo import find_operator
from station.errors import AuthError

__all__ = ["PERMISSIONS", "allowed", "authenticate", "hash_secret", "require", "verify_secret"]

# argon2id with the library's defaults (RFC 9106 "low memory" profile): salted, slow, memory-hard.
_hasher = PasswordHasher()

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


def require(operator: Operator, action: str) -> None:
    """Raise AuthError unless `operator` may do `action` (the role table is db.permissions)."""
    if not allowed(operator, action):
        raise AuthError(refusal(operator, action))
