"""Repository functions: small, named writes and reads of the records.

Every function takes the session as a keyword-only argument and never creates or commits one: the
caller owns the transaction (`db.engine.session_scope`), so an item with its predictions, human
decision and disposition is written by one call inside one transaction, all or nothing.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, exc, func
from sqlmodel import Session, SQLModel, col, select

from db import driver
from db.chain import append_rows
from db.driver import Writer
from db.errors import IntegrityProblem
from db.models import (
    Adjudication,
    AdjudicationRequest,
    DatabaseIdentity,
    DecidedBy,
    Deployment,
    Disposition,
    GateEvaluation,
    HumanDecision,
    Item,
    Level,
    LevelChange,
    ModelVersion,
    Operator,
    OperatorSession,
    Prediction,
    Role,
    Slot,
    Station,
    utcnow,
)

_ITEM: Table = Item.__table__  # type: ignore[attr-defined]
_PREDICTION: Table = Prediction.__table__  # type: ignore[attr-defined]
_DECISION: Table = HumanDecision.__table__  # type: ignore[attr-defined]
_DISPOSITION: Table = Disposition.__table__  # type: ignore[attr-defined]
_REQUEST: Table = AdjudicationRequest.__table__  # type: ignore[attr-defined]


def _flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except exc.IntegrityError as e:
        raise IntegrityProblem(f"cannot save {what}: {e.orig}") from e


# --------------------------------------------------------------------------- stations & people


def database_identity(*, session: Session) -> str:
    """This database's identity (made by its migrations); IntegrityProblem if it has none."""
    row = session.exec(select(DatabaseIdentity)).first()
    if row is None:
        raise IntegrityProblem(
            "the database has no identity row (table database_identity is empty): it was not "
            "made by `station db upgrade`; restore it from a backup"
        )
    return row.id


def get_or_create_station(*, session: Session, name: str) -> Station:
    station = session.exec(select(Station).where(Station.name == name)).first()
    if station is None:
        station = Station(name=name)
        session.add(station)
        _flush(session, f"station {name!r}")
    return station


def find_station(*, session: Session, name: str) -> Station | None:
    return session.exec(select(Station).where(Station.name == name)).first()


def add_operator(*, session: Session, name: str, role: Role, secret_hash: str) -> Operator:
    if find_operator(session=session, name=name) is not None:
        raise IntegrityProblem(f"an operator named {name!r} already exists; choose another name")
    operator = Operator(name=name, role=role, secret_hash=secret_hash)
    session.add(operator)
    _flush(session, f"operator {name!r}")
    return operator


def find_operator(*, session: Session, name: str) -> Operator | None:
    return session.exec(select(Operator).where(Operator.name == name)).first()


def list_operators(*, session: Session) -> Sequence[Operator]:
    return session.exec(select(Operator).order_by(col(Operator.name))).all()


def start_operator_session(
    *, session: Session, operator: Operator, station: Station
) -> OperatorSession:
    assert operator.id is not None and station.id is not None
    login = OperatorSession(operator_id=operator.id, station_id=station.id)
    session.add(login)
    _flush(session, "login")
    return login


def end_operator_session(*, session: Session, login: OperatorSession) -> None:
    login.ended_at = utcnow()
    session.add(login)
    _flush(session, "logout")


# --------------------------------------------------------------------------- model versions


def register_model_version(*, session: Session, model: ModelVersion) -> ModelVersion:
    """Register a model version; registering the same name+version+sha256 again returns the row."""
    existing = session.exec(
        select(ModelVersion).where(
            ModelVersion.name == model.name, ModelVersion.version == model.version
        )
    ).first()
    if existing is not None:
        if existing.sha256 != model.sha256:
            raise IntegrityProblem(
                f"model {model.name} {model.version} is already registered with sha256 "
                f"{existing.sha256[:12]}..., not {model.sha256[:12]}...: give the new weights a new version"
            )
        return existing
    session.add(model)
    _flush(session, f"model version {model.name} {model.version}")
    return model


def deploy(
    *,
    session: Session,
    station: Station,
    model: ModelVersion,
    slot: Slot,
    traffic_share: float = 1.0,
    operator_id: int | None = None,
    reason: str = "",
) -> Deployment:
    """Put a model version into a slot at a station, ending whatever held that slot."""
    assert station.id is not None and model.id is not None
    now = utcnow()
    for current in active_deployments(session=session, station_id=station.id):
        if current.slot == slot:
            current.ended_at = now
            session.add(current)
    deployment = Deployment(
        station_id=station.id,
        model_version_id=model.id,
        slot=slot,
        traffic_share=traffic_share,
        started_at=now,
        operator_id=operator_id,
        reason=reason,
    )
    session.add(deployment)
    _flush(session, "deployment")
    return deployment


def active_deployments(*, session: Session, station_id: int) -> Sequence[Deployment]:
    return session.exec(
        select(Deployment)
        .where(Deployment.station_id == station_id, col(Deployment.ended_at).is_(None))
        .order_by(col(Deployment.started_at))
    ).all()


# --------------------------------------------------------------------------- the inspection record


def _insert(conn: Connection | Writer, table: Table, values: dict[str, Any], what: str) -> int:
    """INSERT one row (`values`: every column but `id`); its new id, also set in `values`
    (what the chain hashes is the values written, id included).

    Not the ORM unit of work: the inspection record is written once and never updated, so change
    tracking buys nothing, and it cost most of the time of a durable write. On SQLite the
    driver's cursor runs it with SQLAlchemy's own value conversions (db/driver.py); elsewhere a
    Core insert, compiled once and cached by SQLAlchemy (bench/db_write.py measures both).
    """
    if driver.usable(conn):
        try:
            new_id = driver.insert_row(conn, table, values)
        except exc.IntegrityError as e:
            raise IntegrityProblem(f"cannot save {what}: {e.orig}") from e
    else:
        assert isinstance(conn, Connection)  # a Writer is always usable
        try:
            result = conn.execute(table.insert(), values)
        except exc.IntegrityError as e:
            raise IntegrityProblem(f"cannot save {what}: {e.orig}") from e
        key = result.inserted_primary_key
        if key is None or key[0] is None:
            raise IntegrityProblem(f"cannot save {what}: the database returned no id")
        new_id = int(key[0])
    values["id"] = new_id
    return new_id


@dataclass(frozen=True)
class _Defaults:
    """What an object of a model built without some of its columns holds in them."""

    names: frozenset[str]  # every column but `id`
    fixed: dict[str, Any]  # column -> its default, for those whose default is a constant
    mutable: tuple[tuple[str, Any], ...]  # (column, default) of a list or dict: copied each time
    factories: tuple[tuple[str, Callable[[], Any]], ...]  # (column, default factory)


_IMMUTABLE = (type(None), str, int, float, bool, bytes, tuple, frozenset)


@functools.cache
def _defaults(model: type[SQLModel]) -> _Defaults:
    """Each column of `model` but `id` with its default as the model class declares it."""
    names, fixed, mutable, factories = [], {}, [], []
    for c in model.__table__.columns:  # type: ignore[attr-defined]
        if c.name == "id":
            continue
        names.append(c.name)
        f = model.model_fields[c.name]
        if f.default_factory is not None:  # the models' own take no argument (utcnow)
            factories.append((c.name, f.default_factory))
            continue
        default = None if f.is_required() else f.default
        if isinstance(default, _IMMUTABLE):
            fixed[c.name] = default
        else:
            mutable.append((c.name, default))
    return _Defaults(frozenset(names), fixed, tuple(mutable), tuple(factories))  # type: ignore[arg-type]


def row_values(model: type[SQLModel], given: Mapping[str, Any]) -> dict[str, Any]:
    """The values an INSERT of one `model` row writes: `given`, and the model's defaults for the
    columns it leaves out, exactly as an object of `model` built from `given` would hold them
    (tested), without building one (a SQLModel object costs ~0.1 ms: most of a durable write)."""
    d = _defaults(model)
    out = {**d.fixed, **given}
    for name, default in d.mutable:
        if name not in given:
            out[name] = copy.copy(default)
    for name, factory in d.factories:
        if name not in given:
            out[name] = factory()  # type: ignore[call-arg]
    if len(out) != len(d.names) or "id" in given:
        out.pop("id", None)
        unknown = set(out) - d.names
        if unknown:
            raise ValueError(
                f"{model.__name__} has no column {', '.join(sorted(unknown))}: expected some "
                f"of {', '.join(sorted(d.names))}"
            )
    return out


def _values_of(row: SQLModel) -> dict[str, Any]:
    table = row.__table__  # type: ignore[attr-defined]
    return {c.name: getattr(row, c.name) for c in table.columns if c.name != "id"}


@dataclass(frozen=True)
class InspectionIds:
    item: int
    predictions: tuple[int, ...]
    decision: int | None
    disposition: int | None
    # the disposition's links as written: human_decision_id, prediction_id, model_version_id
    links: dict[str, int | None]


def record_inspection_rows(
    *,
    conn: Connection | Writer,
    item: Mapping[str, Any],
    predictions: Sequence[Mapping[str, Any]] = (),
    decision: Mapping[str, Any] | None = None,
    disposition: Mapping[str, Any] | None = None,
    requests: Sequence[Mapping[str, Any]] = (),
) -> InspectionIds:
    """Write one inspected item with everything decided about it, inside the caller's transaction
    (`conn`: the session's connection, or a db.driver.Writer in its transaction), from the column
    values of each row (db/models.py: Item, Prediction, HumanDecision, Disposition; left-out
    columns take the model's defaults).

    The foreign keys between the rows are filled in here. Which prediction the disposition rests
    on is its `prediction_id` if given, else the first one of the champion or canary slot (the
    answer acted on; a hidden model's answer follows it). The decision and the disposition are
    chained (db/chain.py) from the values written: the session's chain hook does not see rows
    written this way. `requests`: the item's adjudication requests (AdjudicationRequest), if it
    was drawn for review."""
    item_values = row_values(Item, item)
    item_id = _insert(conn, _ITEM, item_values, "item")
    pred_ids = []
    acted: dict[str, Any] | None = None
    for given in predictions:
        values = row_values(Prediction, {**given, "item_id": item_id})
        pred_ids.append(_insert(conn, _PREDICTION, values, "prediction"))
        if acted is None and values["slot"] in (Slot.champion, Slot.canary):
            acted = values
    chained: list[tuple[str, int, dict[str, Any]]] = []
    decision_id = disposition_id = None
    links: dict[str, int | None] = {}
    if decision is not None:
        values = row_values(HumanDecision, {**decision, "item_id": item_id})
        decision_id = _insert(conn, _DECISION, values, "human decision")
        chained.append(("human_decision", decision_id, values))
    if disposition is not None:
        values = row_values(Disposition, {**disposition, "item_id": item_id})
        if decision_id is not None and values["human_decision_id"] is None:
            values["human_decision_id"] = decision_id
        if acted is not None and values["prediction_id"] is None:
            values["prediction_id"] = acted["id"]
            values["model_version_id"] = values["model_version_id"] or acted["model_version_id"]
        disposition_id = _insert(conn, _DISPOSITION, values, "disposition")
        chained.append(("disposition", disposition_id, values))
        links = {k: values[k] for k in ("human_decision_id", "prediction_id", "model_version_id")}
    if chained:
        append_rows(conn, f"station:{item_values['station_id']}", chained)
    for given in requests:
        values = row_values(AdjudicationRequest, {**given, "item_id": item_id})
        _insert(conn, _REQUEST, values, "adjudication request")
    return InspectionIds(item_id, tuple(pred_ids), decision_id, disposition_id, links)


def record_inspection(
    *,
    session: Session,
    item: Item,
    predictions: Sequence[Prediction] = (),
    decision: HumanDecision | None = None,
    disposition: Disposition | None = None,
) -> Item:
    """record_inspection_rows from objects, which get their ids and foreign keys filled in
    (they are not attached to the session: they are history, not state)."""
    ids = record_inspection_rows(
        conn=session.connection(),
        item=_values_of(item),
        predictions=[_values_of(p) for p in predictions],
        decision=None if decision is None else _values_of(decision),
        disposition=None if disposition is None else _values_of(disposition),
    )
    item.id = ids.item
    for p, pid in zip(predictions, ids.predictions, strict=True):
        p.item_id, p.id = ids.item, pid
    if decision is not None:
        decision.item_id, decision.id = ids.item, ids.decision
    if disposition is not None:
        disposition.item_id, disposition.id = ids.item, ids.disposition
        for name, value in ids.links.items():
            setattr(disposition, name, value)
    return item


def record_human_decision(
    *, session: Session, decision: HumanDecision, disposition: Disposition | None = None
) -> HumanDecision:
    """A decision on an item already recorded: an audit of an auto-decision, or a correction (undo)."""
    session.add(decision)
    _flush(session, "human decision")
    if disposition is not None:
        disposition.item_id = decision.item_id
        disposition.human_decision_id = decision.id
        session.add(disposition)
        _flush(session, "disposition")
    return decision


def effective_decision(*, session: Session, item_id: int) -> HumanDecision | None:
    """The human decision in force: the latest one that no later decision supersedes."""
    superseded = select(HumanDecision.supersedes_id).where(
        col(HumanDecision.supersedes_id).is_not(None)
    )
    return session.exec(
        select(HumanDecision)
        .where(HumanDecision.item_id == item_id, col(HumanDecision.id).not_in(superseded))
        .order_by(col(HumanDecision.id).desc())
    ).first()


def final_disposition(*, session: Session, item_id: int) -> Disposition | None:
    return session.exec(
        select(Disposition)
        .where(Disposition.item_id == item_id)
        .order_by(col(Disposition.id).desc())
    ).first()


def record_adjudication(
    *, session: Session, adjudication: Adjudication, level: Level, threshold_version: str = ""
) -> Adjudication:
    """A QA lead's label for an item; it becomes the item's final disposition."""
    session.add(adjudication)
    _flush(session, "adjudication")
    session.add(
        Disposition(
            item_id=adjudication.item_id,
            final_label=adjudication.label,
            decided_by=DecidedBy.adjudication,
            level=level,
            threshold_version=threshold_version,
        )
    )
    _flush(session, "disposition")
    return adjudication


def count_items(*, session: Session, station_id: int | None = None) -> int:
    query = select(func.count()).select_from(Item)
    if station_id is not None:
        query = query.where(Item.station_id == station_id)
    return int(session.exec(query).one())


# --------------------------------------------------------------------------- levels and gates


def current_level(*, session: Session, station_id: int, default: Level = Level.human_only) -> Level:
    latest = session.exec(
        select(LevelChange)
        .where(LevelChange.station_id == station_id)
        .order_by(col(LevelChange.id).desc())
    ).first()
    return latest.to_level if latest is not None else default


def record_gate_evaluation(*, session: Session, evaluation: GateEvaluation) -> GateEvaluation:
    session.add(evaluation)
    _flush(session, "gate evaluation")
    return evaluation


def record_level_change(*, session: Session, change: LevelChange) -> LevelChange:
    session.add(change)
    _flush(session, "level change")
    return change


def level_history(
    *, session: Session, station_id: int, since: datetime | None = None
) -> Sequence[LevelChange]:
    query = select(LevelChange).where(LevelChange.station_id == station_id)
    if since is not None:
        query = query.where(LevelChange.changed_at >= since)
    return session.exec(query.order_by(col(LevelChange.id))).all()


def champion_version(session: Session, station_id: int) -> ModelVersion | None:
    """The model version whose evidence a promotion rests on: the deployed champion, else the
    version behind this station's latest champion prediction."""
    deployment = session.exec(
        select(Deployment)
        .where(
            Deployment.station_id == station_id,
            Deployment.slot == Slot.champion,
            col(Deployment.ended_at).is_(None),
        )
        .order_by(col(Deployment.id).desc())
    ).first()
    if deployment is not None:
        return session.get(ModelVersion, deployment.model_version_id)
    latest = session.exec(
        select(Prediction.model_version_id)
        .join(Item, col(Item.id) == col(Prediction.item_id))
        .where(
            Item.station_id == station_id,
            Prediction.slot == Slot.champion,
            col(Prediction.model_version_id).is_not(None),
        )
        .order_by(col(Prediction.id).desc())
        .limit(1)  # .first() alone: the ORM reads every row first (0.54 s on 1,010,000 items)
    ).first()
    return session.get(ModelVersion, latest) if latest is not None else None


def record_automatic_demotion(
    *,
    session: Session,
    station_id: int,
    cause: str,
    to_level: Level,
    default: Level = Level.human_only,
) -> LevelChange | None:
    """The system steps a station down to `to_level` (recorded as automatic, with its cause);
    nothing when it is already at or below it. Never a promotion. The one writer behind
    station.levels.demote_automatically and the audit test of review.audits."""
    now = current_level(session=session, station_id=station_id, default=default)
    if now.rank <= to_level.rank:
        return None
    return record_level_change(
        session=session,
        change=LevelChange(
            station_id=station_id,
            from_level=now,
            to_level=to_level,
            reason=cause,
            automatic=True,
        ),
    )
