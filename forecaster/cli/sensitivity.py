"""``forecaster sensitivity``: which lever moves the forecast, and what drives its spread."""
from __future__ import annotations

import click

from forecaster.cli import main
from forecaster.cli.options import (
    export_option,
    out_option,
    quiet_option,
    scenario_argument,
    seed_option,
    threads_option,
    trials_option,
)


def _step(ctx, param, value: str) -> float:
    text = value.strip()
    try:
        step = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"expected a percentage such as 10% or a fraction such as 0.1; got {value!r}") from None
    if not 0 < step < 1:
        raise click.BadParameter(f"must be between 0% and 100%; got {value!r}")
    return step


@main.command("sensitivity")
@scenario_argument
@out_option("sensitivity.json and sensitivity.nc")
@click.option("--step", default="10%", callback=_step, show_default=True,
              help="How far each lever moves, down and up (e.g. 10% or 0.1).")
@click.option("--metric", type=click.Choice(["revenue", "recognised_revenue", "total_bookings"]), default="revenue",
              show_default=True,
              help="What the levers are ranked by: total revenue (bookings of won deals), or, in a scenario with "
                   "customers, total recognised revenue or total bookings (renewals and repeat purchases "
                   "included, cancellations deducted).")
@click.option("--convert-step", type=click.Choice(["relative", "odds", "points"]), default="relative",
              show_default=True,
              help="How levers on conversions step: relative (p x (1 +- STEP); capped at 1 where that would pass "
                   "1, and said so), odds (each trial's p with its odds x (1 +- STEP): never leaves (0, 1)) or "
                   "points (p +- STEP; a lever that would leave [0, 1] is skipped).")
@trials_option
@seed_option
@threads_option
@export_option
@quiet_option
def sensitivity_command(scenario, out, step, metric, convert_step, trials, seed, threads, export, quiet):
    """Move every lever of SCENARIO by -STEP and +STEP and rank the effects.

    Levers: each segment's leads (rate or budget), each stage's conversion, each stage's
    time (days and days_lost), each deal value; and each across all segments. All runs
    share the base's random numbers, so effects are paired differences with 95% intervals.
    Each run uses the scenario's trials, at most 5,000 unless --trials says otherwise.
    Prints a tornado table, the three moves (expansion, stretching, the key level) side by
    side, and the share of the revenue variance due to each uncertain per-trial input.

    --convert-step says how conversion levers (and stretching and the key level) move:
    relative (default), odds or points (see the option). Levers whose effects tie (with no
    open pipeline every stage's relative step does the same) are named together as the key
    level. With `outputs: {stage_value: true}` in the scenario, the stage value table (each
    stage's eventual win probability and worth) is printed and stored too.

    With customers (a segment's `customer` block) the levers include each segment's renew,
    expansion, repeat per_month, dropout and cancel probability, and --metric ranks by
    recognised revenue or total bookings; the effects on every metric are in
    sensitivity.json and sensitivity.nc whatever the ranking.

    --export csv,xlsx,parquet also writes the tables as CSV (sensitivity-tables/*.csv) and a
    workbook (sensitivity.xlsx), and every trial's effects as Parquet
    (sensitivity-trials.parquet), published with the other files.

    \b
    Example:
      forecaster sensitivity scenarios/saas-quarter.yaml --out out/sens --step 10% --trials 5000
      forecaster sensitivity saas.yaml --out out/sens --metric recognised_revenue
      forecaster sensitivity scenarios/minimal.yaml --out out/sens --convert-step points
    """
    import sys

    from forecaster.analysis.sensitivity import sensitivity
    from forecaster.present.console import LazyProgress, print_sensitivity
    from forecaster.results.files import check_out, check_targets
    from forecaster.results.outputs import write_comparison

    if check_out(out):  # before the work, so a mistyped --out costs nothing
        check_targets(out, ("sensitivity.nc", "sensitivity.json"))

    bar: list = []

    def progress(done, total):
        if not bar:
            bar.append(LazyProgress(total, "runs (each lever -step and +step)", enabled=not quiet and sys.stderr.isatty()))
        bar[0](1)

    try:
        summary, ds = sensitivity(scenario, step=step, trials=trials, seed=seed, threads=threads, progress=progress,
                                  metric=metric, convert_step=convert_step)
    finally:
        if bar:
            bar[0].close()
    if export:
        from forecaster.present.export import write_comparison_with_exports
        from forecaster.scenario.loading import load_scenario

        currency = load_scenario(scenario).currency
        exported = write_comparison_with_exports(out, ds, summary, export, kind="sensitivity", currency=currency)
    else:
        write_comparison(out, ds, summary, stem="sensitivity")
    if not quiet:
        if metric == "revenue":
            print_sensitivity(summary)
        else:
            _print_by_metric(summary, metric)
        click.echo(f"Wrote {out}/sensitivity.json and {out}/sensitivity.nc")
        if export:
            from forecaster.cli.run import _listing
            click.echo(f"Exported {_listing(out, exported)}")


METRIC_LABELS = {"recognised_revenue": ("total recognised revenue", "recognised revenue"),
                 "total_bookings": ("total bookings", "total bookings")}
"""--metric: (how a title names its total over the horizon, a column's header)."""


def _print_by_metric(summary: dict, metric: str) -> None:
    """:func:`forecaster.present.console.print_sensitivity`'s tables, read on ``metric``
    (recognised revenue or total bookings) instead of revenue."""
    import sys

    from rich.table import Table
    from rich.text import Text

    from forecaster.present.console import (
        Console,
        _add_columns,
        _count,
        _money,
        _signed,
        as_text,
        lever_label,
        move_lever,
        print_sensitivity_notes,
        printable,
        sensitivity_heading,
    )

    console = Console(width=None if sys.stdout.isatty() else 140)
    label, column = METRIC_LABELS[metric]
    step = f"{summary['step']:.0%}"
    console.print(Text.assemble(("sensitivity", "bold"), printable(
        sensitivity_heading(summary, f"base {label} {_money(summary['base'][metric]['mean'])}"))), highlight=False)

    def cell(effect):
        if effect is None:
            return "-"
        r = effect[metric]
        return f"{_signed(_money, r['mean'])} ({_signed(_money, r['mean_ci_low'])} – {_signed(_money, r['mean_ci_high'])})"

    table = Table(title=f"Effect on {label}, largest first", title_justify="left", show_edge=False,
                  pad_edge=False)
    _add_columns(table, ("lever", "left"), (f"-{step} (95% CI)", "right"), (f"+{step} (95% CI)", "right"))
    by_name = {e["lever"]: e for e in summary["levers"]}
    for name in summary["ranking"]:
        e = by_name[name]
        table.add_row(as_text(lever_label(name, summary)), cell(e.get("minus")), cell(e.get("plus")))
    console.print(table)
    table = Table(title=f"The three moves, each +{step}", title_justify="left", show_edge=False, pad_edge=False)
    _add_columns(table, ("move", "left"), ("lever", "left"), (f"{column} (95% CI)", "right"),
                 ("won deals", "right"))
    for move, text in (("expansion", "expansion: more leads at the top"),
                       ("stretching", "stretching: every stage converts better"),
                       ("key_level", "key level: the one stage that pays most")):
        m = summary["three_moves"][move]
        won = m.get("won_deals")
        table.add_row(text, as_text(move_lever(m)), cell(m if metric in m else None) if "skipped" not in m
                      else "skipped", _signed(_count, won["mean"]) if won else "-")
    console.print(table)
    if summary["variance_shares"]:
        table = Table(title=f"Share of the variance of {label} (first-order Sobol index)",
                      title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("per-trial input")
        table.add_column("share", justify="right")
        for item in summary["variance_shares"]:
            table.add_row(as_text(item["input"]), f"{item['share']:.1%}")
        rest = 1 - sum(i["share"] for i in summary["variance_shares"])
        table.add_row("the rest: counting and per-deal noise, interactions", f"{max(rest, 0):.1%}", style="dim")
        console.print(table)
    print_sensitivity_notes(summary, console)
