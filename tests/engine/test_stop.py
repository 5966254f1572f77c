"""A run told to stop gives up within a block (sensitivity's runs, when the command is
interrupted, stop instead of finishing every trial on their threads)."""
import threading

import pytest
from conftest import SCENARIOS

import forecaster as fc
from forecaster.engine.plan import build_plan
from forecaster.engine.seeding import BLOCK_TRIALS
from forecaster.engine.simulation import Stopped, run_trials
from forecaster.results.layout import Layout, MemorySink


class CountingSink(MemorySink):
    def __init__(self, layout):
        super().__init__(layout)
        self.commits = 0

    def commit(self, lo, n, buffers):
        self.commits += 1
        super().commit(lo, n, buffers)


def _setup(trials):
    sc = fc.load_scenario(SCENARIOS / "minimal.yaml").with_run(trials, 1)
    plan = build_plan(sc)
    return sc, plan, CountingSink(Layout.of(sc, plan))


def test_a_stopped_run_runs_no_block():
    sc, plan, sink = _setup(3 * BLOCK_TRIALS)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=1, stop=stop)
    assert sink.commits == 0


def test_a_run_stopped_midway_gives_up_at_the_next_block():
    sc, plan, sink = _setup(5 * BLOCK_TRIALS)
    stop, blocks_done = threading.Event(), []

    def progress(n):  # called after each block: stop after the first
        blocks_done.append(n)
        stop.set()

    with pytest.raises(Stopped):
        run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=1, stop=stop, progress=progress)
    assert blocks_done == [BLOCK_TRIALS] and sink.commits == 0


def test_an_unset_event_changes_nothing():
    sc, plan, sink = _setup(2 * BLOCK_TRIALS)
    run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=1, stop=threading.Event())
    ref_sc, ref_plan, ref = _setup(2 * BLOCK_TRIALS)
    run_trials(ref_plan, ref_sc, ref, chunk_trials=ref_sc.trials, threads=1)
    a, b = sink.arrays(), ref.arrays()
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

