"""Every table of the database of record, in one place.

JSON columns take `default={}` / `default=[]` rather than a default_factory: pydantic copies mutable
defaults per instance anyway, and a factory costs an `inspect.signature` call on every construction,
a third of the time of recording an inspection (bench/db_write.py).

The records follow DESIGN.md "Records". Rows that carry evidence (items, predictions, decisions,
dispositions, adjudications, level changes, gate evaluations) are append-only: a correction is a
new row that points at the one it replaces, so the history a QA lead audits is never rewritten.
Labels are plain strings ("ok", "crack", ...); the defect-free label is configured, not fixed here.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timestamps are timezone-aware UTC (SQLModel's UTCDateTime refuses naive ones)."""
    return datetime.now(UTC)


class Role(enum.StrEnum):
    inspector = "inspector"
    qa_lead = "qa_lead"
    engineer = "engineer"


class Level(enum.StrEnum):
    """The automation ladder, lowest first; the order is the order of promotion."""

    human_only = "human_only"
    shadow = "shadow"
    assist = "assist"
    partial = "partial"
    full = "full"

    @property
    def rank(self) -> int:
        return _LEVEL_RANKS[self]  # read several times per item: a dict, not a list built each time


_LEVEL_RANKS = {level: n for n, level in enumerate(Level)}


class Slot(enum.StrEnum):
    """The role a model version plays at a station."""

    champion = "champion"  # decides / suggests
    challenger = "challenger"  # runs in shadow beside the champion, never shown
    canary = "canary"  # takes a share of traffic in place of the champion
    standby = "standby"  # the previous champion ("previous"), kept loaded for instant rollback


class DecidedBy(enum.StrEnum):
    human = "human"
    model = "model"
    adjudication = "adjudication"


class Station(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    # Written only by `station simulate`: its level is the simulation's to set, and a simulation
    # never records into a station that is not one (a real line's level and history stay its own).
    simulated: bool = False


class Operator(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    role: Role
    # argon2id hash with its own salt and parameters; the secret itself is never stored.
    secret_hash: str
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class OperatorSession(SQLModel, table=True):
    """One login of an operator at a station (a shift, or part of one)."""

    __tablename__ = "operator_session"

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", index=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_version_name_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128)
    version: str = Field(max_length=64)
    sha256: str = Field(index=True, max_length=64)
    architecture: str = Field(default="", max_length=64)
    artifact_path: str = ""
    classes: list[str] = Field(default=[], sa_column=Column(JSON, nullable=False))
    ok_class: str = Field(default="ok", max_length=64)
    thresholds: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    temperature: float = 1.0
    metrics: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    registered_at: datetime = Field(default_factory=utcnow)
    # Who put it in the registry (`station model register`); None: recorded by a station that
    # ran it before the registry existed, or by a simulation.
    registered_by: int | None = Field(default=None, foreign_key="operator.id")


class Deployment(SQLModel, table=True):
    """Which model version held which slot at a station, and when; append-only history."""

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    slot: Slot
    traffic_share: float = 1.0  # for canary: the share of items it serves
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    operator_id: int | None = Field(default=None, foreign_key="operator.id")
    reason: str = ""


class Item(SQLModel, table=True):
    """One phone captured at a station, with what is needed to explain any decision on it."""

    __table_args__ = (Index("ix_item_station_captured", "station_id", "captured_at"),)

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id")
    captured_at: datetime = Field(default_factory=utcnow, index=True)
    image_sha256: str = Field(index=True, max_length=64)
    image_path: str = ""  # relative to the image store root; derived from the hash only
    width: int = 0
    height: int = 0
    # Input statistics, for the input guard and for drift monitoring.
    brightness: float | None = None
    contrast: float | None = None
    sharpness: float | None = None
    clipped_share: float | None = None
    stats: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="", max_length=256)
    # Known truth when the source knows it (synthetic line, golden samples).
    ground_truth: str | None = Field(default=None, max_length=64)
    golden: bool = False
    # Versions of the upstream stages, so a change early in the pipeline can be traced.
    trigger_version: str = Field(default="", max_length=64)
    guard_version: str = Field(default="", max_length=64)
    guard_passed: bool = True
    guard_reason: str = ""
    # Milliseconds the item spent in each stage from capture to the screen (wait, plan, model,
    # convert, hop, paint, total: station/pipeline/timeline.py); None for items before 0012.
    stage_ms: dict[str, float] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


# Reports pick each item's latest prediction / decision / disposition / adjudication
# (max(id) per item_id); composite (item_id, ..., id) indexes answer that from the index alone
# and replace the plain item_id indexes (review/query.py frame, bench/report_1m.py).
class Prediction(SQLModel, table=True):
    __table_args__ = (Index("ix_prediction_item_slot_label_id", "item_id", "slot", "label", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id")
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id", index=True)
    slot: Slot = Slot.champion
    label: str | None = Field(default=None, max_length=64)  # None when the model errored
    probabilities: dict[str, float] = Field(default={}, sa_column=Column(JSON, nullable=False))
    p_defect: float | None = None
    confidence: float | None = None  # calibrated probability of `label`
    latency_ms: float | None = None
    error: str | None = None
    # The penultimate layer, projected small (model/embedding.py), for embedding drift.
    embedding: list[float] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class HumanDecision(SQLModel, table=True):
    __tablename__ = "human_decision"
    __table_args__ = (Index("ix_human_decision_item_id_id", "item_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id")
    operator_id: int = Field(foreign_key="operator.id", index=True)
    label: str = Field(max_length=64)
    defect_types: list[str] = Field(default=[], sa_column=Column(JSON, nullable=False))
    decided_at: datetime = Field(default_factory=utcnow, index=True)
    decision_ms: float | None = None  # from the item appearing on screen to the key press
    suggestion_shown: bool = False
    blind: bool = False  # a blind check in assist mode: the model ran but was hidden
    audit: bool = False  # an audit of an item the model decided (partial / full)
    golden: bool = False
    # Undo chain: a corrected decision points at the one it replaces.
    supersedes_id: int | None = Field(default=None, foreign_key="human_decision.id", index=True)


class Disposition(SQLModel, table=True):
    """What finally happened to the item; the latest row for an item is in force."""

    __table_args__ = (Index("ix_disposition_item_id_id", "item_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id")
    final_label: str = Field(max_length=64)
    decided_by: DecidedBy
    level: Level
    threshold_version: str = Field(default="", max_length=64)
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    human_decision_id: int | None = Field(default=None, foreign_key="human_decision.id")
    prediction_id: int | None = Field(default=None, foreign_key="prediction.id")
    created_at: datetime = Field(default_factory=utcnow)


class ChosenFor(enum.StrEnum):
    """Why an item went to adjudication: only the truth sample is a random draw, so only its
    adjudications estimate the line's escape rate; the others are chosen by what they show."""

    truth_sample = "truth_sample"  # drawn at random (probability recorded) among model passes
    disagreement = "disagreement"  # human and model differed
    challenge = "challenge"  # an inspector challenged an automatic decision
    # Chosen for what its label would teach the next model (review.teach): the request's reason
    # is "teach:<why>"; never a random draw, never counted in an estimate of the line.
    teach = "teach"


class AdjudicationRequest(SQLModel, table=True):
    """An item queued for a QA lead's adjudication, with why and with what chance it was drawn."""

    __tablename__ = "adjudication_request"

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    reason: str = Field(max_length=32)  # a ChosenFor value (plain text: no database enum type)
    probability: float = 1.0  # the chance this item had of being chosen for this reason
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    operator_id: int | None = Field(default=None, foreign_key="operator.id")  # who challenged
    created_at: datetime = Field(default_factory=utcnow)


class Adjudication(SQLModel, table=True):
    __table_args__ = (Index("ix_adjudication_item_id_id", "item_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id")
    operator_id: int = Field(foreign_key="operator.id")
    label: str = Field(max_length=64)
    reason_code: str = Field(max_length=64)
    note: str = ""
    chosen_for: str = Field(default=ChosenFor.disagreement.value, max_length=32)  # ChosenFor
    created_at: datetime = Field(default_factory=utcnow)


class GateEvaluation(SQLModel, table=True):
    """A gate evaluated with every number that went into it; append-only."""

    __tablename__ = "gate_evaluation"

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    from_level: Level
    to_level: Level
    passed: bool
    rules: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    numbers: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    operator_id: int | None = Field(default=None, foreign_key="operator.id")
    evaluated_at: datetime = Field(default_factory=utcnow)


class ThresholdSet(SQLModel, table=True):
    """A rule for the model's own decisions (review.rules.DecisionRule's values), proposed on
    evidence and approved by an engineer; the newest approved set of a station for its champion
    is the one its router runs. Append-only: approving writes `approved_*` once."""

    __tablename__ = "threshold_set"

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    version: str = Field(max_length=32, index=True)  # DecisionRule.version
    values: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    evidence: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    proposed_at: datetime = Field(default_factory=utcnow)
    proposed_by: int | None = Field(default=None, foreign_key="operator.id")
    approved_at: datetime | None = None
    approved_by: int | None = Field(default=None, foreign_key="operator.id")
    note: str = ""


class GoldenSample(SQLModel, table=True):
    """A real labelled image a QA lead registered as a golden sample (`station golden add`):
    slipped in among line items to measure inspectors, never the line's estimates. The image
    lives in the image store by its hash."""

    __tablename__ = "golden_sample"
    __table_args__ = (UniqueConstraint("set_name", "image_sha256", name="uq_golden_set_image"),)

    id: int | None = Field(default=None, primary_key=True)
    set_name: str = Field(max_length=64, index=True)
    label: str = Field(max_length=64)
    image_sha256: str = Field(max_length=64)
    image_path: str = ""  # relative to the image store root
    source_path: str = ""  # where it was registered from (for the record only)
    added_by: int | None = Field(default=None, foreign_key="operator.id")
    added_at: datetime = Field(default_factory=utcnow)
    active: bool = True


class LevelChange(SQLModel, table=True):
    """Every change of a station's automation level; the latest row is the level in force."""

    __tablename__ = "level_change"

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    from_level: Level
    to_level: Level
    operator_id: int | None = Field(default=None, foreign_key="operator.id")
    reason: str
    gate_evaluation_id: int | None = Field(default=None, foreign_key="gate_evaluation.id")
    override: bool = False  # promoted without a passing gate; the reason says why
    automatic: bool = False  # demoted by an alarm, not by a person
    changed_at: datetime = Field(default_factory=utcnow)


class LoginAttempt(SQLModel, table=True):
    """Every login attempt, by the name typed (known or not): the throttle counts failures since
    the last success or unlock, so a guessing run is slowed and locked across restarts."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_name_id", "name", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    at: datetime = Field(default_factory=utcnow)
    succeeded: bool = False
    note: str = Field(default="", max_length=256)  # e.g. "unlocked by eve"


class AuditChainEntry(SQLModel, table=True):
    """One link of a tamper-evidence chain (db/chain.py): a chained row as it was written."""

    __tablename__ = "audit_chain"
    __table_args__ = (UniqueConstraint("chain", "seq", name="uq_audit_chain_chain_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=64)  # "station:<id>" or "operators"
    seq: int  # 1, 2, ... within the chain
    table_name: str = Field(max_length=64)
    row_id: int
    row_hash: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class DriftReference(SQLModel, table=True):
    """What a station's line looked like when its level was approved (station/monitor.py): the
    items nearest the approval, for one champion; drift checks compare later windows with it."""

    __tablename__ = "drift_reference"

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    # The approval it belongs to (a promotion, or a simulation's level); None: no level change.
    level_change_id: int | None = Field(default=None, foreign_key="level_change.id")
    # The upstream stages' versions it was captured with; a change of one starts a new reference.
    stage_versions: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    n: int = 0
    first_item_id: int | None = None
    last_item_id: int | None = None
    data: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class MonitorCheck(SQLModel, table=True):
    """One drift check over a window of items, with its numbers; append-only."""

    __tablename__ = "monitor_check"
    __table_args__ = (Index("ix_monitor_check_station_id", "station_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id")
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    reference_id: int | None = Field(default=None, foreign_key="drift_reference.id")
    check: str = Field(max_length=64)  # e.g. "input.brightness", "embedding.mmd"
    first_item_id: int | None = None
    last_item_id: int | None = None
    n: int = 0
    statistic: float | None = None
    warn: float | None = None  # the thresholds it was judged with
    fail: float | None = None
    verdict: str = Field(max_length=16)  # ok / warn / fail / skipped
    detail: dict[str, Any] = Field(default={}, sa_column=Column(JSON, nullable=False))
    evaluated_at: datetime = Field(default_factory=utcnow)


class Alarm(SQLModel, table=True):
    """A check that went past a threshold. Open until its check is back in bounds (a warning) or
    a gate passes again (a failure, which demoted the station)."""

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id", index=True)
    check: str = Field(max_length=64)
    severity: str = Field(max_length=16)  # warn / fail
    message: str = ""
    statistic: float | None = None
    threshold: float | None = None
    monitor_check_id: int | None = Field(default=None, foreign_key="monitor_check.id")
    level_change_id: int | None = Field(default=None, foreign_key="level_change.id")
    opened_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    closed_reason: str = ""


class DatabaseIdentity(SQLModel, table=True):
    """One row: this database's identity, made when its schema was created. Files that belong to
    one database and live outside it (the decision spool) are named by it, so they are replayed
    only into the database they were written for."""

    __tablename__ = "database_identity"

    id: str = Field(primary_key=True, max_length=32)  # a uuid4, hex
    created_at: datetime = Field(default_factory=utcnow)


class ReportSummary(SQLModel, table=True):
    """A report's aggregates over one station's items captured on one UTC day (review/summary.py).

    Derived, never authority: the rows of a (station, day) are replaced whenever a record of one
    of its items is newer than `report_summary_mark`, so a report reads a few rows per day instead
    of re-joining the whole history. `kind`: days / labels / scores / inspectors; `rows`: that
    aggregate's rows as lists (keys then sums)."""

    __tablename__ = "report_summary"
    __table_args__ = (UniqueConstraint("station_id", "day", "kind", name="uq_report_summary_cell"),)

    id: int | None = Field(default=None, primary_key=True)
    station_id: int = Field(foreign_key="station.id")
    day: str = Field(max_length=10)  # YYYY-MM-DD, UTC, of capture
    kind: str = Field(max_length=16)
    rows: list[Any] = Field(default=[], sa_column=Column(JSON, nullable=False))


class RecordMark(SQLModel):
    """How far data derived from the records is up to date: the highest id it saw of each table
    whose new rows change an item (review.summary.MARKED), and when it was built."""

    item_id: int = 0
    prediction_id: int = 0
    human_decision_id: int = 0
    disposition_id: int = 0
    adjudication_id: int = 0
    built_at: datetime = Field(default_factory=utcnow)


class ReportSummaryMark(RecordMark, table=True):
    """How far the report summaries are up to date, and the version of the aggregates they hold
    (a change of the aggregates rebuilds them)."""

    __tablename__ = "report_summary_mark"

    id: int | None = Field(default=None, primary_key=True)  # one row, id 1
    version: int = 0


class GateEvidenceRow(SQLModel, table=True):
    """One item of a station's gate evidence, as review.query.frame computes it for the station's
    champion version (review/evidence_cache.py): the columns the gates read, kept so that a gate
    check or a station's report reads them instead of looking up four latest records for every
    item of the station's history. Derived, never authority: deleting the rows only makes the
    next gate check slower."""

    __tablename__ = "gate_evidence_row"

    station_id: int = Field(foreign_key="station.id", primary_key=True)
    item_id: int = Field(primary_key=True)
    day: str | None = Field(default=None, max_length=10)
    human_label: str | None = Field(default=None, max_length=64)
    model_label: str | None = Field(default=None, max_length=64)
    adjudicated_label: str | None = Field(default=None, max_length=64)
    ground_truth: str | None = Field(default=None, max_length=64)
    reference_label: str | None = Field(default=None, max_length=64)
    evidence: int = 0
    uniform: int = 0
    paired: int = 0
    shown: bool | None = None
    blind: bool | None = None
    audit: int = 0
    score: float | None = None
    score_bin: int | None = None


class GateEvidenceMark(RecordMark, table=True):
    """What a station's kept gate evidence is (`basis`: the model versions and the version of
    the computation) and how far it is up to date."""

    __tablename__ = "gate_evidence_mark"

    station_id: int = Field(foreign_key="station.id", primary_key=True)
    basis: str = Field(max_length=200)
    rows: int = 0  # how many rows were kept: fewer there (deleted) rebuilds them


ALL_TABLES = [
    DatabaseIdentity,
    LoginAttempt,
    Station,
    Operator,
    OperatorSession,
    ModelVersion,
    Deployment,
    Item,
    Prediction,
    HumanDecision,
    Disposition,
    AdjudicationRequest,
    Adjudication,
    GateEvaluation,
    ThresholdSet,
    GoldenSample,
    LevelChange,
    AuditChainEntry,
    DriftReference,
    MonitorCheck,
    Alarm,
    ReportSummary,
    ReportSummaryMark,
    GateEvidenceRow,
    GateEvidenceMark,
]
