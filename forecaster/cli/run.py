"""``forecaster run``: simulate a scenario and write forecast.nc and summary.json."""
from __future__ import annotations

import contextlib
import sys

import click

from . import main
from .options import (out_option, quiet_option, scenario_argument, scheduler_option, seed_option, threads_option,
                      trials_option, workers_option)


@main.command("run")
@scenario_argument
@out_option("forecast.nc and summary.json")
@trials_option
@seed_option
@threads_option
@scheduler_option
@workers_option
@click.option("--report", is_flag=True, help="Also write report.html and report.md (see `forecaster report`).")
@quiet_option
def run_command(scenario, out, trials, seed, threads, scheduler, workers, report, quiet):
    """Forecast SCENARIO and write its results to --out.

    Prints revenue, won deals and commission per period with intervals, each rep's chance of
    reaching quota and each target's probability; writes DIR/forecast.nc (every trial) and
    DIR/summary.json. Outputs are written whole or not at all.

    \b
    Example:
      forecaster run scenarios/saas-quarter.yaml --out out/saas --trials 20000 --seed 7
      forecaster run scenarios/saas-quarter.yaml --out out/saas --trials 1000000 --scheduler tcp://10.0.0.5:8786
    """
    from ..console import LazyProgress, print_summary
    from ..loading import load_scenario
    from ..outputs import run_to_folder

    if scheduler and workers:
        raise click.UsageError("give --scheduler or --workers, not both")
    sc = load_scenario(scenario).with_run(trials, seed)
    with contextlib.ExitStack() as stack:
        runner = None
        if scheduler or workers:
            from ..cluster import DaskRunner, dask_client
            runner = DaskRunner(stack.enter_context(dask_client(scheduler, workers)))
        progress = stack.enter_context(LazyProgress(sc.trials, f"{sc.name}: trials",
                                                    enabled=not quiet and sys.stderr.isatty()))
        summary = run_to_folder(sc, out, threads=threads, progress=progress, runner=runner)
    if report:
        from ..report import write_report
        write_report(out)
    if not quiet:
        print_summary(summary, sc)
        click.echo(f"Wrote {out}/forecast.nc and {out}/summary.json" + (" and the report" if report else ""))
