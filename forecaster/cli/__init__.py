"""The ``forecaster`` command line: one module per command, errors turned into messages.

Exit status: 0 success, 2 bad input or usage (a message, no traceback, nothing written),
1 internal error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).

The terminal can fail too, and that is never an internal error:

- stdout is a pipe whose reader has gone (``forecaster schema | head``): the command stops
  quietly, with no message and the status 0. The reader chose to stop reading; everything
  forecaster prints to stdout comes after its work is done, and the files it wrote (a
  run's results) are kept. (This is the convention of ``| head``-style truncation.)
- stderr is such a pipe: a message could not be shown. An error keeps its status (2, or
  1 for a bug); otherwise the command stops with 141 (128 + SIGPIPE, what a shell shows
  for a tool a closed pipe ends), as it may not have finished.
- any other failure to write to stdout (``> /dev/full``: no space left on device): status
  2 and the one line ``Error: cannot write to stdout (forecaster run s.yaml): <reason>``,
  saying that the results already written to files are kept (to stderr: status 2, and
  nothing can be said).

In every case the stream is then pointed at the null device, so that Python's final flush
of what is still buffered cannot fail again on the way out.
"""
from __future__ import annotations

import errno
import os
import sys

import click

from forecaster.errors import ForecasterError
from forecaster.version import __version__


class BadInput(click.ClickException):
    """A user's input is wrong: exit status 2."""

    exit_code = 2

    def show(self, file=None):
        from forecaster.present.console import printable  # a message quotes names and keys from the user's files

        _say(f"Error: {printable(self.format_message(), newlines=True)}")  # stderr may be a closed pipe too


CLOSED_STDOUT_STATUS = 0
"""The exit status when stdout's reader has gone (``| head``): not a failure."""
CLOSED_STDERR_STATUS = 141
"""The exit status when stderr's reader has gone: 128 + SIGPIPE, as a shell shows it for a
tool a closed pipe ends (a message was lost, so the command may not have finished)."""
_COMMAND = "forecaster.command"


def _terminal_stream(exc: BaseException) -> str | None:
    """"stdout" or "stderr" when ``exc`` is a failed write to the terminal (through our rich
    Console, or ``click.echo``, or the final flush), else None."""
    from forecaster.present.console import TerminalWriteError

    if isinstance(exc, TerminalWriteError):
        return exc.stream
    if not isinstance(exc, OSError):
        return None
    echo, stream = click.utils.echo.__code__, None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is echo:
            local = tb.tb_frame.f_locals
            try:
                fd = local["file"].fileno()
            except Exception:  # noqa: BLE001 - no descriptor (a test runner's buffer): as echo was asked
                fd = None
            stream = {1: "stdout", 2: "stderr"}.get(fd, "stderr" if local.get("err") else "stdout")
        tb = tb.tb_next
    return stream


def _silence(name: str) -> None:
    """Point ``sys.<name>``'s file descriptor at the null device: what is still buffered
    is then flushed there at exit, not into the broken pipe or full device again (the
    recipe of https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    stream = getattr(sys, name, None)
    if stream is None:
        return
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):  # no descriptor (a test runner's buffer): nothing to redirect
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def _flush_stdout() -> OSError | None:
    """Flush stdout now, inside the command line's error handling, rather than at exit
    where a failure is a traceback; the error, if any (stdout is then silenced)."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except ValueError:  # already closed
        return None
    except OSError as exc:
        _silence("stdout")
        return exc
    return None


def _say(message: str) -> None:
    """A line on stderr; if stderr itself cannot be written to, nothing (and no traceback)."""
    try:
        click.echo(message, err=True)
    except OSError:
        _silence("stderr")


def _terminal_failed(ctx: click.Context | None, code: int | None, reason: str, stream: str):
    """End the command after a failed write to ``stream``: quietly for a closed pipe (0 for
    stdout, 141 for stderr), else status 2 and one line on stderr (if stderr still works)
    naming the command, its input and where its results are."""
    from forecaster.present.console import printable

    _silence(stream)
    if code == errno.EPIPE:
        sys.exit(CLOSED_STDOUT_STATUS if stream == "stdout" else CLOSED_STDERR_STATUS)
    if stream == "stdout":
        name, params = ctx.meta.get(_COMMAND, (None, {})) if ctx is not None else (None, {})
        inputs = [params[k] for k in ("scenario", "base", "folder", "history") if params.get(k)]
        what = " ".join(printable(x) for x in ["forecaster", name or "", *inputs] if x)
        files = params.get("out") or params.get("output")
        kept = (f"the results already written to {printable(files)} are kept" if files
                else "any results already written to files are kept")
        _say(f"Error: cannot write to stdout ({what}): {reason}; {kept}, only the terminal output was lost.")
    sys.exit(2)


class ForecasterCommand(click.Command):
    """A subcommand that leaves its name and parameters where the group's error handling
    reads them (a context shares ``meta`` with its parent), to name them in a message."""

    def invoke(self, ctx):
        ctx.meta[_COMMAND] = (ctx.info_name, dict(ctx.params))
        return super().invoke(ctx)


class ForecasterGroup(click.Group):
    """Turns forecaster's own errors into clean messages and anything else into status 1;
    a terminal that cannot be written to ends the command as the module docstring says."""

    command_class = ForecasterCommand

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except OSError as exc:  # click's own report of a usage error, into a closed or full stderr
            stream = _terminal_stream(exc)
            if stream is None:
                raise
            if stream == "stderr":  # the usage error stands (status 2), though it could not be shown
                _silence("stderr")
                sys.exit(2)
            _terminal_failed(None, exc.errno, exc.strerror or str(exc), stream)

    def parse_args(self, ctx, args):
        try:  # forecaster --help or --version into a closed pipe
            return super().parse_args(ctx, args)
        except OSError as exc:
            stream = _terminal_stream(exc)
            if stream is None:
                raise
            _terminal_failed(ctx, exc.errno, exc.strerror or str(exc), stream)

    def invoke(self, ctx):
        try:
            result = self._invoke(ctx)
        except (SystemExit, click.exceptions.Exit) as exc:
            failed = _flush_stdout()
            code = exc.code if isinstance(exc, SystemExit) else exc.exit_code
            if failed is not None and code in (0, None):  # the command succeeded but its output was lost
                _terminal_failed(ctx, failed.errno, failed.strerror or str(failed), "stdout")
            raise
        except BaseException:
            _flush_stdout()  # an error to report (on stderr): a failure of stdout is secondary to it
            raise
        failed = _flush_stdout()
        if failed is not None:
            _terminal_failed(ctx, failed.errno, failed.strerror or str(failed), "stdout")
        return result

    def _invoke(self, ctx):
        from forecaster.present.console import TerminalWriteError
        from forecaster.results.files import Terminated, handle_interrupts, interrupt_behind

        try:
            with handle_interrupts(sigterm=True):  # a kill ends every command as Ctrl-C does
                return super().invoke(ctx)
        except ForecasterError as exc:
            raise BadInput(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except TerminalWriteError as exc:
            _terminal_failed(ctx, exc.errno, exc.strerror, exc.stream)
        except Terminated:
            _say("Terminated (SIGTERM): finished results are kept, unfinished ones were not written.")
            sys.exit(143)
        except KeyboardInterrupt:
            _say("Interrupted: finished results are kept, unfinished ones were not written.")
            sys.exit(130)
        except Exception as exc:  # an internal error: say so plainly
            behind = interrupt_behind(exc)  # unless a signal's exception came out as another error
            if isinstance(behind, Terminated):
                _say("Terminated (SIGTERM): finished results are kept, unfinished ones were not written.")
                sys.exit(143)
            if isinstance(behind, KeyboardInterrupt):
                _say("Interrupted: finished results are kept, unfinished ones were not written.")
                sys.exit(130)
            stream = _terminal_stream(exc)
            if stream is not None and isinstance(exc, OSError):  # click.echo into a closed pipe or a full device
                _terminal_failed(ctx, exc.errno, exc.strerror or str(exc), stream)
            if os.environ.get("FORECASTER_DEBUG"):
                raise
            from forecaster.present.console import printable

            _say(f"Internal error: {type(exc).__name__}: {printable(exc, newlines=True)}\n"
                 "This is a bug in forecaster; set FORECASTER_DEBUG=1 to see the traceback and please report it.")
            sys.exit(1)


@click.group(cls=ForecasterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forecaster")
def main():
    """Monte Carlo revenue and commission forecasts for sales funnels.

    \b
    Example:
      forecaster validate scenarios/saas-quarter.yaml
      forecaster run scenarios/saas-quarter.yaml --out out/saas

    \b
    Exit status: 0 done (also when stdout's reader stops early, as `| head`
    does); 2 bad input or usage, or stdout cannot be written (a message,
    nothing half-written); 1 a bug in forecaster; 130 Ctrl-C; 143 SIGTERM;
    141 stderr's reader went away.
    """


# the commands register themselves on import
from forecaster.cli import (  # noqa: E402,F401
    allocate as _allocate,
    backtest as _backtest,
    batch as _batch,
    calibrate as _calibrate,
    compare as _compare,
    report as _report,
    run as _run,
    schema as _schema,
    sensitivity as _sensitivity,
    validate as _validate,
)
