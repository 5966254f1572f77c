"""``forecaster run``: simulate a scenario and write forecast.nc and summary.json."""
from __future__ import annotations

import contextlib
import sys

import click

from forecaster.cli import main
from forecaster.cli.options import (
    compress_option,
    export_option,
    keep_option,
    out_option,
    precision_option,
    quiet_option,
    scenario_argument,
    scheduler_option,
    seed_option,
    threads_option,
    trials_option,
    workers_option,
)


@main.command("run")
@scenario_argument
@out_option("forecast.nc and summary.json")
@trials_option
@seed_option
@threads_option
@scheduler_option
@workers_option
@keep_option
@precision_option
@compress_option
@export_option
@click.option("--report", is_flag=True, help="Also write report.html and report.md (see `forecaster report`).")
@quiet_option
def run_command(scenario, out, trials, seed, threads, scheduler, workers, keep, precision, compress, export,
                report, quiet):
    """Forecast SCENARIO and write its results to --out.

    Prints revenue, won deals and commission per period with intervals, each rep's chance of
    reaching quota and each target's probability (and, when segments have customers, the
    recognised revenue, bookings, active customers and MRR per period); writes
    DIR/forecast.nc (every trial) and
    DIR/summary.json. Outputs are written whole or not at all: a run that fails, is
    interrupted (Ctrl-C, exit status 130) or terminated (SIGTERM, 143) leaves the previous
    results and no temporary file. A run that would not fit in the free space of --out (or
    under `ulimit -f`) is refused before it starts; --keep summary, --precision float32 and
    --compress make the outputs smaller. --export csv,xlsx,parquet also writes the
    summary tables as CSV (tables/*.csv) and a workbook (forecast.xlsx), and every trial as
    Parquet (trials.parquet, reps.parquet), published with the other files.

    \b
    Example:
      forecaster run scenarios/saas-quarter.yaml --out out/saas --trials 20000 --seed 7
      forecaster run scenarios/saas-quarter.yaml --out out/saas --export csv,xlsx,parquet
      forecaster run scenarios/saas-quarter.yaml --out out/big --trials 5000000 --keep summary
      forecaster run scenarios/saas-quarter.yaml --out out/saas --trials 1000000 --scheduler tcp://10.0.0.5:8786
    """
    from forecaster.cli.options import warn_implausible
    from forecaster.present.console import LazyProgress, print_summary
    from forecaster.results.files import Terminated, check_out, handle_interrupts, sweep_stale_temporaries
    from forecaster.results.outputs import format_bytes, run_to_folder
    from forecaster.scenario.loading import load_scenario

    if scheduler and workers:
        raise click.UsageError("give --scheduler or --workers, not both")
    if report and keep == "summary":
        raise click.UsageError("--report reads forecast.nc, which --keep summary does not write; drop one of them")
    if "parquet" in export and keep == "summary":
        raise click.UsageError("--export parquet exports every trial from forecast.nc, which --keep summary does not "
                               "write; drop one of them")
    exported: list[str] = []
    written = reported = False
    try:
        with handle_interrupts(sigterm=True):
            sc = load_scenario(scenario).with_run(trials, seed)
            warn_implausible(sc)
            if check_out(out):  # an existing folder; a file in its place or a path too long is refused
                swept = sweep_stale_temporaries(out)
                if swept and not quiet:
                    click.echo(f"Removed {len(swept)} temporary file{'s' if len(swept) > 1 else ''} "
                               f"({format_bytes(sum(n for _, n in swept))}) left in {out} by runs that were killed.",
                               err=True)
            with contextlib.ExitStack() as stack:
                runner = None
                if scheduler or workers:
                    from forecaster.engine.cluster import DaskRunner, dask_client
                    runner = DaskRunner(stack.enter_context(dask_client(scheduler, workers)))
                progress = stack.enter_context(LazyProgress(sc.trials, f"{sc.name}: trials",
                                                            enabled=not quiet and sys.stderr.isatty()))
                options = dict(threads=threads, progress=progress, runner=runner, keep=keep, precision=precision,
                               compress=compress)
                if export:
                    from forecaster.present.export import run_with_exports
                    summary, exported = run_with_exports(sc, out, export, **options)
                else:
                    summary = run_to_folder(sc, out, **options)
            written = True
            if report:
                from forecaster.present.report import write_report
                write_report(out)
                reported = True
            if not quiet:
                print_summary(summary, sc)
                files = f"{out}/summary.json" if keep == "summary" else f"{out}/forecast.nc and {out}/summary.json"
                click.echo(f"Wrote {files}" + (" and the report" if report else ""))
                if exported:
                    click.echo(f"Exported {_listing(out, exported)}")
    except KeyboardInterrupt as exc:
        done = ("the results had been written to --out" if written
                else "nothing was written and --out keeps its previous results")
        if written and report and not reported:
            done += ", the report was not (run forecaster report on the folder to write it)"
        if isinstance(exc, Terminated):
            click.echo(f"Terminated (SIGTERM): {done}.", err=True)
            sys.exit(143)
        click.echo(f"Interrupted: {done}.", err=True)
        sys.exit(130)


def _listing(out: str, names: list[str]) -> str:
    """``out/forecast.xlsx, out/trials.parquet and 7 tables in out/tables/``."""
    folders: dict[str, int] = {}
    shown = []
    for name in names:
        folder, _, _ = name.rpartition("/")
        if folder:
            folders[folder] = folders.get(folder, 0) + 1
        else:
            shown.append(f"{out}/{name}")
    shown += [f"{n} table{'s' if n > 1 else ''} in {out}/{folder}/" for folder, n in folders.items()]
    return ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]
