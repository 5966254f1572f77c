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
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from forecaster.calendar import period_end, period_name as calendar_period_name, with_fiscal_quarter
from forecaster.errors import ForecasterError, OutputError
from forecaster.history.baselines import LABELS, MONTH_BASELINES
from forecaster.present.console import (
    AFTER_SALE,
    EXTRA_COLUMNS,
    printable,
    quota_chances,
    quota_heading,
    within_noise,
)
from forecaster.results.files import Staged
from forecaster.scenario.model import WON
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


def deals(x) -> str:
    """A count of deals: whole, or to one decimal where a quantile falls between two (a
    week's P50 of 0.5 is not 0)."""
    return "-" if x is None else f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


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
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


# --- the chart kit: text sizes, axes, legends ------------------------------------------------------

FONT = 11
"""The size [px] of every chart's text (the page's CSS: ``svg text{font-size:11px}``)."""
_NARROW = frozenset("iljI.,:;'!|ftr ()[]-/")


def text_width(text: str, size: float = FONT) -> float:
    """A generous estimate of the width [px] of ``text`` at ``size`` px in a sans-serif font
    (DejaVu Sans, the widest common one; system UI fonts are narrower): what the charts leave
    for a label so that labels never overlap or leave the picture."""
    em = 0.0
    for ch in text:
        em += (0.40 if ch in _NARROW else 0.64 if ch.isdigit() else 1.0 if ch in "mwMW%" else
               0.76 if ch.isupper() else 0.63 if ch.islower() else 0.9)
    return em * size


def _fit(text: str, width: float) -> str:
    """``text`` cut with an ellipsis to at most ``width`` px (the whole name stays in a tooltip)."""
    if text_width(text) <= width:
        return text
    while text and text_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


def tick_labels(ticks: list[float], kind: str = "number") -> list[str]:
    """Labels of axis ticks, each different from its neighbours, with as few decimals as that
    takes: 0, 500k, 1.0M, 1.5M; ``kind`` "share" writes percentages (0.25: 25%)."""
    big = max([abs(t) for t in ticks] + [0.0])
    if kind == "share":
        div, suffix = 0.01, "%"
    else:
        div, suffix = (1e6, "M") if big >= 1e6 else (1e3, "k") if big >= 1e3 else (1.0, "")
    scaled = [t / div for t in ticks]
    d = next((d for d in range(4) if all(abs(round(v, d) - v) <= 1e-6 * max(abs(v), 1.0) for v in scaled)), 3)
    zero = "0%" if kind == "share" else "0"
    labels = [zero if abs(t) <= 1e-9 * max(big, 1e-300) else f"{v:.{d}f}{suffix}" for t, v in zip(ticks, scaled)]
    return [label.replace("-", "−", 1) if label.startswith("-") else label for label in labels]


def _svg(css: str, title: str, w: float, h: float) -> str:
    """A chart's opening tag: classes ``chart`` and ``css``, its title for screen readers and as a tooltip."""
    return (f'<svg class="chart {esc(css)}" role="img" aria-label="{esc(title)}" viewBox="0 0 {w:.0f} {h:.0f}" '
            f'width="{w:.0f}" height="{h:.0f}"><title>{esc(title)}</title>')


_NICE_STEPS = {"day": (1, 2, 7, 14, 28, 91, 182, 364), "week": (1, 2, 4, 13, 26, 52),
               "month": (1, 2, 3, 6, 12, 24), "quarter": (1, 2, 4, 8)}
"""Steps between the period labels shown, by ``report_by``: a week every 4 or 13, a month every 3, 6 or 12."""


def _thin(xs: list[float], labels: list[str], gap: float = 10.0, steps: tuple[int, ...] = ()) -> list[int]:
    """Which of the labels centred at ``xs`` (increasing, evenly spaced) to show: every k-th
    from the first, k the smallest of ``steps`` (else of all) that keeps ``gap`` px between
    neighbouring labels."""
    n = len(xs)
    for every in [k for k in steps if k < n] + list(range(1, n + 1)):
        keep = list(range(0, n, every))
        if all(xs[b] - xs[a] >= (text_width(labels[a]) + text_width(labels[b])) / 2 + gap
               for a, b in zip(keep, keep[1:])):
            return keep
    return [0]


def _category_x(labels: list[str], left: float, right: float):
    """x of the i-th of ``labels`` evenly spread over [left, right], inset by half the widest
    label so that the first and last stay inside the chart; one label sits in the middle."""
    n = len(labels)
    if n <= 1:
        return lambda i: (left + right) / 2
    inset = min(max(text_width(lab) for lab in labels) / 2 + 4, (right - left) / 4)
    return _scale(0, n - 1, left + inset, right - inset)


def _x_labels(xs: list[float], labels: list[str], y: float, steps: tuple[int, ...] = ()) -> str:
    """Tick labels under an x axis at ``xs``, thinned so that none overlap (see :func:`_thin`)."""
    return "".join(f'<text class="tick x" x="{xs[i]:.1f}" y="{y:.1f}" text-anchor="middle">{esc(labels[i])}</text>'
                   for i in _thin(xs, labels, steps=steps))


def _x_numeric(x, ticks: list[float], y: float, kind: str = "number") -> str:
    """Numeric tick labels under an x axis (thinned if they would overlap)."""
    return _x_labels([x(t) for t in ticks], tick_labels(ticks, kind), y)


def _y_grid(y, ticks: list[float], left: float, right: float, kind: str = "number") -> str:
    """Horizontal grid lines with their tick labels left of ``left``."""
    return "".join(f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
                   f'<text class="tick y" x="{left - 6:.1f}" y="{y(t) + 4:.1f}" text-anchor="end">{esc(label)}</text>'
                   for t, label in zip(ticks, tick_labels(ticks, kind)))


def _x_grid(x, ticks: list[float], top: float, bottom: float) -> str:
    return "".join(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top:.1f}" y2="{bottom:.1f}" stroke="#eee"/>'
                   for t in ticks)


def _x_title(text: str, left: float, right: float, y: float) -> str:
    return f'<text class="axis-title x" x="{(left + right) / 2:.1f}" y="{y:.1f}" text-anchor="middle">{esc(text)}</text>'


def _y_title(text: str, top: float, bottom: float, x: float = 13) -> str:
    return (f'<text class="axis-title y" transform="rotate(-90)" x="{-(top + bottom) / 2:.1f}" y="{x:.1f}" '
            f'text-anchor="middle">{esc(text)}</text>')


def _series(label: str) -> str:
    """The attribute that ties a drawn series to its legend entry."""
    return f'data-series="{esc(label)}"'


_LEGEND_GAP, _LEGEND_ROW = 18.0, 16.0


def _legend_places(items: list[tuple[str, str]], x0: float, y0: float, right: float) -> list[tuple[float, float]]:
    out, xx, yy = [], x0, y0
    for _, label in items:
        width = 20 + text_width(label)
        if xx > x0 and xx + width > right:
            xx, yy = x0, yy + _LEGEND_ROW
        out.append((xx, yy))
        xx += width + _LEGEND_GAP
    return out


def legend_height(items: list[tuple[str, str]], x0: float, right: float = W - 10) -> float:
    """The height [px] ``items``' legend takes (rows of 16 px: it wraps at ``right``)."""
    places = _legend_places(items, x0, 0.0, right)
    return (places[-1][1] if places else 0.0) + _LEGEND_ROW


def _legend(items: list[tuple[str, str]], x0: float, y0: float, right: float = W - 10) -> str:
    """A legend from (x0, y0) (the first row's baseline), wrapping at ``right``: per item, an
    SVG swatch (drawn with its top-left corner at the origin, 16 × 10 px) and its label; each
    item names its series (``data-series``) as the series' own elements do."""
    out = []
    for (swatch, label), (xx, yy) in zip(items, _legend_places(items, x0, y0, right)):
        out.append(f'<g class="legend-item" {_series(label)}><g transform="translate({xx:.1f},{yy - 9:.1f})">'
                   f'{swatch}</g><text x="{xx + 20:.1f}" y="{yy:.1f}">{esc(label)}</text></g>')
    return '<g class="legend">' + "".join(out) + "</g>"


def _box(colour: str, opacity: float = 1.0) -> str:
    return f'<rect y="1" width="16" height="10" fill="{colour}" fill-opacity="{opacity}"/>'


def _tick_swatch(colour: str) -> str:
    return f'<rect x="7" y="-1" width="3" height="14" fill="{colour}"/>'


def _line_swatch(colour: str, dash: str = "") -> str:
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="0" x2="16" y1="6" y2="6" stroke="{colour}" stroke-width="2"{dashes}/>'


def data_span(lo: float, hi: float, zero_near: float = 0.5) -> tuple[float, float]:
    """An axis's ends for data from ``lo`` to ``hi``: the data with a 5% margin, reaching to 0
    when 0 lies within ``zero_near`` of the data's span beyond it (else 0 is off the axis, and
    the chart says so)."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if 0 < lo <= zero_near * span:
        lo = 0.0
    if -zero_near * span <= hi < 0:
        hi = 0.0
    pad = 0.05 * (hi - lo if hi > lo else span)
    return (lo if lo == 0 else lo - pad), (hi if hi == 0 else hi + pad)


def _zero_off(lo: float, hi: float) -> bool:
    return lo > 0 or hi < 0


def _zero_note(lo: float, hi: float, left: float, right: float, y: float) -> str:
    """When 0 is off an x axis from lo to hi: a note (on its own line, at ``y``) at the side
    where 0 lies."""
    if lo > 0:
        return f'<text class="zero-note" x="{left:.1f}" y="{y:.1f}" fill="#666">← 0 is off the axis, to the left</text>'
    if hi < 0:
        return (f'<text class="zero-note" x="{right:.1f}" y="{y:.1f}" text-anchor="end" fill="#666">0 is off the axis, '
                "to the right →</text>")
    return ""


# --- the charts ----------------------------------------------------------------------------------

def fan_chart(labels: list[str], q: np.ndarray, title: str, x_title: str = "", y_title: str = "",
              report_by: str = "") -> str:
    """Per period, bands P10–P90 and P25–P75 and the median line; ``q`` shape (5, periods):
    P10, P25, P50, P75, P90. ``labels``: the periods' names, thinned on the axis so none
    overlap, at steps that suit ``report_by`` (every 3rd month, every 4th week...)."""
    n = len(labels)
    legend = [(_box("#c6dbef"), "P10–P90 (8 in 10 trials)"), (_box("#6baed6"), "P25–P75 (half the trials)"),
              (_line_swatch("#08306b"), "P50 (median)")]
    h, left, right = H + 40, PAD + 14, W - 16
    top, bottom = 22 + legend_height(legend, left), H - 6
    x = _category_x(labels, left, right)
    lo, hi = min(0.0, float(q.min())), float(q.max()) * 1.05
    hi = hi if hi > lo else lo + 1.0
    y = _scale(lo, hi, bottom, top)
    ticks = _ticks(lo, hi, 6)
    out = [_svg("fan", title, W, h), _y_grid(y, ticks, left, right)]
    if n > 1:
        for (a, b), colour, label in (((0, 4), "#c6dbef", legend[0][1]), ((1, 3), "#6baed6", legend[1][1])):
            pts = ([f"{x(i):.1f},{y(q[a, i]):.1f}" for i in range(n)]
                   + [f"{x(i):.1f},{y(q[b, i]):.1f}" for i in reversed(range(n))])
            out.append(f'<polygon {_series(label)} points="{" ".join(pts)}" fill="{colour}"/>')
        out.append(f'<polyline {_series(legend[2][1])} fill="none" stroke="#08306b" stroke-width="2" points="'
                   + " ".join(f"{x(i):.1f},{y(q[2, i]):.1f}" for i in range(n)) + '"/>')
    elif n == 1:  # one period: the bands are bars, the median a tick
        cx = x(0)
        for (a, b), colour, label, half in (((0, 4), "#c6dbef", legend[0][1], 22), ((1, 3), "#6baed6", legend[1][1], 22)):
            out.append(f'<rect {_series(label)} x="{cx - half:.1f}" y="{y(q[b, 0]):.1f}" width="{2 * half}" '
                       f'height="{max(y(q[a, 0]) - y(q[b, 0]), 0.5):.1f}" fill="{colour}"/>')
        out.append(f'<line {_series(legend[2][1])} x1="{cx - 26:.1f}" x2="{cx + 26:.1f}" y1="{y(q[2, 0]):.1f}" '
                   f'y2="{y(q[2, 0]):.1f}" stroke="#08306b" stroke-width="2"/>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{y(lo):.1f}" y2="{y(lo):.1f}" stroke="#999"/>')
    shown = _thin([x(i) for i in range(n)], labels, steps=_NICE_STEPS.get(report_by, ()))
    out += [f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{bottom:.1f}" y2="{bottom + 4:.1f}" stroke="#999"/>'
            for i in (range(n) if n <= 60 else shown)]  # a tick per period, unless they would form a comb
    out += [f'<text class="tick x" x="{x(i):.1f}" y="{bottom + 17:.1f}" text-anchor="middle">{esc(labels[i])}</text>'
            for i in shown]
    out.append(_x_title(x_title, left, right, h - 8) + _y_title(y_title, top, bottom))
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def histogram(values: np.ndarray, marks: list[tuple[str, float]], title: str, x_title: str = "") -> str:
    """The share of trials in each of 40 bins of ``values`` (the y axis, "share of trials"),
    with a dashed vertical line at each mark: (legend label, value)."""
    values = np.asarray(values, dtype=float)
    lo, hi = float(values.min()), float(values.max())
    lo, hi = min([lo, *(v for _, v in marks)]), max([hi, *(v for _, v in marks)])
    counts, edges = np.histogram(values, bins=40, range=(lo, hi if hi > lo else lo + 1))
    shares = counts / max(values.size, 1)
    legend = [(_box("#6baed6"), "share of trials in each bin")]
    legend += [(_line_swatch("#d62728", "6 3"), label) for label, _ in marks]
    h, left, right = H + 40, PAD + 14, W - 16
    top, bottom = 22 + legend_height(legend, left), H - 6
    x = _scale(edges[0], edges[-1], left, right)
    peak = float(shares.max()) * 1.1 or 1.0
    y = _scale(0.0, peak, bottom, top)
    out = [_svg("histogram", title, W, h), _y_grid(y, _ticks(0.0, peak), left, right, "share")]
    out += [f'<rect {_series(legend[0][1])} x="{x(edges[i]):.1f}" y="{y(s):.1f}" '
            f'width="{max(x(edges[i + 1]) - x(edges[i]) - 1, 0.5):.1f}" height="{bottom - y(s):.1f}" fill="#6baed6">'
            f"<title>{esc(money(edges[i]))} – {esc(money(edges[i + 1]))}: {s:.1%} of trials</title></rect>"
            for i, s in enumerate(shares)]
    for label, v in marks:
        out.append(f'<line {_series(label)} x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top:.1f}" y2="{bottom:.1f}" '
                   f'stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom:.1f}" y2="{bottom:.1f}" stroke="#999"/>')
    out.append(_x_numeric(x, _ticks(edges[0], edges[-1], 8), bottom + 17))
    out.append(_x_title(x_title, left, right, h - 8) + _y_title("share of trials", top, bottom))
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def _label_column(labels: list[str]) -> float:
    """The width [px] of the column of row labels left of a bar chart: the widest label, at most 40% of the chart."""
    return min(max([text_width(lab) for lab in labels] + [40.0]) + 14, 0.4 * W)


def _row_label(label: str, x: float, y: float, width: float) -> str:
    shown = _fit(label, width - 14)
    tip = f"<title>{esc(label)}</title>" if shown != label else ""
    return f'<text class="row-label" x="{x:.1f}" y="{y:.1f}" text-anchor="end">{tip}{esc(shown)}</text>'


def bars(rows: list[tuple], title: str, fmt=money, x_title: str = "", kinds: dict | None = None,
         css: str = "bars", kind: str = "number") -> str:
    """Horizontal bars from 0, one per (label, value) or (label, value, series); ``kinds``
    maps each series to its colour (a legend when there are several), ``fmt`` writes the value
    after each bar and ``kind`` the axis's ticks ("share": percentages)."""
    kinds = kinds or {"": "#6baed6"}
    first = next(iter(kinds))
    legend = [(_box(colour), name) for name, colour in kinds.items()] if len(kinds) > 1 else []
    column = _label_column([r[0] for r in rows])
    left, right = column + 6, W - 70
    top = (8 + legend_height(legend, left)) if legend else 8
    h = top + 22 * len(rows) + 44
    bottom = top + 22 * len(rows)
    peak = max([float(r[1]) for r in rows] + [1e-9])
    ticks = _ticks(0.0, peak, 8)
    x = _scale(0.0, max(peak, ticks[-1]), left, right)
    out = [_svg(css, title, W, h), _x_grid(x, ticks, top - 4, bottom)]
    for i, row in enumerate(rows):
        label, v = row[0], float(row[1])
        name = row[2] if len(row) > 2 else first
        yy = top + 22 * i
        out.append(_row_label(label, column, yy + 13, column)
                   + f'<rect {_series(name)} x="{left:.1f}" y="{yy}" width="{max(x(v) - left, 0):.1f}" height="16" '
                     f'fill="{kinds[name]}"/><text x="{x(v) + 4:.1f}" y="{yy + 13}">{esc(fmt(v))}</text>')
    out.append(f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top - 4:.1f}" y2="{bottom:.1f}" stroke="#999"/>')
    out.append(_x_numeric(x, ticks, bottom + 14, kind) + _x_title(x_title, left, right, h - 8))
    if legend:
        out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def ranges(rows: list[tuple[str, float, float, float]], title: str, x_title: str = "",
           marks: list[tuple[str, float]] | None = None, zero: bool = True, css: str = "ranges") -> str:
    """P10–P90 range bars with the P50 marked, one per (label, p10, p50, p90), and a dashed line
    at each mark (legend label, value). The axis starts at 0 when ``zero``, else it spans the
    data (see :func:`data_span`): ranges are not bars from 0, so an axis without 0 misleads no one."""
    marks = marks or []
    legend = [(_box("#9ecae1"), "P10–P90"), (_tick_swatch("#08306b"), "P50")]
    legend += [(_line_swatch("#d62728", "6 3"), label) for label, _ in marks]
    column = _label_column([r[0] for r in rows])
    left, right = column + 6, W - 14 - max(text_width(f"P50 {money(r[2])}") for r in rows)
    top = 8 + legend_height(legend, left)
    bottom = top + 22 * len(rows)
    values = [v for r in rows for v in r[1:]] + [v for _, v in marks]
    lo, hi = (0.0, max(values + [1e-9]) * 1.05) if zero else data_span(min(values), max(values))
    h = bottom + 44
    ticks = [t for t in _ticks(lo, hi, 8) if lo <= t <= hi]
    x = _scale(lo, hi, left, right)
    out = [_svg(css, title, W, h), _x_grid(x, ticks, top - 4, bottom)]
    for i, (label, p10, p50, p90) in enumerate(rows):
        yy = top + 22 * i
        out.append(_row_label(label, column, yy + 13, column)
                   + f'<rect {_series("P10–P90")} x="{x(p10):.1f}" y="{yy + 3}" width="{max(x(p90) - x(p10), 1):.1f}" '
                     f'height="10" fill="#9ecae1"><title>{esc(label)}: P10 {esc(money(p10))}, P50 {esc(money(p50))}, '
                     f'P90 {esc(money(p90))}</title></rect>'
                   + f'<rect {_series("P50")} x="{x(p50) - 1.5:.1f}" y="{yy}" width="3" height="16" fill="#08306b"/>'
                   + f'<text x="{x(p90) + 4:.1f}" y="{yy + 13}">P50 {esc(money(p50))}</text>')
    for label, v in marks:
        out.append(f'<line {_series(label)} x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 4:.1f}" y2="{bottom:.1f}" '
                   f'stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/>')
    out.append(_x_numeric(x, ticks, bottom + 14) + _x_title(x_title, left, right, bottom + 36))
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def tornado(rows: list[tuple[str, float, float]], title: str, x_title: str, minus: str, plus: str) -> str:
    """Around a zero line, one row per (label, effect of ``minus``, effect of ``plus``): two
    bars from zero, coloured as the legend says."""
    legend = [(_box("#fc9272"), minus), (_box("#6baed6"), plus)]
    column = _label_column([r[0] for r in rows])
    left, right = column + 6, W - 20
    top = 8 + legend_height(legend, left)
    bottom = top + 22 * len(rows)
    h = bottom + 44
    extent = max([abs(v) for _, a, b in rows for v in (a, b)] + [1e-9]) * 1.05
    x = _scale(-extent, extent, left, right)
    ticks = _ticks(-extent, extent, 8)
    out = [_svg("signed tornado", title, W, h), _x_grid(x, ticks, top - 4, bottom),
           f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top - 4:.1f}" y2="{bottom:.1f}" stroke="#999"/>']
    for i, (label, a, b) in enumerate(rows):
        yy = top + 22 * i
        out.append(_row_label(label, column, yy + 13, column))
        for v, colour, name in ((a, "#fc9272", minus), (b, "#6baed6", plus)):
            lo_, hi_ = sorted((x(0.0), x(v)))
            out.append(f'<rect {_series(name)} x="{lo_:.1f}" y="{yy}" width="{max(hi_ - lo_, 0.5):.1f}" height="16" '
                       f'fill="{colour}"><title>{esc(label)}, {esc(name)}: {esc(money(v))}</title></rect>')
    out.append(_x_numeric(x, ticks, bottom + 14) + _x_title(x_title, left, right, h - 8))
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def difference_chart(rows: list[tuple[str, float, float, float]], title: str, x_title: str) -> str:
    """Paired differences, one row per (label, p10, p50, p90): the P10–P90 bar and the P50 tick,
    on an axis that spans the data (0 is on it when near, else a note says where it lies)."""
    legend = [(_box("#6baed6"), "P10–P90 of the per-trial difference"), (_tick_swatch("#08306b"), "P50")]
    column = _label_column([r[0] for r in rows])
    left, right = column + 6, W - 20
    top = 8 + legend_height(legend, left)
    bottom = top + 22 * len(rows)
    values = [v for r in rows for v in r[1:]] or [0.0]
    lo, hi = data_span(min(values), max(values))
    h = bottom + 44 + 16 * _zero_off(lo, hi)
    ticks = [t for t in _ticks(lo, hi, 8) if lo <= t <= hi]
    x = _scale(lo, hi, left, right)
    out = [_svg("signed differences", title, W, h), _x_grid(x, ticks, top - 4, bottom)]
    if lo <= 0 <= hi:
        out.append(f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top - 4:.1f}" y2="{bottom:.1f}" '
                   'stroke="#555"/>')
    for i, (label, p10, p50, p90) in enumerate(rows):
        yy = top + 22 * i
        out.append(_row_label(label, column, yy + 13, column)
                   + f'<rect {_series(legend[0][1])} x="{x(p10):.1f}" y="{yy + 2}" width="{max(x(p90) - x(p10), 1):.1f}" '
                     f'height="12" fill="#6baed6"><title>{esc(label)}: P10 {esc(money(p10))}, P50 {esc(money(p50))}, '
                     f'P90 {esc(money(p90))}</title></rect>'
                   + f'<rect {_series("P50")} x="{x(p50) - 1.5:.1f}" y="{yy}" width="3" height="16" fill="#08306b"/>')
    out.append(_x_numeric(x, ticks, bottom + 14) + _x_title(x_title, left, right, bottom + 36))
    out.append(_zero_note(lo, hi, left, right, h - 6))
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


PALETTE = ("#08519c", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666")
"""Colours of the scenarios of a comparison, the base first."""


def exceedance_chart(series: list[tuple[str, np.ndarray]], title: str, x_title: str,
                     target: tuple[str, float] | None = None) -> str:
    """Each series' share of trials reaching at least x (one minus its empirical CDF), on one
    axis: where a curve crosses the target's line is its P(target), marked by a dot."""
    legend = [(_line_swatch(PALETTE[i % len(PALETTE)]), label) for i, (label, _) in enumerate(series)]
    if target is not None:
        legend.append((_line_swatch("#d62728", "6 3"), target[0]))
    h, left, right = H + 40, PAD + 14, W - 16
    top, bottom = 22 + legend_height(legend, left), H - 6
    values = [np.sort(np.asarray(v, dtype=float)) for _, v in series]
    bulk = [np.quantile(v, [0.001, 0.999]) for v in values if v.size]  # the lines are flat beyond
    lo = min([float(b[0]) for b in bulk] + ([target[1]] if target else []))
    hi = max([float(b[1]) for b in bulk] + ([target[1]] if target else []))
    lo, hi = data_span(lo, hi, zero_near=0.0)  # not bars from 0: the axis spans the data
    hi = hi if hi > lo else lo + 1.0
    x, y = _scale(lo, hi, left, right), _scale(0.0, 1.0, bottom, top)
    ticks = [t for t in _ticks(lo, hi, 8) if lo <= t <= hi]
    out = [_svg("exceedance", title, W, h), _y_grid(y, [0.0, 0.25, 0.5, 0.75, 1.0], left, right, "share"),
           _x_grid(x, ticks, top, bottom)]
    grid = np.linspace(lo, hi, 241)
    for i, ((label, _), v) in enumerate(zip(series, values)):
        share = 1.0 - np.searchsorted(v, grid, side="left") / max(v.size, 1)
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<polyline {_series(label)} fill="none" stroke="{colour}" stroke-width="2" points="'
                   + " ".join(f"{x(g):.1f},{y(s):.1f}" for g, s in zip(grid, share)) + '"/>')
    if target is not None:
        tx = x(target[1])
        out.append(f'<line {_series(target[0])} x1="{tx:.1f}" x2="{tx:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" '
                   'stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/>')
        reach = [float(np.mean(v >= target[1])) if v.size else 0.0 for v in values]
        places: list[float] = []
        for i in sorted(range(len(reach)), key=lambda i: -reach[i]):  # labels top down, 12 px apart at least
            places.append(max(y(reach[i]) + 4, places[-1] + 12 if places else top + 8))
            colour = PALETTE[i % len(PALETTE)]
            out.append(f'<circle class="reach" {_series(series[i][0])} cx="{tx:.1f}" cy="{y(reach[i]):.1f}" r="4" '
                       f'fill="{colour}" stroke="white"><title>{esc(series[i][0])}: {reach[i]:.1%} of trials reach '
                       f'the target</title></circle><text class="reach" x="{tx + 7:.1f}" y="{places[-1]:.1f}" '
                       f'fill="{colour}" stroke="white" stroke-width="3" paint-order="stroke">{reach[i]:.1%}</text>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom:.1f}" y2="{bottom:.1f}" stroke="#999"/>')
    out.append(_x_numeric(x, ticks, bottom + 17) + _x_title(x_title, left, right, H + 32)
               + _y_title("share of trials ≥ x", top, bottom))
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def _page(title: str, body: list[str], css: str = "") -> str:
    """A page with the report's CSS, and ``css`` after it (rules only some pages need)."""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{CSS}{css}</style></head><body>" + "".join(body) + "</body></html>")


_METRIC_NAMES = {"revenue": "revenue", "won_deals": "won deals", "commission": "commission"}
_SENSITIVITY_METRICS = {"revenue": "total revenue", "recognised_revenue": "total recognised revenue",
                        "total_bookings": "total bookings"}
"""How a sensitivity's page names the total its levers are ranked by (``metric``)."""


def _compare_unit(summary: dict, metric: str) -> str:
    """A compared metric's unit: compare.json's ``units`` (the currency for money), else by its name."""
    unit = summary.get("units", {}).get(metric)
    if unit:
        return str(unit)
    return "deals" if metric == "won_deals" else "customers" if metric.endswith("_customers") else "currency"


def _is_stock(metric: str) -> bool:
    if metric in _METRIC_NAMES:
        return False
    from forecaster.results.layout import AFTER_SALE_VARIABLES  # only a comparison with customers loads it

    return metric in AFTER_SALE_VARIABLES and AFTER_SALE_VARIABLES[metric][0] == "stock"


def _points(x) -> str:
    return "-" if x is None else f"{x * 100:+.1f} pp"


def render_compare(summary: dict, when: str, totals: dict | None = None) -> str:
    """Per metric: each scenario's level (P10/P50/P90, and its probability of reaching the
    base's target), the scenarios' distributions overlaid (from ``totals``: metric -> scenario
    -> per-trial totals, read from compare.nc) and the paired differences of each variant from
    the base (``compare.json``)."""
    base = summary["base"]
    body = [f"<h1>Compared with {esc(base)}</h1>",
            f'<p class="meta">{summary["trials"]:,} trials · seed {esc(summary["seed"])} · common random numbers · '
            f"{esc(when)}</p>"]
    for metric in summary["scenarios"][base]:
        fmt = (lambda v: "-" if v is None else f"{v:,.1f}") if metric == "won_deals" or metric.endswith(
            "_customers") else money
        name, unit = _METRIC_NAMES.get(metric, _NAMES.get(metric, metric)), _compare_unit(summary, metric)
        when_ = "at the end of the horizon" if _is_stock(metric) else "total over the horizon"
        target = summary.get("targets", {}).get(metric)
        marks = [(f"target {fmt(target['threshold'])}", target["threshold"])] if target else []
        body.append(f"<h2>{esc(name)} [{esc(unit)}], {esc(when_)}</h2>")
        levels = [(n, d[metric]["total"]["p10"], d[metric]["total"]["p50"], d[metric]["total"]["p90"])
                  for n, d in summary["scenarios"].items()]
        body.append(f"<h3>Each scenario{': P(reaching the target of ' + esc(base) + ')' if target else ''}</h3>")
        if all(v is not None for row in levels for v in row[1:]):
            body.append(ranges(levels, f"{name} {when_}: P10–P90 and P50 of each scenario",
                               f"{name} {when_} [{unit}]", marks, zero=False, css="ranges levels"))
        head = ["scenario", "mean", "P10", "P50", "P90"]
        if target:
            head += [f"P(≥ {fmt(target['threshold'])})", "change (95% CI)"]
        rows = []
        for n, d in summary["scenarios"].items():
            t = d[metric]["total"]
            row = [n, fmt(t["mean"]), fmt(t["p10"]), fmt(t["p50"]), fmt(t["p90"])]
            if target:
                p = target["probability"].get(n)
                diff = target["difference"].get(n)
                row += ["-" if p is None else f"{p:.1%}",
                        "base" if n == base else "-" if diff is None else
                        f"{_points(diff['mean'])} ({_points(diff['mean_ci_low'])} to {_points(diff['mean_ci_high'])})"]
            rows.append(row)
        body.append(_table(head, rows))
        if totals and metric in totals:
            body.append(exceedance_chart(list(totals[metric].items()),
                                         f"{name} {when_}: the share of trials reaching at least each value",
                                         f"{name} {when_} [{unit}]",
                                         (marks[0][0], marks[0][1]) if marks else None))
            body.append('<p class="meta">Each line: the share of trials whose total reaches at least the value '
                        "below it (1 − the distribution function)"
                        + ("; where a line crosses the target, its dot reads that scenario's P(target)" if marks else "")
                        + ".</p>")
        body.append("<h3>Variant − base, trial by trial (common random numbers)</h3>")
        diffs = [(n, d[metric]["total"]["p10"], d[metric]["total"]["p50"], d[metric]["total"]["p90"])
                 for n, d in summary["differences"].items()]
        body.append(difference_chart(diffs, f"{name}: variant − base per trial, P10 to P90",
                                     f"variant − base, {name} {when_} [{unit}]"))
        body.append(_table(["variant", "difference", "95% CI", "P10 / P50 / P90", "P(higher)", "CI if independent"],
                           [[n, fmt(t["mean"]), f"{fmt(t['mean_ci_low'])} – {fmt(t['mean_ci_high'])}",
                             f"{fmt(t['p10'])} / {fmt(t['p50'])} / {fmt(t['p90'])}", f"{t['probability_higher']:.0%}",
                             "±" + fmt(t["unpaired_ci_half_width"])]
                            for n, d in summary["differences"].items() for t in [d[metric]["total"]]]))
    return _page(f"compare {base}", body)


def render_sensitivity(summary: dict, when: str) -> str:
    """The tornado, the three moves and the variance shares (``sensitivity.json``), read on
    the metric the levers were ranked by (``metric``: revenue unless said)."""
    step = f"{summary['step']:.0%}"
    metric = summary.get("metric", "revenue")
    total = _SENSITIVITY_METRICS.get(metric, f"total {metric}")
    unit = summary.get("currency") or "currency"
    levers = {e["lever"]: e for e in summary["levers"]}

    def effect(e, k):
        return e[k][metric]["mean"] if k in e else 0.0

    body = [f"<h1>Sensitivity of {esc(summary['scenario'])}</h1>",
            f'<p class="meta">each lever −{esc(step)} / +{esc(step)} · {summary["trials"]:,} trials · seed '
            f'{esc(summary["seed"])} · {esc(when)}</p>', f"<h2>Effect on {esc(total)} (tornado)</h2>",
            tornado([(n, effect(levers[n], "minus"), effect(levers[n], "plus")) for n in summary["ranking"]],
                    f"tornado of the effects on {total}", f"change in {total} [{unit}]",
                    f"lever −{step}", f"lever +{step}")]
    moves = summary["three_moves"]
    body.append("<h2>The three moves</h2>")
    column = "revenue" if metric == "revenue" else total.removeprefix("total ")
    body.append(_table(["move", "lever", f"{column} +{step}", "95% CI", "won deals"],
                       [[m, moves[m].get("lever"), money(moves[m][metric]["mean"]),
                         f"{money(moves[m][metric]['mean_ci_low'])} – {money(moves[m][metric]['mean_ci_high'])}",
                         f"{moves[m]['won_deals']['mean']:+,.1f}" if "won_deals" in moves[m] else "-"]
                        for m in ("expansion", "stretching", "key_level") if metric in moves[m]]))
    if summary["variance_shares"]:
        body.append(f"<h2>Share of the variance of {esc(total)}</h2>")
        shares = [(v["input"], v["share"], "one per-trial input") for v in summary["variance_shares"]]
        rest = max(0.0, 1.0 - sum(v["share"] for v in summary["variance_shares"]))
        shares.append(("the rest", rest, REST))
        body.append(bars(shares, f"shares of the variance of {total}", fmt=lambda v: f"{v:.1%}",
                         x_title=f"share of the variance of {total} (first-order Sobol index)",
                         kinds={"one per-trial input": "#6baed6", REST: "#bdbdbd"}, css="bars shares", kind="share"))
        body.append('<p class="meta">The bars sum to 100%: each input\'s first-order share, and the rest (what no '
                    "single input explains: the counting of leads and deals, each deal's own value and time, and "
                    "interactions between inputs).</p>")
        faint = [v for v in summary["variance_shares"] if within_noise(v)]
        if faint:
            body.append('<p class="meta">Within the noise of the estimate, not told from zero (an input with no '
                        "effect reaches its figure about 3 times in 100 at these trials): "
                        + ", ".join(f"{esc(v['input'])} ({v['share']:.1%}, below {v['share_noise']:.1%})"
                                    for v in faint) + ".</p>")
    return _page(f"sensitivity {summary['scenario']}", body)


REST = "the rest: counting and per-deal noise, interactions"
"""The variance share no single per-trial input explains (as the console names it)."""


def render_backtest(result: dict, when: str) -> str:
    """Each cutoff's monthly intervals against what happened, every baseline's scores,
    forecaster's paired differences from them and the PIT histogram (``backtest.json``)."""

    n = len(result["cutoffs"])
    body = [f"<h1>Backtest: {n} cutoff{'s' * (n != 1)}</h1>", f'<p class="meta">{esc(when)}</p>',
            "<p>Each cutoff is calibrated on what was known then and forecasts the months after it, which "
            "are then compared with what happened. <b>Coverage</b>: the share of months whose actual fell "
            "inside the interval (an honest 80% interval covers about 80%). <b>CRPS</b> (continuous ranked "
            "probability score): how far the forecast's whole distribution was from the actual, in the "
            "metric's own unit (won deals, or the currency); for a forecast of a single number it is the "
            "absolute error, and lower is better. Forecaster is compared with simple forecasts any analyst "
            "could make (last month again, the trailing 3-month mean, the same month of the quarter before, the "
            "CRM's weighted pipeline): a negative difference means forecaster was better.</p>"]
    for x in result.get("skipped", []):  # absent from a backtest.json written before cutoffs were skipped
        body.append(f"<p>Cutoff {esc(x['cutoff'])} skipped by every method, too early to calibrate on: "
                    f"{esc(x['reason'])}</p>")
    for x in result.get("warnings", []):  # absent from a backtest.json written before warnings were kept
        at = x.get("cutoffs") or []
        vary = f" (as on {at[0]}; the figures differ at the others)" if x.get("figures_vary") and at else ""
        body.append(f"<p>Warning{' (calibrating on ' + esc(', '.join(at)) + ')' if at else ''}: "
                    f"{esc(x['warning'] + vary)}</p>")

    def share(x):
        return "–" if x is None else f"{x:.0%}"

    money_unit = result.get("currency") or "the history's currency"
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
        body.append(f"<h3>Forecaster's P10–P90 per forecast month, with the actual ({esc(unit)})</h3>")
        body.append(interval_chart(intervals, f"{metric}: P10–P90 per forecast month, with the actual",
                                   axis=f"{unit} in the month" + (f" [{money_unit}]" if metric == "revenue" else "")))
        pit = avg["forecaster"].get("pit_histogram")
        if pit:
            body.append(f"<h3>PIT histogram of forecaster's months ({esc(unit)})</h3>")
            body.append(pit_chart(pit, f"{metric}: PIT of each month's actual in forecaster's samples"))
            body.append('<p class="meta">PIT: where the actual fell in the forecast (0: below every trial, 1: above '
                        "all). A calibrated forecast spreads the months evenly; a hump in the middle means intervals "
                        "too wide, piles at the ends too narrow, a slope a bias.</p>")
    return _page("backtest", body)


def interval_chart(rows: list[tuple[str, float, float, float, float]], title: str, axis: str = "") -> str:
    """One row per forecast (label, p10, p50, p90, actual): the P10–P90 bar, the P50 tick
    and the actual as a red dot, on an axis titled ``axis`` (the metric and its unit)."""
    legend = [(_box("#9ecae1"), "P10–P90"), (_tick_swatch("#08306b"), "P50"),
              ('<circle cx="8" cy="6" r="4" fill="#d62728"/>', "actual")]
    column = _label_column([r[0] for r in rows] + ["cutoff → month"])
    left, right = column + 6, W - 20
    top = 8 + legend_height(legend, left)
    bottom = top + 22 * len(rows)
    h = bottom + 44
    peak = max([max(r[3], r[4]) for r in rows] + [1e-9]) * 1.05
    x = _scale(0, peak, left, right)
    ticks = _ticks(0, peak, 6)
    out = [_svg("intervals", title, W, h), _x_grid(x, ticks, top - 4, bottom)]
    for i, (label, p10, p50, p90, actual) in enumerate(rows):
        yy = top + 22 * i
        out.append(_row_label(label, column, yy + 13, column)
                   + f'<rect {_series("P10–P90")} x="{x(p10):.1f}" y="{yy + 3}" width="{max(x(p90) - x(p10), 1):.1f}" '
                     'height="10" fill="#9ecae1"/>'
                   + f'<rect {_series("P50")} x="{x(p50) - 1:.1f}" y="{yy}" width="2" height="16" fill="#08306b"/>'
                   + f'<circle {_series("actual")} cx="{x(actual):.1f}" cy="{yy + 8}" r="4" fill="#d62728"/>')
    out.append(_x_numeric(x, ticks, bottom + 14) + _x_title(axis, left, right, h - 8)
               + f'<text class="axis-title y" x="{column:.1f}" y="{h - 8}" text-anchor="end">cutoff → month</text>')
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def pit_chart(counts: list[int], title: str) -> str:
    """A PIT histogram: ``counts`` of months per equal bin of [0, 1] (shape (bins,)), a
    dashed line at the count a calibrated forecast expects in every bin (months / bins),
    the axes titled (x: PIT, unitless 0–1; y: months) and a legend."""
    bins, total = len(counts), sum(counts)
    expect = total / bins if bins else 0.0
    uniform = f"uniform: what a calibrated forecast expects ({expect:.1f} a bin)"
    h, bottom, left, right = H + 30, H - 20, PAD, W - 20
    x = _scale(0.0, 1.0, left, right)
    peak = max([*counts, expect, 1]) * 1.15
    y = _scale(0.0, peak, bottom, 40)
    ticks = [t for t in _ticks(0.0, peak, 5) if float(t).is_integer()]
    out = [f'<svg class="chart pit" role="img" aria-label="{esc(title)}" viewBox="0 0 {W} {h}" width="{W}" height="{h}">',
           "".join(f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.0f}</text>' for t in ticks)]
    for i, c in enumerate(counts):
        x0, x1 = x(i / bins), x((i + 1) / bins)
        out.append(f'<rect {_series(BINS)} x="{x0 + 1:.1f}" y="{y(c):.1f}" width="{max(x1 - x0 - 2, 0.5):.1f}" '
                   f'height="{bottom - y(c):.1f}" fill="#6baed6"><title>{i / bins:.1f}–{(i + 1) / bins:.1f}: '
                   f'{c} month{"s" * (c != 1)}</title></rect>')
    out.append(f'<line {_series(uniform)} x1="{left}" x2="{right}" y1="{y(expect):.1f}" y2="{y(expect):.1f}" stroke="#d62728" '
               f'stroke-width="2" stroke-dasharray="6 4"/>'
               f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    out += [f'<text class="tick x" x="{x(k / 5):.1f}" y="{bottom + 16}" text-anchor="middle">{k / 5:.1f}</text>'
            for k in range(6)]
    out.append(f'<text class="axis-title" x="{(left + right) / 2:.1f}" y="{h - 12}" text-anchor="middle">'
               "PIT of the actual in the forecast</text>"
               f'<text class="axis-title" transform="rotate(-90)" x="{-(bottom + 40) / 2:.1f}" y="14" '
               'text-anchor="middle">months</text>')
    out.append(_legend([('<rect y="1" width="16" height="10" fill="#6baed6"/>', BINS),
                        ('<line x1="0" x2="16" y1="5" y2="5" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/>',
                         uniform)], left + 10, 20))
    out.append("</svg>")
    return "".join(out)


BINS = "forecaster's months per PIT bin"


# --- a funnel with moves (v2 B), stage volumes and cycle time (v2 F1) ----------------------------

FUNNEL_CSS = "table.funnel td{white-space:nowrap}"
"""The funnel's and stage volumes' tables keep their numbers on one line."""
_FORWARD, _BACK, _SKIP, _WON_FILL = "#08306b", "#d95f02", "#1b9e77", "#e5f5e0"
_MOVE_KINDS = {"back": ("moves back: share of the leads leaving the stage without converting (mean)", _BACK, "6 3"),
               "skip": ("skips ahead or is won: share of the leads leaving without converting (mean)", _SKIP, "2 3")}


def pct(v: float) -> str:
    """A probability as a percentage with as few decimals as it needs (at most one above 1%):
    25%, 19.9%, 0.35%."""
    if v is None or not math.isfinite(v):
        return "-"
    digits = 1 if abs(v) >= 0.01 or v == 0 else 2
    text = f"{v * 100:.{digits}f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _count(v: float) -> str:
    """An expected count in a funnel, without trailing zeros: 23,004, 470.2, 187, 8.51, 9."""
    text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _move_kind(stages: list[str], frm: str, to: str) -> str:
    return "back" if to != WON and stages.index(to) < stages.index(frm) else "skip"


def _arrowhead(x: float, y: float, direction: str, colour: str) -> str:
    """A filled arrowhead with its tip at (x, y), pointing "down", "left" or "right"."""
    dx, dy = {"down": (0, -1), "left": (1, 0), "right": (-1, 0)}[direction]
    back_x, back_y = x + 8 * dx, y + 8 * dy
    side_x, side_y = 4 * dy, 4 * dx
    return (f'<polygon points="{x:.1f},{y:.1f} {back_x + side_x:.1f},{back_y + side_y:.1f} '
            f'{back_x - side_x:.1f},{back_y - side_y:.1f}" fill="{colour}"/>')


def funnel_diagram(segment: str, stages: list[dict], moves: list[tuple[str, str, float]], won_eventually: float,
                   title: str) -> str:
    """A segment's funnel with moves, top down: each own stage a box (its expected entries over
    the horizon, every visit an entry, and the eventual win probability h of a deal entering
    it), forward arrows labelled with the conversion, and one arrow per move labelled with its
    share of the leads that leave the stage without converting: moves back on the right, skips
    and moves to won on the left, each in a lane of its own, ending in the box of ``won``.
    ``stages``: summary.json's funnel stages with "convert" (mean) added; ``moves``: (stage,
    to, mean share), ``to`` a stage or "won"."""
    names = [st["stage"] for st in stages]
    S = len(names)
    index = {name: i for i, name in enumerate(names)}
    index[WON] = S
    kinds = [_move_kind(names, a, b) for a, b, _ in moves]
    legend = [(_line_swatch(_FORWARD), "converts to the next stage (mean of the trials)")]
    legend += [(_line_swatch(colour, dash), label) for kind, (label, colour, dash) in _MOVE_KINDS.items() if kind in kinds]
    box_h, gap = 50, 46
    lines = [[st["stage"], f"{_count(st['entering'])} entries", f"wins eventually {pct(st['win_probability'])}"]
             for st in stages] + [["won", f"{_count(won_eventually)} new leads", "won eventually"]]
    box_w = min(max([text_width(t) for row in lines for t in row] + [150.0]) + 20, 260.0)
    labels = [pct(share) for _, _, share in moves]
    lane = max([text_width(label) + 18 for label in labels] + [40.0])
    # lanes: a side's shortest moves nearest the boxes, each in the first lane that no move over
    # the same boxes (ends included) holds, so nested moves are drawn inside one another
    lane_of: dict[int, int] = {}
    for side in ("back", "skip"):
        mine = sorted((j for j, k in enumerate(kinds) if k == side),
                      key=lambda j: (abs(index[moves[j][1]] - index[moves[j][0]]), index[moves[j][0]]))
        for j in mine:
            lo, hi = sorted((index[moves[j][0]], index[moves[j][1]]))
            taken = {lane_of[i] for i in lane_of if kinds[i] == side
                     and min(index[moves[i][0]], index[moves[i][1]]) <= hi and max(index[moves[i][0]], index[moves[i][1]]) >= lo}
            lane_of[j] = next(k for k in range(len(mine)) if k not in taken)
    n_left = 1 + max([lane_of[j] for j, k in enumerate(kinds) if k == "skip"], default=-1)
    n_right = 1 + max([lane_of[j] for j, k in enumerate(kinds) if k == "back"], default=-1)
    left_w = 24 + lane * n_left if n_left else 12
    right_w = 24 + lane * n_right if n_right else 12
    w = max(float(W), left_w + box_w + right_w + 20)
    bx0 = (w - box_w) / 2 + (left_w - right_w) / 2
    bx1 = bx0 + box_w
    top = 8 + legend_height(legend, 10, w - 10) + 10
    h = top + (S + 1) * box_h + S * gap + 14

    def box_y(i: int) -> float:
        return top + i * (box_h + gap)

    # the ends of the moves on each box's side, spread over its height, ordered by the other end
    ends: dict[tuple[int, str], list[tuple[int, int, str]]] = {}
    for j, (a, b, _) in enumerate(moves):
        side = "right" if kinds[j] == "back" else "left"
        ends.setdefault((index[a], side), []).append((index[b], j, "from"))
        ends.setdefault((index[b], side), []).append((index[a], j, "to"))
    port: dict[tuple[int, str], float] = {}
    for (i, _side), items in ends.items():
        items.sort(key=lambda e: (e[0], e[1]))
        for k, (_, j, end) in enumerate(items):
            port[(j, end)] = box_y(i) + box_h * (k + 1) / (len(items) + 1)
    out = [_svg("funnel-diagram", title, w, h)]
    for i in range(S + 1):  # the boxes
        y0 = box_y(i)
        if i < S:
            st = stages[i]
            tip = (f"{segment} · {st['stage']}: {_count(st['entering'])} expected entries over the horizon "
                   f"({st.get('visits', 0):.3f} visits per new lead); a deal entering it is won eventually with "
                   f"probability {pct(st['win_probability'])}; converts {pct(st['convert'])} (mean)")
            fill, stroke, css = "#f5f7fa", "#9ecae1", "stage"
        else:
            tip = f"{segment}: {_count(won_eventually)} of the new leads of the horizon are won eventually (mean)"
            fill, stroke, css = _WON_FILL, "#74c476", "stage won"
        out.append(f'<g class="{css}" data-stage="{esc(lines[i][0])}"><title>{esc(tip)}</title>'
                   f'<rect x="{bx0:.1f}" y="{y0:.1f}" width="{box_w:.1f}" height="{box_h}" rx="5" fill="{fill}" '
                   f'stroke="{stroke}"/>'
                   f'<text class="stage-name" x="{bx0 + box_w / 2:.1f}" y="{y0 + 15:.1f}" text-anchor="middle" '
                   'font-weight="600">'
                   f"{esc(_fit(lines[i][0], box_w - 12))}</text>"
                   + "".join(f'<text x="{bx0 + box_w / 2:.1f}" y="{y0 + 15 + 14 * k:.1f}" text-anchor="middle">'
                             f"{esc(lines[i][k])}</text>" for k in (1, 2)) + "</g>")
    cx = bx0 + box_w / 2
    for i in range(S):  # forward arrows
        y0, y1 = box_y(i) + box_h, box_y(i + 1)
        to = names[i + 1] if i + 1 < S else WON
        out.append(f'<g class="forward" data-from="{esc(names[i])}" data-to="{esc(to)}" {_series(legend[0][1])}>'
                   f"<title>{esc(names[i])} → {esc(to)}: converts {pct(stages[i]['convert'])} (mean of the trials)</title>"
                   f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y0:.1f}" y2="{y1 - 1:.1f}" stroke="{_FORWARD}" stroke-width="2"/>'
                   + _arrowhead(cx, y1, "down", _FORWARD)
                   + f'<text class="forward-label" x="{cx + 8:.1f}" y="{(y0 + y1) / 2 + 4:.1f}">converts '
                   f"{esc(pct(stages[i]['convert']))}</text></g>")
    for j, (a, b, share) in enumerate(moves):  # moves, one lane each
        kind = kinds[j]
        label, colour, dash = _MOVE_KINDS[kind]
        ya, yb = port[(j, "from")], port[(j, "to")]
        if kind == "back":
            edge, lx = bx1, bx1 + 24 + lane * lane_of[j]
            text = f'x="{lx + 4:.1f}" text-anchor="start"'
        else:
            edge, lx = bx0, bx0 - 24 - lane * lane_of[j]
            text = f'x="{lx - 4:.1f}" text-anchor="end"'
        # the label: in the longest stretch of the lane that no outer lane's arm of this side crosses
        cuts = sorted({ya, yb} | {port[(i, end)] for i in range(len(moves)) for end in ("from", "to")
                                  if i != j and kinds[i] == kind and lane_of[i] > lane_of[j]
                                  and min(ya, yb) < port[(i, end)] < max(ya, yb)})
        low, high = max(zip(cuts, cuts[1:]), key=lambda c: c[1] - c[0])
        tip = (f"{a} → {b}: {pct(share)} of the leads leaving {a} without converting (mean of the trials), "
               + ("back to an earlier stage" if kind == "back" else "won" if b == WON else "skipping ahead"))
        out.append(f'<g class="move {kind}" data-from="{esc(a)}" data-to="{esc(b)}" data-share="{share:.6g}" '
                   f"{_series(label)}><title>{esc(tip)}</title>"
                   f'<path d="M{edge:.1f},{ya:.1f} H{lx:.1f} V{yb:.1f} H{edge + (8 if kind == "back" else -8):.1f}" '
                   f'fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
                   + _arrowhead(edge, yb, "left" if kind == "back" else "right", colour)
                   + f'<text class="move-label" {text} y="{(low + high) / 2 + 4:.1f}" fill="{colour}" stroke="white" '
                   f'stroke-width="3" paint-order="stroke">{esc(pct(share))}</text></g>')
    out.append(_legend(legend, 10, 16, w - 10))
    out.append("</svg>")
    return "".join(out)


def funnel_html(segment: str, funnel: dict, chain: dict) -> list[str]:
    """The part of the report on a segment with moves: its funnel diagram, a table of its
    stages and one of its moves."""
    stages = [dict(st, convert=chain["convert"][st["stage"]]) for st in funnel["stages"]]
    names = [st["stage"] for st in stages]
    moves = chain["moves"]
    open_deals = funnel.get("open_pipeline") or {}
    parts = [funnel_diagram(segment, stages, moves, funnel["won_eventually"],
                            f"funnel of {segment} with its moves: expected entries and eventual win probability of "
                            "each stage, conversions and move shares"),
             '<p class="meta">Entries: the expected visits of each stage by the new leads of the horizon, whenever '
             "they happen (each visit is an entry: a lead that moves back enters a stage again). "
             "Wins eventually: the probability that a deal entering the stage is won, whatever path it takes. "
             "A move's share is of the leads that leave the stage without converting; the rest of them are "
             "lost. Conversions and shares: means of the trials' draws (after shocks).</p>"]
    rows = []
    for st in stages:
        out_share = sum(share for a, _, share in moves if a == st["stage"])
        rows.append([st["stage"], _count(st["entering"]), f"{st.get('visits', 0):.3f}", pct(st["convert"]),
                     pct((1 - st["convert"]) * (1 - out_share)), pct(st["win_probability"]),
                     str(open_deals.get(st["stage"], 0))])
    parts.append(_table(["stage", "entries (mean)", "visits per new lead", "converts", "lost per visit",
                         "wins eventually", "open deals now"], rows, "funnel"))
    if moves:
        parts.append(_table(["move", "kind", "share of the leads not converting", "share of the visits"],
                            [[f"{a} → {b}", "back" if _move_kind(names, a, b) == "back" else "won" if b == WON
                              else "skip ahead", pct(share), pct((1 - chain["convert"][a]) * share)]
                             for a, b, share in moves], "funnel"))
    return parts


_STAGE_PREFIXES = ("stage_entries.", "losses.")


def _stage_metrics(summary: dict) -> bool:
    return any(name.startswith(_STAGE_PREFIXES) for name in summary["metrics"])


def stage_panels(labels: list[str], stages: list[str], series: dict[str, dict[str, np.ndarray]], title: str,
                 x_axis: str, y_axis: str, report_by: str = "") -> str:
    """Small multiples, one panel per stage (each with its own y axis from 0): per period the
    mean (line) and the P10–P90 band of each series. ``series``: label -> {stage: array of
    shape (3, periods): mean, P10, P90}; a stage a series lacks is not drawn in that panel."""
    colours = dict(zip(series, ("#08519c", "#d95f02", "#1b9e77")))
    legend = [(f'<rect y="0" width="16" height="10" fill="{colours[label]}" fill-opacity="0.18"/>'
               f'<line x1="0" x2="16" y1="5" y2="5" stroke="{colours[label]}" stroke-width="2"/>', label)
              for label in series]
    cols = 1 if len(stages) == 1 else 2
    rows = -(-len(stages) // cols)
    gutter, tick_w, panel_h = 26.0, 44.0, 150.0
    panel_w = (W - gutter - 10) / cols - tick_w - 12
    top = 8 + legend_height(legend, gutter + tick_w) + 8
    row_h = panel_h + 56
    h = top + rows * row_h + 22
    out = [_svg("stage-volumes", title, W, h)]
    n = len(labels)
    for k, stage in enumerate(stages):
        r, c = divmod(k, cols)
        left = gutter + tick_w + c * (panel_w + tick_w + 12)
        right = left + panel_w
        ptop = top + r * row_h + 18
        bottom = ptop + panel_h
        drawn = {label: q[stage] for label, q in series.items() if stage in q}
        values = np.concatenate([q[np.isfinite(q)] for q in drawn.values()] + [np.zeros(1)])
        hi = float(values.max()) * 1.08 or 1.0
        y = _scale(0.0, hi, bottom, ptop)
        x = _category_x(labels, left + 4, right - 4)
        out.append(f'<g class="panel" data-stage="{esc(stage)}">'
                   f'<text class="panel-title" x="{left:.1f}" y="{ptop - 6:.1f}" font-weight="600">'
                   f"{esc(_fit(stage, panel_w))}</text>")
        out.append(_y_grid(y, _ticks(0.0, hi, 4), left, right))
        for label, q in drawn.items():
            colour = colours[label]
            ok = [i for i in range(n) if np.isfinite(q[:, i]).all()]
            tips = f"<title>{esc(stage)}, {esc(label)}: P10–P90</title>"
            if len(ok) > 1:
                pts = [f"{x(i):.1f},{y(q[2, i]):.1f}" for i in ok] + [f"{x(i):.1f},{y(q[1, i]):.1f}" for i in reversed(ok)]
                out.append(f'<polygon class="band" {_series(label)} points="{" ".join(pts)}" fill="{colour}" '
                           f'fill-opacity="0.18">{tips}</polygon>'
                           f'<polyline class="mean" {_series(label)} fill="none" stroke="{colour}" stroke-width="2" '
                           f'points="{" ".join(f"{x(i):.1f},{y(q[0, i]):.1f}" for i in ok)}"/>')
            out += [f'<circle {_series(label)} cx="{x(i):.1f}" cy="{y(q[0, i]):.1f}" r="{2.5 if len(ok) > 1 else 4}" '
                    f'fill="{colour}"><title>{esc(stage)}, {esc(label)}, {esc(labels[i])}: mean {esc(_count(q[0, i]))}, '
                    f"P10 {esc(_count(q[1, i]))}, P90 {esc(_count(q[2, i]))}</title></circle>" for i in ok]
            if len(ok) == 1:
                i = ok[0]
                out.append(f'<line {_series(label)} x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(q[1, i]):.1f}" '
                           f'y2="{y(q[2, i]):.1f}" stroke="{colour}" stroke-opacity="0.5" stroke-width="8"/>')
        out.append(f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{bottom:.1f}" y2="{bottom:.1f}" stroke="#999"/>'
                   f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{ptop:.1f}" y2="{bottom:.1f}" stroke="#999"/>')
        shown = _thin([x(i) for i in range(n)], labels, steps=_NICE_STEPS.get(report_by, ()))
        out += [f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{bottom:.1f}" y2="{bottom + 3:.1f}" stroke="#999"/>'
                for i in (range(n) if n <= 30 else shown)]  # a tick per period, unless they would form a comb
        out += [f'<text class="tick x" x="{x(i):.1f}" y="{bottom + 15:.1f}" text-anchor="middle">{esc(labels[i])}</text>'
                for i in shown]
        out.append("</g>")
    out.append(_x_title(x_axis, gutter + tick_w, W - 10, h - 8) + _y_title(y_axis, top, h - 30))
    out.append(_legend(legend, gutter + tick_w, 16))
    out.append("</svg>")
    return "".join(out)


def stage_volumes_html(summary: dict) -> list[str]:
    """With v2 F1's outputs: the entries into each stage (and its losses) per period, summed
    over segments (summary.json's metrics ``stage_entries.<stage>`` and ``losses.<stage>``),
    as small multiples and tables; and ``cycle_days`` in a line of text. Nothing without them."""
    m, h = summary["metrics"], summary["horizon"]
    per = h["report_by"]
    parts: list[str] = []
    entries = {k.removeprefix("stage_entries."): v for k, v in m.items() if k.startswith("stage_entries.")}
    losses = {k.removeprefix("losses."): v for k, v in m.items() if k.startswith("losses.")}
    stages = list(dict.fromkeys([*entries, *losses]))
    if stages:
        labels = [p["period"] for p in m["revenue"]["by_period"]]
        names = [period_name(label, per, h.get("fiscal_year_start")) for label in labels]
        series = {label: {stage: _quantiles(metric, ("mean", "p10", "p90")) for stage, metric in found.items()}
                  for label, found in (("entries into the stage", entries), ("lost at the stage", losses)) if found}
        parts.append(f"<h2>Stage volumes by {esc(per)}</h2>")
        parts.append(f'<p class="meta">Expected leads entering each stage per {esc(per)} (every visit is an entry; '
                     "an open deal's current stage is not)" + (", and lost at it (dated when given up)" if losses else "")
                     + ", summed over the segments: lines the mean of the trials, bands P10–P90. Each panel has its "
                     "own scale.</p>")
        what = " and losses" if losses else ""
        parts.append(stage_panels(names, stages, series, f"entries into each stage{what} per {per}: mean lines, "
                                  "P10–P90 bands", _PERIOD_AXIS.get(per, per), f"leads per {per}", per))
        parts.append(_table(["stage", "entries over the horizon, mean", "P10 – P90", "lost, mean", "P10 – P90"],
                            [[stage, *(x for metric in (entries.get(stage), losses.get(stage)) for x in (
                                ("-", "-") if metric is None else (_count(metric["total"]["mean"]),
                                                                   f"{_count(metric['total']['p10'])} – "
                                                                   f"{_count(metric['total']['p90'])}")))]
                             for stage in stages], "funnel"))
        if entries:
            parts.append(f'<p class="meta">Entries per {esc(per)}: mean (P10 – P90).</p>')
            parts.append(_table([per, *entries], [
                [with_fiscal_quarter(label, per, h.get("fiscal_year_start")),
                 *(f"{_count(metric['by_period'][i]['mean'])} ({_count(metric['by_period'][i]['p10'])} – "
                   f"{_count(metric['by_period'][i]['p90'])})" for metric in entries.values())]
                for i, label in enumerate(labels)], "funnel"))
    cycle = summary.get("cycle_days")
    if isinstance(cycle, dict):
        parts.append("<h2>Time from arrival to win</h2>")
        parts.append(f'<p class="cycle-days">{esc(cycle_text(cycle))}</p>')
    return parts


def _days(v) -> str:
    return "-" if v is None else f"{v:,.1f}"


def cycle_text(cycle: dict) -> str:
    """summary.json's ``cycle_days`` in a line: the pooled mean and P10/P50/P90, then each segment's."""
    def stats(c: dict) -> str:
        return (f"mean {_days(c.get('mean'))} days (P10 {_days(c.get('p10'))}, P50 {_days(c.get('p50'))}, "
                f"P90 {_days(c.get('p90'))})")

    text = (f"Cycle time, from a lead's arrival to its win: {stats(cycle)}, over {int(cycle.get('count', 0)):,} deals "
            "won inside the horizon from new leads, all trials pooled (deals won after the end are not counted)")
    by = cycle.get("by_segment") or {}
    if len(by) > 1:
        text += "; " + "; ".join(f"{seg}: {stats(c)}" for seg, c in by.items())
    return text + "."


# --- after the sale (v2 A.3) -------------------------------------------------------------------

_NAMES = {"recognised_revenue": "recognised revenue", "renewal_bookings": "renewals", "repeat_revenue": "repeat revenue",
          "stage_revenue": "stage revenue", "cancellations": "cancellations", "total_bookings": "total bookings",
          "new_customers": "new customers", "churned_customers": "churned customers", "repeat_customers": "repeat customers (2nd purchase)",
          "regular_customers": "regular customers", "active_customers": "active customers", "mrr": "MRR"}
"""How the report names the after-sale metrics; a metric it does not know is named by its key."""
def period_name(label: str, report_by: str, fiscal_year_start: int | None = None) -> str:
    """A period named by its first day (``2027-01-01``) as a reader says it: ``Jan 2027``
    (month), ``Q1 2027`` or, with a fiscal year, ``FY27 Q1`` (quarter), ``4 Jan 2027`` (week,
    day): :func:`forecaster.calendar.period_name`. A label that is not a date stays as it is."""
    try:
        d = date.fromisoformat(label)
    except (TypeError, ValueError):
        return label
    return calendar_period_name(d, report_by, fiscal_year_start)


def period_end_name(label: str, report_by: str, end: str, fiscal_year_start: int | None = None) -> str:
    """The last day within the horizon (ending on ``end``) of the period named ``label``:
    where a stock is measured, e.g. ``2027-01-31``. A label that is not a date stays as it is."""
    try:
        first, last = date.fromisoformat(label), date.fromisoformat(end)
        return min(period_end(first, report_by, fiscal_year_start or 1), last).isoformat()
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
    x = _category_x(labels, left + 6, right - 6)
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
            out.append(f'<polygon class="band" {_series(label)} points="{" ".join(pts)}" fill="{colour}" fill-opacity="0.18" '
                       f'stroke="{colour}" stroke-opacity="0.35" stroke-width="0.5"><title>{esc(label)}: P10–P90'
                       "</title></polygon>")
        elif ok:  # one period: the band is a bar
            i = ok[0]
            out.append(f'<rect class="band" {_series(label)} x="{x(i) - 8:.1f}" y="{y(q[2, i]):.1f}" width="16" '
                       f'height="{max(y(q[0, i]) - y(q[2, i]), 0.5):.1f}" fill="{colour}" fill-opacity="0.18"/>')
        if len(ok) > 1:
            out.append(f'<polyline class="median" {_series(label)} fill="none" stroke="{colour}" stroke-width="2" points="'
                       + " ".join(f"{x(i):.1f},{y(q[1, i]):.1f}" for i in ok) + '"/>')
        if markers or len(ok) == 1:
            out += [f'<circle {_series(label)} cx="{x(i):.1f}" cy="{y(q[1, i]):.1f}" r="3" fill="{colour}"><title>{esc(labels[i])}: '
                    f"P10 {esc(value_fmt(q[0, i]))}, P50 {esc(value_fmt(q[1, i]))}, P90 {esc(value_fmt(q[2, i]))}"
                    "</title></circle>"
                    for i in ok]
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    out.append(_x_labels([x(i) for i in range(n)], labels, bottom + 16, _NICE_STEPS.get(x_axis.split()[-1], ())))
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
    names = [period_name(label, per, h.get("fiscal_year_start")) for label in labels]
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
            row = [period_end_name(label, per, h["end"], h.get("fiscal_year_start")), *(_count1(a[k]) for k in ("mean", "p10", "p50", "p90"))]
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
            lines.append(f"| {md(period_name(p['period'], per, h.get('fiscal_year_start')))} | " + " | ".join(cells) + " |")
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
_CYCLE = {"count": _NUM, **{k: _OPT_NUM for k in ("mean", "p10", "p50", "p90")}}
_SUMMARY = {
    "scenario": (str, int, float), "seed": (int, str), "trials": (int,), "description?": (str, None),
    "forecaster_version?": (str, None), "scenario_sha256?": (str,),
    "metrics": {"revenue": _METRIC, "won_deals?": _METRIC, "commission?": _METRIC},
    "horizon": {"start": _TEXT, "end": _TEXT, "report_by": _TEXT, "currency?": (str, None),
                "fiscal_year_start?": (int,), "commission_period?": _TEXT},
    "targets?": {"*": {"threshold": _NUM, "probability": _NUM}},
    "segments": {"*": {"revenue": {"total": _STATS}, "won_deals": {"total": _STATS}}},
    "funnel?": {"*": {"stages": [{"stage": _TEXT, "entering": _NUM, "visits?": _NUM, "win_probability?": _NUM}],
                      "won_eventually": _NUM, "open_pipeline?": {"*": _NUM}}},
    "cycle_days?": {**_CYCLE, "by_segment?": {"*": _CYCLE}},
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
    _check(summary["metrics"], {f"{name}?": _METRIC for name in summary["metrics"] if name.startswith(_STAGE_PREFIXES)},
           "metrics", folder / "summary.json")
    import h5netcdf

    nc = folder / "forecast.nc"
    if not nc.exists():
        raise OutputError(f"{nc}: does not exist; the report needs the forecast.nc that `forecaster run` writes beside "
                          "summary.json")
    if not nc.is_file():
        raise OutputError(f"{nc}: is not a file; the report needs the forecast.nc that `forecaster run` writes")
    arrays: dict = {}  # name -> per-trial array; "chains": the funnels with moves (see _read_chains)
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
    moving = [seg for seg, f in (summary.get("funnel") or {}).items() if _has_moves(f)]
    if moving:
        arrays["chains"] = _read_chains(nc, summary, moving)
    return summary, arrays


def _has_moves(funnel: dict) -> bool:
    """Whether summary.json's funnel of a segment is that of a segment with moves (v2 B): its
    stages give their expected visits and eventual win probability."""
    return any("win_probability" in st for st in funnel["stages"])


def _read_chains(nc: Path, summary: dict, segments: list[str]) -> dict:
    """The funnel of each of ``segments`` (segments with moves) as the report draws it: each
    own stage's conversion and each move's share, means over the trials' draws after shocks
    (forecast.nc's ``inputs``, slots ``convert.<stage>`` and ``move.<stage>.<to>``). A move
    is one whose share is above 0 in some trial (the slot of a move that a segment lacks
    holds 0). segment -> {"convert": {stage: mean}, "moves": [(stage, to, mean share)]};
    a segment forecast.nc does not describe is left out (its funnel is drawn as bars)."""
    import h5netcdf

    def names(var) -> list[str]:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in var[:]]

    out: dict = {}
    try:
        with h5netcdf.File(nc, "r") as f:
            if not {"inputs", "quantity", "segment"} <= set(f.variables):
                return out
            var, quantities, all_segments = f.variables["inputs"], names(f.variables["quantity"]), names(f.variables["segment"])
            if tuple(var.dimensions) != ("trial", "segment", "quantity"):
                return out
            slot = {q: k for k, q in enumerate(quantities)}
            for seg in segments:
                if seg not in all_segments:
                    continue
                own = [st["stage"] for st in summary["funnel"][seg]["stages"]]
                if any(f"convert.{stage}" not in slot for stage in own):
                    continue
                draws = np.asarray(var[:, all_segments.index(seg), :], dtype=float)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slot has no mean: not drawn
                    mean, top = np.nanmean(draws, axis=0), np.nanmax(draws, axis=0)
                moves = [(a, b, float(mean[slot[key]])) for a in own for b in [*own, WON]
                         for key in [f"move.{a}.{b}"] if key in slot and np.isfinite(top[slot[key]]) and top[slot[key]] > 0]
                out[seg] = {"convert": {stage: float(mean[slot[f"convert.{stage}"]]) for stage in own}, "moves": moves}
    except Exception as exc:  # whatever a corrupt or foreign file makes h5py raise
        detail = (str(exc).splitlines() or [""])[0]
        raise OutputError(f"{nc}: cannot be read as a forecast ({type(exc).__name__}: {printable(detail)})") from None
    return out


_PERIOD_AXIS = {"day": "day", "week": "week starting (Monday)", "month": "month", "quarter": "quarter"}
"""The title of an axis of periods, by ``report_by``."""


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
    per = h["report_by"]
    unit = f" [{cur}]" if cur else ""
    parts.append(f"<h2>Revenue per {esc(per)} {esc(cur)}</h2>")
    parts.append(fan_chart([period_name(label, per, h.get("fiscal_year_start")) for label in labels], q,
                           f"revenue per {per}: P10–P90 and P25–P75 bands, median line",
                           _PERIOD_AXIS.get(per, per), f"revenue per {per}{unit}", per))
    parts.append(_table(["period", "mean", "P10", "P50", "P90"],
                        [[with_fiscal_quarter(p["period"], per, h.get("fiscal_year_start")), money(p["mean"]),
                          money(p["p10"]), money(p["p50"]), money(p["p90"])] for p in m["revenue"]["by_period"]]))
    parts.append("<h2>Total revenue over the horizon</h2>")
    marks = ([(f"target {money(targets['revenue']['threshold'])}: reached in "
               f"{np.mean(totals >= targets['revenue']['threshold']):.0%} of trials", targets["revenue"]["threshold"])]
             if "revenue" in targets else [])
    parts.append(histogram(totals, marks, "histogram of total revenue", f"total revenue over the horizon{unit}"))
    chains = arrays.get("chains") or {}
    if summary.get("funnel"):
        parts.append("<h2>Expected new leads entering each stage</h2>")
        for seg, f in summary["funnel"].items():
            parts.append(f"<h3>{esc(seg)}</h3>")
            if seg in chains and _has_moves(f):
                parts += funnel_html(seg, f, chains[seg])
                continue
            rows = [(s["stage"], s["entering"]) for s in f["stages"]] + [("won (eventually)", f["won_eventually"])]
            parts.append(bars(rows, f"funnel of {seg}", fmt=lambda v: f"{v:,.1f}",
                              x_title="new leads entering the stage over the horizon (mean of the trials)"))
    parts += stage_volumes_html(summary)
    parts.append("<h2>By segment</h2>")
    parts.append(_table(["segment", f"revenue mean{unit}", "P10", "P50", "P90", "won deals mean"],
                        [[seg, money(s["revenue"]["total"]["mean"]), money(s["revenue"]["total"]["p10"]),
                          money(s["revenue"]["total"]["p50"]), money(s["revenue"]["total"]["p90"]),
                          f"{s['won_deals']['total']['mean']:,.1f}"] for seg, s in summary["segments"].items()]))
    if after_sale:
        parts += after_sale_html(summary)
    parts += spend_html(summary, unit)  # v2 E.3
    if summary.get("reps") and "commission" in m:
        parts.append(f"<h2>Commission per rep {esc(cur)}</h2>")
        reps = summary["reps"]
        parts.append(ranges([(r, v["commission"]["total"]["p10"], v["commission"]["total"]["p50"],
                              v["commission"]["total"]["p90"]) for r, v in reps.items()], "commission per rep, P10-P90",
                            f"commission over the horizon{unit}"))
        parts.append(_table(["rep", quota_heading(h), "commission mean, horizon", "P10", "P90", "P(reach quota)"],
                            [[r, money(v["quota"]), money(v["commission"]["total"]["mean"]),
                              money(v["commission"]["total"]["p10"]), money(v["commission"]["total"]["p90"]),
                              quota_chances(v, h)] for r, v in reps.items()]))
        parts += commission_extras_html(summary, unit)  # v2 D
    parts.append("<p class=\"meta\">P10–P90: in 80% of simulated periods the value fell in this range. "
                 "The 95% CI describes how precisely the trials pin down the mean.</p>")
    css = (AFTER_SALE_CSS if after_sale else "") + (FUNNEL_CSS if chains or _stage_metrics(summary) else "")
    return _page(f"{summary['scenario']} – forecast", parts, css)


def _ratio_cell(item: dict, fmt) -> str:
    """A ratio's mean (P10 – P90), or "-" where it is undefined in every trial."""
    if item.get("mean") is None:
        return "-"
    return f"{fmt(item['mean'])} ({fmt(item['p10'])} – {fmt(item['p90'])})"


def _price(x: float) -> str:
    return f"{x:,.2f}" if abs(x) < 100 else money(x)


def spend_html(summary: dict, unit: str) -> list[str]:
    """v2 E.3: leads and spend per period, each segment's, and the returns on spend (spend
    per lead, CAC, ROI: mean and P10–P90 of the trials' ratios). Nothing without them."""
    m, h = summary["metrics"], summary["horizon"]
    if "leads" not in m:
        return []
    spend = "spend" in m
    parts = ["<h2>Leads" + (", spend and returns" if spend else "") + "</h2>"]
    head = ["period", "leads mean", "leads P10 – P90"] + ([f"spend mean{unit}", "spend P10 – P90"] if spend else [])
    rows = []
    for k, p in enumerate(m["leads"]["by_period"]):
        row = [with_fiscal_quarter(p["period"], h["report_by"], h.get("fiscal_year_start")), _count(p["mean"]),
               f"{_count(p['p10'])} – {_count(p['p90'])}"]
        if spend:
            q = m["spend"]["by_period"][k]
            row += [money(q["mean"]), f"{money(q['p10'])} – {money(q['p90'])}"]
        rows.append(row)
    parts.append(_table(head, rows))
    ratios = summary.get("ratios")
    if ratios:
        names = [(key, label, fmt) for key, label, fmt in (
            ("spend_per_lead", f"spend per lead{unit}", _price), ("cac", f"CAC (spend per deal won){unit}", _price),
            ("roi", "ROI ((revenue − spend) / spend)", pct), ("roi_total", "ROI on total bookings", pct))
            if key in ratios]
        segs = summary.get("segments", {})
        rows = [["all (blended)", "", "", *(_ratio_cell(ratios[key], fmt) for key, _, fmt in names)]]
        for seg in next(iter(ratios.values())).get("by_segment", {}):
            s = segs.get(seg, {})
            rows.append([seg, _count(s["leads"]["total"]["mean"]) if "leads" in s else "",
                         money(s["spend"]["total"]["mean"]) if "spend" in s else "",
                         *(_ratio_cell(ratios[key]["by_segment"][seg], fmt) for key, _, fmt in names)])
        parts.append("<h3>Returns on spend over the horizon: mean (P10 – P90) of the trials</h3>")
        parts.append(_table(["segment", "leads mean", f"spend mean{unit}", *(label for _, label, _ in names)], rows))
        parts.append('<p class="meta">A ratio leaves out the trials where its denominator is 0; "-": 0 in every '
                     "trial (a segment that spends nothing has no ROI).</p>")
    return parts


def commission_extras_html(summary: dict, unit: str) -> list[str]:
    """v2 D: each rep's spif, clawback, net commission, payout and draw balance (means,
    totals over the horizon), the draws and P(net earnings < draws); the commission expense
    by period. Nothing for a plan without the extras."""
    reps, m, h = summary["reps"], summary["metrics"], summary["horizon"]
    shown = [(key, head) for key, head in EXTRA_COLUMNS if any(key in r for r in reps.values())]
    drawn = any("draw" in r for r in reps.values())
    parts = []
    if shown or drawn:
        rows = []
        for name, r in reps.items():
            row = [name, *(money(r[key]["total"]["mean"]) if key in r else "" for key, _ in shown)]
            if drawn:
                row += [money(r["draw"]["total"]), pct(r["draw"]["probability_net_below"])] if "draw" in r else ["", ""]
            rows.append(row)
        parts.append(f"<h3>Spifs, clawbacks and draws, means over the horizon{esc(unit)}</h3>")
        parts.append(_table(["rep", *(f"{head}" for _, head in shown),
                             *(["draws", "P(net < draws)"] if drawn else [])], rows))
    if "commission_expense" in m:
        parts.append(f"<h3>Commission expense (net commission, amortised){esc(unit)}</h3>")
        parts.append(_table(["period", "mean", "P10", "P50", "P90"], [
            [with_fiscal_quarter(p["period"], h["report_by"], h.get("fiscal_year_start")), money(p["mean"]),
             money(p["p10"]), money(p["p50"]), money(p["p90"])] for p in m["commission_expense"]["by_period"]]))
    return parts


def render_markdown(summary: dict, when: str) -> str:
    """The same headline numbers as plain Markdown, for e-mail: revenue and won deals, in
    total and per period, the targets, spend, the after-sale views and the reps."""
    m, h = summary["metrics"], summary["horizon"]
    rev = m["revenue"]["total"]
    cur = h.get("currency") or ""
    unit = f" [{md(cur)}]" if cur else ""
    lines = [f"# {md(summary['scenario'])}: forecast", "",
             f"{md(h['start'])} to {md(h['end'])} · {summary['trials']:,} trials · seed {md(summary['seed'])} · "
             f"{md(when)}" + (f" · amounts in {md(cur)}" if cur else ""), "",
             f"- Revenue{unit}: P50 {money(rev['p50'])}, P10–P90 {money(rev['p10'])} – {money(rev['p90'])}, "
             f"mean {money(rev['mean'])} (95% CI {money(rev['mean_ci_low'])} – {money(rev['mean_ci_high'])})"]
    won = m.get("won_deals")
    if won:  # the deals as well as their value (report.html shows both)
        w = won["total"]
        lines.append(f"- Won deals: P50 {deals(w['p50'])}, P10–P90 {deals(w['p10'])} – {deals(w['p90'])}, "
                     f"mean {w['mean']:,.1f}")
    for t, v in summary.get("targets", {}).items():
        lines.append(f"- P({md(t)} ≥ {money(v['threshold'])}) = {v['probability']:.0%}")
    if "spend" in m and summary.get("ratios"):  # v2 E.3
        roi, cac = summary["ratios"]["roi"], summary["ratios"]["cac"]
        lines.append(f"- Spend{unit}: mean {money(m['spend']['total']['mean'])}; ROI mean {pct(roi['mean'])}"
                     f" (P10–P90 {pct(roi['p10'])} – {pct(roi['p90'])}); CAC mean "
                     f"{money(cac['mean']) if cac['mean'] is not None else '-'}")
    fy = h.get("fiscal_year_start")
    if won:
        lines += ["", f"| period | revenue mean{unit} | P10 | P50 | P90 | won deals P50 | P10–P90 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {md(with_fiscal_quarter(p['period'], h['report_by'], fy))} | {money(p['mean'])} | "
                  f"{money(p['p10'])} | {money(p['p50'])} | {money(p['p90'])} | {deals(q['p50'])} | "
                  f"{deals(q['p10'])} – {deals(q['p90'])} |"
                  for p, q in zip(m["revenue"]["by_period"], won["by_period"])]
    else:
        lines += ["", f"| period | revenue mean{unit} | P10 | P50 | P90 |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {md(with_fiscal_quarter(p['period'], h['report_by'], fy))} | {money(p['mean'])} | "
                  f"{money(p['p10'])} | {money(p['p50'])} | {money(p['p90'])} |" for p in m["revenue"]["by_period"]]
    if any(name in m for name in AFTER_SALE):
        lines += after_sale_markdown(summary)
    if summary.get("reps") and "commission" in m:
        lines += ["", f"| rep | {md(quota_heading(h))}{unit} | commission P50, horizon{unit} | P(reach quota) |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {md(r)} | {money(v['quota'])} | {money(v['commission']['total']['p50'])} | "
                  f"{md(quota_chances(v, h))} |" for r, v in summary["reps"].items()]
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
            extra = [_read_compare_totals(folder, data)] if kind == "compare" else []
            pages[f"{kind}.html"] = _render(folder / f"{kind}.json", render, data, stamp(f"{kind}.json"), *extra)
    try:
        with Staged(folder) as staged:
            for name, page in pages.items():
                staged.path(name).write_text(page, encoding="utf-8")
            return staged.publish()
    except ForecasterError:
        raise
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write the reports: {exc.strerror or exc}") from None


def _read_compare_totals(folder: Path, summary: dict) -> dict | None:
    """Each compared metric's per-trial totals over the horizon (a stock's: its level at the
    end), by scenario, from ``compare.nc`` beside ``compare.json``: metric -> scenario ->
    shape (trials,). None when there is no compare.nc (the page then has no overlay); a file
    that cannot be read, or whose scenarios are not compare.json's, is an OutputError."""
    nc = folder / "compare.nc"
    if not nc.is_file() or not isinstance(summary.get("scenarios"), dict) or summary.get("base") not in summary["scenarios"]:
        return None  # no compare.nc; or a compare.json that render_compare will name as malformed
    import h5netcdf

    names = list(summary["scenarios"])
    out: dict = {}
    try:
        with h5netcdf.File(nc, "r") as f:
            stored = [s.decode() if isinstance(s, bytes) else str(s) for s in f.variables["scenario"][:]]
            for metric in summary["scenarios"][summary["base"]]:
                if metric not in f.variables or set(names) - set(stored):
                    continue
                var = f.variables[metric]
                if tuple(var.dimensions) != ("scenario", "trial", "period"):
                    raise ValueError(f"`{metric}` has the dimensions {tuple(var.dimensions)}")
                values = np.asarray(var[:], dtype=float)
                totals = values[:, :, -1] if _is_stock(metric) else values.sum(axis=2)
                out[metric] = {name: totals[stored.index(name)] for name in names}
    except Exception as exc:  # whatever a corrupt or foreign file makes h5py raise
        detail = (str(exc).splitlines() or [""])[0]
        raise OutputError(f"{nc}: cannot be read as a comparison ({type(exc).__name__}: {printable(detail)})") from None
    if set(names) - set(stored):
        raise OutputError(f"{nc}: holds the scenarios {', '.join(map(printable, stored))}, not those of compare.json "
                          f"({', '.join(map(printable, names))}); run `forecaster compare` again")
    return out


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
