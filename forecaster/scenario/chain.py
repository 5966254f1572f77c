"""A segment's funnel as an absorbing chain (v2 B.2): transient matrix Q, win vector R, the
eventual win probability h = (I - Q)^-1 R and the expected visits N = (I - Q)^-1.

Plain numpy, for validation (absorption), the summary's funnel, sensitivity's stage values
and pipeline coverage; the engine's kernels solve the same system per trial on their own.
Stages are indices 0 .. S-1 in the scenario's order; a move to ``won`` has target -1.
"""
from __future__ import annotations

import numpy as np

from forecaster.scenario.distributions import Distribution
from forecaster.scenario.model import WON, Segment

MAX_VISITS = 10_000.0
"""Most expected visits N[s, t] a chain may have (v2 B.5): beyond, a loop that no lead leaves."""
MAX_RADIUS = 1.0 - 1e-9
"""Spectral radius of Q a chain must stay below (v2 B.5)."""


def matrices(convert: np.ndarray, moves) -> tuple[np.ndarray, np.ndarray]:
    """Q (..., S, S) and R (..., S) of B.2.

    ``convert``: p_s, shape (S,), or (trials, S) for every trial at once; ``moves``: (from,
    to, share) triples, ``to`` a stage index or -1 for won, ``share`` a number or shape
    (trials,). Q[s, s+1] = p_s, R[S-1] = p_{S-1}, and each move adds (1 - p_s) share.
    """
    p = np.asarray(convert, dtype=float)
    S = p.shape[-1]
    Q, R = np.zeros(p.shape[:-1] + (S, S)), np.zeros(p.shape)
    for s in range(S - 1):
        Q[..., s, s + 1] = p[..., s]
    R[..., S - 1] = p[..., S - 1]
    for s, t, share in moves:
        add = (1.0 - p[..., s]) * np.asarray(share, dtype=float)
        if t < 0:
            R[..., s] += add
        else:
            Q[..., s, t] += add
    return Q, R


def solve_trials(Q: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, N) of :func:`solve` for every trial: Q (trials, S, S), R (trials, S)."""
    N = np.linalg.inv(np.eye(Q.shape[-1])[None] - Q)
    return np.einsum("tij,tj->ti", N, R), N


def absorbed(Q: np.ndarray) -> bool:
    """Whether every lead leaves the chain: spectral radius below :data:`MAX_RADIUS` and every
    expected visit count at most :data:`MAX_VISITS` (v2 B.5)."""
    if Q.shape[0] == 0:
        return True
    if float(np.max(np.abs(np.linalg.eigvals(Q)))) >= MAX_RADIUS:
        return False
    try:
        N = np.linalg.inv(np.eye(Q.shape[0]) - Q)
    except np.linalg.LinAlgError:
        return False
    return bool(np.all(np.isfinite(N)) and np.max(N) <= MAX_VISITS)


def solve(Q: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, N): the eventual win probability from each stage, shape (S,), and the expected
    visits, shape (S, S) (N[s, t]: visits to t of a lead entering at s)."""
    N = np.linalg.inv(np.eye(Q.shape[0]) - Q)
    return N @ R, N


def segment_moves(segment: Segment, stages) -> list[tuple[int, int, Distribution]]:
    """The segment's moves as (from, to, share distribution) with stage indices (-1: won)."""
    index = {s: i for i, s in enumerate(stages)}
    out = []
    for s, name in enumerate(stages):
        for move in segment.funnel[name].moves:
            out.append((s, -1 if move.to == WON else index[move.to], move.share))
    return out


def at_means(segment: Segment, stages) -> tuple[np.ndarray, np.ndarray]:
    """Q and R of a segment with every conversion and share at its distribution's mean."""
    p = np.array([segment.funnel[name].convert.mean() for name in stages])
    return matrices(p, [(s, t, share.mean()) for s, t, share in segment_moves(segment, stages)])


def loop_stages(Q: np.ndarray, stages) -> list[str]:
    """The stages of a chain that no lead leaves: those on a cycle of Q whose visits blow up
    (for the message of B.5), in stage order; all stages with moves when none stands out."""
    S = Q.shape[0]
    reach = (Q > 0).astype(float)
    closure = reach.copy()
    for _ in range(S):
        closure = np.minimum(1.0, closure + closure @ reach)
    on_cycle = [s for s in range(S) if closure[s, s] > 0]
    closed = [s for s in on_cycle if Q[s].sum() > 1.0 - 1e-6]  # no way out of the stage but the loop
    return [stages[s] for s in (closed or on_cycle)] or list(stages)
