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
        # Each item's latest prediction names the model version the request is about.
        latest: dict[int, int | None] = {}
        for item_id, version_id in s.exec(
            select(Prediction.item_id, Prediction.model_version_id)
            .where(col(Prediction.item_id).in_([p.item_id for p in picks]))
            .order_by(col(Prediction.id))
        ):
            latest[item_id] = version_id
        for p in picks:
            s.add(
                AdjudicationRequest(
                    item_id=p.item_id,
                    station_id=station_id,
                    reason=p.request_reason,
                    probability=1.0,  # chosen, not drawn: never weighted into an estimate
                    model_version_id=latest.get(p.item_id),
                    operator_id=operator.id,
                )
            )
    return name, picks
