"""The station's pipeline, Qt-free: one item's way from frames to the database of record.

    intake (source, trigger, image store) -> assess (guard, plan, model) -> core.accept
      -> desk (route, queue, decide, undo) -> records -> recorder

The same objects serve the window (`station run`), `station simulate`, the tests and the benches;
`station/ui/` only shows what the pipeline produces and collects keys. No torch at import time:
the model is loaded by `load_predictor`, when asked for.
"""

from station.pipeline.assess import Assessed, Assessor, ModelHolder, ModelInUse, open_model
from station.pipeline.core import StationCore
from station.pipeline.desk import DecisionDesk, Outcome, Suggestion, Waiting
from station.pipeline.guard import GUARD_VERSION, GuardResult, InputGuard, Reference
from station.pipeline.intake import Captured, GoldenSamples, Intake, Unstored
from station.pipeline.predictor import (
    FakePredictor,
    ModelInfo,
    Prediction,
    Predictor,
    check_fits,
    load_predictor,
)
from station.pipeline.recorder import Ack, BackgroundRecorder, Problem, Recorder
from station.pipeline.records import CorrectionRecord, Deferred, InspectionRecord
from station.pipeline.router import Decider, ModelCall, Plan, Route, Router
from station.pipeline.simulate import SimulateConfig, Summary, simulate
from station.pipeline.status import BannerKind, ModelFallback, StationStatus
from station.pipeline.worker import InferenceResult, InferenceWorker

__all__ = [
    "GUARD_VERSION",
    "Ack",
    "Assessed",
    "Assessor",
    "BackgroundRecorder",
    "BannerKind",
    "Captured",
    "CorrectionRecord",
    "Decider",
    "DecisionDesk",
    "Deferred",
    "FakePredictor",
    "GoldenSamples",
    "GuardResult",
    "InferenceResult",
    "InferenceWorker",
    "InputGuard",
    "InspectionRecord",
    "Intake",
    "ModelCall",
    "ModelFallback",
    "ModelHolder",
    "ModelInUse",
    "ModelInfo",
    "Outcome",
    "Plan",
    "Prediction",
    "Predictor",
    "Problem",
    "Recorder",
    "Reference",
    "Route",
    "Router",
    "SimulateConfig",
    "StationCore",
    "StationStatus",
    "Suggestion",
    "Summary",
    "Unstored",
    "Waiting",
    "check_fits",
    "load_predictor",
    "open_model",
    "simulate",
]
