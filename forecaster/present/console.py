"""The terminal summary a finance user reads at a glance, and the progress bar.

Every name that comes from a scenario (scenario, segment, stage, rep, variant, currency,
lever) reaches rich as :class:`rich.text.Text`, never as markup: a name like ``[/]`` or
``[link=...]`` is text, and control characters (ESC, bidi overrides, newlines) are shown
as visible escapes by :func:`printable`, so nothing from a scenario can drive the terminal.
"""
from __future__ import annotations

import errno
import os
import sys
import time
import unicodedata
from datetime import date
from typing import TYPE_CHECKING

from rich.console import Console as _RichConsole, JustifyMethod
from rich.table import Table
from rich.text import Text

from forecaster.calendar import period_name, with_fiscal_quarter
from forecaster.scenario.model import Scenario

if TYPE_CHECKING:  # the bars import rich.progress themselves, when one is shown
    from rich.progress import Progress, TaskID

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format (bidi), lone surrogates, line breaks


class TerminalWriteError(Exception):
    """Writing to stdout or stderr failed (a closed pipe, ``> /dev/full``): ``.errno``,
    ``.strerror`` and ``.stream`` ("stdout" or "stderr"). Not an OSError, so no handler of
    file errors mistakes it for one; :class:`forecaster.cli.ForecasterGroup` turns it into
    a quiet exit (a closed pipe) or a one-line error."""

    def __init__(self, exc: OSError, stream: str):
        super().__init__(f"cannot write to {stream}: {exc.strerror or exc}")
        self.errno, self.strerror, self.stream = exc.errno, exc.strerror or str(exc), stream


class Console(_RichConsole):
    """rich's Console whose write errors are :class:`TerminalWriteError`: rich's own answer
    to a closed pipe (exit status 1, silently, from wherever it happens) is replaced by
    forecaster's (see :class:`forecaster.cli.ForecasterGroup`)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    def _check_buffer(self) -> None:
        try:
            super()._check_buffer()
        except OSError as exc:
            self.quiet = True  # nothing more is written through this console
            raise TerminalWriteError(exc, "stderr" if self.stderr else "stdout") from None


def printable(value, newlines: bool = False) -> str:
    """``value`` as text a terminal, a page or a file name shows literally: every control
    character (ESC, BEL, CR, tab...), format character (bidi overrides, zero-width marks),
    lone surrogate and line or paragraph separator becomes a visible escape such as
    ``\\x1b`` or ``\\u202e``. ``newlines`` keeps ``\\n`` (for multi-line messages)."""
    text = str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n" and newlines:
            out.append(ch)
        elif unicodedata.category(ch) in _HIDDEN:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def as_text(value) -> Text:
    """A name from a scenario as rich Text: never read as markup or emoji, no control codes."""
    return Text(printable(value))


def _money(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}"


def _count(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.1f}" if abs(x) < 1000 else f"{x:,.0f}"


def _add_columns(table: Table, *columns: tuple[str, JustifyMethod]) -> None:
    """Columns by (header, justification)."""
    for col, just in columns:
        table.add_column(col, justify=just, overflow="fold")


def _metric_table(title: str, metric: dict, fmt, horizon: dict | None = None) -> Table:
    table = Table(title=as_text(title), title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("period")
    for col in ("mean", "95% CI of mean", "P10", "P50", "P90"):
        table.add_column(col, justify="right", overflow="fold")
    h = horizon or {}
    rows = [(with_fiscal_quarter(item["period"], h.get("report_by", ""), h.get("fiscal_year_start")), item)
            for item in metric["by_period"]] + [("total", metric["total"])]
    for i, (label, s) in enumerate(rows):
        table.add_row(as_text(label), fmt(s["mean"]), f"{fmt(s['mean_ci_low'])} – {fmt(s['mean_ci_high'])}",
                      fmt(s["p10"]), fmt(s["p50"]), fmt(s["p90"]), end_section=i == len(rows) - 2,
                      style="bold" if label == "total" else None)
    return table


def quota_chances(rep: dict, horizon: dict, sep: str = ", ", colon: str = ":") -> str:
    """A rep's chances of reaching quota (``rep``: its summary.json item), each named by its
    commission period when there are several (``Q1 2027: 54%, Q2 2027: 21%``; ``FY28 Q1``
    with a fiscal year); one chance alone is just the percentage."""
    chances = rep["quota_attainment"]
    kind = horizon.get("commission_period")
    if len(chances) == 1 or not kind:
        return " / ".join(f"{a['probability']:.0%}" for a in chances)
    return sep.join(f"{_period_of(a['period'], kind, horizon)}{colon} {a['probability']:.0%}" for a in chances)


def within_noise(share: dict) -> bool:
    """Whether a variance share (an item of ``variance_shares``) is below its ``share_noise``
    (:func:`forecaster.analysis.sensitivity._first_order`): not told from zero. A summary
    written before the noise was kept has none, and says nothing."""
    noise = share.get("share_noise")
    return noise is not None and share["share"] < noise


def quota_heading(horizon: dict) -> str:
    """The heading of a rep's quota: per commission period, as the
    scenario's ``commission.period`` sets it (``quota/quarter``), since the other columns are
    over the horizon."""
    kind = horizon.get("commission_period")
    return f"quota/{kind}" if kind else "quota"


def _period_of(label: str, kind: str, horizon: dict) -> str:
    try:
        return period_name(date.fromisoformat(label), kind, horizon.get("fiscal_year_start"))
    except (TypeError, ValueError):
        return label


def print_summary(summary: dict, scenario: Scenario, console: Console | None = None) -> None:
    """Print per-period and total revenue, won deals, commission per rep and targets."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    cur = f" [{printable(scenario.currency)}]" if scenario.currency else ""
    h = summary["horizon"]
    console.print(Text.assemble((printable(summary["scenario"]), "bold"),
                                printable(f": {summary['trials']:,} trials, seed {summary['seed']}, "
                                          f"{h['start']} to {h['end']}, by {h['report_by']}")), highlight=False)
    m = summary["metrics"]
    console.print(_metric_table(f"Revenue{cur}", m["revenue"], _money, h))
    console.print(_metric_table("Won deals", m["won_deals"], _count, h))
    if any(name in m for name in AFTER_SALE):
        print_after_sale(summary, console)
    if "ratios" in summary:  # v2 E.3
        print_spend(summary, cur, console)
    elif "leads" in m:
        console.print(_metric_table("Leads", m["leads"], _count, h))
    if "commission" in m:
        console.print(_metric_table(f"Commission, all reps{cur}", m["commission"], _money, h))
    if "reps" in summary and "commission" in m:
        table = Table(title=as_text(f"Commission by rep{cur}"), title_justify="left", show_edge=False, pad_edge=False)
        _add_columns(table, ("rep", "left"), (quota_heading(h), "right"), ("bookings P50", "right"),
                     ("commission mean", "right"),
                     ("P10", "right"), ("P50", "right"), ("P90", "right"), ("P(reach quota)", "right"))
        for name, r in summary["reps"].items():
            c = r["commission"]["total"]
            chances = quota_chances(r, h, sep=" · ", colon="")
            table.add_row(as_text(name), _money(r["quota"]), _money(r["bookings"]["total"]["p50"]), _money(c["mean"]),
                          _money(c["p10"]), _money(c["p50"]), _money(c["p90"]), chances)
        console.print(table)
        several = any(len(r["quota_attainment"]) > 1 for r in summary["reps"].values())
        console.print((f"Quota is per {h['commission_period']}; bookings and commission are over the whole "
                       "horizon." if h.get("commission_period") else "Bookings and commission are over the whole "
                       "horizon.")
                      + (" P(reach quota) is given for each commission period, named by its first month."
                         if several else ""), style="dim")
        print_commission_extras(summary, cur, console)  # v2 D
    if summary.get("targets"):
        table = Table(title="Targets", title_justify="left", show_edge=False, pad_edge=False)
        _add_columns(table, ("metric", "left"), ("threshold", "right"), ("P(total >= threshold)", "right"))
        for metric, t in summary["targets"].items():
            table.add_row(as_text(metric), _money(t["threshold"]), f"{t['probability']:.1%}")
        console.print(table)


EXTRA_COLUMNS = (("spif", "spif"), ("clawback", "clawback"), ("clawback_after_end", "clawback after end"),
                 ("net_commission", "net commission"), ("payout", "payout"), ("draw_balance", "draw owed at end"))
"""v2 D: the per-rep columns of the commission extras' table (summary key, heading)."""


def print_commission_extras(summary: dict, cur: str, console: Console) -> None:
    """v2 D: each rep's spif, clawback, net commission, payout and draw balance (means over
    trials, totals over the horizon), the draws and the chance that net earnings fall below
    them; the plan's commission expense. Nothing for a plan without the extras."""
    reps = summary.get("reps", {})
    shown = [(key, head) for key, head in EXTRA_COLUMNS if any(key in r for r in reps.values())]
    drawn = any("draw" in r for r in reps.values())
    if shown or drawn:
        table = Table(title=as_text(f"Commission extras by rep, means over the horizon{cur}"), title_justify="left",
                      show_edge=False, pad_edge=False)
        _add_columns(table, ("rep", "left"), *((head, "right") for _, head in shown),
                     *((("draws", "right"), ("P(net < draws)", "right")) if drawn else ()))
        for name, r in reps.items():
            cells = [_money(r[key]["total"]["mean"]) if key in r else "" for key, _ in shown]
            if drawn:
                draw = r.get("draw")
                cells += [_money(draw["total"]), f"{draw['probability_net_below']:.1%}"] if draw else ["", ""]
            table.add_row(as_text(name), *cells)
        console.print(table)
    m, h = summary["metrics"], summary["horizon"]
    if "commission_expense" in m:
        console.print(_metric_table(f"Commission expense, all reps{cur}", m["commission_expense"], _money, h))


def _price(x: float | None) -> str:
    """An amount per lead or per deal: cents below 100."""
    return "-" if x is None else f"{x:,.2f}" if abs(x) < 100 else _money(x)


_RATIOS = (("spend_per_lead", "spend per lead", _price), ("cac", "CAC", _price), ("roi", "ROI", None),
           ("roi_total", "ROI on total bookings", None))


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0%}"


def print_spend(summary: dict, cur: str, console: Console) -> None:
    """v2 E.3: leads and spend by period, then spend per lead, CAC and ROI, all segments and
    by segment (mean and P10–P90 over the trials where each is defined)."""
    m, h = summary["metrics"], summary["horizon"]
    console.print(_metric_table("Leads", m["leads"], _count, h))
    console.print(_metric_table(f"Spend{cur}", m["spend"], _money, h))
    ratios = summary["ratios"]
    table = Table(title=as_text(f"Returns on spend{cur}"), title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("segment")
    names = [(key, label, fmt or _ratio) for key, label, fmt in _RATIOS if key in ratios]
    for _, label, _ in names:
        table.add_column(f"{label}\nmean (P10 – P90)", justify="right", overflow="fold")
    segments = list(next(iter(ratios.values()))["by_segment"])
    undefined = False
    for name in [None, *segments]:
        cells = []
        for key, _, fmt in names:
            item = ratios[key] if name is None else ratios[key]["by_segment"][name]
            undefined = undefined or item["undefined"] > 0
            cells.append("-" if item["mean"] is None else
                         f"{fmt(item['mean'])} ({fmt(item['p10'])} – {fmt(item['p90'])})")
        table.add_row(as_text("all" if name is None else name), *cells, style="bold" if name is None else None,
                      end_section=name is None)
    console.print(table)
    if undefined:
        console.print("A ratio leaves out the trials where its denominator is 0 (summary.json: undefined).",
                      style="dim")


AFTER_SALE = ("recognised_revenue", "total_bookings", "renewal_bookings", "repeat_revenue", "stage_revenue",
              "cancellations", "active_customers", "mrr", "new_customers", "churned_customers")
"""The after-sale metrics (v2 A.3, and F11's stage revenue) the console shows, when a run has
them (all of them with customers; ``total_bookings`` and ``stage_revenue`` alone with F11)."""
_MONEY_FLOWS = (("recognised_revenue", "recognised\nrevenue"), ("total_bookings", "total\nbookings"),
                ("renewal_bookings", "renewals"), ("repeat_revenue", "repeat\nrevenue"),
                ("stage_revenue", "stage\nrevenue"), ("cancellations", "cancellations"))
_MAY_BE_LEFT_OUT = {"renewal_bookings": "renewals", "repeat_revenue": "repeat revenue",
                    "stage_revenue": "stage revenue", "cancellations": "cancellations", "mrr": "MRR"}
"""Columns left out when 0 in every trial, by the name a note gives them (stage revenue, a
key few files use, is left out without a note)."""


def _all_zero(metric: dict) -> bool:
    """Whether a metric is 0 in every trial and period (MRR without subscriptions,
    cancellations without ``cancel``...)."""
    return all(s.get(k) == 0 for s in (metric["total"], *metric["by_period"]) for k in ("mean", "p5", "p95"))


def _mean_and_range(s: dict, fmt, spread: bool = True) -> Text:
    """A cell: the mean and, below it (dim), P10 – P90."""
    cell = Text(fmt(s["mean"]))
    if spread:
        cell.append(f"\n{fmt(s['p10'])} – {fmt(s['p90'])}", style="dim")
    return cell


def _by_period_table(title: str, m: dict, columns: list, periods: list, stocks: set) -> Table:
    """Rows by period then a bold total row; ``columns``: (metric, header, format, with P10 – P90).
    A stock's total cell is empty: its level at the end is the last period's."""
    table = Table(title=as_text(title), title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("period")
    for _, header, _, _ in columns:  # headers of known words, the currency already printable: newlines kept
        table.add_column(Text(header), justify="right", overflow="fold")
    for i, label in enumerate(periods):
        table.add_row(as_text(label), *(_mean_and_range(m[name]["by_period"][i], fmt, spread)
                                        for name, _, fmt, spread in columns))
    table.add_section()
    table.add_row(Text("total", style="bold"), *(Text("") if name in stocks else _mean_and_range(m[name]["total"], fmt,
                                                                                                 spread)
                                                 for name, _, fmt, spread in columns))
    return table


def _fits(console: Console, table: Table) -> bool:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(1 << 16), table).maximum <= console.width


def print_after_sale(summary: dict, console: Console) -> None:
    """The after-sale outputs (v2 A.3) by period: the money flows in each period
    (recognised revenue, total bookings, renewals, repeat revenue, cancellations: the mean
    with P10 – P90 below, and the total over the horizon), then the customers (active
    customers and MRR at each period's end, stocks; new and churned customers in the period).

    The money table is split in two (recognised revenue and total bookings; renewals,
    repeat revenue, stage revenue and cancellations) when it is wider than the console. A
    renewals, repeat revenue, cancellations or MRR column that is 0 in every trial (no
    subscription, repeat buyer or ``cancel`` in the scenario) is left out, and a note says so;
    so is a stage revenue column (F11), without a note. A run with F11's values and no
    customers has the money table alone."""
    from forecaster.results.layout import AFTER_SALE_VARIABLES  # here: a run without customers never loads it

    stocks = {name for name, (kind, _, _) in AFTER_SALE_VARIABLES.items() if kind == "stock"}
    m, h = summary["metrics"], summary["horizon"]
    cur = f" [{printable(h['currency'])}]" if h.get("currency") else ""
    per = printable(h["report_by"])
    left_out = [name for name in _MAY_BE_LEFT_OUT if name in m and _all_zero(m[name])]
    periods = [p["period"] for p in m[next(name for name in AFTER_SALE if name in m)]["by_period"]]

    console.print(Text.assemble(("After the sale", "bold"), f"{cur}: each {per}'s mean, with P10 – P90 below it"),
                  highlight=False)
    money = [(name, label, _money, True) for name, label in _MONEY_FLOWS if name in m and name not in left_out]
    if money:
        table = _by_period_table(f"Money in each {per}", m, money, periods, stocks)
        if _fits(console, table) or len(money) <= 2:
            console.print(table)
        else:
            console.print(_by_period_table(f"Recognised revenue and bookings in each {per}", m, money[:2], periods,
                                           stocks))
            console.print(_by_period_table(f"Bookings besides new deals in each {per}", m, money[2:], periods,
                                           stocks))
        shown = {name for name, *_ in money}
        bridge = " + ".join(["new deals (Revenue above)", *(_MAY_BE_LEFT_OUT[name] for name, _ in _MONEY_FLOWS[2:5]
                                                              if name in shown)])
        if "cancellations" in shown:
            bridge += " − cancellations"
        spread = ("; recognised revenue spreads each booking over the time it pays for"
                  if "recognised_revenue" in shown else "")
        console.print(as_text(f"total bookings = {bridge}{spread}."), style="dim", highlight=False)

    customers = [(name, label, fmt, spread) for name, label, fmt, spread in (
        ("active_customers", f"active customers\nat {per} end", _count, True),
        ("mrr", f"MRR{cur}\nat {per} end", _money, True),
        ("new_customers", "new\ncustomers", _count, False), ("churned_customers", "churned\ncustomers", _count, False))
        if name in m and name not in left_out]
    if customers:
        console.print(_by_period_table("Customers", m, customers, periods, stocks))
        console.print(as_text(f"Active customers and MRR are levels at the end of each {per} (the last {per}'s is the "
                              f"level at the end, {h['end']}); new and churned customers are counts in the {per}, "
                              "totalled over the horizon."), style="dim", highlight=False)
    noted = [_MAY_BE_LEFT_OUT[name] for name in left_out if name != "stage_revenue"]
    if noted:
        console.print(as_text(f"Left out, 0 in every trial: {', '.join(noted)}."), style="dim", highlight=False)
    if summary.get("clv"):
        table = Table(title=f"Customer lifetime value{cur}", title_justify="left")
        _add_columns(table, ("segment", "left"), ("mean", "right"), ("P10", "right"), ("P50", "right"),
                     ("P90", "right"))
        for seg, st in summary["clv"].items():
            table.add_row(as_text(seg), *(_money(st[k]) for k in ("mean", "p10", "p50", "p90")))
        console.print(table)
        console.print(as_text("One customer's expected discounted net bookings from its win; its spread is the "
                              "uncertainty of the after-sale rates, not one customer's luck."), style="dim",
                      highlight=False)


def _signed(fmt, x):
    return "-" if x is None else ("+" if x > 0 else "") + fmt(x)


def print_comparison(summary: dict, currency: str | None, console: Console | None = None) -> None:
    """Each metric's total per scenario, and each variant's paired difference from the base."""
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    cur = f" [{printable(currency)}]" if currency else ""
    console.print(Text.assemble(("compare", "bold"), printable(
        f": base {summary['base']}, {summary['trials']:,} trials, seed {summary['seed']}, common random numbers")),
        highlight=False)
    base = summary["base"]
    for metric in summary["scenarios"][base]:
        fmt = _count if metric == "won_deals" else _money
        title = {"revenue": f"Revenue{cur}", "won_deals": "Won deals", "commission": f"Commission{cur}"}[metric]
        table = Table(title=as_text(f"{title}, total over the horizon"), title_justify="left", show_edge=False,
                      pad_edge=False)
        _add_columns(table, ("scenario", "left"), ("mean", "right"), ("difference (95% CI)", "right"),
                     ("P10 / P50 / P90 of difference", "right"), ("P(higher)", "right"),
                     ("CI if independent", "right"))
        for name, scen in summary["scenarios"].items():
            s = scen[metric]["total"]
            if name == base:
                table.add_row(as_text(name), fmt(s["mean"]), "base", "", "", "")
                continue
            d = summary["differences"][name][metric]["total"]
            table.add_row(as_text(name), fmt(s["mean"]),
                          f"{_signed(fmt, d['mean'])} ({_signed(fmt, d['mean_ci_low'])} – {_signed(fmt, d['mean_ci_high'])})",
                          f"{_signed(fmt, d['p10'])} / {_signed(fmt, d['p50'])} / {_signed(fmt, d['p90'])}",
                          f"{d['probability_higher']:.0%}",
                          "±" + fmt(d["unpaired_ci_half_width"]) if d["unpaired_ci_half_width"] is not None else "-")
        console.print(table)
    if summary.get("targets"):
        console.print(_targets_table(summary, currency))


def _points(x: float | None) -> str:
    """A change of probability in percentage points: +32.7 pp."""
    return "-" if x is None else f"{x * 100:+.1f} pp"


def _targets_table(summary: dict, currency: str | None) -> Table:
    """Each scenario's probability of reaching each of the base's targets over the horizon, and
    each variant's change from the base's (paired, with its 95% interval)."""
    table = Table(title=as_text(f"Targets of {summary['base']}: P(reaching each over the horizon)"),
                  title_justify="left", show_edge=False, pad_edge=False)
    _add_columns(table, ("target", "left"), ("scenario", "left"), ("P(reach)", "right"),
                 ("change from base (95% CI)", "right"))
    for metric, t in summary["targets"].items():
        unit = "" if metric == "won_deals" or metric.endswith("_customers") else f" {printable(currency)}" if currency else ""
        what = as_text(f"{metric} ≥ {_money(t['threshold'])}{unit}")
        for name, p in t["probability"].items():
            d = t["difference"].get(name)
            change = "base" if name == summary["base"] else "-" if d is None else (
                f"{_points(d['mean'])} ({_points(d['mean_ci_low'])} to {_points(d['mean_ci_high'])})")
            table.add_row(what, as_text(name), f"{p:.1%}", change)
            what = Text("")
    return table


def print_sensitivity(summary: dict, console: Console | None = None) -> None:
    """The tornado table, the three moves side by side, and the variance shares."""
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    step = f"{summary['step']:.0%}"
    base = summary["base"]["revenue"]
    console.print(Text.assemble(("sensitivity", "bold"), printable(
        sensitivity_heading(summary, f"base revenue {_money(base['mean'])}"))), highlight=False)

    def cell(effect):
        if effect is None:
            return "-"
        r = effect["revenue"]
        return f"{_signed(_money, r['mean'])} ({_signed(_money, r['mean_ci_low'])} – {_signed(_money, r['mean_ci_high'])})"

    table = Table(title="Effect on total revenue, largest first", title_justify="left", show_edge=False,
                  pad_edge=False)
    _add_columns(table, ("lever", "left"), (f"-{step} (95% CI)", "right"), (f"+{step} (95% CI)", "right"))
    by_name = {e["lever"]: e for e in summary["levers"]}
    for name in summary["ranking"]:
        e = by_name[name]
        table.add_row(as_text(lever_label(name, summary)), cell(e.get("minus")), cell(e.get("plus")))
    console.print(table)
    table = Table(title=f"The three moves, each +{step}", title_justify="left", show_edge=False, pad_edge=False)
    _add_columns(table, ("move", "left"), ("lever", "left"), ("revenue (95% CI)", "right"), ("won deals", "right"))
    for move, label in (("expansion", "expansion: more leads at the top"),
                        ("stretching", "stretching: every stage converts better"),
                        ("key_level", "key level: the one stage that pays most")):
        m = summary["three_moves"][move]
        won = m.get("won_deals")
        table.add_row(label, as_text(move_lever(m)), cell(m if "revenue" in m else None) if "skipped" not in m
                      else "skipped", _signed(_count, won["mean"]) if won else "-")
    console.print(table)
    if summary["variance_shares"]:
        table = Table(title="Share of the variance of total revenue (first-order Sobol index)", title_justify="left",
                      show_edge=False, pad_edge=False)
        table.add_column("per-trial input")
        table.add_column("share", justify="right", overflow="fold")
        table.add_column("within noise", justify="right", overflow="fold")
        for item in summary["variance_shares"]:
            table.add_row(as_text(item["input"]), f"{item['share']:.1%}",
                          f"below {item['share_noise']:.1%}" if within_noise(item) else "")
        rest = 1 - sum(i["share"] for i in summary["variance_shares"])
        table.add_row("the rest: counting and per-deal noise, interactions", f"{max(rest, 0):.1%}", "", style="dim")
        console.print(table)
        if any(map(within_noise, summary["variance_shares"])):
            console.print("within noise: below what an input with no effect reaches about 3 times in 100 at these "
                          "trials; not told from zero (more trials narrow it)", style="dim")
    print_sensitivity_notes(summary, console)


def sensitivity_heading(summary: dict, base: str) -> str:
    """The first line of a sensitivity: the scenario, the steps, trials, seed and ``base``."""
    step = f"{summary['step']:.0%}"
    mode = summary.get("convert_step", "relative")
    how = {"odds": f" (conversions: odds x {1 - summary['step']:g} / x {1 + summary['step']:g})",
           "points": f" (conversions: -{summary['step'] * 100:g} / +{summary['step'] * 100:g} points)"}.get(mode, "")
    return (f" of {summary['scenario']}: each lever -{step} / +{step}{how}, {summary['trials']:,} trials, "
            f"seed {summary['seed']}; {base}")


def move_lever(move: dict) -> str:
    """A three moves row's lever: its name, whether it is a tie and whether it was capped at 1
    (v2 F9; print_sensitivity_notes says more)."""
    tied = move.get("tied") or []
    notes = ([f"a tie of {len(tied)}"] if len(tied) > 1 else []) + (["capped at 1"] if move.get("capped") else [])
    return f"{move.get('lever')} ({', '.join(notes)})" if notes else str(move.get("lever"))


def lever_label(name: str, summary: dict) -> str:
    """A tornado row's lever: its name, marked where one of its quantities was capped at 1."""
    return f"{name} (capped)" if any(c["lever"] == name for c in summary.get("capped", ())) else name


def print_sensitivity_notes(summary: dict, console: Console) -> None:
    """What a sensitivity's tables leave to words: a key level that is a tie, quantities capped
    at 1, levers skipped, notes on levers (v2 F2's events), stage levers the key level could
    not compare; and, with ``outputs: {stage_value: true}``, the stage value table (v2 F9)."""
    step = f"{summary['step']:.0%}"
    key = summary["three_moves"].get("key_level", {})
    if key.get("tied"):
        console.print(as_text(
            f"The key level is a tie: {', '.join(key['tied'])} pay the same (within 1e-9). With relative steps "
            "and no open pipeline, every stage's step multiplies the won deals by the same factor; "
            "--convert-step points or --convert-step odds tells the stages apart."
            if summary.get("convert_step", "relative") == "relative" else
            f"The key level is a tie: {', '.join(key['tied'])} pay the same (within 1e-9)."), highlight=False)
    capped: dict[tuple, list] = {}  # one line per quantity and step, naming every lever it was capped in
    for item in summary.get("capped", []):
        capped.setdefault((item["direction"], item["quantity"], item["why"]), []).append(item["lever"])
    for (direction, quantity, why), levers in capped.items():
        console.print(as_text(f"capped at 1 ({direction}{step}) in {', '.join(levers)}: {quantity} {why}"),
                      highlight=False)
    for item in summary["skipped"]:
        console.print(as_text(f"skipped {item['lever']} ({item['direction']}{step}): {item['why']}"), style="dim",
                      highlight=False)
    for item in summary.get("notes", []):  # v2 F2: what a leads lever does not scale
        console.print(as_text(f"note on {item['lever']}: {item['note']}"), style="dim", highlight=False)
    if key.get("skipped"):
        console.print(as_text(f"the key level was chosen without {', '.join(key['skipped'])}, which could not "
                              f"move +{step}"), highlight=False)
    if summary.get("stage_value"):
        console.print(stage_value_table(summary["stage_value"], summary.get("currency")))


def stage_value_table(table: dict, currency: str | None) -> Table:
    """``stage_value``: each segment's stages, the eventual win probability of a deal entering
    it and its worth (mean, P10, P90 over trials)."""
    cur = f" [{printable(currency)}]" if currency else ""
    out = Table(title=as_text(f"Stage value: what a deal now entering each stage is worth{cur}"),
                title_justify="left", show_edge=False, pad_edge=False)
    _add_columns(out, ("segment", "left"), ("stage", "left"), ("win probability", "right"), ("P10 – P90", "right"),
                 ("value", "right"), ("value P10 – P90", "right"))
    for segment, stages in table.items():
        name = as_text(segment)
        for stage, item in stages.items():
            h, v = item["win_probability"], item["value"]

            def chance(x):
                return "-" if x is None else f"{x:.2%}"

            out.add_row(name, as_text(stage), chance(h["mean"]), f"{chance(h['p10'])} – {chance(h['p90'])}",
                        _money(v["mean"]), f"{_money(v['p10'])} – {_money(v['p90'])}")
            name = Text("")
    return out


def _description():
    """A progress bar's description column that shows the text as it is (no markup, no emoji)."""
    from rich.progress import TextColumn

    return TextColumn("{task.description}", style="progress.description", markup=False)


class LazyProgress:
    """A progress bar on stderr that appears only if a run lasts longer than a moment."""

    def __init__(self, total: int, label: str, enabled: bool, delay: float = 0.5):
        self.total, self.label, self.enabled, self.delay = total, label, enabled, delay
        self.done = 0
        self.t0 = time.monotonic()
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is None and time.monotonic() - self.t0 >= self.delay and self.done < self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.bar = Progress(_description(), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(printable(self.label), total=self.total, completed=self.done)
        elif self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BatchProgress:
    """Scenario n of N, and the trials of the current one, on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Progress | None = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress

            self.bar = Progress(_description(), BarColumn(), MofNCompleteColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.overall = self.bar.add_task("scenarios", total=None)
            self.current = self.bar.add_task("trials", total=None)
        return self

    def start(self, index: int, total: int, name: str) -> None:
        if self.bar:
            self.bar.update(self.overall, completed=index, total=total,
                            description=f"scenario {index + 1} of {total}")
            self.bar.reset(self.current, description=printable(name), total=None)

    def advance(self, n: int) -> None:
        if self.bar:
            self.bar.advance(self.current, n)

    def line(self, text: str) -> None:
        """``text`` printed above the live bar (on its terminal), which then redraws below it."""
        if self.bar:
            self.bar.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


def print_backtest(result: dict, console: Console | None = None) -> None:
    """Coverage and scores of forecaster beside every baseline, averaged over cutoffs; then
    forecaster's paired CRPS difference from each baseline with its 90% bootstrap interval
    (negative: forecaster better), and the histogram of its months' PIT values."""
    # imported here: every command loads this module, and a run does not read histories
    from forecaster.history.baselines import LABELS, MONTH_BASELINES

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    n = len(result["cutoffs"])
    console.print(Text.assemble(("backtest", "bold"), printable(
        f": {n} cutoff{'s' * (n != 1)}, {', '.join(str(c['cutoff']) for c in result['cutoffs'])}"
        + (f" (skipped, too early to calibrate on: {', '.join(x['cutoff'] for x in result['skipped'])})"
           if result.get("skipped") else ""))), highlight=False)

    def share(x):
        return "-" if x is None else f"{x:.0%}"

    for metric, avg in result["average"].items():
        fmt = _count if metric == "won_deals" else _money
        unit = "deals" if metric == "won_deals" else result.get("currency") or "revenue"
        naive = avg["seasonal_naive"]
        table = Table(title=as_text(f"{metric}: averages over cutoffs (CRPS and bias in {unit} a month or a horizon)"),
                      title_justify="left", show_edge=False, pad_edge=False)
        fair = f"CRPS month, where the seasonal naive has data ({naive['months_naive_has_data']})"
        _add_columns(table, ("method", "left"), ("coverage 50 / 80 / 90% (month)", "right"), ("80% (total)", "right"),
                     ("CRPS month", "right"), (fair, "right"), ("CRPS total", "right"), ("bias month", "right"))
        for method in ("forecaster", *MONTH_BASELINES):
            m = avg.get(method)
            if m is None:  # a backtest.json written before this baseline existed
                continue
            coverage = ("-", "-")
            if "coverage_p10_p90_month" in m:
                coverage = (" / ".join(share(m.get(f"coverage_{k}_month")) for k in ("p25_p75", "p10_p90", "p5_p95")),
                            share(m.get("coverage_p10_p90_total")))
            table.add_row(LABELS[method], *coverage, fmt(m["crps_month"]), fmt(m["crps_month_naive_has_data"]),
                          fmt(m["crps_total"]), _signed(fmt, m["bias_month"]))
        table.add_row(LABELS["weighted_pipeline"], "-", "-", "-", "-", fmt(avg["weighted_pipeline"]["crps_total"]), "-")
        console.print(table)
        for base, p in avg.get("paired", {}).items():
            what, diff = ("CRPS month", p["crps_month_diff"]) if "crps_month_diff" in p else ("CRPS total",
                                                                                            p["crps_total_diff"])
            lo, hi = p["ci90"]
            console.print(f"  forecaster − {LABELS[base]}: {what} {_signed(fmt, diff)} "
                          f"(90% CI {_signed(fmt, lo)} to {_signed(fmt, hi)}, bootstrap over {p['cutoffs']} cutoffs)",
                          highlight=False)
        pit = avg["forecaster"].get("pit_histogram")
        if pit:
            console.print(f"  PIT of the actuals in forecaster's months, 10 bins from 0 to 1: {' '.join(map(str, pit))} "
                          f"(calibrated: about {sum(pit) / len(pit):.1f} a bin)", highlight=False)
