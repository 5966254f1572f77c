"""Processes started together on a cold cache compile a function once: the others wait for
the compile lock (``forecaster.engine._numba.compile_lock``) and load what the first wrote.

Each test compiles a one-line function of its own in a private cache folder (fractions of a
second), in child processes, while the test itself holds or lets go of the function's lock.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forecaster.engine import _numba

fcntl = pytest.importorskip("fcntl")  # the lock is POSIX's; elsewhere compiles go unlocked
JIT_OFF = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
pytestmark = pytest.mark.skipif(JIT_OFF, reason="nothing compiles without the JIT")

MODULE = """
from forecaster.engine._numba import jit

@jit
def plus_one(x):
    return x + 1
"""

CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from forecaster.engine import _numba
_numba.WAIT_MESSAGE_AFTER = 0.2
if len(sys.argv) > 3:
    _numba.COMPILE_LOCK_WAIT = float(sys.argv[3])
import lockmod
Path(sys.argv[2] + ".ready").write_text("")
t0 = time.monotonic()
assert lockmod.plus_one(41) == 42
print(json.dumps({"misses": sum(lockmod.plus_one.stats.cache_misses.values()),
                  "hits": sum(lockmod.plus_one.stats.cache_hits.values()), "seconds": time.monotonic() - t0}))
"""


@pytest.fixture
def setup(tmp_path):
    """(folder with lockmod.py, environment with a private cache, the function's lock file)."""
    (tmp_path / "lockmod.py").write_text(MODULE)
    env = {k: v for k, v in os.environ.items() if k != "FORECASTER_QUIET_COMPILE"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    folder = _numba.cache_folder(_numba.source_hash(_numba.kernel_sources()), environ=env)
    return tmp_path, env, folder / "lockmod.plus_one.lock"


def _start(tmp_path: Path, env: dict, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(tmp_path / name), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(tmp_path: Path, names, procs, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not all((tmp_path / f"{n}.ready").exists() for n in names):
        for p in procs:
            assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "the children never got ready"
        time.sleep(0.05)


def _result(proc: subprocess.Popen) -> dict:
    """What the child printed, and whether it said it waited for another process."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return {**json.loads(out.strip().splitlines()[-1]), "said_wait": "waiting for another process" in err}


def test_processes_wait_for_the_lock_and_only_the_first_compiles(setup):
    """While the lock is held, two processes needing the function wait (neither finishes);
    once it is let go, one compiles and the other loads its machine code: one miss in all."""
    tmp_path, env, lock = setup
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [_start(tmp_path, env, "a"), _start(tmp_path, env, "b")]
        _wait_ready(tmp_path, ("a", "b"), procs)
        time.sleep(2.0)  # a one-line function compiles in well under this: without the lock both would be done
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
    results = [_result(p) for p in procs]
    assert sorted(r["misses"] for r in results) == [0, 1], results
    assert sorted(r["hits"] for r in results) == [0, 1], results
    assert all(r["said_wait"] for r in results), results


def test_a_lock_held_too_long_is_ignored(setup):
    """A holder that never lets go (a stopped process) delays a compile by the wait only."""
    tmp_path, env, lock = setup
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = _start(tmp_path, env, "c", "1.0")
        result = _result(proc)
    assert result["misses"] == 1 and result["hits"] == 0, result
    assert result["said_wait"] and 1.0 <= result["seconds"] < 60, result


def test_no_lock_file_means_no_lock_and_a_long_wait_is_told(tmp_path, monkeypatch):
    """A lock file that cannot be made (its folder is missing): the compile goes ahead
    unlocked, as before the lock. Waiting on another holder past WAIT_MESSAGE_AFTER calls
    ``on_wait`` once (the line on stderr), and the wait ends unlocked at its limit."""
    with _numba.compile_lock(tmp_path / "missing-folder" / "f.lock") as locked:
        assert locked is False
    monkeypatch.setattr(_numba, "WAIT_MESSAGE_AFTER", 0.1)
    told = []
    with _numba.compile_lock(tmp_path / "f.lock") as locked:
        assert locked is True
        with _numba.compile_lock(tmp_path / "f.lock", wait=0.5, on_wait=lambda: told.append(1)) as again:
            assert again is False  # another holder (this process, through another file): waited, then not held
    assert told == [1]
    with _numba.compile_lock(tmp_path / "f.lock", wait=0.5, on_wait=lambda: told.append(2)) as locked:
        assert locked is True and told == [1]  # let go: taken at once, nothing said
