"""Training: folder -> network -> calibrated, versioned artifact.

Seeded and deterministic on CPU; class-balanced sampling (by default inverse square root of
class size, so rare defect types are seen more often without drowning the defect-free class); a
group-aware
validation split; early stopping on validation NLL; temperature scaling and suggested
thresholds fitted on the validation logits; everything recorded in the manifest.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from model.arch import DEFAULT_ARCH, DefectNet, GlobalNet, build, check_architecture
from model.artifact import load_weights, save_artifact
from model.calibrate import fit_temperature, reliability_png
from model.data import (
    LoadedSet,
    augment,
    group_split,
    load_samples,
    pick_crop,
    probe_sizes,
    scan_folder,
)
from model.errors import DataError, ModelError
from model.evaluate import auroc, compute_metrics
from model.lite import LITE_MEAN, LITE_STD, lite_features_state_dict
from model.preprocess import (
    FITS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    choose_input_size,
    content_box,
    to_tensor,
)
from model.serving import onnx_copy
from model.views import check_flips, describe_flips, flip_averaged

Progress = Callable[[str, dict[str, Any]], None]

# Epoch selection rules, each a validation figure of the epoch's served output:
# "nll": the NLL over all classes (defect types included);
# "defect_nll": the defect-vs-ok NLL at its best temperature (needs both kinds in validation);
# "auroc": the defect-vs-ok AUROC (likewise);
# "auto": defect_nll where validation holds both kinds, else nll.
# Why auto prefers defect_nll: the all-class NLL also charges the net for mixing up defect types,
# and on the tiles it bottoms out epochs before defect-vs-free ranking does. Over four tile splits
# (bench/epoch_rules.py) test AUROC was 0.918/0.911/0.949/0.901 selecting on defect_nll against
# 0.909/0.911/0.916/0.862 on nll; the station's coverage mean 0.465 against 0.435.
SELECT_ON = ("auto", "nll", "defect_nll", "auroc")


@dataclass(frozen=True)
class TrainConfig:
    arch: str = DEFAULT_ARCH
    epochs: int = 12
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    long_side: int = 448  # the served resolution's long side (median aspect ratio kept)
    input_size: tuple[int, int] | None = None  # (width, height); overrides long_side
    # how an image reaches the input size: "stretch", or "letterbox" (aspect kept, padded) for
    # data of mixed shapes; see model/preprocess.py
    fit: str = "stretch"
    val_fraction: float = 0.2
    seed: int = 0
    patience: int = 4
    ok_class: str | None = "ok"
    require_ok: bool = False
    init_weights: str | None = None
    group_by: str = "auto"
    threads: int = 1
    mask_weight: float = 1.0
    name: str = "defect-model"
    version: str = "1"
    max_error: float = 0.01
    augment: bool = True
    # class balancing: sample each image with weight (class size)^-balance; 0 = natural
    # frequencies, 1 = every class equally often
    balance: float = 0.5
    # (width, height) of training crops cut from the served-size image, or None for whole images.
    # Crops let a net train near native resolution at a fraction of the cost; each crop's label
    # comes from the mask (defect shown or clean), so every defect image needs its mask.
    crop: tuple[int, int] | None = None
    # the defect score is the mean of the map's `map_pool_k` hottest cells
    map_pool_k: int = 2
    # judge and keep an exponential moving average of the weights (decay per step, e.g. 0.99:
    # about the last 100 steps) instead of the last step's weights; None = off. On small
    # validation sets the last step's weights swing (tile AUROC 0.72 -> 0.92 -> 0.82 between
    # epochs) and the average moves slowly: with 0.99 the tiles' validation AUROC rose steadily
    # instead. Test AUROC on seed 0's split: 0.909 with it, 0.904 without (bench/real_photos.py).
    ema_decay: float | None = None
    # mirrored views whose probabilities the served model averages with the image's, e.g.
    # ("h", "v", "hv"); the final calibration and thresholds are fitted on the averaged output.
    # Each view costs one more forward pass at serving. See model/views.py.
    test_time_flips: tuple[str, ...] = ()
    # the validation figure that picks the epoch kept and drives early stopping; see SELECT_ON
    select_on: str = "auto"
    # save an ONNX copy served by onnxruntime, 3-4x faster than torch (model/serving.py);
    # the export adds ~6 s to the save
    onnx: bool = True
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    path: Path
    manifest: dict[str, Any]


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _init_from_file(net: DefectNet | GlobalNet, path: str) -> dict[str, int]:
    """Copy matching tensors from a state_dict file; report how many matched.

    Accepts this package's own weights (an artifact's weights.pt: every matching tensor, heads
    included), a torchvision classifier's (`features.N...`) or the lukemelas EfficientNet-Lite0
    file (`_conv_stem...`).
    """
    sd = load_weights(Path(path))
    own = net.state_dict()
    if any(k in own for k in sd):
        take = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        net.load_state_dict(take, strict=False)
        return {"matched": len(take), "in_file": len(sd)}
    if any(k.startswith("_conv_stem.") for k in sd):
        sd = lite_features_state_dict(sd)
    else:
        sd = {k.removeprefix("features."): v for k, v in sd.items()}
    if isinstance(net, DefectNet):
        sd = staged_backbone(sd, len(net.stage8))
    else:
        sd = {("net." + k if not k.startswith("net.") else k): v for k, v in sd.items()}
    take = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not take:
        raise ModelError(
            f"--init-weights {path}: no tensor matches the {type(net).__name__} backbone "
            f"(expected names like features.0.0.weight)"
        )
    net.load_state_dict(take, strict=False)
    return {"matched": len(take), "in_file": len(sd)}


def input_spec_for(backbone: str, size: tuple[int, int], fit: str) -> InputSpec:
    """The input a backbone's pretrained weights expect: Lite0 its own normalisation, the
    torchvision networks ImageNet's."""
    lite = backbone == "efficientnet_lite0"
    return InputSpec(
        int(size[0]),
        int(size[1]),
        LITE_MEAN if lite else IMAGENET_MEAN,
        LITE_STD if lite else IMAGENET_STD,
        fit,
    )


def staged_backbone(sd: Mapping[str, torch.Tensor], n8: int) -> dict[str, torch.Tensor]:
    """A `.features` stack's tensors (`N.rest`) -> the names of a net split into `stage8` (the
    first n8 layers) and `stage16` (the rest), as DefectNet and AnomalyNet are."""
    out = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        if head.isdigit():
            i = int(head)
            out[f"stage8.{i}.{rest}" if i < n8 else f"stage16.{i - n8}.{rest}"] = v
    return out


def _batch(
    data: LoadedSet,
    idx: np.ndarray,
    spec: InputSpec,
    rng: np.random.Generator | None,
    ok_index: int | None,
    masks_known: bool,
    crop: tuple[int, int] | None = None,
    augment_images: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ms, known, ys = [], [], [], []
    h, w = (spec.height, spec.width) if crop is None else (crop[1], crop[0])
    for i in idx:
        rgb, mask = data.images[i], data.masks[i]
        y = data.labels[i]
        if rng is not None and augment_images:
            rgb, mask = augment(rgb, mask, rng)
        if crop is not None:
            assert rng is not None and ok_index is not None  # checked by _check_crop_config
            if mask is None:  # a defect-free image: its mask is empty
                mask = np.zeros(rgb.shape[:2], np.uint8)
            width, height = data.original_sizes[i]
            box = content_box(width, height, spec)  # where the picture lies when letterboxed
            x0, y0, shows = pick_crop(mask, crop, rng, within=box)
            rgb = rgb[y0 : y0 + h, x0 : x0 + w]
            mask = np.ascontiguousarray(mask[y0 : y0 + h, x0 : x0 + w])
            if not shows:
                y, mask = ok_index, np.zeros_like(mask)
        ys.append(y)
        xs.append(to_tensor(np.ascontiguousarray(rgb), spec))
        if mask is not None:
            ms.append(torch.from_numpy(mask).float().div_(255.0))
            known.append(True)
        else:
            ms.append(torch.zeros(h, w))
            # a defect-free image's mask is known to be empty when the set uses masks at all
            known.append(masks_known and data.labels[i] == ok_index)
    return (
        torch.stack(xs),
        torch.tensor(ys, dtype=torch.long),
        torch.stack(ms).unsqueeze(1),
        torch.tensor(known),
    )


def _loss(
    net: DefectNet | GlobalNet,
    x: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor,
    known: torch.Tensor,
    mask_weight: float,
) -> torch.Tensor:
    out = net(x)
    loss = F.cross_entropy(out.logits, y)
    if out.defect_map is not None and mask_weight > 0 and bool(known.any()):
        # a cell is a defect cell if any of its pixels is (thin lines survive as partial values)
        target = (F.adaptive_max_pool2d(m[known], out.defect_map.shape[-2:]) > 0.1).float()
        pix = F.binary_cross_entropy_with_logits(
            out.defect_map[known], target, pos_weight=torch.tensor(5.0)
        )
        loss = loss + mask_weight * pix
    return loss


def _check_crop_config(
    crop: tuple[int, int],
    spec: InputSpec,
    net: DefectNet | GlobalNet,
    ok_index: int | None,
    classes: list[str],
) -> None:
    """What crop training needs that is known before any image is read."""
    cw, ch = crop
    if not (0 < cw <= spec.width and 0 < ch <= spec.height):
        raise ModelError(
            f"expected a crop within the input size {spec.width}x{spec.height}, got {cw}x{ch}"
        )
    if not isinstance(net, DefectNet):
        raise ModelError(
            "crop training needs a defect-map architecture (mobilenet, efficientnet, mnasnet); "
            f"{type(net.net).__name__} has no map"
        )
    if ok_index is None:
        raise DataError(
            "crop training needs a defect-free class (a crop without the defect is labelled "
            f"with it); classes are {classes}"
        )


def _unlabellable_crops(data: LoadedSet, ok_index: int) -> set[int]:
    """Defect images whose crops cannot be labelled: refused if the mask file is missing,
    left out of training (and counted) if the mask is blank, as the annotator marked nothing."""
    unmasked = [
        s.path.name
        for s, y, m in zip(data.samples, data.labels, data.masks, strict=True)
        if y != ok_index and m is None
    ]
    if unmasked:
        raise DataError(
            f"crop training needs a mask (NAME.mask.png) beside every defect image; "
            f"{len(unmasked)} have none, e.g. {', '.join(unmasked[:3])}"
        )
    return {
        i
        for i, (y, m) in enumerate(zip(data.labels, data.masks, strict=True))
        if y != ok_index and m is not None and not (m > 25).any()
    }


def _logits(
    net: DefectNet | GlobalNet,
    data: LoadedSet,
    idx: list[int],
    spec: InputSpec,
    flips: tuple[str, ...] = (),
) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), 32):
            x = torch.stack([to_tensor(data.images[i], spec) for i in idx[s : s + 32]])
            out.append(flip_averaged(lambda v: net(v).logits, x, flips).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


REFIT_LOG_SCALE_SD = 1.0  # prior on the refit: the scale moves by a factor of about e
REFIT_BIAS_SD = 4.0


@dataclass(frozen=True)
class ScoreRefit:
    """The defect score's scale and bias refitted on served-size validation images."""

    scale_before: float
    bias_before: float
    scale: float
    bias: float
    nll_before: float
    nll_after: float
    logits: np.ndarray  # validation logits with the refitted line

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "logits"}


def refit_score(
    net: DefectNet, data: LoadedSet, idx: list[int], spec: InputSpec, y: np.ndarray
) -> ScoreRefit:
    """Refit the (scale, bias) that turn the pooled map into the defect score, on whole images.

    A net trained on crops pools the top cells of a crop's map; served, it pools those of the
    whole image's map, four times as many cells, whose top values run higher. The ranking of
    images survives (AUROC held at 0.98 while accuracy swung 0.92 -> 0.76 in one run), the
    threshold does not, and temperature scaling cannot move a threshold. Two parameters fitted
    on validation images as served put it back; the net's own parameters are left alone.
    """
    net.eval()
    raws, ts = [], []
    with torch.inference_mode():
        for s in range(0, len(idx), 32):
            x = torch.stack([to_tensor(data.images[i], spec) for i in idx[s : s + 32]])
            raw, t, _ = net.parts(x)
            raws.append(raw.double())
            ts.append(t.double())
    raw_all, t_all = torch.cat(raws), torch.cat(ts)
    target = torch.from_numpy(np.asarray(y)).long()
    a0, b0 = float(net.score_scale.detach()), float(net.score_bias.detach())
    # scale = a0 * exp(u), bias = b0 + v, with a weak Gaussian prior on (u, v): a validation set
    # the net separates perfectly would otherwise drive the scale to a step function fitted to a
    # few dozen images (scale 1 -> 43 in a test); the prior keeps it within a few-fold.
    u = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    n = max(1, len(target))

    def nll_of(u_: torch.Tensor, v_: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net.compose(raw_all, t_all, a0 * torch.exp(u_), b0 + v_), target)

    def objective() -> torch.Tensor:
        prior = (u**2 / (2 * REFIT_LOG_SCALE_SD**2) + v**2 / (2 * REFIT_BIAS_SD**2)).sum() / n
        return nll_of(u, v) + prior

    opt = torch.optim.LBFGS([u, v], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    u, v = u.detach(), v.detach()
    zero = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        before = float(nll_of(zero, zero))
        after = float(nll_of(u, v))
        if not (math.isfinite(after) and after < before):
            u, v, after = zero, zero, before
        a, b = a0 * float(torch.exp(u).item()), b0 + float(v.item())
        logits = net.compose(raw_all, t_all, a0 * torch.exp(u), b0 + v).numpy()
    return ScoreRefit(a0, b0, a, b, before, after, logits)


def recalibrate_batchnorm(net: DefectNet | GlobalNet, batches: Iterable[torch.Tensor]) -> None:
    """Recompute BatchNorm running statistics as exact averages over these training batches.

    Running averages lag far behind the weights in a short CPU run, so eval-mode outputs can
    be garbage while train-mode ones are fine; a cumulative pass at the current weights fixes it.
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.train()
    with torch.no_grad():
        for x in batches:
            net(x)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    net.eval()


def _recalibration_batches(
    data: LoadedSet,
    idx: list[int],
    spec: InputSpec,
    cfg: TrainConfig,
    ok_index: int | None,
    masks_known: bool,
    max_images: int = 512,
    batch_size: int = 32,
) -> Iterator[torch.Tensor]:
    """Batches for recalibrate_batchnorm, drawn as training draws them.

    With crops the statistics must be the crops' too: the layers after each BatchNorm were
    trained on crop statistics, and whole-frame ones (more table, fewer defects) shift every
    feature; validation accuracy swung between 0.35 and 0.70 from epoch to epoch that way.
    """
    rng = np.random.default_rng(0)
    pick = rng.permutation(np.array(idx))[:max_images]
    for s in range(0, len(pick), batch_size):
        chunk = pick[s : s + batch_size]
        if len(chunk) < 2:  # BatchNorm needs more than one sample
            continue
        if cfg.crop is None:
            yield torch.stack([to_tensor(data.images[i], spec) for i in chunk])
        else:
            yield _batch(data, chunk, spec, rng, ok_index, masks_known, cfg.crop, cfg.augment)[0]


def _val_auroc(logits: np.ndarray, y: np.ndarray, ok_index: int | None) -> float | None:
    """Defect-vs-ok AUROC of this epoch's validation logits (None without an ok class)."""
    if ok_index is None:
        return None
    p_ok = torch.softmax(torch.from_numpy(logits), dim=1)[:, ok_index].numpy()
    return auroc(1.0 - p_ok, y != ok_index)


def _defect_nll(logits: np.ndarray, y: np.ndarray, ok_index: int | None) -> float | None:
    """Defect-vs-ok NLL of validation logits at their best temperature (None without ok class).

    The decision the station automates is defect or not; the full NLL also charges the net for
    mixing up defect types, which rises while the defect-vs-ok ranking still improves. The
    temperature is the one calibration will fit (over all classes), so this is the NLL of the
    p(ok) the station will be served: type mix-ups count here only through that temperature,
    which they raise (flattening p(ok)).
    """
    if ok_index is None or len(set(y.tolist())) < 2:
        return None
    if not np.isfinite(logits).all():
        return math.inf  # a diverged epoch is a stale one, as under nll; never the one kept
    t = fit_temperature(torch.from_numpy(logits), torch.from_numpy(y)).temperature
    p_ok = torch.softmax(torch.from_numpy(logits) / t, dim=1)[:, ok_index].double()
    p_ok = p_ok.clamp(1e-12, 1 - 1e-12)
    is_ok = torch.from_numpy(y == ok_index).double()
    return float(F.binary_cross_entropy(p_ok, is_ok))


def validation_figures(
    logits: np.ndarray, y: np.ndarray, ok_index: int | None
) -> dict[str, float | None]:
    """The figures an epoch is judged by (see SELECT_ON), from its validation logits as served."""
    return {
        "val_nll": _nll(logits, y),
        "val_accuracy": float((logits.argmax(1) == y).mean()),
        "val_auroc_defect": _val_auroc(logits, y, ok_index),
        "val_defect_nll": _defect_nll(logits, y, ok_index),
    }


def selection_score(figures: Mapping[str, Any], select_on: str) -> float:
    """An epoch's validation figure under the selection rule `select_on`; lower is better."""
    if select_on == "auroc":
        return -float(figures["val_auroc_defect"])
    if select_on in ("nll", "defect_nll"):
        return float(figures[f"val_{select_on}"])
    raise ModelError(f"expected a selection rule among nll, defect_nll, auroc, got {select_on!r}")


def _served_state(net: DefectNet | GlobalNet, refit: ScoreRefit | None) -> dict[str, torch.Tensor]:
    """A copy of the weights as served: with the refitted score line where there is one."""
    state = copy.deepcopy(net.state_dict())
    if refit is not None:
        state["score_scale"] = torch.tensor([refit.scale])
        state["score_bias"] = torch.tensor([refit.bias])
    return state


def _nll(logits: np.ndarray, y: np.ndarray) -> float:
    return float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))


def serving_copy(
    net: nn.Module, spec: InputSpec, temperature: float, wanted: bool
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The artifact's ONNX files and manifest section (model/serving.py), or why there are none."""
    if not wanted:
        return {}, {"file": None, "reason": "not asked for (--no-onnx)"}
    return onnx_copy(net, spec, temperature)


def train(
    data_dir: Path | str,
    out: Path | str,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    keep_epochs: Path | str | None = None,
) -> TrainResult:
    """Train on a class-per-folder tree and export a calibrated artifact to folder `out`.

    `keep_epochs`: a folder to write every epoch's judged weights to (`epoch-NN.pt`, the
    state_dict as it would be served), to compare epoch-selection rules after the fact.
    """
    cfg = config or TrainConfig()
    say: Progress = progress or (lambda _e, _d: None)
    if cfg.epochs < 1:
        raise ModelError(f"expected at least 1 epoch, got {cfg.epochs}")
    check_architecture(cfg.arch)
    if cfg.arch.startswith("patchcore_"):
        raise ModelError(
            f"{cfg.arch} is an anomaly model, built from defect-free images rather than trained: "
            "use `station model train-anomaly` (model.anomaly.fit_anomaly)"
        )
    # checked before any image is read; a list from a caller becomes the tuple the manifest needs
    cfg = replace(cfg, test_time_flips=check_flips(cfg.test_time_flips))
    if cfg.ema_decay is not None and not 0.0 < cfg.ema_decay < 1.0:
        raise ModelError(f"expected an EMA decay in (0, 1) such as 0.99, got {cfg.ema_decay}")
    if cfg.fit not in FITS:
        raise ModelError(f"expected fit to be one of {', '.join(FITS)}, got {cfg.fit!r}")
    if cfg.select_on not in SELECT_ON:
        raise ModelError(
            f"expected select_on to be one of {', '.join(SELECT_ON)}, got {cfg.select_on!r}"
        )
    if cfg.select_on not in ("auto", "nll") and cfg.ok_class is None:
        raise ModelError(
            f"selecting epochs on {cfg.select_on} needs a defect-free class; "
            "set ok_class or select on nll"
        )
    started = time.time()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        keep = Path(keep_epochs) if keep_epochs is not None else None
        return _train(Path(data_dir), Path(out), cfg, say, started, keep)
    finally:
        torch.set_num_threads(old_threads)


def _train(
    data_dir: Path,
    out: Path,
    cfg: TrainConfig,
    say: Progress,
    started: float,
    keep_epochs: Path | None = None,
) -> TrainResult:
    _seed(cfg.seed)
    flips = cfg.test_time_flips
    scan = scan_folder(data_dir, cfg.ok_class, require_ok=cfg.require_ok, group_by=cfg.group_by)
    classes = scan.classes
    ok_index = classes.index(scan.ok_class) if scan.ok_class is not None else None
    if cfg.input_size is not None:
        size = cfg.input_size
    else:
        size = choose_input_size(probe_sizes(scan.samples), cfg.long_side)
    spec = input_spec_for(cfg.arch, size, cfg.fit)
    if cfg.map_pool_k < 1:
        raise ModelError(f"expected map_pool_k >= 1, got {cfg.map_pool_k}")
    net = build(cfg.arch, len(classes), ok_index, cfg.map_pool_k)
    if not isinstance(net, DefectNet | GlobalNet):  # refused in train() already
        raise ModelError(f"{cfg.arch} is not a network that trains")
    if cfg.crop is not None:
        _check_crop_config(cfg.crop, spec, net, ok_index, classes)
    init_info = _init_from_file(net, cfg.init_weights) if cfg.init_weights else None
    data = load_samples(
        scan, spec, progress=lambda n, t: say("load", {"done": n, "total": t}), threads=cfg.threads
    )
    if len(set(data.labels)) < 2:
        raise DataError(
            f"expected readable images of at least 2 classes in {data_dir}, found "
            f"{len(data.images)} readable ({len(data.skipped)} unreadable skipped)"
        )
    blank: set[int] = set()
    if cfg.crop is not None and ok_index is not None:
        blank = _unlabellable_crops(data, ok_index)
    groups = [s.group for s in data.samples]
    tr, va = group_split(data.labels, groups, cfg.val_fraction, cfg.seed)
    if not va or not tr:
        raise DataError(
            f"too few images to hold out validation groups in {data_dir}: "
            f"{len(data.images)} readable images in {len(set(groups))} groups"
        )
    tr = [i for i in tr if i not in blank]  # validation still scores them, as served
    y_all = np.array(data.labels)
    masks_known = any(m is not None for m in data.masks)
    counts = np.bincount(y_all[tr], minlength=len(classes)).astype(np.float64)
    w = np.maximum(counts[y_all[tr]], 1) ** -float(cfg.balance)
    w /= w.sum()
    steps = max(1, math.ceil(len(tr) / cfg.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.15
    )
    rng = np.random.default_rng(cfg.seed)
    tr_arr = np.array(tr)
    ema = (
        AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
        if cfg.ema_decay is not None
        else None
    )
    best: dict[str, torch.Tensor] | None = None
    best_score, best_epoch, stale = math.inf, 0, 0
    best_refit: ScoreRefit | None = None
    history: list[dict[str, Any]] = []
    epoch = 0
    # crop training refits the score on whole validation images, which needs both kinds there
    both_kinds = ok_index is not None and 0 < int((y_all[va] == ok_index).sum()) < len(va)
    refit_scores = cfg.crop is not None and both_kinds
    rule = cfg.select_on
    if rule == "auto":
        rule = "defect_nll" if both_kinds else "nll"
    elif rule != "nll" and ok_index is None:
        # named in the config, absent from the folder: another split cannot help
        raise DataError(
            f"selecting epochs on {rule} needs the defect-free class {cfg.ok_class!r} among the "
            f"classes, found {', '.join(classes)} (name it with --ok-class, or select on nll)"
        )
    elif rule != "nll" and not both_kinds:
        n_ok = int((y_all[va] == ok_index).sum())
        raise DataError(
            f"selecting epochs on {rule} needs defect-free and defect images among the "
            f"validation groups; validation holds {n_ok} defect-free of {len(va)} "
            "(more data, another --seed, or select on nll)"
        )
    if keep_epochs is not None:  # only once the run is known to go ahead
        keep_epochs.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = rng.choice(tr_arr, size=len(tr_arr), replace=True, p=w)
        total = 0.0
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            x, y, m, known = _batch(
                data,
                idx,
                spec,
                rng if (cfg.augment or cfg.crop) else None,
                ok_index,
                masks_known,
                cfg.crop,
                cfg.augment,
            )
            loss = _loss(net, x, y, m, known, cfg.mask_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(net)
            total += float(loss.detach())
            say(
                "step",
                {
                    "epoch": epoch,
                    "epochs": cfg.epochs,
                    "step": s + 1,
                    "steps": steps,
                    "loss": float(loss.detach()),
                },
            )
        # the weights judged and kept: the moving average where there is one
        judged: DefectNet | GlobalNet = ema.module if ema is not None else net  # type: ignore[assignment]
        recalibrate_batchnorm(
            judged, _recalibration_batches(data, tr, spec, cfg, ok_index, masks_known)
        )
        refit: ScoreRefit | None = None
        if refit_scores and isinstance(judged, DefectNet):  # crop training refuses other nets
            refit = refit_score(judged, data, va, spec, y_all[va])
            z = refit.logits
        else:
            z = _logits(judged, data, va, spec)
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / steps,
                **validation_figures(z, y_all[va], ok_index),
                **({"val_nll_before_refit": refit.nll_before} if refit else {}),
            }
        )
        say("epoch", history[-1] | {"epochs": cfg.epochs})
        if keep_epochs is not None:
            torch.save(_served_state(judged, refit), keep_epochs / f"epoch-{epoch:02d}.pt")
        score = selection_score(history[-1], rule)
        if score < best_score - 1e-4:
            best_score, best_epoch, stale = score, epoch, 0
            best = _served_state(judged, refit)
            best_refit = refit
        else:
            stale += 1
            if stale >= cfg.patience:
                say("early_stop", {"epoch": epoch, "best_epoch": best_epoch})
                break
    if best is not None:
        net.load_state_dict(best)
    net.eval()
    # epochs were judged on the image alone; the served output, flips included, is calibrated
    z = _logits(net, data, va, spec, flips)
    y_val = y_all[va]
    cal = fit_temperature(torch.from_numpy(z), torch.from_numpy(y_val))
    metrics = compute_metrics(z, y_val, classes, ok_index, cal.temperature, cfg.max_error)
    thresholds = {
        "max_error": cfg.max_error,
        "auto_pass": metrics.get("auto_pass"),
        "auto_fail": metrics.get("auto_fail"),
        "label": metrics["label_coverage_at_1pct"],
        "validation_items": len(va),
    }
    explain = (
        "defect_map"
        if isinstance(net, DefectNet) and (ok_index is not None or masks_known)
        else "grad_cam"
    )
    with tempfile.TemporaryDirectory() as d:
        png = reliability_png(
            metrics["reliability_before"], metrics["reliability_after"], Path(d) / "r.png"
        ).read_bytes()
    short = {k: v for k, v in metrics.items() if not k.startswith("reliability")}
    manifest = {
        "name": cfg.name,
        "map_pool_k": cfg.map_pool_k if isinstance(net, DefectNet) else None,
        "version": cfg.version,
        "architecture": cfg.arch,
        "classes": classes,
        "ok_class": scan.ok_class,
        "input": spec.to_dict(),
        "temperature": cal.temperature,
        "calibration": cal.to_dict(),
        "thresholds": thresholds,
        "metrics": {"validation": short},
        "explain": explain,
        # written only when used, so artifacts without flips keep their manifests unchanged
        **({"test_time_flips": list(flips)} if flips else {}),
        "summary": (
            f"{cfg.arch} defect-map net at {spec.width}x{spec.height}"
            + (" letterboxed" if spec.fit == "letterbox" else "")
            + (f" (trained on {cfg.crop[0]}x{cfg.crop[1]} crops)" if cfg.crop else "")
            + (f", {describe_flips(flips)}" if flips else "")
            + f", {len(classes)} classes, "
            f"trained {epoch} epochs (best {best_epoch} on validation {rule}) on {len(tr)} images, validated on "
            f"{len(va)}; accuracy {metrics['accuracy']:.4f}"
        ),
        "training": {
            "config": {k: v for k, v in asdict(cfg).items()},
            "data": {
                "root": str(data_dir),
                "sha256": data.sha256,
                "counts": scan.counts(),
                "images": len(data.images),
                "with_masks": sum(m is not None for m in data.masks),
                "skipped": len(data.skipped),
                "skipped_files": [p for p, _ in data.skipped[:20]],
                "group_by": scan.group_by,
                "groups": len(set(groups)),
                "train_images": len(tr),
                "blank_mask_defects_left_out": len(blank),
                "validation_images": len(va),
            },
            "init_weights": init_info,
            "history": history,
            "best_epoch": best_epoch,
            "selected_on": rule,  # the rule applied, "auto" resolved
            "score_refit": best_refit.to_dict() if best_refit else None,
            "seconds": round(time.time() - started, 1),
            "torch": torch.__version__,
        },
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    onnx_files, manifest["onnx"] = serving_copy(net, spec, cal.temperature, cfg.onnx)
    final = save_artifact(out, net.state_dict(), manifest, {"reliability.png": png, **onnx_files})
    say("done", {"path": str(out), "metrics": short, "calibration": cal.to_dict()})
    return TrainResult(out, final)
