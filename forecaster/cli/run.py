"""``forecaster run``: simulate a scenario and write forecast.nc and summary.json."""
from __future__ import annotations

import sys

import click

from . import main
from .options import quiet_option, scenario_argument, seed_option, threads_option, trials_option


@main.command("run")
@scenario_argument
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for forecast.nc and summary.json (created if needed).")
@trials_option
@seed_option
@threads_option
@quiet_option
def run_command(scenario, out, trials, seed, threads, quiet):
    """Forecast SCENARIO and write its results to --out.

    Prints revenue, won deals and commission per period with intervals, each rep's chance of
    reaching quota and each target's probability; writes DIR/forecast.nc (every trial) and
    DIR/summary.json. Outputs are written whole or not at all.

    \b
    Example:
      forecaster run scenarios/saas-quarter.yaml --out out/saas --trials 20000 --seed 7
    """
    from ..console import LazyProgress, print_summary
    from ..loading import load_scenario
    from ..outputs import run_to_folder

    sc = load_scenario(scenario).with_run(trials, seed)
    with LazyProgress(sc.trials, f"{sc.name}: trials", enabled=not quiet and sys.stderr.isatty()) as progress:
        summary = run_to_folder(sc, out, threads=threads, progress=progress)
    if not quiet:
        print_summary(summary, sc)
        click.echo(f"Wrote {out}/forecast.nc and {out}/summary.json")
