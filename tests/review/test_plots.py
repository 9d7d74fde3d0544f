"""The report's plots (matplotlib, inline SVG) and the PDF laid out from the same page."""

from __future__ import annotations

import re

from review import plots


def _texts(svg: str) -> list[str]:
    """The words drawn in an SVG (matplotlib keeps text as <text> with svg.fonttype none)."""
    return [
        re.sub(r"<[^>]+>", "", t).strip() for t in re.findall(r"<text[^>]*>.*?</text>", svg, re.S)
    ]


def test_the_trend_by_day_runs_on_dates_with_counts_and_intervals():
    days = [
        {"day": "2026-11-02", "paired": 400, "agree": 360},
        {"day": "2026-11-03", "paired": 380, "agree": 340},
        {"day": "2026-11-04", "paired": 1, "agree": 1},  # one item: no spike, a wide interval
    ]
    svg = plots.trend_by_day(days)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    words = " ".join(_texts(svg))
    assert "2026-Nov" in words and "day (UTC)" in words  # dates, not 0.00-1.00
    assert "agreement (95% CI)" in words and "paired" in words
    assert "LineCollection" in svg  # each day's 95% interval, drawn as an error bar
    assert plots.trend_by_day(days[:1]) == ""  # one day is not a trend


def test_the_hour_strip_colours_each_hour_and_greys_the_empty_ones():
    trend = [
        {"hour_utc": 8, "paired": 50, "agreement": 0.98},
        {"hour_utc": 9, "paired": 40, "agreement": 0.55},
        {"hour_utc": 10, "paired": 0, "agreement": None},
    ]
    svg = plots.hour_strip(trend)
    words = _texts(svg)
    assert "98" in words and "55" in words and "0h" in words and "24h" in words
    assert len([w for w in words if w.isdigit()]) == 2  # only hours with items carry a number
    assert plots.hour_strip([{"hour_utc": 3, "paired": 0, "agreement": None}]) == ""


def test_the_same_numbers_draw_the_same_plot():
    curve = [{"coverage": c / 10, "risk": 0.01 * c, "risk_upper95": 0.02 * c} for c in range(1, 11)]
    sel = {"target_risk": 0.05, "met": True, "coverage": 0.3, "threshold": 0.97}
    assert plots.risk_coverage(curve, sel) == plots.risk_coverage(curve, sel)
    assert "threshold 0.9700" in _texts(plots.risk_coverage(curve, sel))


def test_the_pdf_puts_summary_and_gates_on_page_one_and_numbers_its_pages(engine, fill):
    from review_records import LABELS, random_records

    from review.html import render_html
    from review.pdf import _weasyprint
    from review.query import ReportFilters
    from review.report import build_report

    fill(lambda r: random_records(r, 80, seed=4))
    html = render_html(build_report(engine, ReportFilters(), labels=LABELS))
    doc = _weasyprint().HTML(string=html).render()

    def headings(tree, out):
        for label, (page, _x, _y), children, _state in tree:
            out[label] = page
            headings(children, out)
        return out

    page_of = headings(doc.make_bookmark_tree(), {})
    assert page_of["Summary"] == 0 and page_of["Gates"] == 0
    assert page_of["Agreement matrices"] == 1 and page_of["Risk / coverage"] == 2
    assert len(doc.pages) >= 4
