"""Backtests: walk forward through a history and score the forecasts against what happened.

At each cutoff T (the last day of a month) the scenario is calibrated on what was known on
T (:mod:`forecaster.history.calibrate`), forecast over the next ``months`` calendar months, and
compared with the deals actually won in each month (new leads and the open pipeline
alike). Scores, per metric (won deals [deals a month], revenue [currency a month]), per
month and for the horizon's total:

* coverage: whether the actual value fell inside the central 50%, 80% and 90% intervals
  (P25–P75, P10–P90, P5–P95);
* CRPS (continuous ranked probability score, from the trial samples: mean |X - y| minus
  half the mean |X - X'|, in the metric's unit; for a point forecast it is the absolute
  error);
* PIT: the mid-PIT of the actual in the samples, P(X < y) + P(X = y) / 2 (the mid value
  keeps whole-deal counts from piling up at the edges); a calibrated forecast's PIT is
  uniform on [0, 1], so its histogram over many months is flat;
* pinball loss at P10, P50 and P90, and bias (forecast mean - actual).

Baselines a forecaster must beat, scored on the same months and totals:

* **last-month naive** (``last_month_naive``): every month of the horizon is the actual of
  the last whole month before the cutoff (the month ending on T); a point forecast.
* **trailing mean** (``trailing_mean``): a distribution. Each month's won deals are
  Poisson with the mean of the 3 whole months ending on T; its revenue is compound Poisson:
  that count of deals, each valued by resampling the amounts of the deals won on or before
  T. Drawn with a fixed seed (one per cutoff), as many samples as forecaster's trials, the
  months of one sample drawn together (so the horizon's total is each sample's sum) and
  scored like forecaster (coverage, CRPS, PIT, pinball).
* **seasonal naive** (``seasonal_naive``): each month as the same month of the last
  quarter known on the cutoff (the previous quarter for the horizon's first three months,
  the one before for the next three, ...). Where that month precedes the history's first win the naive forecast is 0
  through no fault of its own (``has_data`` false), so every method's CRPS is also averaged
  over the months it could see (``crps_month_naive_has_data``).
* **weighted pipeline** (``weighted_pipeline``), the CRMs' expected value: each deal open
  on T times the historical win rate (deals closed by T) of the last stage it reached by T,
  the whole amount counted in the horizon, so it is scored on the horizon's total only.
  *Without look-ahead*: the history carries only each deal's final amount, which may have
  been set when it closed after T, so every open deal is valued at the mean amount of the
  deals won on or before T. (Before, an open deal was valued at its own final amount.)

Paired differences: for each baseline, forecaster's CRPS minus the baseline's on the same
months (negative: forecaster better), averaged over all months, with a 90% interval from a
bootstrap over cutoffs (whole cutoffs resampled with replacement, so months forecast from
the same cutoff stay together); for the weighted pipeline, on the horizon totals.
"""
from __future__ import annotations

import re
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.history.baselines import (
    BASELINE_SEED,
    MONTH_BASELINES,
    actuals,
    add_months,
    last_month_naive,
    month_start,
    trailing_mean,
    weighted_pipeline,
)
from forecaster.history.calibrate import calibrate
from forecaster.history.fitting import TooLittleHistory
from forecaster.history.parts import pipeline_csv
from forecaster.history.quarters import whole_quarters
from forecaster.history.readers import Deal, beyond_records, recorded_through, won_dates
from forecaster.history.selection import crps as crps_samples  # one CRPS for the backtest and calibration
from forecaster.results.dataset import simulate
from forecaster.scenario.loading import scenario_from_dict

QUANTILES = (0.1, 0.5, 0.9)
#: central intervals scored for coverage: name -> (lower, upper) percentile; 50%, 80%, 90%
INTERVALS = {"p25_p75": (25, 75), "p10_p90": (10, 90), "p5_p95": (5, 95)}
BOOTSTRAP_RESAMPLES = 2000   # resamples of the cutoffs for the paired differences' intervals
BOOTSTRAP_SEED = 0
PIT_BINS = 10                # equal bins on [0, 1] of the PIT histogram
DISTRIBUTIONAL = ("forecaster", "trailing_mean")                          # with samples: coverage and PIT


def mid_pit(samples: np.ndarray, y: float) -> float:
    """The mid-PIT of ``y`` in ``samples`` (shape (n,)): the share of samples below ``y``
    plus half the share equal to it, in [0, 1]. For discrete counts this is the middle of
    the step the outcome falls on, so a calibrated forecast's values average 1/2."""
    x = np.asarray(samples, dtype=float)
    return float(np.mean(x < y) + 0.5 * np.mean(x == y))


def pinball(q_value: float, y: float, tau: float) -> float:
    return float(max(tau * (y - q_value), (tau - 1) * (y - q_value)))


def score(samples: np.ndarray, y: float) -> dict:
    """Coverage, CRPS, PIT, pinball losses and bias of one forecast distribution.

    ``samples``: shape (trials,), the forecast of one month (or of a total); ``y`` what
    happened, in the same unit. ``in_p25_p75`` / ``in_p10_p90`` / ``in_p5_p95``: whether
    ``y`` lies in the central 50% / 80% / 90% interval (ends included).
    """
    q5, q10, q25, q50, q75, q90, q95 = np.percentile(samples, (5, 10, 25, 50, 75, 90, 95))
    return {"actual": y, "mean": float(np.mean(samples)), "p10": float(q10), "p50": float(q50), "p90": float(q90),
            "in_p25_p75": bool(q25 <= y <= q75), "in_p10_p90": bool(q10 <= y <= q90), "in_p5_p95": bool(q5 <= y <= q95),
            "crps": crps_samples(samples, y), "pit": mid_pit(samples, y),
            "pinball": {f"p{int(t * 100)}": pinball(v, y, t) for t, v in zip(QUANTILES, (q10, q50, q90))},
            "bias": float(np.mean(samples) - y)}


def point_score(forecast: float, y: float) -> dict:
    return {"actual": y, "forecast": forecast, "crps": abs(forecast - y), "bias": forecast - y}


def paired_bootstrap(diffs_by_cutoff: list, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     level: float = 0.9) -> dict | None:
    """Mean of paired differences and a percentile bootstrap interval over cutoffs.

    ``diffs_by_cutoff``: one array-like per cutoff of that cutoff's differences (one per
    month, or one for its total). The mean is over all differences pooled; each of the
    ``resamples`` draws whole cutoffs with replacement (numpy Generator seeded ``seed``),
    so months forecast from one cutoff, which share its calibration, stay together.
    Returns ``{"mean": float, "ci": [lo, hi], "cutoffs": n}``, or None without cutoffs.
    """
    groups = [np.asarray(d, dtype=float).ravel() for d in diffs_by_cutoff]
    groups = [g for g in groups if g.size]
    if not groups:
        return None
    sums = np.array([g.sum() for g in groups])
    sizes = np.array([g.size for g in groups], dtype=float)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(groups), size=(resamples, len(groups)))
    boot = sums[pick].sum(axis=1) / sizes[pick].sum(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, (tail, 100 - tail))
    return {"mean": float(sums.sum() / sizes.sum()), "ci": [float(lo), float(hi)], "cutoffs": len(groups)}


def backtest(deals: list[Deal], stages: list[str], cutoffs: list[date], *, months: int = 3, trials: int = 4000,
             lost_observed: bool = True, capacity: bool = False, calibrate_options: dict | None = None,
             progress=None) -> dict:
    """Walk forward through ``cutoffs`` (month ends); returns per-cutoff scores and their
    averages (see the module docstring).

    ``calibrate_options``: further keyword arguments of :func:`forecaster.history.calibrate.calibrate`.

    A cutoff before the history's first deal is refused (ValueError: there is nothing to
    calibrate on; a mistyped year, more likely than not). A cutoff too early to calibrate on
    (no deal converted out of a stage yet:
    :class:`~forecaster.history.fitting.TooLittleHistory`) is skipped, by every
    method alike, and listed in ``skipped`` (``cutoff``, ``reason``): a small team's first
    months should not cost the whole walk (scoring only the baselines there would compare
    the methods on different months). ValueError when every cutoff is skipped.

    Returns ``{"cutoffs": [...], "skipped": [...], "average": {metric: ...}}``: per cutoff, its ``months``
    and per metric and method (``forecaster``, ``seasonal_naive``, ``last_month_naive``,
    ``trailing_mean``: ``by_month``, a list of ``months`` scores, and ``total``;
    ``weighted_pipeline``: ``total``); the averages as :func:`average` makes them.
    """
    _check_recorded(deals, cutoffs, months)
    entered = [e for d in deals for e in d.entered if e is not None]
    if entered and min(cutoffs) < min(entered):  # no history at all then: a mistyped year, more likely than not
        raise ValueError(f"cutoff {min(cutoffs)} is before the history's first deal ({min(entered)}): there is "
                         "nothing to calibrate on; use cutoffs after it")
    results: list[dict] = []
    skipped: list[dict] = []
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
        try:
            cal = calibrate(deals, stages, cutoff, horizon_days=horizon_days, name=f"backtest-{cutoff}",
                            lost_observed=lost_observed, capacity=capacity, **(calibrate_options or {}))
        except TooLittleHistory as exc:  # too early to fit: scored by no method (see the docstring)
            skipped.append({"cutoff": cutoff.isoformat(), "reason": str(exc)})
            if progress:
                progress(cutoff)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if cal.pipeline:
                (Path(tmp) / "pipeline.csv").write_text(pipeline_csv(cal.pipeline), encoding="utf-8")
            sc = scenario_from_dict(cal.scenario, base_dir=tmp, name=f"calibrated on {cutoff}")
            ds = simulate(sc, trials=trials, seed=0)
        truth = actuals(deals, month_list)
        # the same month of the last quarter known on the cutoff: 3 months back for the
        # horizon's first three, 6 for the next three, ... (with --months above 3, a month
        # 3 back was after the cutoff: a look-ahead)
        seasonal = [add_months(m, -3 * (k // 3 + 1)) for k, m in enumerate(month_list)]
        previous = actuals(deals, seasonal)
        last = last_month_naive(deals, cutoff)
        trailing = trailing_mean(deals, cutoff, months, trials, seed=(BASELINE_SEED, cutoff.toordinal()))
        pipeline = weighted_pipeline(deals, stages, cutoff)
        item = {"cutoff": cutoff.isoformat(), "months": [m.isoformat() for m in month_list], "metrics": {},
                "whole_quarter": bool(whole_quarters(won_dates(deals, cutoff), cutoff)),
                "last_month": last["month"].isoformat(), "trailing_mean_rate": trailing["rate"],
                "trailing_months": [m.isoformat() for m in trailing["window"]], "warnings": list(cal.warnings)}
        for metric in metrics:
            y = truth[metric]

            def distribution(per_trial, y=y):
                return {"by_month": [score(per_trial[:, k], y[k]) for k in range(months)],
                        "total": score(per_trial.sum(axis=1), sum(y))}

            item["metrics"][metric] = {
                "forecaster": distribution(ds[metric].values.astype(float)),
                "seasonal_naive": {"by_month": [{**point_score(previous[metric][k], y[k]),
                                                 "has_data": seasonal[k] >= first_win}
                                                for k in range(months)],
                                   "total": point_score(sum(previous[metric]), sum(y))},
                "last_month_naive": {"by_month": [point_score(last[metric], y[k]) for k in range(months)],
                                     "total": point_score(months * last[metric], sum(y))},
                "trailing_mean": distribution(trailing[metric]),
                "weighted_pipeline": {"total": point_score(pipeline[metric], sum(y))}}
        results.append(item)
        if progress:
            progress(cutoff)
    if not results:
        raise ValueError("no cutoff could be calibrated on the history known then: "
                         + "; ".join(f"{x['cutoff']}: {x['reason']}" for x in skipped)
                         + "; use later cutoffs, or check the stage columns and outcome values (a history "
                         "without a deal converted out of every stage cannot be calibrated)")
    return {"cutoffs": results, "skipped": skipped, "warnings": _said(deals, results, metrics),
            "average": average(results, metrics)}


def _said(deals: list[Deal], results: list[dict], metrics) -> list[dict]:
    """What the backtest's calibrations warned of, each warning once with the cutoffs it was
    given at (``{"warning", "cutoffs"}``: a history too young to check its intervals, thin
    segments, ...), and, where revenue is scored, how many of the scored months' won deals
    had no amount (``cutoffs`` empty: counted at their month's mean,
    :func:`~forecaster.history.baselines.actuals`). Warnings about the same subject (the
    words before their first ``": "``, a segment and stage, matched exactly) that differ only
    in the figures after it (a thin segment's count of conversions by each cutoff, its date)
    are one, in the words of its first cutoff, with ``"figures_vary": true``: Olist's
    backtest gave 37 lines one by one, 21 so. A subject's own figures (``Stage 2``, ``Tier
    1``) keep warnings apart."""
    said: dict[tuple[str, str], dict] = {}
    for r in results:
        for w in r.get("warnings", []):
            subject, _, rest = w.partition(": ")
            entry = said.setdefault((subject, _FIGURES.sub("#", rest)), {"warning": w, "cutoffs": []})
            if r["cutoff"] not in entry["cutoffs"]:
                entry["cutoffs"].append(r["cutoff"])
            if w != entry["warning"]:
                entry["figures_vary"] = True
    out = list(said.values())
    if "revenue" in metrics:
        months = sorted({date.fromisoformat(m) for r in results for m in r["months"]})
        got = actuals(deals, months)
        blank, won = int(sum(got["unvalued"])), int(sum(got["won_deals"]))
        if blank:
            out.append({"warning": f"{blank} of the {won} won deals in the months scored have no amount: each "
                                   "counts in the revenue actuals as calibration values it, at the mean of its "
                                   "segment's won amounts known by its month's end",
                        "cutoffs": []})
    return out


_FIGURES = re.compile(r"\d+(?:[.,:-]\d+)*")
"""Numbers and dates in a warning's words (:func:`_said`)."""


def _check_recorded(deals: list[Deal], cutoffs: list[date], months: int) -> None:
    """Refuse cutoffs whose ``months`` the history does not show to their end
    (:func:`~forecaster.history.readers.recorded_through`): they would be scored against
    the wins of days the export never saw, as if none had been won.

    Raises
    ------
    ValueError
        Naming the first such cutoff, the history's last recorded date and the latest
        cutoff it can score (or that no cutoff can be, with fewer months the way out).
    """
    seen = recorded_through(deals)
    if seen is None:
        return
    for cutoff in sorted(cutoffs):
        end = add_months(cutoff + timedelta(days=1), months) - timedelta(days=1)
        past = beyond_records(deals, end, seen)
        if not past:
            continue
        last, quiet = seen
        seen_to = last + timedelta(days=quiet)
        latest = add_months(seen_to + timedelta(days=1), -months) - timedelta(days=1)  # a month end
        first = min((e for d in deals for e in d.entered if e is not None), default=latest)
        if latest >= first:
            hint = f"the latest cutoff it can score over {months} month{'s' * (months != 1)} is {latest}"
        else:
            hint = (f"it holds no {months} whole month{'s' * (months != 1)} after a cutoff on or after its first "
                    f"deal ({first}), so no cutoff can be scored over {months} month{'s' * (months != 1)}")
        raise ValueError(f"cutoff {cutoff} is scored on the {months} month{'s' * (months != 1)} to {end}, past the "
                         f"history: {past}; {hint} (or use fewer --months)")


def _mean(xs: list[dict], key: str) -> float | None:
    """Mean of ``key`` over the scores ``xs``; None when there are none."""
    return float(np.mean([x[key] for x in xs])) if xs else None


def average(results: list[dict], metrics=("won_deals", "revenue")) -> dict:
    """Coverage rates and mean scores over cutoffs (and months), per metric and method,
    and the paired differences of forecaster from each baseline.

    Per metric: for ``forecaster``, ``seasonal_naive``, ``last_month_naive`` and
    ``trailing_mean``: ``crps_month`` and ``crps_total`` (mean CRPS of a month, of a
    horizon total), the same over the months the seasonal naive could see
    (``crps_month_naive_has_data``, ``months_naive_has_data`` of them) and over the months
    forecast from cutoffs with a whole quarter of wins (``crps_month_whole_quarter``,
    ``months_whole_quarter``), ``bias_month``, ``bias_total``; for the distributional ones
    (forecaster, trailing mean) also ``coverage_{p25_p75,p10_p90,p5_p95}_{month,total}``
    (shares of months / totals inside the 50%, 80%, 90% intervals), ``pinball_month`` and
    ``pit_histogram`` (counts of the months' PIT values in :data:`PIT_BINS` equal bins of
    [0, 1]); for ``weighted_pipeline``: ``crps_total``, ``bias_total``. ``paired``: per
    baseline, forecaster's CRPS minus the baseline's (:func:`paired_bootstrap`):
    ``{"crps_month_diff", "ci90": [lo, hi], "cutoffs"}`` for the month-by-month baselines
    (plus ``crps_total_diff`` and ``ci90_total``), ``{"crps_total_diff", "ci90",
    "cutoffs"}`` for the weighted pipeline. Means over no month are None.
    """
    out = {}
    for metric in metrics:
        def by_month(method, rs=results, metric=metric):
            return [s for r in rs for s in r["metrics"][metric][method]["by_month"]]

        def totals(method, metric=metric):
            return [r["metrics"][metric][method]["total"] for r in results]

        fair = [i for i, x in enumerate(by_month("seasonal_naive")) if x.get("has_data", True)]
        whole = [r for r in results if r.get("whole_quarter")]  # cutoffs with a whole quarter of wins (closing, capacity)
        avg: dict[str, dict[str, Any]] = {}
        for method in ("forecaster", *MONTH_BASELINES):
            month, total = by_month(method), totals(method)
            f_fair, f_whole = [month[i] for i in fair], by_month(method, whole)
            avg[method] = {"crps_month": _mean(month, "crps"), "crps_total": _mean(total, "crps"),
                           "crps_month_naive_has_data": _mean(f_fair, "crps"), "months_naive_has_data": len(fair),
                           "crps_month_whole_quarter": _mean(f_whole, "crps"), "months_whole_quarter": len(f_whole),
                           "bias_month": _mean(month, "bias"), "bias_total": _mean(total, "bias")}
            if method in DISTRIBUTIONAL:
                for name in INTERVALS:
                    avg[method][f"coverage_{name}_month"] = _mean(month, f"in_{name}")
                    avg[method][f"coverage_{name}_total"] = _mean(total, f"in_{name}")
                avg[method]["pinball_month"] = {p: float(np.mean([x["pinball"][p] for x in month])) if month else None
                                                for p in ("p10", "p50", "p90")}
                counts, _ = np.histogram([x["pit"] for x in month], bins=PIT_BINS, range=(0.0, 1.0))
                avg[method]["pit_histogram"] = [int(c) for c in counts]
        w_total = totals("weighted_pipeline")
        avg["weighted_pipeline"] = {"crps_total": _mean(w_total, "crps"), "bias_total": _mean(w_total, "bias")}
        paired = {}
        for base in MONTH_BASELINES:
            month = paired_bootstrap([[f["crps"] - b["crps"] for f, b in
                                       zip(r["metrics"][metric]["forecaster"]["by_month"],
                                           r["metrics"][metric][base]["by_month"])] for r in results])
            total = paired_bootstrap([[r["metrics"][metric]["forecaster"]["total"]["crps"]
                                       - r["metrics"][metric][base]["total"]["crps"]] for r in results])
            if month and total:  # total is None only without cutoffs, and month is then too
                paired[base] = {"crps_month_diff": month["mean"], "ci90": month["ci"], "cutoffs": month["cutoffs"],
                                "crps_total_diff": total["mean"], "ci90_total": total["ci"]}
        total = paired_bootstrap([[r["metrics"][metric]["forecaster"]["total"]["crps"]
                                   - r["metrics"][metric]["weighted_pipeline"]["total"]["crps"]] for r in results])
        if total:
            paired["weighted_pipeline"] = {"crps_total_diff": total["mean"], "ci90": total["ci"],
                                           "cutoffs": total["cutoffs"]}
        avg["paired"] = paired
        out[metric] = avg
    return out
