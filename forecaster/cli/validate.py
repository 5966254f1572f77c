"""``forecaster validate``: report every problem in a scenario file at once."""
from __future__ import annotations

import click

from forecaster.cli import main
from forecaster.cli.options import scenario_argument


@main.command("validate")
@scenario_argument
def validate_command(scenario):
    """Check SCENARIO against the format; list all problems and exit 2 if there are any.

    \b
    Example:
      forecaster validate scenarios/saas-quarter.yaml
    """
    from forecaster.cli.options import warn_implausible
    from forecaster.present.console import printable
    from forecaster.scenario.loading import load_scenario

    sc = load_scenario(scenario)
    warn_implausible(sc)
    parts = [f"{len(sc.segments)} segment{'s' * (len(sc.segments) != 1)}", f"{len(sc.stages)} stages",
             f"{sc.days} days by {sc.report_by}"]
    if sc.pipeline:
        parts.append(f"{len(sc.pipeline)} pipeline deals")
    if sc.reps:
        parts.append(f"{len(sc.reps)} reps")
    click.echo(printable(f"{scenario}: valid ({sc.name}: {', '.join(parts)})"))
