"""Operators' secrets, login, and the check that an operator may do an action."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from db.models import LoginAttempt, Operator
from db.permissions import PERMISSIONS, allowed, refusal
from db.repo import find_operator
from station.errors import AuthError

__all__ = [
    "PERMISSIONS",
    "Throttle",
    "allowed",
    "authenticate",
    "hash_secret",
    "record_login",
    "require",
    "throttle",
    "unlock",
    "verify_secret",
]

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


#: Failures in a row (since the last success or unlock) before each try has to wait, how long the
#: first wait is (it doubles with every further failure, up to MAX_DELAY_S), and how many lock
#: the name for LOCK_S unless an engineer unlocks it sooner (`station user unlock`). The lock
#: expires by itself so that guessing at the only engineer's name cannot shut everyone out.
FREE_FAILURES = 3
FIRST_DELAY_S = 5.0
MAX_DELAY_S = 900.0
LOCK_AFTER = 10
LOCK_S = 3600.0


@dataclass(frozen=True)
class Throttle:
    failures: int  # in a row, since the last success or unlock
    wait_s: float  # before the next try is even checked (0: now)
    locked: bool


def throttle(*, session: Session, name: str, now: datetime | None = None) -> Throttle:
    """Where `name` stands after its recent failed logins (any thread; reads only)."""
    now = now or datetime.now(UTC)
    rows = session.exec(
        select(LoginAttempt)
        .where(LoginAttempt.name == name)
        .order_by(col(LoginAttempt.id).desc())
        .limit(LOCK_AFTER + 1)
    ).all()
    failures = 0
    for row in rows:
        if row.succeeded:
            break
        failures += 1
    if failures < FREE_FAILURES:
        return Throttle(failures, 0.0, False)
    last = rows[0].at if rows[0].at.tzinfo else rows[0].at.replace(tzinfo=UTC)
    since = (now - last).total_seconds()
    if failures >= LOCK_AFTER:
        return Throttle(failures, max(0.0, LOCK_S - since), since < LOCK_S)
    delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (failures - FREE_FAILURES))
    return Throttle(failures, max(0.0, delay - since), False)


def record_login(engine: Engine, name: str, *, succeeded: bool, note: str = "") -> None:
    """In a transaction of its own: a failed login must be counted even though the caller's
    transaction rolls back with the error."""
    from db.engine import session_scope

    with session_scope(engine) as session:
        session.add(LoginAttempt(name=name[:64], succeeded=succeeded, note=note[:256]))


def authenticate(*, session: Session, name: str, secret: str) -> Operator:
    """The operator named `name` if `secret` is theirs; one message for both failures, so a
    wrong guess does not reveal which operator names exist. Failures are recorded (names that
    do not exist too) and throttle further tries: waits that double, then a lock."""
    state = throttle(session=session, name=name)
    if state.locked:
        raise AuthError(
            f"{name!r} is locked after {state.failures} failed logins: an engineer unlocks it "
            f"with `station user unlock {name} --user ENGINEER`, or it unlocks itself in "
            f"{math.ceil(state.wait_s / 60)} min"
        )
    if state.wait_s > 0:
        raise AuthError(
            f"{state.failures} failed logins for {name!r}: try again in {math.ceil(state.wait_s)} s"
        )
    operator = find_operator(session=session, name=name)
    # An unknown name still pays for one hash check, so timing does not reveal which names exist.
    secret_hash = operator.secret_hash if operator is not None else _DUMMY_HASH
    valid = verify_secret(secret_hash, secret)
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    if operator is None or not operator.active or not valid:
        record_login(engine, name, succeeded=False)
        left = LOCK_AFTER - state.failures - 1
        warn = f" ({left} more before it is locked)" if state.failures + 1 >= FREE_FAILURES else ""
        raise AuthError(f"unknown operator or wrong secret for {name!r}{warn}")
    record_login(engine, name, succeeded=True)
    return operator


def unlock(engine: Engine, name: str, *, by: Operator) -> None:
    """An engineer lifts the throttle on `name` (recorded)."""
    require(by, "manage_users")
    record_login(engine, name, succeeded=True, note=f"unlocked by {by.name}")


def require(operator: Operator, action: str) -> None:
    """Raise AuthError unless `operator` may do `action` (the role table is db.permissions)."""
    if not allowed(operator, action):
        raise AuthError(refusal(operator, action))
