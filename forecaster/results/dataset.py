"""A run held in memory: :func:`simulate`, every trial as an xarray Dataset."""
from __future__ import annotations

from forecaster.engine.plan import build_plan
from forecaster.engine.simulation import Progress, run_trials
from forecaster.results.layout import Layout, MemorySink
from forecaster.scenario.model import Scenario


def simulate(scenario: Scenario, *, trials: int | None = None, seed: int | None = None,
             threads: int | None = None, progress: Progress | None = None, client=None):
    """Run the Monte Carlo forecast of a scenario, keeping every trial in memory.

    Parameters
    ----------
    scenario : Scenario
        From :func:`forecaster.load_scenario`.
    trials, seed : int, optional
        Override the scenario's ``trials`` and ``seed``.
    threads : int, optional
        Threads to run blocks of trials on (default: ``NUMBA_NUM_THREADS``, i.e. the
        cores). The numbers do not depend on it.
    progress : callable, optional
        Called with the number of trials finished after each block.
    client : distributed.Client, optional
        Run the blocks on this Dask cluster instead; the numbers are the same.

    Returns
    -------
    xarray.Dataset
        Per-trial results: ``revenue(trial, period)``, ``won_deals(trial, period)``,
        ``revenue_by_segment`` and ``won_deals_by_segment(trial, period, segment)``; with a
        team ``bookings(trial, quota_period, rep)``; with a commission plan
        ``commission(trial, period, rep)``. Attributes name the scenario, seed and trials.
    """
    sc = scenario.with_run(trials, seed)
    plan = build_plan(sc)
    sink = MemorySink(Layout.of(sc, plan))
    runner = None
    if client is not None:
        from forecaster.engine.cluster import DaskRunner  # Dask is optional: imported when asked for
        runner = DaskRunner(client)
    run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=threads, progress=progress, runner=runner)
    return sink.to_dataset()
