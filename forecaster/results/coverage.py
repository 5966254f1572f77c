r"""Pipeline coverage (v2 F12): the open deals' value against quota, and the win rate it implies.

For the open deals i at ``start``, with value v_i (the deal's ``amount``, or the mean of its
segment's ``deal_value`` law where it is empty):

    pipeline_value = sum_i v_i
    quota          = sum of the reps' quotas (one commission period's)
    ratio          = pipeline_value / quota
    win_rate       = sum_i v_i q_i / sum_i v_i          (per trial)
    break_even     = 1 / win_rate                        (per trial; undefined where win_rate = 0)

q_i is the deal's **eventual** win probability given its age a (whatever the horizon), from
the trial's conversions after shocks (the per-trial ``inputs``). For a segment without
moves, a deal in stage s0 converts out of it with the engine's age-conditioned chance

    q_out = p S(a) / (p S(a) + (1 - p) S_lost(a))

(:class:`forecaster.engine.interface.Pipeline` holds the odds S_lost(a) / S(a) and a mode
for the degenerate cases, with ``stalled`` and ``closing`` taken into account as
:func:`forecaster.engine.kernels.simulate_pipeline` takes them), and is won with
q_i = q_out * prod_{s > s0} p_s. :func:`win_probabilities` is where a funnel with moves plugs
in its own q_i (v2 B.3: sum over the exits of pi_i(a) h(i)).
"""
from __future__ import annotations

import math

import numpy as np

from forecaster.engine.interface import LOST_ONLY, NO_MASS, ORDINARY, THETA_CONVERT, WON_ONLY
from forecaster.engine.moves import record_moves
from forecaster.results.stats import describe
from forecaster.scenario import chain as chains
from forecaster.scenario.model import Scenario


def deal_values(sc: Scenario, deals=None) -> np.ndarray:
    """v_i of each open deal (of ``deals``, default every deal of ``sc.pipeline``): its
    ``amount``, or the mean of its segment's ``deal_value`` law where it is empty, shape (N,)
    [currency]."""
    means = {name: seg.deal_value.mean() for name, seg in sc.segments.items()}
    deals = sc.pipeline if deals is None else deals
    return np.array([d.amount if d.amount is not None else means[d.segment] for d in deals], dtype=float)


def _with_moves(sc: Scenario, deal) -> bool:
    return bool(getattr(sc.segments[deal.segment], "has_moves", False))


def chain_win_probabilities(sc: Scenario, plan, inputs: np.ndarray) -> np.ndarray:
    """q_i of the open deals of segments with moves (v2 B.3): with pi_i the probabilities of
    the exits of the deal's stage (forward, each move, lost) and S_i their survivals at its
    age (``plan.chain_pipeline.rel``, scaled), q = sum_i pi_i S_i h(i) / sum_i pi_i S_i, h(i)
    the eventual win probability of exit i's target from the trial's chain (1 for won, 0 for
    lost); with no exit's law above the age, the unconditioned pi_i. Shape (trials, M), in
    ``sc.pipeline``'s order of those deals (the plan's)."""
    chain, pipe = plan.chain, plan.chain_pipeline
    T, S = inputs.shape[0], len(sc.stages)
    n_max = chain.to.shape[2]
    h = np.zeros((T, len(sc.segments), S))
    for g in map(int, np.flatnonzero(chain.has)):
        p = inputs[:, g, THETA_CONVERT:THETA_CONVERT + S]
        h[:, g] = chains.solve_trials(*chains.matrices(p, record_moves(chain, g, inputs[:, g])))[0]
    out = np.zeros((T, pipe.segment.shape[0]))
    for i in range(pipe.segment.shape[0]):
        g, s0 = int(pipe.segment[i]), int(pipe.stage[i])
        p = inputs[:, g, THETA_CONVERT + s0]
        n = int(chain.n_moves[g, s0])
        shares = [inputs[:, g, int(chain.slot[g, s0, j])] for j in range(n)]
        pi = [p] + [(1.0 - p) * x for x in shares] + [(1.0 - p) * np.maximum(1.0 - sum(shares, np.zeros(T)), 0.0)]
        wins = [h[:, g, s0 + 1] if s0 + 1 < S else np.ones(T)]
        wins += [h[:, g, int(chain.to[g, s0, j])] if chain.to[g, s0, j] >= 0 else np.ones(T) for j in range(n)]
        wins += [np.zeros(T)]
        rel = [pipe.rel[i, 0]] + [pipe.rel[i, 1 + j] for j in range(n)] + [pipe.rel[i, n_max + 1]]
        if not any(r > 0 for r in rel):  # no exit has mass above the age: it leaves now, unconditioned
            rel = [1.0] * len(rel)
        weight = sum(x * r for x, r in zip(pi, rel))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, i] = np.where(weight > 0, sum(x * r * w for x, r, w in zip(pi, rel, wins)) / weight, 0.0)
    return out


def win_probabilities(pipeline, inputs: np.ndarray, n_stages: int) -> np.ndarray:
    """q_i of each open deal in each trial: its eventual win probability given its age.

    Parameters
    ----------
    pipeline : forecaster.engine.interface.Pipeline
        The open deals (segment, stage, mode, odds), as the plan prepares them.
    inputs : float64, shape (trials, segments, K)
        The trials' rates and probabilities after shocks (theta: ``THETA_CONVERT + s`` holds
        stage s's conversion).
    n_stages : int
        S, the scenario's stages.

    Returns
    -------
    float64, shape (trials, N)
    """
    seg, stage, mode, odds = pipeline.segment, pipeline.stage, pipeline.mode, pipeline.odds
    convert = np.asarray(inputs[:, :, THETA_CONVERT:THETA_CONVERT + n_stages], dtype=float)
    p = convert[:, seg, stage]  # (trials, N)
    with np.errstate(divide="ignore", invalid="ignore"):
        ordinary = p / (p + (1.0 - p) * odds[None, :])
    q = np.where(mode[None, :] == ORDINARY, ordinary,
                 np.where(mode[None, :] == WON_ONLY, (p > 0).astype(float),
                          np.where((mode[None, :] == LOST_ONLY) & (p < 1.0), 0.0, p)))
    q = np.where(mode[None, :] == NO_MASS, p, q)
    # the product of the conversions after each deal's stage: a suffix product per segment
    later = np.ones_like(convert)
    for s in range(convert.shape[2] - 2, -1, -1):
        later[:, :, s] = later[:, :, s + 1] * convert[:, :, s + 1]
    return q * later[:, seg, stage]


def coverage_summary(sc: Scenario, plan, inputs) -> dict:
    """``summary.json``'s ``coverage`` (v2 F12): pipeline_value, quota, ratio (null without a
    team), and win_rate and break_even with v1's statistics over trials (break_even over the
    trials where the win rate is above 0; ``undefined`` counts the others).

    ``plan.pipeline`` holds the open deals of segments without moves, in ``sc.pipeline``'s
    order; those of segments with moves get theirs from :func:`chain_win_probabilities`.
    """
    inputs = np.asarray(inputs, dtype=float)
    plain = [d for d in sc.pipeline if not _with_moves(sc, d)]
    chained = [d for d in sc.pipeline if _with_moves(sc, d)]
    values = np.concatenate([deal_values(sc, plain), deal_values(sc, chained)])
    q = win_probabilities(plan.pipeline, inputs, len(sc.stages))
    if chained:
        q = np.concatenate([q, chain_win_probabilities(sc, plan, inputs)], axis=1)
    pipeline_value = float(values.sum())
    quota = float(sum(r.quota for r in sc.reps)) if sc.reps else None
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = q @ values / pipeline_value if pipeline_value > 0 else np.zeros(inputs.shape[0])
    defined = win_rate > 0
    break_even: dict = {"undefined": int(np.sum(~defined))}
    if defined.any():
        break_even = {**describe(1.0 / win_rate[defined][:, None])[0], **break_even}
    else:
        break_even = {**dict.fromkeys(describe(np.zeros((1, 1)))[0]), **break_even}
    ratio = pipeline_value / quota if quota else None
    return {"pipeline_value": pipeline_value, "quota": quota,
            "ratio": ratio if ratio is None or math.isfinite(ratio) else None,
            "win_rate": describe(win_rate[:, None])[0], "break_even": break_even}
