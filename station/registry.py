"""The model registry: which model versions a station may run, where their verified artifacts
are, and which role each holds at a station.

    register_artifact   verify an artifact, copy it into the content-addressed store beside the
                        database's images (models/<sha256>/), add its model_version row
    deploy_version      make a registered version the champion, the challenger (hidden, beside
                        the champion) or the canary (the challenger acting on a share of items)
    rollback            the previous champion decides again; the one it replaces becomes previous
    retire_challenger   the challenger (or canary) stops

Every change of role is an engineer's (`deploy_model`), with a reason, appended to the
`deployment` history; a running station follows it from the next item on
(station/pipeline/lineup.py). The roles are the schema's slots: champion, challenger, canary,
standby (shown as "previous"). A new champion brings only its own evidence: when that does not
support the station's level, the station drops to the highest level it does support, recorded as
an automatic change (`settle_level`).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import Deployment, Level, LevelChange, ModelVersion, Operator, Slot, Station
from db.repo import (
    active_deployments,
    current_level,
    deploy,
    record_automatic_demotion,
    register_model_version,
)
from station.auth import require
from station.errors import StationError
from station.settings import Settings
from station.text import readable

log = logging.getLogger(__name__)

#: The store's folder under the station's files dir (beside the database's images).
STORE = "models"
#: How the roles are called where people read them.
ROLE_NAMES = {
    Slot.champion: "champion",
    Slot.challenger: "challenger",
    Slot.canary: "canary",
    Slot.standby: "previous",
}
DEPLOYABLE = ("champion", "challenger", "canary")


class RegistryRefused(StationError):
    """A registry command that cannot be done as asked; nothing was changed."""


# --------------------------------------------------------------------------- names and the store


def parse_ref(spec: str) -> tuple[str, str]:
    """'NAME:VERSION' -> (name, version); anything else is a one-line error."""
    name, sep, version = spec.rpartition(":")
    if not sep or not name.strip() or not version.strip():
        raise RegistryRefused(
            f"expected a model version as NAME:VERSION (see `station model list`), got {spec!r}"
        )
    return name.strip(), version.strip()


def spec_of(mv: ModelVersion) -> str:
    return f"{mv.name}:{mv.version}"


def store_root(settings: Settings) -> Path:
    return settings.files_dir / STORE


def artifact_dir(settings: Settings, mv: ModelVersion) -> Path | None:
    """Where this station finds the version's artifact: its store copy (a path relative to the
    files dir) or, for versions recorded before the registry, the folder it was run from."""
    return artifact_location(settings.files_dir, mv.artifact_path)


def artifact_location(files_dir: Path, artifact_path: str) -> Path | None:
    """`artifact_dir` from the recorded path alone (None: none recorded)."""
    if not artifact_path:
        return None
    path = Path(artifact_path)
    return path if path.is_absolute() else files_dir / path


def _copy_into_store(source: Path, root: Path, sha256: str, files: list[str]) -> Path:
    """The artifact's files copied to root/<sha256>, whole or not at all (a temporary folder
    renamed into place); an existing copy that still verifies is kept."""
    from model import read_manifest

    target = root / sha256
    if target.is_dir():
        try:
            read_manifest(target)
            return target
        except Exception as e:  # a damaged copy: replaced by a fresh one below
            log.warning("the stored copy at %s does not verify (%s): replacing it", target, e)
            shutil.rmtree(target)
    root.mkdir(parents=True, exist_ok=True)
    incoming = root / f".incoming-{sha256[:16]}-{os.getpid()}"
    if incoming.exists():
        shutil.rmtree(incoming)
    incoming.mkdir()
    try:
        for name in [*files, "manifest.json"]:
            with open(source / name, "rb") as src, open(incoming / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
        read_manifest(incoming)  # the copy is what was verified, byte for byte
        os.replace(incoming, target)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- register


@dataclass(frozen=True)
class Registered:
    spec: str
    sha256: str
    path: Path
    new: bool  # False: the same weights were registered already


def register_artifact(
    engine: Engine, settings: Settings, artifact: Path, *, operator: Operator | None
) -> Registered:
    """Verify `artifact` (every hash, a plain state_dict that loads into its architecture, the
    station's classes), copy it into the store and register NAME:VERSION. The same name and
    version with other weights is refused before anything is copied. `operator` None: the
    station registering its configured model at first start (or a simulation)."""
    from model import read_manifest
    from station.pipeline.predictor import check_fits, load_predictor

    if operator is not None:
        require(operator, "deploy_model")
    artifact = Path(artifact)
    # Loaded whole, as a station would (ModelError/OSError: one line): a pickle, weights that do
    # not fit the architecture or a file changed after export never reach the store.
    _predictor, info = load_predictor(artifact, threads=None)
    check_fits(info, settings.labels)
    manifest = read_manifest(artifact)
    with session_scope(engine) as s:
        _refuse_other_weights(s, info.name, info.version, info.sha256)
    stored = _copy_into_store(
        artifact, store_root(settings), info.sha256, sorted(manifest["files"])
    )
    relative = stored.relative_to(settings.files_dir).as_posix()
    with session_scope(engine) as s:
        existing = _find(s, info.name, info.version)
        if existing is not None:  # same weights (checked above): recorded by a station before
            new = existing.registered_by is None and operator is not None
            existing.artifact_path = relative
            if operator is not None and existing.registered_by is None:
                existing.registered_by = operator.id
            s.add(existing)
            return Registered(spec_of(existing), info.sha256, stored, new)
        register_model_version(
            session=s,
            model=ModelVersion(
                name=info.name,
                version=info.version,
                sha256=info.sha256,
                architecture=info.architecture,
                artifact_path=relative,
                classes=list(info.classes),
                ok_class=info.ok_class,
                thresholds=dict(info.thresholds),
                temperature=info.temperature,
                metrics=dict(manifest.get("metrics") or {}),
                registered_by=operator.id if operator is not None else None,
            ),
        )
    return Registered(f"{info.name}:{info.version}", info.sha256, stored, True)


def _find(session: Session, name: str, version: str) -> ModelVersion | None:
    return session.exec(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    ).first()


def _refuse_other_weights(session: Session, name: str, version: str, sha256: str) -> None:
    existing = _find(session, name, version)
    if existing is not None and existing.sha256 != sha256:
        raise RegistryRefused(
            f"model {name}:{version} is already registered with other weights (sha256 "
            f"{existing.sha256[:12]}.., these are {sha256[:12]}..): give the new weights a new "
            f"version (`station model train ... --version {version}.1`); nothing was registered"
        )


def find_version(session: Session, spec: str) -> ModelVersion:
    """The registered version NAME:VERSION, or a one-line error listing what is registered."""
    name, version = parse_ref(spec)
    mv = _find(session, name, version)
    if mv is None or not mv.artifact_path:
        known = [
            spec_of(m)
            for m in session.exec(select(ModelVersion).order_by(col(ModelVersion.id))).all()
            if m.artifact_path
        ]
        raise RegistryRefused(
            f"no registered model version {name}:{version}: registered are "
            f"{', '.join(known) or 'none yet'} (register one with `station model register "
            "ARTIFACT --user ENGINEER`)"
        )
    return mv


# --------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class Lineup:
    """Who holds which role at a station now (model_version rows, detached)."""

    champion: ModelVersion | None
    challenger: ModelVersion | None  # the challenger, or the canary when weight > 0
    weight: float  # the canary's share of items in percent; 0: a hidden challenger
    previous: ModelVersion | None
    deployment_ids: tuple[int, ...]  # changes whenever any role changes
    canary_salt: str = ""  # the canary deployment's id: each step draws its arm afresh
    canary_since: datetime | None = None  # when the canary's current step began
    champion_since: datetime | None = None  # when the champion became champion


def lineup(session: Session, station_id: int) -> Lineup:
    held: dict[Slot, tuple[ModelVersion, Deployment]] = {}
    for d in active_deployments(session=session, station_id=station_id):
        mv = session.get(ModelVersion, d.model_version_id)
        if mv is not None:
            held[Slot(d.slot)] = (mv, d)  # the latest deployment of a slot wins
    canary = held.get(Slot.canary)
    challenger = canary or held.get(Slot.challenger)
    return Lineup(
        champion=held[Slot.champion][0] if Slot.champion in held else None,
        challenger=challenger[0] if challenger is not None else None,
        weight=canary[1].traffic_share * 100.0 if canary is not None else 0.0,
        previous=held[Slot.standby][0] if Slot.standby in held else None,
        deployment_ids=tuple(sorted(d.id for _, d in held.values() if d.id is not None)),
        canary_salt=f"canary-{canary[1].id}" if canary is not None else "",
        canary_since=canary[1].started_at if canary is not None else None,
        champion_since=held[Slot.champion][1].started_at if Slot.champion in held else None,
    )


@dataclass(frozen=True)
class RoleChange:
    spec: str
    role: str
    weight: float
    replaced: str | None  # the version that held the role before
    level_change: LevelChange | None  # the station dropped: the new champion's evidence


def station_row(session: Session, settings: Settings, name: str | None) -> Station:
    from station.levels import resolve_station

    return resolve_station(session, settings, name)


def _reason(reason: str) -> str:
    text = readable(reason, "--reason").strip()
    if not text:
        raise RegistryRefused("a change of model needs a reason (--reason TEXT); it is recorded")
    return text


def _check_stored(settings: Settings, mv: ModelVersion) -> None:
    """The version's artifact is here and still verifies (before any role changes)."""
    from model import read_manifest

    path = artifact_dir(settings, mv)
    if path is None or not path.is_dir():
        raise RegistryRefused(
            f"{spec_of(mv)} has no artifact on this machine ({path}): register it here with "
            "`station model register ARTIFACT`"
        )
    m = read_manifest(path)
    if m["sha256"] != mv.sha256:
        raise RegistryRefused(
            f"the artifact at {path} is not {spec_of(mv)} (sha256 {str(m['sha256'])[:12]}.., the "
            f"registry says {mv.sha256[:12]}..): register it again"
        )


def deploy_version(
    engine: Engine,
    settings: Settings,
    spec: str,
    role: str,
    *,
    operator: Operator,
    reason: str,
    weight: float | None = None,
    station_name: str | None = None,
) -> RoleChange:
    """Put registered version `spec` in `role` (champion | challenger | canary) at the station.

    champion: the old champion becomes previous (kept loaded for rollback), and the station's
    level is settled on the new champion's own evidence. canary: the challenger acting on
    `weight` percent of items (0 < weight <= 100); a second canary while one runs is refused."""
    require(operator, "deploy_model")
    text = _reason(reason)
    if role not in DEPLOYABLE:
        raise RegistryRefused(f"unknown role {role!r}: expected one of {', '.join(DEPLOYABLE)}")
    if weight is not None and role != "canary":
        raise RegistryRefused(f"--weight is the canary's share of items; {role} takes none")
    if role == "canary":
        if weight is None:
            raise RegistryRefused("a canary needs --weight PERCENT (for example 5)")
        if not 0.0 < weight <= 100.0:
            raise RegistryRefused(f"--weight {weight:g}: expected a share of items in (0, 100]")
    with session_scope(engine) as s:
        station = station_row(s, settings, station_name)
        assert station.id is not None
        mv = find_version(s, spec)
        _check_stored(settings, mv)
        now = lineup(s, station.id)

        def same(other: ModelVersion | None) -> bool:
            return other is not None and other.id == mv.id

        if role == "champion":
            if same(now.champion):
                raise RegistryRefused(f"{spec_of(mv)} is already the champion here")
            replaced = now.champion
            crown(
                s,
                station,
                now,
                mv,
                operator_id=operator.id,
                reason=text,
                replaced_reason=f"replaced by {spec_of(mv)}: {text}",
            )
        else:
            if same(now.champion):
                raise RegistryRefused(
                    f"{spec_of(mv)} is the champion here: a {role} is another version"
                )
            replaced = now.challenger
            if role == "canary" and now.weight > 0 and not same(now.challenger):
                raise RegistryRefused(
                    f"a canary is already running ({spec_of(now.challenger)} at "  # type: ignore[arg-type]
                    f"{now.weight:g}%): retire it or let its ramp end first"
                )
            end_roles(s, station.id, (Slot.challenger, Slot.canary))
            deploy(
                session=s,
                station=station,
                model=mv,
                slot=Slot.canary if role == "canary" else Slot.challenger,
                traffic_share=(weight or 0.0) / 100.0 if role == "canary" else 0.0,
                operator_id=operator.id,
                reason=text,
            )
        station_label = station.name
        replaced_spec = spec_of(replaced) if replaced is not None else None
    change = None
    if role == "champion":
        change = settle_level(engine, settings, station_label, why=f"new champion {spec}")
    return RoleChange(spec_of(mv), role, weight or 0.0, replaced_spec, change)


def end_roles(session: Session, station_id: int, slots: tuple[Slot, ...]) -> None:
    from db.models import utcnow

    for d in active_deployments(session=session, station_id=station_id):
        if Slot(d.slot) in slots:
            d.ended_at = utcnow()
            session.add(d)
    session.flush()


def crown(
    session: Session,
    station: Station,
    now: Lineup,
    model: ModelVersion,
    *,
    operator_id: int | None,
    reason: str,
    replaced_reason: str,
) -> None:
    """`model` becomes the champion (leaving the challenger or previous role it held); the
    champion it replaces becomes previous, kept loaded for a rollback. The one way a champion
    changes: a deploy, a rollback, a canary's ramp ending."""
    assert station.id is not None

    def held(other: ModelVersion | None) -> bool:
        return other is not None and other.id == model.id

    if held(now.challenger):
        end_roles(session, station.id, (Slot.challenger, Slot.canary))
    if now.champion is not None:
        deploy(
            session=session,
            station=station,
            model=now.champion,
            slot=Slot.standby,
            operator_id=operator_id,
            reason=replaced_reason,
        )
    elif held(now.previous):
        end_roles(session, station.id, (Slot.standby,))
    deploy(
        session=session,
        station=station,
        model=model,
        slot=Slot.champion,
        operator_id=operator_id,
        reason=reason,
    )


def rollback(
    engine: Engine,
    settings: Settings,
    *,
    operator: Operator | None,
    reason: str,
    station_name: str | None = None,
) -> RoleChange:
    """The previous champion decides again from the next item; the champion it replaces becomes
    previous. `operator` None: the system's automatic rollback (the reason says what tripped)."""
    if operator is not None:
        require(operator, "deploy_model")
    text = _reason(reason)
    with session_scope(engine) as s:
        station = station_row(s, settings, station_name)
        assert station.id is not None
        now = lineup(s, station.id)
        if now.previous is None:
            raise RegistryRefused(
                "no previous model to roll back to at station "
                f"{station.name}: `station model history` shows what ran here"
            )
        back, out = now.previous, now.champion
        _check_stored(settings, back)
        crown(
            s,
            station,
            now,
            back,
            operator_id=operator.id if operator is not None else None,
            reason=f"rollback: {text}",
            replaced_reason=f"rolled back: {text}",
        )
        station_label = station.name
        result = RoleChange(
            spec_of(back), "champion", 0.0, spec_of(out) if out is not None else None, None
        )
    change = settle_level(engine, settings, station_label, why=f"rollback to {result.spec}")
    return replace(result, level_change=change)


def retire_challenger(
    engine: Engine,
    settings: Settings,
    *,
    operator: Operator,
    reason: str,
    station_name: str | None = None,
) -> str:
    """End the challenger (or canary); returns its NAME:VERSION."""
    require(operator, "deploy_model")
    text = _reason(reason)
    with session_scope(engine) as s:
        station = station_row(s, settings, station_name)
        assert station.id is not None
        now = lineup(s, station.id)
        if now.challenger is None:
            raise RegistryRefused(f"station {station.name} runs no challenger or canary")
        end_roles(s, station.id, (Slot.challenger, Slot.canary))
        # The end is a row of its own (weight 0, the reason), so history says who and why.
        deploy(
            session=s,
            station=station,
            model=now.challenger,
            slot=Slot.challenger,
            traffic_share=0.0,
            operator_id=operator.id,
            reason=f"retired: {text}",
        )
        end_roles(s, station.id, (Slot.challenger,))
        return spec_of(now.challenger)


# --------------------------------------------------------------------------- evidence follows


def settle_level(
    engine: Engine, settings: Settings, station_name: str, *, why: str
) -> LevelChange | None:
    """After a change of champion: the highest level the new champion's own evidence supports
    (review.report.supported_level); the station drops to it when it stands higher, recorded as
    an automatic change with the checks that failed. Never a promotion."""
    from review.report import supported_level

    with session_scope(engine) as s:
        station = station_row(s, settings, station_name)
        assert station.id is not None
        station_id = station.id
        level = current_level(
            session=s, station_id=station_id, default=Level(settings.levels.default)
        )
    if level.rank <= Level.shadow.rank:
        return None  # shadow needs no evidence of the model's
    with engine.connect() as conn:
        supported, failed = supported_level(
            conn,
            station_name,
            level,
            labels=settings.labels,
            rules=settings.gates.rules,
        )
        conn.rollback()
    if supported.rank >= level.rank:
        return None
    with session_scope(engine) as s:
        return record_automatic_demotion(
            session=s,
            station_id=station_id,
            cause=f"{why}: its own evidence supports {supported.value} ({failed})",
            to_level=supported,
            default=Level(settings.levels.default),
        )


# --------------------------------------------------------------------------- reading


def registered(session: Session) -> list[dict[str, Any]]:
    """Every registered version, oldest first, for `station model list`."""
    rows = []
    for mv in session.exec(select(ModelVersion).order_by(col(ModelVersion.id))).all():
        if not mv.artifact_path:
            continue
        by = session.get(Operator, mv.registered_by) if mv.registered_by else None
        rows.append(
            {
                "version": spec_of(mv),
                "sha256": mv.sha256,
                "architecture": mv.architecture,
                "registered_at": _iso(mv.registered_at),
                "registered_by": by.name if by is not None else None,
                "artifact": mv.artifact_path,
                "validation": (mv.metrics or {}).get("validation", {}).get("accuracy"),
            }
        )
    return rows


def history(session: Session, station_id: int) -> list[dict[str, Any]]:
    """Which version held which role at the station, when, who and why: one entry per deployment
    row, oldest first (append-only: a role is ended by the next holder, never rewritten)."""
    rows = session.exec(
        select(Deployment).where(Deployment.station_id == station_id).order_by(col(Deployment.id))
    ).all()
    out = []
    for d in rows:
        mv = session.get(ModelVersion, d.model_version_id)
        op = session.get(Operator, d.operator_id) if d.operator_id else None
        slot = Slot(d.slot)
        out.append(
            {
                "at": _iso(d.started_at),
                "version": spec_of(mv) if mv is not None else f"#{d.model_version_id}",
                "role": ROLE_NAMES[slot],
                "weight": round(d.traffic_share * 100.0, 6) if slot is Slot.canary else None,
                "until": _iso(d.ended_at) if d.ended_at is not None else None,
                "by": op.name if op is not None else "system",
                "reason": d.reason,
            }
        )
    return out


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t is not None else None


__all__ = [
    "Lineup",
    "Registered",
    "RegistryRefused",
    "RoleChange",
    "artifact_dir",
    "deploy_version",
    "find_version",
    "history",
    "lineup",
    "parse_ref",
    "register_artifact",
    "registered",
    "retire_challenger",
    "rollback",
    "settle_level",
    "spec_of",
]
