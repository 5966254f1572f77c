"""Backtests: walk forward through a history and score the forecasts against what happened.

At each cutoff T the scenario is calibrated on what was known on T
(:mod:`forecaster.calibrate`), forecast over the next ``months`` calendar months, and
compared with the deals actually won in each month (new leads and the open pipeline
alike). Scores, per metric (won deals, revenue), per month and for the horizon's total:

* coverage: whether the actual value fell inside the P10–P90 and P5–P95 intervals;
* CRPS (continuous ranked probability score, from the trial samples: mean |X - y| minus
  half the mean |X - X'|; for a point forecast it is the absolute error);
* pinball loss at P10, P50 and P90, and bias (forecast mean - actual).

Baselines scored the same way (as point forecasts): the **weighted pipeline** that CRMs
show (each deal open on T times the historical win rate of its stage, at its value; the
whole amount counted in the horizon) and a **seasonal naive** forecast (each month as the
same month of the previous quarter). Where that month precedes the history's first win the
naive forecast is 0 through no fault of its own, so its CRPS is also averaged over the
months it could see (``crps_month_naive_has_data``), beside forecaster's on the same months.
"""
from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .calibrate import _whole_quarters, calibrate, pipeline_csv
from .history import Deal, won_dates

QUANTILES = (0.1, 0.5, 0.9)


def month_start(d: date) -> date:
    return d.replace(day=1)


def add_months(d: date, k: int) -> date:
    y, m = divmod(d.month - 1 + k, 12)
    return date(d.year + y, m + 1, 1)


def crps_samples(samples: np.ndarray, y: float) -> float:
    """CRPS of an empirical forecast distribution at the outcome ``y``."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    return float(np.mean(np.abs(x - y)) - np.sum((2 * np.arange(1, n + 1) - n - 1) * x) / n ** 2)


def pinball(q_value: float, y: float, tau: float) -> float:
    return float(max(tau * (y - q_value), (tau - 1) * (y - q_value)))


def score(samples: np.ndarray, y: float) -> dict:
    """Coverage, CRPS, pinball losses and bias of one forecast distribution."""
    q5, q10, q50, q90, q95 = np.percentile(samples, (5, 10, 50, 90, 95))
    return {"actual": y, "mean": float(np.mean(samples)), "p10": float(q10), "p50": float(q50), "p90": float(q90),
            "in_p10_p90": bool(q10 <= y <= q90), "in_p5_p95": bool(q5 <= y <= q95), "crps": crps_samples(samples, y),
            "pinball": {f"p{int(t * 100)}": pinball(v, y, t) for t, v in zip(QUANTILES, (q10, q50, q90))},
            "bias": float(np.mean(samples) - y)}


def point_score(forecast: float, y: float) -> dict:
    return {"actual": y, "forecast": forecast, "crps": abs(forecast - y), "bias": forecast - y}


def actuals(deals: list[Deal], months: list[date]) -> dict:
    """Deals won, and their value, in each month: ``{"won_deals": [...], "revenue": [...]}``."""
    won = {m: [0, 0.0] for m in months}
    for d in deals:
        if d.outcome == "won" and d.closed is not None and month_start(d.closed) in won:
            won[month_start(d.closed)][0] += 1
            won[month_start(d.closed)][1] += d.amount or (1.0 if d.amount is None else 0.0)
    return {"won_deals": [float(won[m][0]) for m in months], "revenue": [won[m][1] for m in months]}


def weighted_pipeline(deals: list[Deal], stages: list[str], cutoff: date) -> dict:
    """The CRM's expected value: open deals x win rate of their stage (closed deals by the cutoff)."""
    outcome_by_stage = {s: [0, 0] for s in range(len(stages))}   # won, lost after being in the stage
    values = [d.amount for d in deals if d.outcome == "won" and d.closed and d.closed <= cutoff and d.amount]
    mean_value = float(np.mean(values)) if values else 1.0
    open_deals = []
    for d in deals:
        reached = [i for i, e in enumerate(d.entered) if e is not None and e <= cutoff]
        if not reached:
            continue
        closed = d.closed is not None and d.closed <= cutoff
        if closed and d.outcome in ("won", "lost"):
            for i in reached:
                outcome_by_stage[i][0 if d.outcome == "won" else 1] += 1
        elif not closed:
            open_deals.append((reached[-1], d.amount))
    count, value = 0.0, 0.0
    for stage, amount in open_deals:
        won, lost = outcome_by_stage[stage]
        rate = won / (won + lost) if won + lost else 0.0
        count += rate
        value += rate * (amount if amount else mean_value)
    return {"won_deals": count, "revenue": value}


def backtest(deals: list[Deal], stages: list[str], cutoffs: list[date], *, months: int = 3, trials: int = 4000,
             lost_observed: bool = True, capacity: bool = False, progress=None) -> dict:
    """Walk forward through ``cutoffs``; returns per-cutoff scores and their averages."""
    import forecaster as fc

    results = []
    # a history without amounts has no revenue to score (it would repeat won deals)
    metrics = ("won_deals", "revenue") if any(d.amount for d in deals) else ("won_deals",)
    every_win = won_dates(deals, date.max)
    first_win = month_start(every_win[0]) if every_win else date.max
    for cutoff in cutoffs:
        first = cutoff + timedelta(days=1)
        if first.day != 1:
            raise ValueError(f"cutoff {cutoff} must be the last day of a month")
        month_list = [add_months(first, k) for k in range(months)]
        horizon_days = (add_months(first, months) - first).days
        cal = calibrate(deals, stages, cutoff, horizon_days=horizon_days, name=f"backtest-{cutoff}",
                        lost_observed=lost_observed, capacity=capacity)
        with tempfile.TemporaryDirectory() as tmp:
            if cal.pipeline:
                (Path(tmp) / "pipeline.csv").write_text(pipeline_csv(cal.pipeline))
            sc = fc.scenario_from_dict(cal.scenario, base_dir=tmp, name=f"calibrated on {cutoff}")
            ds = fc.simulate(sc, trials=trials, seed=0)
        truth = actuals(deals, month_list)
        previous = actuals(deals, [add_months(m, -3) for m in month_list])
        pipeline = weighted_pipeline(deals, stages, cutoff)
        item = {"cutoff": cutoff.isoformat(), "months": [m.isoformat() for m in month_list], "metrics": {},
                "whole_quarter": bool(_whole_quarters(won_dates(deals, cutoff), cutoff))}
        for metric in metrics:
            per_trial = ds[metric].values.astype(float)
            y = truth[metric]
            item["metrics"][metric] = {
                "forecaster": {"by_month": [score(per_trial[:, k], y[k]) for k in range(months)],
                               "total": score(per_trial.sum(axis=1), sum(y))},
                "seasonal_naive": {"by_month": [{**point_score(previous[metric][k], y[k]),
                                                 "has_data": add_months(month_list[k], -3) >= first_win}
                                                for k in range(months)],
                                   "total": point_score(sum(previous[metric]), sum(y))},
                "weighted_pipeline": {"total": point_score(pipeline[metric], sum(y))}}
        results.append(item)
        if progress:
            progress(cutoff)
    return {"cutoffs": results, "average": average(results, metrics)}


def average(results: list[dict], metrics=("won_deals", "revenue")) -> dict:
    """Coverage rates and mean scores over cutoffs (and months), per metric and method."""
    out = {}
    for metric in metrics:
        f_month = [s for r in results for s in r["metrics"][metric]["forecaster"]["by_month"]]
        f_total = [r["metrics"][metric]["forecaster"]["total"] for r in results]
        n_month = [s for r in results for s in r["metrics"][metric]["seasonal_naive"]["by_month"]]
        n_total = [r["metrics"][metric]["seasonal_naive"]["total"] for r in results]
        w_total = [r["metrics"][metric]["weighted_pipeline"]["total"] for r in results]
        mean = lambda xs, k: float(np.mean([x[k] for x in xs])) if xs else None  # noqa: E731 (None: no month)
        fair = [i for i, x in enumerate(n_month) if x.get("has_data", True)]  # months the naive could see
        f_fair, n_fair = [f_month[i] for i in fair], [n_month[i] for i in fair]
        # months forecast from cutoffs with a whole quarter of wins behind them (closing, capacity)
        f_whole = [s for r in results if r.get("whole_quarter") for s in r["metrics"][metric]["forecaster"]["by_month"]]
        n_whole = [s for r in results if r.get("whole_quarter")
                   for s in r["metrics"][metric]["seasonal_naive"]["by_month"]]
        out[metric] = {
            "forecaster": {"coverage_p10_p90_month": mean(f_month, "in_p10_p90"),
                           "coverage_p5_p95_month": mean(f_month, "in_p5_p95"),
                           "coverage_p10_p90_total": mean(f_total, "in_p10_p90"),
                           "crps_month": mean(f_month, "crps"), "crps_total": mean(f_total, "crps"),
                           "crps_month_naive_has_data": mean(f_fair, "crps"),
                           "crps_month_whole_quarter": mean(f_whole, "crps"),
                           "pinball_month": {p: float(np.mean([x["pinball"][p] for x in f_month]))
                                             for p in ("p10", "p50", "p90")},
                           "bias_month": mean(f_month, "bias"), "bias_total": mean(f_total, "bias")},
            "seasonal_naive": {"crps_month": mean(n_month, "crps"), "crps_total": mean(n_total, "crps"),
                               "crps_month_naive_has_data": mean(n_fair, "crps"), "months_naive_has_data": len(fair),
                               "crps_month_whole_quarter": mean(n_whole, "crps"), "months_whole_quarter": len(n_whole),
                               "bias_month": mean(n_month, "bias")},
            "weighted_pipeline": {"crps_total": mean(w_total, "crps"), "bias_total": mean(w_total, "bias")}}
    return out
