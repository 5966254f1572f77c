"""``forecaster backtest``: walk forward through a history and score the forecasts."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from . import main
from .options import column_option, mechanism_option, out_option, outcome_option


def _dates(ctx, param, value):
    try:
        return [date.fromisoformat(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected ISO dates separated by commas (month ends); got {value!r}")


@main.command("backtest")
@click.argument("history", type=click.Path(exists=True, path_type=Path))
@click.option("--cutoffs", required=True, callback=_dates, help="Month ends to forecast from, e.g. 2017-03-31,2017-06-30.")
@click.option("--months", default=3, show_default=True, type=click.IntRange(min=1), help="Months forecast from each cutoff.")
@click.option("--preset", type=click.Choice(["generic", "maven", "crm", "olist"]), default="generic", show_default=True)
@click.option("--stages", default=None, help="Stage columns, in order (generic preset).")
@click.option("--segment-column", default=None, help="Column that names each deal's segment.")
@column_option
@outcome_option
@click.option("--trials", default=4000, show_default=True, type=click.IntRange(min=100))
@click.option("--capacity", is_flag=True, help="Keep the team's capacity at each cutoff (see calibrate --capacity).")
@mechanism_option
@out_option("backtest.json")
def backtest_command(history, cutoffs, months, preset, stages, segment_column, mapping, outcomes, trials,
                     capacity, mechanisms, out):
    """Calibrate on what was known at each cutoff, forecast, and compare with what happened.

    Scores per metric (won deals, revenue), per month and in total: coverage of the P10-P90
    and P5-P95 intervals, CRPS, pinball loss at P10/P50/P90 and bias; beside the weighted
    pipeline CRMs show and a seasonal naive forecast (same month last quarter).

    \b
    Example:
      forecaster backtest ../shared/data/maven-crm-sales-opportunities/sales_pipeline.csv --preset maven \\
          --cutoffs 2017-03-31,2017-06-30,2017-09-30 --out out/backtest
    """
    from ..backtest import backtest
    from ..console import print_backtest
    from ..errors import ForecasterError
    from ..history import load_deals
    from ..outputs import _Staged, prepare_folder

    warnings: list[str] = []
    try:
        deals, stage_list, lost_observed = load_deals(history, preset, stages, segment_column, mapping, outcomes,
                                                      warnings=warnings)
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
        raise ForecasterError(f"{history}: {exc}") from None
    folder = prepare_folder(out)
    with _Staged(folder) as staged:
        staged.path("backtest.json").write_text(json.dumps(result, indent=2) + "\n")
        staged.publish()
    print_backtest(result)
    click.echo(f"Wrote {out}/backtest.json")
