"""What the station makes of a captured item before anyone decides: the input guard's verdict,
the routing plan at the level in force, and the model's answer (any thread but the GUI's: the
model may take a while). Also the model the station runs now, which can arrive late (loaded in
the background) or leave (unusable)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from db.models import Level
from review.labels import LabelSet
from review.rules import DecisionRule
from station.pipeline.guard import GuardResult, InputGuard
from station.pipeline.intake import Captured
from station.pipeline.predictor import (
    ModelInfo,
    Prediction,
    Predictor,
    check_fits,
    load_predictor,
)
from station.pipeline.router import Plan, Router
from station.pipeline.worker import InferenceResult, InferenceWorker, Started

if TYPE_CHECKING:
    from station.pipeline.lineup import ShadowJob, ShadowRunner


@dataclass(frozen=True)
class ModelInUse:
    worker: InferenceWorker
    info: ModelInfo


def open_model(
    path: str | Path | None,
    labels: LabelSet,
    *,
    timeout_s: float,
    loader: Callable[[str | Path | None], tuple[Predictor, ModelInfo]] = load_predictor,
) -> ModelInUse:
    """Load a model and check it answers in the station's labels; raises when it cannot be used
    (the caller falls back to a human)."""
    predictor, info = loader(path or None)
    check_fits(info, labels)
    return ModelInUse(InferenceWorker(predictor, timeout_s=timeout_s), info)


class ModelHolder:
    """The model the station runs now, or None; swapped whole, read from any thread."""

    def __init__(self, model: ModelInUse | None = None) -> None:
        self._model = model

    def get(self) -> ModelInUse | None:
        return self._model

    def set(self, model: ModelInUse | None) -> ModelInUse | None:
        """Put `model` in use; returns the one it replaces."""
        old, self._model = self._model, model
        return old


@dataclass(frozen=True)
class Assessed:
    """A captured item with the guard's verdict, the plan and (where the plan runs it) the
    model's answer; immutable, safe to pass between threads."""

    seq: int  # the order items reached the station, 1, 2, ...
    captured: Captured
    guard: GuardResult
    plan: Plan
    inference: InferenceResult | None
    model: ModelInfo | None  # the model that answered, when the plan ran one
    level_after: Level  # the level in force once the model had answered (a demotion meanwhile)
    shadow: ShadowJob | None = None  # the other model's answer, on its way (never shown)
    canary: bool = False  # the canary, not the champion, answered for this item (its arm)

    @property
    def prediction(self) -> Prediction | None:
        inf = self.inference
        return inf.prediction if inf is not None and inf.ok else None


class Assessor:
    def __init__(
        self,
        *,
        router: Router,
        guard: InputGuard,
        level: Callable[[], Level],
        model: ModelHolder,
        rule: Callable[[bool], DecisionRule | None] = lambda _canary: None,
        before: Callable[[], None] = lambda: None,
        challenger: ModelHolder | None = None,
        shadow: ShadowRunner | None = None,
        canary_share: Callable[[Captured], float] = lambda _c: 0.0,
    ) -> None:
        self.router = router
        self.before = before  # follows the model lineup: a swap happens here, between items
        self.challenger = challenger
        self.shadow = shadow
        # The canary's share for this item: 1.0 when its salted hash falls in the canary's arm
        # (station/pipeline/lineup.py canary_arm); 0.0 otherwise.
        self.canary_share = canary_share
        self.guard = guard
        self.level = level
        self.model = model
        self.rule = rule
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        # Whether the last item's plan ran the model: the next one most likely runs it too, so
        # its forward pass is worth starting at capture (a guess only: assess decides).
        self._ran_model = True

    def start(self, image: np.ndarray) -> Started | None:
        """At capture (the intake's thread): start the champion on the item's image before the
        station has read what to do with it. Its worker alone collects the answer (for the
        item, or as the hidden one in the canary's arm); wasted when the plan then runs no
        model or the champion was swapped meanwhile."""
        model = self.model.get()
        if model is None or not self._ran_model:
            return None
        return model.worker.start(image)

    def assess(self, captured: Captured) -> Assessed:
        """Guard, plan at the level in force now, and inference where the plan asks for it
        (blocking up to the model's timeout). `level` reads the record: this thread may wait."""
        captured.timeline.mark("assess")
        self.before()
        guard = self.guard.check(captured.stats)
        champion = self.model.get()
        challenger = self.challenger.get() if self.challenger is not None else None
        # The canary's arm: it answers (and, by its own approved rule, may decide) in the
        # champion's place; the champion then answers hidden, so every item stays paired.
        canary = champion is not None and challenger is not None and self.canary_share(captured) > 0
        in_use, hidden = (challenger, champion) if canary else (champion, challenger)
        plan = self.router.plan(
            self.level(),
            golden=captured.golden,
            model_available=in_use is not None,
            rule=self.rule(canary),
        )
        inference = None
        shadow = None
        level_after = plan.level
        # The champion's pass started at capture: its worker collects it, whichever of the two
        # answers the champion gives for this item (another worker asks anew).
        early = captured.early if isinstance(captured.early, Started) else None
        if plan.run_model and in_use is not None:
            if hidden is not None and self.shadow is not None:
                # None: the hidden model fell behind (counted); the item goes without it
                shadow = self.shadow.submit(
                    hidden,
                    captured.image,
                    slot="champion" if canary else "challenger",
                    started=early,
                )
            captured.timeline.mark("model")
            inference = in_use.worker.infer(captured.image, early)
            captured.timeline.mark("answered")
            level_after = self.level()  # the model took a while: read again
        self._ran_model = plan.run_model
        with self._lock:
            seq = next(self._seq)
        return Assessed(
            seq=seq,
            captured=captured,
            guard=guard,
            plan=plan,
            inference=inference,
            model=in_use.info if plan.run_model and in_use is not None else None,
            level_after=level_after,
            shadow=shadow,
            canary=canary and plan.run_model,
        )

    def heatmap(self, assessed: Assessed) -> np.ndarray | None:
        """The heat-map of an item whose suggestion may be shown (asked for after the suggestion
        is on screen, so the label never waits for it), drawn by the model whose answer is
        shown: the canary's in its arm. None when that model has left the station since it
        answered (another model's map would explain an answer it did not give)."""
        if not assessed.plan.show_suggestion or assessed.prediction is None:
            return None
        holder = self.challenger if assessed.canary else self.model
        in_use = holder.get() if holder is not None else None
        if in_use is None or in_use.info != assessed.model:
            return None
        return in_use.worker.explain(assessed.captured.image)
