"""Serving: load a verified artifact, predict, explain.

p = Predictor.load(path)          # or Predictor.load() for the bundled model
pred = p.predict(bgr_image)       # Prediction(label, probabilities, p_defect, confidence, ...)
heat = p.explain(bgr_image)       # HxW float32 in [0, 1]
shown = overlay(bgr_image, heat)
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
import torch

from model.anomaly import AnomalyNet
from model.arch import DefectNet, GlobalNet, build
from model.artifact import WEIGHTS, load_weights, read_manifest
from model.embedding import reduce_embedding
from model.errors import ArtifactError, ModelError
from model.preprocess import (
    InputSpec,
    as_bgr_uint8,
    prepare,
    preprocess,
    to_tensor,
    uncrop_map,
)
from model.serving import OnnxNet, Served, load_session
from model.views import check_flips, flip, flip_averaged

BUNDLED = Path(__file__).resolve().parent / "bundled" / "default"


def bundled_model_path() -> Path:
    """The default model folder shipped with the package (trained on the synthetic line)."""
    return BUNDLED


@dataclass(frozen=True)
class Prediction:
    """One image's result. `probabilities` is read-only; `to_dict()` gives plain JSON types."""

    label: str
    probabilities: Mapping[str, float]
    p_defect: float  # 1 - P(ok class); 1.0 for a model without a defect-free class
    confidence: float  # calibrated probability of `label`
    latency_ms: float
    # The penultimate layer, projected to EMBEDDING_DIMS (model/embedding.py), for embedding
    # drift; None for a network that does not expose it.
    embedding: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "p_defect": self.p_defect,
            "confidence": self.confidence,
            "latency_ms": self.latency_ms,
            "embedding": None if self.embedding is None else list(self.embedding),
        }


@dataclass(frozen=True)
class ModelManifest:
    name: str
    version: str
    sha256: str  # of the whole artifact (manifest content, which holds every file's hash)
    weights_sha256: str
    architecture: str
    classes: tuple[str, ...]
    ok_class: str | None
    temperature: float
    thresholds: Mapping[str, Any]
    metrics: Mapping[str, Any]
    explain: str  # "defect_map" or "grad_cam"
    test_time_flips: tuple[str, ...]  # mirrored views averaged with the image (model/views.py)
    raw: Mapping[str, Any] = field(repr=False)


class Predictor:
    """`net` is the torch network (the reference; Grad-CAM and evaluation use it); `runner`
    answers predictions: the artifact's ONNX copy run by onnxruntime where it is installed and
    agrees with torch, else `net` itself (model/serving.py). `served` says which, and why."""

    def __init__(
        self,
        net: DefectNet | GlobalNet | AnomalyNet,
        manifest: ModelManifest,
        spec: InputSpec,
        runner: OnnxNet | None = None,
        served: Served | None = None,
    ) -> None:
        self.net = net.eval()
        self.runner: Any = runner if runner is not None else self.net
        self.served = served or Served("torch", "no ONNX copy was loaded")
        self.manifest = manifest
        self.spec = spec
        self._classes = list(manifest.classes)
        self._ok = self._classes.index(manifest.ok_class) if manifest.ok_class else None
        self._t = float(manifest.temperature)
        self._batch = _BatchThreads()
        weakref.finalize(self, self._batch.close)

    @classmethod
    def load(cls, path: Path | str | None = None, engine: str | None = None) -> Predictor:
        """Verify and load the artifact folder at `path` (default: the bundled model).

        `engine`: "auto" (default; onnxruntime when the artifact has an ONNX copy that agrees
        with torch, else torch), "torch", or "onnxruntime" (an error when it cannot); None reads
        $INSPECTION_MODEL_ENGINE, else "auto"."""
        path = Path(path) if path is not None else bundled_model_path()
        m = read_manifest(path)
        try:
            spec = InputSpec.from_dict(m["input"])
            temperature = float(m["temperature"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{path}/manifest.json: bad 'input' or 'temperature': {e}") from e
        if not temperature > 0:
            raise ArtifactError(f"expected a positive temperature, manifest has {temperature}")
        classes = list(m["classes"])
        ok_index = classes.index(m["ok_class"]) if m["ok_class"] is not None else None
        try:  # absent in artifacts that predate test-time flips: none
            flips = check_flips(m.get("test_time_flips", ()))
        except ModelError as e:
            raise ArtifactError(f"{path}/manifest.json: bad 'test_time_flips': {e}") from e
        pool_k = m.get("map_pool_k")  # absent in the first artifacts: their size-relative rule
        if pool_k is not None and (not isinstance(pool_k, int) or pool_k < 1):
            raise ArtifactError(f"expected 'map_pool_k' to be a positive integer, got {pool_k!r}")
        net = build(m["architecture"], len(classes), ok_index, pool_k, m.get("anomaly"))
        sd = load_weights(path / WEIGHTS)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()
            detail = "; ".join(line.strip() for line in first[1:4])
            raise ArtifactError(
                f"{path}: weights do not fit {m['architecture']} with {len(classes)} classes "
                f"{classes}: {detail}"
            ) from e
        manifest = ModelManifest(
            name=str(m["name"]),
            version=str(m["version"]),
            sha256=str(m["sha256"]),
            weights_sha256=str(m["files"][WEIGHTS]),
            architecture=str(m["architecture"]),
            classes=tuple(classes),
            ok_class=m["ok_class"],
            temperature=temperature,
            thresholds=MappingProxyType(dict(m["thresholds"])),
            metrics=MappingProxyType(dict(m.get("metrics", {}))),
            explain=str(m.get("explain", "grad_cam")),
            test_time_flips=flips,
            raw=MappingProxyType(m),
        )
        net.eval()
        runner, served = load_session(path, m, net, spec, temperature, engine)
        return cls(net, manifest, spec, runner, served)

    # -- prediction ---------------------------------------------------------------------------
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits_and_embedding(x)[0]

    def _logits_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits (averaged over the flipped views) and the image's own embedding."""
        seen: list[torch.Tensor | None] = []

        def logits_of(v: torch.Tensor) -> torch.Tensor:
            out = self.runner(v)
            if not seen:  # the first view is the image itself
                seen.append(out.embedding)
            return out.logits

        with torch.inference_mode():
            logits = flip_averaged(logits_of, x, self.manifest.test_time_flips)
        return logits, seen[0] if seen else None

    def _predictions(
        self, logits: torch.Tensor, t0: float, embedding: torch.Tensor | None = None
    ) -> list[Prediction]:
        probs = torch.softmax(logits.double() / self._t, dim=1).tolist()
        reduced = reduce_embedding(embedding.numpy()).tolist() if embedding is not None else None
        latency_ms = _ms(t0) / len(probs)  # per image, including this step
        out = []
        for n, row in enumerate(probs):
            i = max(range(len(row)), key=row.__getitem__)
            p_defect = 1.0 - row[self._ok] if self._ok is not None else 1.0
            out.append(
                Prediction(
                    label=self._classes[i],
                    probabilities=MappingProxyType(dict(zip(self._classes, row, strict=True))),
                    p_defect=p_defect,
                    confidence=row[i],
                    latency_ms=latency_ms,
                    embedding=None if reduced is None else tuple(reduced[n]),
                )
            )
        return out

    def predict(self, image: np.ndarray) -> Prediction:
        """One BGR / grayscale / BGRA, 8- or 16-bit image -> its calibrated Prediction."""
        t0 = time.perf_counter()
        logits, embedding = self._logits_and_embedding(preprocess(image, self.spec).unsqueeze(0))
        return self._predictions(logits, t0, embedding)[0]

    def predict_batch(
        self, images: Sequence[np.ndarray], *, workers: int | None = None
    ) -> list[Prediction]:
        """Several images, each answered exactly as `predict` answers it; latency_ms is the
        batch's time per image.

        On a CPU a batch pays off across cores, not inside one forward pass: eight images in one
        call are no faster per image than eight calls (the bundled model at 640x368 on one
        thread: 0.6-1.0x in onnxruntime; each image is already a large enough GEMM, and a
        batch's activations spill the caches; in torch sixteen in one call were 3.7x slower per
        image). So each image gets its own forward pass, and `workers` threads (default: one per
        core this process may use) run them side by side: onnxruntime, torch and OpenCV release
        the GIL. With one worker the next images are prepared on a second thread while the
        forward pass runs (bench/model_latency.py prints both). Each worker runs torch with
        torch's own thread count: where that is above one (the station sets one), fewer
        workers may do better. Nothing in a running station batches: its model thread answers
        one item at a time."""
        n = _worker_count(workers)
        if len(images) == 0:
            return []
        t0 = time.perf_counter()
        if len(images) == 1:
            outs = [self._logits_and_embedding(preprocess(images[0], self.spec).unsqueeze(0))]
        elif n == 1:
            outs = [
                self._logits_and_embedding(x.unsqueeze(0))
                for x in _prefetched(lambda im: preprocess(im, self.spec), images)
            ]
        else:
            outs = self._batch.map(
                lambda im: self._logits_and_embedding(preprocess(im, self.spec).unsqueeze(0)),
                images,
                n,
            )
        logits = torch.cat([o[0] for o in outs])
        embeddings = [o[1] for o in outs if o[1] is not None]
        embedding = torch.cat(embeddings) if len(embeddings) == len(outs) else None
        return self._predictions(logits, t0, embedding)

    def logits_from_prepared(
        self, rgbs: Sequence[np.ndarray], *, workers: int | None = None
    ) -> np.ndarray:
        """Uncalibrated logits for images already through `prepare` (evaluation): one forward
        pass per image, as served (see predict_batch), on `workers` threads."""
        n = _worker_count(workers)
        if len(rgbs) == 0:
            return np.zeros((0, len(self._classes)))

        def one(rgb: np.ndarray) -> torch.Tensor:
            return self._logits(to_tensor(rgb, self.spec).unsqueeze(0))

        outs = [one(r) for r in rgbs] if n == 1 or len(rgbs) == 1 else self._batch.map(one, rgbs, n)
        return torch.cat(outs).double().numpy()

    # -- explanation --------------------------------------------------------------------------
    def explain(self, image: np.ndarray) -> np.ndarray:
        """Where the model sees a defect: HxW float32 in [0, 1] at the image's own size.

        The model's own defect map (sigmoid of each cell's defect logit) where it has one,
        else Grad-CAM on its last convolution, scaled to a maximum of 1. With test-time flips
        the defect map is averaged over the views, each turned back; Grad-CAM uses the image.
        """
        bgr = as_bgr_uint8(image)
        x = to_tensor(prepare(bgr, self.spec), self.spec).unsqueeze(0)
        if self.manifest.explain == "defect_map" and isinstance(self.net, DefectNet | AnomalyNet):
            m = self._defect_map(x)
        else:
            m = self._grad_cam(x)
        h, w = bgr.shape[:2]
        heat = uncrop_map(m, w, h, self.spec)
        return np.clip(heat, 0.0, 1.0).astype(np.float32)

    def _defect_map(self, x: torch.Tensor) -> np.ndarray:
        """Mean over the image and its flipped views of each cell's defect probability."""

        def cells(v: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.runner(v).defect_map)

        with torch.inference_mode():
            maps = [cells(x), *(flip(cells(flip(x, f)), f) for f in self.manifest.test_time_flips)]
        return torch.cat(maps).mean(0)[0].numpy()

    def _grad_cam(self, x: torch.Tensor) -> np.ndarray:
        layer = self.net.cam_layer()
        store: dict[str, torch.Tensor] = {}

        def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
            out.retain_grad()
            store["a"] = out

        handle = layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                logits = self.net(x).logits
                target = int(logits[0].argmax())
                if self._ok is not None and target == self._ok and logits.shape[1] > 1:
                    # explain the most likely defect rather than "ok"
                    z = logits[0].clone()
                    z[self._ok] = -float("inf")
                    target = int(z.argmax())
                self.net.zero_grad(set_to_none=True)
                logits[0, target].backward()
        finally:
            handle.remove()
        a = store["a"]
        g = a.grad
        if g is None:
            return np.zeros(a.shape[-2:], np.float32)
        cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))[0].detach()
        peak = float(cam.max())
        return (cam / peak).numpy() if peak > 0 else cam.numpy()


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image (BGR uint8) with the heat-map blended in as a JET colour map."""
    bgr = as_bgr_uint8(image)
    h, w = bgr.shape[:2]
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != (h, w):
        heat = np.asarray(cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    colour = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * np.clip(heat, 0, 1))[:, :, None]
    return (bgr * (1 - weight) + colour * weight).astype(np.uint8)


def _prefetched(
    fn: Callable[[np.ndarray], torch.Tensor], items: Sequence[np.ndarray], ahead: int = 2
) -> Iterator[torch.Tensor]:
    """fn over items, in order, computed up to `ahead` items before they are asked for on one
    worker thread (memory stays bounded: a prepared image is 2.8 MB at 640x368)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
        pending: deque[Future[torch.Tensor]] = deque()
        rest = iter(items)
        for item in itertools.islice(rest, ahead):
            pending.append(pool.submit(fn, item))
        while pending:
            out = pending.popleft().result()
            for item in itertools.islice(rest, 1):
                pending.append(pool.submit(fn, item))
            yield out


class _BatchThreads:
    """The threads a Predictor's batches run on: started by the first batch and kept for the
    next ones. A thread new to onnxruntime or torch is slower on its first image; threads
    started for each call made batch 8 1.50-1.56x as fast as batch 1 per image where kept
    ones made it 1.58-1.72x (in turns, four runs).

    New threads are started when a batch asks for another number of them, or when torch's
    thread count has changed since (a thread keeps the count torch had when it first ran, and
    another count sums in another order: answers would differ from `predict`'s in the last
    bits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._key = (0, 0)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
        """fn over items on `workers` threads, results in order. The first failure (in order)
        is raised once the items already running have ended; the others are dropped."""
        key = (workers, torch.get_num_threads())
        futures: list[Future[Any]] = []
        try:
            # Submitted under the lock: another batch asking for other threads shuts this pool
            # down only once this batch's items are queued on it (queued items still run).
            with self._lock:
                if self._pool is None or self._key != key:
                    if self._pool is not None:
                        self._pool.shutdown(wait=False)
                    self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch")
                    self._key = key
                for item in items:
                    futures.append(self._pool.submit(fn, item))
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            wait(futures)  # nothing of this batch is left running when it fails
            raise

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = None


def _worker_count(workers: int | None) -> int:
    n = workers if workers is not None else usable_cores()
    if n < 1:
        raise ValueError(f"expected at least one worker, got {workers}")
    return n


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
