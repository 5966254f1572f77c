"""``forecaster sensitivity``: which lever moves the forecast, and what drives its spread."""
from __future__ import annotations

import click

from forecaster.cli import main
from forecaster.cli.options import (
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
@trials_option
@seed_option
@threads_option
@quiet_option
def sensitivity_command(scenario, out, step, trials, seed, threads, quiet):
    """Move every lever of SCENARIO by -STEP and +STEP and rank the effects.

    Levers: each segment's leads (rate or budget), each stage's conversion, each stage's
    time (days and days_lost), each deal value; and each across all segments. All runs
    share the base's random numbers, so effects are paired differences with 95% intervals.
    Each run uses the scenario's trials, at most 5,000 unless --trials says otherwise.
    Prints a tornado table, the three moves (expansion, stretching, the key level) side by
    side, and the share of the revenue variance due to each uncertain per-trial input.

    \b
    Example:
      forecaster sensitivity scenarios/saas-quarter.yaml --out out/sens --step 10% --trials 5000
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
        summary, ds = sensitivity(scenario, step=step, trials=trials, seed=seed, threads=threads, progress=progress)
    finally:
        if bar:
            bar[0].close()
    write_comparison(out, ds, summary, stem="sensitivity")
    if not quiet:
        print_sensitivity(summary)
        click.echo(f"Wrote {out}/sensitivity.json and {out}/sensitivity.nc")
