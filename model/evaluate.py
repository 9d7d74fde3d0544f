"""Metrics for a model on labelled images: accuracy, per-class precision/recall, confusion
matrix, defect-vs-ok AUROC, ECE before/after calibration, risk/coverage; JSON or HTML report."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.calibrate import (
    coverage_threshold,
    ece,
    reliability,
    reliability_png,
    risk_coverage,
    softmax_np,
    two_threshold_coverage,
)
from model.data import LoadedSet, load_samples, scan_folder
from model.errors import DataError
from model.views import describe_flips

if TYPE_CHECKING:
    from model.predictor import Predictor


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None without both classes."""
    pos = scores[positive]
    neg = scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([neg, pos]), kind="mergesort")
    allv = np.concatenate([neg, pos])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    rpos = r[len(neg) :].sum()
    return float((rpos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def compute_metrics(
    logits: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    ok_index: int | None,
    temperature: float,
    max_error: float = 0.01,
) -> dict[str, Any]:
    """Every number the report and the manifest carry, from uncalibrated logits."""
    labels = np.asarray(labels)
    k = len(classes)
    p_raw = softmax_np(logits)
    p = softmax_np(logits, temperature)
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    wrong = pred != labels
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (labels, pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp = int(cm[i, i])
        support = int(cm[i].sum())
        predicted = int(cm[:, i].sum())
        per_class[c] = {
            "precision": tp / predicted if predicted else None,
            "recall": tp / support if support else None,
            "support": support,
        }
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "classes": list(classes),
        "accuracy": float((~wrong).mean()) if len(labels) else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "ece_before": ece(p_raw, labels),
        "ece_after": ece(p, labels),
        "temperature": temperature,
        "reliability_before": reliability(p_raw, labels),
        "reliability_after": reliability(p, labels),
        "risk_coverage": risk_coverage(conf, wrong),
        "label_coverage_at_1pct": coverage_threshold(conf, wrong, max_error),
    }
    if ok_index is None:
        out.update(
            auroc_defect=None,
            defect_vs_ok="not applicable: the data has no defect-free class",
            risk_coverage_defect=None,
            auto_pass=None,
            auto_fail=None,
            station_coverage_at_1pct=None,
        )
        return out
    p_defect = 1.0 - p[:, ok_index]
    is_defect = labels != ok_index
    said_defect = p_defect >= 0.5
    bconf = np.maximum(p_defect, 1 - p_defect)
    bwrong = said_defect != is_defect
    # auto-pass: P(ok) high, error = a defect passed; auto-fail: P(defect) high, error = ok failed
    auto_pass = coverage_threshold(1 - p_defect, is_defect, max_error, above=0.5)
    auto_fail = coverage_threshold(p_defect, ~is_defect, max_error, above=0.5)
    out.update(
        auroc_defect=auroc(p_defect, is_defect),
        defect_accuracy=float((~bwrong).mean()),
        risk_coverage_defect=risk_coverage(bconf, bwrong),
        # one threshold on the confidence of either call: the strictest reading
        defect_coverage_at_1pct=coverage_threshold(bconf, bwrong, max_error),
        auto_pass=auto_pass,
        auto_fail=auto_fail,
        # a pass threshold and a fail threshold, as the station's partial automation uses them
        station_coverage_at_1pct=two_threshold_coverage(auto_pass, auto_fail, len(labels)),
    )
    return out


def evaluate(
    predictor: Predictor,
    data_dir: Path | str,
    ok_class: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Run `predictor` over a class-per-folder tree and compute the metrics."""
    m = predictor.manifest
    folder_ok = ok_class or m.ok_class
    scan = scan_folder(data_dir, folder_ok, group_by="none")
    model_classes = list(m.classes)
    mapping: dict[str, str] = {}
    for c in scan.classes:
        if c == folder_ok and m.ok_class is not None:
            mapping[c] = m.ok_class
        elif c in model_classes:
            mapping[c] = c
        elif m.architecture.startswith("patchcore_"):  # an anomaly model: any defect is one
            mapping[c] = next(k for k in model_classes if k != m.ok_class)
        else:
            raise DataError(
                f"folder class {c!r} is not one the model knows ({', '.join(model_classes)}); "
                "use --ok-class if it is the defect-free class under another name"
            )
    loaded = load_samples(scan, predictor.spec, progress=progress)
    if not loaded.images:
        raise DataError(f"no readable images in {data_dir} ({len(loaded.skipped)} unreadable)")
    logits = []
    for i in range(0, len(loaded.images), batch_size):
        logits.append(predictor.logits_from_prepared(loaded.images[i : i + batch_size]))
    z = np.concatenate(logits)
    labels = np.array(
        [model_classes.index(mapping[scan.classes[j]]) for j in loaded.labels], dtype=int
    )
    ok_index = model_classes.index(m.ok_class) if m.ok_class is not None else None
    # without defect-free items in the folder AUROC is None (reported as not computable)
    report = compute_metrics(z, labels, model_classes, ok_index, m.temperature)
    report.update(
        most_confident_mistakes=_worst(z, labels, model_classes, ok_index, m.temperature, loaded),
        model={
            "name": m.name,
            "version": m.version,
            "sha256": m.sha256,
            "test_time_flips": list(m.test_time_flips),
        },
        data={
            "root": str(Path(data_dir)),
            "counts": scan.counts(),
            "skipped": len(loaded.skipped),
            "skipped_files": [p for p, _ in loaded.skipped[:20]],
            "sha256": loaded.sha256,
        },
    )
    return report


def _worst(
    logits: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    ok_index: int | None,
    temperature: float,
    loaded: LoadedSet,
    n: int = 10,
) -> list[dict[str, Any]]:
    """The n mistakes made with the highest calibrated confidence, the first items a QA lead
    should look at (a mislabelled file, one odd part).

    With a defect-free class these are pass/fail mistakes ranked by the confidence of that call
    (a defect passed, a clean part failed): the items that block an auto-pass or auto-fail
    threshold. A mix-up between two defect types is not one. Without it, label mistakes.
    """
    p = softmax_np(logits, temperature)
    pred = p.argmax(axis=1)
    if ok_index is None:
        conf = p[np.arange(len(p)), pred]
        wrong = np.nonzero(pred != labels)[0]
    else:
        p_defect = 1.0 - p[:, ok_index]
        conf = np.maximum(p_defect, 1.0 - p_defect)
        wrong = np.nonzero((p_defect >= 0.5) != (labels != ok_index))[0]
        # the call made: the defect-free class, or the most probable defect type
        defects_only = p.copy()
        defects_only[:, ok_index] = -1.0
        pred = np.where(p_defect >= 0.5, defects_only.argmax(axis=1), ok_index)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:n]
    return [
        {
            "file": f"{loaded.samples[i].label}/{loaded.samples[i].path.name}",
            "truth": classes[int(labels[i])],
            "predicted": classes[int(pred[i])],
            "confidence": float(conf[i]),
            "p_defect": None if ok_index is None else float(1.0 - p[i, ok_index]),
        }
        for i in order
    ]


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def to_html(report: dict[str, Any]) -> str:
    classes = report["classes"]
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_fmt(v['precision'])}</td><td>{_fmt(v['recall'])}"
        f"</td><td>{v['support']}</td></tr>"
        for c, v in report["per_class"].items()
    )
    cm = "".join(
        f"<tr><th>{html.escape(c)}</th>" + "".join(f"<td>{n}</td>" for n in r) + "</tr>"
        for c, r in zip(classes, report["confusion_matrix"], strict=True)
    )
    rc = "".join(
        f"<tr><td>{r['threshold']}</td><td>{_fmt(r['coverage'])}</td><td>{r['decided']}</td>"
        f"<td>{_fmt(r['error'])}</td></tr>"
        for r in report["risk_coverage"]
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        png = reliability_png(
            report["reliability_before"], report["reliability_after"], Path(d) / "r.png"
        )
        img = base64.b64encode(png.read_bytes()).decode()
    model = report.get("model", {})
    flips = describe_flips(model.get("test_time_flips"))
    head = "".join(
        f"<tr><th>{k}</th><td>{_fmt(report.get(k))}</td></tr>"
        for k in ("n", "accuracy", "auroc_defect", "ece_before", "ece_after", "temperature")
    )
    binary = ""
    if report.get("auroc_defect") is not None:
        cov = [
            (
                "one threshold on the confidence of either call",
                report.get("defect_coverage_at_1pct"),
            ),
            ("auto-pass (P(defect-free) high)", report.get("auto_pass")),
            ("auto-fail (P(defect) high)", report.get("auto_fail")),
            (
                "auto-pass + auto-fail (the station's two thresholds)",
                report.get("station_coverage_at_1pct"),
            ),
        ]
        binary = (
            "<h2>Defect vs defect-free</h2><table><tr><th>decision</th><th>threshold</th>"
            "<th>coverage at &le; 1% error</th><th>decided</th><th>error</th></tr>"
            + "".join(
                f"<tr><td>{name}</td><td>{_fmt(c.get('threshold'))}</td>"
                f"<td>{_fmt(c.get('coverage'))}</td><td>{_fmt(c.get('decided'))}</td>"
                f"<td>{_fmt(c.get('error'))}</td></tr>"
                for name, c in cov
                if c
            )
            + f"</table><p>accuracy (defect or not) {_fmt(report.get('defect_accuracy'))}</p>"
        )
    worst = report.get("most_confident_mistakes") or []
    mistakes = (
        "<h2>Most confident mistakes</h2><table><tr><th>file</th><th>truth</th>"
        "<th>predicted</th><th>confidence</th><th>P(defect)</th></tr>"
        + "".join(
            f"<tr><td>{_fmt(w['file'])}</td><td>{_fmt(w['truth'])}</td>"
            f"<td>{_fmt(w['predicted'])}</td><td>{_fmt(w['confidence'])}</td>"
            f"<td>{_fmt(w['p_defect'])}</td></tr>"
            for w in worst
        )
        + "</table>"
        if worst
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Model evaluation</title><style>body{{font-family:sans-serif;margin:2em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px}}
</style></head><body>
<h1>Model evaluation: {html.escape(str(model.get("name", "")))} {
        html.escape(str(model.get("version", "")))
    }</h1>
<p>model sha256 {html.escape(str(model.get("sha256", "")))}{
        html.escape(f"; {flips}" if flips else "")
    }; data {html.escape(str(report.get("data", {}).get("root", "")))}</p>
<table>{head}</table>
<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>support</th></tr>
{rows}</table>
<h2>Confusion matrix (rows: truth, columns: predicted)</h2>
<table><tr><th></th>{"".join(f"<th>{html.escape(c)}</th>" for c in classes)}</tr>{cm}</table>
<h2>Risk / coverage (calibrated confidence of the predicted label)</h2>
<table><tr><th>threshold</th><th>coverage</th><th>decided</th><th>error</th></tr>{rc}</table>
{binary}
{mistakes}
<h2>Reliability diagram</h2><img src="data:image/png;base64,{img}" alt="reliability diagram">
</body></html>
"""


def write_report(report: dict[str, Any], path: Path | str) -> Path:
    """JSON for .json, HTML for .html / .htm."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(report, indent=2) + "\n")
    elif suffix in (".html", ".htm"):
        path.write_text(to_html(report))
    else:
        raise DataError(f"expected a report path ending in .json or .html, got {path.name!r}")
    return path
