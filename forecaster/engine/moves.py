r"""Kernels for funnels with moves (v2 B): an absorbing chain, sampled exactly.

A segment whose stages have ``moves`` is an absorbing semi-Markov chain over its S stages:
a visit to stage s ends forward (probability p_s, time ~ ``days``), by move j to stage t_j
or to won ((1 - p_s) sigma_j, time ~ the move's ``days``, or the stage's), or lost
((1 - p_s)(1 - sum_j sigma_j), time ~ ``days_lost``). With Q the transient matrix and R the
one-step win vector, h = (I - Q)^-1 R is the eventual win probability from each stage
(:func:`solve_chain`, per trial from that trial's conversions and shares after shocks).

**New leads** (:func:`simulate_new_leads_moves`). A lead's fate does not depend on other
leads nor on its arrival day, so v1's thinning holds with the product of conversions
replaced by h_0: the leads to be won are Poisson(sum_d m_d h_0) (with dispersion, per day
with the day's gamma multiplier, as in v1). Each won lead's path is drawn from the chain
conditioned on being won (Doob's h-transform): at stage s the next state is stage t with
probability Q[s, t] h_t / h_s, or won with R[s] / h_s; each visit's time is drawn from the
law of the exit taken. This is exact in distribution. Draws, trial by trial, in three
passes: the paths (one ``PATH`` uniform per visit at a stage with moves), then each stage's
times in stage order (its ``DAYS`` stream, every visit of every deal that leaves the stage
forward or by a move without days of its own, in deal and visit order), then the times of
moves with days of their own (``MOVE_DAYS``, in deal and visit order).

**Conversion drift** (v2 B.4). ``shocks.drift.convert`` moves p_s of calendar month k on the
log-odds scale by a walk drift_s W_{s,k} (the walks ``apply_shocks`` draws, drawn again from
the same streams by :func:`drift_walks`); the shares stay shares of 1 - p_s, so a month's
moves and losses scale together by (1 - p_s') / (1 - p_s). Each month k has its chain
(Q_k, R_k) and h(k) (:func:`_month_chains`): the won leads of day d are
Poisson(m_d G_d h_0(k_d)), with m_d carrying the lead drift (``month_factor`` with its
conversions' part, prod_s p_s' / p_s, divided out), and each won lead's path is drawn from
its arrival month's chain conditioned on being won; the lost ones (v2 F1) likewise with
1 - h_0(k). As in v1, the drift acts on new leads by their arrival month: the whole path of
a lead follows its arrival month's conversions, and open pipeline deals follow start's
month's chain (no drift).

**Open pipeline deals** (:func:`simulate_pipeline_moves`). A deal in stage s with age a has
exits i (forward, each move, lost) with probabilities pi_i and survival functions S_i at a
(prepared in the plan); given it has stayed a days, exit i has probability
pi_i(a) = pi_i S_i(a) / sum_k pi_k S_k(a), and the deal is won with probability
q = sum_i pi_i(a) h(i), h(i) the eventual win probability of exit i's target (1 for won,
0 for lost). A won deal's first exit is drawn in proportion to pi_i(a) h(i), its remaining
time in s from exit i's law above a, and its path on from exit i's target as a new lead's.
Exits with no mass above a get probability 0; when none has any, the deal leaves at
time 0 with the unconditioned pi_i (v1's rule).

**Stalled** (the extension ``stalled``, share sigma_s of a stage). Of the leads that take a
visit's lost exit, probability (1 - p_s)(1 - sum_j sigma_j) as in B.2, a share sigma_s never
leave the stage: never won, as the lost, and never counted lost (v2 F1). The moves' shares
and h are B.2's, so new leads are not touched. An open deal's lost exit is open at its age
with sigma_s + (1 - sigma_s) S_lost(a) (in ``ChainPipeline.rel``), which lowers the chance
of an old deal being won, as in v1; so no deal of such a stage leaves at time 0.

Both book into the same :class:`~forecaster.engine.interface.Outputs` as v1's kernels (by
the day the deal is due when the team has a ``capacity``), slip with ``closing`` as v1
does, and return the same deal log.
"""
from __future__ import annotations

import math
from typing import Annotated, NamedTuple

import numpy as np

from forecaster.engine._numba import jit
from forecaster.engine._streams import expect, reseed_role
from forecaster.engine.interface import (
    F64_1,
    F64_2,
    I64_1,
    I64_2,
    THETA_CONVERT,
    THETA_LEADS,
)
from forecaster.engine.kernels import (
    _grown,
    _slip_by,
    _slipped,
    _stage_time,
    _uniform,
    _unwon_days,
    arrival_growth,
    cumulate,
    day_means,
    draw_above,
    draw_one,
    draws,
    lost_on_entry,
    period_ends,
)

I64_3 = Annotated[np.ndarray, np.int64, 3]
F64_4 = Annotated[np.ndarray, np.float64, 4]

MAX_VISITS = 10_000.0
"""Most expected visits N[s, t] a trial's chain may have (v2 B.5)."""

# roles of simulate_new_leads_moves (and, for the pipeline, CONVERT = COUNT's slot)
M_COUNT, M_MIXING, M_ARRIVAL, M_VALUE, M_REP, M_SLIP, M_DAYS, M_PATH, M_MOVE_DAYS = range(9)
M_STAGE_VALUE = 9  # v2 F11: the values of the valued stages a won path converts out of
M_CONVERT = M_COUNT
M_COUNTS = M_MIXING  # simulate_pipeline_moves: the paths of the deals that are not won (v2 F1)
M_PIPELINE_VALUE = M_ARRIVAL  # simulate_pipeline_moves: stage values (v2 F11)
N_MOVE_ROLES = 10
W_DRIFT = 0  # drift_walks: the conversion drift's streams, one per stage


class Chain(NamedTuple):
    """The moves of every segment: G segments, S stages, at most M moves a stage."""

    has: I64_1            # (G,) 1 for a segment with moves (its leads and deals go through these kernels)
    n_moves: I64_2        # (G, S) moves of each stage
    to: I64_3             # (G, S, M) each move's target stage, or -1 for won
    slot: I64_3           # (G, S, M) the slot of theta holding its share
    own_days: I64_3       # (G, S, M) 1 where the move has days of its own
    days_codes: I64_3     # (G, S, M) the move's days (the stage's where it has none)
    days_pars: F64_4      # (G, S, M, 4)


class ChainPipeline(NamedTuple):
    """Open deals of segments with moves, N of them: each with its exits' survival at its age."""

    segment: I64_1    # (N,)
    stage: I64_1      # (N,)
    age: F64_1        # (N,) whole days in its stage at start [days]
    sf: F64_2         # (N, M + 2) S_i(a) of each exit: forward, moves 0 .. M-1, lost (0 past the last move)
    rel: F64_2        # (N, M + 2) the same scaled so the largest is 1 (from log-survivals where S_i(a) underflows)
    amount: F64_1     # (N,) its value, or -1 to draw it [currency]
    owner: I64_1      # (N,) rep index, or -1 to assign one


def record_moves(chain: Chain, g: int, values: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Segment ``g``'s moves as (from, to, share) with ``to`` -1 for won and the share read from
    ``values`` (theta's slots: shape (K,) for a trial, or (trials, K)) (Python, for the
    results and the messages; the kernels read the record themselves)."""
    return [(s, int(chain.to[g, s, j]), values[..., int(chain.slot[g, s, j])])
            for s in range(chain.n_moves.shape[1]) for j in range(int(chain.n_moves[g, s]))]


@jit
def chain_of(theta, t, g, chain, n_stages, Q, R):
    """Fill Q (S, S) and R (S,) of segment g's chain at trial t (v2 B.2)."""
    _chain_of_row(theta[t, g], g, chain, n_stages, Q, R)


@jit
def _chain_of_row(th, g, chain, n_stages, Q, R):
    """Fill Q (S, S) and R (S,) of segment g's chain from ``th``, its row of theta (K,)."""
    for s in range(n_stages):
        R[s] = 0.0
        for k in range(n_stages):
            Q[s, k] = 0.0
    for s in range(n_stages):
        p = th[THETA_CONVERT + s]
        if s + 1 < n_stages:
            Q[s, s + 1] = p
        else:
            R[s] = p
        for j in range(chain.n_moves[g, s]):
            share = (1.0 - p) * th[chain.slot[g, s, j]]
            target = chain.to[g, s, j]
            if target < 0:
                R[s] += share
            else:
                Q[s, target] += share


@jit
def solve_chain(Q, R, h, N):
    """N = (I - Q)^-1 and h = N R by Gauss-Jordan elimination with partial pivoting, into
    ``N`` (S, S) and ``h`` (S,). Returns False when the chain is not absorbing (v2 B.5: a
    pivot vanishes, or some expected visit count is not finite, negative or above
    :data:`MAX_VISITS`)."""
    n = Q.shape[0]
    A = np.empty((n, 2 * n))
    for i in range(n):
        for k in range(n):
            A[i, k] = (1.0 if i == k else 0.0) - Q[i, k]
            A[i, n + k] = 1.0 if i == k else 0.0
    for c in range(n):
        best, row = 0.0, c
        for i in range(c, n):
            if abs(A[i, c]) > best:
                best, row = abs(A[i, c]), i
        if not best > 1e-300:
            return False
        if row != c:
            for k in range(2 * n):
                A[c, k], A[row, k] = A[row, k], A[c, k]
        pivot = A[c, c]
        for k in range(2 * n):
            A[c, k] /= pivot
        for i in range(n):
            if i != c and A[i, c] != 0.0:
                f = A[i, c]
                for k in range(2 * n):
                    A[i, k] -= f * A[c, k]
    ok = True
    for i in range(n):
        total = 0.0
        for k in range(n):
            x = A[i, n + k]
            N[i, k] = x
            if not (-1e-9 <= x <= MAX_VISITS):
                ok = False
            total += x * R[k]
        h[i] = min(max(total, 0.0), 1.0)
    return ok


@jit
def drift_walks(streams, trial0, drift_convert, walks):
    """The conversion drift's walks, as :func:`forecaster.engine.kernels.apply_shocks` draws
    them, for the kernels of segments with moves (v2 B.4).

    Stage s's walk in calendar month k after start's is drift_convert_s W_{s,k}, W_{s,0} = 0
    and W_{s,k} a sum of k standard normals; the normals come from the drift's own streams
    (``shocks/drift/convert.<stage>``, the same keys, reseeded per trial and drawn in the same
    order), so they are the walks ``apply_shocks`` drew. A stage without drift walks at 0.

    Parameters
    ----------
    streams : Streams
        Role ``W_DRIFT``: one stream per stage.
    drift_convert : float64, shape (S,)
        Each stage's sd per month on the log-odds scale.
    walks : float64, shape (trials, S, months), written
    """
    n_stages, n_months = drift_convert.shape[0], walks.shape[2]
    expect(streams, W_DRIFT, n_stages)
    gen = streams.gens[W_DRIFT]
    for t in range(walks.shape[0]):
        for s in range(n_stages):
            sd = drift_convert[s]
            if sd > 0.0:
                reseed_role(streams, W_DRIFT, s, trial0 + t)
            w = 0.0
            for k in range(n_months):
                if k > 0 and sd > 0.0:
                    w += gen.standard_normal()
                walks[t, s, k] = sd * w


@jit
def _month_chains(th, g, chain, n_stages, walks, th_m, h_m, ratio, Q, R, N):
    """Segment g's chain in every calendar month k under the conversion drift (v2 B.4).

    ``th``: its row of theta (K,) after the shocks; ``walks``: the trial's walks (S, months).
    Month k's conversions are p_s shifted on the log-odds scale by walks[s, k] (as
    ``apply_shocks`` shifts them; p_s of 0 or 1 stays), its shares unchanged (so moves and
    losses scale together by (1 - p_s') / (1 - p_s)). Writes month k's row of theta into
    ``th_m[k]`` (months, K), its h into ``h_m[k]`` (months, S) and into ``ratio[k]`` the
    product over stages of p_s' / p_s, the conversions' part of ``apply_shocks``' month
    factor (what a funnel without moves would win more). Returns False when some month's
    chain is not absorbing (v2 B.5)."""
    for k in range(walks.shape[1]):
        f = 1.0
        for i in range(th.shape[0]):
            th_m[k, i] = th[i]
        for s in range(n_stages):
            p = th[THETA_CONVERT + s]
            if 0.0 < p < 1.0 and walks[s, k] != 0.0:
                odds = math.exp(walks[s, k])
                r = odds / (1.0 - p + p * odds)  # (p shifted) / p
                f *= r
                th_m[k, THETA_CONVERT + s] = p * r
        ratio[k] = f
        _chain_of_row(th_m[k], g, chain, n_stages, Q, R)
        if not solve_chain(Q, R, h_m[k], N):
            return False
    return True


@jit(inline="always")
def _exit(gen_path, p, s, n_stages, n_moves, to, slot, th, h):
    """The exit a won path takes out of stage s (conditioned on being won): -1 forward,
    j >= 0 move j; one ``PATH`` uniform at a stage with moves, none otherwise. ``n_moves``,
    ``to``, ``slot``: the segment's rows of :class:`Chain`; ``th``: its row of theta."""
    n = n_moves[s]
    if n == 0:
        return -1
    forward = p * (h[s + 1] if s + 1 < n_stages else 1.0)
    total = forward
    for j in range(n):
        target = to[s, j]
        total += (1.0 - p) * th[slot[s, j]] * (h[target] if target >= 0 else 1.0)
    u = _uniform(gen_path) * total
    if u < forward:
        return -1
    acc = forward
    for j in range(n):
        target = to[s, j]
        acc += (1.0 - p) * th[slot[s, j]] * (h[target] if target >= 0 else 1.0)
        if u < acc:
            return j
    return n - 1  # rounding at the top end: the last move with weight


@jit(inline="always")
def _lost_weights(p, s, n_stages, n_moves, to, slot, th, h):
    """The weights of the exits out of stage s of a path that is lost in the end: (forward
    and moves together, lost here), unnormalised (:func:`_lost_exit`, :func:`_lost_here`)."""
    total = p * (1.0 - h[s + 1]) if s + 1 < n_stages else 0.0
    shares = 0.0
    for j in range(n_moves[s]):
        target = to[s, j]
        share = th[slot[s, j]]
        shares += share
        total += (1.0 - p) * share * ((1.0 - h[target]) if target >= 0 else 0.0)
    return total, (1.0 - p) * max(1.0 - shares, 0.0)


@jit(inline="always")
def _lost_exit(gen, p, s, n_stages, n_moves, to, slot, th, h):
    """The exit a path that is lost in the end takes out of stage s (conditioned on being
    lost): -1 forward, j >= 0 move j, -2 lost here; one uniform."""
    n = n_moves[s]
    forward = p * (1.0 - h[s + 1]) if s + 1 < n_stages else 0.0
    total, lost = _lost_weights(p, s, n_stages, n_moves, to, slot, th, h)
    u = _uniform(gen) * (total + lost)
    if u < forward:
        return -1
    acc = forward
    for j in range(n):
        target = to[s, j]
        acc += (1.0 - p) * th[slot[s, j]] * ((1.0 - h[target]) if target >= 0 else 0.0)
        if u < acc:
            return j
    return -2


@jit(inline="always")
def _lost_path(gen, s, n_stages, n_moves, to, slot, th, h, v_stage, v_exit, k, room):
    """As :func:`_path` for a path conditioned on being lost; its last visit has exit -2."""
    while True:
        if k >= room:
            return -1
        p = th[THETA_CONVERT + s]
        e = _lost_exit(gen, p, s, n_stages, n_moves, to, slot, th, h)
        v_stage[k], v_exit[k] = s, e
        k += 1
        if e == -2:
            return k
        s = s + 1 if e == -1 else to[s, e]


@jit
def _lost_path_with_room(gen, s, n_stages, n_moves, to, slot, th, h, v_stage, v_exit):
    """:func:`_lost_path` from stage ``s`` into (v_stage, v_exit) from index 0; a path longer
    than their room is drawn again from ``s`` (the stream moved on) into arrays twice as long
    (rare). Returns (visits, v_stage, v_exit): the arrays are new when they were too short."""
    end = _lost_path(gen, s, n_stages, n_moves, to, slot, th, h, v_stage, v_exit, 0, v_stage.shape[0])
    while end < 0:
        v_stage, v_exit = np.empty(2 * v_stage.shape[0], dtype=np.int64), np.empty(2 * v_stage.shape[0],
                                                                                  dtype=np.int64)
        end = _lost_path(gen, s, n_stages, n_moves, to, slot, th, h, v_stage, v_exit, 0, v_stage.shape[0])
    return end, v_stage, v_exit


@jit(inline="always")
def _lost_here(p, s, n_stages, n_moves, to, slot, th, h):
    """P(a path that is lost in the end is lost at this visit of stage s): the weight of the
    lost exit among those of :func:`_lost_exit`."""
    total, lost = _lost_weights(p, s, n_stages, n_moves, to, slot, th, h)
    return lost / (total + lost) if total + lost > 0.0 else 1.0


@jit(inline="always")
def _leaving_exit(gen, p, s, n_stages, n_moves, to, slot, th, h):
    """As :func:`_lost_exit` given that the path is not lost at this visit: -1 forward, j >= 0
    move j; one uniform."""
    n = n_moves[s]
    forward = p * (1.0 - h[s + 1]) if s + 1 < n_stages else 0.0
    total = forward
    for j in range(n):
        target = to[s, j]
        total += (1.0 - p) * th[slot[s, j]] * ((1.0 - h[target]) if target >= 0 else 0.0)
    u = _uniform(gen) * total
    if u < forward:
        return -1
    acc, last = forward, -1
    for j in range(n):
        target = to[s, j]
        w = (1.0 - p) * th[slot[s, j]] * ((1.0 - h[target]) if target >= 0 else 0.0)
        acc += w
        if w > 0.0:
            last = j
        if u < acc:
            return j
    return last  # rounding at the top end: the last exit with weight


@jit(inline="always")
def _lost_path_past_entry(gen, k0, n_stages, n_moves, to, slot, th, h, v_stage, v_exit):
    """A new lead's path conditioned on being lost and on not being lost at its first visit
    of stage ``k0`` (the first its segment passes; the stages before, converting 1, it passes
    forward at once), into (v_stage, v_exit) from index 0, as :func:`_lost_path_with_room`:
    returns (visits, v_stage, v_exit)."""
    while True:
        room = v_stage.shape[0]
        if room > k0 + 1:
            for s in range(k0):
                v_stage[s], v_exit[s] = s, -1
            e = _leaving_exit(gen, th[THETA_CONVERT + k0], k0, n_stages, n_moves, to, slot, th, h)
            v_stage[k0], v_exit[k0] = k0, e
            s = k0 + 1 if e == -1 else to[k0, e]
            end = _lost_path(gen, s, n_stages, n_moves, to, slot, th, h, v_stage, v_exit, k0 + 1, room)
            if end >= 0:
                return end, v_stage, v_exit
        v_stage, v_exit = np.empty(2 * room, dtype=np.int64), np.empty(2 * room, dtype=np.int64)


NO_EXIT = -3
"""What :func:`_lost_first_exit` returns when no exit can lead to a loss (weight 0)."""


@jit
def _lost_first_exit(gen, g, s0, n, w, h, chain, n_stages):
    """The first exit of an open deal at stage ``s0`` that is not won: forward (-1), move j
    (j), or lost from its own stage (-2), in proportion to pi_i S_i(a) (1 - h(target)) (``w``:
    its exits' weights pi_i S_i(a), forward at 0, moves at 1..n, lost at ``1 + n``), from one
    uniform of ``gen``; :data:`NO_EXIT` (nothing drawn) when every weight is 0."""
    forward = w[0] * ((1.0 - h[s0 + 1]) if s0 + 1 < n_stages else 0.0)
    weight = forward + w[1 + n]
    for j in range(n):
        target = chain.to[g, s0, j]
        weight += w[1 + j] * ((1.0 - h[target]) if target >= 0 else 0.0)
    if not weight > 0.0:
        return NO_EXIT
    u = gen.random() * weight
    if u < forward:
        return -1
    acc = forward
    for j in range(n):
        target = chain.to[g, s0, j]
        acc += w[1 + j] * ((1.0 - h[target]) if target >= 0 else 0.0)
        if u < acc:
            return j
    return -2


@jit
def _visit_time(gen, g, s, e, funnel, chain, counts, pool):
    """One visit's time at stage s ending by exit e (-1 forward, j move j, -2 lost) [days]."""
    if e == -2:
        pr = counts.lost_pars[g, s]
        return draw_one(gen, counts.lost_codes[g, s], pr[0], pr[1], pr[2], pr[3], pool)
    return _exit_time(gen, g, s, e, funnel, chain, pool)


@jit(inline="always")
def _count(counts, t, g, s, time, horizon, losses):
    """Count an entry into (or, with ``losses``, a loss at) stage s at ``time`` (v2 F1)."""
    if 0.0 <= time < horizon and counts.passes[g, s] != 0:
        if losses:
            counts.losses[t, counts.period_of_day[int(time)], g, s] += 1
        else:
            counts.entries[t, counts.period_of_day[int(time)], g, s] += 1


@jit(inline="always")
def _given_up(gen, stalled):
    """Whether a lead that takes a visit's lost exit is given up (counted lost), or is one of
    the stage's share ``stalled`` that stay open for ever (extension ``stalled``); a uniform
    only when that share is above 0."""
    return stalled == 0.0 or gen.random() >= stalled


@jit(inline="always")
def _path(gen_path, s, n_stages, n_moves, to, slot, th, h, v_stage, v_exit, k, room):
    """Append a won path's visits from stage s on to (v_stage, v_exit) from index k; returns
    the index after them, or -1 when more than ``room`` visits would be needed. ``n_moves``,
    ``to``, ``slot``: the segment's rows of :class:`Chain`; ``th``: its row of theta."""
    while True:
        if k >= room:
            return -1
        p = th[THETA_CONVERT + s]
        e = _exit(gen_path, p, s, n_stages, n_moves, to, slot, th, h)
        v_stage[k], v_exit[k] = s, e
        k += 1
        if e < 0:
            if s + 1 >= n_stages:
                return k
            s += 1
        else:
            target = to[s, e]
            if target < 0:
                return k
            s = target


@jit
def _exit_time(gen, g, s, e, funnel, chain, pool):
    """One visit's time at stage s ending forward (e = -1) or by move e [days]."""
    if e >= 0 and chain.own_days[g, s, e] != 0:
        pr = chain.days_pars[g, s, e]
        return draw_one(gen, chain.days_codes[g, s, e], pr[0], pr[1], pr[2], pr[3], pool)
    pr = funnel.days_pars[g, s]
    return draw_one(gen, funnel.days_codes[g, s], pr[0], pr[1], pr[2], pr[3], pool)


@jit(inline="always")
def _book_stage_value(gen, t, g, s, time, horizon, stage_values, stage_revenue, booked):
    """v2 F11: a forward exit from stage s at ``time``: the first from a valued stage books its
    value (drawn then) in ``stage_revenue`` when inside the horizon; ``booked`` (S,) marks it."""
    if stage_values.valued[g, s] != 0 and booked[s] == 0:
        booked[s] = 1
        pr = stage_values.pars[g, s]
        v = draw_one(gen, stage_values.codes[g, s], pr[0], pr[1], pr[2], pr[3], stage_values.pool)
        if 0.0 <= time < horizon:
            stage_revenue[t, stage_values.period_of_day[int(time)], g] += v


@jit
def _valued_chain(th, g, chain, n_stages, valued, h, Q, R, f, N):
    """v2 F11: f_s, the chance that a lead entering stage s makes a forward exit from some
    valued stage and is then lost, into ``f`` (S,): f = (I - Q')^-1 b, Q' the chain's Q without
    the forward steps out of valued stages, b_s = p_s (1 - h_{s+1}) at a valued stage s (after
    such a step the lead must be lost), 0 elsewhere (a move to won is never lost). ``valued``:
    the segment's row (S,). Returns False when the chain is not absorbing."""
    _chain_of_row(th, g, chain, n_stages, Q, R)
    for s in range(n_stages):
        R[s] = 0.0
        if valued[s] != 0 and s + 1 < n_stages:
            R[s] = Q[s, s + 1] * (1.0 - h[s + 1])
            Q[s, s + 1] = 0.0
    return solve_chain(Q, R, f, N)


@jit
def _valued_lost_path(gen, n_stages, n_moves, to, slot, th, h, f, valued, v_stage, v_exit, room):
    """A new lead's path conditioned on a forward exit from some valued stage and on being lost
    (v2 F11): from stage 0 by the h-transform with ``f`` (:func:`_valued_chain`) up to the first
    such exit, then with 1 - h (:func:`_lost_path`). Written into (v_stage, v_exit) from index 0;
    returns the number of visits (the last has exit -2), or -1 when more than ``room``."""
    s, k = 0, 0
    while True:
        if k >= room:
            return -1
        p = th[THETA_CONVERT + s]
        n = n_moves[s]
        forward = 0.0
        if s + 1 < n_stages:
            forward = p * ((1.0 - h[s + 1]) if valued[s] != 0 else f[s + 1])
        total = forward
        for j in range(n):
            target = to[s, j]
            if target >= 0:
                total += (1.0 - p) * th[slot[s, j]] * f[target]
        u = _uniform(gen) * total
        e = -1
        if not u < forward:
            acc = forward
            for j in range(n):
                target = to[s, j]
                if target >= 0:
                    weight = (1.0 - p) * th[slot[s, j]] * f[target]
                    if weight > 0.0:
                        e = j  # rounding at the top end: the last move with weight
                        acc += weight
                        if u < acc:
                            break
        v_stage[k], v_exit[k] = s, e
        k += 1
        if e == -1:
            if valued[s] != 0:
                return _lost_path(gen, s + 1, n_stages, n_moves, to, slot, th, h, v_stage, v_exit, k, room)
            s += 1
        else:
            s = to[s, e]


@jit
def _visit_times(streams, trial, g, funnel, chain, n_visits, v_stage, v_exit, v_time, n_stages, pool, idx, buf):
    """Each visit's time: stage by stage (``DAYS``, reseeded per stage) for forward exits and
    moves without days of their own, then move by move (``MOVE_DAYS``, in turn) for moves
    with days of their own; each in deal and visit order, drawn in one batch a stage or move
    (a call per draw would count references to the generator around every one).
    ``idx`` (int64) and ``buf`` (float64): scratch of at least ``n_visits``."""
    gen_days, gen_move = streams.gens[M_DAYS], streams.gens[M_MOVE_DAYS]
    in_turn, no_key = np.int64(0), np.uint64(0)
    for s in range(n_stages):
        n = np.int64(0)
        for k in range(n_visits):
            e = v_exit[k]
            if v_stage[k] == s and (e < 0 or chain.own_days[g, s, e] == 0):
                idx[n] = k
                n += 1
        if n == 0:
            continue
        reseed_role(streams, M_DAYS, s, trial)
        pars = funnel.days_pars[g, s]
        draws(gen_days, funnel.days_codes[g, s], pars[0], pars[1], pars[2], pars[3], pool, buf, n, in_turn, no_key,
              trial)
        for m in range(n):
            v_time[idx[m]] = buf[m]
    reseed_role(streams, M_MOVE_DAYS, 0, trial)
    for s in range(n_stages):
        for j in range(chain.n_moves[g, s]):
            if chain.own_days[g, s, j] == 0:
                continue
            n = np.int64(0)
            for k in range(n_visits):
                if v_stage[k] == s and v_exit[k] == j:
                    idx[n] = k
                    n += 1
            pars = chain.days_pars[g, s, j]
            draws(gen_move, chain.days_codes[g, s, j], pars[0], pars[1], pars[2], pars[3], pool, buf, n, in_turn,
                  no_key, trial)
            for m in range(n):
                v_time[idx[m]] = buf[m]


@jit
def simulate_new_leads_moves(streams, trial0, funnel, chain, segment, closing, theta, month_factor, walks, out,
                             keep_log, failed, counts, stage_values, stage_revenue):
    """Won deals from the new leads of one segment with moves, for a block of trials (see
    the module docstring).

    Parameters
    ----------
    streams : Streams
        ``M_COUNT``, ``M_MIXING``, ``M_ARRIVAL`` (won-lead counts, daily gamma multipliers,
        arrival days, as v1's), ``M_VALUE``, ``M_REP``, ``M_SLIP``, one ``M_DAYS`` stream
        per stage in stage order, ``M_PATH`` (a uniform per visit at a stage with moves),
        ``M_MOVE_DAYS``.
    funnel, closing, theta, month_factor, out, keep_log
        As for :func:`forecaster.engine.kernels.simulate_new_leads`.
    chain : Chain
    walks : float64, shape (trials, S, months), or (trials, S, 0) without a conversion drift
        The conversion drift's walks (:func:`drift_walks`). With them (v2 B.4), month k's
        leads are won with h_0 of month k's chain (:func:`_month_chains`) and follow its
        paths: the won leads of day d are Poisson(m_d G_d h_0(k_d)), m_d with the lead
        drift of ``month_factor`` (its conversions' part divided out), and each path is
        drawn from the chain of its arrival month conditioned on being won.
    failed : int64, shape (1,)
        Set to the trial's index in the run (its first) when a trial's chain (or, with a
        conversion drift, some month's) is not absorbing (v2 B.5), and the kernel returns
        at once; -1 otherwise.
    counts : StageCounts
        With ``on`` (v2 F1): every visit of a won path is an entry, on the day it starts
        (the leads that are lost: :func:`simulate_lost_leads_moves`).
    stage_values, stage_revenue : StageValues, float64 (trials, periods, segments)
        With a value on some stage of the segment (v2 F11), a won path books it on its first
        forward exit from that stage, the value drawn then (``M_STAGE_VALUE``, in deal and
        visit order); the leads that are lost: :func:`simulate_lost_stage_values_moves`.

    Returns
    -------
    (trial, day, segment, value, rep) : the deal log, five arrays of equal length; then
    (trial, days) of every deal won inside the horizon with ``counts.cycle`` (v2 F1: its
    days from arrival to win), else empty
    """
    n_stages = funnel.days_codes.shape[1]
    for role in (M_COUNT, M_MIXING, M_ARRIVAL, M_VALUE, M_REP, M_SLIP, M_PATH, M_MOVE_DAYS, M_STAGE_VALUE):
        expect(streams, role, 1)
    expect(streams, M_DAYS, n_stages)
    g = segment
    valued = False  # v2 F11 (read from the data: a literal would compile apart)
    for s in range(n_stages):
        valued = valued or stage_values.valued[g, s] != 0
    booked = np.zeros(n_stages, dtype=np.int64)
    gen_stage_value = streams.gens[M_STAGE_VALUE]
    n_moves_g, to_g, slot_g = chain.n_moves[g], chain.to[g], chain.slot[g]
    counting = counts.on != 0
    day_mean, elapsed_months, pool = funnel.day_mean[g], funnel.elapsed_months, funnel.pool
    rate_is_cost, dispersion = funnel.rate_is_cost[g], funnel.dispersion[g]
    value_code, value_par = funnel.value_codes[g], funnel.value_pars[g]
    reps, n_reps = funnel.reps, funnel.n_reps[g]
    slip_prob, slip_lo, slip_hi = closing.slip_prob, closing.slip_lo, closing.slip_hi
    closing_on = slip_prob.shape[0] > 0
    out_period, out_quota_period = out.period_of_day, out.quota_period_of_day
    out_revenue, out_won, out_bookings = out.revenue, out.won, out.bookings
    n_days = day_mean.shape[0]
    horizon = float(n_days)
    Q, R = np.empty((n_stages, n_stages)), np.empty(n_stages)
    h, N = np.empty(n_stages), np.empty((n_stages, n_stages))
    growth = np.empty(elapsed_months[n_days - 1] + 1)
    cum, mean = np.empty(n_days), np.empty(n_days)
    day_counts = np.empty(n_days, dtype=np.int64)
    arrival = np.empty(256)
    first, count = np.empty(256, dtype=np.int64), np.empty(256, dtype=np.int64)
    v_stage, v_exit = np.empty(1024, dtype=np.int64), np.empty(1024, dtype=np.int64)
    v_time = np.empty(1024)
    idx, buf = np.empty(1024, dtype=np.int64), np.empty(1024)  # scratch of the batched draws
    drifting = walks.shape[2] > 0  # v2 B.4: each month's chain under the conversion drift
    th_m, h_m = np.empty((walks.shape[2], theta.shape[2])), np.empty((walks.shape[2], n_stages))
    ratio = np.empty(walks.shape[2])
    log_trial, log_day = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    log_segment, log_value, log_rep = np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.int64)
    log_n = np.int64(0)
    cycling = counts.cycle != 0  # v2 F1: each won deal's days from arrival to win
    cyc_trial, cyc_days = np.empty(256 if cycling else 0, dtype=np.int64), np.empty(256 if cycling else 0)
    cyc_n = np.int64(0)
    gen_count, gen_mixing, gen_arrival = streams.gens[M_COUNT], streams.gens[M_MIXING], streams.gens[M_ARRIVAL]
    gen_value, gen_rep, gen_slip = streams.gens[M_VALUE], streams.gens[M_REP], streams.gens[M_SLIP]
    gen_path = streams.gens[M_PATH]
    failed[0] = -1
    t = np.int64(0)  # not a literal: lead_growth (through arrival_growth), a shared helper, would compile twice
    while t < theta.shape[0]:
        trial = trial0 + t
        for role in (M_COUNT, M_MIXING, M_ARRIVAL, M_VALUE, M_REP, M_SLIP, M_PATH):
            reseed_role(streams, role, 0, trial)
        chain_of(theta, t, g, chain, n_stages, Q, R)
        if not solve_chain(Q, R, h, N):
            failed[0] = trial
            break
        if drifting and not _month_chains(theta[t, g], g, chain, n_stages, walks[t], th_m, h_m, ratio, Q, R, N):
            failed[0] = trial
            break
        base = theta[t, g, THETA_LEADS]
        scale = (1.0 / base if rate_is_cost else base) * (1.0 if drifting else h[0])
        if not scale > 0.0:
            t += 1
            continue
        arrival_growth(funnel, theta, month_factor, t, g, growth)
        if drifting:  # month k's own h_0, in place of the conversions' part of the month factor
            for k in range(growth.shape[0]):
                growth[k] *= h_m[k, 0] / ratio[k]
        # the won leads' arrival days, as v1 draws them
        n_won = 0
        day_means(scale, day_mean, growth, elapsed_months, dispersion, gen_mixing, mean)
        if dispersion > 0.0:
            for d in range(n_days):
                day_counts[d] = gen_count.poisson(mean[d])
                n_won += day_counts[d]
        else:
            total = cumulate(mean, cum)
            n_won = gen_count.poisson(total)
        if n_won > arrival.shape[0]:
            size = max(n_won, 2 * arrival.shape[0])
            arrival = np.empty(size)
            first, count = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
        if dispersion > 0.0:
            i = 0
            for d in range(n_days):
                for _ in range(day_counts[d]):
                    arrival[i] = d
                    i += 1
        else:
            for i in range(n_won):
                u = gen_arrival.random() * total
                lo, hi = 0, n_days - 1  # the first day whose cumulative mean passes u
                while lo < hi:
                    mid = (lo + hi) // 2
                    if cum[mid] <= u:
                        lo = mid + 1
                    else:
                        hi = mid
                arrival[i] = lo
        if counts.leads != 0:  # v2 E.3: the won leads by arrival period
            for i in range(n_won):
                counts.arrivals[t, counts.period_of_day[int(arrival[i])], g] += 1
        # pass 1: the paths, conditioned on being won
        th = theta[t, g]
        k = 0
        i = 0
        while i < n_won:
            first[i] = k
            if drifting:  # the chain of its arrival month
                month = elapsed_months[int(arrival[i])]
                end = _path(gen_path, 0, n_stages, n_moves_g, to_g, slot_g, th_m[month], h_m[month], v_stage, v_exit,
                            k, v_stage.shape[0])
            else:
                end = _path(gen_path, 0, n_stages, n_moves_g, to_g, slot_g, th, h, v_stage, v_exit, k,
                            v_stage.shape[0])
            if end < 0:  # more visits than room: grow and go on with this deal
                size = 2 * v_stage.shape[0]
                a, b, c = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64), np.empty(size)
                a[:k], b[:k] = v_stage[:k], v_exit[:k]
                v_stage, v_exit, v_time = a, b, c
                reseed_role(streams, M_PATH, 0, trial)  # the trial's paths again, from the first deal
                k = 0
                i = 0
                continue
            count[i] = end - first[i]
            k = end
            i += 1
        if v_time.shape[0] < v_stage.shape[0]:
            v_time = np.empty(v_stage.shape[0])
        if idx.shape[0] < max(k, n_won):
            idx, buf = np.empty(max(k, n_won), dtype=np.int64), np.empty(max(k, n_won))
        # passes 2 and 3: the visits' times, then the values (one batch each, in deal order)
        _visit_times(streams, trial, g, funnel, chain, k, v_stage, v_exit, v_time, n_stages, pool, idx, buf)
        draws(gen_value, value_code, value_par[0], value_par[1], value_par[2], value_par[3], pool, buf, n_won,
              np.int64(0), np.uint64(0), trial)
        if valued:
            reseed_role(streams, M_STAGE_VALUE, 0, trial)
        for i in range(n_won):
            time = arrival[i]
            if valued:
                booked[:] = 0
            for k in range(first[i], first[i] + count[i]):
                if counting:
                    _count(counts, t, g, v_stage[k], time, horizon, False)
                time += v_time[k]
                if valued and v_exit[k] == -1:
                    _book_stage_value(gen_stage_value, t, g, v_stage[k], time, horizon, stage_values, stage_revenue,
                                      booked)
            value = buf[i]
            rep = -1
            if n_reps > 0:
                rep = reps[g, min(int(gen_rep.random() * n_reps), n_reps - 1)]
            if closing_on:
                time = _slipped(gen_slip, time, slip_prob, slip_lo, slip_hi)
            if not 0.0 <= time < horizon:
                continue
            day = int(time)
            won_period = out_period[day]  # booked in line: see _LOOPS_WRITTEN_OUT
            out_revenue[t, won_period, g] += value
            out_won[t, won_period, g] += 1
            if rep >= 0:
                out_bookings[t, out_quota_period[day], rep] += value
            if cycling:
                if cyc_n >= cyc_trial.shape[0]:
                    grown_t, grown_d = np.empty(2 * cyc_n, dtype=np.int64), np.empty(2 * cyc_n)
                    grown_t[:cyc_n], grown_d[:cyc_n] = cyc_trial[:cyc_n], cyc_days[:cyc_n]
                    cyc_trial, cyc_days = grown_t, grown_d
                cyc_trial[cyc_n], cyc_days[cyc_n] = t, time - arrival[i]
                cyc_n += 1
            if keep_log:
                if log_n >= log_trial.shape[0]:
                    log_trial, log_day, log_segment, log_value, log_rep = _grown(
                        log_trial, log_day, log_segment, log_value, log_rep, log_n, max(256, 2 * log_n))
                log_trial[log_n], log_day[log_n], log_segment[log_n] = t, day, g
                log_value[log_n], log_rep[log_n] = value, rep
                log_n += 1
        t += 1
    return (log_trial[:log_n], log_day[:log_n], log_segment[:log_n], log_value[:log_n], log_rep[:log_n],
            cyc_trial[:cyc_n], cyc_days[:cyc_n])


@jit
def simulate_pipeline_moves(streams, trial0, funnel, chain, pipe, closing, theta, out, keep_log, failed, counts,
                            stage_values, stage_revenue):
    """Won deals from the open deals of segments with moves, for a block of trials (see the
    module docstring). Every deal draws, in every trial, a ``M_CONVERT`` uniform (won or
    not), a ``M_PATH`` uniform (its first exit), two ``M_SLIP`` uniforms with ``closing``,
    its value (unless given) and its rep; a won deal then draws its times (``M_DAYS``, one
    stream in deal order) and its path on (``M_PATH``).

    ``failed``: as for :func:`simulate_new_leads_moves`. ``counts`` (v2 F1, with ``on``): a
    deal's current stage is not an entry, the later visits of its path are; a deal that is
    not won draws its path, conditioned on being lost, from ``M_COUNTS`` (its own stream,
    so the other draws stay as they are): its first exit in proportion to pi_i(a) (1 - h(i)),
    its time above its age, then its visits; it is counted lost at the end.

    ``stage_values``, ``stage_revenue`` (v2 F11): a deal books the value of each valued stage
    from its own on (in stage order; one already past a stage books nothing) on its first
    forward exit from it after start, the value drawn then from ``M_PIPELINE_VALUE``'s stream,
    which also draws, for a deal that is not won and has such a stage, its path conditioned on
    being lost and its times (as for the counts), deal by deal.
    """
    for role in (M_CONVERT, M_DAYS, M_VALUE, M_REP, M_SLIP, M_PATH, M_PIPELINE_VALUE):
        expect(streams, role, 1)
    expect(streams, M_COUNTS, 1)
    valued_any = False  # v2 F11
    for g in range(stage_values.valued.shape[0]):
        for s in range(stage_values.valued.shape[1]):
            valued_any = valued_any or stage_values.valued[g, s] != 0
    gen_stage_value = streams.gens[M_PIPELINE_VALUE]
    n_stages = funnel.days_codes.shape[1]
    n_seg = funnel.days_codes.shape[0]
    pool = funnel.pool
    slip_prob, slip_lo, slip_hi = closing.slip_prob, closing.slip_lo, closing.slip_hi
    closing_on = slip_prob.shape[0] > 0
    horizon = float(out.period_of_day.shape[0])
    out_period, out_quota_period = out.period_of_day, out.quota_period_of_day
    out_revenue, out_won, out_bookings = out.revenue, out.won, out.bookings
    reps = funnel.reps
    Q, R = np.empty((n_stages, n_stages)), np.empty(n_stages)
    hs, N = np.zeros((n_seg, n_stages)), np.empty((n_stages, n_stages))
    h = np.empty(n_stages)
    n_max = chain.to.shape[2]
    w = np.empty(n_max + 2)
    booked = np.zeros(n_stages, dtype=np.int64)
    v_stage, v_exit = np.empty(256, dtype=np.int64), np.empty(256, dtype=np.int64)
    log_trial, log_day = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    log_segment, log_value, log_rep = np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.int64)
    log_n = np.int64(0)
    gen_convert, gen_days, gen_value = streams.gens[M_CONVERT], streams.gens[M_DAYS], streams.gens[M_VALUE]
    gen_rep, gen_slip, gen_path = streams.gens[M_REP], streams.gens[M_SLIP], streams.gens[M_PATH]
    gen_counts = streams.gens[M_COUNTS]
    counting = counts.on != 0
    failed[0] = -1
    for t in range(theta.shape[0]):
        trial = trial0 + t
        for role in (M_CONVERT, M_DAYS, M_VALUE, M_REP, M_SLIP, M_PATH):
            reseed_role(streams, role, 0, trial)
        if counting:
            reseed_role(streams, M_COUNTS, 0, trial)
        if valued_any:
            reseed_role(streams, M_PIPELINE_VALUE, 0, trial)
        for g in range(n_seg):
            if chain.has[g] != 0:
                chain_of(theta, t, g, chain, n_stages, Q, R)
                if not solve_chain(Q, R, h, N):
                    failed[0] = trial
                    return log_trial[:log_n], log_day[:log_n], log_segment[:log_n], log_value[:log_n], \
                        log_rep[:log_n]
                for s in range(n_stages):
                    hs[g, s] = h[s]
        for i in range(pipe.segment.shape[0]):
            g, s0, a = pipe.segment[i], pipe.stage[i], pipe.age[i]
            p = theta[t, g, THETA_CONVERT + s0]
            n = chain.n_moves[g, s0]
            # the exits' weights pi_i S_i(a): forward, the moves, lost
            shares = 0.0
            w[0] = p * pipe.rel[i, 0]
            for j in range(n):
                share = theta[t, g, chain.slot[g, s0, j]]
                shares += share
                w[1 + j] = (1.0 - p) * share * pipe.rel[i, 1 + j]
            w[1 + n] = (1.0 - p) * max(1.0 - shares, 0.0) * pipe.rel[i, n_max + 1]
            total = 0.0
            for j in range(n + 2):
                total += w[j]
            at_once = not total > 0.0  # no exit has mass above the age: leaves now, unconditioned
            if at_once:
                w[0] = p
                for j in range(n):
                    w[1 + j] = (1.0 - p) * theta[t, g, chain.slot[g, s0, j]]
                w[1 + n] = (1.0 - p) * max(1.0 - shares, 0.0)
                total = 0.0
                for j in range(n + 2):
                    total += w[j]
            won_weight = w[0] * (hs[g, s0 + 1] if s0 + 1 < n_stages else 1.0)
            for j in range(n):
                target = chain.to[g, s0, j]
                won_weight += w[1 + j] * (hs[g, target] if target >= 0 else 1.0)
            q = won_weight / total if total > 0.0 else 0.0
            won = gen_convert.random() < q
            u_exit = gen_path.random() * won_weight
            u = v = 1.0
            if closing_on:
                u = gen_slip.random()
                v = gen_slip.random()
            value = pipe.amount[i]
            if value < 0.0:
                value = draw_one(gen_value, funnel.value_codes[g], funnel.value_pars[g, 0], funnel.value_pars[g, 1],
                                 funnel.value_pars[g, 2], funnel.value_pars[g, 3], pool)
            rep = pipe.owner[i]
            n_reps_g = funnel.n_reps[g]
            pick = -1
            if n_reps_g > 0:  # drawn whether or not the deal has an owner
                pick = reps[g, min(int(gen_rep.random() * n_reps_g), n_reps_g - 1)]
            if rep < 0:
                rep = pick
            later_values = False  # a valued stage from its own on (v2 F11)
            if valued_any:
                for s in range(s0, n_stages):
                    later_values = later_values or stage_values.valued[g, s] != 0
                booked[:] = 0
            if not won:
                if later_values:
                    _stage_values_of_lost_deal(gen_stage_value, t, g, s0, a, n, w, at_once, hs[g], funnel, chain,
                                               theta, pipe.sf[i], n_stages, horizon, pool, v_stage, v_exit,
                                               stage_values, stage_revenue, booked)
                if counting:
                    _count_lost_deal(gen_counts, t, g, s0, a, n, w, total, at_once, hs[g], funnel, chain, counts,
                                     theta, pipe.sf[i], n_stages, horizon, pool, v_stage, v_exit)
                continue
            # its first exit, in proportion to pi_i(a) h(i)
            e = -1
            acc = w[0] * (hs[g, s0 + 1] if s0 + 1 < n_stages else 1.0)
            if not u_exit < acc:
                e = n - 1
                for j in range(n):
                    target = chain.to[g, s0, j]
                    acc += w[1 + j] * (hs[g, target] if target >= 0 else 1.0)
                    if u_exit < acc:
                        e = j
                        break
            # its remaining time in s0, from the exit's law above the age
            if e < 0 or chain.own_days[g, s0, e] == 0:
                code, pars = funnel.days_codes[g, s0], funnel.days_pars[g, s0]
            else:
                code, pars = chain.days_codes[g, s0, e], chain.days_pars[g, s0, e]
            sf = pipe.sf[i, 0 if e < 0 else 1 + e]
            time = 0.0
            if not at_once:
                time = draw_above(gen_days, code, pars[0], pars[1], pars[2], pars[3], pool, a, sf) - a
            if later_values and e < 0:
                _book_stage_value(gen_stage_value, t, g, s0, time, horizon, stage_values, stage_revenue, booked)
            # then its path on from the exit's target
            target = (s0 + 1 if s0 + 1 < n_stages else -1) if e < 0 else chain.to[g, s0, e]
            if target >= 0:
                end = _path(gen_path, target, n_stages, chain.n_moves[g], chain.to[g], chain.slot[g], theta[t, g],
                            hs[g], v_stage, v_exit, 0, v_stage.shape[0])
                while end < 0:
                    v_stage, v_exit = np.empty(2 * v_stage.shape[0], dtype=np.int64), \
                        np.empty(2 * v_stage.shape[0], dtype=np.int64)
                    end = _path(gen_path, target, n_stages, chain.n_moves[g], chain.to[g], chain.slot[g],
                                theta[t, g], hs[g], v_stage, v_exit, 0, v_stage.shape[0])
                for k in range(end):
                    s, x = v_stage[k], v_exit[k]
                    if counting:
                        _count(counts, t, g, s, time, horizon, False)
                    if x < 0 or chain.own_days[g, s, x] == 0:
                        pr = funnel.days_pars[g, s]
                        time += draw_one(gen_days, funnel.days_codes[g, s], pr[0], pr[1], pr[2], pr[3], pool)
                    else:
                        pr = chain.days_pars[g, s, x]
                        time += draw_one(gen_days, chain.days_codes[g, s, x], pr[0], pr[1], pr[2], pr[3], pool)
                    if later_values and x == -1 and s >= s0:
                        _book_stage_value(gen_stage_value, t, g, s, time, horizon, stage_values, stage_revenue,
                                          booked)
            if closing_on:
                time = _slip_by(time, u, v, slip_prob, slip_lo, slip_hi)
            if not 0.0 <= time < horizon:
                continue
            day = int(time)
            won_period = out_period[day]  # booked in line: see _LOOPS_WRITTEN_OUT
            out_revenue[t, won_period, g] += value
            out_won[t, won_period, g] += 1
            if rep >= 0:
                out_bookings[t, out_quota_period[day], rep] += value
            if keep_log:
                if log_n >= log_trial.shape[0]:
                    log_trial, log_day, log_segment, log_value, log_rep = _grown(
                        log_trial, log_day, log_segment, log_value, log_rep, log_n, max(256, 2 * log_n))
                log_trial[log_n], log_day[log_n], log_segment[log_n] = t, day, g
                log_value[log_n], log_rep[log_n] = value, rep
                log_n += 1
    return log_trial[:log_n], log_day[:log_n], log_segment[:log_n], log_value[:log_n], log_rep[:log_n]



@jit
def _count_lost_deal(gen, t, g, s0, a, n, w, total, at_once, h, funnel, chain, counts, theta, sf, n_stages, horizon,
                     pool, v_stage, v_exit):
    """Entries and loss (v2 F1) of an open deal that is not won (see
    :func:`simulate_pipeline_moves`): ``w`` its exits' weights pi_i S_i(a) (forward, moves,
    lost at ``1 + n``), ``total`` their sum; ``sf`` its exits' survivals at its age."""
    e = _lost_first_exit(gen, g, s0, n, w, h, chain, n_stages)
    if e == NO_EXIT:
        return
    time = 0.0
    if e == -2 and counts.stalled[s0] > 0.0:  # stalled for ever (never lost) with its chance given its age
        sigma = counts.stalled[s0]
        if gen.random() * (sigma + (1.0 - sigma) * sf[sf.shape[0] - 1]) < sigma:
            return
    if not at_once:
        if e == -2:
            code, pars, above = counts.lost_codes[g, s0], counts.lost_pars[g, s0], sf[sf.shape[0] - 1]
        elif e == -1 or chain.own_days[g, s0, e] == 0:
            code, pars, above = funnel.days_codes[g, s0], funnel.days_pars[g, s0], sf[0 if e == -1 else 1 + e]
        else:
            code, pars, above = chain.days_codes[g, s0, e], chain.days_pars[g, s0, e], sf[1 + e]
        time = draw_above(gen, code, pars[0], pars[1], pars[2], pars[3], pool, a, above) - a
    if e == -2:
        _count(counts, t, g, s0, time, horizon, True)
        return
    s = s0 + 1 if e == -1 else chain.to[g, s0, e]
    end, v_stage, v_exit = _lost_path_with_room(gen, s, n_stages, chain.n_moves[g], chain.to[g], chain.slot[g],
                                                theta[t, g], h, v_stage, v_exit)
    for k in range(end):
        _count(counts, t, g, v_stage[k], time, horizon, False)
        time += _visit_time(gen, g, v_stage[k], v_exit[k], funnel, chain, counts, pool)
    if _given_up(gen, counts.stalled[v_stage[end - 1]]):
        _count(counts, t, g, v_stage[end - 1], time, horizon, True)


@jit
def _stage_values_of_lost_deal(gen, t, g, s0, a, n, w, at_once, h, funnel, chain, theta, sf, n_stages, horizon, pool,
                               v_stage, v_exit, stage_values, stage_revenue, booked):
    """Stage values (v2 F11) of an open deal that is not won (see :func:`simulate_pipeline_moves`):
    its first exit in proportion to pi_i(a) (1 - h(i)) (``w``: its exits' weights pi_i S_i(a),
    lost at ``1 + n``; ``sf`` their survivals at its age), its time above its age, then its path
    conditioned on being lost and its visits' times, from ``gen``; each first forward exit from
    a valued stage from s0 on books that stage's value."""
    e = _lost_first_exit(gen, g, s0, n, w, h, chain, n_stages)
    if e == NO_EXIT or e == -2:
        return  # lost from its own stage: no forward exit
    time = 0.0
    if not at_once:
        if e == -1 or chain.own_days[g, s0, e] == 0:
            code, pars, above = funnel.days_codes[g, s0], funnel.days_pars[g, s0], sf[0 if e == -1 else 1 + e]
        else:
            code, pars, above = chain.days_codes[g, s0, e], chain.days_pars[g, s0, e], sf[1 + e]
        time = draw_above(gen, code, pars[0], pars[1], pars[2], pars[3], pool, a, above) - a
    if e == -1:
        _book_stage_value(gen, t, g, s0, time, horizon, stage_values, stage_revenue, booked)
    s = s0 + 1 if e == -1 else chain.to[g, s0, e]
    end, v_stage, v_exit = _lost_path_with_room(gen, s, n_stages, chain.n_moves[g], chain.to[g], chain.slot[g],
                                                theta[t, g], h, v_stage, v_exit)
    for k in range(end):
        x = v_exit[k]
        if x == -2 or not time < horizon:
            return
        time += _exit_time(gen, g, v_stage[k], x, funnel, chain, pool)
        if x == -1 and v_stage[k] >= s0:
            _book_stage_value(gen, t, g, v_stage[k], time, horizon, stage_values, stage_revenue, booked)


@jit
def simulate_lost_leads_moves(streams, trial0, funnel, chain, segment, counts, theta, month_factor, walks, record):
    """Entries and losses (v2 F1) of the new leads of a segment with moves that are not won.

    By Poisson splitting they are Poisson(sum_d m_d G_d (1 - h_0)), independent of the won
    ones; G_d, the day's gamma multiplier with dispersion, is redrawn from the new leads'
    own mixing stream (``M_MIXING``), so both share it. They are the leads not won that the
    ``leads`` output counts (v2 E.3; ``record``, :func:`forecaster.engine.kernels._unwon_arrivals`'
    counts, shape (trials, D)): each period's count split over its days in proportion to their
    means (``M_ARRIVAL``; with dispersion, each day's as drawn), so that in every trial the
    leads counted as arriving are those entering the first stage. From ``M_COUNT``'s stream, those lost at their first visit of the stage they enter (a
    binomial, with the lost exit's share there of the h-transform with 1 - h), whose loss
    days are drawn all at once (:func:`lost_on_entry`), then each other lead's path
    conditioned on being lost and not there, and its visits' times: every visit is an entry
    on the day it starts, and the lead is lost at the end of the last. With a conversion drift
    (``walks``, as for :func:`simulate_new_leads_moves`), month k's leads are lost with
    1 - h_0(k) and follow month k's chain.
    """
    n_stages = funnel.days_codes.shape[1]
    for role in (M_COUNT, M_MIXING, M_ARRIVAL):
        expect(streams, role, 1)
    g = segment
    n_moves_g, to_g, slot_g = chain.n_moves[g], chain.to[g], chain.slot[g]
    day_mean, elapsed_months, pool = funnel.day_mean[g], funnel.elapsed_months, funnel.pool
    rate_is_cost, dispersion = funnel.rate_is_cost[g], funnel.dispersion[g]
    n_days = day_mean.shape[0]
    horizon = float(n_days)
    Q, R = np.empty((n_stages, n_stages)), np.empty(n_stages)
    h, N = np.empty(n_stages), np.empty((n_stages, n_stages))
    growth = np.empty(elapsed_months[n_days - 1] + 1)
    mean = np.empty(n_days)
    day_count = np.empty(n_days, dtype=np.int64)  # the leads not won, by day
    v_stage, v_exit = np.empty(256, dtype=np.int64), np.empty(256, dtype=np.int64)
    gen, gen_mixing, gen_arrival = streams.gens[M_COUNT], streams.gens[M_MIXING], streams.gens[M_ARRIVAL]
    drifting = walks.shape[2] > 0  # v2 B.4: each month's chain under the conversion drift
    th_m, h_m = np.empty((walks.shape[2], theta.shape[2])), np.empty((walks.shape[2], n_stages))
    ratio = np.empty(walks.shape[2])
    k0, ends = counts.first[g], period_ends(counts.period_of_day)
    # each visit's time law by stage and exit: forward at 0, move j at 1 + j, lost at 1 + M
    M = chain.to.shape[2]
    law_codes, law_pars = np.empty((n_stages, M + 2), dtype=np.int64), np.empty((n_stages, M + 2, 4))
    for s in range(n_stages):
        law_codes[s, 0], law_codes[s, M + 1] = funnel.days_codes[g, s], counts.lost_codes[g, s]
        for i in range(4):
            law_pars[s, 0, i], law_pars[s, M + 1, i] = funnel.days_pars[g, s, i], counts.lost_pars[g, s, i]
        for j in range(M):
            own = chain.own_days[g, s, j] != 0
            law_codes[s, 1 + j] = chain.days_codes[g, s, j] if own else funnel.days_codes[g, s]
            for i in range(4):
                law_pars[s, 1 + j, i] = chain.days_pars[g, s, j, i] if own else funnel.days_pars[g, s, i]
    for t in range(theta.shape[0]):
        trial = trial0 + t
        for role in (M_COUNT, M_MIXING, M_ARRIVAL):
            reseed_role(streams, role, 0, trial)
        chain_of(theta, t, g, chain, n_stages, Q, R)
        if not solve_chain(Q, R, h, N):
            continue  # the won leads' kernel stops the run for this trial
        if drifting and not _month_chains(theta[t, g], g, chain, n_stages, walks[t], th_m, h_m, ratio, Q, R, N):
            continue
        base = theta[t, g, THETA_LEADS]
        scale = (1.0 / base if rate_is_cost else base) * (1.0 if drifting else 1.0 - h[0])
        if not scale > 0.0:
            continue
        arrival_growth(funnel, theta, month_factor, t, g, growth)
        if drifting:  # month k's own 1 - h_0, in place of the conversions' part of the month factor
            for k in range(growth.shape[0]):
                growth[k] *= (1.0 - h_m[k, 0]) / ratio[k]
        day_means(scale, day_mean, growth, elapsed_months, dispersion, gen_mixing, mean)
        _unwon_days(gen_arrival, record[t], mean, dispersion > 0.0, ends, day_count)
        th, h_d = theta[t, g], h
        for d in range(n_days):
            if drifting:  # the chain of the day's month
                th, h_d = th_m[elapsed_months[d]], h_m[elapsed_months[d]]
            n = day_count[d]
            if n == 0:
                continue
            # those lost at their first visit of the stage they enter: their loss days at once
            here = gen.binomial(n, min(max(_lost_here(th[THETA_CONVERT + k0], k0, n_stages, n_moves_g, to_g, slot_g,
                                                      th, h_d), 0.0), 1.0))
            if here > 0:
                if counts.passes[g, k0] != 0:
                    counts.entries[t, counts.period_of_day[d], g, k0] += here
                lost_on_entry(gen, counts, t, g, k0, d, here, ends)
            for _ in range(n - here):
                end, v_stage, v_exit = _lost_path_past_entry(gen, k0, n_stages, n_moves_g, to_g, slot_g, th, h_d,
                                                             v_stage, v_exit)
                time = float(d)
                for k in range(end):
                    if time >= horizon:
                        break
                    _count(counts, t, g, v_stage[k], time, horizon, False)
                    s, x = v_stage[k], v_exit[k]
                    c = 0 if x == -1 else (M + 1 if x == -2 else 1 + x)  # as _visit_time, from the tables
                    time += _stage_time(gen, law_codes[s, c], law_pars[s, c, 0], law_pars[s, c, 1], law_pars[s, c, 2],
                                        law_pars[s, c, 3], pool)
                    if k == end - 1 and _given_up(gen, counts.stalled[v_stage[k]]):
                        _count(counts, t, g, v_stage[k], time, horizon, True)


@jit
def simulate_lost_stage_values_moves(streams, trial0, funnel, chain, segment, stage_values, theta, month_factor,
                                     stage_revenue):
    """Stage values (v2 F11) of the new leads of a segment with moves that are lost after a
    forward exit from a valued stage.

    By Poisson splitting they are Poisson(sum_d m_d G_d f_0), f from :func:`_valued_chain`,
    independent of the won ones (which book their own, :func:`simulate_new_leads_moves`); G_d,
    the day's gamma multiplier with dispersion, is redrawn from the new leads' own mixing
    stream (role 1), so both share it. From role 0's stream, lead by lead: its arrival day,
    its path conditioned on such an exit and on being lost (:func:`_valued_lost_path`), then
    its visits' times and, at each first forward exit from a valued stage, that stage's value,
    booked on that day when inside the horizon (drawing stops once the lead is past it).
    (Conversion drift: refused with stage values, as without moves.)
    """
    expect(streams, 0, 1)
    expect(streams, 1, 1)
    gen, gen_mixing = streams.gens[0], streams.gens[1]
    g = segment
    n_stages = funnel.days_codes.shape[1]
    valued = stage_values.valued[g]
    any_valued = False
    for s in range(n_stages):
        any_valued = any_valued or valued[s] != 0
    if not any_valued:
        return
    n_moves_g, to_g, slot_g = chain.n_moves[g], chain.to[g], chain.slot[g]
    day_mean, elapsed_months, pool = funnel.day_mean[g], funnel.elapsed_months, funnel.pool
    rate_is_cost, dispersion = funnel.rate_is_cost[g], funnel.dispersion[g]
    n_days = day_mean.shape[0]
    horizon = float(n_days)
    Q, R = np.empty((n_stages, n_stages)), np.empty(n_stages)
    h, f, N = np.empty(n_stages), np.empty(n_stages), np.empty((n_stages, n_stages))
    growth = np.empty(elapsed_months[n_days - 1] + 1)
    cum = np.empty(n_days)
    booked = np.zeros(n_stages, dtype=np.int64)
    v_stage, v_exit = np.empty(256, dtype=np.int64), np.empty(256, dtype=np.int64)
    for t in range(theta.shape[0]):
        reseed_role(streams, 0, 0, trial0 + t)
        reseed_role(streams, 1, 0, trial0 + t)
        th = theta[t, g]
        chain_of(theta, t, g, chain, n_stages, Q, R)
        if not solve_chain(Q, R, h, N):
            continue  # the won leads' kernel stops the run for this trial
        if not _valued_chain(th, g, chain, n_stages, valued, h, Q, R, f, N):
            continue
        base = th[THETA_LEADS]
        rate = 1.0 / base if rate_is_cost else base
        if not rate > 0.0:
            continue
        arrival_growth(funnel, theta, month_factor, t, g, growth)
        day_means(rate, day_mean, growth, elapsed_months, dispersion, gen_mixing, cum)
        total = cumulate(cum, cum)
        if not total * f[0] > 0.0:
            continue
        for _ in range(gen.poisson(total * f[0])):
            u = gen.random() * total
            lo, hi = 0, n_days - 1  # the first day whose cumulative mean passes u
            while lo < hi:
                mid = (lo + hi) // 2
                if cum[mid] <= u:
                    lo = mid + 1
                else:
                    hi = mid
            end = _valued_lost_path(gen, n_stages, n_moves_g, to_g, slot_g, th, h, f, valued, v_stage, v_exit,
                                    v_stage.shape[0])
            while end < 0:  # a path longer than the room: draw it again, with more (rare)
                v_stage, v_exit = np.empty(2 * v_stage.shape[0], dtype=np.int64), \
                    np.empty(2 * v_stage.shape[0], dtype=np.int64)
                end = _valued_lost_path(gen, n_stages, n_moves_g, to_g, slot_g, th, h, f, valued, v_stage, v_exit,
                                        v_stage.shape[0])
            time = float(lo)
            booked[:] = 0
            for k in range(end):
                e = v_exit[k]
                if e == -2 or not time < horizon:
                    break
                time += _exit_time(gen, g, v_stage[k], e, funnel, chain, pool)
                if e == -1:
                    _book_stage_value(gen, t, g, v_stage[k], time, horizon, stage_values, stage_revenue, booked)
