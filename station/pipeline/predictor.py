"""The seam between the station and the defect model: two protocols, the model's identity, a
loader, and a first-class fake.

The station never imports torch itself; `load_predictor` imports `model` lazily, so the window
opens before the model has loaded. Tests use `FakePredictor` at this seam.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from review.labels import LabelSet
from review.rules import UNNAMED_DEFECT
from station.errors import ModelMismatch


class Prediction(Protocol):
    """What the station reads of a model's answer on one image (model.Prediction has more)."""

    @property
    def label(self) -> str: ...

    @property
    def probabilities(self) -> Mapping[str, float]: ...  # calibrated, one per class

    @property
    def p_defect(self) -> float: ...

    @property
    def confidence(self) -> float: ...  # calibrated probability of `label`

    @property
    def latency_ms(self) -> float: ...


class Predictor(Protocol):
    """A loaded model: `predict` a BGR uint8 image (H, W, 3); `explain` gives an (H, W) float
    heat-map in [0, 1]."""

    def predict(self, bgr: np.ndarray) -> Prediction: ...

    def explain(self, bgr: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelInfo:
    """A model's identity in the pipeline: what every prediction record names (and what the spool
    keeps, so a record waiting on disk still knows its model after a restart)."""

    name: str
    version: str
    sha256: str
    classes: tuple[str, ...]
    ok_class: str
    temperature: float = 1.0
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    architecture: str = ""
    path: str = ""

    @property
    def short(self) -> str:
        return f"{self.version} (sha {self.sha256[:8]})"

    @classmethod
    def from_manifest(cls, manifest: Any, path: str | Path = "") -> ModelInfo:
        """From a model artifact's manifest (model.ModelManifest, or its JSON as a dict)."""

        def get(key: str, default: Any = None) -> Any:
            if isinstance(manifest, Mapping):
                return manifest.get(key, default)
            return getattr(manifest, key, default)

        return cls(
            name=str(get("name", "model")),
            version=str(get("version", "0")),
            sha256=str(get("sha256", "") or ""),
            classes=tuple(str(c) for c in get("classes", ()) or ()),
            ok_class=str(get("ok_class", "") or ""),
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
) -> tuple[Predictor, ModelInfo]:
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
    return predictor, ModelInfo.from_manifest(predictor.manifest, target)


def check_fits(info: ModelInfo, labels: LabelSet) -> None:
    """Refuse a model whose classes are not the station's labels: its answers could not be
    compared with the inspectors' nor routed (a model without the defect-free class could never
    auto-pass, one with unknown labels would suggest keys the inspector does not have)."""
    expected = set(labels.all)
    got = set(info.classes)
    if info.architecture.startswith("patchcore_"):
        # an anomaly model (model/anomaly.py) tells defect from defect-free and names no type:
        # its classes are the station's defect-free label and UNNAMED_DEFECT
        expected = {labels.ok, UNNAMED_DEFECT}
        if UNNAMED_DEFECT in labels.all:
            raise ModelMismatch(
                f"anomaly model {info.name} {info.version} calls every defect "
                f"{UNNAMED_DEFECT!r}, which is one of the station's own labels: rename that label"
            )
    if info.ok_class != labels.ok or got != expected:
        raise ModelMismatch(
            f"model {info.name} {info.version} has classes {sorted(got)} (defect-free "
            f"{info.ok_class!r}); the station's labels are {sorted(expected)} (defect-free "
            f"{labels.ok!r})"
        )


# --------------------------------------------------------------------------- the fake

#: The default settings' labels, which the fake answers in unless told otherwise.
FAKE_CLASSES = ("ok", "crack", "scratch", "dent", "stain", "missing")


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


def confident(
    label: str, p: float = 0.995, classes: tuple[str, ...] = FAKE_CLASSES
) -> dict[str, float]:
    """Probabilities with `p` on `label` and the rest shared by the other classes."""
    rest = (1.0 - p) / (len(classes) - 1)
    return {c: (p if c == label else rest) for c in classes}


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
        self.info = info or ModelInfo("fake", "f1", "f" * 64, FAKE_CLASSES, "ok")
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
