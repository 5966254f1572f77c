"""The one place numba policy is set.

Every kernel is compiled ``nopython``, with the on-disk cache (a second run loads the
machine code instead of compiling it) and without the GIL, so blocks of trials run on
threads in parallel. ``fastmath`` stays off: results must not depend on reassociation.
"""
from __future__ import annotations

import functools

import numba

jit = functools.partial(numba.njit, cache=True, nogil=True, fastmath=False, error_model="numpy")


def default_threads() -> int:
    """Threads to use: numba's setting (``NUMBA_NUM_THREADS``, default: the cores)."""
    return max(1, int(numba.config.NUMBA_NUM_THREADS))
