"""An ONNX copy of a model's weights, served by onnxruntime; torch stays the reference.

Measured on this project's 2-core machine (bundled model, 640x368, one thread), the forward pass
took 20-27 ms in eager torch and 5-8 ms in onnxruntime, whose CPU kernels fuse convolution,
batch-norm and activation and pick a memory layout once (bench/model_latency.py prints both).

* Saving (`onnx_copy`): the network is exported with torch's exporter (torch.export, opset 18+,
  batch size dynamic) into one self-contained `model.onnx`, which the manifest hashes like every
  other file. The export is run once on a fixed test image by onnxruntime and its calibrated
  probabilities compared with torch's; beyond `AGREE` the copy is not kept and the manifest says
  why. An export that fails (an operator the exporter lacks) leaves the artifact torch-only.
* Loading (`load_session`): with onnxruntime installed and a copy in the artifact, the copy is
  checked again on the same test image against the torch weights just loaded (a different
  onnxruntime build, other kernels); only if it agrees does it serve. Otherwise, or without
  onnxruntime, torch serves and `Served.note` says why.

The copy returns what the torch network returns (`NetOutput`: logits, defect map, embedding),
so flips, heat-maps from the defect map and embeddings work unchanged; Grad-CAM needs gradients
and always runs in torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.arch import NetOutput
from model.artifact import WEIGHTS, read_manifest, save_artifact
from model.errors import ArtifactError, ModelError, TamperedArtifact
from model.preprocess import InputSpec, preprocess

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
#: Largest difference allowed between torch's and onnxruntime's calibrated probabilities on the
#: test image (measured: 6e-8 for the bundled model), and between their defect maps' cell
#: probabilities (4e-6 bundled, 1e-5 for a one-epoch test model; a heat-map shows 1/255 steps).
AGREE = 1e-5
AGREE_MAP = 1e-4
#: INSPECTION_MODEL_ENGINE=torch forces torch (to rule onnxruntime out when chasing a problem on
#: a line). Not STATION_*: the settings refuse a variable of that prefix they do not know.
ENGINE_ENV = "INSPECTION_MODEL_ENGINE"
ENGINES = ("auto", "onnxruntime", "torch")
_OUTPUTS = ("logits", "defect_map", "embedding")


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def test_image(spec: InputSpec) -> torch.Tensor:
    """The fixed images both engines must agree on: (2, 3, H, W), through the serving
    preprocessing. Smooth shading, a bright panel, a dark line and seeded noise: an input with
    structure, so the defect map and the classes are exercised, not a flat field; and its
    mirror image, so a batch is exercised too (an exporter fixes a batch of 1 in the graph)."""
    h, w = spec.height, spec.width
    rng = np.random.default_rng(20261202)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 200 // max(1, w)), (yy * 200 // max(1, h)), np.full_like(xx, 90)], 2)
    img[h // 5 : 4 * h // 5, w // 6 : 5 * w // 6] = 225
    img[h // 2 : h // 2 + max(1, h // 90), w // 3 : 2 * w // 3] = 20
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    x = preprocess(img, spec)
    return torch.stack([x, torch.flip(x, (2,))])


def probabilities(logits: torch.Tensor, temperature: float) -> np.ndarray:
    return torch.softmax(logits.double() / temperature, dim=1).numpy()


class _Outputs(nn.Module):
    """The network with a tuple of tensors as output (what an ONNX graph can return)."""

    def __init__(self, net: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.net = net
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return tuple(getattr(out, n) for n in self.names)


def _output_names(net: nn.Module, x: torch.Tensor) -> tuple[str, ...]:
    with torch.inference_mode():
        out = net(x)
    return tuple(n for n in _OUTPUTS if getattr(out, n) is not None)


def export(net: nn.Module, spec: InputSpec) -> tuple[bytes, tuple[str, ...]]:
    """The network as ONNX bytes (one file, batch size dynamic) and its output names.
    Raises whatever the exporter raises; `onnx_copy` turns that into a reason."""
    net = net.eval()
    x = test_image(spec)
    names = _output_names(net, x)
    batch = torch.export.Dim("batch", min=1, max=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter
        program = torch.onnx.export(
            _Outputs(net, names).eval(),
            (x,),
            dynamo=True,
            optimize=True,
            verbose=False,
            input_names=["image"],
            output_names=list(names),
            dynamic_shapes={"x": {0: batch}},
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    buf = io.BytesIO()
    program.save(buf, external_data=False)  # type: ignore[arg-type]  # takes a file object too
    return buf.getvalue(), names


class OnnxNet:
    """An onnxruntime session that answers like the torch network: `net(x) -> NetOutput`."""

    def __init__(self, data: bytes, names: tuple[str, ...], threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # the station runs torch with one intra-op thread (station/pipeline/predictor.py):
        # onnxruntime gets the same, so a loaded machine sees the same contention either way
        opts.intra_op_num_threads = max(1, threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: its warnings go to stderr, not our log
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.names = names
        self.version = str(ort.__version__)
        # an exporter may fix the batch size in the graph (some networks' shapes depend on it):
        # a larger batch is then run in pieces of that size
        batch = self.session.get_inputs()[0].shape[0]
        self._fixed_batch = batch if isinstance(batch, int) else None

    def __call__(self, x: torch.Tensor) -> NetOutput:
        b = self._fixed_batch
        if b is not None and x.shape[0] != b:
            parts = []
            for v in x.split(b):
                n = v.shape[0]
                if n < b:  # the last piece, padded up to the graph's batch and cut back
                    v = torch.cat([v, v.new_zeros((b - n, *v.shape[1:]))])
                parts.append([None if t is None else t[:n] for t in self(v)])
            joined = [None if o[0] is None else torch.cat(o) for o in zip(*parts, strict=True)]
            return NetOutput(*joined)  # type: ignore[arg-type]
        arrays = self.session.run(list(self.names), {"image": x.numpy()})
        got = {n: torch.from_numpy(a) for n, a in zip(self.names, arrays, strict=True)}
        return NetOutput(got["logits"], got.get("defect_map"), got.get("embedding"))


@dataclass(frozen=True)
class Agreement:
    """How far `other` is from torch on the test image."""

    probabilities: float  # largest difference of calibrated probabilities
    defect_map: float  # of the defect map's cell probabilities (0 without a map)

    @property
    def ok(self) -> bool:
        return self.probabilities <= AGREE and self.defect_map <= AGREE_MAP

    def __str__(self) -> str:
        return f"probabilities within {self.probabilities:.1e}, defect map {self.defect_map:.1e}"


def agreement(net: nn.Module, other: Any, spec: InputSpec, temperature: float) -> Agreement:
    """Compare the torch network and `other` on the test image."""
    x = test_image(spec)
    with torch.inference_mode():
        ref = net(x)
    got = other(x)
    probs = np.abs(probabilities(ref.logits, temperature) - probabilities(got.logits, temperature))
    cells = 0.0
    if ref.defect_map is not None and got.defect_map is not None:
        d = torch.sigmoid(ref.defect_map) - torch.sigmoid(got.defect_map)
        cells = float(d.abs().max())
    # NaN compares false: a NaN difference is no agreement
    return Agreement(float(probs.max()), cells)


def onnx_copy(
    net: nn.Module, spec: InputSpec, temperature: float
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(files to add to the artifact, the manifest's `onnx` section) for a network being saved.

    Without onnxruntime the copy cannot be checked and is not made; the section says so, and the
    artifact serves with torch."""
    if not onnxruntime_available():
        return {}, {"file": None, "reason": "onnxruntime was not installed where this was saved"}
    try:
        data, names = export(net, spec)
    except Exception as e:  # noqa: BLE001 - any exporter failure leaves a torch-only artifact
        reason = f"export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        log.warning("no ONNX copy of this model: %s", reason)
        return {}, {"file": None, "reason": reason}
    runner = OnnxNet(data, names, threads=1)
    agree = agreement(net, runner, spec, temperature)
    if not agree.ok:
        reason = (
            f"onnxruntime differs from torch on the test image: {agree} (allowed {AGREE:g} and "
            f"{AGREE_MAP:g})"
        )
        log.warning("no ONNX copy of this model: %s", reason)
        return {}, {"file": None, "reason": reason}
    section = {
        "file": ONNX_FILE,
        "outputs": list(names),
        "max_difference": agree.probabilities,
        "max_map_difference": agree.defect_map,
        "torch": torch.__version__,
        "onnxruntime": runner.version,
    }
    return {ONNX_FILE: data}, section


@dataclass(frozen=True)
class Served:
    """Which engine answers predictions for a loaded model, and why."""

    engine: str  # "onnxruntime" or "torch"
    note: str  # why torch, when it is torch; the measured agreement when onnxruntime


def choose_engine(requested: str | None) -> str:
    engine = requested or os.environ.get(ENGINE_ENV) or "auto"
    if engine not in ENGINES:
        raise ModelError(f"expected a model engine among {', '.join(ENGINES)}, got {engine!r}")
    return engine


def load_session(
    path: Path,
    manifest: dict[str, Any],
    net: nn.Module,
    spec: InputSpec,
    temperature: float,
    requested: str | None = None,
) -> tuple[OnnxNet | None, Served]:
    """The onnxruntime twin of `net` for the artifact at `path`, or None and why torch serves.

    `requested`: "auto" (onnxruntime when it can, else torch), "torch", or "onnxruntime"
    (the same, but the reason it cannot is an error rather than a note)."""
    engine = choose_engine(requested)

    def torch_serves(why: str) -> tuple[None, Served]:
        if engine == "onnxruntime":
            raise ArtifactError(f"{path}: cannot serve with onnxruntime: {why}")
        return None, Served("torch", why)

    if engine == "torch":
        return None, Served("torch", "torch was asked for")
    section = manifest.get("onnx")
    if not isinstance(section, dict) or not section.get("file"):
        why = section.get("reason") if isinstance(section, dict) else None
        return torch_serves(f"the artifact has no ONNX copy ({why or 'saved before they existed'})")
    if not onnxruntime_available():
        return torch_serves("onnxruntime is not installed (pip install onnxruntime)")
    name = str(section["file"])
    if name not in manifest["files"]:  # so not hashed: never run it
        raise ArtifactError(
            f"{path}/manifest.json: its 'onnx' section names {name}, which 'files' does not list"
        )
    data = (path / name).read_bytes()
    # read_manifest checked the file's hash; these bytes are the ones checked (not a later swap)
    if hashlib.sha256(data).hexdigest() != manifest["files"].get(name):
        raise TamperedArtifact(f"{path}: {name} changed while the model was loading")
    names = tuple(str(n) for n in section.get("outputs", ("logits",)))
    try:
        runner = OnnxNet(data, names)
        agree = agreement(net, runner, spec, temperature)
    except Exception as e:  # noqa: BLE001 - a copy onnxruntime cannot run: torch serves
        return torch_serves(f"onnxruntime cannot run {name}: {type(e).__name__}: {e}")
    if not agree.ok:
        return torch_serves(
            f"onnxruntime {runner.version} differs from torch on the test image: {agree}"
        )
    return runner, Served("onnxruntime", f"agrees with torch on the test image: {agree}")


def add_onnx_copy(path: Path | str) -> dict[str, Any]:
    """Give an artifact saved without an ONNX copy one, in place; returns the new manifest.

    The artifact's sha256 changes (its files do), so a registry sees a new version: what is
    served changes engine, and the evidence should say so."""
    from model.predictor import Predictor  # it imports this module

    path = Path(path)
    predictor = Predictor.load(path, engine="torch")
    m = read_manifest(path)
    files, section = onnx_copy(predictor.net, predictor.spec, predictor.manifest.temperature)
    extra = {n: (path / n).read_bytes() for n in m["files"] if n not in (WEIGHTS, ONNX_FILE)}
    body = {k: v for k, v in m.items() if k not in ("files", "sha256", "weights_sha256")}
    body["onnx"] = section
    if not files and (path / ONNX_FILE).exists():
        (path / ONNX_FILE).unlink()
    return save_artifact(path, predictor.net.state_dict(), body, {**extra, **files})
