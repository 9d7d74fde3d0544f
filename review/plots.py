"""The report's plots, drawn by matplotlib as SVG text to embed in the HTML page (and so in the
PDF made from it): risk / coverage, reliability, agreement by day, agreement by hour.

Each function takes the report's own numbers (review.report) and returns an `<svg>` element, or
"" when there is nothing to draw; the caller says why in words. Matplotlib is imported on the
first plot, with the non-interactive Agg backend: a report is drawn where no display exists.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from review.stats import proportion

#: Colours shared with the page's CSS.
BLUE, ORANGE, RED, GREEN, GREY = "#1f5fbf", "#e08a00", "#b42318", "#11703a", "#9aa4b2"

_XML_HEAD = re.compile(r"^.*?(?=<svg)", re.S)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit: only files
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: selectable, searchable, small
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "inspection-station",  # the same numbers give the same file
        }
    )
    return plt


def _svg(fig: Any) -> str:
    """The figure as an inline <svg> element (no XML prologue, fixed ids), then closed."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    return _XML_HEAD.sub("", buf.getvalue(), count=1)


def risk_coverage(curve: Sequence[Mapping[str, Any]], sel: Mapping[str, Any]) -> str:
    """Escape rate among model passes against the share auto-decided, with its upper 95% bound,
    the target and the threshold the search chose."""
    pts = [p for p in curve if p.get("risk") is not None]
    if not pts:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    cov = [p["coverage"] for p in pts]
    ax.plot(cov, [p["risk"] for p in pts], color=BLUE, lw=2, label="escape rate")
    ax.plot(
        cov,
        [p["risk_upper95"] or 0.0 for p in pts],
        color=ORANGE,
        lw=2,
        ls="--",
        label="upper 95% bound",
    )
    target = sel.get("target_risk")
    if target:
        ax.axhline(float(target), color=RED, lw=1, ls=":", label=f"target {float(target):.3g}")
    if sel.get("met"):
        ax.axvline(
            float(sel["coverage"]),
            color=GREEN,
            lw=1.5,
            label=f"threshold {float(sel['threshold']):.4f}",
        )
    top = max([p["risk_upper95"] or 0.0 for p in pts] + [float(target or 0) * 1.5, 1e-3])
    ax.set_ylim(0, top * 1.05)
    ax.set_xlim(0, 1)
    ax.set_xlabel("coverage (share auto-decided)")
    ax.set_ylabel("escape rate")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)


def reliability(rel: Mapping[str, Any]) -> str:
    """Accuracy against calibrated confidence, per bin, with the diagonal of perfect calibration
    and each bin's 95% interval (a bin of 3 items is not evidence of miscalibration)."""
    bins = rel.get("bins") or []
    if not bins:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    ax.plot([0, 1], [0, 1], color=GREY, ls="--", lw=1)
    for b in bins:
        lo, hi = b["bin"]
        ax.bar(lo, b["accuracy"], width=hi - lo, align="edge", color=BLUE, alpha=0.55)
        ci = b.get("accuracy_ci95")
        if ci:
            mid = (lo + hi) / 2
            ax.plot([mid, mid], ci, color="#333333", lw=1)
        ax.plot(b["mean_confidence"], b["mean_confidence"], "o", color=ORANGE, ms=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("calibrated confidence")
    ax.set_ylabel("accuracy vs reference")
    return _svg(fig)


def trend_by_day(days: Sequence[Mapping[str, Any]]) -> str:
    """Human-model agreement per day on a date axis, each day with its exact 95% interval and,
    below, the items it rests on: a last day of one item shows as one item with a wide interval,
    not as a spike to 100%."""
    rows = [d for d in days if d["paired"]]
    if len(rows) < 2:
        return ""
    plt = _plt()
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    when = [date.fromisoformat(str(d["day"])[:10]) for d in rows]
    shares = [proportion(int(d["agree"]), int(d["paired"])) for d in rows]
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5.6, 3.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    rate = [p.rate or 0.0 for p in shares]
    lower = [r - (p.ci95[0] if p.ci95 else r) for r, p in zip(rate, shares, strict=True)]
    upper = [(p.ci95[1] if p.ci95 else r) - r for r, p in zip(rate, shares, strict=True)]
    ax.errorbar(
        when, rate, yerr=[lower, upper], fmt="o-", color=BLUE, ms=3, lw=1.5, capsize=2, elinewidth=1
    )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("agreement (95% CI)")
    counts.bar(when, [d["paired"] for d in rows], color=GREY, width=0.8)
    counts.set_ylabel("paired")
    locator = AutoDateLocator(maxticks=8)
    counts.xaxis.set_major_locator(locator)
    counts.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    counts.set_xlabel("day (UTC)")
    fig.align_ylabels()
    return _svg(fig)


def hour_strip(trend: Sequence[Mapping[str, Any]]) -> str:
    """An inspector's agreement with the model by hour of the day (UTC) as a colour strip of 24
    cells, red (50% or less) to green (100%), grey where they decided nothing paired; the
    percentage is printed in each cell."""
    by_hour = {int(t["hour_utc"]): t for t in trend if t.get("paired")}
    if not by_hour:
        return ""
    plt = _plt()
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("agree", ["#c0392b", "#e6a700", "#1f9d55"])
    fig, ax = plt.subplots(figsize=(4.8, 0.62))
    for hour in range(24):
        t = by_hour.get(hour)
        colour = GREY if t is None else cmap(max(0.0, min(1.0, (t["agreement"] - 0.5) / 0.5)))
        ax.add_patch(plt.Rectangle((hour, 0), 0.94, 1, color=colour, alpha=1 if t else 0.25))
        if t is not None:
            ax.text(
                hour + 0.47,
                0.5,
                f"{100 * t['agreement']:.0f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white",
            )
    ax.set_xlim(0, 24)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xticks([0, 6, 12, 18, 24], ["0h", "6h", "12h", "18h", "24h"], fontsize=7)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    return _svg(fig)
