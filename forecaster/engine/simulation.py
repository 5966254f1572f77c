"""The orchestrator: a Scenario, a seed and a trial count in; per-trial results out.

Trials run in blocks on a pool of threads; each block writes its own rows of the outputs,
and every random stream is reseeded for every trial from the trial's index (see
:mod:`forecaster.engine.seeding`), so the numbers do not depend on threads or blocks. Blocks are
grouped into chunks of consecutive trials that a sink (:mod:`forecaster.results.layout`) keeps
in memory or writes to a file.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from forecaster.engine import kernels
from forecaster.engine._numba import default_threads
from forecaster.engine.plan import Plan, build_plan
from forecaster.engine.seeding import BLOCK_TRIALS, StreamKeys, blocks, stream_keys, thread_generators
from forecaster.results.layout import Layout, MemorySink
from forecaster.scenario.model import Scenario

Progress = Callable[[int], None]


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
        from forecaster.engine.cluster import DaskRunner
        runner = DaskRunner(client)
    run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=threads, progress=progress, runner=runner)
    return sink.to_dataset()


CHUNK_BYTES = 64 << 20
"""Memory for one chunk of trials when results are streamed to a file."""


def chunk_trials_for(layout: Layout) -> int:
    """Trials per streamed chunk: a whole number of blocks within :data:`CHUNK_BYTES`."""
    per_trial = sum(8 * int(np.prod([layout.sizes()[d] for d in v.dims[1:]])) for v in layout.variables())
    blocks_per_chunk = max(1, CHUNK_BYTES // max(1, 2 * per_trial * BLOCK_TRIALS))
    return int(blocks_per_chunk * BLOCK_TRIALS)


def run_trials(plan: Plan, sc: Scenario, sink, *, chunk_trials: int, threads: int | None = None,
               progress: Progress | None = None, runner=None) -> None:
    """Run every block of trials, handing the sink one chunk of consecutive trials at a time.

    Blocks of a chunk run on a pool of threads, each into its own rows of the chunk's
    buffers, or on a cluster through ``runner`` (a :class:`forecaster.engine.cluster.DaskRunner`);
    ``sink.commit`` follows once the whole chunk is done.
    """
    work = blocks(sc.trials)
    keys = stream_keys(plan, sc.seed)
    per_chunk = max(1, chunk_trials // BLOCK_TRIALS)
    threads = max(1, min(threads or default_threads(), len(work)))
    pool = ThreadPoolExecutor(threads) if threads > 1 and runner is None else None
    try:
        for i in range(0, len(work), per_chunk):
            group = work[i:i + per_chunk]
            lo = group[0][1]
            n = group[-1][1] + group[-1][2] - lo
            buffers = sink.buffers(lo, n)
            if runner is not None:
                runner.run_chunk(plan, sc.seed, group, lo, buffers, progress)
                sink.commit(lo, n, buffers)
                continue

            def one(block, lo=lo, buffers=buffers):
                b, first, count = block
                sl = slice(first - lo, first - lo + count)
                run_block(plan, keys, first, count, *(buf[sl] for buf in buffers))
                return count

            for done in (pool.map(one, group) if pool else map(one, group)):
                if progress:
                    progress(done)
            sink.commit(lo, n, buffers)
    finally:
        if pool:
            pool.shutdown()


def run_block(plan: Plan, keys: StreamKeys, first: int, n: int, revenue, won, bookings, theta) -> None:
    """Simulate trials ``first .. first + n - 1`` into the given output rows (added to).

    Every stream is reseeded for every trial from its key (see :mod:`forecaster.engine.seeding`),
    so the rows depend on the trials' indices only.
    """
    S = len(plan.stage_names)
    gens, addresses = thread_generators(S + 6)
    for g in range(len(plan.segment_names)):
        k = plan.param_codes.shape[1]
        kernels.draw_parameters(tuple(gens[:k]), addresses[:k], keys.parameters[g], first, plan.param_codes[g],
                                plan.param_pars[g], plan.pool, theta, g)
    month_factor = plan.month_factors(n)
    if plan.has_shocks:
        kernels.apply_shocks(gens[0], addresses[0], keys.shocks, first, plan.shock_leads, plan.shock_convert,
                             plan.drift_leads, plan.drift_convert, plan.rate_is_cost, theta, month_factor)
    slips = (plan.slip_prob, plan.slip_lo, plan.slip_hi) if plan.has_closing else (_NONE,) * 3
    out, of_day, cof_day = (revenue, won, bookings), plan.periods.of_day, plan.quota_periods.of_day
    if plan.has_capacity:  # book by the day deals are due; capacity then decides when they are won
        D = plan.days
        out = (np.zeros((n, D, revenue.shape[2])), np.zeros((n, D, won.shape[2]), dtype=np.int32),
               np.zeros((n, D, bookings.shape[2])))
        of_day = cof_day = np.arange(D, dtype=np.int64)
    for g in range(len(plan.segment_names)):
        kernels.simulate_new_leads(
            gens[0], gens[1], gens[2], tuple(gens[6:6 + S]), gens[3], gens[4], gens[5], addresses[:6 + S],
            keys.leads[g], first, theta, month_factor, g, plan.rate_is_cost[g], plan.day_mean[g], plan.elapsed_months,
            plan.dispersion[g], plan.lead_days_codes[g], plan.lead_days_pars[g], plan.value_codes[g],
            plan.value_pars[g], plan.pool, plan.segment_reps[g, :plan.segment_n_reps[g]], *slips, of_day, cof_day,
            *out)
    if plan.deal_segment.size:
        kernels.simulate_pipeline(
            gens[0], gens[1], gens[2], gens[3], gens[4], addresses[:5], keys.pipeline, first, theta,
            plan.deal_segment, plan.deal_stage, plan.deal_age, plan.deal_mode, plan.deal_odds, plan.deal_sf,
            plan.deal_pending, plan.pending_lo, plan.pending_hi, plan.deal_amount, plan.deal_owner, plan.days_codes, plan.days_pars, plan.value_codes, plan.value_pars,
            plan.pool, plan.segment_reps, plan.segment_n_reps, *slips, of_day, cof_day, *out)
    if plan.has_capacity:
        kernels.apply_capacity(gens[0], addresses[0], keys.capacity, first, plan.capacity_of_day, plan.month_of_day,
                               plan.capacity_cv, *out, plan.periods.of_day, plan.quota_periods.of_day, revenue, won,
                               bookings)


_NONE = np.zeros(0)
"""Stands for the per-day slip arrays of a scenario without ``closing``."""
