"""Latency of `Predictor.predict()` against bare forward passes with hand-written preprocessing.

    .venv/bin/python bench/model_latency.py [ARTIFACT] [--runs 60] [--threads 1]

All paths run interleaved in one process on the same 1280x720 BGR frame, so machine load hits
them alike:
* predict() as served (onnxruntime on the artifact's ONNX copy, model/serving.py),
* predict() on the torch engine (what served before the ONNX copy),
* bare onnxruntime: the same ONNX file in a session of our own, hand-written preprocessing
  (resize, BGR->RGB, normalise), softmax: the issue's baseline, target predict/bare <= 1.0,
* bare torch: the same for the torch weights.
Then images/s of predict_batch at batch 1, 8 (one worker per core, and one worker) and 32, in
rounds taking turns (target: batch 8 >= 1.5x batch 1), and the forward pass alone on a prepared
input, one image and eight per call, on one thread: why a batch is not one call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Predictor, bundled_model_path  # noqa: E402
from model.predictor import usable_cores  # noqa: E402


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((720, 1280, 3), 110, np.uint8)
    cv2.rectangle(img, (90, 70), (1190, 650), (235, 235, 235), -1)
    cv2.rectangle(img, (200, 90), (1080, 630), (25, 25, 28), -1)
    cv2.line(img, (400, 300), (520, 380), (200, 200, 200), 1, cv2.LINE_AA)
    noise = rng.normal(0, 2.5, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _normalised(img: np.ndarray, w: int, h: int, mean, std) -> torch.Tensor:
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
    return ((x - mean) / std).unsqueeze(0)


def bare(net: torch.nn.Module, img: np.ndarray, w: int, h: int, mean, std, t: float) -> np.ndarray:
    """What a hand-rolled caller would write: resize, BGR->RGB, normalise, forward, softmax."""
    x = _normalised(img, w, h, mean, std)
    with torch.inference_mode():
        logits = net(x).logits
    return torch.softmax(logits / t, dim=1).numpy()


def bare_ort(session, img: np.ndarray, w: int, h: int, mean, std, t: float) -> np.ndarray:
    """The same with the artifact's ONNX file in an onnxruntime session of its own."""
    x = _normalised(img, w, h, mean, std).numpy()
    (logits,) = session.run(["logits"], {"image": x})
    return torch.softmax(torch.from_numpy(logits) / t, dim=1).numpy()


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", nargs="?", default=None)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1, help="1: as the station runs (default)")
    ap.add_argument("--batch-rounds", type=int, default=5, help="rounds of the batch sizes")
    args = ap.parse_args()
    for name in ("runs", "threads", "batch_rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    path = Path(args.artifact) if args.artifact else bundled_model_path()
    p = Predictor.load(path)
    p_torch = Predictor.load(path, engine="torch")
    if p.served.engine != "onnxruntime":
        sys.exit(f"{path} is not served by onnxruntime here ({p.served.note}): nothing to compare")
    session = ort_session(path / str(p.manifest.raw["onnx"]["file"]), args.threads)
    spec, t = p.spec, p.manifest.temperature
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    img = frame()
    paths = {
        "predict() served": lambda: p.predict(img),
        "predict() torch": lambda: p_torch.predict(img),
        "bare onnxruntime": lambda: bare_ort(session, img, spec.width, spec.height, mean, std, t),
        "bare torch": lambda: bare(p.net, img, spec.width, spec.height, mean, std, t),
    }
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(5):  # warm-up every path
        for f in paths.values():
            f()
    for _ in range(args.runs):
        for name, f in paths.items():
            t0 = time.perf_counter()
            f()
            times[name].append((time.perf_counter() - t0) * 1000)
    print(
        f"model {p.manifest.name} {p.manifest.version} ({p.manifest.architecture}) served at "
        f"{spec.width}x{spec.height} from a 1280x720 frame, {args.threads} thread(s), "
        f"{args.runs} interleaved runs; served by {p.served.engine} ({p.served.note})"
    )
    for name, xs in times.items():
        print(f"  {name:<18}: p50 {pct(xs, 0.5):6.1f} ms  p95 {pct(xs, 0.95):6.1f} ms")
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["predict() served"] / med["bare onnxruntime"]
    print(
        f"ratio predict()/bare onnxruntime (p50): {ratio:.3f}  (target <= 1.0: "
        f"{'met' if ratio <= 1.0 else 'NOT met'})"
    )
    print(
        f"ratio predict() torch/bare torch (p50): "
        f"{med['predict() torch'] / med['bare torch']:.3f}; served vs torch engine: "
        f"{med['predict() torch'] / med['predict() served']:.2f}x faster"
    )
    # Batches in rounds, the sizes in turns (a machine's speed drifts between sequential runs
    # more than the effect measured), about 64 images per size per round.
    batches = {
        "batch 1": ([frame(0)], None),
        "batch 8": ([frame(i) for i in range(8)], None),
        "batch 8, one worker": ([frame(i) for i in range(8)], 1),
        "batch 32": ([frame(i) for i in range(32)], None),
    }
    per_round: dict[str, list[float]] = {k: [] for k in batches}
    for images, workers in batches.values():
        p.predict_batch(images, workers=workers)
    for _ in range(args.batch_rounds):
        for name, (images, workers) in batches.items():
            reps = max(2, 64 // len(images))
            t0 = time.perf_counter()
            for _ in range(reps):
                p.predict_batch(images, workers=workers)
            per_round[name].append(reps * len(images) / (time.perf_counter() - t0))
    rates = {k: statistics.median(v) for k, v in per_round.items()}
    print(
        f"predict_batch, {args.batch_rounds} rounds in turns (medians; workers by default one "
        f"per core: {usable_cores()})"
    )
    for name, rate in rates.items():
        print(f"  {name:<20}: {rate:6.1f} images/s = {rate / rates['batch 1']:.2f}x batch 1")
    gain = rates["batch 8"] / rates["batch 1"]
    print(f"batch 8 / batch 1: {gain:.2f}x  (target >= 1.5: {'met' if gain >= 1.5 else 'NOT met'})")
    # Why a batch is not one call: the forward pass alone, on an input already prepared, one
    # image at a time and eight in one call, on one thread.
    from model.preprocess import preprocess

    x1 = preprocess(img, spec).unsqueeze(0)
    x8 = torch.cat([x1] * 8)
    forward = {}
    with torch.inference_mode():
        for name, x in (("one image per call", x1), ("eight per call", x8)):
            p.runner(x)
            reps = max(2, 64 // x.shape[0])
            t0 = time.perf_counter()
            for _ in range(reps):
                p.runner(x)
            forward[name] = reps * x.shape[0] / (time.perf_counter() - t0)
    for name, rate in forward.items():
        print(
            f"forward pass alone, {name}: {rate:.1f} images/s = {rate / rates['batch 1']:.2f}x "
            "batch 1"
        )
    print(
        "  eight images in one call are no faster per image than one: a batch pays off across "
        "cores (predict_batch's workers), not inside one forward pass"
    )


if __name__ == "__main__":
    main()
