"""The ``forecaster`` command line: one module per command, errors turned into messages.

Exit status: 0 success, 2 bad input or usage (a message, no traceback, nothing written),
1 internal error.
"""
from __future__ import annotations

import os
import sys

import click

from .. import __version__
from ..errors import ForecasterError


class BadInput(click.ClickException):
    """A user's input is wrong: exit status 2."""

    exit_code = 2

    def show(self, file=None):
        from ..console import printable  # a message quotes names and keys from the user's files

        click.echo(f"Error: {printable(self.format_message(), newlines=True)}", err=True)


class ForecasterGroup(click.Group):
    """Turns forecaster's own errors into clean messages and anything else into status 1."""

    def invoke(self, ctx):
        from ..outputs import Terminated, handle_interrupts

        try:
            with handle_interrupts(sigterm=True):  # a kill ends every command as Ctrl-C does
                return super().invoke(ctx)
        except ForecasterError as exc:
            raise BadInput(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except Terminated:
            click.echo("Terminated (SIGTERM): finished results are kept, unfinished ones were not written.", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("Interrupted: finished results are kept, unfinished ones were not written.", err=True)
            sys.exit(130)
        except Exception as exc:  # an internal error: say so plainly
            if os.environ.get("FORECASTER_DEBUG"):
                raise
            from ..console import printable

            click.echo(f"Internal error: {type(exc).__name__}: {printable(exc, newlines=True)}\n"
                       "This is a bug in forecaster; set FORECASTER_DEBUG=1 to see the traceback "
                       "and please report it.", err=True)
            sys.exit(1)


@click.group(cls=ForecasterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forecaster")
def main():
    """Monte Carlo revenue and commission forecasts for sales funnels.

    \b
    Example:
      forecaster validate scenarios/saas-quarter.yaml
      forecaster run scenarios/saas-quarter.yaml --out out/saas
    """


from . import (backtest as _backtest, batch as _batch, calibrate as _calibrate, compare as _compare,  # noqa: E402,F401
               report as _report, run as _run, schema as _schema, sensitivity as _sensitivity,
               validate as _validate)
