"""Queue the items that would teach the next model most (review.teach picks them), recorded as
adjudication requests with their reason."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from db.engine import session_scope
from db.models import AdjudicationRequest, Operator, Prediction
from review.teach import Pick, teaching_picks
from station.auth import require
from station.registry import station_row
from station.settings import Settings


def queue_teaching(
    engine: Engine,
    settings: Settings,
    *,
    operator: Operator,
    n: int,
    station_name: str | None = None,
) -> tuple[str, list[Pick]]:
    """Pick up to `n` items and queue them (QA leads only); returns the station and the picks."""
    require(operator, "adjudicate")
    with session_scope(engine) as s:
        station = station_row(s, settings, station_name)
        assert station.id is not None
        station_id, name = station.id, station.name
    with engine.connect() as conn:
        picks = teaching_picks(conn, name, list(settings.labels.all), n)
    with session_scope(engine) as s:
        for p in picks:
            latest = s.exec(
                select(Prediction.model_version_id)
                .where(Prediction.item_id == p.item_id)
                .order_by(col(Prediction.id).desc())
            ).first()
            s.add(
                AdjudicationRequest(
                    item_id=p.item_id,
                    station_id=station_id,
                    reason=p.request_reason,
                    probability=1.0,  # chosen, not drawn: never weighted into an estimate
                    model_version_id=latest,
                    operator_id=operator.id,
                )
            )
    return name, picks
