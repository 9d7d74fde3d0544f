"""The seam between the station and the defect model: a small protocol, a loader, and a fake.

The station never imports torch itself; `load_predictor` imports `model` lazily, so the window
opens before the model has loaded. Tests use `FakePredictor` at this seam.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

DEFECT_CLASSES = ("crack", "scratch", "dent", "stain", "missing")
CLASSES = ("ok", *DEFECT_CLASSES)


class PredictionLike(Protocol):
    label: str
    probabilities: Mapping[str, float]
    p_defect: float
    confidence: float
    latency_ms: float


@runtime_checkable
class PredictorLike(Protocol):
    def predict(self, bgr: np.ndarray) -> Any: ...

    def explain(self, bgr: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelInfo:
    """What every decision records about the model that produced it."""

    name: str
    version: str
    sha256: str
    classes: tuple[str, ...] = CLASSES
    ok_class: str = "ok"
    temperature: float = 1.0
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    architecture: str = ""
    path: str = ""

    @property
    def short(self) -> str:
        return f"{self.version} (sha {self.sha256[:8]})"


def model_info(predictor: Any, path: str | Path = "") -> ModelInfo:
    """Read a predictor's manifest (dict or object) into a ModelInfo."""
    manifest = getattr(predictor, "manifest", None)
    if isinstance(predictor, FakePredictor):
        return predictor.info

    def get(key: str, default: Any = None) -> Any:
        if manifest is None:
            return default
        if isinstance(manifest, Mapping):
            return manifest.get(key, default)
        return getattr(manifest, key, default)

    return ModelInfo(
        name=str(get("name", "model")),
        version=str(get("version", "0")),
        sha256=str(get("sha256", "") or ""),
        classes=tuple(get("classes", CLASSES) or CLASSES),
        ok_class=str(get("ok_class") or "ok"),
        temperature=float(get("temperature", 1.0) or 1.0),
        thresholds=dict(get("thresholds", {}) or {}),
        architecture=str(get("architecture", "") or ""),
        path=str(path),
    )


#: torch intra-op threads for the station's model. One: the station's other threads (capture,
#: trigger, image encoding, GUI) share the cores, and OpenMP's spinning barriers under that
#: contention made a 2-thread forward pass swing between 40 ms and 1.3 s on a 2-core machine,
#: where one thread takes a steady 10-20 ms (measured with the bundled architecture, 448x256).
TORCH_THREADS = 1


def load_predictor(
    path: str | Path | None, *, threads: int | None = TORCH_THREADS
) -> tuple[Any, ModelInfo]:
    """Load the model at `path` (None or "": the bundled default). Raises model.errors.ModelError
    or OSError when it cannot be used; the caller decides to fall back to a human.
    `threads`: torch's intra-op threads for this process (None: leave torch's default)."""
    if path and not Path(path).is_dir():
        # Before importing torch: a wrong path is known in microseconds, not seconds.
        raise FileNotFoundError(f"no model folder at {path}: expected a model artifact folder")
    import model  # lazy: pulls in torch

    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    target = Path(path) if path else Path(model.bundled_model_path())
    predictor = model.Predictor.load(target)
    return predictor, model_info(predictor, target)


class ModelMismatch(ValueError):
    """The model's classes are not the station's labels."""


def check_fits(info: ModelInfo, ok_class: str, defect_classes: list[str] | tuple[str, ...]) -> None:
    """Refuse a model whose classes are not the station's labels: its answers could not be
    compared with the inspectors' nor routed (a model without the defect-free class could never
    auto-pass, one with unknown labels would suggest keys the inspector does not have)."""
    expected = {ok_class, *defect_classes}
    got = set(info.classes)
    if info.ok_class != ok_class or got != expected:
        raise ModelMismatch(
            f"model {info.name} {info.version} has classes {sorted(got)} (defect-free "
            f"{info.ok_class!r}); the station's labels are {sorted(expected)} (defect-free "
            f"{ok_class!r})"
        )


@dataclass(frozen=True)
class FakePrediction:
    label: str
    probabilities: Mapping[str, float]
    p_defect: float
    confidence: float
    latency_ms: float = 0.1


def prediction_from_probabilities(
    probs: Mapping[str, float], ok_class: str = "ok"
) -> FakePrediction:
    label = max(probs, key=lambda k: probs[k])
    return FakePrediction(
        label=label,
        probabilities=dict(probs),
        p_defect=1.0 - float(probs.get(ok_class, 0.0)),
        confidence=float(probs[label]),
    )


def confident(label: str, p: float = 0.995) -> dict[str, float]:
    rest = (1.0 - p) / (len(CLASSES) - 1)
    return {c: (p if c == label else rest) for c in CLASSES}


class FakePredictor:
    """A predictor for tests: answers from a function of the image (or a fixed answer), and can
    be told to raise or to be slow. Records the threads it ran on."""

    def __init__(
        self,
        answer: Callable[[np.ndarray], Mapping[str, float]] | Mapping[str, float] | None = None,
        *,
        raises: BaseException | None = None,
        delay_s: float = 0.0,
        release: threading.Event | None = None,
        info: ModelInfo | None = None,
    ) -> None:
        self._answer = answer if answer is not None else confident("ok")
        self.raises = raises
        self.delay_s = delay_s
        self.release = release
        self.info = info or ModelInfo(name="fake", version="f1", sha256="f" * 64)
        self.manifest = {"name": self.info.name, "version": self.info.version}
        self.calls = 0
        self.threads: list[int] = []

    def predict(self, bgr: np.ndarray) -> FakePrediction:
        t0 = time.perf_counter()
        self.calls += 1
        self.threads.append(threading.get_ident())
        if self.release is not None:
            self.release.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)  # a slow model, on the worker thread only
        if self.raises is not None:
            raise self.raises
        probs = self._answer(bgr) if callable(self._answer) else self._answer
        p = prediction_from_probabilities(probs, self.info.ok_class)
        return FakePrediction(
            p.label, p.probabilities, p.p_defect, p.confidence, (time.perf_counter() - t0) * 1e3
        )

    def explain(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        return np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2)).astype(
            np.float32
        )
