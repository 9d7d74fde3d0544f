"""A new item's record as the pipeline builds it, without running the pipeline: for tests that
write records straight through a Recorder (on SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from db.engine import session_scope
from db.models import Role
from db.repo import add_operator, get_or_create_station
from station.pipeline.predictor import ModelInfo
from station.pipeline.records import DecisionRecord, InspectionRecord, PredictionRecord

MODEL = ModelInfo(
    name="tiny",
    version="v7",
    sha256="ab" * 32,
    classes=("ok", "scratch"),
    ok_class="ok",
    thresholds={"scratch": 0.5},
    architecture="tiny_cnn",
)


def station_and_operator(engine) -> tuple[int, int]:
    """A station and an inspector in a migrated database: the ids a record names."""
    with session_scope(engine) as s:
        station_id = get_or_create_station(session=s, name="A1").id
        operator_id = add_operator(session=s, name="ann", role=Role.inspector, secret_hash="x").id
    assert station_id is not None and operator_id is not None
    return station_id, operator_id


def new_item_record(
    uid: str,
    *,
    station_id: int,
    operator_id: int,
    model: ModelInfo | None = MODEL,
    truth_sample: float | None = None,
    audit_flagged: bool = False,
) -> InspectionRecord:
    now = datetime.now(UTC)
    return InspectionRecord(
        uid=uid,
        station_id=station_id,
        captured_at=now,
        image_sha256=uid.encode().hex().ljust(64, "0")[:64],
        image_path=f"{uid}.png",
        width=64,
        height=48,
        stats={"brightness": 120.0, "contrast": 30.0, "sharpness": 200.0, "clipped_share": 0.0},
        source="test",
        ground_truth=None,
        golden=False,
        trigger_version="t1",
        guard_version="g1",
        guard_passed=True,
        guard_reason="",
        predictions=(
            PredictionRecord(
                model=model,
                label="ok",
                probabilities={"ok": 0.8, "scratch": 0.2},
                p_defect=0.2,
                confidence=0.8,
                latency_ms=12.5,
            ),
        ),
        decision=DecisionRecord(
            operator_id=operator_id,
            label="scratch",
            decided_at=now,
            decision_ms=850.0,
            suggestion_shown=True,
            blind=False,
            audit=audit_flagged,
            golden=False,
            defect_types=("scratch",),
        ),
        final_label="scratch",
        decided_by="human",
        level="assist",
        threshold_version="th1",
        truth_sample=truth_sample,
        audit_flagged=audit_flagged,
        stage_ms={"capture": 1.0, "model": 12.5},
    )
