"""Reports people read: one self-contained HTML page, and the same summary in Markdown.

:func:`write_report` reads a run's folder (``summary.json`` and ``forecast.nc``) and writes
``report.html`` (inline CSS and SVG: it needs no network to view) and ``report.md``.
Every name that comes from a scenario is escaped: a segment called ``<script>`` is text in
the page, and ``**bold** | <b>`` is text in the Markdown (its table keeps its columns);
control and bidi characters are shown as visible escapes (:func:`forecaster.present.console.printable`).
A folder whose files are missing, corrupt or of the wrong shape is an
:class:`~forecaster.errors.OutputError` naming the file, never a crash.
"""
from __future__ import annotations

import html
import json
import math
import re
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from forecaster.calendar import period_end
from forecaster.errors import ForecasterError, OutputError
from forecaster.history.baselines import LABELS, MONTH_BASELINES
from forecaster.present.console import AFTER_SALE, printable
from forecaster.results.files import Staged
from forecaster.scenario.yamlio import NotRegularFile, open_input

W, H, PAD = 720, 300, 56
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:960px;color:#222}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{padding:.25rem .6rem;text-align:right;border-bottom:1px solid #eee}td:first-child,th:first-child{text-align:left}
.big{display:flex;gap:2rem;flex-wrap:wrap}.big div{background:#f5f7fa;padding:.8rem 1.2rem;border-radius:6px}
.big b{display:block;font-size:1.4rem}svg text{font-size:11px;fill:#444}
"""


def esc(x) -> str:
    """Text for HTML (an element's text or an attribute's value)."""
    return html.escape(printable(x, newlines=True), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#$])")


def md(x) -> str:
    """Text for Markdown, on one line, where it never starts a line: the characters that
    Markdown (or GitHub's flavour: tables, strikethrough, math) reads as syntax in the middle
    of a line are backslash-escaped, so names render literally, never as links, HTML,
    entities, code, emphasis or extra table cells."""
    return _MD_SPECIAL.sub(r"\\\1", printable(" ".join(str(x).splitlines())))


def money(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def compact(x: float) -> str:
    """Axis labels: 2.5M, 480k, 75."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:.1f}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _axis_y(y, ticks, fmt=compact) -> str:
    return "".join(f'<line x1="{PAD}" x2="{W - 10}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
                   f'<text x="{PAD - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{esc(fmt(t))}</text>' for t in ticks)


def fan_chart(labels: list[str], q: np.ndarray, title: str) -> str:
    """Bands P10–P90 and P25–P75 and the median per period; ``q`` shape (5, periods)."""
    n = len(labels)
    x = _scale(0, max(n - 1, 1), PAD + 20, W - 50)
    lo, hi = 0.0, float(q.max()) * 1.05 or 1.0
    y = _scale(lo, hi, H - 30, 20)

    def band(a, b):
        pts = [f"{x(i):.1f},{y(q[a, i]):.1f}" for i in range(n)] + [f"{x(i):.1f},{y(q[b, i]):.1f}" for i in reversed(range(n))]
        return " ".join(pts)

    out = [f'<svg class="chart fan" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}">',
           _axis_y(y, _ticks(lo, hi)),
           f'<polygon points="{band(0, 4)}" fill="#c6dbef"/><polygon points="{band(1, 3)}" fill="#6baed6"/>',
           '<polyline fill="none" stroke="#08306b" stroke-width="2" points="'
           + " ".join(f"{x(i):.1f},{y(q[2, i]):.1f}" for i in range(n)) + '"/>']
    every = max(1, n // 12)
    out += [f'<text x="{x(i):.1f}" y="{H - 10}" text-anchor="middle">{esc(labels[i])}</text>' for i in range(0, n, every)]
    out.append("</svg>")
    return "".join(out)


def histogram(values: np.ndarray, marks: dict, title: str) -> str:
    """A histogram of ``values`` with vertical lines at ``marks`` (label -> value)."""
    lo, hi = float(values.min()), float(values.max())
    lo, hi = min([lo, *marks.values()]), max([hi, *marks.values()])
    counts, edges = np.histogram(values, bins=40, range=(lo, hi if hi > lo else lo + 1))
    x = _scale(edges[0], edges[-1], PAD, W - 10)
    y = _scale(0, counts.max() or 1, H - 30, 20)
    out = [f'<svg class="chart histogram" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}">']
    out += [f'<rect x="{x(edges[i]):.1f}" y="{y(c):.1f}" width="{max(x(edges[i + 1]) - x(edges[i]) - 1, 0.5):.1f}" '
            f'height="{H - 30 - y(c):.1f}" fill="#6baed6"/>' for i, c in enumerate(counts)]
    out += [f'<text x="{x(t):.1f}" y="{H - 10}" text-anchor="middle">{esc(compact(t))}</text>'
            for t in _ticks(edges[0], edges[-1], 6)]
    for label, v in marks.items():
        out.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="15" y2="{H - 30}" stroke="#d62728" stroke-width="2"/>'
                   f'<text x="{x(v) + 4:.1f}" y="28" fill="#d62728">{esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def bars(rows: list[tuple[str, float]], title: str, fmt=money) -> str:
    """Horizontal bars, one per (label, value)."""
    h = 22 * len(rows) + 20
    top = max([v for _, v in rows] + [1e-9])
    x = _scale(0, top, 200, W - 80)
    out = [f'<svg class="chart bars" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {h}" width="{W}" height="{h}">']
    for i, (label, v) in enumerate(rows):
        yy = 10 + 22 * i
        out.append(f'<text x="195" y="{yy + 14}" text-anchor="end">{esc(label)}</text>'
                   f'<rect x="200" y="{yy}" width="{max(x(v) - 200, 0):.1f}" height="16" fill="#6baed6"/>'
                   f'<text x="{x(v) + 4:.1f}" y="{yy + 13}">{esc(fmt(v))}</text>')
    out.append("</svg>")
    return "".join(out)


def ranges(rows: list[tuple[str, float, float, float]], title: str) -> str:
    """P10–P90 range bars with the P50 marked, one per (label, p10, p50, p90)."""
    h = 22 * len(rows) + 20
    top = max([r[3] for r in rows] + [1e-9])
    x = _scale(0, top, 200, W - 80)
    out = [f'<svg class="chart ranges" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {h}" width="{W}" height="{h}">']
    for i, (label, p10, p50, p90) in enumerate(rows):
        yy = 10 + 22 * i
        out.append(f'<text x="195" y="{yy + 14}" text-anchor="end">{esc(label)}</text>'
                   f'<rect x="{x(p10):.1f}" y="{yy + 3}" width="{max(x(p90) - x(p10), 1):.1f}" height="10" fill="#9ecae1"/>'
                   f'<rect x="{x(p50) - 1.5:.1f}" y="{yy}" width="3" height="16" fill="#08306b"/>'
                   f'<text x="{x(p90) + 4:.1f}" y="{yy + 13}">{esc(money(p50))}</text>')
    out.append("</svg>")
    return "".join(out)


def signed_bars(rows: list[tuple[str, float, float]], title: str, interval: bool = False) -> str:
    """Around a zero line, one row per (label, a, b): two bars from zero (a tornado: the
    effects of -step and +step), or with ``interval`` one bar from a to b (P10 to P90)."""
    h = 22 * len(rows) + 30
    extent = max([abs(v) for _, a, b in rows for v in (a, b)] + [1e-9])
    x = _scale(-extent, extent, 230, W - 20)
    out = [f'<svg class="chart signed" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {h}" width="{W}" height="{h}">',
           f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="5" y2="{h - 20}" stroke="#999"/>']
    for i, (label, a, b) in enumerate(rows):
        yy = 10 + 22 * i
        out.append(f'<text x="225" y="{yy + 13}" text-anchor="end">{esc(label)}</text>')
        spans = [((a, b), "#6baed6")] if interval else [((0.0, a), "#fc9272"), ((0.0, b), "#6baed6")]
        for (u, v), colour in spans:
            left, right = sorted((x(u), x(v)))
            out.append(f'<rect x="{left:.1f}" y="{yy}" width="{max(right - left, 0.5):.1f}" height="16" fill="{colour}"/>')
    out += [f'<text x="{x(t):.1f}" y="{h - 5}" text-anchor="middle">{esc(compact(t))}</text>'
            for t in _ticks(-extent, extent, 6)]
    out.append("</svg>")
    return "".join(out)


def _page(title: str, body: list[str], css: str = "") -> str:
    """A page with the report's CSS, and ``css`` after it (rules only some pages need)."""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{CSS}{css}</style></head><body>" + "".join(body) + "</body></html>")


def render_compare(summary: dict, when: str) -> str:
    """Paired differences of each variant from the base (``compare.json``)."""
    body = [f"<h1>Compared with {esc(summary['base'])}</h1>",
            f'<p class="meta">{summary["trials"]:,} trials · seed {esc(summary["seed"])} · common random numbers · '
            f"{esc(when)}</p>"]
    for metric in summary["scenarios"][summary["base"]]:
        fmt = (lambda v: "-" if v is None else f"{v:,.1f}") if metric == "won_deals" else money
        body.append(f"<h2>{esc(metric)}: variant − base, total</h2>")
        rows = [(name, d[metric]["total"]["p10"], d[metric]["total"]["p90"]) for name, d in summary["differences"].items()]
        body.append(signed_bars(rows, f"{metric} difference per trial, P10 to P90", interval=True))
        body.append(_table(["variant", "difference", "95% CI", "P10 / P50 / P90", "P(higher)", "CI if independent"],
                           [[name, fmt(t["mean"]), f"{fmt(t['mean_ci_low'])} – {fmt(t['mean_ci_high'])}",
                             f"{fmt(t['p10'])} / {fmt(t['p50'])} / {fmt(t['p90'])}", f"{t['probability_higher']:.0%}",
                             "±" + fmt(t["unpaired_ci_half_width"])]
                            for name, d in summary["differences"].items() for t in [d[metric]["total"]]]))
    return _page(f"compare {summary['base']}", body)


def render_sensitivity(summary: dict, when: str) -> str:
    """The tornado, the three moves and the variance shares (``sensitivity.json``)."""
    step = f"{summary['step']:.0%}"
    levers = {e["lever"]: e for e in summary["levers"]}

    def effect(e, k):
        return e[k]["revenue"]["mean"] if k in e else 0.0

    body = [f"<h1>Sensitivity of {esc(summary['scenario'])}</h1>",
            f'<p class="meta">each lever −{esc(step)} / +{esc(step)} · {summary["trials"]:,} trials · seed '
            f'{esc(summary["seed"])} · {esc(when)}</p>', "<h2>Effect on total revenue (tornado)</h2>",
            signed_bars([(n, effect(levers[n], "minus"), effect(levers[n], "plus")) for n in summary["ranking"]],
                        "tornado of revenue effects")]
    moves = summary["three_moves"]
    body.append("<h2>The three moves</h2>")
    body.append(_table(["move", "lever", f"revenue +{step}", "95% CI", "won deals"],
                       [[m, moves[m].get("lever"), money(moves[m]["revenue"]["mean"]),
                         f"{money(moves[m]['revenue']['mean_ci_low'])} – {money(moves[m]['revenue']['mean_ci_high'])}",
                         f"{moves[m]['won_deals']['mean']:+,.1f}"]
                        for m in ("expansion", "stretching", "key_level") if "revenue" in moves[m]]))
    if summary["variance_shares"]:
        body.append("<h2>Share of the variance of total revenue</h2>")
        body.append(bars([(v["input"], v["share"]) for v in summary["variance_shares"]], "variance shares",
                         fmt=lambda v: f"{v:.1%}"))
    return _page(f"sensitivity {summary['scenario']}", body)


def render_backtest(result: dict, when: str) -> str:
    """Each cutoff's monthly intervals against what happened, every baseline's scores,
    forecaster's paired differences from them and the PIT histogram (``backtest.json``)."""

    body = [f"<h1>Backtest: {len(result['cutoffs'])} cutoffs</h1>", f'<p class="meta">{esc(when)}</p>']

    def share(x):
        return "–" if x is None else f"{x:.0%}"

    for metric, avg in result["average"].items():
        fmt = (lambda v: "-" if v is None else f"{v:,.1f}") if metric == "won_deals" else money
        unit = "won deals" if metric == "won_deals" else "revenue"
        naive = avg["seasonal_naive"]
        body.append(f"<h2>{esc(metric)}</h2>")
        rows = []
        for method in ("forecaster", *MONTH_BASELINES):
            m = avg.get(method)
            if m is None:  # a backtest.json written before this baseline existed
                continue
            rows.append([LABELS[method], *(share(m.get(f"coverage_{k}_month")) for k in ("p25_p75", "p10_p90", "p5_p95")),
                         share(m.get("coverage_p10_p90_total")), fmt(m["crps_month"]),
                         fmt(m["crps_month_naive_has_data"]), fmt(m["crps_total"])])
        rows.append([LABELS["weighted_pipeline"], "–", "–", "–", "–", "–", "–", fmt(avg["weighted_pipeline"]["crps_total"])])
        body.append(_table(["", "50% coverage (months)", "80% (P10–P90)", "90% (P5–P95)", "80%, totals", "CRPS month",
                            f"CRPS month, where the seasonal naive has data ({naive['months_naive_has_data']})",
                            "CRPS total"], rows))
        if avg.get("paired"):
            body.append(f"<h3>Forecaster − baseline, CRPS ({esc(unit)}; negative: forecaster better)</h3>")
            body.append(_table(["baseline", "scored on", "difference", "90% interval (bootstrap over cutoffs)", "cutoffs"],
                               [[LABELS[base], "months" if "crps_month_diff" in p else "horizon totals",
                                 fmt(p.get("crps_month_diff", p.get("crps_total_diff"))),
                                 f"{fmt(p['ci90'][0])} to {fmt(p['ci90'][1])}", p["cutoffs"]]
                                for base, p in avg["paired"].items()]))
        intervals = [(f"{c['cutoff']} → {m[:7]}", s["p10"], s["p50"], s["p90"], s["actual"])
                     for c in result["cutoffs"]
                     for m, s in zip(c["months"], c["metrics"][metric]["forecaster"]["by_month"])]
        body.append(interval_chart(intervals, f"{metric}: P10–P90 per forecast month, with the actual",
                                   axis=f"{unit} in the month"))
        pit = avg["forecaster"].get("pit_histogram")
        if pit:
            body.append(f"<h3>PIT histogram of forecaster's months ({esc(unit)})</h3>")
            body.append(pit_chart(pit, f"{metric}: PIT of each month's actual in forecaster's samples"))
            body.append('<p class="meta">PIT: where the actual fell in the forecast (0: below every trial, 1: above '
                        "all). A calibrated forecast spreads the months evenly; a hump in the middle means intervals "
                        "too wide, piles at the ends too narrow, a slope a bias.</p>")
    return _page("backtest", body)


def _legend(items: list[tuple[str, str]], x0: float, y0: float) -> str:
    """A legend row at (x0, y0): per item, an SVG swatch (drawn with its top-left corner at
    the origin, 16 × 10 px) and its label."""
    out, xx = [], x0
    for swatch, label in items:
        out.append(f'<g transform="translate({xx:.1f},{y0 - 9:.1f})">{swatch}</g>'
                   f'<text x="{xx + 20:.1f}" y="{y0:.1f}">{esc(label)}</text>')
        xx += 34 + 6.2 * len(label)
    return '<g class="legend">' + "".join(out) + "</g>"


def interval_chart(rows: list[tuple[str, float, float, float, float]], title: str, axis: str = "") -> str:
    """One row per forecast (label, p10, p50, p90, actual): the P10–P90 bar, the P50 tick
    and the actual as a red dot, on an axis titled ``axis`` (the metric and its unit)."""
    h = 22 * len(rows) + 75
    top = max([max(r[3], r[4]) for r in rows] + [1e-9])
    x = _scale(0, top * 1.05, 200, W - 20)
    out = [f'<svg class="chart intervals" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {h}" width="{W}" height="{h}">',
           _legend([('<rect y="2" width="16" height="8" fill="#9ecae1"/>', "P10–P90"),
                    ('<rect x="7" width="2" height="12" fill="#08306b"/>', "P50"),
                    ('<circle cx="8" cy="6" r="4" fill="#d62728"/>', "actual")], 200, 14)]
    for i, (label, p10, p50, p90, actual) in enumerate(rows):
        yy = 30 + 22 * i
        out.append(f'<text x="195" y="{yy + 13}" text-anchor="end">{esc(label)}</text>'
                   f'<rect x="{x(p10):.1f}" y="{yy + 3}" width="{max(x(p90) - x(p10), 1):.1f}" height="10" fill="#9ecae1"/>'
                   f'<rect x="{x(p50) - 1:.1f}" y="{yy}" width="2" height="16" fill="#08306b"/>'
                   f'<circle cx="{x(actual):.1f}" cy="{yy + 8}" r="4" fill="#d62728"/>')
    out += [f'<text x="{x(t):.1f}" y="{h - 28}" text-anchor="middle">{esc(compact(t))}</text>'
            for t in _ticks(0, top * 1.05, 6)]
    out.append(f'<text class="axis-title" x="{(200 + W - 20) / 2:.1f}" y="{h - 8}" text-anchor="middle">{esc(axis)}</text>'
               f'<text class="axis-title" x="195" y="{h - 8}" text-anchor="end">cutoff → month</text>')
    out.append("</svg>")
    return "".join(out)


def pit_chart(counts: list[int], title: str) -> str:
    """A PIT histogram: ``counts`` of months per equal bin of [0, 1] (shape (bins,)), a
    dashed line at the count a calibrated forecast expects in every bin (months / bins),
    the axes titled (x: PIT, unitless 0–1; y: months) and a legend."""
    bins, total = len(counts), sum(counts)
    expect = total / bins if bins else 0.0
    h, bottom, left, right = H + 30, H - 20, PAD, W - 10
    x = _scale(0.0, 1.0, left, right)
    peak = max([*counts, expect, 1]) * 1.15
    y = _scale(0.0, peak, bottom, 40)
    ticks = [t for t in _ticks(0.0, peak, 5) if float(t).is_integer()]
    out = [f'<svg class="chart pit" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {h}" width="{W}" height="{h}">',
           "".join(f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.0f}</text>' for t in ticks)]
    for i, c in enumerate(counts):
        x0, x1 = x(i / bins), x((i + 1) / bins)
        out.append(f'<rect x="{x0 + 1:.1f}" y="{y(c):.1f}" width="{max(x1 - x0 - 2, 0.5):.1f}" '
                   f'height="{bottom - y(c):.1f}" fill="#6baed6"><title>{i / bins:.1f}–{(i + 1) / bins:.1f}: '
                   f'{c} month{"s" * (c != 1)}</title></rect>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{y(expect):.1f}" y2="{y(expect):.1f}" stroke="#d62728" '
               f'stroke-width="2" stroke-dasharray="6 4"/>'
               f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    out += [f'<text x="{x(k / 5):.1f}" y="{bottom + 16}" text-anchor="middle">{k / 5:.1f}</text>' for k in range(6)]
    out.append(f'<text class="axis-title" x="{(left + right) / 2:.1f}" y="{h - 12}" text-anchor="middle">'
               "PIT of the actual in the forecast</text>"
               f'<text class="axis-title" transform="rotate(-90)" x="{-(bottom + 40) / 2:.1f}" y="14" '
               'text-anchor="middle">months</text>')
    out.append(_legend([('<rect y="1" width="16" height="10" fill="#6baed6"/>', "forecaster's months per PIT bin"),
                        ('<line x1="0" x2="16" y1="5" y2="5" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/>',
                         f"uniform: what a calibrated forecast expects ({expect:.1f} a bin)")], left + 10, 20))
    out.append("</svg>")
    return "".join(out)


# --- after the sale (v2 A.3) -------------------------------------------------------------------

_NAMES = {"recognised_revenue": "recognised revenue", "renewal_bookings": "renewals", "repeat_revenue": "repeat revenue",
          "stage_revenue": "stage revenue", "cancellations": "cancellations", "total_bookings": "total bookings",
          "new_customers": "new customers", "churned_customers": "churned customers", "repeat_customers": "repeat customers (2nd purchase)",
          "regular_customers": "regular customers", "active_customers": "active customers", "mrr": "MRR"}
"""How the report names the after-sale metrics; a metric it does not know is named by its key."""
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def period_name(label: str, report_by: str) -> str:
    """A period named by its first day (``2027-01-01``) as a reader says it: ``Jan 2027``
    (month), ``Q1 2027`` (quarter), ``4 Jan 2027`` (week, day). A label that is not a date
    stays as it is."""
    try:
        d = date.fromisoformat(label)
    except (TypeError, ValueError):
        return label
    if report_by == "month":
        return f"{_MONTHS[d.month - 1]} {d.year}"
    if report_by == "quarter":
        return f"Q{(d.month - 1) // 3 + 1} {d.year}"
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def period_end_name(label: str, report_by: str, end: str) -> str:
    """The last day within the horizon (ending on ``end``) of the period named ``label``:
    where a stock is measured, e.g. ``2027-01-31``. A label that is not a date stays as it is."""
    try:
        first, last = date.fromisoformat(label), date.fromisoformat(end)
        return min(period_end(first, report_by), last).isoformat()
    except (TypeError, ValueError):
        return label


def _quantiles(metric: dict, keys=("p10", "p50", "p90")) -> np.ndarray:
    """The per-period statistics ``keys`` of a metric, shape (len(keys), periods); a missing
    (null) statistic is NaN and is not drawn."""
    return np.array([[np.nan if p.get(k) is None else float(p[k]) for p in metric["by_period"]] for k in keys],
                    dtype=float).reshape(len(keys), -1)


def band_chart(labels: list[str], series: list[tuple[str, str, np.ndarray]], title: str, y_axis: str,
               x_axis: str, css: str, fmt=compact, value_fmt=money, markers: bool = False) -> str:
    """Per period, each series' P10–P90 band (shaded) and P50 line, on a y axis from 0 (or the
    lowest P10 below it) titled ``y_axis`` and an x axis of period names titled ``x_axis``, with
    a legend. ``series``: (label, colour, q) with q of shape (3, periods): P10, P50, P90.
    ``fmt`` writes the axis's ticks, ``value_fmt`` the values in a dot's tooltip. ``markers``
    puts a dot on each P50 (a stock, measured at each period's end)."""
    n = len(labels)
    top, legend_h, bottom, left, right = 40, 22, H - 10, PAD + 14, W - 20
    h = H + 40
    x = _scale(0, max(n - 1, 1), left + 10, right - 10) if n > 1 else (lambda i: (left + right) / 2)
    values = np.concatenate([q[np.isfinite(q)] for _, _, q in series] + [np.zeros(1)])
    lo, hi = min(0.0, float(values.min())), float(values.max())
    lo, hi = (lo * 1.05, hi * 1.05) if hi > lo else (lo, lo + 1.0)
    y = _scale(lo, hi, bottom, top + legend_h)
    out = [f'<svg class="chart {esc(css)}" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {h}" '
           f'width="{W}" height="{h}">', f"<title>{esc(title)}</title>"]
    out += [f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{esc(fmt(t))}</text>' for t in _ticks(lo, hi)]
    if lo < 0:
        out.append(f'<line x1="{left}" x2="{right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999"/>')
    for label, colour, q in series:
        ok = [i for i in range(n) if np.isfinite(q[:, i]).all()]
        if len(ok) > 1:
            pts = [f"{x(i):.1f},{y(q[2, i]):.1f}" for i in ok] + [f"{x(i):.1f},{y(q[0, i]):.1f}" for i in reversed(ok)]
            out.append(f'<polygon class="band" points="{" ".join(pts)}" fill="{colour}" fill-opacity="0.18" '
                       f'stroke="{colour}" stroke-opacity="0.35" stroke-width="0.5"><title>{esc(label)}: P10–P90'
                       "</title></polygon>")
        elif ok:  # one period: the band is a bar
            i = ok[0]
            out.append(f'<rect class="band" x="{x(i) - 8:.1f}" y="{y(q[2, i]):.1f}" width="16" '
                       f'height="{max(y(q[0, i]) - y(q[2, i]), 0.5):.1f}" fill="{colour}" fill-opacity="0.18"/>')
        if len(ok) > 1:
            out.append(f'<polyline class="median" fill="none" stroke="{colour}" stroke-width="2" points="'
                       + " ".join(f"{x(i):.1f},{y(q[1, i]):.1f}" for i in ok) + '"/>')
        if markers or len(ok) == 1:
            out += [f'<circle cx="{x(i):.1f}" cy="{y(q[1, i]):.1f}" r="3" fill="{colour}"><title>{esc(labels[i])}: '
                    f"P10 {esc(value_fmt(q[0, i]))}, P50 {esc(value_fmt(q[1, i]))}, P90 {esc(value_fmt(q[2, i]))}"
                    "</title></circle>"
                    for i in ok]
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    widest = max([len(lab) for lab in labels] + [1])
    every = max(1, math.ceil(n * (6.2 * widest + 14) / (right - left)))
    out += [f'<text x="{x(i):.1f}" y="{bottom + 16}" text-anchor="middle">{esc(labels[i])}</text>'
            for i in range(0, n, every)]
    out.append(f'<text class="axis-title" x="{(left + right) / 2:.1f}" y="{h - 6}" text-anchor="middle">'
               f"{esc(x_axis)}</text>"
               f'<text class="axis-title" transform="rotate(-90)" x="{-(top + legend_h + bottom) / 2:.1f}" y="13" '
               f'text-anchor="middle">{esc(y_axis)}</text>')
    out.append(_legend([(f'<rect y="0" width="16" height="10" fill="{colour}" fill-opacity="0.18"/>'
                         f'<line x1="0" x2="16" y1="5" y2="5" stroke="{colour}" stroke-width="2"/>', label)
                        for label, colour, _ in series], left, 18))
    out.append(f'<text x="{right}" y="{top + 4}" text-anchor="end" fill="#666">lines: P50 · bands: P10–P90</text>')
    out.append("</svg>")
    return "".join(out)


def _unit(name: str, currency: str) -> str:
    return "customers" if name.endswith("_customers") else currency


def _whole_or_tenths(v: float) -> str:
    """A count on an axis or in a tooltip: 150, 0.2, 151.9."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _count1(v) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _fmt_of(name: str):
    return _count1 if name.endswith("_customers") else money


def _totals(summary: dict) -> dict[str, list[list[str]]]:
    """The after-sale metrics' totals by kind: "flow" (summed over the horizon) and "stock"
    (the level at the end of the horizon), each a list of table rows."""
    from forecaster.results.layout import AFTER_SALE_VARIABLES

    m = summary["metrics"]
    cur = summary["horizon"].get("currency") or "currency"
    out: dict[str, list[list[str]]] = {"flow": [], "stock": []}
    for name, (kind, _, _) in AFTER_SALE_VARIABLES.items():
        if name in m:
            t, fmt = m[name]["total"], _fmt_of(name)
            out[kind].append([_NAMES.get(name, name), _unit(name, cur), fmt(t["mean"]),
                              f"{fmt(t['mean_ci_low'])} – {fmt(t['mean_ci_high'])}", fmt(t["p10"]), fmt(t["p50"]),
                              fmt(t["p90"])])
    return out


def _totals_titles(h: dict) -> dict[str, str]:
    return {"flow": f"Flows: summed over the horizon, {h['start']} to {h['end']}",
            "stock": f"Stocks: levels at the end of the horizon, {h['end']} (never summed over periods)"}


AFTER_SALE_CSS = "table.after-sale td{white-space:nowrap}"
"""The after-sale tables' cells keep their numbers and ranges on one line."""
_TOTALS_HEAD = ["metric", "unit", "mean", "95% CI of mean", "P10", "P50", "P90"]
_BOOKINGS = (("recognised_revenue", "recognised revenue", "#d95f02"),
             ("revenue", "new-deal bookings (revenue)", "#7570b3"), ("total_bookings", "total bookings", "#1b9e77"))


def after_sale_html(summary: dict) -> list[str]:
    """The report's section on the after-sale outputs: recognised revenue against bookings
    per period (P10–P90 bands, P50 lines), active customers at each period's end, the
    tables of both, and every after-sale metric's total (flows summed, stocks at the end)."""
    m, h = summary["metrics"], summary["horizon"]
    per, cur = h["report_by"], h.get("currency") or ""
    unit = cur or "currency"
    labels = [p["period"] for p in m["revenue"]["by_period"]]
    names = [period_name(label, per) for label in labels]
    stage = " + stage revenue" if "stage_revenue" in m else ""
    parts = ["<h2>After the sale</h2>",
             '<p class="meta">Bookings are booked when they are won, renewed, bought again or cancelled; recognised '
             "revenue is earned over the time a booking pays for (a subscription's term, a ratable deal's months). "
             f"Total bookings = new-deal bookings (revenue) + renewals + repeat revenue{stage} − cancellations.</p>"]
    series = [(label, colour, _quantiles(m[name])) for name, label, colour in _BOOKINGS if name in m]
    if series:
        parts.append(f"<h3>Recognised revenue against bookings per {esc(per)} {esc(cur)}</h3>")
        parts.append(band_chart(names, series, f"recognised revenue, new-deal bookings and total bookings per {per}: "
                                "P10–P90 bands, P50 lines", f"{unit} per {per}", per, "after-sale bookings"))
        money_rows = []
        for i, name in enumerate([*names, "total"]):
            row = [name]
            for key, _, _ in _BOOKINGS:
                if key in m:
                    s = m[key]["by_period"][i] if i < len(names) else m[key]["total"]
                    row += [money(s["mean"]), f"{money(s['p10'])} – {money(s['p90'])}"]
            money_rows.append(row)
        head = [per] + [c for key, label, _ in _BOOKINGS if key in m for c in (f"{label}, mean", "P10 – P90")]
        parts.append(_table(head, money_rows, "after-sale"))
    if "active_customers" in m:
        parts.append(f"<h3>Active customers at the end of each {esc(per)}</h3>")
        parts.append(band_chart(names, [("active customers", "#08519c", _quantiles(m["active_customers"]))],
                                f"active customers at the end of each {per}: P10–P90 band, P50 line",
                                "customers", f"at the end of each {per}", "after-sale customers",
                                fmt=_whole_or_tenths, value_fmt=_whole_or_tenths, markers=True))
        rows = []
        for i, label in enumerate(labels):
            a = m["active_customers"]["by_period"][i]
            row = [period_end_name(label, per, h["end"]), *(_count1(a[k]) for k in ("mean", "p10", "p50", "p90"))]
            for key in ("mrr", "new_customers", "churned_customers"):
                if key in m:
                    row.append(_fmt_of(key)(m[key]["by_period"][i]["mean"]))
            rows.append(row)
        head = [f"{per} end", "active customers, mean", "P10", "P50", "P90"]
        head += [h_ for key, h_ in (("mrr", f"MRR {unit}, mean"), ("new_customers", f"new in the {per}, mean"),
                                    ("churned_customers", f"churned in the {per}, mean")) if key in m]
        parts.append(_table(head, rows, "after-sale"))
    parts.append("<h3>After the sale: totals</h3>")
    titles = _totals_titles(h)
    for kind, rows in _totals(summary).items():
        if rows:
            parts.append(f'<p class="meta">{esc(titles[kind])}</p>')
            parts.append(_table(_TOTALS_HEAD, rows, "after-sale"))
    if summary.get("clv"):
        parts.append(f"<h3>Customer lifetime value {esc(cur)}</h3>")
        parts.append(f'<p class="meta">{esc(CLV_MEANING)}</p>')
        parts.append(_table(["segment", "mean", "P10", "P50", "P90"], _clv_rows(summary), "after-sale"))
    return parts


CLV_MEANING = ("One customer's expected discounted net bookings from its win; the spread across trials is the "
               "uncertainty of the after-sale rates, not one customer's luck.")


def _clv_rows(summary: dict) -> list[list[str]]:
    return [[seg, *(money(st[k]) for k in ("mean", "p10", "p50", "p90"))] for seg, st in summary["clv"].items()]


def after_sale_markdown(summary: dict) -> list[str]:
    """The after-sale section of report.md: per period, recognised revenue, total bookings,
    active customers and MRR at the period's end; then every after-sale metric's total."""
    m, h = summary["metrics"], summary["horizon"]
    per = h["report_by"]
    unit = h.get("currency") or "currency"
    stocks = f"; active customers and MRR at the {md(per)}'s end" if "active_customers" in m else ""
    lines = ["", "## After the sale", "", f"Per {md(per)}: money in {md(unit)}, mean (P10 – P90){stocks}.", ""]
    cols = [(key, label) for key, label in (("recognised_revenue", "recognised revenue"),
                                            ("total_bookings", "total bookings"),
                                            ("active_customers", f"active customers at {per} end"),
                                            ("mrr", f"MRR at {per} end")) if key in m]
    if cols:
        lines += ["| " + " | ".join([md(per), *(md(label) for _, label in cols)]) + " |",
                  "|---|" + "---:|" * len(cols)]
        for i, p in enumerate(m[cols[0][0]]["by_period"]):
            cells = []
            for key, _ in cols:
                s, fmt = m[key]["by_period"][i], _fmt_of(key)
                cells.append(f"{fmt(s['mean'])} ({fmt(s['p10'])} – {fmt(s['p90'])})")
            lines.append(f"| {md(period_name(p['period'], per))} | " + " | ".join(cells) + " |")
        lines.append("")
    titles = _totals_titles(h)
    for kind, rows in _totals(summary).items():
        if rows:
            lines += [f"Totals. {md(titles[kind])}:", "", "| " + " | ".join(_TOTALS_HEAD) + " |",
                      "|---|---|" + "---:|" * (len(_TOTALS_HEAD) - 2)]
            lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
            lines.append("")
    if summary.get("clv"):
        lines += [f"Customer lifetime value ({md(unit)}). {md(CLV_MEANING)}", "",
                  "| segment | mean | P10 | P50 | P90 |", "|---|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in _clv_rows(summary)]
        lines.append("")
    lines.pop()
    return lines


def _table(head: list[str], rows: list[list], css: str = "") -> str:
    """``css``: the table's class (none by default)."""
    return ((f'<table class="{esc(css)}">' if css else "<table>")
            + "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def _read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``, or an OutputError naming the file and what is wrong.

    Only a regular file is read: a FIFO, device or socket is refused without waiting on it
    (:func:`forecaster.scenario.yamlio.open_input` checks the type before and after a non-blocking
    open)."""

    try:
        with open_input(path) as f:
            raw = f.read()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{path}: does not exist; expected {what}") from None
    except NotRegularFile as exc:
        raise OutputError(f"{path}: is {exc.kind}, not a regular file; expected {what}") from None
    except IsADirectoryError:
        raise OutputError(f"{path}: is a folder; expected {what}") from None
    except OSError as exc:
        raise OutputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise OutputError(f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start}); expected {what}") from None
    except ValueError as exc:
        raise OutputError(f"{path}: is not valid JSON ({exc}); expected {what}") from None
    except RecursionError:
        raise OutputError(f"{path}: is nested too deeply to read; expected {what}") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path}: holds a JSON {type(data).__name__}, not an object; expected {what}")
    return data


# The shape of summary.json that the reports read. A dict is an object with those keys (a
# key ending in "?" may be missing; "*" stands for every key, e.g. each segment's name); a
# one-item list is a list of such items; a tuple lists the types allowed.
_NUM, _OPT_NUM, _TEXT = ("number",), ("number", None), (str,)
_STATS = {k: _OPT_NUM for k in ("mean", "p10", "p50", "p90", "mean_ci_low", "mean_ci_high")}
_METRIC = {"total": _STATS, "by_period": [{"period": _TEXT, **_STATS}]}
_SUMMARY = {
    "scenario": (str, int, float), "seed": (int, str), "trials": (int,), "description?": (str, None),
    "forecaster_version?": (str, None), "scenario_sha256?": (str,),
    "metrics": {"revenue": _METRIC, "won_deals?": _METRIC, "commission?": _METRIC},
    "horizon": {"start": _TEXT, "end": _TEXT, "report_by": _TEXT, "currency?": (str, None)},
    "targets?": {"*": {"threshold": _NUM, "probability": _NUM}},
    "segments": {"*": {"revenue": {"total": _STATS}, "won_deals": {"total": _STATS}}},
    "funnel?": {"*": {"stages": [{"stage": _TEXT, "entering": _NUM}], "won_eventually": _NUM}},
    "reps?": {"*": {"quota": _OPT_NUM, "commission?": {"total": _STATS},
                    "quota_attainment?": [{"probability": _NUM}]}},
}


def _check(value, spec, where: str, file: Path) -> None:
    """Raise an OutputError naming ``file`` and the key path where ``value`` breaks ``spec``."""
    def wrong(expected):
        found = "null" if value is None else type(value).__name__
        raise OutputError(f"{file}: {printable(where) or 'the document'} must be {expected}; found {found}. Is it a "
                          "file written by forecaster (and not edited since)?")

    if isinstance(spec, dict):
        if not isinstance(value, dict):
            wrong("an object")
        for key, sub in spec.items():
            if key == "*":
                for k, v in value.items():
                    _check(v, sub, f"{where}.{k}" if where else k, file)
                continue
            name = key.rstrip("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                raise OutputError(f"{file}: {printable(where + '.' if where else '')}{name} is missing. Is it a file "
                                  "written by forecaster (and not edited since)?")
            _check(value[name], sub, f"{where}.{name}" if where else name, file)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            wrong("a list")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]", file)
    else:
        ok = any((t is None and value is None)
                 or (t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool)
                     and math.isfinite(value))
                 or (isinstance(t, type) and isinstance(value, t) and not isinstance(value, bool))
                 for t in spec)
        if not ok:
            names = {"number": "a finite number", None: "null", str: "text", int: "an integer", float: "a number"}
            wrong(" or ".join(dict.fromkeys(names[t] for t in spec)))


def _read_run(folder: Path) -> tuple[dict, dict]:
    what = "the summary.json that `forecaster run` writes"
    if not (folder / "summary.json").exists():
        raise OutputError(f"{folder}: no summary.json; expected the --out folder of `forecaster run`")
    summary = _read_json(folder / "summary.json", what)
    _check(summary, _SUMMARY, "", folder / "summary.json")
    if any(name in summary["metrics"] for name in AFTER_SALE):
        from forecaster.results.layout import AFTER_SALE_VARIABLES  # here: a run without customers never loads it

        _check(summary["metrics"], {f"{name}?": _METRIC for name in AFTER_SALE_VARIABLES}, "metrics",
               folder / "summary.json")
    if "clv" in summary:
        _check(summary["clv"], {"*": _STATS}, "clv", folder / "summary.json")
    import h5netcdf

    nc = folder / "forecast.nc"
    if not nc.exists():
        raise OutputError(f"{nc}: does not exist; the report needs the forecast.nc that `forecaster run` writes beside "
                          "summary.json")
    if not nc.is_file():
        raise OutputError(f"{nc}: is not a file; the report needs the forecast.nc that `forecaster run` writes")
    arrays = {}
    try:
        with h5netcdf.File(nc, "r") as f:
            for name in ("revenue", "commission"):
                if name in f.variables:
                    arrays[name] = np.asarray(f.variables[name][:], dtype=float)
    except Exception as exc:  # whatever a corrupt or foreign file makes h5py raise
        detail = (str(exc).splitlines() or [""])[0]
        raise OutputError(f"{nc}: cannot be read as a forecast ({type(exc).__name__}: {detail})") from None
    periods = len(summary["metrics"]["revenue"]["by_period"])
    revenue = arrays.get("revenue")
    if revenue is None:
        raise OutputError(f"{nc}: has no variable `revenue`; expected the forecast.nc that `forecaster run` writes")
    if revenue.ndim != 2 or revenue.shape[0] < 1 or revenue.shape[1] != periods:
        raise OutputError(f"{nc}: `revenue` must have the dimensions (trial, period) with at least one trial and the "
                          f"{periods} periods of summary.json; found the shape {revenue.shape}")
    if not np.isfinite(revenue).all():
        raise OutputError(f"{nc}: `revenue` holds values that are not finite numbers (NaN or infinite)")
    return summary, arrays


def render_html(summary: dict, arrays: dict, when: str) -> str:
    """The report page for a run's summary and per-trial arrays."""
    m, h = summary["metrics"], summary["horizon"]
    cur = h.get("currency") or ""
    rev = m["revenue"]["total"]
    labels = [p["period"] for p in m["revenue"]["by_period"]]
    per_trial = arrays["revenue"]
    q = np.percentile(per_trial, [10, 25, 50, 75, 90], axis=0)
    totals = per_trial.sum(axis=1)
    targets = summary.get("targets", {})
    parts = [f"<h1>{esc(summary['scenario'])}</h1>"]
    if summary.get("description"):
        parts.append(f"<p>{esc(summary['description'])}</p>")
    parts.append(f'<p class="meta">{esc(h["start"])} to {esc(h["end"])}, by {esc(h["report_by"])} · '
                 f'{summary["trials"]:,} trials · seed {esc(summary["seed"])} · forecaster {esc(summary.get("forecaster_version"))}'
                 f' · inputs sha256 {esc(summary.get("scenario_sha256", "")[:16])} · {esc(when)}</p>')
    after_sale = any(name in m for name in AFTER_SALE)  # then "revenue" is said to be new deals' bookings
    big = [("Revenue (new-deal bookings) P50" if after_sale else "Revenue P50", money(rev["p50"])), ("P10 – P90", f"{money(rev['p10'])} – {money(rev['p90'])}"),
           ("Mean (95% CI)", f"{money(rev['mean'])} ({money(rev['mean_ci_low'])} – {money(rev['mean_ci_high'])})")]
    big += [(label, fmt(m[name]["total"]["p50"])) for name, label, fmt in (
        ("recognised_revenue", "Recognised revenue P50", money), ("total_bookings", "Total bookings P50", money),
        ("active_customers", f"Active customers on {h['end']} P50", _whole_or_tenths)) if name in m]
    big += [(f"P({t} ≥ {money(v['threshold'])})", f"{v['probability']:.0%}") for t, v in targets.items()]
    parts.append('<div class="big">' + "".join(f"<div>{esc(a)}<b>{esc(b)}</b></div>" for a, b in big) + "</div>")
    parts.append(f"<h2>Revenue per {esc(h['report_by'])} {esc(cur)}</h2>")
    parts.append(fan_chart(labels, q, "revenue per period: P10-P90 and P25-P75 bands, median line"))
    parts.append(_table(["period", "mean", "P10", "P50", "P90"],
                        [[p["period"], money(p["mean"]), money(p["p10"]), money(p["p50"]), money(p["p90"])]
                         for p in m["revenue"]["by_period"]]))
    parts.append("<h2>Total revenue over the horizon</h2>")
    marks = {"target": targets["revenue"]["threshold"]} if "revenue" in targets else {}
    parts.append(histogram(totals, marks, "histogram of total revenue"))
    if summary.get("funnel"):
        parts.append("<h2>Expected new leads entering each stage</h2>")
        for seg, f in summary["funnel"].items():
            parts.append(f"<h3>{esc(seg)}</h3>")
            rows = [(s["stage"], s["entering"]) for s in f["stages"]] + [("won (eventually)", f["won_eventually"])]
            parts.append(bars(rows, f"funnel of {seg}", fmt=lambda v: f"{v:,.1f}"))
    parts.append("<h2>By segment</h2>")
    parts.append(_table(["segment", "revenue mean", "P10", "P50", "P90", "won deals mean"],
                        [[seg, money(s["revenue"]["total"]["mean"]), money(s["revenue"]["total"]["p10"]),
                          money(s["revenue"]["total"]["p50"]), money(s["revenue"]["total"]["p90"]),
                          f"{s['won_deals']['total']['mean']:,.1f}"] for seg, s in summary["segments"].items()]))
    if after_sale:
        parts += after_sale_html(summary)
    if summary.get("reps") and "commission" in m:
        parts.append(f"<h2>Commission per rep {esc(cur)}</h2>")
        reps = summary["reps"]
        parts.append(ranges([(r, v["commission"]["total"]["p10"], v["commission"]["total"]["p50"],
                              v["commission"]["total"]["p90"]) for r, v in reps.items()], "commission per rep, P10-P90"))
        parts.append(_table(["rep", "quota", "commission mean", "P10", "P90", "P(reach quota)"],
                            [[r, money(v["quota"]), money(v["commission"]["total"]["mean"]),
                              money(v["commission"]["total"]["p10"]), money(v["commission"]["total"]["p90"]),
                              " / ".join(f"{a['probability']:.0%}" for a in v["quota_attainment"])]
                             for r, v in reps.items()]))
    parts.append("<p class=\"meta\">P10–P90: in 80% of simulated periods the value fell in this range. "
                 "The 95% CI describes how precisely the trials pin down the mean.</p>")
    return _page(f"{summary['scenario']} – forecast", parts, AFTER_SALE_CSS if after_sale else "")


def render_markdown(summary: dict, when: str) -> str:
    """The same headline numbers as plain Markdown, for e-mail."""
    m, h = summary["metrics"], summary["horizon"]
    rev = m["revenue"]["total"]
    lines = [f"# {md(summary['scenario'])}: forecast", "",
             f"{md(h['start'])} to {md(h['end'])} · {summary['trials']:,} trials · seed {md(summary['seed'])} · "
             f"{md(when)}", "",
             f"- Revenue: P50 {money(rev['p50'])}, P10–P90 {money(rev['p10'])} – {money(rev['p90'])}, "
             f"mean {money(rev['mean'])} (95% CI {money(rev['mean_ci_low'])} – {money(rev['mean_ci_high'])})"]
    for t, v in summary.get("targets", {}).items():
        lines.append(f"- P({md(t)} ≥ {money(v['threshold'])}) = {v['probability']:.0%}")
    lines += ["", "| period | mean | P10 | P50 | P90 |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {md(p['period'])} | {money(p['mean'])} | {money(p['p10'])} | {money(p['p50'])} | {money(p['p90'])} |"
              for p in m["revenue"]["by_period"]]
    if any(name in m for name in AFTER_SALE):
        lines += after_sale_markdown(summary)
    if summary.get("reps") and "commission" in m:
        lines += ["", "| rep | commission P50 | P(reach quota) |", "|---|---:|---:|"]
        lines += [f"| {md(r)} | {money(v['commission']['total']['p50'])} | "
                  + " / ".join(f"{a['probability']:.0%}" for a in v["quota_attainment"]) + " |"
                  for r, v in summary["reps"].items()]
    return "\n".join(lines) + "\n"


def write_report(folder: str | Path) -> dict[str, Path]:
    """Write the reports of whatever ``folder`` holds, atomically: ``report.html`` and
    ``report.md`` for a run, ``compare.html`` for a comparison, ``sensitivity.html`` for a
    sensitivity."""

    folder = Path(folder)
    if not folder.exists():
        raise OutputError(f"{folder}: does not exist; expected the --out folder of `forecaster run`, `compare`, "
                          "`sensitivity` or `backtest`")
    if not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder; expected the --out folder of `forecaster run`, "
                          "`compare`, `sensitivity` or `backtest`")
    kinds = [f for f in ("summary.json", "compare.json", "sensitivity.json", "backtest.json") if (folder / f).exists()]
    if not kinds:
        raise OutputError(f"{folder}: no summary.json, compare.json, sensitivity.json or backtest.json; expected the "
                          "--out folder of `forecaster run`, `compare`, `sensitivity` or `backtest`")

    def stamp(name):
        try:
            mtime = (folder / name).stat().st_mtime
        except OSError as exc:
            raise OutputError(f"{folder / name}: cannot be read: {exc.strerror or exc}") from None
        return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")

    pages = {}  # rendered before anything is written: a bad file leaves the folder as it was
    if "summary.json" in kinds:
        summary, arrays = _read_run(folder)
        when = stamp("summary.json")
        pages["report.html"] = _render(folder / "summary.json", render_html, summary, arrays, when)
        pages["report.md"] = _render(folder / "summary.json", render_markdown, summary, when)
    for kind, render in (("compare", render_compare), ("sensitivity", render_sensitivity),
                         ("backtest", render_backtest)):
        if f"{kind}.json" in kinds:
            data = _read_json(folder / f"{kind}.json", f"the {kind}.json that `forecaster {kind}` writes")
            pages[f"{kind}.html"] = _render(folder / f"{kind}.json", render, data, stamp(f"{kind}.json"))
    try:
        with Staged(folder) as staged:
            for name, page in pages.items():
                staged.path(name).write_text(page, encoding="utf-8")
            return staged.publish()
    except ForecasterError:
        raise
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write the reports: {exc.strerror or exc}") from None


def _render(file: Path, render, *args) -> str:
    """``render(*args)``, with a file of the wrong shape (a key missing, a list where an
    object belongs, text where a number does) reported as an OutputError naming ``file``."""
    try:
        return render(*args)
    except (KeyError, IndexError) as exc:
        problem = f"{exc.args[0]!r} is missing" if isinstance(exc, KeyError) and exc.args else "an item is missing"
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, OverflowError) as exc:
        problem = f"a value has the wrong type or is out of range ({exc})"
    raise OutputError(f"{file}: does not have the shape forecaster writes: {printable(problem)}. Is it a file "
                      "written by this version of forecaster (and not edited since)?")
