"""The stage value table (v2 F9, ``outputs: {stage_value: true}``): what a deal now entering
each stage is worth.

For segment g and each of its own stages s (v2 F4), per trial: the eventual win probability
h_s from that trial's conversions (and move shares, v2 B) after shocks, as drawn at
``start``'s month (the per-trial ``inputs`` of a run), and its value h_s x E[deal_value].
Without moves h_s = p_s p_{s+1} ... p_S, the product of the conversions from s on; with moves
h = (I - Q)^-1 R (:mod:`forecaster.scenario.chain`), solved for every trial. Each is
summarised over trials with the summary's statistics (:func:`forecaster.results.summary.stage_value_summary`).
"""
from __future__ import annotations

import numpy as np

from forecaster.errors import ForecasterError
from forecaster.scenario.chain import matrices, segment_moves, solve_trials
from forecaster.scenario.model import Scenario, Segment


def own_stages(segment: Segment, stages) -> list[str]:
    """The stages a segment's leads pass (v2 F4), in the scenario's order."""
    return [s for s in stages if segment.passes(s)]


def win_probabilities(convert: np.ndarray, moves=()) -> np.ndarray:
    """h, the eventual win probability from each stage, per trial.

    Parameters
    ----------
    convert : ndarray, shape (trials, S)
        Each trial's conversion of each stage, in order.
    moves : sequence of (from, to, share)
        ``to`` a stage index or -1 for won; ``share`` shape (trials,) or a number.

    Returns
    -------
    ndarray, shape (trials, S)
        Without moves, the product of the conversions from each stage on; with moves,
        (I - Q)^-1 R of v2 B.2 for every trial.
    """
    p = np.asarray(convert, dtype=float)
    T, S = p.shape
    if not moves:
        h = np.empty_like(p)
        if S:
            h[:, S - 1] = p[:, S - 1]
        for s in range(S - 2, -1, -1):
            h[:, s] = p[:, s] * h[:, s + 1]
        return h
    return solve_trials(*matrices(p, moves))[0]


def segment_win_probabilities(scenario: Scenario, g: int, quantities, inputs) -> tuple[list[str], np.ndarray]:
    """Segment ``g``'s own stages and h per trial, shape (trials, stages), from a run's
    ``inputs`` (trial, segment, quantity) whose slots are named ``quantities``."""
    name = scenario.segment_names[g]
    segment = scenario.segments[name]
    stages = own_stages(segment, scenario.stages)
    slot = {str(q): k for k, q in enumerate(quantities)}
    convert = np.column_stack([np.asarray(inputs[:, g, slot[f"convert.{s}"]], dtype=float) for s in stages])
    moves = []
    for s, t, share in segment_moves(segment, stages):
        target = "won" if t < 0 else stages[t]
        key = f"move.{stages[s]}.{target}"
        if key in slot:
            moves.append((s, t, np.asarray(inputs[:, g, slot[key]], dtype=float)))
        elif share.is_fixed:
            moves.append((s, t, share["value"]))
        else:
            raise ForecasterError(f"segment {name}: the run holds no per-trial share of the move from {stages[s]} "
                                  f"to {target}, which the stage value table needs")
    return stages, win_probabilities(convert, moves)
