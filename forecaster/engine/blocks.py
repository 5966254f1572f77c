"""One block of trials through the kernels: the per-trial parameters, the shared shocks, new
leads, dated lead events, pipeline deals and the team's capacity, in that order."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.engine import deals, events, kernels, moves
from forecaster.engine._numba import expect_kernels
from forecaster.engine.interface import THETA_CONVERT
from forecaster.engine.plan import Plan
from forecaster.engine.seeding import StreamKeys, thread_generators


@dataclass(frozen=True)
class Sources:
    """Which sources of won deals a block simulates: the new leads and the dated lead events
    (v2 F2) of ``segments`` (indices), if ``pipeline`` the open pipeline's deals, and if
    ``installed`` the installed base's customers (v2 A.5). With customers, each source's won
    deals bring their customers along (each source's from streams of its own).

    Every source draws from streams of its own, so a run of some sources books, for every
    trial, exactly the deals (and customers) a whole run books from them: a whole run's
    outputs are the sum of its sources' (up to the rounding of the sum). The per-trial
    parameters and shared shocks are drawn for every segment whatever the sources. Not with
    a team capacity, which decides jointly when every source's deals are won, nor with
    spifs or clawbacks (v2 D), whose rates need every source's deals.
    """

    segments: tuple[int, ...]
    pipeline: bool
    installed: bool = False


def run_block(plan: Plan, keys: StreamKeys, first: int, n: int, revenue, won, bookings, theta, *extra,
              sources: Sources | None = None) -> None:
    """Simulate trials ``first .. first + n - 1`` into the given output rows (added to).

    Every stream is reseeded for every trial from its key (see :mod:`forecaster.engine.seeding`),
    so the rows depend on the trials' indices only. ``sources``: only those (default: all).
    ``extra``: the after-sale rows with customers, then stage_revenue's with stage values
    (see :meth:`Plan.kernel_buffers`); each source's won deals then create customers
    (:func:`kernels.simulate_customers`).
    """
    gens = thread_generators()
    funnel, first = plan.funnel, int(first)
    G = len(plan.segment_names)
    for g in range(G):
        kernels.draw_parameters(keys.parameters[g].streams(*gens), first, funnel, g, theta)
    plan.share_draws(theta)  # v2 E.1: a same_as takes its target's draw, before any step or shock
    if plan.adjust_theta is not None:  # a sensitivity's step of each trial's drawn probabilities, before the shocks
        plan.adjust_theta(theta)
    month_factor = plan.month_factors(n)
    if plan.has_shocks:
        kernels.apply_shocks(keys.shocks.streams(*gens), first, plan.shocks, funnel, theta, month_factor)
    out = plan.outputs(revenue, won, bookings)
    # with a capacity, deals are booked by the day they are due; capacity then decides when they are won
    due = plan.due_outputs(n, revenue.shape[2], bookings.shape[2]) if plan.has_capacity else out
    if sources is not None and plan.has_capacity:
        raise ValueError("a team capacity couples every source of won deals: simulate them together")
    customers = plan.has_customers
    keep_log = plan.keeps_deals  # with customers, spifs or clawbacks (v2 D): every deal won
    after_sale, stage_revenue = plan.split_extra(extra)
    after = plan.customer_outputs(after_sale) if customers else None
    by_source = plan.split_sources(extra)  # v2 F12: what each source adds is told apart by marks
    before = _mark(out) if by_source is not None else None
    counts = plan.counts_of(plan.split_counts(extra), plan.split_leads(extra))  # v2 F1, E.3 (on 0: not counted)
    logs = []  # (customer streams, deal log) of each source, with customers
    failed = np.full(1, -1, dtype=np.int64)  # v2 B: the first trial whose chain no lead leaves
    walks = plan.drift_walks(n)  # v2 B.4: the conversion drift's walks, for each month's chain
    if plan.moves_drift and keys.drift_walks is not None:
        moves.drift_walks(keys.drift_walks.streams(*gens), first, plan.shocks.drift_convert, walks)
    # v2 E.3/F1: the leads not won, drawn once per segment and trial (the leads output's draws),
    # then split over the stages they are lost at: the leads counted are those entering
    # (after the won leads: with moves, only once their kernel has stopped a run whose chain no
    # lead leaves, which the leads not won, solved trial by trial, cannot be drawn for)
    unwon = np.zeros((n if plan.counting else 0, len(plan.funnel.elapsed_months)), dtype=np.int64)

    def draw_unwon(g: int) -> None:
        if plan.counting or plan.counting_leads:
            not_won = _chain_not_won(plan, g, theta, walks) if plan.chain is not None and plan.chain.has[g] \
                else NO_OVERRIDE
            kernels.simulate_unwon_leads(keys.unwon_leads[g].streams(*gens), first, funnel, g, counts,
                                         plan.shocks, theta, not_won, unwon)

    for g in range(G) if sources is None else sources.segments:
        if plan.chain is not None and plan.chain.has[g]:
            result = moves.simulate_new_leads_moves(keys.new_leads_moves[g].streams(*gens), first, funnel,
                                                    plan.chain, g, plan.closing, theta, month_factor, walks, due,
                                                    keep_log, failed, counts, plan.stage_values, stage_revenue)
            _check_absorbed(plan, failed, g, theta, first, walks)
            log = result[:5]
            _pool_cycles(plan.split_cycles(extra), g, result[5], result[6])
            draw_unwon(g)
            if plan.counting:
                moves.simulate_lost_leads_moves(keys.lost_leads_moves[g].streams(*gens), first, funnel, plan.chain, g,
                                                counts, theta, month_factor, walks, unwon)
        else:
            result = kernels.simulate_new_leads(keys.new_leads[g].streams(*gens), first, funnel, g, plan.closing,
                                                theta, month_factor, due, keep_log, plan.stage_values, stage_revenue,
                                                keys.won_stage_times[g].streams(*gens), counts)
            log = result[:5]
            _pool_cycles(plan.split_cycles(extra), g, result[5], result[6])
            draw_unwon(g)
            if plan.counting:
                kernels.simulate_lost_leads(keys.lost_leads[g].streams(*gens), first, funnel, g, counts, plan.shocks,
                                            theta, np.int64(0), NO_OVERRIDE, unwon)
        logs.append((keys.customers_new_leads[g], log))
        if plan.stage_values.valued[g].any() and plan.chain is not None and plan.chain.has[g]:
            moves.simulate_lost_stage_values_moves(keys.lost_stage_values_moves[g].streams(*gens), first, funnel,
                                                   plan.chain, g, plan.stage_values, theta, month_factor, stage_revenue)
        elif plan.stage_values.valued[g].any():
            kernels.simulate_lost_stage_values(keys.lost_stage_values[g].streams(*gens), first, funnel, g,
                                               plan.stage_values, theta, month_factor, stage_revenue)
    new_leads_done = _mark(due) if by_source is not None else None
    events_at = []  # v2 F2: the events' indices in logs
    if plan.has_events:
        event_counts = plan.split_event_counts(extra)
        chain = plan.chain_record()
        for g in range(G) if sources is None else sources.segments:
            if not plan.events_of(g):
                continue
            result = events.simulate_events(keys.events[g].streams(*gens), first, funnel, chain, plan.events, g,
                                            plan.closing, plan.shocks, theta, due, keep_log, plan.stage_values,
                                            stage_revenue, counts, event_counts, failed)
            _check_absorbed(plan, failed, g, theta, first)
            logs.append((keys.customers_events[g], result[:5]))
            events_at.append(len(logs) - 1)
            _pool_cycles(plan.split_cycles(extra), g, result[5], result[6])
    events_done = _mark(due) if by_source is not None and plan.has_events else new_leads_done
    pipeline_at = -1  # the pipeline's index in logs
    if plan.has_pipeline and (sources is None or sources.pipeline):
        log = kernels.simulate_pipeline(keys.pipeline.streams(*gens), first, funnel, plan.pipeline, plan.closing,
                                        theta, due, keep_log, plan.stage_values, stage_revenue,
                                        _pipeline_count_keys(keys).streams(*gens), counts)
        if plan.has_chain_pipeline and keys.pipeline_moves is not None:  # open deals of segments with moves (v2 B)
            chained = moves.simulate_pipeline_moves(keys.pipeline_moves.streams(*gens), first, funnel, plan.chain,
                                                    plan.chain_pipeline, plan.closing, theta, due, keep_log, failed,
                                                    counts, plan.stage_values, stage_revenue)
            _check_absorbed(plan, failed, -1, theta, first)
            # one log for the pipeline: its customers draw from the pipeline's streams in this order
            log = tuple(np.concatenate([a, b]) for a, b in zip(log, chained))
            if keep_log:  # grouped by trial as every log is
                order = np.argsort(log[0], kind="stable")
                log = tuple(x[order] for x in log)
        logs.append((keys.customers_pipeline, log))
        pipeline_at = len(logs) - 1
    if plan.has_capacity and customers:  # deals admitted one by one: each customer starts when its deal is won
        logs = _admitted(plan, keys, gens, first, n, logs, out)
    elif plan.has_capacity:
        kernels.apply_capacity(keys.capacity.streams(*gens), first, plan.capacity, due, out)
    if by_source is not None:
        admitted = plan.has_capacity and customers  # then the logs hold the deals won, deal by deal
        _by_source(plan, keys, gens, first, by_source, out, due, before, new_leads_done, events_done,
                   logs[pipeline_at][1] if pipeline_at >= 0 and admitted else None,
                   [logs[i][1] for i in events_at] if admitted else None)
    losses = []  # v2 D.2: the day each deal's customer is lost, per source (with a clawback)
    clawing = plan.deals is not None and plan.deals.clawback and sources is None
    if after is not None:
        for key_set, log in logs:
            loss = np.full(log[0].shape[0] if clawing else 0, -1, dtype=np.int64)
            _customers_of(key_set, gens, first, log, plan, theta, after, loss)
            losses.append(loss)
        if plan.installed.segment.shape[0] > 0 and (sources is None or sources.installed):
            kernels.simulate_installed(keys.installed.streams(*gens), first, plan.installed, plan.customers, funnel,
                                       theta, after)
    if plan.deals is not None and sources is None:  # v2 D.2, D.4 (a whole run: the rates need every source)
        _commission_deals(plan, logs, losses, extra)


def _admitted(plan: Plan, keys: StreamKeys, gens, first: int, n: int, logs: list, out) -> list:
    """Every source's deals due, admitted by the team's capacity deal by deal
    (:func:`kernels.apply_capacity_deals`, booked into ``out``); returns each source's log of
    the deals won, on the day they are won, in the source's order."""
    parts = [np.column_stack([np.asarray(a, dtype=float) for a in log]) for _, log in logs]
    sizes = [p.shape[0] for p in parts]
    joined = np.concatenate(parts) if parts else np.zeros((0, 5))
    trial, day = joined[:, 0].astype(np.int64), joined[:, 1].astype(np.int64)
    order = np.lexsort((day, trial))  # by trial, then due day; stable: ties in the engine's deal order
    admitted = np.empty(order.shape[0], dtype=np.int64)
    kernels.apply_capacity_deals(keys.capacity.streams(*gens), first, plan.capacity, n, trial[order], day[order],
                                 joined[order, 2].astype(np.int64), np.ascontiguousarray(joined[order, 3]),
                                 joined[order, 4].astype(np.int64), out, admitted)
    won_day = np.empty_like(admitted)
    won_day[order] = admitted
    result, at = [], 0
    for (key_set, log), size in zip(logs, sizes):
        when = won_day[at:at + size]
        keep = when >= 0
        tr, _, seg, value, rep = log
        result.append((key_set, (tr[keep], when[keep], seg[keep], value[keep], rep[keep])))
        at += size
    return result


NO_OVERRIDE = np.zeros((0, 0))
"""simulate_lost_leads' ``not_won_of`` for a segment without moves."""


def _chain_not_won(plan: Plan, g: int, theta: np.ndarray, walks: np.ndarray | None) -> np.ndarray:
    """v2 E.3 with moves: 1 - h_1 of segment ``g``'s chain in each trial of ``theta`` (trials,
    segments, K) and calendar month, shape (trials, months); with a conversion drift
    (``walks``, (trials, S, months)) each month's conversions shifted on the log-odds scale as
    the moves kernels shift them (v2 B.4)."""
    from forecaster.scenario import chain as chains

    assert plan.chain is not None
    S, n = len(plan.stage_names), theta.shape[0]
    p = theta[:, g, THETA_CONVERT:THETA_CONVERT + S]
    shares = moves.record_moves(plan.chain, g, theta[:, g])
    out = np.empty((n, plan.months))
    drifting = walks is not None and walks.shape[2] > 0
    for m in range(plan.months if drifting else 1):
        pm = p
        if walks is not None and drifting:
            odds = np.exp(walks[:, :, m])
            pm = np.where((p > 0) & (p < 1), p * odds / (1.0 - p + p * odds), p)
        h, _ = chains.solve_trials(*chains.matrices(pm, shares))
        out[:, m:] = (1.0 - h[:, 0])[:, None]
    return np.clip(out, 0.0, 1.0)


def _check_absorbed(plan: Plan, failed: np.ndarray, g: int, theta: np.ndarray, first: int,
                    walks: np.ndarray | None = None) -> None:
    """Stop the run (v2 B.5) when a trial's drawn conversions and shares made a chain that no
    lead leaves: ``failed[0]`` is that trial (-1: none); ``g`` the segment, or -1 for the
    pipeline's (then the first segment with moves whose chain fails in that trial is named).
    The message names the segment, the stages on the loop (from that trial's draws) and the
    trial; with a conversion drift (``walks``, (trials, S, months)) whose month made the loop
    (v2 B.4), that month too."""
    trial = int(failed[0])
    if trial < 0 or plan.chain is None:
        return
    from forecaster.errors import Problem, ScenarioError
    from forecaster.scenario import chain as chains

    chain, row = plan.chain, theta[trial - first]
    S = len(plan.stage_names)
    named, loop, month = None, list(plan.stage_names), 0
    for k in ([g] if g >= 0 else [int(x) for x in np.flatnonzero(chain.has)]):
        p, shares = row[k, THETA_CONVERT:THETA_CONVERT + S], moves.record_moves(chain, k, row[k])
        Q, _ = chains.matrices(p, shares)
        if chains.absorbed(Q) and walks is not None and walks.shape[2] > 0:  # some month's chain, drifted
            for m in range(1, walks.shape[2]):
                odds = np.exp(walks[trial - first, :, m])
                drifted, _ = chains.matrices(np.where((p > 0) & (p < 1), p * odds / (1.0 - p + p * odds), p), shares)
                if not chains.absorbed(drifted):
                    Q, month = drifted, m
                    break
        if not chains.absorbed(Q) or g >= 0:
            named, loop = plan.segment_names[k], chains.loop_stages(Q, plan.stage_names)
            break
    stages = " and ".join(loop) if len(loop) < 3 else ", ".join(loop)
    when = (f"in trial {trial}, calendar month {month} after start's (its conversions moved by shocks.drift.convert)"
            if month else f"in trial {trial}")
    raise ScenarioError(plan.shown, [Problem(
        f"segments.{named}.funnel" if named else "segments",
        f"{when}, the drawn conversions and move shares make stages {stages} a loop that no lead "
        "leaves (some expected number of visits is above 10,000); narrow the distributions of the "
        "conversions or shares on that loop" + (", or the drift" if month else ""))])


def _pipeline_count_keys(keys: StreamKeys):
    """The count streams the pipeline kernel is given (v2 F1; :func:`stream_keys` always sets them)."""
    assert keys.pipeline_stage_counts is not None
    return keys.pipeline_stage_counts


def _pool_cycles(cycles, g: int, trial: np.ndarray, days: np.ndarray) -> None:
    """v2 F1: add segment ``g``'s deals (their trial in the block, their days from arrival to
    win; grouped by trial) to each trial's (segment, days) rows in ``cycles`` (None: not asked for)."""
    if cycles is None or trial.size == 0:
        return
    bounds = np.flatnonzero(np.diff(trial)) + 1
    for part_t, part in zip(np.split(trial, bounds), np.split(days, bounds)):
        t = int(part_t[0])
        cycles[t] = np.concatenate([cycles[t], np.column_stack([np.full(part.size, float(g)), part])])


def _mark(out) -> tuple[np.ndarray, np.ndarray]:
    """A copy of an Outputs record's won deals and revenue, (trials, days or periods, segments)."""
    return out.won.copy(), out.revenue.copy()


def _by_source(plan: Plan, keys: StreamKeys, gens, first: int, by_source, out, due, before, new_leads_done,
               events_done, pipeline_log, event_logs) -> None:
    """Revenue and won deals by source (v2 F12) of a block, into ``by_source`` = (revenue
    (n, periods, sources), won (n, periods, sources)), added to.

    The pipeline's deals are what :func:`kernels.simulate_pipeline` added to ``due`` (by period
    without a capacity); with a capacity, those the capacity admits: from the deal-by-deal log
    with customers (``pipeline_log``), else followed through the queues by
    :func:`kernels.capacity_pipeline_share`. The events' (v2 F2) are what
    :func:`events.simulate_events` added to ``due`` (marked before, ``new_leads_done``, and
    after, ``events_done``), or with a capacity and customers those admitted (``event_logs``,
    deal by deal). The new leads' are the rest of what the block added to ``out``: won deals
    add up exactly; revenue to its rounding.
    """
    from forecaster.engine.plan import EVENTS_SOURCE, NEW_LEADS_SOURCE, PIPELINE_SOURCE

    revenue, won = by_source
    pipe_won = due.won - events_done[0]
    pipe_revenue = due.revenue - events_done[1]
    pipe_p_won = np.zeros(won.shape[:2], dtype=np.int32)  # the pipeline's, by period
    pipe_p_revenue = np.zeros(revenue.shape[:2])
    if not plan.has_capacity:
        pipe_p_won += pipe_won.sum(axis=2, dtype=np.int32)
        pipe_p_revenue += pipe_revenue.sum(axis=2)
    elif pipeline_log is not None:
        trial, day, _, value, _ = pipeline_log
        period = plan.periods.of_day[np.asarray(day, dtype=np.int64)]
        np.add.at(pipe_p_won, (trial, period), 1)
        np.add.at(pipe_p_revenue, (trial, period), value)
    elif plan.has_pipeline:
        kernels.capacity_pipeline_share(keys.capacity.streams(*gens), first, plan.capacity, due,
                                        np.ascontiguousarray(pipe_won), np.ascontiguousarray(pipe_revenue),
                                        plan.periods.of_day, pipe_p_won, pipe_p_revenue)
    won[:, :, PIPELINE_SOURCE] += pipe_p_won
    revenue[:, :, PIPELINE_SOURCE] += pipe_p_revenue
    new_won = (out.won - before[0]).sum(axis=2, dtype=np.int32) - pipe_p_won
    new_revenue = (out.revenue - before[1]).sum(axis=2) - pipe_p_revenue
    if plan.has_events:  # v2 F2
        ev_won = np.zeros(won.shape[:2], dtype=np.int32)
        ev_revenue = np.zeros(revenue.shape[:2])
        if event_logs is not None:
            for trial, day, _, value, _ in event_logs:
                period = plan.periods.of_day[np.asarray(day, dtype=np.int64)]
                np.add.at(ev_won, (trial, period), 1)
                np.add.at(ev_revenue, (trial, period), value)
        elif not plan.has_capacity:
            ev_won += (events_done[0] - new_leads_done[0]).sum(axis=2, dtype=np.int32)
            ev_revenue += (events_done[1] - new_leads_done[1]).sum(axis=2)
        won[:, :, EVENTS_SOURCE] += ev_won
        revenue[:, :, EVENTS_SOURCE] += ev_revenue
        new_won -= ev_won
        new_revenue -= ev_revenue
    won[:, :, NEW_LEADS_SOURCE] += new_won
    revenue[:, :, NEW_LEADS_SOURCE] += new_revenue


def _customers_of(key_set, gens, first: int, log, plan: Plan, theta, after, loss) -> None:
    """The customers of one source's deal log (:func:`kernels.simulate_customers`); ``loss``:
    where each deal's loss day goes (v2 D.2; empty: not asked for)."""
    window = np.int64(plan.deals.window if plan.deals is not None else -1)
    kernels.simulate_customers(key_set.streams(*gens), first, *log, plan.customers, theta, after, loss, window)


def _commission_deals(plan: Plan, logs: list, losses: list, extra: tuple) -> None:
    """v2 D.4 and D.2: a block's spif payments and clawback rows, from every source's deals
    (:mod:`forecaster.engine.deals`), into the buffers of :meth:`Plan.commission_buffers`."""
    assert plan.deals is not None
    free, capped, rows = plan.split_commission(extra)
    won = deals.won_in_order([log for _, log in logs], losses)
    if free is not None:
        deals.spif_payments(plan.deals, won, free, capped)
    if rows is not None:
        deals.clawback_rows(plan.deals, won, rows)


def kernels_of(plan: Plan) -> tuple:
    """The kernels a block of ``plan`` calls (numba dispatchers, in the order they run)."""
    return tuple(k for k, needed in ((kernels.draws, True), (kernels.apply_shocks, plan.has_shocks),
                                     (kernels.new_leads_trials, True),
                                     (kernels.pipeline_trials, plan.has_pipeline),
                                     (moves.drift_walks, plan.moves_drift),
                                     (moves.simulate_new_leads_moves, plan.has_moves),
                                     (moves.simulate_pipeline_moves, plan.has_chain_pipeline),
                                     (moves.simulate_lost_leads_moves, plan.has_moves and plan.counting),
                                     (events.simulate_events, plan.has_events),
                                     (kernels.apply_capacity, plan.has_capacity and not plan.has_customers),
                                     (kernels.apply_capacity_deals, plan.has_capacity and plan.has_customers),
                                     (kernels.capacity_pipeline_share,
                                      plan.by_source and plan.has_capacity and plan.has_pipeline
                                      and not plan.has_customers),
                                     (kernels.simulate_customers, plan.has_customers),
                                     (kernels.simulate_lost_stage_values, plan.has_stage_values),
                                     (moves.simulate_lost_stage_values_moves, plan.has_stage_values and plan.has_moves),
                                     (kernels.simulate_lost_leads, plan.counting or plan.counting_leads),
                                     (kernels.simulate_installed, plan.installed.segment.shape[0] > 0)) if needed)


def prepare(plan: Plan, keys: StreamKeys) -> None:
    """Load the kernels a run of ``plan`` calls, or compile those not yet in the cache (the
    first run only), by running a block of 0 trials: they are then ready for every thread."""
    expect_kernels(kernels_of(plan))
    run_block(plan, keys, 0, 0, *plan.kernel_buffers(0))
