"""Random streams: named, keyed by the seed, reseeded for every trial.

Every kind of draw has its own stream, named after what it draws: ``segment/smb/leads``,
``segment/smb/convert.mql``, ``segment/smb/days/opportunity``, ``pipeline/convert``, ...
A stream's key is a hash of the run's seed (through ``numpy.random.SeedSequence``) and
its name; at the start of every trial the kernels reseed each stream from its key and the
trial's index (:mod:`forecaster.engine._streams`). So a trial's numbers depend only on the seed
and the trial's index: not on the number of threads, workers or blocks, nor on the trials
before it; the first N trials of a run are the same for any larger trial count; and two
scenarios run with the same seed draw the same random numbers for everything they share,
trial by trial.

Trials are still run in blocks of :data:`BLOCK_TRIALS`, but only for scheduling: each
thread reuses a small pool of generators whose states the kernels overwrite.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from forecaster.engine._streams import address, run_key, stream_key

BLOCK_TRIALS = 1000
"""Trials per block of work (scheduling only: the numbers do not depend on it)."""

LEAD_STREAMS = ("arrival-count", "arrival-mixing", "arrival-day", "deal-value", "rep", "closing")
PIPELINE_STREAMS = ("convert", "days", "deal-value", "rep", "closing")


@dataclass(frozen=True)
class StreamKeys:
    """The keys of a run's streams, in the order the kernels take them.

    Attributes
    ----------
    parameters : list of uint64 arrays, shape (S + 2,) per segment
        One per per-trial quantity (``Plan.quantity_names``).
    leads : list of uint64 arrays, shape (6 + S,) per segment
        :data:`LEAD_STREAMS`, then each stage's days in the kernel's stage order.
    pipeline : uint64 array, shape (5,)
        :data:`PIPELINE_STREAMS`.
    shocks : uint64 array, shape (2 + 2 S,)
        The shared shocks: ``shocks/leads``, ``shocks/convert.<stage>`` for each stage, then
        the drift's ``shocks/drift/leads`` and ``shocks/drift/convert.<stage>``.
    capacity : uint64
        The key of ``capacity``, each month's draw of the team's capacity.
    """

    parameters: list
    leads: list
    pipeline: np.ndarray
    shocks: np.ndarray
    capacity: int = 0


def stream_keys(plan, seed: int) -> StreamKeys:
    """Keys of every stream of a run of ``plan`` with ``seed``."""
    root = run_key(seed)

    def keys(names):
        return np.array([stream_key(root, n) for n in names], dtype=np.uint64)

    params, leads = [], []
    for g, name in enumerate(plan.segment_names):
        params.append(keys([f"segment/{name}/{q}" for q in plan.quantity_names]))
        leads.append(keys([f"segment/{name}/{s}" for s in LEAD_STREAMS]
                          + [f"segment/{name}/days/{plan.stage_names[s]}" for s in plan.lead_days_order[g]]))
    return StreamKeys(params, leads, keys([f"pipeline/{s}" for s in PIPELINE_STREAMS]),
                      keys(["shocks/leads", *(f"shocks/convert.{s}" for s in plan.stage_names),
                            "shocks/drift/leads", *(f"shocks/drift/convert.{s}" for s in plan.stage_names)]),
                      keys(["capacity"])[0])


_local = threading.local()


def thread_generators(n: int) -> tuple[list, np.ndarray]:
    """``n`` distinct generators owned by the calling thread, and their state addresses.

    Their seeds do not matter: the kernels overwrite their states before every draw.
    """
    pool = getattr(_local, "pool", None)
    if pool is None or len(pool[0]) < n:
        gens = [np.random.Generator(np.random.PCG64(i)) for i in range(max(n, 16))]
        pool = (gens, np.array([address(g) for g in gens], dtype=np.int64))
        _local.pool = pool
    return pool


def blocks(trials: int) -> list[tuple[int, int, int]]:
    """``(block, first_trial, n_trials)`` for each block of a run of ``trials`` trials."""
    return [(b, lo, min(BLOCK_TRIALS, trials - lo))
            for b, lo in enumerate(range(0, trials, BLOCK_TRIALS))]
