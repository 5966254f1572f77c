"""``forecaster batch``: every scenario of a folder, for scheduled jobs."""
from __future__ import annotations

import errno
import signal
import sys

import click

from forecaster.cli import _say, main
from forecaster.cli.options import (
    compress_option,
    out_option,
    precision_option,
    quiet_option,
    threads_option,
    trials_option,
)


@main.command("batch")
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
@out_option("one folder per scenario, manifest.json, summaries.csv, targets.csv and reps.csv")
@click.option("--force", is_flag=True, help="Run every scenario, even those whose inputs did not change.")
@trials_option
@threads_option
@precision_option
@compress_option
@quiet_option
def batch_command(folder, out, force, trials, threads, precision, compress, quiet):
    """Run every scenario (*.yaml) in FOLDER into OUT/<name>/, with a report each.

    Writes OUT/manifest.json (per scenario: status, input hash, forecaster version, seed,
    trials, timings, the error of a failure), OUT/summaries.csv (every metric's statistics,
    by scenario and period; segments' and reps' totals), OUT/targets.csv (each target's
    probability) and OUT/reps.csv (each rep's chance of quota, by commission period). A bad scenario fails
    alone (and so does, unopened, a *.yaml that is not a regular file: a FIFO, a device,
    a broken link); re-running skips scenarios whose inputs and version did not change; an
    interrupted batch keeps what it finished and the next run completes it. OUT/<name> is
    the file name made safe and unique, and stays a file's name from run to run; a scenario
    whose file is gone is marked removed (its folder is kept, its rows leave summaries.csv).
    Nothing is written outside OUT, nor through a symbolic link inside it; one batch at a
    time writes into OUT. Each scenario's line is printed as it ends. Exit status: 0 all ran
    (or were unchanged), 2 some failed or FOLDER holds no scenario, 1 some failed on a bug in
    forecaster (the others are still written).

    \b
    Example (a nightly cron job):
      forecaster batch scenarios/ --out /srv/forecasts/latest --quiet
    """
    from forecaster.present.batch import STOP, run_batch
    from forecaster.present.console import BatchProgress, printable
    from forecaster.results.files import Terminated, on_signal

    caught: list[int] = []

    def stop(signum, frame):  # a kill ends the batch like Ctrl-C: temporary files are removed
        STOP.set()  # also stops at the next scenario if the exception lands where Python ignores it
        caught.append(signum)
        # raised as every command's handler raises it (KeyboardInterrupt, Terminated for SIGTERM):
        # deferred while HDF5 is inside our file callbacks, where an exception crashes the
        # interpreter (an h5py object's dealloc writing through GuardedFile)
        on_signal(signum, frame)

    # a signal ignored on purpose (nohup, a job started in the background by a shell without
    # job control) stays ignored, as every other command leaves it (results.files); the
    # handlers in place before are put back when the batch ends
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, stop)
    lost: list[OSError] = []  # stdout could not be written: failures are still told and still set the status

    def said(name, action, e):
        """A scenario's line, as it ends (a cron log shows how far a killed batch got)."""
        if quiet or lost:
            return
        line = f"{action:>9}  {printable(name)}" + (f"  ({e['seconds']} s)" if action == "ran" else "")
        try:
            if display.bar is not None and sys.stdout.isatty():  # above the live bar, not under its redraws
                display.line(line)
            else:
                click.echo(line)
                sys.stdout.flush()
        except OSError as exc:
            lost.append(exc)

    try:
        with BatchProgress(enabled=not quiet and sys.stderr.isatty()) as display:
            manifest = run_batch(folder, out, force=force, trials=trials, threads=threads, precision=precision,
                                 compress=compress, on_start=display.start, progress=display.advance, on_done=said)
    except KeyboardInterrupt as exc:
        # a SIGTERM whose exception was swallowed (raised where Python ignores it) still stops
        # the batch at the next scenario, with a KeyboardInterrupt: it ends as a kill all the same
        if caught and caught[-1] == signal.SIGTERM and not isinstance(exc, Terminated):
            raise Terminated() from None
        raise
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set from outside Python, left as it is
                signal.signal(sig, handler)
    entries, actions = manifest["scenarios"], manifest["last_run"]
    failed = {n: entries[n] for n, a in actions.items() if a == "failed"}
    if not quiet and not lost:
        try:
            click.echo(f"Wrote {printable(out)}/manifest.json, summaries.csv, targets.csv and reps.csv")
        except OSError as exc:
            lost.append(exc)
    only_variants = bool(actions) and set(actions.values()) <= {"skipped", "removed"}
    if lost and not failed and not only_variants:
        raise lost[0]  # the command line says what happened (forecaster.cli)
    for name, e in failed.items():  # on stderr, even a closed one: the status below says it all the same
        _say(f"{'Internal error' if e.get('internal_error') else 'Error'}: {printable(name)}: "
             f"{printable(e['error'], newlines=True)}")
    if lost and lost[0].errno != errno.EPIPE:
        _say(f"Error: cannot write to stdout: {lost[0].strerror or lost[0]}; the manifest in {printable(out)} lists "
             "every scenario")
    if only_variants:
        _say(f"Error: {printable(folder)}: holds no whole scenario, only variant files (run them with `forecaster "
             "compare`)")
        sys.exit(2)
    if any(e.get("internal_error") for e in failed.values()):
        sys.exit(1)
    if failed:
        sys.exit(2)
