"""A signal that lands while a numba kernel runs reaches Python as another error (numba's
dispatcher: "SystemError: ... returned a result with an exception set", caused by the
interrupt): it must end the command as the interrupt does (143 / 130), not as a bug (1).
The fuzz battery's SIGTERM-during-calibrate case found it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from forecaster.results.files import Terminated, interrupt_behind

ROOT = Path(__file__).resolve().parents[2]


def _chained(interrupt: BaseException) -> SystemError:
    try:
        try:
            raise interrupt
        except KeyboardInterrupt as exc:
            raise SystemError("CPUDispatcher(<function k>) returned a result with an exception set") from exc
    except SystemError as err:
        return err


def test_the_interrupt_behind_an_error_is_found():
    term = Terminated()
    assert interrupt_behind(_chained(term)) is term
    ctrl_c = KeyboardInterrupt()
    assert interrupt_behind(_chained(ctrl_c)) is ctrl_c
    assert interrupt_behind(ValueError("a bug")) is None


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_inside_a_kernel_ends_the_command_as_an_interrupt(tmp_path, signum, status):
    """A command whose kernel call turns the signal into a SystemError (as numba's does)."""
    code = """
import signal, sys, time
import forecaster.cli as cli
import click

@cli.main.command("busy")
def busy():
    print("busy", file=sys.stderr, flush=True)
    try:
        time.sleep(30)
    except KeyboardInterrupt as exc:
        raise SystemError("CPUDispatcher(<function k>) returned a result with an exception set") from exc

sys.argv = ["forecaster", "busy"]
cli.main()
"""
    # Ctrl-C's and SIGTERM's defaults in the child, whatever this worker inherited: a run in
    # the background (a shell without job control) starts with SIGINT ignored, and the
    # command rightly leaves an ignored signal ignored, which would end this test with 0
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=_default_signals)
    # signalled once the command runs (a fixed wait was too short for the imports on a loaded
    # machine); stderr is read on a thread, so that a child that hangs or dies ends the wait
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line == "busy\n":
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not running.wait(0.05) and proc.poll() is None and time.monotonic() < deadline:
            pass
        assert running.is_set(), "the command never ran: " + "".join(lines)
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == status, err
    assert "Internal error" not in err and ("Terminated" in err or "Interrupted" in err)
