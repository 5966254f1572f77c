"""``forecaster validate``: report every problem in a scenario file at once."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from forecaster.cli import _say, main


@main.command("validate")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
def validate_command(scenarios):
    """Check each SCENARIO against the format; list all problems and exit 2 if there are any.

    Several files are checked one after the other, each file's problems on stderr, and the
    exit status is 2 when any file has one (a folder of scenarios checked in one call, before
    a batch runs it).

    \b
    Examples:
      forecaster validate scenarios/saas-quarter.yaml
      forecaster validate scenarios/*.yaml
    """
    if len(scenarios) == 1:
        _validate(scenarios[0])
        return
    from forecaster.errors import ForecasterError
    from forecaster.present.console import printable

    bad = 0
    for scenario in scenarios:
        try:
            _validate(scenario)
        except ForecasterError as exc:
            bad += 1
            _say(f"Error: {printable(str(exc), newlines=True)}")
    if bad:
        _say(f"{bad} of {len(scenarios)} files are not valid scenarios")
        sys.exit(2)


def _validate(scenario: str) -> None:
    """Load one scenario (raising what is wrong with it), warn of implausible values, and say it is valid."""
    from forecaster.cli.options import warn_implausible
    from forecaster.present.console import printable
    from forecaster.scenario.loading import read_document, scenario_of_document
    from forecaster.scenario.variants import is_variant

    data, lines, raw = read_document(scenario)
    if is_variant(data) and {"set", "scale"} & {str(k) for k in data}:
        # a batch folder's variant files: batch skips them; compare checks them against their base
        click.echo(printable(f"{scenario}: a variant file (changes to a base scenario), not a whole scenario: "
                             "not checked alone (`forecaster compare BASE VARIANT` checks it; batch skips it)"))
        return
    sc = scenario_of_document(Path(scenario), data, lines, raw)
    warn_implausible(sc)
    parts = [f"{len(sc.segments)} segment{'s' * (len(sc.segments) != 1)}", f"{len(sc.stages)} stages",
             f"{sc.days} days by {sc.report_by}"]
    if sc.pipeline:
        parts.append(f"{len(sc.pipeline)} pipeline deals")
    if sc.reps:
        parts.append(f"{len(sc.reps)} reps")
    click.echo(printable(f"{scenario}: valid ({sc.name}: {', '.join(parts)})"))
