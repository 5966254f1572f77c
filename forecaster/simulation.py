"""The orchestrator: a Scenario, a seed and a trial count in; an xarray Dataset out.

Trials run in fixed blocks (see :mod:`forecaster.seeding`) on a pool of threads; each
block draws from its own streams and writes its own rows of the outputs, so the numbers do
not depend on the number of threads.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import xarray as xr

from . import kernels
from ._numba import default_threads
from .commission import commission_by_period, commission_per_quota_period
from .plan import Plan, build_plan
from .scenario import Scenario
from .seeding import blocks, generator

Progress = Callable[[int], None]


def simulate(scenario: Scenario, *, trials: int | None = None, seed: int | None = None,
             threads: int | None = None, progress: Progress | None = None) -> xr.Dataset:
    """Run the Monte Carlo forecast of a scenario.

    Parameters
    ----------
    scenario : Scenario
        From :func:`forecaster.load_scenario`.
    trials, seed : int, optional
        Override the scenario's ``trials`` and ``seed``.
    threads : int, optional
        Threads to run blocks of trials on (default: ``NUMBA_NUM_THREADS``, i.e. the
        cores). The numbers do not depend on it.
    progress : callable, optional
        Called with the number of trials finished after each block.

    Returns
    -------
    xarray.Dataset
        Per-trial results: ``revenue(trial, period)``, ``won_deals(trial, period)``,
        ``revenue_by_segment`` and ``won_deals_by_segment(trial, period, segment)``; with a
        team ``bookings(trial, quota_period, rep)``; with a commission plan
        ``commission(trial, period, rep)``. Attributes name the scenario, seed and trials.
    """
    sc = scenario.with_run(trials, seed)
    plan = build_plan(sc)
    revenue, won, bookings = run_trials(plan, sc, threads=threads, progress=progress)
    return to_dataset(sc, plan, revenue, won, bookings)


def run_trials(plan: Plan, sc: Scenario, *, threads: int | None = None, progress: Progress | None = None):
    """Run every block of trials.

    Returns
    -------
    revenue : float64, shape (trials, periods, segments)  [currency]
    won : int64, shape (trials, periods, segments)        [deals]
    bookings : float64, shape (trials, quota periods, reps)  [currency]
    """
    T, P, G = sc.trials, len(plan.periods), len(plan.segment_names)
    revenue = np.zeros((T, P, G))
    won = np.zeros((T, P, G), dtype=np.int64)
    bookings = np.zeros((T, len(plan.quota_periods), len(plan.rep_names)))
    work = blocks(T)

    def one(block):
        b, lo, n = block
        sl = slice(lo, lo + n)
        run_block(plan, sc.seed, b, n, revenue[sl], won[sl], bookings[sl])
        return n

    threads = min(threads or default_threads(), len(work))
    if threads <= 1:
        for block in work:
            done = one(block)
            if progress:
                progress(done)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for done in pool.map(one, work):
                if progress:
                    progress(done)
    return revenue, won, bookings


def run_block(plan: Plan, seed: int, block: int, n: int, revenue, won, bookings) -> None:
    """Simulate one block of ``n`` trials into the given output rows (added to)."""
    G = len(plan.segment_names)
    theta = np.zeros((n, G, plan.param_codes.shape[1]))
    for g, name in enumerate(plan.segment_names):
        kernels.draw_parameters(generator(seed, block, f"segment/{name}/parameters"),
                                plan.param_codes[g], plan.param_pars[g], plan.pool, theta, g)
    for g, name in enumerate(plan.segment_names):
        kernels.simulate_new_leads(
            generator(seed, block, f"segment/{name}/arrivals"), generator(seed, block, f"segment/{name}/deals"),
            theta, g, plan.rate_is_cost[g], plan.day_mean[g], plan.elapsed_months, plan.dispersion[g],
            plan.lead_days_codes[g], plan.lead_days_pars[g], plan.value_codes[g], plan.value_pars[g], plan.pool,
            plan.segment_reps[g, :plan.segment_n_reps[g]], plan.periods.of_day, plan.quota_periods.of_day,
            revenue, won, bookings)
    if plan.deal_segment.size:
        kernels.simulate_pipeline(
            generator(seed, block, "pipeline"), theta, plan.deal_segment, plan.deal_stage, plan.deal_age,
            plan.deal_mode, plan.deal_odds, plan.deal_sf, plan.deal_amount, plan.deal_owner, plan.days_codes,
            plan.days_pars, plan.value_codes, plan.value_pars, plan.pool, plan.segment_reps,
            plan.segment_n_reps, plan.periods.of_day, plan.quota_periods.of_day, revenue, won, bookings)


def to_dataset(sc: Scenario, plan: Plan, revenue: np.ndarray, won: np.ndarray, bookings: np.ndarray) -> xr.Dataset:
    """Wrap the kernels' arrays as a Dataset with coordinates, units and provenance."""
    from . import __version__

    unit = sc.currency or "currency"
    coords = {"trial": np.arange(sc.trials), "period": plan.periods.datetimes(),
              "segment": list(plan.segment_names)}
    data = {
        "revenue": (("trial", "period"), revenue.sum(axis=2), {"units": unit, "long_name": "value of deals won"}),
        "won_deals": (("trial", "period"), won.sum(axis=2), {"units": "deals", "long_name": "deals won"}),
        "revenue_by_segment": (("trial", "period", "segment"), revenue, {"units": unit}),
        "won_deals_by_segment": (("trial", "period", "segment"), won, {"units": "deals"}),
    }
    if plan.rep_names:
        coords["rep"] = list(plan.rep_names)
        quota_dim = "quota_period" if sc.commission else "period"
        if sc.commission:
            coords["quota_period"] = plan.quota_periods.datetimes()
        data["bookings"] = ((("trial", quota_dim, "rep")), bookings,
                            {"units": unit, "long_name": "value of deals won by each rep"})
        data["quota"] = (("rep",), plan.quotas, {"units": unit, "long_name": "quota per commission period"})
    if sc.commission:
        earned = commission_per_quota_period(bookings, plan.quotas, sc.commission)
        data["commission"] = (("trial", "period", "rep"), commission_by_period(earned, plan.earn_period,
                                                                                len(plan.periods)),
                              {"units": unit, "long_name": "commission paid, in the period it is earned"})
        data["commission_by_quota_period"] = (("trial", "quota_period", "rep"), earned, {"units": unit})
    ds = xr.Dataset({k: xr.Variable(dims, values, attrs) for k, (dims, values, attrs) in data.items()},
                    coords=coords)
    ds["period"].attrs["long_name"] = f"first day of the {sc.report_by} within the horizon"
    seed_attr = sc.seed if sc.seed < 2 ** 63 else str(sc.seed)
    ds.attrs.update({"scenario": sc.name, "seed": seed_attr, "trials": sc.trials,
                     "start": sc.start.isoformat(), "end": sc.end.isoformat(), "report_by": sc.report_by,
                     "currency": sc.currency or "", "scenario_sha256": sc.sha256,
                     "forecaster_version": __version__})
    if sc.commission:
        ds.attrs["commission_period"] = sc.commission.period
    return ds
