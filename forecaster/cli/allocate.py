"""``forecaster allocate``: the split of a monthly budget over the bought segments that pays most."""
from __future__ import annotations

import math

import click

from forecaster.cli import main
from forecaster.cli.options import quiet_option, scenario_argument, seed_option, threads_option, trials_option


def _total(ctx, param, value: str) -> float:
    try:
        total = float(str(value).replace(",", "").replace("_", ""))
    except ValueError:
        raise click.BadParameter(f"expected a monthly budget such as 500000; got {value!r}") from None
    if not math.isfinite(total) or total <= 0:
        raise click.BadParameter(f"must be a monthly budget > 0; got {value!r}")
    return total


@main.command("allocate")
@scenario_argument
@click.option("--total-budget", required=True, callback=_total, metavar="AMOUNT",
              help="The monthly budget to split over the bought segments [currency per month].")
@click.option("--metric", type=click.Choice(["revenue", "won_deals", "total_bookings"]), default="revenue",
              show_default=True,
              help="What to maximise: its total over the horizon (total_bookings needs customers).")
@click.option("--quantile", default=None, metavar="P10",
              help="Maximise this quantile of the total instead of its mean (P10: the total reached in 9 trials "
                   "out of 10), for a cautious plan.")
@click.option("--min", "minimums", multiple=True, metavar="SEGMENT=AMOUNT",
              help="A bought segment's least monthly budget (repeatable).")
@click.option("--max", "maximums", multiple=True, metavar="SEGMENT=AMOUNT",
              help="A bought segment's largest monthly budget (repeatable).")
@trials_option
@seed_option
@threads_option
@click.option("--out", "-o", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Folder for allocate.json and allocate.html (created if needed); without it, nothing is written.")
@quiet_option
def allocate_command(scenario, total_budget, metric, quantile, minimums, maximums, trials, seed, threads, out, quiet):
    """Split a monthly budget over SCENARIO's bought segments to maximise a forecast.

    A bought segment buys its leads with budget_per_month (and cost_per_lead), through its
    response curve if it has one. Every split runs on the same random numbers, so splits are
    compared trial by trial. The search (a coarse grid, then transfers between segments with
    halving steps, down to 1/512 of the budget) maximises the expected total of --metric over
    the horizon, or with --quantile that quantile of it. A segment's budget_by_month months
    are scaled by the same factor as its budget_per_month.

    Prints the best split with its forecast (mean, P10, P50, P90), the file's split (said
    when it does not sum to --total-budget), their paired difference with its 95% interval,
    and the marginal return of the next 1,000 a month in each segment at the best split.
    Each run uses the scenario's trials, at most 5,000 unless --trials says otherwise.
    With --out, writes allocate.json and allocate.html (each segment's response curve).

    \b
    Example:
      forecaster allocate scenarios/channel-budgets.yaml --total-budget 500000 --out out/alloc
      forecaster allocate scenarios/channel-budgets.yaml --total-budget 500000 --quantile P10 --min events=50000
    """
    from forecaster.analysis.allocate import allocate, parse_bounds, parse_quantile
    from forecaster.results.files import check_out, check_targets

    q = parse_quantile(quantile)
    lows, highs = parse_bounds(minimums, "--min"), parse_bounds(maximums, "--max")
    if out is not None and check_out(out):  # before the work, so a mistyped --out costs nothing
        check_targets(out, ("allocate.json", "allocate.html"))
    summary = allocate(scenario, total_budget=total_budget, metric=metric, quantile=q, minimums=lows, maximums=highs,
                       trials=trials, seed=seed, threads=threads)
    if out is not None:
        import json
        from datetime import UTC, datetime
        from pathlib import Path

        from forecaster.present.allocate import render_allocation
        from forecaster.results.files import write_together

        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        write_together(Path(out), {"allocate.json": json.dumps(summary, indent=2, allow_nan=False) + "\n",
                                   "allocate.html": render_allocation(summary, when)}, f"--out {out}")
    if not quiet:
        from forecaster.present.allocate import print_allocation
        from forecaster.present.console import printable

        print_allocation(summary)
        if out is not None:
            click.echo(f"Wrote {printable(out)}/allocate.json and {printable(out)}/allocate.html")
