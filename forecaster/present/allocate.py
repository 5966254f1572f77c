"""What ``forecaster allocate`` shows: the console tables and the page of response curves
(``allocate.html``), from ``allocate.json``'s contents (:func:`forecaster.analysis.allocate.allocate`)."""
from __future__ import annotations

import sys

from forecaster.present.console import Console, _add_columns, _signed, as_text, printable
from forecaster.present.report import (
    FONT,
    PAD,
    PALETTE,
    H,
    W,
    _box,
    _legend,
    _line_swatch,
    _page,
    _scale,
    _series,
    _svg,
    _table,
    _ticks,
    _x_grid,
    _x_numeric,
    _x_title,
    _y_grid,
    _y_title,
    esc,
    legend_height,
)

_METRIC = {"revenue": "total revenue", "won_deals": "total won deals", "total_bookings": "total bookings"}


def money(x) -> str:
    """An amount of currency, whole: 214,844 (None: -)."""
    return "-" if x is None else f"{x:,.0f}"


def _fmt(summary: dict):
    if summary["metric"] == "won_deals":
        return lambda x: "-" if x is None else f"{x:,.1f}"
    return lambda x: "-" if x is None else f"{x:,.0f}"


def objective_label(summary: dict) -> str:
    """"expected total revenue" or "P10 of total revenue"."""
    metric = _METRIC[summary["metric"]]
    return f"expected {metric}" if summary["objective"] == "mean" else f"{summary['objective'].upper()} of {metric}"


def print_allocation(summary: dict, console: Console | None = None) -> None:
    """The best and current splits with their forecasts, the paired difference and the
    marginal returns, as tables."""
    from rich.table import Table
    from rich.text import Text

    console = console or Console(width=None if sys.stdout.isatty() else 140)
    fmt = _fmt(summary)
    cur = summary.get("currency") or "currency"
    unit = f" [{printable(summary['unit'])}]"
    console.print(Text.assemble(("allocate", "bold"), printable(
        f" {summary['scenario']}: {money(summary['total_budget'])} {cur} a month over "
        f"{len(summary['channels'])} bought segments, maximising the {objective_label(summary)} "
        f"({summary['trials']:,} trials, seed {summary['seed']})")), highlight=False, soft_wrap=True)
    table = Table(title=f"Monthly budget by segment [{printable(cur)} per month]", title_justify="left",
                  show_edge=False, pad_edge=False)
    _add_columns(table, ("segment", "left"), ("best", "right"), ("current (the file's)", "right"),
                 ("change", "right"), ("bounds", "right"))
    for ch in summary["channels"]:
        name = ch["segment"]
        b, c = summary["best"]["split"][name], summary["current"]["split"][name]
        bounds = f"{money(ch['min'])} – {money(ch['max']) if ch['max'] is not None else 'no max'}"
        table.add_row(as_text(name), money(b), money(c), _signed(money, b - c), bounds)
    table.add_row("total", money(sum(summary["best"]["split"].values())), money(summary["current"]["sum"]), "", "",
                  style="bold")
    console.print(table)
    table = Table(title=f"Forecast of {_METRIC[summary['metric']]} over the horizon{unit}", title_justify="left",
                  show_edge=False, pad_edge=False)
    _add_columns(table, ("split", "left"), ("mean", "right"), ("P10", "right"), ("P50", "right"), ("P90", "right"))
    for key in ("best", "current"):
        f = summary[key]["forecast"]
        table.add_row(key, fmt(f["mean"]), fmt(f["p10"]), fmt(f["p50"]), fmt(f["p90"]))
    console.print(table)
    d = summary["difference"]
    line = (f"best − current, paired trial by trial: {_signed(fmt, d['mean'])} "
            f"(95% CI {_signed(fmt, d['mean_ci_low'])} – {_signed(fmt, d['mean_ci_high'])}; "
            f"higher in {d['probability_higher']:.0%} of trials)")
    if "objective" in d:
        line += f"; {summary['objective'].upper()} {_signed(fmt, d['objective'])}"
    console.print(printable(line), highlight=False, soft_wrap=True)
    table = Table(title=f"Marginal return of {money(_step(summary))} {printable(cur)} more a month: the mean change of "
                        f"the total over the horizon{unit}",
                  title_justify="left", show_edge=False, pad_edge=False)
    _add_columns(table, ("segment (at its best budget)", "left"), ("change of the total (95% CI)", "right"),
                 (f"per 1 {printable(cur)} more a month (horizon total)", "right"))
    for name, m in summary["marginal_return"].items():
        table.add_row(as_text(name), f"{_signed(fmt, m['mean'])} ({_signed(fmt, m['mean_ci_low'])} – "
                                     f"{_signed(fmt, m['mean_ci_high'])})", f"{m['per_currency']:,.3g}")
    console.print(table)
    s = summary["search"]
    console.print(printable(f"search: {s['start']}, then {s['moves']} transfer{'s' * (s['moves'] != 1)} down to steps of "
                            f"{money(s['last_step'])}; {s['splits_evaluated']} splits evaluated with {s['runs']} runs "
                            f"({s['source_runs']} of one segment, {s['whole_runs']} whole) in {s['seconds']:.1f} s"),
                  style="dim", highlight=False, soft_wrap=True)
    for note in summary.get("notes", []):
        console.print(printable(f"note: {note}"), highlight=False, soft_wrap=True)


def _step(summary: dict) -> float:
    return next(iter(summary["marginal_return"].values()))["step"] if summary["marginal_return"] else 1000.0


def response_chart(name: str, curve: dict, currency: str, colour: str = PALETTE[0]) -> str:
    """A segment's expected leads a month against its monthly budget: the mean over the trials'
    draws (cost per lead, curve parameters), the P10–P90 band, and vertical marks at the
    current and best budgets."""
    budgets, mean, p10, p90 = curve["budget"], curve["mean"], curve["p10"], curve["p90"]
    legend = [(_line_swatch(colour), "expected leads a month (mean over trials)"),
              (_box(colour, 0.2), "P10–P90 over the trials' draws"),
              (_line_swatch("#666666", "6 3"), f"current budget {curve['current']:,.0f}"),
              (_line_swatch("#d62728"), f"best budget {curve['best']:,.0f}")]
    h, left, right = H + 40, PAD + 14, W - 16
    top, bottom = 22 + legend_height(legend, left), H - 6
    lo_x, hi_x = 0.0, max(budgets[-1], 1.0)
    hi_y = max(max(p90), max(mean), 1e-9) * 1.05
    x, y = _scale(lo_x, hi_x, left, right), _scale(0.0, hi_y, bottom, top)
    xt = [t for t in _ticks(lo_x, hi_x, 6) if t <= hi_x]
    yt = [t for t in _ticks(0.0, hi_y, 5) if t <= hi_y]
    title = f"{name}: expected leads a month against the monthly budget"
    out = [_svg("response", title, W, h), _y_grid(y, yt, left, right), _x_grid(x, xt, top, bottom)]
    band = ([f"{x(b):.1f},{y(v):.1f}" for b, v in zip(budgets, p90)]
            + [f"{x(b):.1f},{y(v):.1f}" for b, v in zip(reversed(budgets), reversed(p10))])
    out.append(f'<polygon {_series(legend[1][1])} points="{" ".join(band)}" fill="{colour}" fill-opacity="0.2"/>')
    out.append(f'<polyline {_series(legend[0][1])} fill="none" stroke="{colour}" stroke-width="2" points="'
               + " ".join(f"{x(b):.1f},{y(v):.1f}" for b, v in zip(budgets, mean)) + '"/>')
    for value, (_, label), stroke, dash in ((curve["current"], legend[2], "#666666", ' stroke-dasharray="6 3"'),
                                            (curve["best"], legend[3], "#d62728", "")):
        if lo_x <= value <= hi_x:
            out.append(f'<line class="mark" {_series(label)} x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top:.1f}" '
                       f'y2="{bottom:.1f}" stroke="{stroke}" stroke-width="2"{dash}><title>{esc(label)}</title></line>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom:.1f}" y2="{bottom:.1f}" stroke="#999"/>')
    out.append(_x_numeric(x, xt, bottom + FONT + 6) + _x_title(f"monthly budget [{currency} per month]", left, right,
                                                             H + 32)
               + _y_title("leads per month", top, bottom))
    out.append(_legend(legend, left, 16))
    out.append("</svg>")
    return "".join(out)


def render_allocation(summary: dict, when: str) -> str:
    """``allocate.html``: the splits, their forecasts and difference, the marginal returns, and
    each bought segment's response curve with the current and best budgets marked."""
    cur = summary.get("currency") or "currency"
    fmt = _fmt(summary)
    body = [f"<h1>Budget allocation of {esc(summary['scenario'])}</h1>",
            f'<p class="meta">{esc(money(summary["total_budget"]))} {esc(cur)} a month over the bought segments, '
            f'maximising the {esc(objective_label(summary))} · {summary["trials"]:,} trials · seed '
            f'{esc(summary["seed"])} · {esc(when)}</p>', "<h2>Monthly budgets</h2>"]
    rows = []
    for ch in summary["channels"]:
        name = ch["segment"]
        b, c = summary["best"]["split"][name], summary["current"]["split"][name]
        rows.append([name, money(b), money(c), _signed(money, b - c),
                     f"{money(ch['min'])} – {money(ch['max']) if ch['max'] is not None else 'no max'}"])
    body.append(_table(["segment", f"best [{cur}/month]", f"current [{cur}/month]", "change", "bounds"], rows))
    body.append(f"<h2>Forecast of {esc(_METRIC[summary['metric']])} [{esc(summary['unit'])}]</h2>")
    body.append(_table(["split", "mean", "P10", "P50", "P90"],
                       [[k, *(fmt(summary[k]["forecast"][q]) for q in ("mean", "p10", "p50", "p90"))]
                        for k in ("best", "current")]))
    d = summary["difference"]
    body.append(f"<p>Best − current, paired trial by trial: <b>{esc(_signed(fmt, d['mean']))}</b> (95% interval "
                f"{esc(_signed(fmt, d['mean_ci_low']))} – {esc(_signed(fmt, d['mean_ci_high']))}), higher in "
                f"{d['probability_higher']:.0%} of trials.</p>")
    body.append(f"<h2>Marginal return of the next {esc(money(_step(summary)))} {esc(cur)} a month</h2>")
    body.append(_table(["segment", f"change of the total [{summary['unit']}]", "95% CI"],
                       [[n, _signed(fmt, m["mean"]), f"{_signed(fmt, m['mean_ci_low'])} – {_signed(fmt, m['mean_ci_high'])}"]
                        for n, m in summary["marginal_return"].items()]))
    body.append("<h2>Response curves</h2>")
    body.append('<p class="meta">Expected leads a month at each monthly budget: the curve with each trial\'s draws '
                "of the cost per lead and the curve's parameters (before seasonality, growth, dispersion and "
                "shocks); the band holds 8 trials in 10.</p>")
    for i, (name, curve) in enumerate(summary["curves"].items()):
        body.append(f"<h3>{esc(name)}</h3>")
        body.append(response_chart(name, curve, cur, PALETTE[i % len(PALETTE)]))
    s = summary["search"]
    body.append(f'<p class="meta">Search: {esc(s["method"])}; {esc(s["start"])}, then {s["moves"]} transfer{"s" * (s["moves"] != 1)} down to '
                f'steps of {esc(money(s["last_step"]))}; {s["splits_evaluated"]} splits with {s["runs"]} runs in '
                f'{s["seconds"]:.1f} s.</p>')
    for note in summary.get("notes", []):
        body.append(f'<p class="meta">Note: {esc(note)}</p>')
    return _page(f"allocate {summary['scenario']}", body)
