"""The station's pipeline, Qt-free: input guard -> router -> inference worker -> recorder.

The same objects serve the window (`station run`), `station simulate`, the tests and the benches;
`station/ui/` only shows what the pipeline produces and collects keys. No torch at import time:
the model is loaded by `load_predictor`, when asked for.
"""

from station.pipeline.guard import GUARD_VERSION, GuardResult, InputGuard, Reference
from station.pipeline.predictor import (
    FakePredictor,
    ModelInfo,
    ModelMismatch,
    check_fits,
    load_predictor,
)
from station.pipeline.recorder import Ack, BackgroundRecorder, Problem, Recorder
from station.pipeline.records import CorrectionRecord, Deferred, InspectionRecord
from station.pipeline.router import Decider, ModelCall, Plan, Route, Router, thresholds_version
from station.pipeline.session import BannerKind, Captured, StationCore, Waiting
from station.pipeline.simulate import SimulateConfig, Summary, simulate
from station.pipeline.worker import InferenceRequest, InferenceResult, InferenceWorker

__all__ = [
    "GUARD_VERSION",
    "Ack",
    "BackgroundRecorder",
    "BannerKind",
    "Captured",
    "CorrectionRecord",
    "Decider",
    "Deferred",
    "FakePredictor",
    "GuardResult",
    "InferenceRequest",
    "InferenceResult",
    "InferenceWorker",
    "InputGuard",
    "InspectionRecord",
    "ModelCall",
    "ModelInfo",
    "ModelMismatch",
    "Plan",
    "Problem",
    "Recorder",
    "Reference",
    "Route",
    "Router",
    "SimulateConfig",
    "StationCore",
    "Summary",
    "Waiting",
    "check_fits",
    "load_predictor",
    "simulate",
    "thresholds_version",
]
