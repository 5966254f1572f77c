"""Comparing scenarios on common random numbers: the difference, with its own interval.

Every scenario of a comparison runs with the same seed and trials, and every kind of
draw has its own stream (:mod:`forecaster.seeding`), so the same random numbers drive the
same parts of each model. The difference *variant - base* is taken trial by trial: it
keeps the effect of the change and loses the noise the two runs share.

Every stream is reseeded for every trial from the seed, its name and the trial's index
(:mod:`forecaster.seeding`), so in every trial:

* each per-trial rate and probability is drawn from the same random numbers: unchanged
  quantities identically, a changed one from the same uniforms and normals;
* everything about a segment the variant does not change is identical, bit for bit;
* the i-th lead a segment wins draws the same arrival day and, stage by stage, the same
  times in both scenarios; a variant with more won leads adds them after the common ones;
  values and reps are drawn in the order of the deals that close inside the horizon;
* every open pipeline deal draws its conversion, times, value and rep in every trial.

What cannot be shared: leads that exist in one scenario only have no partner; a changed
distribution's draws change with it (a Poisson count drawn by rejection from a larger
mean may take a different path); when stage times change, which deals close inside the
horizon changes, and the values and reps after the first such deal are drawn in a
different order. Scenarios must share the horizon and reporting periods.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import Problem, ScenarioError
from .scenario import Scenario
from .summary import Z975, describe

METRICS = ("revenue", "won_deals", "commission")


def per_trial_metrics(ds) -> dict:
    """``metric -> (trials, periods)`` array of revenue, won deals and (with a plan) commission."""
    out = {"revenue": ds["revenue"].values, "won_deals": ds["won_deals"].values.astype(float)}
    if "commission" in ds:
        out["commission"] = ds["commission"].sum("rep").values
    return out


def difference_stats(base: np.ndarray, variant: np.ndarray) -> dict:
    """Paired statistics of ``variant - base`` for one column of trials.

    Returns mean, its 95% interval (``mean_ci_low``/``mean_ci_high``), the per-trial
    difference's p10/p50/p90, ``probability_higher`` (the share of trials where the
    variant is strictly higher), and ``unpaired_ci_half_width``: the half-width the 95%
    interval would have if the two scenarios had been run independently.
    """
    d = variant - base
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    half = Z975 * sd / math.sqrt(n)
    unpaired = Z975 * math.sqrt((base.var(ddof=1) + variant.var(ddof=1)) / n) if n > 1 else math.nan
    q = np.percentile(d, (10, 50, 90))
    out = {"mean": mean, "mean_ci_low": mean - half, "mean_ci_high": mean + half,
           "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2]),
           "probability_higher": float(np.mean(d > 0)), "unpaired_ci_half_width": unpaired}
    return {k: (v if math.isfinite(v) else None) for k, v in out.items()}


def check_comparable(scenarios: list[Scenario]) -> None:
    base = scenarios[0]
    problems = []
    for sc in scenarios[1:]:
        for key in ("start", "end", "report_by"):
            if getattr(sc, key) != getattr(base, key):
                problems.append(Problem(key, f"of {sc.name!r} is {getattr(sc, key)}, but the base {base.name!r} has "
                                             f"{getattr(base, key)}: scenarios compared period by period need the "
                                             "same horizon and periods"))
    names = [sc.name for sc in scenarios]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(Problem("name", f"{name!r} is used by two of the scenarios compared; give each "
                                            "variant its own `name`"))
    if problems:
        raise ScenarioError(base.name, problems)


def compare(base: Scenario, variants: list[Scenario], *, trials: int | None = None, seed: int | None = None,
            threads: int | None = None, progress=None):
    """Run a base and its variants on common random numbers.

    Parameters
    ----------
    base, variants : Scenario
        Variants run with the base's seed and trials (or ``seed``/``trials``).

    Returns
    -------
    xarray.Dataset
        ``<metric>(scenario, trial, period)`` and ``<metric>_difference(scenario, trial,
        period)`` (variant - base; zero for the base) for revenue, won_deals and, when
        every scenario has a plan, commission. ``scenario`` lists the base first.
    """
    import xarray as xr

    from .simulation import simulate

    scenarios = [base, *variants]
    check_comparable(scenarios)
    trials = base.trials if trials is None else trials
    seed = base.seed if seed is None else seed
    runs = [per_trial_metrics(simulate(sc, trials=trials, seed=seed, threads=threads, progress=progress))
            for sc in scenarios]
    metrics = [m for m in METRICS if all(m in r for r in runs)]
    data = {}
    for m in metrics:
        values = np.stack([r[m] for r in runs])
        data[m] = (("scenario", "trial", "period"), values)
        data[f"{m}_difference"] = (("scenario", "trial", "period"), values - values[0])
    from .calendar import periods

    starts = periods(base.start, base.end, base.report_by).starts
    ds0 = xr.Dataset(data, coords={"scenario": [sc.name for sc in scenarios], "trial": np.arange(trials),
                                   "period": np.array(starts, dtype="datetime64[ns]")})
    ds0.attrs.update({"base": base.name, "seed": seed, "trials": trials,
                      "what": "per-trial values and paired differences (variant - base) on common random numbers"})
    for m in metrics:
        unit = "deals" if m == "won_deals" else (base.currency or "currency")
        ds0[m].attrs["units"] = unit
        ds0[f"{m}_difference"].attrs["units"] = unit
    return ds0


def compare_summary(ds) -> dict:
    """The contents of ``compare.json``: each scenario's summary and each variant's paired
    differences from the base, per metric, in total and by period."""
    names = [str(s) for s in ds["scenario"].values]
    labels = [str(np.datetime_as_string(p, unit="D")) for p in ds["period"].values]
    metrics = [m for m in METRICS if m in ds]
    out = {"base": ds.attrs["base"], "seed": ds.attrs["seed"], "trials": int(ds.attrs["trials"]),
           "scenarios": {}, "differences": {}}
    for i, name in enumerate(names):
        item = {}
        for m in metrics:
            x = ds[m].values[i]
            stats = describe(np.column_stack([x, x.sum(axis=1)]))
            item[m] = {"total": stats[-1], "by_period": [{"period": p, **s} for p, s in zip(labels, stats[:-1])]}
        out["scenarios"][name] = item
    for i, name in enumerate(names[1:], start=1):
        item = {}
        for m in metrics:
            b, v = ds[m].values[0], ds[m].values[i]
            item[m] = {"total": difference_stats(b.sum(axis=1), v.sum(axis=1)),
                       "by_period": [{"period": p, **difference_stats(b[:, k], v[:, k])}
                                     for k, p in enumerate(labels)]}
        out["differences"][name] = item
    return out

