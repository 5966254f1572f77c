"""Shared helpers: scenarios written from text, and the example files."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import forecaster as fc

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

HEAD = """\
name: {name}
start: 2027-01-01
end: 2027-03-31
trials: {trials}
seed: {seed}
"""

VALID = """\
name: valid
start: 2027-01-01
end: 2027-03-31
trials: 100
stages: [lead, qualified, proposal]
segments:
  direct:
    leads: {per_week: 120}
    funnel:
      lead:      {convert: 0.25, days: {dist: exponential, mean: 4}}
      qualified: {convert: 0.40, days: {dist: gamma, mean: 10, cv: 0.6}}
      proposal:  {convert: 0.30, days: {dist: lognormal, median: 12, sigma: 0.5}}
    deal_value: {dist: lognormal, median: 3000, sigma: 0.6}
"""
"""A small valid scenario (one segment, three stages), for tests that edit a file."""
D = 90  # days from 2027-01-01 to 2027-03-31
MONTH_DAYS = (31, 28, 31)


def scenario_text(body: str, name: str = "t", trials: int = 4000, seed: int = 1) -> str:
    return HEAD.format(name=name, trials=trials, seed=seed) + textwrap.dedent(body)


def synthetic_benchmark():
    """``benchmarks/synthetic.py`` as a module (the synthetic CRM histories with known truths),
    loaded once under the name ``synthetic_benchmark``."""
    import importlib.util
    import sys

    name = "synthetic_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "synthetic.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: its dataclass looks itself up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def load_text(tmp_path: Path, text: str, files: dict | None = None) -> fc.Scenario:
    """Write ``text`` as ``tmp_path/s.yaml`` (and ``files``: name -> text beside it) and load it."""
    for name, body in (files or {}).items():
        (tmp_path / name).write_text(body)
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return fc.load_scenario(path)


def scenario_problems(tmp_path: Path, text: str, files: dict | None = None) -> str:
    """The message of the ScenarioError that loading ``text`` (as :func:`load_text`) raises."""
    with pytest.raises(fc.ScenarioError) as info:
        load_text(tmp_path, text, files)
    return str(info.value)


@pytest.fixture
def make(tmp_path):
    """``make(body, **head)`` writes a scenario into tmp_path and loads it."""
    count = [0]

    def _make(body: str, *, files: dict | None = None, **head) -> fc.Scenario:
        count[0] += 1
        for name, text in (files or {}).items():
            (tmp_path / name).write_text(text)
        path = tmp_path / f"s{count[0]}.yaml"
        path.write_text(scenario_text(body, **head))
        return fc.load_scenario(path)

    return _make


def within(got: float, expected: float, se: float, k: float = 5.0) -> None:
    """|got - expected| <= k standard errors."""
    assert abs(got - expected) <= k * se, f"{got} vs expected {expected}: {abs(got - expected) / se:.1f} SE"


@pytest.fixture(scope="session", autouse=True)
def _kernels_compiled(tmp_path_factory):
    """Load (or, on a fresh machine, compile) every kernel once before the tests, so that the
    one-time "compiling the simulation kernels" message lands here and not inside a test
    that checks what a command prints; subprocesses then load the machine code from disk.

    Under pytest-xdist the workers share the kernels' cache folder: they take turns here (a
    lock file in the run's shared temporary folder), so the first compiles and writes the
    cache while the others wait and then load it, rather than all compiling at once and
    writing the same cache files over each other."""
    scenario = fc.load_scenario(Path(__file__).resolve().parent / "golden" / "extensions.yaml")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import fcntl  # POSIX; the suite runs on Linux

        lock = tmp_path_factory.getbasetemp().parent / "kernels-compiled.lock"
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file is closed
            fc.simulate(scenario, trials=2, seed=0)
    else:
        fc.simulate(scenario, trials=2, seed=0)  # pipeline, closing, capacity and shocks: every kernel


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject.toml's addopts): a worker per core and one more. Some tests wait
    rather than compute (a Dask cluster starting, a command run until it is signalled, a
    browser, a scheduler that never answers, PostgreSQL): the extra worker computes
    meanwhile. The whole suite on this 2-core machine (December 2026): 598 s with 2 workers,
    525 s with 3, 557 s with 4. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own reading of it
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores + 1


# The files that take longest (seconds on 2 loaded cores, CI of December 2026), started first.
# With --dist loadfile a file runs whole on one worker and the files are handed out in the
# order collected, alphabetical, which put the README's examples (one test, 1-2.5 minutes)
# and the other top-level files last: one worker ran them while the other idled. Only the
# order of files changes; the tests of a file keep theirs.
SLOW_FILES = (
    "history/test_fitting.py",                # 100-180 s
    "test_readme_examples.py",                # 65-160 s: the README's 10 commands, one after another
    "engine/test_engine_compile.py",          # 150 s: a cold compile of every kernel, by design
    "engine/test_moves_drift.py",             # 85 s
    "analysis/test_allocate.py",              # 80 s
    "test_fuzz_battery.py",
    "analysis/test_after_sale_analysis.py",
    "cli/test_history_sources_cli.py",
    "analysis/test_move_levers.py",
    "history/test_history_input.py",
    "engine/test_extensions.py",
    "test_notebooks.py",
    "test_packaging.py",                      # builds the wheel
)


def pytest_collection_modifyitems(session, config, items):
    here = Path(__file__).resolve().parent
    rank = {here / f: i for i, f in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(Path(str(item.path)).resolve(), len(SLOW_FILES)))  # stable
