"""Summaries of per-trial results: means with their Monte Carlo interval, percentiles, targets.

Percentiles interpolate linearly between order statistics (numpy's default); ``std`` is the
sample standard deviation (n - 1); the 95% interval of the mean is mean +- z std / sqrt(n)
with z the normal 97.5% quantile.
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .scenario import Scenario

Z975 = 1.959963984540054
PERCENTILES = (5, 10, 50, 90, 95)


def describe(x: np.ndarray) -> list[dict]:
    """Statistics of each column of ``x``.

    Parameters
    ----------
    x : ndarray, shape (trials, k)

    Returns
    -------
    list of k dicts with mean, std, p5, p10, p50, p90, p95, mean_ci_low, mean_ci_high
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1) if n > 1 else np.full(x.shape[1], np.nan)
    half = Z975 * std / math.sqrt(n)
    q = np.percentile(x, PERCENTILES, axis=0)
    out = []
    for j in range(x.shape[1]):
        item = {"mean": mean[j], "std": std[j]}
        item.update({f"p{p}": q[i, j] for i, p in enumerate(PERCENTILES)})
        item["mean_ci_low"], item["mean_ci_high"] = mean[j] - half[j], mean[j] + half[j]
        out.append({k: _num(v) for k, v in item.items()})
    return out


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def metric_summary(per_trial: np.ndarray, period_labels: list[str]) -> dict:
    """``{"total": stats, "by_period": [stats + period, ...]}`` of a (trials, periods) array."""
    per_trial = np.asarray(per_trial)
    total = describe(per_trial.sum(axis=1)[:, None])[0]
    by_period = [{"period": label, **stats} for label, stats in zip(period_labels, describe(per_trial))]
    return {"total": total, "by_period": by_period}


def summarize(ds: xr.Dataset, scenario: Scenario) -> dict:
    """The contents of ``summary.json`` for a simulated Dataset.

    Beyond the contract's ``scenario``, ``seed``, ``trials``, ``metrics`` and ``targets``, it
    holds the horizon, per-segment totals and, with a team, each rep's commission, bookings
    and probability of reaching quota in each commission period.
    """
    from . import __version__

    labels = [str(np.datetime_as_string(p, unit="D")) for p in ds["period"].values]
    metrics = {"revenue": metric_summary(ds["revenue"].values, labels),
               "won_deals": metric_summary(ds["won_deals"].values, labels)}
    if "commission" in ds:
        metrics["commission"] = metric_summary(ds["commission"].sum("rep").values, labels)
    out = {"scenario": ds.attrs["scenario"], "seed": ds.attrs["seed"], "trials": int(ds.attrs["trials"]),
           "metrics": metrics}
    if scenario.targets:
        out["targets"] = {}
        for metric, threshold in scenario.targets.items():
            totals = metric_total(ds, metric)
            out["targets"][metric] = {"threshold": threshold, "probability": float(np.mean(totals >= threshold))}
    out["horizon"] = {"start": ds.attrs["start"], "end": ds.attrs["end"], "report_by": ds.attrs["report_by"],
                      "currency": scenario.currency}
    out["segments"] = {
        name: {"revenue": {"total": describe(ds["revenue_by_segment"].sel(segment=name).sum("period").values[:, None])[0]},
               "won_deals": {"total": describe(ds["won_deals_by_segment"].sel(segment=name).sum("period").values[:, None])[0]}}
        for name in ds["segment"].values}
    if "rep" in ds.dims:
        out["reps"] = {name: rep_summary(ds, name) for name in ds["rep"].values}
    out["forecaster_version"] = __version__
    out["scenario_sha256"] = ds.attrs.get("scenario_sha256", "")
    return out


def metric_total(ds: xr.Dataset, metric: str) -> np.ndarray:
    """Per-trial total of a metric over the horizon, shape (trials,)."""
    if metric == "commission":
        return ds["commission"].sum(("period", "rep")).values
    return ds[metric].sum("period").values


def rep_summary(ds: xr.Dataset, rep: str) -> dict:
    """One rep's bookings, commission and chance of reaching quota in each quota period."""
    booked = ds["bookings"].sel(rep=rep)
    dim = booked.dims[1]
    quota = float(ds["quota"].sel(rep=rep))
    item = {"quota": quota,
            "bookings": {"total": describe(booked.sum(dim).values[:, None])[0]}}
    if "commission" in ds:
        item["commission"] = {"total": describe(ds["commission"].sel(rep=rep).sum("period").values[:, None])[0]}
        item["quota_attainment"] = [
            {"period": str(np.datetime_as_string(p, unit="D")),
             "probability": float(np.mean(booked.isel({dim: i}).values >= quota)),
             "attainment_p50": float(np.median(booked.isel({dim: i}).values) / quota)}
            for i, p in enumerate(ds[dim].values)]
    return item
