"""Writing results safely: interrupts, stale temporaries, full disks, file-size limits, sizes.

A run that fails, is interrupted or terminated leaves the previous results and no temporary
file; a run that cannot fit is refused before it writes anything; smaller outputs on request.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SCENARIOS

import forecaster as fc
from forecaster.cli import main
from forecaster.results import files, outputs
from forecaster.results.files import GuardedFile, sweep_stale_temporaries
from forecaster.results.outputs import run_to_folder

MINIMAL = SCENARIOS / "minimal.yaml"
SAAS = SCENARIOS / "saas-quarter.yaml"


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp")) if folder.is_dir() else []


@pytest.fixture
def previous(tmp_path):
    """An output folder holding a finished run, and its files' bytes."""
    out = tmp_path / "out"
    run_to_folder(fc.load_scenario(MINIMAL).with_run(trials=300, seed=2), out)
    return out, {p.name: p.read_bytes() for p in out.iterdir()}


def unchanged(out: Path, before: dict) -> bool:
    return {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- interrupts ------------------------------------------------------------------------------

@pytest.mark.parametrize("sig,status,said", [(signal.SIGTERM, 143, "Terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "Interrupted")], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_run_removes_its_temporary_file_and_keeps_the_previous_results(previous, sig, status, said):
    out, before = previous
    proc = subprocess.Popen([sys.executable, "-m", "forecaster", "run", str(MINIMAL), "--out", str(out),
                             "--trials", "3000000", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:  # wait for trials to be written
            if any(p.name.startswith(".forecast.nc.") and p.stat().st_size > 1 << 20 for p in temporaries(out)):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be signalled"
        assert temporaries(out), "no temporary file to clean up"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, stderr
    assert said in stderr and "nothing was written and --out keeps its previous results" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert temporaries(out) == []
    assert unchanged(out, before)


def test_an_interrupt_inside_the_netcdf_librarys_file_io_waits_for_a_safe_point(tmp_path, monkeypatch):
    """HDF5 cannot recover from an exception raised in its file callbacks: defer it."""
    calls = []
    real_write = os.write

    def write_then_signal(fd, data):
        calls.append(1)
        files.on_signal(signal.SIGTERM, sys._getframe())  # as if SIGTERM arrived right here
        return real_write(fd, data)

    guard = GuardedFile(tmp_path / "f")
    monkeypatch.setattr(files.os, "write", write_then_signal)
    try:
        assert guard.write(b"abc") == 3  # not interrupted
    finally:
        monkeypatch.undo()
        guard.close()
    assert calls and (tmp_path / "f").read_bytes() == b"abc"
    with pytest.raises(files.Terminated):
        files.checkpoint()
    files.checkpoint()  # raised once
    try:
        with pytest.raises(KeyboardInterrupt):  # outside the library: at once
            files.on_signal(signal.SIGINT, sys._getframe())
    finally:
        files._Interrupts.pending = None



SIGNAL_IN_A_COMPILE = """
import os, signal, sys, time
from pathlib import Path
from numba.core.codegen import CPUCodeLibrary
from forecaster.results import files

hook = CPUCodeLibrary._object_compiled_hook.__func__
sent = []

def hook_then_signal(cls, ll_module, buf):
    # called by llvmlite's object-cache callback, while LLVM hands numba the object code
    if not sent:
        sent.append(time.monotonic())
        os.kill(os.getpid(), int(sys.argv[2]))
        sys._getframe()  # a line for the signal's handler to run on, inside the callback
    return hook(cls, ll_module, buf)

CPUCodeLibrary._object_compiled_hook = classmethod(hook_then_signal)
folder = Path(sys.argv[1])
(folder / "kernel_for_the_signal.py").write_text(
    "import numba\\n@numba.njit(cache=True)\\ndef f(n):\\n    s = 0.0\\n"
    "    for i in range(n):\\n        s += i * 0.5\\n    return s\\n")
sys.path.insert(0, str(folder))
try:
    with files.handle_interrupts(sigterm=True):
        import kernel_for_the_signal
        kernel_for_the_signal.f(3)
        time.sleep(30)  # the signal sent again must end this, long before
except KeyboardInterrupt as exc:
    late = time.monotonic() - sent[0]
    print(type(exc).__name__, f"{late:.3f}")
    time.sleep(4 * files.RESEND_AFTER)  # no signal sent again now that the handlers are gone
    print("alive")
# CPython ends a process whose KeyboardInterrupt once passed out of an exec() of a string (as
# numba runs generated code) by killing it with SIGINT at exit, caught or not: the status
# checked is this program's, so it leaves without that last step (a signal sent again after
# the handlers are gone kills it during the sleep above, before "alive")
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.parametrize("sig,name", [(signal.SIGTERM, "Terminated"), (signal.SIGINT, "KeyboardInterrupt")])
def test_a_signal_inside_llvms_callback_during_a_compile_is_raised_after_it(tmp_path, sig, name):
    """A signal whose exception was raised inside llvmlite's object-cache callback (a ctypes
    callback from LLVM while numba compiles a kernel) was dropped with 'Exception ignored', the
    compile failed ('no compiled object yet') or the process died (status 139, in CI's fuzz
    battery on a cold cache). It is sent again a moment later and raised outside LLVM, in
    numba's Python code: the interrupt ends the run within a second, and no signal is sent once
    the command's handlers are gone (that would kill the process with the default action)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_A_COMPILE, str(tmp_path), str(int(sig))],
                          capture_output=True, text=True, timeout=120, env=env,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    said = proc.stdout.split()
    assert len(said) == 3 and (said[0], said[2]) == (name, "alive"), proc.stdout
    assert float(said[1]) < 1.0


SIGNAL_IN_LLVM_CALLBACK = """
import os, signal, sys, time
from llvmlite.binding import executionengine
from forecaster.results import files

def _raw_object_cache_notify(handler, frame):  # stands in for llvmlite's callback, as LLVM calls it
    handler(signal.SIGTERM, frame())

executionengine.ExecutionEngine._raw_object_cache_notify = _raw_object_cache_notify
callback = executionengine.ExecutionEngine._raw_object_cache_notify
case = sys.argv[1]
if case == "path":  # a user's own code under a folder named llvmlite is not a callback
    here = {}
    exec(compile("def job(handler, frame):\\n    handler(signal.SIGTERM, frame())\\n",
                 os.path.join(os.sep, "home", "llvmlite", "job.py"), "exec"), {"signal": signal}, here)
    callback = here["job"]
t0 = time.monotonic()
try:
    with files.handle_interrupts(sigterm=True):
        callback(files.on_signal, sys._getframe)
        print("deferred")
        if case == "ends":
            pass  # the command ends at once: its last checkpoint raises it, before the signal is sent again
        elif case == "second":  # a second SIGTERM, outside the callback, within the 50 ms
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        else:  # Python code runs on (numba's compiler, after the callback): the signal sent again ends it
            while time.monotonic() - t0 < 5:
                pass
        print("not interrupted")
except files.Terminated:
    print("raised", f"{time.monotonic() - t0:.3f}")
    t1 = time.monotonic()
    while time.monotonic() - t1 < 6 * files.RESEND_AFTER:  # a clean-up: never interrupted again
        pass
    print("clean")
time.sleep(6 * files.RESEND_AFTER)  # SIGTERM's default action again: a signal sent now would kill
print("alive")
"""


@pytest.mark.parametrize("case, said", [
    ("resend", ["deferred", "raised", "clean", "alive"]),    # sent again, raised outside the callback
    ("ends", ["deferred", "not", "interrupted", "raised", "clean", "alive"]),  # raised at the end: not sent again
    ("second", ["deferred", "raised", "clean", "alive"]),    # a second signal raised: not sent again
    ("path", ["raised", "clean", "alive"]),                  # not a callback: raised at once
])
def test_a_signal_deferred_in_llvms_callback_is_raised_once_and_never_after_the_handlers_are_gone(case, said):
    """Deferred inside llvmlite's object-cache callback, the interrupt is raised once, within
    a fraction of a second: when the signal is sent again (by pthread_kill), or at the command's end, or
    by a second signal; never a second time during the clean-up after it (review: two
    signals within 50 ms raised twice, and the batch's tables were left unwritten), and
    never once SIGTERM's default action is back (it would kill the process). Only the
    callbacks defer: code under a folder named llvmlite is raised in at once."""
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_LLVM_CALLBACK, case], capture_output=True, text=True,
                          timeout=60)
    words = proc.stdout.split()
    assert proc.returncode == 0 and [w for w in words if not w[0].isdigit()] == said, (proc.stdout, proc.stderr)
    assert float(next(w for w in words if w[0].isdigit())) < 1.0


SIGNAL_AT_A_LOOPS_BACK_EDGE = """
import signal, sys, threading, time
from forecaster.results import files

main = threading.main_thread().ident

def loop(kind, cleaned):  # a while loop inside a try of the same frame: signals land on its back edge
    t0 = time.monotonic()
    try:
        with files.handle_interrupts(sigterm=True):
            threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGTERM)).start()
            try:
                n = 0
                if kind == "pure":  # nothing but the back edge checks for signals: raised when the loop ends
                    while n < 2 * 10**6:
                        n += 1
                elif kind == "endless":  # nor here, and it never ends: stopped all the same
                    while n >= 0:
                        n += 1
                else:  # a call checks too: raised there, soon
                    while time.monotonic() - t0 < 5:
                        pass
            finally:
                cleaned.append(True)
    except files.Terminated:
        return "caught", time.monotonic() - t0
    return "ended", time.monotonic() - t0

for kind in sys.argv[1:]:
    cleaned, t0 = [], time.monotonic()
    try:
        said, seconds = loop(kind, cleaned)
    except files.Terminated:  # out of the loop's frame without its clean-up
        said, seconds = "escaped", time.monotonic() - t0
    print(kind, said, bool(cleaned), f"{seconds:.3f}")
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="the test signals the main thread from another")
def test_a_signal_at_a_while_loops_back_edge_is_caught_by_the_loops_own_try():
    """CPython 3.13 leaves some loops' back edge out of the exception table
    (python/cpython#108214) and checks for signals on it: an interrupt raised there skipped the
    loop's own ``except``, ``finally`` and ``with`` (CI's Python 3.13: 8 of 8 times for a pure
    loop; 3.11 and 3.12 catch it). It is sent again until it lands elsewhere: at a call, soon,
    or when a loop of nothing but arithmetic ends; a loop that never ends is stopped after
    BACK_EDGE_PATIENCE all the same (review: it had ignored every SIGTERM)."""
    kinds = ["pure", "call", "pure", "call", "endless"]
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AT_A_LOOPS_BACK_EDGE, *kinds], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert [w[0] for w in lines] == kinds, proc.stdout
    assert all(w[1:3] == ["caught", "True"] for w in lines if w[0] != "endless"), proc.stdout
    endless = lines[-1]
    assert endless[1] in ("caught", "escaped") and float(endless[3]) < files.BACK_EDGE_PATIENCE + 2.0, proc.stdout


SIGNAL_IN_HDF5_WRITE = """
import os, signal, sys
from forecaster.results import files
real_write, calls = os.write, [0]

def write(fd, data):  # the signal arrives while HDF5 writes through GuardedFile.write
    if sys._getframe(1).f_code is files.GuardedFile.write.__code__:
        calls[0] += 1
        if calls[0] == int(sys.argv[3]):
            os.kill(os.getpid(), int(sys.argv[4]))
    return real_write(fd, data)

os.write = write
from forecaster.cli import main
main(["batch", sys.argv[1], "--out", sys.argv[2], "--trials", "300", "--quiet"], prog_name="forecaster")
"""


@pytest.mark.parametrize("sig,status,said,nth", [(signal.SIGINT, 130, "Interrupted", 8),
                                                 (signal.SIGINT, 130, "Interrupted", 40),
                                                 (signal.SIGTERM, 143, "Terminated (SIGTERM)", 8)],
                         ids=["SIGINT-8th", "SIGINT-40th", "SIGTERM-8th"])
def test_a_signal_inside_hdf5s_file_callback_during_a_batch_waits_for_a_safe_point(tmp_path, sig, status, said, nth):
    """The batch's own handler (it sets the stop flag) defers as every command's does: raised
    inside GuardedFile.write (an h5py object's dealloc among others) HDF5 crashed (status 139)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(3):
        (folder / f"s{i}.yaml").write_text(MINIMAL.read_text().replace("name: minimal", f"name: s{i}"))
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_HDF5_WRITE, str(folder), str(out), str(nth), str(int(sig))],
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == status, proc.stderr
    assert said in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

SIGTERM_SWALLOWED = """
import os, signal, sys
from forecaster.present import batch

def run_batch(*args, **kwargs):  # a SIGTERM whose exception lands where Python ignores it
    class Dropped:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
    Dropped()
    if batch.STOP.is_set():  # as run_batch does between scenarios
        raise KeyboardInterrupt
    raise AssertionError("the signal did not set the stop flag")

batch.run_batch = run_batch
from forecaster.cli import main
main(["batch", sys.argv[1], "--out", sys.argv[2], "--quiet"], prog_name="forecaster")
"""


def test_a_sigterm_whose_exception_was_swallowed_still_ends_the_batch_as_a_kill(tmp_path):
    """The stop flag ends the batch at the next scenario with a KeyboardInterrupt; the batch
    tells it was SIGTERM (143), not Ctrl-C (130)."""
    (tmp_path / "in").mkdir()
    proc = subprocess.run([sys.executable, "-c", SIGTERM_SWALLOWED, str(tmp_path / "in"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    # the signal arrives inside __del__, where an exception would be lost: without the
    # batch's own record of the signal this exits 130, "Interrupted" (checked)
    assert proc.returncode == 143, proc.stderr
    assert "Terminated (SIGTERM)" in proc.stderr


# --- stale temporaries -----------------------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_runs_are_swept_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.1)
        stale = out / f".forecast.nc.{dead_pid()}.0123456789ab.tmp"
        stale.write_bytes(b"x" * 5000)
        running = out / f".forecast.nc.{live.pid}.abcdef012345.tmp"  # a run in progress
        running.write_bytes(b"y")
        reused = out / f".summary.json.{live.pid}.fedcba987654.tmp"  # written before that process started
        reused.write_bytes(b"z")
        os.utime(reused, (time.time() - 3600, time.time() - 3600))
        others = [out / name for name in ("notes.tmp", ".forecast.nc.tmp", ".forecast.nc.123.xyz.tmp", "keep.nc",
                                          f".forecast.nc.{dead_pid()}.0123456789AB.tmp",
                                          f"forecast.nc.{dead_pid()}.0123456789ab.tmp")]
        for path in others:
            path.write_text("not ours")
        own = out / f".report.html.{os.getpid()}.0123456789ab.tmp"
        own.write_text("this process's own")
        res = invoke("run", MINIMAL, "--out", out, "--trials", 200)
        assert res.exit_code == 0, res.output
        assert "Removed 2 temporary files" in res.output and f"left in {out} by runs that were killed" in res.output
        assert not stale.exists() and not reused.exists()
        assert running.exists() and own.exists() and all(p.exists() for p in others)
        assert (out / "summary.json").exists() and (out / "forecast.nc").exists()
    finally:
        live.kill()
        live.wait()
    assert sweep_stale_temporaries(out) == [(running, 1)]  # its process has gone now


def test_a_temporary_untouched_for_a_day_is_stale_even_if_its_pid_runs(tmp_path):
    # a process of our own that runs meanwhile (not the parent: a test run started by a shell
    # that has exited has pid 1 for parent, which the sweep rightly never considers)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = tmp_path / f".forecast.nc.{live.pid}.0123456789ab.tmp"
        old.write_text("x")
        assert sweep_stale_temporaries(tmp_path, now=time.time() + files.STALE_AFTER - 60) == []
        assert sweep_stale_temporaries(tmp_path, now=time.time() + files.STALE_AFTER + 60) == [(old, 1)]
    finally:
        live.kill()
        live.wait()


# --- write errors ----------------------------------------------------------------------------

def limited(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_size_limit_is_refused_before_the_run(previous):
    out, before = previous
    proc = subprocess.run([sys.executable, "-m", "forecaster", "run", str(SAAS), "--out", str(out), "--trials",
                           "20000", "-q"], capture_output=True, text=True, preexec_fn=limited(3_000_000), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "forecast.nc would be about 10.3 MiB for 20,000 trials" in proc.stderr
    assert "may not write files larger than 2.9 MiB (the file-size limit, `ulimit -f`)" in proc.stderr
    assert "--keep summary" in proc.stderr and "--precision float32" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert temporaries(out) == [] and unchanged(out, before)


UNCHECKED = ("import forecaster.results.outputs as o\n"
             "o.check_room = lambda *a, **k: None  # as if the estimate had been wrong\n"
             "from forecaster.cli import main\n"
             "main()\n")


def test_a_file_size_limit_reached_while_writing_is_a_clean_error(previous):
    out, before = previous
    proc = subprocess.run([sys.executable, "-c", UNCHECKED, "run", str(SAAS), "--out", str(out), "--trials", "20000",
                           "-q"], capture_output=True, text=True, preexec_fn=limited(3_000_000), timeout=120)
    assert proc.returncode == 2, proc.stderr  # not -11: HDF5 never sees the failed write
    assert proc.stderr.startswith(f"Error: --out {out}: cannot write the results: File too large")
    assert "nothing was written and the previous results are kept" in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr and "HDF5" not in proc.stderr
    assert temporaries(out) == [] and unchanged(out, before)


def test_a_full_disk_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import shutil

    real = shutil.disk_usage

    def nearly_full(path):
        return real(path)._replace(free=2_000_000)

    monkeypatch.setattr(outputs.shutil, "disk_usage", nearly_full)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(SAAS), "--out", str(out), "--trials", "20000"])
    assert res.exit_code == 2
    assert (f"Error: --out {out}: 20,000 trials need about 10.3 MiB (forecast.nc 10.3 MiB, summary.json 22 KiB) but "
            "its filesystem has 1.9 MiB free; use --keep summary (summary.json only, about 22 KiB), --precision "
            "float32 (forecast.nc about 5.7 MiB) or fewer --trials (about 3,540 fit); --compress usually shrinks "
            "forecast.nc further, but this check cannot count on it. Nothing was written.") in res.output
    assert "Nothing was written." in res.output and "Traceback" not in res.output
    assert not out.exists()
    # the summary alone fits
    res = CliRunner().invoke(main, ["run", str(SAAS), "--out", str(out), "--trials", "20000", "--keep", "summary", "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


Usage = namedtuple("Usage", "total used free")


def test_absurd_trial_counts_are_refused_before_memory_is_allocated(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "memory_total", lambda: 1 << 30)
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: Usage(1 << 60, 0, 1 << 60))
    res = CliRunner().invoke(main, ["run", str(MINIMAL), "--out", str(tmp_path / "o"), "--trials", "100000000"])
    assert res.exit_code == 2
    assert "100,000,000 trials need about" in res.output and "of memory to summarise, more than this machine allows " \
        "(1.0 GiB); use fewer --trials (about" in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("chunk_bytes", [None, 1], ids=["one-chunk", "chunks-of-1000-trials"])
def test_the_estimate_bounds_the_files_written(tmp_path, monkeypatch, chunk_bytes):
    from forecaster.engine.plan import build_plan
    from forecaster.results import layout as results_layout
    from forecaster.results.layout import Layout

    if chunk_bytes:  # HDF5 allocates the last, partly filled chunk whole
        monkeypatch.setattr(results_layout, "CHUNK_BYTES", chunk_bytes)
    for path, trials in ((MINIMAL, 1), (MINIMAL, 5000), (SAAS, 2500)):
        sc = fc.load_scenario(path).with_run(trials=trials)
        layout = Layout.of(sc, build_plan(sc))
        for precision in ("float64", "float32"):
            out = tmp_path / f"{sc.name}-{trials}-{precision}"
            run_to_folder(sc, out, precision=precision)
            est = outputs.estimate(layout, precision=precision)
            nc, js = (out / "forecast.nc").stat().st_size, (out / "summary.json").stat().st_size
            assert nc <= est.forecast and js <= est.summary
            if trials > 1:
                assert est.forecast < 1.1 * nc and est.summary < 2.5 * js


def test_guarded_file_keeps_the_first_error_and_reads_zeros_past_the_end(tmp_path):
    guard = GuardedFile(tmp_path / "g")
    guard.write(b"hello")
    guard.seek(10)
    assert guard.read(4) == bytes(4)
    guard.seek(0)
    assert guard.read(5) == b"hello"
    guard.close()
    guard = GuardedFile(tmp_path / "g")
    os.close(guard._fd)
    guard._fd = os.open(tmp_path / "g", os.O_RDONLY)  # every write now fails
    assert guard.write(b"abc") == 3 and guard.write(b"def") == 3
    assert guard.error is not None and guard.seek(0, 2) == 6
    with pytest.raises(OSError):
        guard.check()
    guard.close()


# --- smaller outputs -------------------------------------------------------------------------

def test_keep_summary_writes_the_same_summary_only(tmp_path, monkeypatch):
    full, small, scratch = tmp_path / "full", tmp_path / "small", tmp_path / "scratch"
    assert invoke("run", SAAS, "--out", full, "--trials", 2500, "-q").exit_code == 0
    run_to_folder(fc.load_scenario(MINIMAL).with_run(trials=100), small)  # an older full run: its forecast.nc goes
    res = invoke("run", SAAS, "--out", small, "--trials", 2500, "--keep", "summary")
    assert res.exit_code == 0 and f"Wrote {small}/summary.json\n" in res.output
    assert sorted(p.name for p in small.iterdir()) == ["summary.json"]
    expected = json.loads((full / "summary.json").read_text())
    assert json.loads((small / "summary.json").read_text()) == expected
    # beyond memory, the trials go to a temporary file in --out, removed at the end
    monkeypatch.setattr(outputs, "memory_available", lambda: 1)
    res = invoke("run", SAAS, "--out", scratch, "--trials", 2500, "--keep", "summary", "-q")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in scratch.iterdir()) == ["summary.json"]
    assert json.loads((scratch / "summary.json").read_text()) == expected


def test_big_inputs_are_summarised_a_block_of_trials_at_a_time_with_the_same_numbers(tmp_path, monkeypatch):
    from forecaster.results import layout as results

    sc = fc.load_scenario(SAAS).with_run(trials=2500, seed=4)
    whole = run_to_folder(sc, tmp_path / "whole")
    monkeypatch.setattr(results, "ROW_BLOCK_INPUTS", 0)
    monkeypatch.setattr(results.RowBlocks, "ROWS", 700)
    assert run_to_folder(sc, tmp_path / "blocks") == whole


def test_keep_summary_with_report_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["run", str(MINIMAL), "--out", str(tmp_path / "o"), "--keep", "summary",
                                    "--report"])
    assert res.exit_code == 2 and "--report reads forecast.nc, which --keep summary does not write" in res.output
    assert not (tmp_path / "o").exists()


def test_float32_and_compression_make_smaller_files_of_the_same_trials(tmp_path):
    import xarray as xr

    args = ("run", SAAS, "--trials", 3000, "-q")
    for name, extra in (("f64", ()), ("f32", ("--precision", "float32")), ("gz", ("--compress",))):
        assert invoke(*args, "--out", tmp_path / name, *extra).exit_code == 0
    size = {name: (tmp_path / name / "forecast.nc").stat().st_size for name in ("f64", "f32", "gz")}
    assert size["f32"] < 0.65 * size["f64"] and size["gz"] < 0.8 * size["f64"]
    with xr.open_dataset(tmp_path / "f64" / "forecast.nc") as a, xr.open_dataset(tmp_path / "f32" / "forecast.nc") as b, \
            xr.open_dataset(tmp_path / "gz" / "forecast.nc") as c:
        a, b, c = a.load(), b.load(), c.load()
    assert c.identical(a)  # lossless
    assert b["revenue"].dtype == np.float32 and b["won_deals"].dtype == a["won_deals"].dtype
    assert np.allclose(b["revenue"].values, a["revenue"].values, rtol=1e-7, atol=0)
    assert np.array_equal(b["won_deals"].values, a["won_deals"].values)
    fast = json.loads((tmp_path / "f64" / "summary.json").read_text())
    assert json.loads((tmp_path / "gz" / "summary.json").read_text()) == fast
    approx = json.loads((tmp_path / "f32" / "summary.json").read_text())["metrics"]["revenue"]["total"]
    assert np.isclose(approx["mean"], fast["metrics"]["revenue"]["total"]["mean"], rtol=1e-6)


def test_run_help_documents_the_output_options():
    text = " ".join(invoke("run", "--help").output.split())
    for fragment in ("--keep [all|summary]", "summary.json only, with the same numbers",
                     "--precision [float64|float32]", "about 7 significant digits", "35-45% smaller",
                     "--compress", "losslessly", "40-55% smaller", "terminated (SIGTERM, 143)",
                     "refused before it starts"):
        assert fragment in text, fragment


def _cpu_seconds(pid: int) -> float:
    """The CPU time a running process has used (Linux: /proc/PID/stat's utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_sigterm_ends_any_command_cleanly(tmp_path):
    # not only `run`: compare (two scenarios, many trials) handles SIGTERM like Ctrl-C too
    out = tmp_path / "c"
    other = tmp_path / "other.yaml"
    other.write_text(MINIMAL.read_text().replace("name: ", "name: other-", 1))
    proc = subprocess.Popen([sys.executable, "-m", "forecaster", "compare", str(MINIMAL), str(other), "--out", str(out),
                             "--trials", "20000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # signalled once it has computed for 5 s (imports and set-up take under 2; 20 million
        # trials take minutes): a fixed wait can end before the imports on a loaded machine
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and _cpu_seconds(proc.pid) < 5.0:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "Terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not out.exists() or temporaries(out) == []
