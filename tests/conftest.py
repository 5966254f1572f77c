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


# Scenarios that, with tests/golden/extensions.yaml (pipeline, closing, capacity, shocks), call
# every kernel (tests/engine/test_engine_compile.py checks that each compiles once): file name -> text.
_HEAD = "name: k\nstart: 2027-01-01\nend: 2027-03-31\ntrials: 20\nseed: 5\nstages: [s0, s1, s2]\n"
_FUNNEL = """    funnel:
      s0: {convert: 0.5, days: {dist: exponential, mean: 4}}
      s1: {convert: 0.5, days: 3VALUE}
      s2: {convert: 0.4, days: {dist: gamma, mean: 6, cv: 0.5}MOVES}
    deal_value: {dist: lognormal, median: 3000, sigma: 0.5}
"""
_MOVES = _FUNNEL.replace("MOVES", ", moves: [{to: s0, share: 0.2}]")
_PLAIN = _FUNNEL.replace("MOVES", "").replace("VALUE", "")
KERNEL_FEATURES = {  # the kernels extensions.yaml does not call
    # moves under a conversion drift, dated lead events, counts
    "moves-drift-events.yaml": _HEAD + "shocks: {drift: {convert: {s1: 0.3}}}\n"
    "outputs: {stage_entries: true, losses: true}\nsegments:\n  g:\n"
    "    leads: {per_week: 50, events: [{date: 2027-02-01, count: 40, stage: s1}]}\n" + _MOVES.replace("VALUE", ""),
    # moves with a stage value and an open pipeline
    "moves-values.yaml": _HEAD + "pipeline: {file: p.csv}\nsegments:\n  g:\n    leads: {per_week: 50}\n"
    + _MOVES.replace("VALUE", ", value: 10"),
    # customers behind a capacity, an installed base, a stage value without moves, bought leads
    # (leads counted, those never won)
    "customers.yaml": _HEAD + "capacity: {won_per_month: 5}\ncustomers: {file: c.csv}\n"
    "outputs: {leads: true, losses: true}\nsegments:\n  g:\n    leads: {per_week: 50}\n"
    "    customer: {subscription: {term_months: 1, renew: 0.9}}\n" + _FUNNEL.replace("MOVES", "").replace(
        "VALUE", ", value: 10")
    + "  b:\n    leads: {budget_per_month: 2000, cost_per_lead: 40}\n" + _PLAIN,
}
KERNEL_FEATURE_FILES = {
    "p.csv": "deal_id,segment,stage,entered_stage,amount,owner\nD1,g,s2,2026-12-01,4000,\nD2,g,s1,2026-12-10,,\n",
    "c.csv": "customer_id,segment,term_end,value,renewals,first_purchase,last_purchase,purchases,owner\n"
             "C1,g,2027-01-20,100,2,,,,\n"}
"""The files the scenarios above read: name -> text."""


@pytest.fixture(scope="session", autouse=True)
def _kernels_compiled(tmp_path_factory):
    """Load (or, on a fresh machine, compile) every kernel before the tests, so that the
    one-time "compiling the simulation kernels" message lands here and not inside a test
    that checks what a command prints; subprocesses then load the machine code from disk.

    Under pytest-xdist every worker runs the same scenarios, each starting with another: on a
    cold cache the workers then compile different kernels side by side, and a kernel another
    worker is compiling is waited for and loaded, not compiled twice (the engine's compile
    lock, ``forecaster.engine._numba.compile_lock``)."""
    folder = tmp_path_factory.mktemp("kernels")
    for name, text in {**KERNEL_FEATURE_FILES, **KERNEL_FEATURES}.items():
        (folder / name).write_text(text)
    paths = [Path(__file__).resolve().parent / "golden" / "extensions.yaml", *(folder / n for n in KERNEL_FEATURES)]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    turn = int(worker[2:]) % len(paths) if worker[2:].isdigit() else 0
    for path in paths[turn:] + paths[:turn]:
        fc.simulate(fc.load_scenario(path), trials=2, seed=0)


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
    "test_oracle_benchmark.py",               # 45 s: 274 synthetic histories against their oracle
    "test_packaging.py",                      # builds the wheel
)


def pytest_collection_modifyitems(session, config, items):
    here = Path(__file__).resolve().parent
    rank = {here / f: i for i, f in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(Path(str(item.path)).resolve(), len(SLOW_FILES)))  # stable
