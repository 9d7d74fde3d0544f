"""Champion and challenger on the same held-out verified images, paired: which one to keep.

Both models see every image of the holdout folder (`station dataset export` writes it: verified
labels only, no image of it in the training side). Per image: each model's calibrated
probabilities, in the station's class order. From them: accuracy with its exact interval, the
exact McNemar test on the images where exactly one of them is right, per-class recall (a defect
class's miss rate is 1 - recall), calibration error, and the share an auto-pass threshold could
cover at the target escape rate (the same selection-with-guaranteed-risk search the report uses).

The verdict is conservative: the challenger is favoured only when McNemar says it is right more
often (p < 0.05) and, class by class, it does not pass defective phones as defect-free more often
than the champion (a one-sided exact test on the images of the class that only one of them
passes, p < 0.05); a difference short of that is named in the verdict to watch. Otherwise the
champion stays.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binom

from model.calibrate import ece, softmax_np
from model.data import load_samples, scan_folder
from model.predictor import Predictor
from review.stats import mcnemar_exact, proportion, score_histogram, select_threshold

#: McNemar's level for "one is better".
ALPHA = 0.05


@dataclass(frozen=True)
class Scored:
    """One model's calibrated probabilities on a folder, columns in the station's class order."""

    files: list[str]
    truth: np.ndarray  # index into classes
    probs: np.ndarray  # (n, len(classes))


def score_folder(predictor: Predictor, folder: Path, classes: list[str], ok: str) -> Scored:
    """Run `predictor` over a class-per-folder tree; classes the model lacks get probability 0."""
    scan = scan_folder(folder, ok, group_by="none")
    unknown = sorted(set(scan.classes) - set(classes))
    if unknown:
        raise ValueError(f"holdout classes {unknown} are not the station's {classes}")
    loaded = load_samples(scan, predictor.spec)
    z = np.concatenate(
        [
            predictor.logits_from_prepared(loaded.images[i : i + 16])
            for i in range(0, len(loaded.images), 16)
        ]
    )
    m = predictor.manifest
    p_model = softmax_np(z, m.temperature)
    probs = np.zeros((len(loaded.images), len(classes)))
    for j, c in enumerate(m.classes):
        name = ok if c == m.ok_class else c
        if name in classes:
            probs[:, classes.index(name)] = p_model[:, j]
    truth = np.array([classes.index(scan.classes[k]) for k in loaded.labels], dtype=int)
    files = [str(s.path.relative_to(folder)) for s in loaded.samples]
    return Scored(files, truth, probs)


def _one(s: Scored, classes: list[str], ok_index: int, target: float) -> dict[str, Any]:
    pred = s.probs.argmax(axis=1)
    right = pred == s.truth
    acc = proportion(int(right.sum()), len(right))
    recall, missed = {}, {}
    for i, c in enumerate(classes):
        n = int((s.truth == i).sum())
        if n:
            recall[c] = proportion(int(((pred == i) & (s.truth == i)).sum()), n).to_dict()
            if i != ok_index:  # an escape: a defective phone called defect-free
                missed[c] = proportion(
                    int(((pred == ok_index) & (s.truth == i)).sum()), n
                ).to_dict()
    p_ok = s.probs[:, ok_index]
    defect = s.truth != ok_index
    sel = select_threshold(score_histogram(p_ok, defect), target)
    return {
        "accuracy": acc.to_dict(),
        "recall": recall,
        "missed": missed,
        "ece": ece(s.probs, s.truth),
        "auto_pass": {
            "target_escape_upper95": target,
            "threshold": sel.threshold,
            "coverage": sel.coverage if sel.met else 0.0,
            "best_escape_upper95": sel.bound,
        },
    }


def compare(
    champion: Scored, challenger: Scored, classes: list[str], ok: str, target: float
) -> dict[str, Any]:
    """The paired comparison of two models scored on the same images."""
    if champion.files != challenger.files:
        raise ValueError("the two models were not scored on the same images")
    ok_index = classes.index(ok)
    a = champion.probs.argmax(axis=1) == champion.truth
    b = challenger.probs.argmax(axis=1) == challenger.truth
    test = mcnemar_exact(int((a & ~b).sum()), int((~a & b).sum()))
    # Escapes class by class, paired: images of the class that one model passes as ok and the
    # other does not. A one-sided exact test on them vetoes a challenger that escapes more.
    pass_a = champion.probs.argmax(axis=1) == ok_index
    pass_b = challenger.probs.argmax(axis=1) == ok_index
    escapes = {}
    for i, cls in enumerate(classes):
        of = champion.truth == i
        if i != ok_index and of.any():
            only_champion = int((of & pass_a & ~pass_b).sum())
            only_challenger = int((of & pass_b & ~pass_a).sum())
            n = only_champion + only_challenger
            escapes[cls] = {
                "only_champion": only_champion,
                "only_challenger": only_challenger,
                # P(X >= only_challenger), X ~ Bin(n, 1/2): the challenger escapes more by chance
                "p_challenger_worse": float(binom.sf(only_challenger - 1, n, 0.5)) if n else 1.0,
            }
    out = {
        "images": len(a),
        "classes": classes,
        "ok": ok,
        "champion": _one(champion, classes, ok_index, target),
        "challenger": _one(challenger, classes, ok_index, target),
        "mcnemar": {
            "champion_right_challenger_wrong": test.b,
            "challenger_right_champion_wrong": test.c,
            "p_value": test.p_value,
        },
        "escapes_paired": escapes,
    }
    out["verdict"] = verdict(out)
    return out


def verdict(c: dict[str, Any]) -> dict[str, str]:
    m = c["mcnemar"]
    better = m["challenger_right_champion_wrong"] > m["champion_right_challenger_wrong"]
    if m["p_value"] < ALPHA and better:
        # A better overall score must not hide a defect class it now passes as defect-free
        # more often (an escape; calling a dent a crack still fails the phone): judged paired,
        # on the images of that class only one of the two passes.
        notes = []
        for cls, e in c["escapes_paired"].items():
            if e["p_challenger_worse"] < ALPHA:
                return {
                    "favours": "champion",
                    "why": f"the challenger is right more often but passes more {cls} as "
                    f"{c['ok']} ({e['only_challenger']} images only it passes, "
                    f"{e['only_champion']} only the champion; p = {e['p_challenger_worse']:.3g})",
                }
            if e["only_challenger"] > e["only_champion"]:
                notes.append(
                    f"watch {cls}: {e['only_challenger']} passed as {c['ok']} only by the "
                    f"challenger, {e['only_champion']} only by the champion (not significant)"
                )
        why = f"right more often on the same images (McNemar p = {m['p_value']:.3g})"
        return {"favours": "challenger", "why": "; ".join([why, *notes])}
    if m["p_value"] < ALPHA:
        return {
            "favours": "champion",
            "why": f"the champion is right more often (McNemar p = {m['p_value']:.3g})",
        }
    return {
        "favours": "champion",
        "why": f"no significant difference (McNemar p = {m['p_value']:.3g}): keep the champion",
    }


def write_comparison(
    c: dict[str, Any], out_dir: Path, names: tuple[str, str], *, stem: str = "comparison"
) -> list[Path]:
    """STEM.comparison.json and .html in `out_dir`: beside the challenger's artifact folder, not
    in it (an artifact's files are exactly those its manifest hashes)."""
    json_path = out_dir / f"{stem}.comparison.json"
    json_path.write_text(json.dumps({"models": names, **c}, indent=1), encoding="utf-8")
    html_path = out_dir / f"{stem}.comparison.html"
    html_path.write_text(_html(c, names), encoding="utf-8")
    return [json_path, html_path]


def _pct(p: dict[str, Any] | None) -> str:
    if not p or p.get("rate") is None:
        return "—"
    lo, hi = p["ci95"]
    return f"{100 * p['rate']:.1f}% <span class='ci'>[{100 * lo:.1f}, {100 * hi:.1f}]</span>"


def _html(c: dict[str, Any], names: tuple[str, str]) -> str:
    e = html.escape
    champ, chall = c["champion"], c["challenger"]
    m, v = c["mcnemar"], c["verdict"]
    rows = [
        ("accuracy (95% CI)", _pct(champ["accuracy"]), _pct(chall["accuracy"])),
        ("calibration error (ECE)", f"{champ['ece']:.4f}", f"{chall['ece']:.4f}"),
        (
            f"auto-pass coverage at escape <= {champ['auto_pass']['target_escape_upper95']:g}",
            f"{100 * champ['auto_pass']['coverage']:.1f}%",
            f"{100 * chall['auto_pass']['coverage']:.1f}%",
        ),
    ]
    for cls in c["classes"]:
        if cls in champ["recall"]:
            rows.append(
                (f"recall of {cls}", _pct(champ["recall"][cls]), _pct(chall["recall"].get(cls)))
            )
        if cls in champ["missed"]:
            rows.append(
                (
                    f"{cls} passed as {c['ok']} (escape)",
                    _pct(champ["missed"][cls]),
                    _pct(chall["missed"].get(cls)),
                )
            )
    body = "".join(f"<tr><td>{e(a)}</td><td>{b}</td><td>{d}</td></tr>" for a, b, d in rows)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Champion vs "
        "challenger</title><style>body{font-family:sans-serif;margin:24px}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:4px 8px}.ci{color:#666;font-size:12px}"
        ".v{font-size:18px;font-weight:700}</style></head><body>"
        f"<h1>Champion {e(names[0])} vs challenger {e(names[1])}</h1>"
        f"<p>{c['images']} held-out verified images, both models on each (paired).</p>"
        f"<p class='v'>Favours the {e(v['favours'])}: {e(v['why'])}</p>"
        f"<p>McNemar (exact): champion right / challenger wrong {m['champion_right_challenger_wrong']}, "
        f"challenger right / champion wrong {m['challenger_right_champion_wrong']}, "
        f"p = {m['p_value']:.4g}.</p>"
        f"<table><tr><th></th><th>champion</th><th>challenger</th></tr>{body}</table>"
        "</body></html>"
    )
