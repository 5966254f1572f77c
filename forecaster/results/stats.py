"""Statistics over trials: means with their Monte Carlo interval and percentiles.

Percentiles interpolate linearly between order statistics (numpy's default); ``std`` is the
sample standard deviation (n - 1); the 95% interval of the mean is mean +- z std / sqrt(n)
with z the normal 97.5% quantile. Here so that the result modules that
:mod:`forecaster.results.summary` reads (coverage, cycle_days) can describe without importing it.
"""
from __future__ import annotations

import math

import numpy as np

Z975 = 1.959963984540054
PERCENTILES = (5, 10, 50, 90, 95)


def describe(x: np.ndarray) -> list[dict]:
    """Statistics of each column of ``x`` (which may be reordered in place).

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
    q = np.percentile(x, PERCENTILES, axis=0, overwrite_input=True)
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
