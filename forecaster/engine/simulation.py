"""Running a plan's trials: blocks of trials on a pool of threads (or a cluster), chunk by chunk.

Every random stream is reseeded for every trial from the trial's index (see
:mod:`forecaster.engine.seeding`), so the numbers do not depend on threads or blocks. Blocks are
grouped into chunks of consecutive trials that a *sink* keeps in memory or writes to a file:
any object with ``buffers(lo, n)`` (the kernels' output arrays for trials ``lo .. lo + n - 1``)
and ``commit(lo, n, buffers)`` (see :mod:`forecaster.results.layout`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from forecaster.engine._numba import default_threads
from forecaster.engine.blocks import Sources, prepare, run_block
from forecaster.engine.plan import Plan
from forecaster.engine.seeding import BLOCK_TRIALS, blocks, stream_keys
from forecaster.scenario.model import Scenario

Progress = Callable[[int], None]


class Stopped(Exception):
    """A run's ``stop`` event was set: its remaining blocks were not run."""


def run_trials(plan: Plan, sc: Scenario, sink, *, chunk_trials: int, threads: int | None = None,
               progress: Progress | None = None, runner=None, stop: threading.Event | None = None,
               sources: Sources | None = None) -> None:
    """Run every block of trials, handing the sink one chunk of consecutive trials at a time.

    Blocks of a chunk run on a pool of threads, each into its own rows of the chunk's
    buffers, or on a cluster through ``runner`` (a :class:`forecaster.engine.cluster.DaskRunner`);
    ``sink.commit`` follows once the whole chunk is done.

    ``stop``: when set (by another thread: a command interrupted while runs go on threads
    of its own), the blocks not yet started are skipped and :class:`Stopped` is raised, so a
    run gives up within a block instead of finishing every trial.

    ``sources``: simulate only those sources of won deals (see :class:`forecaster.engine.blocks.Sources`;
    on threads only).
    """
    if sources is not None and runner is not None:
        raise ValueError("a cluster runs every source of won deals")
    work = blocks(sc.trials)
    keys = stream_keys(plan, sc.seed)
    if runner is None:  # a cluster's workers load the kernels themselves
        prepare(plan, keys)
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
                if stop is not None and stop.is_set():
                    raise Stopped()
                b, first, count = block
                sl = slice(first - lo, first - lo + count)
                run_block(plan, keys, first, count, *(buf[sl] for buf in buffers), sources=sources)
                return count

            for done in (pool.map(one, group) if pool else map(one, group)):
                if progress:
                    progress(done)
            sink.commit(lo, n, buffers)
    finally:
        if pool:
            pool.shutdown()
