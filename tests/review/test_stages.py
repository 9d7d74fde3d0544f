"""The report's pipeline-stages block counts each item of its station once, by the answer the
station acted on and the decision in force."""

from __future__ import annotations

from review_records import Records
from sqlalchemy.engine import Engine

from db import repo
from db.models import DecidedBy, Disposition, HumanDecision, Item, Level, Prediction, Slot
from review.stages import stages_block


def test_stages_count_the_acting_answer_and_the_latest_decision_of_the_stations_items(
    engine: Engine, fill
) -> None:
    ids: dict[str, int] = {}

    def build(r: Records) -> None:
        # A hidden challenger answered first (lower id); the champion's answer is the acting one.
        item = Item(station_id=r.station("A1"), image_sha256="a" * 64, image_path="")
        repo.record_inspection(
            session=r.session,
            item=item,
            predictions=[
                Prediction(model_version_id=r.model("v2"), slot=Slot.challenger, label="crack"),
                Prediction(model_version_id=r.model("v1"), slot=Slot.champion, label="ok"),
            ],
            decision=HumanDecision(operator_id=r.operator("lan"), label="ok"),
            disposition=Disposition(
                final_label="ok", decided_by=DecidedBy.human, level=Level.shadow
            ),
        )
        # Decided "crack" against the model's "ok", then corrected to "ok": agrees now.
        ids["corrected"] = r.item("crack", "ok")
        r.correct(ids["corrected"], "ok")
        r.item("ok", "dent")  # the one predicted defect; disagrees
        r.item("ok", None)  # no answer: counted as an item only
        for _ in range(3):  # another station's items, all defects: not this station's
            r.item("crack", "crack", station="B2")

    fill(build)
    with engine.connect() as conn:
        station_id = conn.exec_driver_sql("SELECT id FROM station WHERE name = 'A1'").scalar()
        block = stages_block(conn, int(station_id), "ok")
    (v,) = block["versions"]
    assert v["items"] == 4 and v["guard_passed"]["n"] == 4
    assert (v["defect_rate"]["k"], v["defect_rate"]["n"]) == (1, 3)
    assert (v["agreement"]["k"], v["agreement"]["n"]) == (2, 3)
    assert block["changes"] == []
