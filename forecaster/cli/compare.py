"""``forecaster compare``: variants against a base, on common random numbers."""
from __future__ import annotations

import click

from forecaster.cli import main
from forecaster.cli.options import out_option, quiet_option, seed_option, threads_option, trials_option


@main.command("compare")
@click.argument("base", type=click.Path(dir_okay=False, path_type=str), is_eager=True)  # named by option errors
@click.argument("variants", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@out_option("compare.json and compare.nc")
@trials_option
@seed_option
@threads_option
@quiet_option
def compare_command(base, variants, out, trials, seed, threads, quiet):
    """Compare VARIANTS with BASE: the difference of each metric, with its interval.

    A variant is a whole scenario, or a variant file of changes to BASE (`set:` and
    `scale:` by key path, see the README). All run with BASE's seed and trials on common
    random numbers, so each difference is paired trial by trial. Writes DIR/compare.json
    (summaries and differences, in total and by period) and DIR/compare.nc (every trial,
    with a `scenario` dimension).

    \b
    Example:
      forecaster compare scenarios/saas-quarter.yaml scenarios/variants/saas-budget-up-60.yaml --out out/cmp
    """
    from forecaster.analysis.compare import compare, compare_summary
    from forecaster.present.console import print_comparison
    from forecaster.results.files import check_out, check_targets
    from forecaster.results.outputs import write_comparison
    from forecaster.scenario.loading import load_scenario
    from forecaster.scenario.variants import load_variant

    if check_out(out):  # before the work, so a mistyped --out costs nothing
        check_targets(out, ("compare.nc", "compare.json"))
    base_sc = load_scenario(base)
    others = [load_variant(v, base) for v in variants]
    ds = compare(base_sc, others, trials=trials, seed=seed, threads=threads)
    summary = compare_summary(ds)
    write_comparison(out, ds, summary)
    if not quiet:
        print_comparison(summary, base_sc.currency)
        click.echo(f"Wrote {out}/compare.json and {out}/compare.nc")
