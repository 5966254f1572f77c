"""Summaries of per-trial results: means with their Monte Carlo interval, percentiles, targets.

Percentiles interpolate linearly between order statistics (numpy's default); ``std`` is the
sample standard deviation (n - 1); the 95% interval of the mean is mean +- z std / sqrt(n)
with z the normal 97.5% quantile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.engine import kernels
from forecaster.engine.interface import THETA_CONVERT, THETA_GROWTH, THETA_LEADS
from forecaster.engine.moves import record_moves
from forecaster.engine.plan import build_plan
from forecaster.results.commission import EXTRA_VARIABLES, draw_schedule
from forecaster.results.layout import AFTER_SALE_VARIABLES, Columns
from forecaster.results.stage_value import segment_win_probabilities
from forecaster.results.stats import PERCENTILES, Z975, _num, describe  # noqa: F401 (re-exported: compare, tests)
from forecaster.scenario import chain as chains
from forecaster.scenario.model import Scenario
from forecaster.version import __version__

STAGE_METRICS = ("stage_entries", "losses")
"""v2 F1: per-trial variables (trial, period, segment, stage) reported as ``<name>.<stage>``."""


def describe_columns(cols: Columns, name: str, indexes: list) -> list[dict]:
    """:func:`describe` of several columns of a per-trial variable, within the memory budget."""
    out = []
    for group in cols.groups(indexes):
        out += describe(cols.columns(name, group))
    return out


@dataclass(frozen=True)
class Meta:
    """What a summary needs to know besides the per-trial numbers."""

    attrs: dict
    periods: list          # ISO labels of the reporting periods
    segments: tuple
    reps: tuple
    quota_periods: list    # ISO labels of the periods each quota is for
    quotas: tuple
    commission: bool
    targets: dict
    currency: str | None
    description: str | None = None
    stages: tuple = ()     # the stages of stage_entries and losses (v2 F1), when counted
    draws: tuple = ()      # v2 D.3: each rep's draws over the horizon [currency], NaN without a draw

    @classmethod
    def of_layout(cls, layout) -> Meta:
        sc = layout.scenario
        return cls(dict(layout.attrs), [d.isoformat() for d in layout.periods], tuple(layout.segments),
                   tuple(layout.reps), [d.isoformat() for d in layout.quota_periods],
                   tuple(float(q) for q in layout.quotas), sc.commission is not None, dict(sc.targets), sc.currency,
                   sc.description, tuple(layout.plan.stage_names) if layout.plan.counting else (),
                   _draws(sc, len(layout.quota_periods)))

    @classmethod
    def of_dataset(cls, ds, scenario: Scenario) -> Meta:
        def labels(dim):
            return [str(np.datetime_as_string(p, unit="D")) for p in ds[dim].values]

        reps = tuple(str(r) for r in ds["rep"].values) if "rep" in ds.dims else ()
        quota_dim = "quota_period" if "quota_period" in ds.dims else "period"
        return cls(dict(ds.attrs), labels("period"), tuple(str(s) for s in ds["segment"].values), reps,
                   labels(quota_dim) if reps else [], tuple(float(q) for q in ds["quota"].values) if reps else (),
                   "commission" in ds, dict(scenario.targets), scenario.currency, scenario.description,
                   tuple(str(s) for s in ds["stage"].values) if "stage" in ds.dims else (),
                   _draws(scenario, ds.sizes.get("quota_period", 0)))


def _draws(sc: Scenario, n_quota_periods: int) -> tuple:
    """v2 D.3: each rep's draws summed over the commission periods (NaN: no draw)."""
    if sc.commission is None:
        return ()
    amount, _, has = draw_schedule(sc, n_quota_periods)
    return tuple(float(a) if h else float("nan") for a, h in zip(amount.sum(axis=0), has))


def metric_summary(cols: Columns, name: str, periods: list, index=lambda p: (p,)) -> dict:
    """``{"total": stats, "by_period": [stats + period, ...]}`` of a per-trial variable.

    ``index(p)`` selects period p (``None``: all periods) among the variable's other dims.
    """
    stats = describe_columns(cols, name, [index(p) for p in range(len(periods))] + [index(None)])
    return {"total": stats[-1], "by_period": [{"period": label, **s} for label, s in zip(periods, stats)]}


def summarize(ds, scenario: Scenario) -> dict:
    """The contents of ``summary.json`` for a simulated Dataset."""
    names = [n for n in ("revenue", "won_deals", "revenue_by_segment", "won_deals_by_segment", "bookings",
                         "commission", "commission_bookings", "clv", *AFTER_SALE_VARIABLES,
                         *(f"{v}_by_segment" for v in AFTER_SALE_VARIABLES), *STAGE_METRICS,
                         *SPEND_VARIABLES, *EXTRA_VARIABLES) if n in ds]
    cols = Columns({n: ds[n].values for n in names}, ds.sizes["trial"])
    summary = summarize_columns(cols, Meta.of_dataset(ds, scenario))

    plan = build_plan(scenario)
    summary["funnel"] = funnel_expectation(plan, ds["inputs"].values)
    if scenario.outputs.stage_value:  # v2 F9
        summary["stage_value"] = stage_value_summary(scenario, ds["quantity"].values, ds["inputs"].values)
    if "cycle_days" in ds:  # v2 F1
        from forecaster.results.cycle_days import cycle_summary  # imports this module

        rows = np.column_stack([ds["cycle_days_segment"].values, ds["cycle_days"].values])
        summary["cycle_days"] = cycle_summary(rows, tuple(str(s) for s in ds["segment"].values))
    if scenario.outputs.coverage:  # v2 F12
        from forecaster.results.coverage import coverage_summary  # imports this module

        summary["coverage"] = coverage_summary(scenario, plan, ds["inputs"].values)
    return summary


def summarize_columns(cols: Columns, meta: Meta) -> dict:
    """The contents of ``summary.json``, reading per-trial results one column at a time.

    Beyond the contract's ``scenario``, ``seed``, ``trials``, ``metrics`` and ``targets``, it
    holds the horizon, per-segment totals and, with a team, each rep's commission, bookings
    and probability of reaching quota in each commission period.
    """

    metrics = {"revenue": metric_summary(cols, "revenue", meta.periods),
               "won_deals": metric_summary(cols, "won_deals", meta.periods)}
    if meta.commission:
        metrics["commission"] = metric_summary(cols, "commission", meta.periods, lambda p: (p, None))
    last = len(meta.periods) - 1
    for name, (kind, _, _) in AFTER_SALE_VARIABLES.items():
        if name in cols:  # v2 A.3: a flow's total sums the periods; a stock's is its level at the end
            metrics[name] = metric_summary(cols, name, meta.periods,
                                           (lambda p: (p,)) if kind == "flow" else (lambda p: (last if p is None else p,)))
    metrics.update(stage_metrics(cols, meta))
    for name in ("leads", "spend"):  # v2 E.3
        if name in cols:
            metrics[name] = metric_summary(cols, name, meta.periods)
    metrics.update(commission_extra_metrics(cols, meta))  # v2 D.6
    a = meta.attrs
    out = {"scenario": a["scenario"], "seed": a["seed"], "trials": int(a["trials"]), "metrics": metrics}
    if meta.targets:
        out["targets"] = {}
        for metric, threshold in meta.targets.items():
            stock = metric in AFTER_SALE_VARIABLES and AFTER_SALE_VARIABLES[metric][0] == "stock"
            name, _, stage = metric.partition(".")
            if name in STAGE_METRICS:  # v2 F1: summed over segments
                totals = cols.column(name, (None, None, meta.stages.index(stage)))
            else:
                by_rep = metric in ("commission", "spif", "clawback", "net_commission", "payout")  # v2 D.6
                totals = cols.column(metric, (None, None) if by_rep else
                                     (len(meta.periods) - 1,) if stock else (None,))
            out["targets"][metric] = {"threshold": threshold, "probability": float(np.mean(totals >= threshold))}
    out["horizon"] = {"start": a["start"], "end": a["end"], "report_by": a["report_by"], "currency": meta.currency}
    if "commission_period" in a:  # what each rep's quota_attainment item is a period of
        out["horizon"]["commission_period"] = a["commission_period"]
    if "fiscal_year_start" in a:  # quarters follow the fiscal year (labelled FY27 Q1)
        out["horizon"]["fiscal_year_start"] = int(a["fiscal_year_start"])
    if meta.description:
        out["description"] = meta.description
    seg_index = [(None, g) for g in range(len(meta.segments))]
    revenue = describe_columns(cols, "revenue_by_segment", seg_index)
    won = describe_columns(cols, "won_deals_by_segment", seg_index)
    out["segments"] = {seg: {"revenue": {"total": revenue[g]}, "won_deals": {"total": won[g]}}
                       for g, seg in enumerate(meta.segments)}
    for name in ("leads", "spend"):  # v2 E.3: each segment's totals over the horizon
        if f"{name}_by_segment" in cols:
            for g, stats in enumerate(describe_columns(cols, f"{name}_by_segment", seg_index)):
                out["segments"][meta.segments[g]][name] = {"total": stats}
    if "clv" in cols:  # v2 A.3: per segment with a customer block, statistics over trials
        values = describe_columns(cols, "clv", [(g,) for g in range(len(meta.segments))])
        out["clv"] = {seg: stats for seg, stats in zip(meta.segments, values) if stats["mean"] is not None}
    if "spend" in cols:
        out["ratios"] = ratio_summary(cols, meta)
    for name in ("draw_balance", "clawback_after_end"):  # v2 D.6: per trial, summed over reps
        if name in cols:
            out[name] = describe(cols.column(name, (None,))[:, None])[0]
    if meta.reps:
        out["reps"] = {rep: rep_summary(cols, meta, r) for r, rep in enumerate(meta.reps)}
    out["forecaster_version"] = __version__
    out["scenario_sha256"] = a.get("scenario_sha256", "")
    return out


SPEND_VARIABLES = ("leads", "leads_by_segment", "spend", "spend_by_segment")
"""v2 E.3: the leads arriving and the spend, by period (and segment)."""


def ratio_summary(cols: Columns, meta: Meta) -> dict:
    """v2 E.3: ``spend_per_lead`` = spend / leads, ``cac`` = spend / won_deals, ``roi`` =
    (revenue - spend) / spend and, with after-sale bookings, ``roi_total`` = (total_bookings -
    spend) / spend, each of the trials' totals over the horizon: v1's statistics over the
    trials where the denominator is not 0, ``undefined`` (how many are left out), and
    ``by_segment.<segment>`` of the same form."""
    def ratios(spend, leads, won, revenue, total) -> dict:
        pairs = {"spend_per_lead": (spend, leads), "cac": (spend, won), "roi": (revenue - spend, spend)}
        if total is not None:
            pairs["roi_total"] = (total - spend, spend)
        out = {}
        for name, (num, den) in pairs.items():
            defined = den != 0
            item = describe((num[defined] / den[defined])[:, None])[0] if defined.any() else \
                {k: None for k in describe(np.zeros((1, 1)))[0]}
            out[name] = {**item, "undefined": int((~defined).sum())}
        return out

    has_total = "total_bookings" in cols
    everything = ratios(cols.column("spend", (None,)), cols.column("leads", (None,)),
                        cols.column("won_deals", (None,)), cols.column("revenue", (None,)),
                        cols.column("total_bookings", (None,)) if has_total else None)
    for g, seg in enumerate(meta.segments):
        one = ratios(cols.column("spend_by_segment", (None, g)), cols.column("leads_by_segment", (None, g)),
                     cols.column("won_deals_by_segment", (None, g)), cols.column("revenue_by_segment", (None, g)),
                     cols.column("total_bookings_by_segment", (None, g)) if has_total else None)
        for name, item in one.items():
            everything[name].setdefault("by_segment", {})[seg] = item
    return everything


def commission_extra_metrics(cols: Columns, meta: Meta) -> dict:
    """v2 D.6: ``spif``, ``clawback``, ``net_commission``, ``payout`` (summed over reps, like
    ``commission``) and ``commission_expense``, where the plan has them (flows)."""
    out = {}
    for name in ("spif", "clawback", "net_commission", "payout"):
        if name in cols:
            out[name] = metric_summary(cols, name, meta.periods, lambda p: (p, None))
    if "commission_expense" in cols:
        out["commission_expense"] = metric_summary(cols, "commission_expense", meta.periods)
    return out


def stage_metrics(cols: Columns, meta: Meta) -> dict:
    """v2 F1: ``stage_entries.<stage>`` and ``losses.<stage>``, summed over segments (flows)."""
    out = {}
    for name in STAGE_METRICS:
        if name in cols:
            for k, stage in enumerate(meta.stages):
                out[f"{name}.{stage}"] = metric_summary(cols, name, meta.periods, lambda p, k=k: (p, None, k))
    return out


def rep_summary(cols: Columns, meta: Meta, r: int) -> dict:
    """One rep's bookings, commission and chance of reaching quota in each quota period."""
    quota = meta.quotas[r]
    # with commission.base total_bookings, quota and tiers apply to the rep's total bookings (v2 A.6)
    booked_name = "commission_bookings" if "commission_bookings" in cols else "bookings"
    item = {"quota": quota, "bookings": {"total": describe(cols.column(booked_name, (None, r))[:, None])[0]}}
    if meta.commission:
        item["commission"] = {"total": describe(cols.column("commission", (None, r))[:, None])[0]}
        item["quota_attainment"] = []
        for c, label in enumerate(meta.quota_periods):
            booked = cols.column(booked_name, (c, r))
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                attainment = np.median(booked) / quota
            item["quota_attainment"].append({"period": label, "probability": float(np.mean(booked >= quota)),
                                             "attainment_p50": _num(attainment)})  # None, not inf: valid JSON
        item.update(rep_commission_extras(cols, meta, r))
    return item


def rep_commission_extras(cols: Columns, meta: Meta, r: int) -> dict:
    """v2 D.6, one rep's: ``spif``, ``clawback``, ``net_commission``, ``payout`` (totals over
    the horizon), ``draw_balance`` and ``clawback_after_end``, each ``{"total": stats}`` where
    the plan has it; with a draw, ``draw`` = {"total": the draws over the horizon,
    "probability_net_below": the probability that the rep's net earnings over the horizon (commission +
    spif - clawback) fall below them}."""
    item: dict[str, dict] = {}
    for name in ("spif", "clawback", "net_commission", "payout"):
        if name in cols:
            item[name] = {"total": describe(cols.column(name, (None, r))[:, None])[0]}
    for name in ("draw_balance", "clawback_after_end"):
        if name in cols:
            item[name] = {"total": describe(cols.column(name, (r,))[:, None])[0]}
    if meta.draws and not np.isnan(meta.draws[r]):
        net = cols.column("net_commission" if "net_commission" in cols else "commission", (None, r))
        item["draw"] = {"total": meta.draws[r], "probability_net_below": float(np.mean(net < meta.draws[r]))}
    return item


def funnel_expectation(plan, inputs: np.ndarray) -> dict:
    """Expected leads entering each stage over the horizon, per segment: new leads, and the
    dated lead events' (v2 F2), which enter their own stage (default the segment's first) and
    count there and after, as in ``leads`` (E.3) and ``stage_entries`` (F1).

    Averages, over the trials' own draws of rates and probabilities ``inputs`` (shape
    (trials, segments, K)), the mean arrivals sum_d m_d plus each event's expected count (the
    mean of its ``count`` law) at its stage, and their products with the conversions of the
    stages between; dispersion does not change these means.

    Returns
    -------
    dict
        segment -> {"stages": [{"stage", "entering"}...], "won_eventually", "open_pipeline"}
    """
    out = {}
    k = plan.elapsed_months
    for g, name in enumerate(plan.segment_names):
        base, growth = inputs[:, g, THETA_LEADS], inputs[:, g, THETA_GROWTH]
        weights = np.bincount(k, weights=plan.day_mean[g])  # sum of f_d over the days of month k
        with np.errstate(divide="ignore"):
            scale = 1.0 / base if plan.rate_is_cost[g] else base
        if plan.funnel.response_curve[g]:  # v2 C: each trial's month factors with its response curve
            months = np.empty((base.shape[0], weights.shape[0]))
            kernels.lead_growths(plan.funnel, np.array(inputs, dtype=float, order="C"), g, months)  # writable: one signature
            arrivals = scale * (months @ weights)
        else:
            arrivals = scale * sum(w * (1.0 + growth) ** j for j, w in enumerate(weights))
        open_pipeline = {stage: int(np.sum((plan.deal_segment == g) & (plan.deal_stage == s)))
                         for s, stage in enumerate(plan.stage_names)}
        own = plan.segment_stages[g] if plan.segment_stages else plan.stage_names  # v2 F4: only its stages
        entering = _event_entries(plan, g, arrivals)  # (trials, S): who enters each stage from outside
        if plan.chain is not None and plan.chain.has[g]:
            out[name] = _chain_funnel(plan, g, inputs, entering)
        else:
            stages, reach = [], np.zeros_like(arrivals)
            for s, stage in enumerate(plan.stage_names):
                reach = reach + entering[:, s]
                stages.append({"stage": stage, "entering": float(reach.mean())})
                reach = reach * inputs[:, g, THETA_CONVERT + s]
            out[name] = {"stages": stages, "won_eventually": float(reach.mean())}
        out[name]["stages"] = [st for st in out[name]["stages"] if st["stage"] in own]
        out[name]["open_pipeline"] = {stage: n for stage, n in open_pipeline.items() if stage in own}
    return out


def _event_entries(plan, g: int, arrivals: np.ndarray) -> np.ndarray:
    """The leads that enter each stage of segment ``g`` from outside it, per trial, shape
    (trials, S): the new leads' ``arrivals`` (trials,) at the first stage, and each dated lead
    event's expected count (v2 F2) at its own stage."""
    out = np.zeros((arrivals.shape[0], len(plan.stage_names)))
    out[:, 0] = arrivals
    if plan.has_events:
        for e in range(int(plan.events.first[g]), int(plan.events.first[g + 1])):
            out[:, plan.events.stage[e]] += plan.event_means[e]
    return out


def _chain_funnel(plan, g: int, inputs: np.ndarray, entering: np.ndarray) -> dict:
    """The funnel of a segment with moves (v2 B.2), from each trial's draws and the leads
    ``entering`` each stage from outside (trials, S) (new leads at the first, events' at
    theirs): per stage the expected entries (sum_r entering_r x N[r, s], every visit an
    entry), the expected visits of a new lead N[0, s] and the eventual win probability h_s of
    a deal entering it; and the leads won eventually (sum_r entering_r x h_r). Means over
    trials."""
    S = len(plan.stage_names)
    p = inputs[:, g, THETA_CONVERT:THETA_CONVERT + S]
    h, N = chains.solve_trials(*chains.matrices(p, record_moves(plan.chain, g, inputs[:, g])))

    def through(x: np.ndarray) -> np.ndarray:  # sum_r entering_r x[:, r], x (trials, S), per trial
        out = entering[:, 0] * x[:, 0]
        for r in np.flatnonzero(np.any(entering[:, 1:] != 0, axis=0)) + 1:  # stages events enter
            out = out + entering[:, r] * x[:, r]
        return out

    stages = [{"stage": stage, "entering": float(np.mean(through(N[:, :, s]))), "visits": float(np.mean(N[:, 0, s])),
               "win_probability": float(np.mean(h[:, s]))} for s, stage in enumerate(plan.stage_names)]
    return {"stages": stages, "won_eventually": float(np.mean(through(h)))}


def stage_value_summary(scenario: Scenario, quantities, inputs) -> dict:
    """``stage_value.<segment>.<stage>`` (v2 F9): for each of a segment's own stages, the
    eventual win probability h of a deal now entering it, from each trial's draws after shocks
    (``inputs``, slots named ``quantities``; :mod:`forecaster.results.stage_value`), and its
    ``value``, h times the mean of the segment's ``deal_value`` law; each with
    :func:`describe`'s statistics over trials."""
    out: dict[str, dict] = {}
    for g, name in enumerate(scenario.segment_names):
        stages, h = segment_win_probabilities(scenario, g, quantities, inputs)
        with np.errstate(over="ignore", invalid="ignore"):
            value = h * scenario.segments[name].deal_value.mean()
        chances, values = describe(h), describe(value)
        out[name] = {s: {"win_probability": chances[i], "value": values[i]} for i, s in enumerate(stages)}
    return out
