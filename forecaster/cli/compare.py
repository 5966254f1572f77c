"""``forecaster compare``: variants against a base, on common random numbers."""
from __future__ import annotations

import click

from forecaster.cli import main
from forecaster.cli.options import (
    export_option,
    out_option,
    quiet_option,
    seed_option,
    threads_option,
    trials_option,
)


@main.command("compare")
@click.argument("base", type=click.Path(dir_okay=False, path_type=str), is_eager=True)  # named by option errors
@click.argument("variants", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@out_option("compare.json and compare.nc")
@trials_option
@seed_option
@threads_option
@export_option
@quiet_option
def compare_command(base, variants, out, trials, seed, threads, export, quiet):
    """Compare VARIANTS with BASE: the difference of each metric, with its interval.

    A variant is a whole scenario, or a variant file of changes to BASE (`set:` and
    `scale:` by key path, see the README). All run with BASE's seed and trials on common
    random numbers, so each difference is paired trial by trial. Writes DIR/compare.json
    (summaries and differences, in total and by period) and DIR/compare.nc (every trial,
    with a `scenario` dimension). --export csv,xlsx,parquet also writes the tables as CSV
    (compare-tables/*.csv) and a workbook (compare.xlsx), and every trial as Parquet
    (compare-trials.parquet), published with the other files.

    Scenarios with customers (a segment's `customer` block) are compared on the after-sale
    outputs too (recognised revenue, renewals, repeat purchases, cancellations, total
    bookings, customer counts, active customers and MRR at the end) when every scenario has
    them. A variant that changes only the `customer` keys shares every draw of the deals
    with its base: its revenue and won deals differ by exactly 0.

    \b
    Example:
      forecaster compare scenarios/saas-quarter.yaml scenarios/variants/saas-budget-up-60.yaml --out out/cmp
    """
    from forecaster.analysis.compare import compare, compare_summary
    from forecaster.cli.options import warn_implausible
    from forecaster.present.console import print_comparison
    from forecaster.results.files import check_out, check_targets
    from forecaster.results.outputs import write_comparison
    from forecaster.scenario.loading import load_scenario
    from forecaster.scenario.variants import load_variant

    if check_out(out):  # before the work, so a mistyped --out costs nothing
        check_targets(out, ("compare.nc", "compare.json"))
    base_sc = load_scenario(base)
    others = [load_variant(v, base) for v in variants]
    said = warn_implausible(base_sc)
    for sc in others:  # a variant's own: what the base already said is not said again under its name
        warn_implausible(sc, skip=said)
    ds = compare(base_sc, others, trials=trials, seed=seed, threads=threads)
    summary = compare_summary(ds)
    if export:
        from forecaster.present.export import write_comparison_with_exports
        exported = write_comparison_with_exports(out, ds, summary, export, kind="compare", currency=base_sc.currency)
    else:
        write_comparison(out, ds, summary)
    if not quiet:
        print_comparison(_v1_view(summary), base_sc.currency)
        _print_after_sale(summary, base_sc.currency)
        click.echo(f"Wrote {out}/compare.json and {out}/compare.nc")
        if export:
            from forecaster.cli.run import _listing
            click.echo(f"Exported {_listing(out, exported)}")


V1_METRICS = ("revenue", "won_deals", "commission")

AFTER_SALE_PRINTED = {
    # metric: (title, kind); printed when some scenario has a non-zero value
    "recognised_revenue": ("Recognised revenue", "total over the horizon"),
    "total_bookings": ("Total bookings", "total over the horizon"),
    "renewal_bookings": ("Renewal bookings", "total over the horizon"),
    "repeat_revenue": ("Repeat revenue", "total over the horizon"),
    "cancellations": ("Cancellations", "total over the horizon"),
    "active_customers": ("Active customers", "at the end of the horizon"),
    "mrr": ("MRR", "at the end of the horizon"),
    "leads": ("Leads", "total over the horizon"),  # v2 E.3
    "spend": ("Spend", "total over the horizon"),
    "spif": ("SPIFs", "total over the horizon, all reps"),  # v2 D
    "clawback": ("Clawbacks", "total over the horizon, all reps"),
    "net_commission": ("Net commission (commission + spif - clawback)", "total over the horizon, all reps"),
    "payout": ("Payout (with draws)", "total over the horizon, all reps"),
    "commission_expense": ("Commission expense", "total over the horizon"),
}


def _v1_view(summary: dict) -> dict:
    """``summary`` with only revenue, won deals and commission (what the console's comparison
    table knows how to title)."""
    def keep(item: dict) -> dict:
        return {m: v for m, v in item.items() if m in V1_METRICS}

    return {**summary, "scenarios": {n: keep(v) for n, v in summary["scenarios"].items()},
            "differences": {n: keep(v) for n, v in summary["differences"].items()}}


def _print_after_sale(summary: dict, currency: str | None) -> None:
    """The after-sale metrics' tables, leads and spend (v2 E.3) and the commission extras
    (v2 D), as the console prints revenue's (those that are 0 in every scenario and trial are
    left out)."""
    import sys

    from rich.table import Table

    from forecaster.present.console import Console, _add_columns, _count, _money, _signed, as_text, printable

    base = summary["base"]
    cur = f" [{printable(currency)}]" if currency else ""
    console = None
    for metric, (title, when) in AFTER_SALE_PRINTED.items():
        if metric not in summary["scenarios"][base]:
            continue
        totals = [scen[metric]["total"] for scen in summary["scenarios"].values()]
        if all(t["mean"] == 0 and not t["std"] for t in totals):
            continue
        fmt = _count if metric in ("active_customers", "leads") else _money
        unit = "" if metric in ("active_customers", "leads") else cur
        console = console or Console(width=None if sys.stdout.isatty() else 140)
        table = Table(title=as_text(f"{title}{unit}, {when}"), title_justify="left", show_edge=False, pad_edge=False)
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
