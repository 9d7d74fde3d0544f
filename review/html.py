"""The report as one self-contained HTML file: inline CSS, matplotlib plots as inline SVG,
base64 thumbnails; its print style lays out the PDF (review.pdf).

No script, no external stylesheet, font or image: the file opens the same from an e-mail, a USB
stick or an air-gapped PC. Input is the dict from review.report.build_report.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from review import plots

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2327;
max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.muted{color:#666;font-size:12px} .msg{background:#fff4d6;border:1px solid #e6c15a;padding:8px 12px;
margin:6px 0;border-radius:4px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 12px;min-width:150px}.card b{font-size:20px;display:block}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ddd;
padding:3px 7px;text-align:right}th{background:#f3f4f6}td.l,th.l{text-align:left}
.heat td{width:54px;text-align:center}.pass{color:#11703a;font-weight:600}
.fail{color:#b42318;font-weight:600}.gallery{display:flex;flex-wrap:wrap;gap:8px}
.thumb{border:1px solid #ddd;border-radius:4px;padding:4px;width:150px;font-size:12px}
.thumb img{width:142px;height:auto;display:block}.noimg{width:142px;height:80px;background:#eee;
display:flex;align-items:center;justify-content:center;color:#999}
td.strip svg{display:block;width:480px;height:auto}
@page{size:A4;margin:12mm 10mm 14mm;@bottom-center{content:"Inspection Station agreement report"
" · page " counter(page) " of " counter(pages);font-size:8pt;color:#666}}
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}
h2.page{break-before:page}tr,.thumb,.card,svg{break-inside:avoid}p{orphans:3;widows:3}
.gallery{display:grid;grid-template-columns:repeat(5,minmax(0,1fr));gap:6px}
.thumb{width:auto;font-size:7.5pt}table.keep{break-inside:avoid}
.thumb img{width:100%}table{font-size:9pt}}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def _num(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(ci: Sequence[float] | None, pct: bool = True) -> str:
    if not ci:
        return ""
    f = _pct if pct else _num
    return f" [{f(ci[0])}, {f(ci[1])}]"


# --------------------------------------------------------------------------- pieces


def _heat(labels: Sequence[str], counts: Sequence[Sequence[int]], title: str) -> str:
    """A matrix as a table, each cell shaded by its share of its row (green diagonal, red off)."""
    rows = [f"<table class='heat'><caption class='muted'>{_e(title)}</caption>"]
    rows.append(
        "<tr><th class='l'>human \\ model</th>" + "".join(f"<th>{_e(lab)}</th>" for lab in labels)
    )
    rows.append("<th>total</th></tr>")
    for i, lab in enumerate(labels):
        total = sum(counts[i])
        cells = []
        for j, n in enumerate(counts[i]):
            share = n / total if total else 0.0
            hue = 140 if i == j else 0
            light = 100 - 55 * share
            style = f"background:hsl({hue},65%,{light:.0f}%)" if n else ""
            cells.append(f"<td style='{style}' title='{_pct(share)} of row'>{n}</td>")
        rows.append(f"<tr><th class='l'>{_e(lab)}</th>{''.join(cells)}<td>{total}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _pass_fail(pf: Mapping[str, int]) -> str:
    return _heat(
        ["pass", "fail"],
        [
            [pf["both_pass"], pf["human_pass_model_fail"]],
            [pf["human_fail_model_pass"], pf["both_fail"]],
        ],
        "pass / fail (rows: human, columns: model)",
    )


def _thumbnail(image_root: Path | None, rel: str | None, size: int = 142) -> str:
    if not image_root or not rel:
        return "<div class='noimg'>no image</div>"
    path = (image_root / rel).resolve()
    if not path.is_relative_to(image_root.resolve()):
        return "<div class='noimg'>image outside the store</div>"  # a path in the record, not ours
    try:
        import cv2  # local: only the HTML report needs it

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError
        scale = size / max(img.shape[:2])
        small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise OSError
    except (OSError, ImportError):
        return "<div class='noimg'>image missing</div>"
    data = base64.b64encode(buf.tobytes()).decode("ascii")
    return f"<img alt='item' src='data:image/jpeg;base64,{data}'>"


def _rate(r: Mapping[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "n/a"
    return f"{_pct(r['rate'])}{_ci(r.get('ci95'))} <span class='muted'>({r['k']}/{r['n']})</span>"


def _stages(st: Mapping[str, Any]) -> str:
    """Each version of the stages before the model (trigger, guard), and what a change did."""
    if st.get("note"):
        return f"<p class='muted'>{_e(st['note'])}</p>"
    versions = st.get("versions") or []
    if not versions:
        return "<p class='muted'>no items yet</p>"
    rows = []
    for v in versions:
        c = v.get("confidence") or {}
        conf = "n/a" if c.get("mean") is None else f"{c['mean']:.3f}{_ci(c.get('ci95'), False)}"
        rows.append(
            f"<tr><td class='l'>{_e(v['trigger'])}</td><td class='l'>{_e(v['guard'])}</td>"
            f"<td>#{v['first_item_id']}..#{v['last_item_id']}</td><td>{v['items']}</td>"
            f"<td>{_rate(v.get('guard_passed'))}</td><td>{_rate(v.get('defect_rate'))}</td>"
            f"<td>{conf}</td><td>{_rate(v.get('agreement'))}</td></tr>"
        )
    out = [
        "<p class='muted'>Items by the versions of the trigger and input guard that produced "
        "them (code version + a hash of their settings), with 95% intervals: a change before the "
        "model changes what it sees.</p>",
        "<table><tr><th class='l'>trigger</th><th class='l'>guard</th><th>items</th><th>n</th>"
        "<th>guard passed</th><th>model: defect rate</th><th>mean confidence</th>"
        f"<th>pass/fail agreement</th></tr>{''.join(rows)}</table>",
    ]
    for ch in st.get("changes") or []:
        d, a = ch.get("defect_rate_difference"), ch.get("agreement_difference")

        def diff(x: Mapping[str, Any] | None) -> str:
            if not x or x.get("difference") is None:
                return "n/a"
            ci = x.get("ci95")
            bounds = f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else ""
            return f"{x['difference'] * 100:+.1f} points{bounds}"

        stages = ", ".join(
            f"{s} {_e(ch['from'][s])} &rarr; {_e(ch['to'][s])}" for s in ch.get("stages", [])
        )
        out.append(
            f"<p>Change at item #{ch['at_item_id']} ({stages}): defect rate {diff(d)}, "
            f"agreement {diff(a)}.</p>"
        )
    return "\n".join(out)


def _chain(c: Mapping[str, Any]) -> str:
    """The tamper-evidence chains' heads: keep them; `station audit verify` walks every row."""
    if not c:
        return "<p class='muted'>no chained rows yet</p>"
    rows = "".join(
        f"<tr><td class='l'>{_e(name)}</td><td>{h['length']}</td>"
        f"<td class='l'><code>{_e(h['head'])}</code></td></tr>"
        for name, h in sorted(c.items())
    )
    return (
        "<p class='muted'>Each chain links every level change, gate evaluation, threshold set, "
        "model deployment, decision, disposition, adjudication and operator to the one before. "
        "`station audit verify` checks every row against it; a head kept from this report must "
        "still be in the chain later.</p>"
        f"<table><tr><th class='l'>chain</th><th>entries</th><th class='l'>head</th></tr>{rows}"
        "</table>"
    )


def _models(m: Mapping[str, Any]) -> str:
    """The station's lineup and the challenger (or canary) against the champion, paired."""
    if "champion" not in m:
        return f"<p class='muted'>{_e(m.get('note', 'no model has run here'))}</p>"
    lineup = [f"champion <b>{_e(m['champion'] or 'none')}</b>"]
    if m.get("challenger"):
        w = m.get("canary_weight") or 0
        lineup.append(
            f"canary <b>{_e(m['challenger'])}</b> at {_num(w, 0)}%"
            if w
            else f"challenger <b>{_e(m['challenger'])}</b> (hidden)"
        )
    if m.get("previous"):
        lineup.append(f"previous {_e(m['previous'])}")
    out = [f"<p>{' &middot; '.join(lineup)}</p>"]
    c = m.get("comparison")
    if c:
        out.append(
            "<table><tr><th class='l'>on the items both answered</th><th>value</th></tr>"
            f"<tr><td class='l'>paired items</td><td>{c['paired']}</td></tr>"
            f"<tr><td class='l'>same pass/fail call</td><td>{_rate_cell(c['agreement'])}</td></tr>"
            f"<tr><td class='l'>pairs with a known truth</td><td>{c['referenced']}</td></tr>"
            f"<tr><td class='l'>{_e(m['challenger'])} wrong</td><td>{_rate_cell(c['new_error'])}</td></tr>"
            f"<tr><td class='l'>{_e(m['champion'])} wrong</td><td>{_rate_cell(c['old_error'])}</td></tr>"
            f"<tr><td class='l'>discordant (new wrong / old wrong)</td><td>{c['b']} / {c['c']}"
            f" (exact McNemar p = {_num(c['mcnemar']['p_value'], 3)})</td></tr>"
            f"<tr><td class='l'>its errors and timeouts</td><td>{_rate_cell(c['error_rate'])}</td></tr>"
            "</table>"
        )
    step = m.get("canary_step")
    if step:
        out.append(
            f"<p>Canary step: <b>{_e(step['outcome'])}</b> &middot; {_e(step['reason'])}</p>"
        )
    return "\n".join(out)


def _rate_cell(r: Mapping[str, Any]) -> str:
    if not r or r.get("rate") is None:
        return "n/a"
    ci = r.get("ci95")
    bounds = f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""
    return f"{_pct(r['rate'])} ({r['k']}/{r['n']}){bounds}"


def _gates(g: Mapping[str, Any]) -> str:
    """The gate to the station's next level: the block `station gate check --format json`
    prints (review.report.gate_check), checks, the rule it judged and what each rate is
    measured against."""
    if "checks" not in g:
        return f"<p class='muted'>{_e(g.get('note', 'no gate'))}</p>"
    out = [
        f"<p class='muted'>{_e(g.get('basis'))}. Station: {_e(g.get('station'))}; current "
        f"level: {_e(g.get('current_level'))}; model version: "
        f"{_e(g.get('model_version') or 'none')}.</p>"
    ]
    verdict = "<span class='pass'>PASS</span>" if g["passed"] else "<span class='fail'>FAIL</span>"
    out.append(f"<h3>{_e(g['from_level'])} &rarr; {_e(g['to_level'])}: {verdict}</h3>")
    if g.get("note"):
        out.append(f"<p class='muted'>{_e(g['note'])}</p>")
    if g["checks"]:
        out.append(
            "<table><tr><th class='l'>check</th><th>value</th><th>required</th><th></th></tr>"
        )
        for c in g["checks"]:
            v = c["value"]
            vs = _num(v, 4) if isinstance(v, float) else _e("unknown" if v is None else v)
            mark = (
                "<span class='pass'>ok</span>" if c["passed"] else "<span class='fail'>fail</span>"
            )
            out.append(
                f"<tr><td class='l'>{_e(c['name'])}</td><td>{vs}</td><td>{_e(c['required'])}</td>"
                f"<td>{mark}</td></tr>"
            )
        out.append("</table>")
    n = g.get("numbers", {})
    thr = g.get("thresholds") or {}
    if thr.get("version"):
        v = thr.get("values") or {}
        out.append(
            f"<p>Rule in force {_e(thr['version'])}: auto-pass at P(ok) &ge; "
            f"{_num(v.get('auto_pass'), 4)}, auto-fail at P(defect) &ge; "
            f"{_num(v.get('auto_fail'), 4)}, never pass above {_e(v.get('never_pass_above'))}; "
            f"coverage {_pct(n.get('rule_coverage'))} of {n.get('rule_items', 0)} uniform items"
            + (
                f" after item #{n['rule_holdout_after_item']} (its fit)"
                if n.get("rule_holdout_after_item") is not None
                else ""
            )
            + ".</p>"
        )
        rows: list[tuple[str, Any, Any, Any, Any]] = [
            (
                "truth sample (adjudicated)",
                n.get("rule_escapes"),
                n.get("rule_truth_checked"),
                n.get("rule_escape_upper95"),
                n.get("rule_escape_reference"),
            )
        ]
        against: Mapping[str, Any] = n.get("rule_escape_vs_inspector") or {}
        rows.append(
            (
                "the inspector",
                against.get("k"),
                against.get("n"),
                against.get("upper95"),
                against.get("reference"),
            )
        )
        kt = n.get("rule_escape_known_truth")
        if kt:
            rows.append(("known truth", kt["k"], kt["n"], None, kt["reference"]))
        out.append(
            "<table><tr><th class='l'>escapes of its auto-passes, against</th><th>escapes</th>"
            "<th>of</th><th>upper 95%</th><th class='l'>reference</th></tr>"
        )
        for name, k, total, upper, ref in rows:
            out.append(
                f"<tr><td class='l'>{_e(name)}</td><td>{_e(k)}</td><td>{_e(total)}</td>"
                f"<td>{_pct(upper, 2)}</td><td class='l'>{_e(ref)}</td></tr>"
            )
        out.append("</table>")
        out.append(
            f"<p class='muted'>Items drawn into the truth sample still waiting for a QA lead: "
            f"{n.get('rule_truth_pending', 0)}.</p>"
        )
        misses: Mapping[str, Mapping[str, Any]] = n.get("rule_miss_by_class") or {}
        if misses:
            out.append(
                "<table><tr><th class='l'>class</th><th>miss rate</th><th>upper 95%</th>"
                "<th>missed in truth sample</th><th>failed by the model</th></tr>"
            )
            for cls, m in misses.items():
                out.append(
                    f"<tr><td class='l'>{_e(cls)}</td><td>{_pct(m.get('rate'), 2)}</td>"
                    f"<td>{_pct(m.get('upper95'), 2)}</td><td>{_e(m.get('truth_misses'))}</td>"
                    f"<td>{_e(m.get('failed_by_model'))}</td></tr>"
                )
            out.append("</table>")
            first = next(iter(misses.values()))
            out.append(f"<p class='muted'>miss rates: {_e(first.get('reference'))}</p>")
    return "".join(out)


def _summary_cards(b: Mapping[str, Any]) -> str:
    ag, ka = b["agreement"], b["kappa"]
    parts = [
        "<div class='cards'>"
        f"<div class='card'>agreement<b>{_pct(ag['rate'])}</b><span class='muted'>95%"
        f"{_ci(ag['ci95'])} (n={ag.get('n', 0)})</span></div>"
        f"<div class='card'>Cohen's kappa<b>{_num(ka['value'])}</b><span class='muted'>95%"
        f"{_ci(ka['ci95'], pct=False)} (gate); standard"
        f"{_ci(ka.get('ci95_standard'), pct=False)}</span></div>"
    ]
    for key, label in (
        ("escape_rate", "escape rate"),
        ("miss_rate", "miss rate"),
        ("false_reject_rate", "false-reject rate"),
    ):
        parts.append(_rate_card(label, b[key]))
    parts.append("</div>")
    return "".join(parts)


def _rate_card(name: str, r: Mapping[str, Any]) -> str:
    return (
        f"<div class='card'>{_e(name)}<b>{_pct(r.get('rate'), 2)}</b>"
        f"<span class='muted'>upper 95%: {_pct(r.get('upper95'), 2)} (n={r.get('n', 0)})</span></div>"
    )


# --------------------------------------------------------------------------- the page


def render_html(report: Mapping[str, Any], *, image_root: Path | None = None) -> str:
    r = report
    flt = ", ".join(f"{k}={v}" for k, v in r["filters"].items() if v not in (None, False)) or "none"
    n = r["counts"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Inspection Station - agreement report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Agreement report: inspectors and defect model</h1>",
        f"<div class='muted'>generated {_e(r['generated_at'])} UTC &middot; filters: {_e(flt)}</div>",
    ]
    for m in r.get("messages", []):
        parts.append(f"<div class='msg'>{_e(m)}</div>")
    by = r["by_basis"]
    ev, allp, aud = by["evidence_uniform"], by["all"], by["audits"]
    parts.append(
        "<h2>Summary</h2><div class='cards'>"
        f"<div class='card'>items<b>{n['items']}</b><span class='muted'>paired {n['paired']}, "
        f"evidence {n['evidence']} ({n.get('evidence_uniform', 0)} uniform, "
        f"{n.get('audited', 0)} audits)</span></div></div>"
    )
    parts.append(
        "<h3>Evidence only: the numbers the gates use</h3>"
        f"<p class='muted'>{_e(r.get('basis'))}: {n.get('evidence_uniform', 0)} items.</p>"
    )
    parts.append(_summary_cards(ev))
    parts.append(
        "<h3>All paired items (not evidence: biased where the suggestion was shown)</h3>"
        f"<p class='muted'>{_e(allp.get('basis'))}: {n['paired']} items.</p>"
    )
    parts.append(_summary_cards(allp))
    if n.get("audited"):
        ar = aud["escape_rate"]
        parts.append(
            f"<p>Audits ({n['audited']} blind checks of items the model decided; not a uniform "
            f"sample, used only for the audited-escape check): escapes {ar.get('k', 0)} of "
            f"{ar.get('n', 0)} audited model passes, upper 95% {_pct(ar.get('upper95'), 2)}.</p>"
        )

    # The gates next to the summary: what a QA lead reads first, on the first page of the PDF.
    parts.append("<h2>Gates</h2>")
    parts.append(_gates(r["gates"]))

    m = r["matrix"]
    parts.append("<h2 class='page'>Agreement matrices</h2><div class='cards'>")
    parts.append(_heat(m["labels"], m["counts"], "evidence only (rows: human, columns: model)"))
    parts.append(_pass_fail(r["pass_fail"]))
    parts.append(_heat(m["labels"], allp["matrix"]["counts"], "all paired items (not evidence)"))
    parts.append("</div>")
    mc, ab = r["mcnemar"], r["automation_bias"]
    parts.append(
        f"<p>McNemar (exact, vs adjudication, evidence only, {mc['adjudicated_items']} "
        "adjudicated): model right / "
        f"human wrong {mc['b']}, human right / model wrong {mc['c']}, p = {_num(mc['p_value'], 4)}.</p>"
        f"<p>Automation bias: agreement with the model when shown {_pct(ab['shown']['rate'])} "
        f"(n={ab['shown']['n']}) vs blind checks {_pct(ab['blind']['rate'])} (n={ab['blind']['n']}); "
        f"difference {_pct(ab['difference'])}{_ci(ab['difference_ci95'])}.</p>"
    )

    sel = r["selective_threshold"]
    parts.append(
        "<h2 class='page'>Risk / coverage</h2><p class='muted'>Over the uniform evidence items only "
        "(audits are drawn from the model's own confident decisions and would overstate "
        "coverage).</p><div class='cards'>"
    )
    parts.append(
        plots.risk_coverage(r["risk_coverage"], sel)
        or "<p class='muted'>No risk/coverage curve: no uniform evidence item with a "
        "calibrated confidence.</p>"
    )
    parts.append(
        plots.reliability(r["reliability"])
        or "<p class='muted'>No reliability diagram: no calibrated confidences.</p>"
    )
    parts.append("</div>")
    if sel.get("met"):
        parts.append(
            f"<p>Selective-risk threshold (Geifman &amp; El-Yaniv SGR, {sel['steps']} steps, "
            f"Bonferroni): confidence &ge; <b>{sel['threshold']:.4f}</b> covers "
            f"{_pct(sel['coverage'])} of uniform evidence items with escape rate {_pct(sel['risk'], 3)}, "
            f"upper bound {_pct(sel['bound'], 3)} &le; target {_pct(sel['target_risk'], 2)}.</p>"
        )
    else:
        parts.append(
            f"<p>No threshold reaches the target escape-rate bound {_pct(sel['target_risk'], 2)} "
            f"(best bound seen: {_pct(sel.get('bound'), 3)}).</p>"
        )
    parts.append(
        f"<p class='muted'>Expected calibration error: {_num(r['reliability']['ece'], 4)}</p>"
    )

    parts.append("<h2>Trend by day</h2>")
    parts.append(
        plots.trend_by_day(r["by_day"])
        or "<p class='muted'>No trend plot: fewer than two days with paired items.</p>"
    )
    parts.append(
        "<table><tr><th class='l'>day (UTC)</th><th>items</th><th>paired</th><th>agreement</th>"
        "<th>evidence</th><th>uniform evidence</th><th>model passes</th><th>escapes</th></tr>"
    )
    for d in r["by_day"]:
        agree = d["agree"] / d["paired"] if d["paired"] else None
        parts.append(
            f"<tr><td class='l'>{_e(d['day'])}</td><td>{d['items']}</td><td>{d['paired']}</td>"
            f"<td>{_pct(agree)}</td><td>{d['evidence']}</td><td>{d.get('uniform', 0)}</td>"
            f"<td>{d['model_pass']}</td>"
            f"<td>{d['escapes']}</td></tr>"
        )
    parts.append("</table>")

    parts.append("<h2>Inspectors</h2>")
    parts.append(
        "<table><tr><th class='l'>inspector</th><th>decisions</th><th>paired</th><th>evidence</th>"
        "<th>agree w/ model</th><th>agree w/ adjudication</th><th>agree w/ golden</th>"
        "<th>mean time (s)</th><th>shown vs blind</th></tr>"
    )
    for i in r["inspectors"]:
        ms = i["mean_decision_ms"]
        bias = i["automation_bias"]
        parts.append(
            f"<tr><td class='l'>{_e(i['inspector'])}</td><td>{i['decisions']}</td><td>{i['paired']}</td>"
            f"<td>{i['evidence']}</td><td>{_pct(i['agreement_with_model']['rate'])}</td>"
            f"<td>{_pct(i['agreement_with_adjudication']['rate'])} "
            f"(n={i['agreement_with_adjudication']['n']})</td>"
            f"<td>{_pct(i['agreement_with_golden']['rate'])} (n={i['agreement_with_golden']['n']})</td>"
            f"<td>{_num(None if ms is None else ms / 1000, 2)}</td>"
            f"<td>{_pct(bias['shown']['rate'])} / {_pct(bias['blind']['rate'])}</td></tr>"
        )
    parts.append("</table>")
    # A strip per inspector, read at a glance: a tired hour shows as a colour, not a number.
    parts.append(
        "<h3>Agreement with the model by hour of the day (UTC)</h3><p class='muted'>Red: 50% "
        "or less; green: 100%; grey: no paired item in that hour. The numbers are percentages."
        "</p><table>"
    )
    for i in r["inspectors"]:
        strip = plots.hour_strip(i["trend_by_hour"]) or "no paired item"
        parts.append(
            f"<tr><td class='l'>{_e(i['inspector'])}</td><td class='l strip'>{strip}</td></tr>"
        )
    parts.append("</table>")

    parts.append("<h2>Disagreements (latest)</h2><div class='gallery'>")
    if not r["disagreements"]:
        parts.append("<p class='muted'>none</p>")
    for d in r["disagreements"]:
        conf = d.get("model_confidence")
        adj = (
            f"<br>adjudicated: <b>{_e(d['adjudicated_label'])}</b>"
            if d.get("adjudicated_label")
            else ""
        )
        tag = "evidence" if d.get("evidence") else "not evidence"
        parts.append(
            f"<div class='thumb'>{_thumbnail(image_root, d.get('image_path'))}"
            f"#{d['item_id']} &middot; {_e(d['station'])} &middot; {_e(d['inspector'])}<br>"
            f"human: <b>{_e(d['human_label'])}</b> &middot; model: <b>{_e(d['model_label'])}</b> "
            f"{_pct(conf, 0) if conf is not None else ''}{adj}<br>"
            f"<span class='muted'>{_e(str(d['captured_at'])[:19].replace('T', ' '))} &middot; {tag}</span></div>"
        )
    parts.append("</div>")

    parts.append("<h2>Models</h2>")
    parts.append(_models(r.get("models") or {}))
    parts.append("<h2>Pipeline stages</h2>")
    parts.append(_stages(r.get("stages") or {}))
    parts.append("<h2>Record integrity</h2>")
    parts.append(_chain(r.get("chain") or {}))
    parts.append("<h2>Definitions</h2><table class='keep'>")
    for k, v in r.get("definitions", {}).items():
        parts.append(f"<tr><td class='l'>{_e(k)}</td><td class='l'>{_e(v)}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
