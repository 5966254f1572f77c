"""Running blocks of trials on a Dask distributed cluster.

A task is a run of consecutive blocks; the worker computes them with the same kernels and
the same per-block random streams as a local run, so the numbers are bit-identical to a
run on one machine with the same seed and trials. Only the plan (a few arrays, sent once)
and each task's results travel over the network.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile

import numpy as np

from forecaster.engine._numba import QUIET_COMPILE, compiles_quiet
from forecaster.engine.blocks import run_block
from forecaster.engine.seeding import stream_keys
from forecaster.errors import ForecasterError

BLOCKS_PER_TASK = 8
STALL_SECONDS = 600.0
"""A run on a cluster fails, with a message, when no task finishes for this long (a frozen
or lost worker); ``FORECASTER_TASK_TIMEOUT`` (seconds) overrides it."""
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss)://[^\s/]+(:\d{1,5})?/?$")


class ClusterError(ForecasterError, RuntimeError):
    """The cluster could not be reached or started."""


WORKERS_PER_CPU = 4
MAX_WORKERS = 256


def max_workers() -> int:
    """The most worker processes a local cluster may start: 4 per CPU this process may use,
    at most 256 (each worker is a Python process of its own; more than that only thrashes)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, WORKERS_PER_CPU * cpus))


def check_workers(workers) -> int:
    """``workers`` if it is a whole number from 1 to :func:`max_workers`, else a ClusterError
    naming --workers and the range allowed."""
    limit = max_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= limit:
        try:
            shown = str(workers)
        except ValueError:  # an int of more digits than Python prints
            shown = "(a huge number)"
        shown = shown if len(shown) <= 24 else shown[:20] + "..."
        raise ClusterError(f"--workers {shown}: expected a number of local worker processes from 1 to {limit} "
                           f"({WORKERS_PER_CPU} per CPU of this machine, at most {MAX_WORKERS})")
    return workers


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: connected to ``scheduler``, or to a local cluster of
    ``workers`` single-threaded worker processes on the loopback interface. The local
    cluster serves no dashboard on a fixed port: its scheduler's HTTP endpoint (health
    checks; the dashboard only if bokeh is installed) listens on a free loopback port.

    ``workers`` must be from 1 to :func:`max_workers` (checked before anything starts; None
    lets Dask choose). The local cluster's scratch space (``dask-scratch-space``, for the
    scheduler and every worker) is a temporary folder of its own, removed when the cluster
    closes: nothing is left in the temporary directory."""
    if scheduler is None and workers is not None:
        workers = check_workers(workers)
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ClusterError("running on a cluster needs Dask distributed: pip install 'forecaster[cluster]'") from None
    if scheduler is not None:
        if not _ADDRESS.match(scheduler):
            raise ClusterError(f"--scheduler {scheduler!r}: expected a scheduler address such as "
                               "tcp://10.0.0.5:8786 (tcp, tls, ucx, ws or wss)")
        try:
            client = Client(scheduler, timeout="10s")
        except Exception as exc:  # noqa: BLE001 - any failure to connect is the user's address or network
            raise ClusterError(f"--scheduler {scheduler}: cannot connect: {type(exc).__name__}: {exc}") from None
        with client:
            yield client
        return
    import dask

    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="forecaster-dask-",
                                                                  ignore_cleanup_errors=True))
        stack.enter_context(dask.config.set({"temporary-directory": scratch}))  # the scheduler's scratch space
        cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                   host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                                   local_directory=scratch, preload=[__name__],
                                                   env={QUIET_COMPILE: "1"} if compiles_quiet() else {}))
        yield stack.enter_context(Client(cluster))


def dask_setup(worker) -> None:
    """Run in each worker process of a local cluster (Dask's ``preload``): Dask's own log
    lines stay off the terminal. What matters reaches the user as forecaster's messages (a
    failed or stalled task is a ClusterError), while a worker's heartbeat that races the
    cluster's shutdown on a busy machine would print a traceback after a run that went well."""
    import logging

    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def compute_blocks(plan, seed: int, work: list) -> tuple[np.ndarray, ...]:
    """Run consecutive blocks ``work`` = [(block, first_trial, n), ...] on this process.

    Returns the kernels' arrays for those trials, in order (see
    :meth:`forecaster.engine.plan.Plan.kernel_buffers`).
    """
    keys = stream_keys(plan, seed)
    arrays = plan.kernel_buffers(sum(count for _, _, count in work))
    at = 0
    for _, first, count in work:
        run_block(plan, keys, first, count, *(a[at:at + count] for a in arrays))
        at += count
    return arrays


class DaskRunner:
    """Runs each chunk's blocks as tasks on a Dask client and copies the results back."""

    def __init__(self, client, blocks_per_task: int = BLOCKS_PER_TASK, stall_seconds: float | None = None):
        self.client = client
        self.blocks_per_task = blocks_per_task
        self.stall_seconds = stall_seconds if stall_seconds is not None else _stall_from_env()
        self._plan = None

    def run_chunk(self, plan, seed: int, group: list, lo: int, buffers, progress) -> None:
        from distributed import wait

        if self._plan is None:  # a key of its own: an identical plan of another run must not share it
            [self._plan] = self.client.scatter([plan], broadcast=True, hash=False)
        k = self.blocks_per_task
        tasks = [group[i:i + k] for i in range(0, len(group), k)]
        futures = [self.client.submit(compute_blocks, self._plan, seed, task, pure=False) for task in tasks]
        where = {f.key: task for f, task in zip(futures, tasks)}
        pending = set(futures)
        while pending:  # the clock restarts whenever a task finishes
            try:
                done, pending = wait(list(pending), timeout=self.stall_seconds, return_when="FIRST_COMPLETED")
            except TimeoutError:
                for f in pending:
                    f.cancel()
                raise ClusterError(f"no task on the cluster finished in {self.stall_seconds:g} s ({len(pending)} of "
                                   f"{len(futures)} still running): a worker may be frozen or lost; nothing was "
                                   "written (FORECASTER_TASK_TIMEOUT sets the wait, in seconds)") from None
            for future in done:
                self._collect(future, where[future.key], lo, buffers, progress)

    @staticmethod
    def _collect(future, task, lo: int, buffers, progress) -> None:
        """Copy a finished task's arrays into the chunk's buffers."""
        try:
            arrays = future.result()
        except Exception as exc:
            raise ClusterError(f"a task on the cluster failed ({type(exc).__name__}: {exc}); "
                               "nothing was written") from None
        first = task[0][1] - lo
        n = sum(count for _, _, count in task)
        for buf, values in zip(buffers, arrays):
            buf[first:first + n] = values
        if progress:
            progress(n)


def _stall_from_env() -> float:
    raw = os.environ.get("FORECASTER_TASK_TIMEOUT")
    if raw is None:
        return STALL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ClusterError(f"FORECASTER_TASK_TIMEOUT must be a positive number of seconds; got {raw!r}")
    return value
