"""Running blocks of trials on a Dask distributed cluster.

A task is a run of consecutive blocks; the worker computes them with the same kernels and
the same per-block random streams as a local run, so the numbers are bit-identical to a
run on one machine with the same seed and trials. Only the plan (a few arrays, sent once)
and each task's results travel over the network.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .errors import ForecasterError

BLOCKS_PER_TASK = 8


class ClusterError(ForecasterError, RuntimeError):
    """The cluster could not be reached or started."""


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: connected to ``scheduler``, or to a local cluster of
    ``workers`` single-threaded worker processes on the loopback interface."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ClusterError("running on a cluster needs Dask distributed: pip install 'forecaster[cluster]'") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def compute_blocks(plan, seed: int, work: list) -> tuple[np.ndarray, ...]:
    """Run consecutive blocks ``work`` = [(block, first_trial, n), ...] on this process.

    Returns the kernels' arrays for those trials, in order (see
    :meth:`forecaster.plan.Plan.kernel_buffers`).
    """
    from .seeding import stream_keys
    from .simulation import run_block

    keys = stream_keys(plan, seed)
    arrays = plan.kernel_buffers(sum(count for _, _, count in work))
    at = 0
    for _, first, count in work:
        run_block(plan, keys, first, count, *(a[at:at + count] for a in arrays))
        at += count
    return arrays


class DaskRunner:
    """Runs each chunk's blocks as tasks on a Dask client and copies the results back."""

    def __init__(self, client, blocks_per_task: int = BLOCKS_PER_TASK):
        self.client = client
        self.blocks_per_task = blocks_per_task
        self._plan = None

    def run_chunk(self, plan, seed: int, group: list, lo: int, buffers, progress) -> None:
        from distributed import as_completed

        if self._plan is None:  # a key of its own: an identical plan of another run must not share it
            [self._plan] = self.client.scatter([plan], broadcast=True, hash=False)
        k = self.blocks_per_task
        tasks = [group[i:i + k] for i in range(0, len(group), k)]
        futures = [self.client.submit(compute_blocks, self._plan, seed, task, pure=False) for task in tasks]
        where = {f.key: task for f, task in zip(futures, tasks)}
        for future in as_completed(futures):
            try:
                arrays = future.result()
            except Exception as exc:
                raise ClusterError(f"a task on the cluster failed ({type(exc).__name__}: {exc}); "
                                   "nothing was written") from None
            task = where[future.key]
            first = task[0][1] - lo
            n = sum(count for _, _, count in task)
            for buf, values in zip(buffers, arrays):
                buf[first:first + n] = values
            if progress:
                progress(n)
