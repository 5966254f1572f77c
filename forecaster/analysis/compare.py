"""Comparing scenarios on common random numbers: the difference, with its own interval.

Every scenario of a comparison runs with the same seed and trials, and every kind of
draw has its own stream (:mod:`forecaster.engine.seeding`), so the same random numbers drive the
same parts of each model. The difference *variant - base* is taken trial by trial: it
keeps the effect of the change and loses the noise the two runs share.

Every stream is reseeded for every trial from the seed, its name and the trial's index
(:mod:`forecaster.engine.seeding`), so in every trial:

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

**After the sale** (v2 A): customers live their lives on streams of their own, so a variant
that changes only the ``customer`` keys shares every v1 draw with its base: its revenue,
won deals and commission (on new bookings) are those of the base, trial by trial, and only
the after-sale outputs move. When both scenarios of a pair have customers, the after-sale
outputs (:data:`AFTER_SALE_METRICS`) are compared too. Flows total over the horizon; a
stock's (``active_customers``, ``mrr``) total is its level at the end of the horizon.
"""
from __future__ import annotations

import math

import numpy as np

from forecaster.calendar import periods
from forecaster.engine.plan import build_plan
from forecaster.errors import ForecasterError, Problem, ScenarioError
from forecaster.results import outputs
from forecaster.results.commission import extra_names
from forecaster.results.dataset import simulate
from forecaster.results.layout import AFTER_SALE_VARIABLES, Layout
from forecaster.results.summary import Z975, describe
from forecaster.scenario.model import Scenario

V1_METRICS = ("revenue", "won_deals", "commission")
AFTER_SALE_METRICS = tuple(AFTER_SALE_VARIABLES)
"""The after-sale outputs (v2 A.3), present when a segment has a ``customer`` block:
``recognised_revenue``, ``renewal_bookings``, ``repeat_revenue``, ``cancellations``,
``total_bookings``, the customer counts, and the stocks ``active_customers`` and ``mrr``."""
SPEND_METRICS = ("leads", "spend")
"""v2 E.3: compared when every scenario reports them (flows)."""
COMMISSION_EXTRA_METRICS = ("spif", "clawback", "net_commission", "payout", "commission_expense")
"""v2 D.6's flows, summed over reps (as ``summary.json``'s metrics): compared when every
scenario reports them (a plan with spifs, clawbacks, draws or ``amortize_months``)."""
METRICS = V1_METRICS + AFTER_SALE_METRICS + SPEND_METRICS + COMMISSION_EXTRA_METRICS
STOCKS = frozenset(name for name, (kind, _, _) in AFTER_SALE_VARIABLES.items() if kind == "stock")
"""Metrics that are levels, not flows: their total is the level at the end of the horizon."""


def horizon_total(metric: str, values: np.ndarray) -> np.ndarray:
    """Per-trial total over the horizon of ``values`` (trials, periods): a flow's sum over the
    periods, a stock's level in the last period (v2 0.4)."""
    if metric in STOCKS:
        return np.array(values[:, -1], dtype=float)
    return values.sum(axis=1)


def per_trial_metrics(ds) -> dict:
    """``metric -> (trials, periods)`` array of revenue, won deals, (with a plan) commission,
    (with customers) the after-sale outputs, leads and spend (v2 E.3) and the commission
    extras' flows summed over reps (v2 D: :data:`COMMISSION_EXTRA_METRICS`), as float."""
    out = {"revenue": ds["revenue"].values, "won_deals": ds["won_deals"].values.astype(float)}
    if "commission" in ds:
        out["commission"] = ds["commission"].sum("rep").values
    for name in AFTER_SALE_METRICS + SPEND_METRICS:
        if name in ds:
            out[name] = ds[name].values.astype(float)
    for name in COMMISSION_EXTRA_METRICS:  # v2 D: sums over reps, as commission's
        if name in ds:
            out[name] = (ds[name].sum("rep") if "rep" in ds[name].dims else ds[name]).values.astype(float)
    return out


ROUNDING = 1e-12
"""Relative size below which a paired difference is rounding: the same deals summed in
another order (booked in another period, or summed source by source) give totals that
differ in their last bits, about 1e-16 of the totals."""


def paired_difference(base: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """``variant - base`` trial by trial, with differences within rounding of the totals
    (``ROUNDING`` of their size) set to exactly 0: a trial whose deals did not change is a
    tie, neither higher nor lower."""
    d = variant - base
    d[np.abs(d) <= ROUNDING * (np.abs(base) + np.abs(variant))] = 0.0
    return d


def difference_stats(base: np.ndarray, variant: np.ndarray) -> dict:
    """Paired statistics of ``variant - base`` for one column of trials.

    Returns mean, its 95% interval (``mean_ci_low``/``mean_ci_high``), the per-trial
    difference's p10/p50/p90, ``probability_higher`` (the share of trials where the
    variant is strictly higher), and ``unpaired_ci_half_width``: the half-width the 95%
    interval would have if the two scenarios had been run independently.
    """
    d = paired_difference(base, variant)
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


def stored_seed(seed: int) -> int | str:
    """A seed as the output files store it: the integer, or its digits when it does not fit in
    64 bits (a NetCDF attribute holds at most a 64-bit integer; a scenario's `seed` may be larger)."""
    return int(seed) if int(seed) < 2 ** 63 else str(seed)


def _label(sc: Scenario) -> str:
    """How messages name a scenario: its file, else (built in code) its ``name``."""
    return str(sc.source) if sc.source is not None else repr(sc.name)


def check_comparable(scenarios: list[Scenario]) -> None:
    """Refuse scenarios that cannot be compared period by period, naming the files.

    Raises
    ------
    ScenarioError
        Each problem is in the variant's file (``Problem.file``) and names the base's file.
    """
    base = scenarios[0]
    problems = []
    for sc in scenarios[1:]:
        for key in ("start", "end", "report_by"):
            if getattr(sc, key) != getattr(base, key):
                problems.append(Problem(key, f"is {getattr(sc, key)}, but the base {_label(base)} has "
                                             f"{getattr(base, key)}: scenarios compared period by period need the "
                                             "same horizon and periods", file=_label(sc)))
        if base.report_by == "quarter" and sc.fiscal_start_month != base.fiscal_start_month:
            problems.append(Problem("fiscal_year_start", f"is {sc.fiscal_year_start}, but the base {_label(base)} "
                                                         f"has {base.fiscal_year_start}: quarters compared period by "
                                                         "period need the same fiscal year", file=_label(sc)))
    for i, sc in enumerate(scenarios):
        first = next((o for o in scenarios[:i] if o.name == sc.name), None)
        if first is not None:
            other = f"the base {_label(first)}" if first is base else _label(first)
            same = " (the same file)" if sc.source is not None and sc.source == first.source else ""
            problems.append(Problem("name", f"{sc.name!r} is also the name of {other}{same}; the scenarios compared "
                                            "need different names: give each variant its own `name`",
                                    file=_label(sc)))
    problems = list(dict.fromkeys(problems))  # a variant given twice: said once
    if problems:
        files = list(dict.fromkeys(p.file for p in problems if p.file is not None))  # each names its file
        raise ScenarioError(files[0] if len(files) == 1 else f"{_label(base)} and its variants", problems)


def memory_per_trial(scenarios: list[Scenario], kept_per_trial: int = 0) -> int:
    """Peak memory per trial [bytes] of running ``scenarios`` one after the other in memory
    (:func:`forecaster.simulate`: a run's arrays and their Dataset) while ``kept_per_trial``
    bytes a trial of results are kept meanwhile."""

    one = max(2 * Layout.of(sc, build_plan(sc)).per_trial_bytes("float64") for sc in scenarios)
    return one + kept_per_trial


def check_memory(trials: int, per_trial: int, what: str) -> None:
    """Refuse, before any trial runs, a run held in memory that exceeds the machine's memory
    (or the process's cgroup limit), saying how many trials would fit.

    Raises
    ------
    ForecasterError
        Naming ``what`` (e.g. ``comparing s.yaml with 1 variant``).
    """

    total = outputs.memory_total()
    need = trials * per_trial + (64 << 20)
    if total is not None and need > total:
        fit = max(0, (total - (64 << 20)) // max(1, per_trial))
        raise ForecasterError(f"{what}: {trials:,} trials need about {outputs.format_bytes(need)} of memory (every trial is "
                              f"held in memory), more than this machine allows ({outputs.format_bytes(total)}); use fewer "
                              f"--trials (about {fit:,} fit). Nothing was written.")


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
        every scenario has a plan, commission; when every scenario has customers, for the
        after-sale outputs too (a stock's difference per period is that of its level); when
        every scenario reports them, leads and spend (v2 E.3) and the commission extras'
        flows summed over reps (v2 D: spif, clawback, net_commission, payout,
        commission_expense).
        ``scenario`` lists the base first. A metric the base has a target for carries it in the
        attribute ``target``: each scenario's P(target) is read against the base's threshold.
    """
    import xarray as xr


    scenarios = [base, *variants]
    check_comparable(scenarios)
    trials = base.trials if trials is None else trials
    seed = base.seed if seed is None else seed
    # kept while the next runs: each run's metrics (trials x periods), then stacked, and the differences
    metrics_kept = (len(V1_METRICS) + (len(AFTER_SALE_METRICS) if any(sc.has_customers for sc in scenarios) else 0)
                    + (len(SPEND_METRICS) if any(sc.counts_leads for sc in scenarios) else 0)
                    + (len(COMMISSION_EXTRA_METRICS) if any(extra_names(sc) for sc in scenarios) else 0))
    kept = 3 * 8 * metrics_kept * sum(len(periods(sc.start, sc.end, sc.report_by, sc.fiscal_start_month).starts)
                                      for sc in scenarios)
    n = len(variants)
    check_memory(trials, memory_per_trial(scenarios, kept),
                 f"comparing {_label(base)} with {n} variant{'s' if n != 1 else ''}")
    runs = [per_trial_metrics(simulate(sc, trials=trials, seed=seed, threads=threads, progress=progress))
            for sc in scenarios]
    metrics = [m for m in METRICS if all(m in r for r in runs)]
    data = {}
    for m in metrics:
        values = np.stack([r[m] for r in runs])
        data[m] = (("scenario", "trial", "period"), values)
        data[f"{m}_difference"] = (("scenario", "trial", "period"), values - values[0])
    starts = periods(base.start, base.end, base.report_by, base.fiscal_start_month).starts
    ds0 = xr.Dataset(data, coords={"scenario": [sc.name for sc in scenarios], "trial": np.arange(trials),
                                   "period": np.array(starts, dtype="datetime64[ns]")})
    ds0.attrs.update({"base": base.name, "seed": stored_seed(seed), "trials": trials,
                      "what": "per-trial values and paired differences (variant - base) on common random numbers"})
    for m in metrics:
        unit = metric_unit(m, base.currency or "currency")
        ds0[m].attrs["units"] = unit
        ds0[f"{m}_difference"].attrs["units"] = unit
        if m in AFTER_SALE_VARIABLES:
            ds0[m].attrs["kind"] = ds0[f"{m}_difference"].attrs["kind"] = AFTER_SALE_VARIABLES[m][0]
    for m, threshold in base.targets.items():  # the base's targets: what every scenario is held to
        if m in ds0:
            ds0[m].attrs["target"] = float(threshold)
    return ds0


def metric_unit(metric: str, currency: str) -> str:
    """A metric's unit: deals, customers, or the currency."""
    if metric == "won_deals":
        return "deals"
    if metric == "leads":
        return "leads"
    unit = AFTER_SALE_VARIABLES[metric][1] if metric in AFTER_SALE_VARIABLES else "currency"
    return currency if unit == "currency" else unit


def target_stats(base: np.ndarray, variant: np.ndarray, threshold: float) -> dict:
    """How much more often ``variant``'s per-trial totals reach ``threshold`` than ``base``'s,
    paired trial by trial: the mean of 1[variant ≥ threshold] − 1[base ≥ threshold] (the
    difference of the two P(target)) with its 95% interval (``mean_ci_low``/``mean_ci_high``)."""
    d = (variant >= threshold).astype(float) - (base >= threshold).astype(float)
    n = d.size
    mean = float(d.mean())
    half = Z975 * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    out = {"mean": mean, "mean_ci_low": mean - half, "mean_ci_high": mean + half}
    return {k: (v if math.isfinite(v) else None) for k, v in out.items()}


def compare_summary(ds) -> dict:
    """The contents of ``compare.json``: each scenario's summary and each variant's paired
    differences from the base, per metric, in total and by period (a stock's total: its
    level at the end of the horizon); each metric's unit (``units``); and for each metric the
    base has a target for (``targets``), the threshold, every scenario's probability of
    reaching it over the horizon and each variant's paired difference from the base's
    (:func:`target_stats`)."""
    names = [str(s) for s in ds["scenario"].values]
    labels = [str(np.datetime_as_string(p, unit="D")) for p in ds["period"].values]
    metrics = [m for m in METRICS if m in ds]
    out = {"base": ds.attrs["base"], "seed": ds.attrs["seed"], "trials": int(ds.attrs["trials"]),
           "units": {m: str(ds[m].attrs.get("units", "")) for m in metrics},
           "scenarios": {}, "differences": {}}
    for i, name in enumerate(names):
        item = {}
        for m in metrics:
            x = ds[m].values[i]
            stats = describe(np.column_stack([x, horizon_total(m, x)]))
            item[m] = {"total": stats[-1], "by_period": [{"period": p, **s} for p, s in zip(labels, stats[:-1])]}
        out["scenarios"][name] = item
    for i, name in enumerate(names[1:], start=1):
        item = {}
        for m in metrics:
            b, v = ds[m].values[0], ds[m].values[i]
            item[m] = {"total": difference_stats(horizon_total(m, b), horizon_total(m, v)),
                       "by_period": [{"period": p, **difference_stats(b[:, k], v[:, k])}
                                     for k, p in enumerate(labels)]}
        out["differences"][name] = item
    targets = {}
    for m in metrics:
        if "target" in ds[m].attrs:
            threshold = float(ds[m].attrs["target"])
            totals = [horizon_total(m, ds[m].values[i]) for i in range(len(names))]
            targets[m] = {"threshold": threshold,
                          "probability": {name: float(np.mean(t >= threshold)) for name, t in zip(names, totals)},
                          "difference": {name: target_stats(totals[0], totals[i], threshold)
                                         for i, name in enumerate(names) if i > 0}}
    if targets:
        out["targets"] = targets
    return out

