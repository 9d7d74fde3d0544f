"""Plain, JSON-serialisable records of what was decided about an item: how they are built from an
assessed item and its route, and how they map onto the database rows. A record is self-sufficient
(it names its model by name/version/sha256, not by row id), so it can wait in the spool and be
written after a restart."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlmodel import Session, col, select

from db.driver import Writer
from db.models import (
    ChosenFor,
    DecidedBy,
    HumanDecision,
    Item,
    Level,
    ModelVersion,
    Slot,
    Station,
)
from db.repo import (
    InspectionIds,
    active_deployments,
    deploy,
    record_inspection_rows,
    register_model_version,
)
from station.errors import ModelRefused
from station.pipeline.assess import Assessed
from station.pipeline.predictor import ModelInfo
from station.pipeline.router import Route

if TYPE_CHECKING:
    from station.pipeline.lineup import ShadowJob

UID_KEY = "record_uid"


def new_uid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class PredictionRecord:
    model: ModelInfo | None
    slot: str = Slot.champion.value
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    p_defect: float | None = None
    confidence: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    embedding: tuple[float, ...] | None = None  # model/embedding.py; None where not exposed


def _embedding(pred: object) -> tuple[float, ...] | None:
    found = getattr(pred, "embedding", None)  # a fake predictor's answer may have none
    return None if found is None else tuple(float(v) for v in found)


@dataclass(frozen=True)
class DecisionRecord:
    operator_id: int
    label: str
    decided_at: datetime
    decision_ms: float | None
    suggestion_shown: bool
    blind: bool
    audit: bool
    golden: bool
    defect_types: tuple[str, ...]  # from the station's labels (review.labels.LabelSet)


@dataclass(frozen=True)
class InspectionRecord:
    """A new item with everything decided about it; written in one transaction."""

    uid: str
    station_id: int
    captured_at: datetime
    image_sha256: str
    image_path: str
    width: int
    height: int
    stats: dict[str, Any]
    source: str
    ground_truth: str | None
    golden: bool
    trigger_version: str
    guard_version: str
    guard_passed: bool
    guard_reason: str
    predictions: tuple[PredictionRecord, ...]
    decision: DecisionRecord | None
    final_label: str
    decided_by: str
    level: str
    threshold_version: str
    kind: str = "item"
    # Drawn into the truth sample (queued for adjudication): the chance it had; None: not drawn.
    truth_sample: float | None = None
    # An audit whose auditor disagreed with the model's call: queued for adjudication.
    audit_flagged: bool = False
    # milliseconds per stage from capture to the screen (station/pipeline/timeline.py); None in
    # spools written before they were measured
    stage_ms: dict[str, float] | None = None


@dataclass(frozen=True)
class CorrectionRecord:
    """An undo: a new decision on an item already recorded, superseding the previous one."""

    uid: str
    corrects_uid: str
    decision: DecisionRecord
    final_label: str
    level: str
    threshold_version: str
    decided_by: str = (
        DecidedBy.human.value
    )  # an audit's correction leaves the model's call in force
    kind: str = "correction"


@dataclass(frozen=True)
class ChallengeRecord:
    """An inspector doubts an automatic decision: the item goes to adjudication (a request
    with reason "challenge"); it is never a decision, and never uniform evidence."""

    uid: str
    item_uid: str  # the uid of the item's record
    operator_id: int
    at: datetime
    kind: str = "challenge"


Record = InspectionRecord | CorrectionRecord | ChallengeRecord


@dataclass(frozen=True)
class Deferred:
    """A record that can only be built later (its image is still being written); the recorder
    builds it on its own thread. `uid` is the uid the built record will carry."""

    uid: str
    build: Callable[[], Record]


# --------------------------------------------------------------------------- building


def inspection_record(
    assessed: Assessed,
    route: Route,
    *,
    uid: str,
    station_id: int,
    decision: DecisionRecord | None,
    final_label: str,
    decided_by: DecidedBy,
    threshold_version: str,
    truth_sample: float | None = None,
    audit_flagged: bool = False,
) -> InspectionRecord:
    """The record of a new item: what was captured, what the guard and the model said, who
    decided what, at which level. Waits for the image store (call it off the GUI thread, or once
    `assessed.captured.stored` is done)."""
    cap = assessed.captured
    predictions: tuple[PredictionRecord, ...] = ()
    # The answer acted on comes first (the disposition rests on it): the champion's, or the
    # canary's in its arm; a hidden model's answer follows (shadow).
    slot = Slot.canary.value if assessed.canary else Slot.champion.value
    if assessed.plan.run_model and assessed.inference is not None:
        pred = assessed.prediction
        if pred is not None:
            predictions = (
                PredictionRecord(
                    model=assessed.model,
                    slot=slot,
                    label=pred.label,
                    probabilities={k: float(v) for k, v in pred.probabilities.items()},
                    p_defect=float(pred.p_defect),
                    confidence=float(pred.confidence),
                    latency_ms=float(pred.latency_ms),
                    embedding=_embedding(pred),
                ),
            )
        else:
            predictions = (
                PredictionRecord(
                    model=assessed.model,
                    slot=slot,
                    error=assessed.inference.error,
                    latency_ms=assessed.inference.latency_ms,
                ),
            )
    if assessed.shadow is not None:
        predictions = (*predictions, challenger_prediction(assessed.shadow))
    stats = cap.stats.as_dict()
    return InspectionRecord(
        uid=uid,
        station_id=station_id,
        captured_at=cap.captured_at,
        image_sha256=cap.image_sha256,
        image_path=cap.image_path,
        width=int(stats["width"]),
        height=int(stats["height"]),
        stats={k: float(v) for k, v in stats.items()},
        source=cap.source,
        ground_truth=cap.ground_truth,
        golden=cap.golden,
        trigger_version=cap.trigger_version,
        guard_version=assessed.guard.version,
        guard_passed=assessed.guard.passed,
        guard_reason=assessed.guard.reason,
        predictions=predictions,
        decision=decision,
        final_label=final_label,
        decided_by=decided_by.value,
        level=route.plan.level.value,
        threshold_version=threshold_version,
        truth_sample=truth_sample,
        audit_flagged=audit_flagged,
        stage_ms=cap.timeline.stage_ms() or None,
    )


#: How long a record being built waits for the challenger's answer (the recorder's thread: the
#: inspector never waits for it). Its worker answers or times out well within this.
SHADOW_WAIT_S = 30.0


def challenger_prediction(job: ShadowJob) -> PredictionRecord:
    """A hidden model's answer on the item, recorded beside the one acted on (slot challenger;
    champion on an item the canary answered)."""
    try:
        result = job.future.result(timeout=SHADOW_WAIT_S)
    except FutureTimeout:
        return PredictionRecord(
            model=job.model,
            slot=job.slot,
            error=f"no answer within {SHADOW_WAIT_S:g} s",
        )
    except CancelledError:
        return PredictionRecord(model=job.model, slot=job.slot, error="the station stopped first")
    pred = result.prediction
    if pred is None:
        return PredictionRecord(
            model=job.model,
            slot=job.slot,
            error=result.error,
            latency_ms=result.latency_ms,
        )
    return PredictionRecord(
        model=job.model,
        slot=job.slot,
        label=pred.label,
        probabilities={k: float(v) for k, v in pred.probabilities.items()},
        p_defect=float(pred.p_defect),
        confidence=float(pred.confidence),
        latency_ms=float(pred.latency_ms),
        embedding=_embedding(pred),
    )


# --------------------------------------------------------------------------- JSON


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return {"__dt__": o.isoformat()}
    raise TypeError(f"cannot serialise {type(o).__name__}")


def _hook(d: dict[str, Any]) -> Any:
    if set(d) == {"__dt__"}:
        return datetime.fromisoformat(d["__dt__"])
    return d


def to_json(record: Record) -> str:
    return json.dumps(asdict(record), default=_default, separators=(",", ":"))


def _decision(d: dict[str, Any] | None, ok_label: str) -> DecisionRecord | None:
    if d is None:
        return None
    types = d.pop("defect_types", None)
    if types is None:  # a spool written before decisions carried their defect types
        types = [] if d["label"] == ok_label else [d["label"]]
    return DecisionRecord(defect_types=tuple(types), **d)


def from_json(line: str, *, ok_label: str = "ok") -> Record:
    """A spooled record; `ok_label` is the station's defect-free label (for old spools)."""
    d = json.loads(line, object_hook=_hook)
    if d.get("kind") == "challenge":
        return ChallengeRecord(**d)
    if d.get("kind") == "correction":
        dec = _decision(d.pop("decision"), ok_label)
        assert dec is not None
        return CorrectionRecord(decision=dec, **d)
    preds = tuple(
        PredictionRecord(
            model=None
            if p["model"] is None
            else ModelInfo(**{**p["model"], "classes": tuple(p["model"]["classes"])}),
            **{k: v for k, v in p.items() if k not in ("model", "embedding")},
            embedding=None if p.get("embedding") is None else tuple(p["embedding"]),
        )
        for p in d.pop("predictions")
    )
    return InspectionRecord(predictions=preds, decision=_decision(d.pop("decision"), ok_label), **d)


# --------------------------------------------------------------------------- rows


def ensure_model_version(*, session: Session, ref: ModelInfo) -> ModelVersion:
    return register_model_version(
        session=session,
        model=ModelVersion(
            name=ref.name,
            version=ref.version,
            sha256=ref.sha256,
            architecture=ref.architecture,
            artifact_path=ref.path,
            classes=list(ref.classes),
            ok_class=ref.ok_class,
            thresholds=dict(ref.thresholds),
            temperature=ref.temperature,
        ),
    )


def ensure_champion(*, session: Session, station_id: int, ref: ModelInfo) -> ModelVersion:
    """Register the model version and, unless it already holds the champion slot at the station,
    deploy it there: on a station's first start (no champion yet), or on a simulation's own
    station. Refused (ModelRefused) when a real station's record names another champion: only
    an engineer changes it (`station model deploy`)."""
    mv = ensure_model_version(session=session, ref=ref)
    station = session.get(Station, station_id)
    assert station is not None
    for d in active_deployments(session=session, station_id=station_id):
        if d.slot == Slot.champion:
            if d.model_version_id == mv.id:
                return mv
            if not station.simulated:
                other = session.get(ModelVersion, d.model_version_id)
                name = f"{other.name}:{other.version}" if other is not None else "another model"
                raise ModelRefused(
                    f"this station's champion is {name}, not {ref.name}:{ref.version}: an "
                    "engineer changes it with `station model deploy NAME:VERSION --as champion`"
                )
    deploy(
        session=session,
        station=station,
        model=mv,
        slot=Slot.champion,
        reason="the configured model, at the station's first start"
        if not station.simulated
        else "station simulate",
    )
    return mv


def find_item_by_uid(*, session: Session, uid: str, image_sha256: str | None = None) -> Item | None:
    """The item recorded under `uid`: among the items of that image where its hash is given
    (indexed), else the newest item whose record carries it. The uid has no index of its own
    (one more random B-tree insert in every item's commit): the newest items are read first
    and the search stops at the first match, so an item recorded lately is found at once and
    only an old one or a missing one costs a scan (~0.5 s at 300k items)."""
    query = select(Item)
    if image_sha256 is not None:
        query = query.where(Item.image_sha256 == image_sha256)
    else:
        query = query.where(col(Item.stats)[UID_KEY].as_string() == uid).limit(1)
    for item in session.exec(query.order_by(col(Item.id).desc())):
        if item.stats.get(UID_KEY) == uid:
            return item
    return None


def decision_values(d: DecisionRecord) -> dict[str, Any]:
    """A decision's column values (db.models.HumanDecision; item_id filled in where written)."""
    return {
        "operator_id": d.operator_id,
        "label": d.label,
        "defect_types": list(d.defect_types),
        "decided_at": d.decided_at,
        "decision_ms": d.decision_ms,
        "suggestion_shown": d.suggestion_shown,
        "blind": d.blind,
        "audit": d.audit,
        "golden": d.golden,
    }


def human_decision_row(d: DecisionRecord) -> HumanDecision:
    return HumanDecision(item_id=0, **decision_values(d))


def _model_key(ref: ModelInfo) -> str:
    return f"{ref.name}|{ref.version}|{ref.sha256}"


def register_models(*, session: Session, rec: InspectionRecord, model_ids: dict[str, int]) -> None:
    """Register the model versions `rec` names that `model_ids` (the writer's cache of model
    version ids) does not hold yet, in the caller's transaction (registering is idempotent: the
    recorder does it in a transaction of its own before a new item's rows)."""
    for p in rec.predictions:
        if p.model is not None and _model_key(p.model) not in model_ids:
            mv = ensure_model_version(session=session, ref=p.model)
            assert mv.id is not None
            model_ids[_model_key(p.model)] = mv.id


def models_registered(rec: InspectionRecord, model_ids: dict[str, int]) -> bool:
    return all(p.model is None or _model_key(p.model) in model_ids for p in rec.predictions)


def write_inspection(
    *, conn: Connection | Writer, rec: InspectionRecord, model_ids: dict[str, int]
) -> InspectionIds:
    """The rows of one inspection, through db.repo.record_inspection_rows, in the caller's
    transaction on `conn` (a Connection or a SQLite Writer, not an ORM Session:
    bench/db_write.py). Every model `rec` names must be in `model_ids` already
    (register_models)."""
    predictions: list[dict[str, Any]] = []
    for p in rec.predictions:
        predictions.append(
            {
                "model_version_id": None if p.model is None else model_ids[_model_key(p.model)],
                "slot": Slot(p.slot),
                "label": p.label,
                "probabilities": dict(p.probabilities),
                "p_defect": p.p_defect,
                "confidence": p.confidence,
                "latency_ms": p.latency_ms,
                "error": p.error,
                "embedding": None if p.embedding is None else list(p.embedding),
            }
        )
    item = {
        "station_id": rec.station_id,
        "captured_at": rec.captured_at,
        "image_sha256": rec.image_sha256,
        "image_path": rec.image_path,
        "width": rec.width,
        "height": rec.height,
        "brightness": rec.stats.get("brightness"),
        "contrast": rec.stats.get("contrast"),
        "sharpness": rec.stats.get("sharpness"),
        "clipped_share": rec.stats.get("clipped_share"),
        "stats": {**rec.stats, UID_KEY: rec.uid},
        "source": rec.source,
        "ground_truth": rec.ground_truth,
        "golden": rec.golden,
        "trigger_version": rec.trigger_version,
        "guard_version": rec.guard_version,
        "guard_passed": rec.guard_passed,
        "guard_reason": rec.guard_reason,
        "stage_ms": rec.stage_ms,
    }
    acted = predictions[0] if predictions else None  # the champion's, or the canary's
    model_version_id = acted["model_version_id"] if acted is not None else None
    disposition: dict[str, Any] = {
        "final_label": rec.final_label,
        "decided_by": DecidedBy(rec.decided_by),
        "level": Level(rec.level),
        "threshold_version": rec.threshold_version,
        "model_version_id": model_version_id,
    }
    queued = []
    if rec.truth_sample is not None:
        queued.append((ChosenFor.truth_sample, float(rec.truth_sample)))
    if rec.audit_flagged:
        queued.append((ChosenFor.disagreement, 1.0))
    return record_inspection_rows(
        conn=conn,
        item=item,
        predictions=predictions,
        decision=None if rec.decision is None else decision_values(rec.decision),
        disposition=disposition,
        requests=[
            {
                "station_id": rec.station_id,
                "reason": reason.value,
                "probability": probability,
                "model_version_id": model_version_id,
            }
            for reason, probability in queued
        ],
    )
