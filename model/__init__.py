"""The defect model: training, calibration, versioned artifacts, prediction and heat-maps.

torch/torchvision (plus numpy and OpenCV for images) only; nothing else of ours, no Qt.
"""

from __future__ import annotations

from model.arch import DEFAULT_ARCH, available_architectures, build
from model.artifact import read_manifest, save_artifact
from model.calibrate import Calibration, ece, fit_temperature, reliability
from model.data import scan_folder
from model.errors import (
    ArtifactError,
    BadImage,
    CalibrationError,
    DataError,
    ModelError,
    PickledModel,
    TamperedArtifact,
    UnknownArchitecture,
)
from model.evaluate import compute_metrics, evaluate, write_report
from model.predictor import ModelManifest, Prediction, Predictor, bundled_model_path, overlay
from model.preprocess import InputSpec, preprocess
from model.train import TrainConfig, TrainResult, train

__all__ = [
    "DEFAULT_ARCH",
    "ArtifactError",
    "BadImage",
    "Calibration",
    "CalibrationError",
    "DataError",
    "InputSpec",
    "ModelError",
    "ModelManifest",
    "PickledModel",
    "Prediction",
    "Predictor",
    "TamperedArtifact",
    "TrainConfig",
    "TrainResult",
    "UnknownArchitecture",
    "available_architectures",
    "build",
    "bundled_model_path",
    "compute_metrics",
    "ece",
    "evaluate",
    "fit_temperature",
    "overlay",
    "preprocess",
    "read_manifest",
    "reliability",
    "save_artifact",
    "scan_folder",
    "train",
    "write_report",
]
