"""Inspection records for review tests, written through db.repo into a real migrated SQLite file."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session, select

from db import repo
from db.models import (
    Adjudication,
    DecidedBy,
    Disposition,
    HumanDecision,
    Item,
    Level,
    ModelVersion,
    Operator,
    Prediction,
    Role,
    Slot,
    Station,
)
from review.labels import LabelSet

CLASSES = ["ok", "crack", "scratch", "dent", "stain", "missing"]
LABELS = LabelSet.of(CLASSES[0], CLASSES[1:])
T0 = datetime(2026, 11, 2, 6, 0, 0, tzinfo=UTC)


@dataclass
class Records:
    """A small factory: stations, operators and model versions, and a way to add inspected items."""

    session: Session
    stations: dict[str, int] = field(default_factory=dict)
    operators: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    n: int = 0

    def station(self, name: str) -> int:
        if name not in self.stations:
            st = repo.get_or_create_station(session=self.session, name=name)
            assert st.id is not None
            self.stations[name] = st.id
        return self.stations[name]

    def operator(self, name: str, role: Role = Role.inspector) -> int:
        if name not in self.operators:
            op = Operator(name=name, role=role, secret_hash="x")
            self.session.add(op)
            self.session.flush()
            assert op.id is not None
            self.operators[name] = op.id
        return self.operators[name]

    def model(self, version: str = "v1") -> int:
        if version not in self.models:
            mv = ModelVersion(name="defect", version=version, sha256=version * 8, classes=CLASSES)
            self.session.add(mv)
            self.session.flush()
            assert mv.id is not None
            self.models[version] = mv.id
        return self.models[version]

    def item(
        self,
        human: str | None,
        model: str | None,
        *,
        station: str = "A1",
        inspector: str = "lan",
        confidence: float | None = 0.9,
        p_defect: float | None = None,
        level: Level = Level.shadow,
        shown: bool | None = None,
        blind: bool = False,
        audit: bool = False,
        golden: bool = False,
        ground_truth: str | None = None,
        adjudicated: str | None = None,
        when: datetime | None = None,
        decision_ms: float = 900.0,
        version: str = "v1",
        slot: Slot = Slot.champion,
        final: str | None = None,
    ) -> int:
        self.n += 1
        when = when or T0 + timedelta(minutes=self.n)
        if shown is None:
            shown = level == Level.assist and not blind
        item = Item(
            station_id=self.station(station),
            captured_at=when,
            image_sha256=f"{self.n:064x}",
            image_path="",
            ground_truth=ground_truth,
            golden=golden,
        )
        preds = []
        if model is not None:
            if p_defect is None and confidence is not None:
                p_defect = 1 - confidence if model == "ok" else confidence
            preds.append(
                Prediction(
                    model_version_id=self.model(version),
                    slot=slot,
                    label=model,
                    confidence=confidence,
                    p_defect=p_defect,
                )
            )
        decision = None
        if human is not None:
            decision = HumanDecision(
                operator_id=self.operator(inspector),
                label=human,
                decided_at=when + timedelta(seconds=1),
                decision_ms=decision_ms,
                suggestion_shown=shown,
                blind=blind,
                audit=audit,
                golden=golden,
            )
        decided_by = DecidedBy.human if human is not None else DecidedBy.model
        disp = Disposition(
            final_label=final or human or model or "ok", decided_by=decided_by, level=level
        )
        repo.record_inspection(
            session=self.session, item=item, predictions=preds, decision=decision, disposition=disp
        )
        assert item.id is not None
        if adjudicated is not None:
            repo.record_adjudication(
                session=self.session,
                adjudication=Adjudication(
                    item_id=item.id,
                    operator_id=self.operator("qa", Role.qa_lead),
                    label=adjudicated,
                    reason_code="test",
                ),
                level=level,
            )
        return item.id

    def correct(self, item_id: int, label: str) -> None:
        """The inspector undoes the decision in force and decides again."""
        prev = repo.effective_decision(session=self.session, item_id=item_id)
        assert prev is not None
        repo.record_human_decision(
            session=self.session,
            decision=HumanDecision(
                item_id=item_id,
                operator_id=prev.operator_id,
                label=label,
                decided_at=prev.decided_at + timedelta(seconds=2),
                suggestion_shown=prev.suggestion_shown,
                blind=prev.blind,
                audit=prev.audit,
                supersedes_id=prev.id,
            ),
        )


def random_records(r: Records, n: int, seed: int = 0) -> None:
    """A mixed record: levels, shown / blind / audit / golden, adjudications, undo, unpaired items."""
    rng = np.random.default_rng(seed)
    levels = [Level.shadow, Level.assist, Level.partial, Level.human_only]
    for i in range(n):
        truth = "ok" if rng.random() < 0.7 else str(rng.choice(CLASSES[1:]))
        human = truth if rng.random() < 0.9 else str(rng.choice(CLASSES))
        model = truth if rng.random() < 0.85 else str(rng.choice(CLASSES))
        level = levels[int(rng.integers(0, len(levels)))]
        kind = rng.random()
        item_id = r.item(
            human if rng.random() > 0.05 else None,
            model if (level != Level.human_only and rng.random() > 0.05) else None,
            station="A1" if i % 3 else "B2",
            inspector=["lan", "minh", "tuan"][i % 3],
            confidence=float(rng.uniform(0.5, 1.0)),
            level=level,
            blind=level == Level.assist and kind < 0.2,
            audit=level == Level.partial and kind < 0.3,
            golden=kind > 0.95,
            ground_truth=truth if kind > 0.95 else None,
            adjudicated=truth if (human != model and rng.random() < 0.5) else None,
            when=T0 + timedelta(hours=int(i * 48 / n), minutes=i % 60),
            decision_ms=float(rng.uniform(300, 3000)),
        )
        if rng.random() < 0.03 and human is not None:
            with contextlib.suppress(AssertionError):  # no human decision to correct
                r.correct(item_id, str(rng.choice(CLASSES)))


def existing_records(session: Session) -> Records:
    """A record builder that knows the stations, operators and models already there."""
    r = Records(session)
    for table, into in ((Station, r.stations), (Operator, r.operators)):
        into.update({row.name: row.id for row in session.exec(select(table))})
    r.models.update({row.version: row.id for row in session.exec(select(ModelVersion))})
    return r


def same(a: Any, b: Any, path: str = "report") -> None:
    """Equal, floats to 1e-9 relative (sums added in another order), `generated_at` aside."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k != "generated_at":
                same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
