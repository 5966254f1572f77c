"""Random streams: one per block of trials and model component, from SeedSequence.

Trials run in fixed blocks of :data:`BLOCK_TRIALS`. Each (block, component) pair has its
own ``numpy.random.Generator`` whose SeedSequence is ``SeedSequence(seed,
spawn_key=(block, component_key))``. The numbers therefore cannot depend on how many
threads or machines run the blocks, and the first N trials of a run are the same for any
larger trial count. Component keys are derived from names (a CRC-32 of e.g.
``"segment/smb/arrivals"``), so adding a segment does not move another segment's streams.
"""
from __future__ import annotations

import zlib

import numpy as np

BLOCK_TRIALS = 1000
"""Trials per block. Changing it changes every forecast's numbers: it is part of the seed."""


def component_key(name: str) -> int:
    """Stable 32-bit key of a named random stream."""
    return zlib.crc32(name.encode("utf-8"))


def generator(seed: int, block: int, component: str) -> np.random.Generator:
    """The generator of one component's stream in one block of trials."""
    ss = np.random.SeedSequence(seed, spawn_key=(block, component_key(component)))
    return np.random.Generator(np.random.PCG64(ss))


def blocks(trials: int) -> list[tuple[int, int, int]]:
    """``(block, first_trial, n_trials)`` for each block of a run of ``trials`` trials."""
    return [(b, lo, min(BLOCK_TRIALS, trials - lo))
            for b, lo in enumerate(range(0, trials, BLOCK_TRIALS))]
