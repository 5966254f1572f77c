"""Options shared by several commands."""
from __future__ import annotations

import click


def out_option(files: str):
    """``--out DIR``, the folder a command writes ``files`` into."""
    return click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=str),
                        help=f"Folder for {files} (created if needed).")


# eager: read before the options, so that an option's error can name the scenario it was for
scenario_argument = click.argument("scenario", type=click.Path(dir_okay=False, path_type=str), is_eager=True)
MAX_SEED = 2 ** 63 - 1
"""The largest ``--seed``: a signed 64-bit integer, as every output file stores it."""


def _scenario_of(ctx) -> str:
    """`` (for FILE)`` when the command's scenario was read before the option, else nothing."""
    params = ctx.params if ctx is not None else {}
    name = params.get("scenario") or params.get("base") or params.get("folder")
    return f" (for {name})" if name else ""


def _trials(ctx, param, value):
    """``--trials``: from MIN_TRIALS (a standard deviation and an interval need two) to the
    scenario's own limit, MAX_TRIALS (:mod:`forecaster.scenario.limits`)."""
    from forecaster.scenario.limits import MAX_TRIALS, MIN_TRIALS

    if value is None:
        return None
    if value < MIN_TRIALS:
        raise click.BadParameter(f"at least {MIN_TRIALS} trials are needed for a standard deviation and interval; "
                                 f"got {value}{_scenario_of(ctx)}")
    if value > MAX_TRIALS:
        from forecaster.results.files import shorten

        raise click.BadParameter(f"at most {MAX_TRIALS:,} trials (the limit of a run, as for a scenario's `trials`); "
                                 f"got {shorten(f'{value:,}', 40)}{_scenario_of(ctx)}")
    return value


def _seed(ctx, param, value):
    """``--seed``: from 0 to 2**63 - 1."""
    if value is None:
        return None
    if not 0 <= value <= MAX_SEED:
        from forecaster.results.files import shorten

        raise click.BadParameter(f"expected an integer from 0 to {MAX_SEED} (2**63 - 1); got {shorten(value, 40)}")
    return value


trials_option = click.option("--trials", type=click.INT, default=None, callback=_trials,
                             help="Number of trials, from 2 to 100,000,000 (default: the scenario's `trials`, "
                                  "else 10000).")
seed_option = click.option("--seed", type=click.INT, default=None, callback=_seed,
                           help="Random seed, from 0 to 2**63 - 1 (default: the scenario's `seed`, else 0).")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="Threads to use (default: all cores, or NUMBA_NUM_THREADS). "
                                   "The numbers do not depend on it.")
def _quiet(ctx, param, value: bool) -> bool:
    """``--quiet`` also silences the kernels' first-compile message (errors still go to stderr),
    for the command's duration."""
    if value:
        from forecaster.engine._numba import compiles_quiet, quiet_compiles
        before = compiles_quiet()
        quiet_compiles()
        ctx.call_on_close(lambda: quiet_compiles(before))
    return value


quiet_option = click.option("--quiet", "-q", is_flag=True, callback=_quiet,
                            help="Print nothing but errors; no progress bar.")
scheduler_option = click.option("--scheduler", metavar="ADDRESS", default=None,
                                help="Run the trials on this Dask distributed scheduler (e.g. tcp://10.0.0.5:8786).")
workers_option = click.option("--workers", type=click.IntRange(min=1), default=None,
                              help="Start a local Dask cluster of N worker processes and run the trials on it.")

# what a run writes (run; the library's run_to_folder takes the same choices)
keep_option = click.option(
    "--keep", type=click.Choice(["all", "summary"]), default="all", show_default=True,
    help="What to write. all: forecast.nc (every trial) and summary.json. summary: summary.json only, with the "
         "same numbers and a few KiB whatever the trials; the trials are held in memory while they fit "
         "comfortably, else in a temporary file in --out removed at the end; an older forecast.nc in --out is "
         "removed so that the folder never mixes two runs. Not with --report, which reads forecast.nc.")
precision_option = click.option(
    "--precision", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
    help="Storage of forecast.nc's real-valued variables (revenue, bookings, commission, inputs). float32 keeps "
         "about 7 significant digits (a revenue of 4,500,000 to within 0.25) and makes the file 35-45% smaller; "
         "summary.json is then computed from the stored values. Counts and dates are stored exactly either way.")
compress_option = click.option(
    "--compress", is_flag=True,
    help="Compress forecast.nc losslessly (zlib level 1 with byte shuffling; any NetCDF4 reader opens it): "
         "typically 40-55% smaller, a little slower to write and to summarise. The free-space check before the "
         "run still counts the uncompressed size.")


def _outcomes(ctx, param, value) -> dict:
    from forecaster.history.readers import parse_outcomes

    try:
        return parse_outcomes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _columns(ctx, param, value) -> tuple:
    for item in value:
        name, eq, source = item.partition("=")
        if not eq or not name.strip() or not source.strip():
            raise click.BadParameter(f"expected NAME=SOURCE (our name, e.g. deal_id, and the file's column, e.g. "
                                     f"Id); got {item!r}")
    return value


# a history's columns and outcome values (calibrate, backtest)
column_option = click.option(
    "--column", "mapping", multiple=True, metavar="NAME=SOURCE", callback=_columns,
    help="Map one of deal_id, outcome, closed, amount, segment or a stage to the file's column, e.g. "
         "--column deal_id=Id. Repeatable.")
outcome_option = click.option(
    "--outcome", "outcomes", multiple=True, metavar="OUTCOME=VALUES", callback=_outcomes,
    help="Map the file's outcome values to won, lost or open (case and surrounding spaces ignored), over the "
         "preset's map, e.g. --outcome won=\"Closed Won\" --outcome open=\"In Progress,Prospecting\". Repeatable.")


def _mechanisms(ctx, param, value) -> dict:
    """``NAME=on|off`` items -> {name: True/False} for calibrate's optional parts."""
    from forecaster.history.parts import MECHANISMS

    out = {}
    for item in value:
        name, _, state = item.partition("=")
        name, state = name.strip().lower(), state.strip().lower()
        if name not in MECHANISMS or state not in ("on", "off"):
            raise click.BadParameter(f"expected NAME=on or NAME=off with NAME one of {', '.join(MECHANISMS)}; "
                                     f"got {item!r}")
        out[name] = state == "on"
    return out


mechanism_option = click.option(
    "--mechanism", "mechanisms", multiple=True, metavar="NAME=on|off", callback=_mechanisms,
    help="Force an optional part of the calibrated scenario on or off instead of letting the in-history "
         "walk-forward decide: shocks, stalled, speed, trend, seasonality, closing, capacity (repeatable).")


def _exports(ctx, param, value) -> tuple:
    """``--export csv,xlsx,parquet`` -> ("csv", "xlsx", "parquet"); nothing given: ()."""
    from forecaster.present.export import parse_formats

    try:
        return parse_formats(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


export_option = click.option(
    "--export", "export", metavar="csv,xlsx,parquet", default=None, callback=_exports,
    help="Also write the results for spreadsheets and BI tools, in --out and together with the other files "
         "(any of, comma separated): csv, one file per summary table in tables/ (<command>-tables/ for compare "
         "and sensitivity); xlsx, one workbook with an About sheet and a sheet per table; parquet, every trial "
         "(trials.parquet, and reps.parquet with a team). Units are in the headers, e.g. revenue_p50 [USD].")

backtest_export_option = click.option(
    "--export", "export", metavar="csv,xlsx", default=None, callback=_exports,
    help="Also write backtest.json's tables for spreadsheets, in --out and together with it: csv, one file per "
         "table in backtest-tables/ (scores, averages, cutoffs, skipped); xlsx, backtest.xlsx with an About sheet and a sheet "
         "per table. A backtest keeps no trials, so parquet is refused.")


def warn_implausible(sc, skip: frozenset = frozenset()) -> frozenset:
    """Print, as warnings on stderr, what in scenario ``sc`` reads like a percentage written
    as a number (:func:`forecaster.scenario.plausibility.implausible`), but those in
    ``skip``; return what it found."""
    from forecaster.present.console import printable
    from forecaster.scenario.plausibility import implausible

    found = implausible(sc)
    for message in found:
        if message not in skip:
            click.echo(printable(f"warning: {sc.source or sc.name}: {message}"), err=True)
    return frozenset(found)
