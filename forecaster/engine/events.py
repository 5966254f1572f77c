r"""Dated lead events (v2 F2): counts of leads entering a stage on a date, sampled exactly.

An event of segment g puts N leads into stage s_0 at the beginning of day d (time d): N is
a whole number, or a draw of a distribution rounded to the nearest whole number, halves up,
once per trial. Each lead goes on from s_0 as a new lead of the segment would (its times,
value, rep, quarter-end slip), with the conversions of d's calendar month after the shocks
and the drift, independently of the others. So the leads won are

    W ~ Binomial(N, P),   P = p_{s_0} p_{s_0 + 1} ... p_S

(with moves, v2 B: P = h_{s_0}, the eventual win probability of the absorbing chain, and each
won lead's path is drawn from the chain conditioned on being won, as
:mod:`forecaster.engine.moves` draws a new lead's). A fixed count gives a binomial, not a
Poisson, number of wins. Neither the segment's dispersion, seasonality and growth nor the
lead shocks and drift touch N.

Only the won leads can touch ``revenue``, ``won_deals`` and commission: each draws its time
in every stage from s_0 on (all of them, whatever the horizon), then its value, its rep and
its slip, and is booked on the day it is won when that day is inside the horizon (into the
deals due with a team ``capacity``, which then decides when they are won).

With F1's counts (``stage_entries``, ``losses``) or F11's stage values, the N - W leads that
are not won are drawn too: without moves, split by the stage they are lost at (of the L
lost leads that reach stage k, Binomial(L, (1 - p_k) / (1 - P_{>=k})) are lost there, exact
given W), each with its times (``days`` before k, ``days_lost`` at k; a share ``stalled``
of those never leave k); with moves, each lead's path conditioned on being lost (the
h-transform with 1 - h). Every one of the N leads enters s_0 on day d.

Every kind of draw has a stream of its own per event (``interface.STREAMS``'
``simulate_events``), reseeded for every trial: adding an event to a file, or asking for
the counts, changes no other draw.
"""
from __future__ import annotations

import math

import numpy as np

from forecaster.engine._numba import jit
from forecaster.engine._streams import expect, reseed_role
from forecaster.engine.interface import (
    EV_COUNT,
    EV_DAYS,
    EV_DRIFT_CONVERT,
    EV_LOST,
    EV_PATH,
    EV_REP,
    EV_SLIP,
    EV_VALUE,
    EV_WON,
    THETA_CONVERT,
)
from forecaster.engine.kernels import _grown, _slipped, _stage_time, draw_one
from forecaster.engine.moves import _count, _lost_path, _path, _visit_time, chain_of, solve_chain

MAX_COUNT = 2.0 ** 53
"""Largest count an event draws (every whole number below it is exact in float64)."""


@jit(inline="always")
def rounded_count(x):
    """A drawn count ``x`` rounded to the nearest whole number, halves up (0 for x <= 0 or NaN;
    at most :data:`MAX_COUNT`). ``x - floor(x)`` is exact, so a half is told exactly."""
    if not x > 0.0:
        return np.int64(0)
    if x >= MAX_COUNT:
        return np.int64(MAX_COUNT)
    r = math.floor(x)
    if x - r >= 0.5:
        r += 1.0
    return np.int64(r)


@jit
def simulate_events(streams, trial0, funnel, chain, events, segment, closing, shocks, theta, out, keep_log,
                    stage_values, stage_revenue, counts, event_counts, failed):
    """Won deals from one segment's dated lead events, for a block of trials (see the module
    docstring).

    Parameters
    ----------
    streams : Streams
        Per event of the segment, in its order: ``EV_WON`` (the binomial), ``EV_COUNT`` (its
        count, when a distribution), ``EV_DAYS`` (the won leads' stage times, lead by lead in
        stage order, or visit by visit with moves), ``EV_VALUE``, ``EV_REP``, ``EV_SLIP``,
        ``EV_PATH`` (the won leads' paths, with moves) and ``EV_LOST`` (the leads not won, and
        the stage values); and ``EV_DRIFT_CONVERT``, one per stage: the drift's walks of the
        conversions (``apply_shocks``' own streams, so the same walks).
    funnel, closing, theta, out, keep_log
        As for :func:`forecaster.engine.kernels.simulate_new_leads` (``theta`` after shocks).
    chain : Chain
        The moves (:mod:`forecaster.engine.moves`); ``has[segment]`` 0: none.
    events : Events
        Every segment's events; this segment's are ``first[segment] .. first[segment + 1] - 1``.
    shocks : Shocks
        ``drift_convert`` (S,): the sd per month of each stage's walk (0: none).
    stage_values, stage_revenue : StageValues, float64 (trials, periods, segments)
        With a value on a stage at or after s_0 (v2 F11), every lead that converts out of it
        books it there on the day it does, if inside the horizon (values from ``EV_LOST``).
    counts : StageCounts
        With ``on`` (v2 F1): every lead enters s_0 on day d, and the later stages it reaches;
        the lost ones are lost at their last; with ``cycle``, each deal won inside the
        horizon's days from d to its win are returned.
    event_counts : int64, shape (trials, E)
        Written: each event's count in every trial (columns of this segment's events).
    failed : int64, shape (1,)
        As for :func:`forecaster.engine.moves.simulate_new_leads_moves` (an event month's
        chain that no lead leaves); -1 otherwise.

    Returns
    -------
    (trial, day, segment, value, rep) : the deal log (empty without ``keep_log``); then
    (trial, days) of every deal won inside the horizon with ``counts.cycle``, else empty
    """
    g = segment
    lo, hi = events.first[g], events.first[g + 1]
    n_stages = funnel.days_codes.shape[1]
    for role in (EV_WON, EV_COUNT, EV_DAYS, EV_VALUE, EV_REP, EV_SLIP, EV_PATH, EV_LOST):
        expect(streams, role, hi - lo)
    expect(streams, EV_DRIFT_CONVERT, n_stages)
    n_seg, n_slots = theta.shape[1], theta.shape[2]
    elapsed_months, pool = funnel.elapsed_months, funnel.pool
    n_days = elapsed_months.shape[0]
    horizon = float(n_days)
    n_months = elapsed_months[n_days - 1] + 1
    drift_convert = shocks.drift_convert
    drifting = False
    for s in range(n_stages):
        drifting = drifting or drift_convert[s] > 0.0
    moving = chain.has[g] != 0
    n_moves_g, to_g, slot_g = chain.n_moves[g], chain.to[g], chain.slot[g]
    counting = counts.on != 0
    cycling = counts.cycle != 0
    passes, stalled = counts.passes[g], counts.stalled
    lost_codes, lost_pars = counts.lost_codes[g], counts.lost_pars[g]
    valued = False
    for k in range(n_stages):
        valued = valued or stage_values.valued[g, k] != 0
    sv_valued, sv_codes, sv_pars = stage_values.valued[g], stage_values.codes[g], stage_values.pars[g]
    lost_too = counting or valued  # draw the leads that are not won
    days_codes, days_pars = funnel.days_codes[g], funnel.days_pars[g]
    value_code, value_par = funnel.value_codes[g], funnel.value_pars[g]
    reps, n_reps = funnel.reps, funnel.n_reps[g]
    slip_prob, slip_lo, slip_hi = closing.slip_prob, closing.slip_lo, closing.slip_hi
    out_period, out_quota_period = out.period_of_day, out.quota_period_of_day
    out_revenue, out_won, out_bookings = out.revenue, out.won, out.bookings
    closing_on = slip_prob.shape[0] > 0
    row = np.zeros((1, n_seg, n_slots))  # the trial's draws with the conversions of an event's month
    conv = np.empty((n_months, n_stages))  # each month's conversions (drifted)
    walks = np.zeros(n_months)
    reach = np.empty(n_stages + 1)  # reach[k] = P_{>=k}: the chance to convert out of k and every later stage
    Q, R = np.empty((n_stages, n_stages)), np.empty(n_stages)
    h, N = np.empty(n_stages), np.empty((n_stages, n_stages))
    v_stage, v_exit = np.empty(1024, dtype=np.int64), np.empty(1024, dtype=np.int64)
    first_v, n_visits = np.empty(256, dtype=np.int64), np.empty(256, dtype=np.int64)
    log_trial, log_day = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    log_segment, log_value, log_rep = np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.int64)
    log_n = np.int64(0)
    cyc_trial, cyc_days = np.empty(256 if cycling else 0, dtype=np.int64), np.empty(256 if cycling else 0)
    cyc_n = np.int64(0)
    gen_won, gen_count, gen_days = streams.gens[EV_WON], streams.gens[EV_COUNT], streams.gens[EV_DAYS]
    gen_value, gen_rep, gen_slip = streams.gens[EV_VALUE], streams.gens[EV_REP], streams.gens[EV_SLIP]
    gen_path, gen_lost, gen_drift = streams.gens[EV_PATH], streams.gens[EV_LOST], streams.gens[EV_DRIFT_CONVERT]
    failed[0] = -1
    for t in range(theta.shape[0]):
        trial = trial0 + t
        for j in range(n_months):
            for s in range(n_stages):
                conv[j, s] = theta[t, g, THETA_CONVERT + s]
        if drifting:  # the walks of apply_shocks, redrawn from its streams
            for s in range(n_stages):
                if not drift_convert[s] > 0.0:
                    continue
                reseed_role(streams, EV_DRIFT_CONVERT, s, trial)
                w = 0.0
                for j in range(n_months):
                    if j > 0:
                        w += gen_drift.standard_normal()
                    walks[j] = drift_convert[s] * w
                for j in range(n_months):
                    p = conv[j, s]
                    if 0.0 < p < 1.0 and walks[j] != 0.0:
                        odds = math.exp(walks[j])
                        conv[j, s] = p * odds / (1.0 - p + p * odds)
        for k in range(n_slots):
            row[0, g, k] = theta[t, g, k]
        for e in range(lo, hi):
            i_e = e - lo
            for role in (EV_WON, EV_COUNT, EV_DAYS, EV_VALUE, EV_REP, EV_SLIP, EV_PATH, EV_LOST):
                reseed_role(streams, role, i_e, trial)
            d = events.day[e]
            s0 = events.stage[e]
            month = elapsed_months[d]
            cp = events.count_pars[e]
            n = rounded_count(draw_one(gen_count, events.count_codes[e], cp[0], cp[1], cp[2], cp[3], pool))
            event_counts[t, e] = n
            reach[n_stages] = 1.0
            for k in range(n_stages - 1, -1, -1):
                reach[k] = reach[k + 1] * conv[month, k]
            win = reach[s0]
            if moving:  # the chain of the event's month
                for s in range(n_stages):
                    row[0, g, THETA_CONVERT + s] = conv[month, s]
                chain_of(row, np.int64(0), g, chain, n_stages, Q, R)
                if not solve_chain(Q, R, h, N):
                    failed[0] = trial
                    return (log_trial[:log_n], log_day[:log_n], log_segment[:log_n], log_value[:log_n],
                            log_rep[:log_n], cyc_trial[:cyc_n], cyc_days[:cyc_n])
                win = h[s0]
            won = gen_won.binomial(n, min(max(win, 0.0), 1.0)) if n > 0 else np.int64(0)
            if counting and n > 0 and passes[s0] != 0:  # every one of them enters s0 on day d
                counts.entries[t, counts.period_of_day[d], g, s0] += n
            th = row[0, g]
            if moving and won > 0:  # pass 1: the won paths (all of them first: a longer one starts again)
                if first_v.shape[0] < won:
                    first_v, n_visits = np.empty(2 * won, dtype=np.int64), np.empty(2 * won, dtype=np.int64)
                k = 0
                i = 0
                while i < won:
                    first_v[i] = k
                    end = _path(gen_path, s0, n_stages, n_moves_g, to_g, slot_g, th, h, v_stage, v_exit, k,
                                v_stage.shape[0])
                    if end < 0:
                        size = 2 * v_stage.shape[0]
                        a, b = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
                        v_stage, v_exit = a, b
                        reseed_role(streams, EV_PATH, i_e, trial)
                        k = 0
                        i = 0
                        continue
                    n_visits[i] = end - first_v[i]
                    k = end
                    i += 1
            for i in range(won):  # each won lead's times, value, rep and slip
                time = float(d)
                if moving:
                    for v in range(first_v[i], first_v[i] + n_visits[i]):
                        if counting and v > first_v[i]:
                            _count(counts, t, g, v_stage[v], time, horizon, False)
                        time += _visit_time(gen_days, g, v_stage[v], v_exit[v], funnel, chain, counts, pool)
                else:
                    for s in range(s0, n_stages):
                        if counting and s > s0:
                            _count(counts, t, g, s, time, horizon, False)
                        time += _stage_time(gen_days, days_codes[s], days_pars[s, 0], days_pars[s, 1],
                                            days_pars[s, 2], days_pars[s, 3], pool)
                        if valued and sv_valued[s] != 0 and s < n_stages - 1:
                            sv = draw_one(gen_lost, sv_codes[s], sv_pars[s, 0], sv_pars[s, 1], sv_pars[s, 2],
                                          sv_pars[s, 3], pool)
                            if 0.0 <= time < horizon:
                                stage_revenue[t, stage_values.period_of_day[int(time)], g] += sv
                value = draw_one(gen_value, value_code, value_par[0], value_par[1], value_par[2], value_par[3], pool)
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
                    cyc_trial[cyc_n], cyc_days[cyc_n] = t, time - d
                    cyc_n += 1
                if keep_log:
                    if log_n >= log_trial.shape[0]:
                        log_trial, log_day, log_segment, log_value, log_rep = _grown(
                            log_trial, log_day, log_segment, log_value, log_rep, log_n, max(256, 2 * log_n))
                    log_trial[log_n], log_day[log_n], log_segment[log_n] = t, day, g
                    log_value[log_n], log_rep[log_n] = value, rep
                    log_n += 1
            lost = n - won
            if not lost_too or lost == 0:
                continue
            if moving:  # each path conditioned on being lost; every visit after the first an entry
                for _ in range(lost):
                    end = _lost_path(gen_lost, s0, n_stages, n_moves_g, to_g, slot_g, th, h, v_stage, v_exit, 0,
                                     v_stage.shape[0])
                    while end < 0:  # a path longer than the room: drawn again, with more (rare)
                        size = 2 * v_stage.shape[0]
                        v_stage, v_exit = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
                        end = _lost_path(gen_lost, s0, n_stages, n_moves_g, to_g, slot_g, th, h, v_stage, v_exit, 0,
                                         v_stage.shape[0])
                    time = float(d)
                    for v in range(end):
                        if v > 0:
                            if not time < horizon:
                                break
                            if counting:
                                _count(counts, t, g, v_stage[v], time, horizon, False)
                        time += _visit_time(gen_lost, g, v_stage[v], v_exit[v], funnel, chain, counts, pool)
                        if counting and v == end - 1:
                            _count(counts, t, g, v_stage[v], time, horizon, True)
                continue
            left = lost  # of the leads lost, those not yet placed: they all reach stage k
            for k in range(s0, n_stages):
                if left == 0:
                    break
                p = conv[month, k]
                if k == n_stages - 1 or not 1.0 - reach[k] > 0.0:
                    here = left
                else:
                    here = gen_lost.binomial(left, min(max((1.0 - p) / (1.0 - reach[k]), 0.0), 1.0))
                left -= here
                for _ in range(here):
                    time = float(d)
                    for s in range(s0, k + 1):
                        if s > s0:
                            if not time < horizon:
                                break
                            if counting:
                                _count(counts, t, g, s, time, horizon, False)
                        if s < k:
                            time += _stage_time(gen_lost, days_codes[s], days_pars[s, 0], days_pars[s, 1],
                                                days_pars[s, 2], days_pars[s, 3], pool)
                            if valued and sv_valued[s] != 0:
                                sv = draw_one(gen_lost, sv_codes[s], sv_pars[s, 0], sv_pars[s, 1], sv_pars[s, 2],
                                              sv_pars[s, 3], pool)
                                if 0.0 <= time < horizon:
                                    stage_revenue[t, stage_values.period_of_day[int(time)], g] += sv
                        elif stalled[k] == 0.0 or gen_lost.random() >= stalled[k]:  # lost, unless stalled for ever
                            time += _stage_time(gen_lost, lost_codes[k], lost_pars[k, 0], lost_pars[k, 1],
                                                lost_pars[k, 2], lost_pars[k, 3], pool)
                            if counting:
                                _count(counts, t, g, k, time, horizon, True)
    return (log_trial[:log_n], log_day[:log_n], log_segment[:log_n], log_value[:log_n], log_rep[:log_n],
            cyc_trial[:cyc_n], cyc_days[:cyc_n])
