"""Cycle time (v2 F1): the time from arrival to win of the deals from new leads won inside the
horizon, pooled over every trial.

The engine hands each trial's deals as (segment, days) rows (see
:meth:`forecaster.engine.plan.Plan.count_buffers`); ``summary.json``'s ``cycle_days`` holds their
``count`` (in all trials), ``mean``, ``std`` (n - 1), ``p5`` .. ``p95`` (numpy's linear
interpolation over all pooled values) and the same for each segment under ``by_segment``. It is
censored by the horizon: deals won after ``end`` are not in it.
"""
from __future__ import annotations

import math

import numpy as np

from forecaster.results.stats import PERCENTILES


def pooled(cycles) -> np.ndarray:
    """The rows of an object array of per-trial (deals, 2) arrays, as one (deals, 2) array."""
    parts = [np.asarray(c, dtype=float).reshape(-1, 2) for c in cycles]
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def _stats(values: np.ndarray) -> dict:
    n = int(values.size)
    out: dict = {"count": n, "mean": None, "std": None, **{f"p{p}": None for p in PERCENTILES}}
    if n == 0:
        return out
    out["mean"] = float(values.mean())
    out["std"] = float(values.std(ddof=1)) if n > 1 else None
    for p, q in zip(PERCENTILES, np.percentile(values, PERCENTILES)):
        out[f"p{p}"] = float(q)
    return {k: (v if v is None or not isinstance(v, float) or math.isfinite(v) else None) for k, v in out.items()}


def cycle_summary(rows: np.ndarray, segments) -> dict:
    """``cycle_days`` of ``summary.json`` from the pooled (segment index, days) rows."""
    rows = np.asarray(rows, dtype=float).reshape(-1, 2)
    out = _stats(rows[:, 1])
    out["by_segment"] = {name: _stats(rows[rows[:, 0] == g, 1]) for g, name in enumerate(segments)}
    return out
