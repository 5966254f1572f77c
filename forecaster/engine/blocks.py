"""One block of trials through the kernels: the per-trial parameters, the shared shocks, new
leads, pipeline deals and the team's capacity, in that order."""
from __future__ import annotations

import numpy as np

from forecaster.engine import kernels
from forecaster.engine.plan import Plan
from forecaster.engine.seeding import StreamKeys, thread_generators


def run_block(plan: Plan, keys: StreamKeys, first: int, n: int, revenue, won, bookings, theta) -> None:
    """Simulate trials ``first .. first + n - 1`` into the given output rows (added to).

    Every stream is reseeded for every trial from its key (see :mod:`forecaster.engine.seeding`),
    so the rows depend on the trials' indices only.
    """
    S = len(plan.stage_names)
    gens, addresses = thread_generators(S + 6)
    for g in range(len(plan.segment_names)):
        k = plan.param_codes.shape[1]
        kernels.draw_parameters(tuple(gens[:k]), addresses[:k], keys.parameters[g], first, plan.param_codes[g],
                                plan.param_pars[g], plan.pool, theta, g)
    month_factor = plan.month_factors(n)
    if plan.has_shocks:
        kernels.apply_shocks(gens[0], addresses[0], keys.shocks, first, plan.shock_leads, plan.shock_convert,
                             plan.drift_leads, plan.drift_convert, plan.rate_is_cost, theta, month_factor)
    slips = (plan.slip_prob, plan.slip_lo, plan.slip_hi) if plan.has_closing else (_NONE,) * 3
    out, of_day, cof_day = (revenue, won, bookings), plan.periods.of_day, plan.quota_periods.of_day
    if plan.has_capacity:  # book by the day deals are due; capacity then decides when they are won
        D = plan.days
        out = (np.zeros((n, D, revenue.shape[2])), np.zeros((n, D, won.shape[2]), dtype=np.int32),
               np.zeros((n, D, bookings.shape[2])))
        of_day = cof_day = np.arange(D, dtype=np.int64)
    for g in range(len(plan.segment_names)):
        kernels.simulate_new_leads(
            gens[0], gens[1], gens[2], tuple(gens[6:6 + S]), gens[3], gens[4], gens[5], addresses[:6 + S],
            keys.leads[g], first, theta, month_factor, g, plan.rate_is_cost[g], plan.day_mean[g], plan.elapsed_months,
            plan.dispersion[g], plan.lead_days_codes[g], plan.lead_days_pars[g], plan.value_codes[g],
            plan.value_pars[g], plan.pool, plan.segment_reps[g, :plan.segment_n_reps[g]], *slips, of_day, cof_day,
            *out)
    if plan.deal_segment.size:
        kernels.simulate_pipeline(
            gens[0], gens[1], gens[2], gens[3], gens[4], addresses[:5], keys.pipeline, first, theta,
            plan.deal_segment, plan.deal_stage, plan.deal_age, plan.deal_mode, plan.deal_odds, plan.deal_sf,
            plan.deal_pending, plan.pending_lo, plan.pending_hi, plan.deal_amount, plan.deal_owner, plan.days_codes, plan.days_pars, plan.value_codes, plan.value_pars,
            plan.pool, plan.segment_reps, plan.segment_n_reps, *slips, of_day, cof_day, *out)
    if plan.has_capacity:
        kernels.apply_capacity(gens[0], addresses[0], keys.capacity, first, plan.capacity_of_day, plan.month_of_day,
                               plan.capacity_cv, *out, plan.periods.of_day, plan.quota_periods.of_day, revenue, won,
                               bookings)


_NONE = np.zeros(0)
"""Stands for the per-day slip arrays of a scenario without ``closing``."""
