"""``forecaster schema``: the scenario format as JSON Schema, for editors."""
from __future__ import annotations

import json

import click

from forecaster.cli import main


@main.command("schema")
def schema_command():
    """Print a JSON Schema of the scenario format.

    \b
    Example (VS Code with the YAML extension):
      forecaster schema > forecaster.schema.json
      # then, first line of a scenario:  # yaml-language-server: $schema=forecaster.schema.json
    """
    from forecaster.scenario.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
