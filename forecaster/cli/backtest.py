"""``forecaster backtest``: walk forward through a history and score the forecasts."""
from __future__ import annotations

import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import click

from forecaster.cli import main
from forecaster.cli.calibrate import (
    PRESET_CHOICES,
    check_outputs,
    date_format_option,
    decimal_option,
    drop_option,
    history_argument,
    history_inputs,
    parse_day,
    preset_help,
    query_option,
)
from forecaster.cli.options import backtest_export_option, column_option, mechanism_option, out_option, outcome_option

MAX_MONTHS = 120
MAX_TRIALS = 1_000_000


def _dates(ctx, param, value):
    """Month ends, in any order, each once."""
    expected = "expected ISO dates separated by commas, each the last day of a month (e.g. 2017-03-31,2017-06-30)"
    days = []
    for item in value.split(","):
        if not item.strip():
            continue
        try:
            day = parse_day(item)
        except ValueError as exc:
            raise click.BadParameter(f"{exc} (cutoffs are month ends separated by commas, e.g. "
                                     "2017-03-31,2017-06-30)") from None
        if (day + timedelta(days=1)).day != 1:
            raise click.BadParameter(f"{expected}; got {item.strip()!r}, which is not a month's last day")
        if day in days:
            raise click.BadParameter(f"{expected}; got {day} twice")
        days.append(day)
    if not days:
        raise click.BadParameter(f"{expected}; got {value!r}")
    return days


@main.command("backtest")
@history_argument
@click.option("--cutoffs", required=True, callback=_dates, help="Month ends to forecast from, e.g. 2017-03-31,2017-06-30.")
@click.option("--months", default=3, show_default=True, type=click.IntRange(1, MAX_MONTHS),
              help="Months forecast from each cutoff.")
@query_option
@click.option("--preset", type=click.Choice(PRESET_CHOICES), default="generic", show_default=True, help=preset_help)
@click.option("--stages", default=None, help="Stage columns, in order (generic preset).")
@click.option("--segment-column", default=None, help="Column that names each deal's segment.")
@column_option
@outcome_option
@date_format_option
@decimal_option
@drop_option
@click.option("--trials", default=4000, show_default=True, type=click.IntRange(100, MAX_TRIALS))
@click.option("--capacity", is_flag=True, help="Keep the team's capacity at each cutoff (see calibrate --capacity).")
@mechanism_option
@out_option("backtest.json")
@backtest_export_option
def backtest_command(history, cutoffs, months, query, preset, stages, segment_column, mapping, outcomes, date_format,
                     decimal, drop_bad_rows, trials, capacity, mechanisms, out, export):
    """Calibrate on what was known at each cutoff, forecast, and compare with what happened.

    Scores per metric (won deals, revenue), per month and in total: coverage of the P10-P90
    and P5-P95 intervals, CRPS, pinball loss at P10/P50/P90 and bias; beside the weighted
    pipeline CRMs show and a seasonal naive forecast (same month last quarter).

    \b
    Example:
      forecaster backtest ../shared/data/maven-crm-sales-opportunities/sales_pipeline.csv --preset maven \\
          --cutoffs 2017-03-31,2017-06-30,2017-09-30 --out out/backtest
    """
    from forecaster.errors import ForecasterError
    from forecaster.history.backtest import backtest
    from forecaster.history.readers import load_deals
    from forecaster.present.console import print_backtest
    from forecaster.results.files import ROOM, check_path, shorten, stat_or_none

    if export and "parquet" in export:
        raise click.UsageError("--export parquet: a backtest keeps no trials; use csv or xlsx")
    shown = f"--out {shorten(out)}"
    check_path(out, "--out", room=ROOM)  # a name or path too long, before anything is looked up
    folder = Path(os.path.realpath(out))  # as the system will find it once created
    target = [(shown, folder / "backtest.json")]
    inputs = history_inputs(history, preset)
    st = stat_or_none(out, "--out")
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise ForecasterError(f"{shown}: exists and is not a folder; nothing was written")
    check_outputs(target, inputs)  # before the work, so a mistyped --out costs nothing
    warnings: list[str] = []
    found: dict = {}
    try:
        deals, stage_list, lost_observed = load_deals(history, preset, stages, segment_column, mapping, outcomes,
                                                      warnings=warnings, drop_bad_rows=drop_bad_rows, query=query,
                                                      date_format=date_format, decimal=decimal, found=found)
    except ForecasterError:
        raise
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    try:
        result = backtest(deals, stage_list, cutoffs, months=months, trials=trials, lost_observed=lost_observed,
                          capacity=capacity, calibrate_options={"force": mechanisms} if mechanisms else None)
    except ValueError as exc:
        from forecaster.history.sources import shown_name

        raise ForecasterError(f"{shown_name(history)}: {exc}") from None
    for x in result["skipped"]:
        click.echo(f"warning: cutoff {x['cutoff']} skipped (by every method): too early to calibrate on: "
                   f"{x['reason']}", err=True)
    for x in result["warnings"]:
        at = x["cutoffs"]
        where = (f"calibrating on {at[0]}: " if len(at) == 1
                 else f"calibrating on {', '.join(at[:-1])} and {at[-1]}: " if at else "")
        vary = f" (as on {at[0]}; the figures differ at the others)" if x.get("figures_vary") else ""
        click.echo(f"warning: {where}{x['warning']}{vary}", err=True)
    if found.get("currency"):  # the history's amounts say their currency (else revenue is in "currency")
        result["currency"] = found["currency"]
    text = json.dumps(result, indent=2) + "\n"
    check_outputs(target, inputs)
    from forecaster.present.export import write_together_with_exports

    written = write_together_with_exports(folder, {"backtest.json": text}, shown, kind="backtest", summary=result,
                                          formats=export or (), currency=result.get("currency"))
    print_backtest(result)
    click.echo(f"Wrote {out}/backtest.json")
    exported = sorted(Path(p).relative_to(folder).as_posix() for p in written if Path(p).name != "backtest.json")
    if exported:
        from forecaster.cli.run import _listing

        click.echo(f"Exported {_listing(out, exported)}")
