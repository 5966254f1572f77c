"""Estimation: every part of a calibrated scenario fitted from a deal history as known on a date
(:func:`fit_candidates`); :mod:`forecaster.history.calibrate` then keeps the parts the evidence supports.

The history is read by :mod:`forecaster.history.readers` (one :class:`Deal` per row).

For an as-of date T, only dates on or before T count: a deal closed after T was still open
on T. What is fitted, and how:

* **Times.** Each stage's ``days`` (and ``days_lost``) by censored maximum likelihood
  (:mod:`forecaster.history.fitting`): deals still open are unfinished, not lost; the share of
  non-converting leads that never leave is fitted too (``stalled``). The history's first
  close (:func:`observed_from`) is where it starts seeing deals: those that entered before
  it are fitted with delayed entry and left out of conversion counts. Segments with fewer
  than :data:`MIN_CONVERTED` conversions in a stage use the pooled times.
* **Conversion, level and drift.** Conversions are counted against their exposure (each
  deal weighted by the chance that its conversion would already show, from the
  nonparametric time to convert). Each monthly entry cohort's conversion and speed are
  estimated together (:func:`forecaster.history.fitting.cohort_conversion`), its conversion
  trusted in proportion to what could already show, as far as the history's own young
  cohorts earned it (:func:`immaturity_variance`), and go through local-level models
  (:mod:`forecaster.history.drift`; a cohort may be a one-off) from the month the history is steady
  (:func:`steady_start`): the latest level is the conversion, its uncertainty over the
  horizon (level, drift, jumps) the stage's ``shocks.convert``, shared by every segment,
  sized for the horizon's mix of expected wins from new leads and open deals; the latest
  speed is the ``speed`` part.
* **Segments** keep their conversion relative to the whole (on the log-odds scale),
  shrunk toward it by a beta prior worth :data:`PRIOR_WEIGHT` deals at the pooled rate;
  their beta's concentration is that prior plus their exposure.
* **Lead arrivals.** The whole's monthly arrivals go through the same local-level model
  on the log scale: the latest level is shared out by each segment's part of the last
  :data:`LOOKBACK_DAYS` days' arrivals (a gamma whose cv is the share's sampling error),
  the level's uncertainty becomes ``shocks.leads``, and month-to-month noise beyond
  Poisson becomes ``dispersion``. With fewer than 3 months, the segment's own recent rate.
  A local linear trend is the ``trend`` part. An export that starts mid-stream has its
  months before the first close thinned by the cut (:func:`thinned_until`): its arrivals
  are then read from the first whole month from the first close on.
* **Quarter-end closing** (:func:`quarter_end_closing`, against a trend) and **capacity**
  (:func:`team_capacity`, the level the wins stay at) from the last whole quarters of wins; seasonality from 24
  months of arrivals.
* **Which optional parts are kept** (:data:`MECHANISMS`), and how wide the shared spread
  is, is decided by a walk-forward inside the history (:mod:`forecaster.history.selection`).
* **Deal values** are the won amounts, resampled (``empirical``); the deals open on T
  become the pipeline.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from forecaster.calendar import AVG_MONTH_DAYS, days_in_month, monthly_counts, months_until, period_end
from forecaster.history.drift import Level, Trend, expit, local_level, local_trend, logit
from forecaster.history.fitting import (
    LogTimeLaw,
    StageData,
    StageFit,
    TooLittleHistory,
    cohort_conversion,
    conversion_cdf,
    conversion_exposure,
    fit_stage,
    open_non_converter,
    with_fitted_tail,
)
from forecaster.history.parts import Calibration, Mechanism, SegmentWarning
from forecaster.history.quarters import (
    pinned_close_dates,
    poisson_fit,
    quarter_end_closing,
    team_capacity,
    unslipped_factor,
)
from forecaster.history.readers import Deal, recorded_through

MIN_CONVERTED = 30


DRIFT_MONTHS = 12
"""Monthly entry cohorts (the last ones before the as-of date) that measure drift."""


PRIOR_WEIGHT = 30.0


MIN_RATE_DAYS = 28
"""Fewer days of arrivals than this, with no monthly level to read (:func:`_lead_rate`), and
calibrate warns that the rate a month is a few days' count scaled up."""


HORIZON_QUARTER = 92 / AVG_MONTH_DAYS
"""The longest horizon (months) whose average lead sets the calibrated lead rate (see
``ahead`` in :func:`fit_candidates`): 92 days, the longest three calendar months (the default
horizon, 3m, from a month's end is 89 to 92 days; from mid-month it adds the month's rest); a
longer horizon gets the same rate."""


IMMATURE_VAR = 1.0
"""The prior of the immaturity variance (log-odds) of a monthly cohort's conversion per unit of
(1 - seen) / seen, seen being the share of its conversions that could already show: with
this value, a cohort half seen gets +1, one 90% seen +0.11. What the history's own young
cohorts were revised by as they aged replaces it (:func:`immaturity_variance`)."""


REVISION_LAGS = (1, 2, 3)
"""Months back at which :func:`immaturity_variance` re-reads the cohorts, to compare what they
said then with what they say on the as-of date."""


LOOKBACK_DAYS = 90


def observed_from(deals: list[Deal], as_of: date) -> date | None:
    """The first day the history saw a deal close (won or lost) by ``as_of``, or None.

    An export that starts mid-stream holds the deals that entered before that day only
    because they were still open on it (left truncation): their times are fitted with
    delayed entry, and they are left out of conversion counts.
    """
    closed = [d.closed for d in deals if d.closed is not None and d.closed <= as_of and d.outcome in ("won", "lost")]
    return min(closed, default=None)


THINNED_LR = 4.0
"""How much likelier (log-likelihood units) the arrivals before a history's first close must
be under thinning by it than as complete counts for :func:`thinned_until` to say so."""
THINNED_MATERIAL = 0.8
"""... and the share of a month's deals still open on the first close must fall below this
for at least one month before it (thinning too slight to tell is left alone)."""


def thinned_until(deals: list[Deal], as_of: date, first_seen: date | None) -> tuple[date, str] | None:
    """The first whole month of arrivals an export that starts mid-stream shows in full, and
    why, or None.

    Such an export holds a deal that entered before its first close (``first_seen``) only if
    the deal was still open on that day: a month of arrivals ``a`` days before it shows the
    share P(T >= a) of its deals, T a deal's days from entry to a recorded close (won, or lost
    when losses are recorded; Kaplan-Meier over the deals that entered from ``first_seen``
    on). Read as complete counts, those months make a steady flow look like a steep ramp
    (a synthetic team growing 6% a month, cut at its fourth month, read three months after
    the cut: +22% a month, a drift of 0.34 a month and shocks on its leads of 0.41, where
    read from the cut on they are 0.11 and 0.19). A history whose closes simply start later
    than its leads (Olist records wins only from December 2017, its leads from June) shows
    its early months in full. So the whole months before ``first_seen`` (but the history's
    first, which its start may cut; at least two) and the first three whole months from it
    are fitted twice, as thinned by P(T >= a) and as complete, each a Poisson regression of
    the month's count on a log-linear trend (a growing flow's early months are thinner too)
    and a step at the first close (a flow that changed on that day, or thinned alike in
    every month before it, is no evidence of a cut: what tells is how the months thin out
    towards the past). When thinning would remove more than 1 - :data:`THINNED_MATERIAL`
    of some month and is likelier by :data:`THINNED_LR`, the arrivals are read from the
    first whole month from ``first_seen`` on.

    Not before three whole months from ``first_seen`` are known: the drifting level of the
    arrivals needs three, and with fewer the lead flow would be read as a recent rate with
    no uncertainty of its own (on Maven's export, whose closes start in March 2017, four
    months after its first deals, that made the forecasts from March and April 2017 a tenth
    as wide, and they covered none of their six months).
    """
    if first_seen is None:
        return None
    entries = sorted(e for d in deals if (e := d.entered[0]) is not None and e <= as_of)
    if not entries or entries[0] >= first_seen:
        return None
    start = first_seen if first_seen.day == 1 else period_end(first_seen, "month") + timedelta(days=1)
    post = [(y, m) for y, m in months_until(start, as_of)
            if date(y, m, days_in_month(date(y, m, 1))) <= as_of][:3]
    pre = [(y, m) for y, m in months_until(entries[0], as_of)[1:]
           if date(y, m, days_in_month(date(y, m, 1))) < first_seen]
    if len(post) < 3 or len(pre) < 2:  # a cut shows in how the months before it thin out towards the past
        return None
    counts = monthly_counts(entries)
    post_days = sum(days_in_month(date(y, m, 1)) for y, m in post)
    level = sum(counts.get(ym, 0) for ym in post) / post_days  # arrivals a day, for the note
    if level <= 0:
        return None
    # Kaplan-Meier of the days to a recorded close, from the deals that entered from first_seen on
    oldest = (first_seen - date(*pre[0], 1)).days
    events = np.zeros(oldest + 2)
    exits = np.zeros(oldest + 2)  # deals whose observed time (close or censoring) is this age
    for d in deals:
        e = d.entered[0]
        if e is None or e < first_seen or e > as_of:
            continue
        closed = d.closed is not None and d.closed <= as_of and d.outcome in ("won", "lost")
        # (a close before the entry, which the readers refuse, counts as a close on the day)
        age = min(max((d.closed - e).days if closed else (as_of - e).days, 0), oldest + 1)
        exits[age] += 1
        if closed and age <= oldest:
            events[age] += 1
    at_risk = exits[::-1].cumsum()[::-1]  # observed time >= t
    hazard = np.divide(events, at_risk, out=np.zeros_like(events), where=at_risk > 0)
    still_open = np.concatenate([[1.0], np.cumprod(1 - hazard)])  # P(T >= a), a = 0..oldest + 2
    shares = []
    for y, m in pre:
        first = date(y, m, 1)
        ages = [(first_seen - (first + timedelta(days=i))).days for i in range(days_in_month(first))]
        shares.append(float(np.mean(still_open[ages])))
    if min(shares) >= THINNED_MATERIAL:
        return None
    # both hypotheses with a log-linear trend over the months (a growing flow's early months
    # are thinner too) and a step at the first close (a flow that changed then, or thinning
    # alike in every month before it, is no evidence of a cut): Poisson regressions whose
    # exposure is the month's days, times its share still open for the thinned one
    every = pre + post
    counted = np.array([counts.get(ym, 0) for ym in every], dtype=float)
    days = np.array([days_in_month(date(*ym, 1)) for ym in every], dtype=float)
    index = np.array([(yr - every[0][0]) * 12 + mo - every[0][1] for yr, mo in every], dtype=float)
    X = np.stack([np.ones(len(every)), index - index.mean(), np.arange(len(every)) >= len(pre)], axis=1)
    thinning = np.concatenate([np.maximum(shares, 1e-9), np.ones(len(post))])
    ll_thinned = poisson_fit(counted, days * thinning, X.astype(float))[0]
    ll_full = poisson_fit(counted, days, X.astype(float))[0]
    if ll_thinned - ll_full < THINNED_LR:
        return None
    seen = sum(counts.get(ym, 0) for ym in pre)
    full = level * sum(days_in_month(date(y, m, 1)) for y, m in pre)
    return start, (f"the {len(pre)} whole months of arrivals before the first close ({first_seen}) hold {seen} "
                   f"deals where {full:.0f} would be at the level after it: as thinned as an export that "
                   f"starts mid-stream keeps them (only the deals still open on its first day; "
                   f"{', '.join(f'{s:.0%}' for s in shares)} of each month would be), so arrivals are read from "
                   f"{start:%Y-%m} on")


def stage_data(deals: list[Deal], s: int, n_stages: int, as_of: date, lost_observed: bool,
               first_seen: date | None = None, untruncated: bool = False) -> StageData:
    """What was known on ``as_of`` about the deals that entered stage ``s``.

    ``first_seen``: the history's first close (:func:`observed_from`); a deal that entered
    before it is under delayed entry from its age on that day, or left out with
    ``untruncated`` (for counting conversions, which it would bias).
    """
    conv, lost, open_, ages, other = [], [], [], [], []
    entry: dict = {"conv": [], "lost": [], "open": []}
    for d in deals:
        e = d.entered[s]
        if e is None or e > as_of:
            continue
        late = (first_seen - e).days if first_seen is not None and e < first_seen else 0
        if late and untruncated:
            continue
        ages.append((as_of - e).days)
        nxt = d.entered[s + 1] if s + 1 < n_stages else None
        closed = d.closed if d.closed is not None and d.closed <= as_of else None
        if late:
            left = nxt if nxt is not None and nxt <= as_of else closed
            if left is not None and first_seen is not None and left < first_seen:
                continue  # it left this stage before the history saw any: kept for a later stage only
        if nxt is not None and nxt <= as_of:
            conv.append((nxt - e).days)
            entry["conv"].append(late)
            continue
        if d.outcome == "won" and closed is not None:
            conv.append((closed - e).days)
            entry["conv"].append(late)
            continue
        if d.outcome == "lost" and closed is not None:
            lost.append((closed - e).days)
            entry["lost"].append(late)
        else:
            open_.append((as_of - e).days)
            entry["open"].append(late)
        other.append((as_of - e).days)
    as_array = lambda v: np.maximum(np.asarray(v, dtype=float), 0.0)  # noqa: E731 (a same-day data-entry slip)
    conv_a, lost_a, open_a = as_array(conv), as_array(lost), as_array(open_)
    # an event cannot come before the deal was first seen (a data-entry slip): seen from then
    clip = lambda ev, en: np.minimum(as_array(en), ev)  # noqa: E731
    return StageData(conv_a, lost_a, open_a, lost_observed=lost_observed, ages=as_array(ages),
                     other_ages=as_array(other), converted_entry=clip(conv_a, entry["conv"]),
                     lost_entry=clip(lost_a, entry["lost"]), open_entry=clip(open_a, entry["open"]))


def fit_candidates(deals: list[Deal], stages: list[str], as_of: date, *, horizon_days: int = 90,
                   name: str = "calibrated", lost_observed: bool = True, pipeline_file: str = "pipeline.csv",
                   families: dict | None = None, like: Calibration | None = None,
                   new_lead_share: Callable[[Calibration], float] = lambda cal: 1.0,
                   fiscal_year_start: int | None = None, open_amounts: bool | None = False) -> Calibration:
    """The base scenario (no optional part) and every optional part that can be fitted
    (``like``: as in :func:`calibrate`, whose fiscal year it takes).

    ``fiscal_year_start``: the month (1-12) the company's quarters count from; quarter-end
    slips and the capacity's quarter shape are read from those quarters, and the scenario
    says so (None: calendar quarters, and the scenario does not name a fiscal year).

    ``new_lead_share``: the expected share of the horizon's won deals that come from new
    leads rather than the open pipeline, given the calibration so far (its base scenario
    and pipeline); it sizes the conversion shocks, which move the two differently.
    Estimation itself never runs the simulator: :func:`forecaster.history.calibrate.calibrate`
    passes :func:`forecaster.history.parts.new_lead_share`; the default, 1.0, sizes the shocks
    for new leads alone.

    ``open_amounts``: True writes each open deal's own amount into the pipeline (only deals
    still open in the export: a deal open on ``as_of`` that the export shows closed later
    carries its final amount, a look-ahead; not an amount of 0, more often a CRM's blank than
    a free pilot; not in a segment whose revenue counts won deals, ``deal_value`` 1), with a
    warning when the export goes on past ``as_of`` (its amounts are the export's, not those
    known then); False values every open deal as a won deal of its segment is
    (``deal_value``, resampled); None as False, with a warning when open deals carry amounts
    that are then not used."""
    S = len(stages)
    segments = sorted({d.segment for d in deals if any(e is not None and e <= as_of for e in d.entered)})
    if not segments:
        raise TooLittleHistory(f"no deal had entered any stage by {as_of}")
    if like is not None:
        fiscal_year_start = like.fiscal_year_start
    cal = Calibration(scenario={}, pipeline=[], fiscal_year_start=fiscal_year_start)
    cal.warnings += pinned_close_dates(deals, as_of, fiscal_year_start or 1)
    gap = arrival_gap(deals, as_of)
    if gap:
        cal.warnings.append(gap)
    # months from as_of's month to the average lead of the horizon's first quarter: the lead
    # rate written is the level's mean there, and the simulation's drift keeps it (its
    # random walk is mean-preserving). Over a longer horizon the mean of a log random walk
    # grows with its variance (x1.9 at five years out), which would raise the rate of the
    # first months with the horizon's length: the same months forecast 28.9 leads a month
    # with a 3-month horizon and 56.6 with a 10-year one
    ahead = (min(horizon_days / AVG_MONTH_DAYS, HORIZON_QUARTER) + 1) / 2
    since = steady_start(deals, as_of)
    first_seen = observed_from(deals, as_of)
    if since is not None:
        first_entry = min((d.entered[0] for d in deals if d.entered[0] is not None and d.entered[0] <= as_of),
                          default=since)
        cal.notes.append(f"all segments: drift measured from {since:%Y-%m} on"
                         + (" (earlier months: the history's ramp-up, below half the median month's arrivals)"
                            if (first_entry.year, first_entry.month) < (since.year, since.month)
                            else " (the history's first month)"))
    thinned = thinned_until(deals, as_of, first_seen)
    arrivals_from = None
    if thinned is not None and (since is None or thinned[0] > since):
        since = arrivals_from = thinned[0]
        cal.notes.append(f"all segments: {thinned[1]}")
    if first_seen is not None:
        early = sum(1 for d in deals if d.entered[0] is not None and d.entered[0] < first_seen)
        if early:
            cal.notes.append(f"all segments: the first close is on {first_seen}; the {early} deals that entered "
                             "before it are fitted with delayed entry (seen only because still open then) and "
                             "left out of conversion counts")
    whole = [_whole_stage(deals, s, stages, as_of, lost_observed, since, first_seen, cal,
                          (families or {}).get(stages[s])) for s in range(S)]
    cal.families = {stages[s]: whole[s].fit.families for s in range(S)}
    lead_level = arrival_level(deals, as_of, cal, since)
    seg_docs, shares = {}, {}
    for seg in segments:
        said_before = len(cal.warnings)
        mine = [d for d in deals if d.segment == seg]
        funnel = {}
        for s, stage in enumerate(stages):
            data, w = stage_data(mine, s, S, as_of, lost_observed, first_seen), whole[s]
            counted = stage_data(mine, s, S, as_of, lost_observed, first_seen, untruncated=True)
            fit = w.fit
            if data.converted.size >= MIN_CONVERTED and len(segments) > 1:
                wf, lf = w.fit.families
                fit = fit_stage(data, families=(wf,), lost_families=(lf,) if lf else None)
                cal.notes.append(f"{seg}, {stage}: {_counts(fit)}; days {fit.days[0]}")
            elif len(segments) > 1:
                cal.warnings.append(f"{seg}, {stage}: only {data.converted.size} conversions by {as_of}: conversion "
                                    f"shrunk toward the pooled {w.p:.3f}, pooled times used")
            # the segment's conversion relative to the whole, shrunk toward it: a beta prior worth
            # PRIOR_WEIGHT deals at the pooled rate, updated with the segment's conversions and
            # their exposure (open deals count only for the chance that a converting one would
            # already show: they are not lost); moved to the latest level of the whole
            exposure = conversion_exposure(counted, w.cdf)
            p_seg = (counted.converted.size + PRIOR_WEIGHT * w.p) / (exposure + PRIOR_WEIGHT)
            # strictly inside (0, 1) after rounding to 6 digits: a history whose every deal was
            # won (one row, say) says p is high, not that it is certain
            mean = min(max(expit(w.centre + logit(p_seg) - logit(w.p)), 1e-6), 1 - 1e-6)
            entry = {"convert": {"dist": "beta", "mean": mean, "concentration": exposure + PRIOR_WEIGHT},
                     "days": fit.days[1]}
            if fit.days_lost:
                entry["days_lost"] = fit.days_lost[1]
            funnel[stage] = _rounded(entry)
        if not lost_observed:  # leads that are never won stay in their stage (the data records no losses)
            for entry in funnel.values():
                entry["days_lost"] = {"dist": "fixed", "value": 1e9}
        leads, shares[seg] = _lead_rate(mine, deals, as_of, cal, seg, lead_level, ahead, arrivals_from)
        seg_docs[seg] = {"leads": leads, "funnel": funnel, "deal_value": _deal_value(mine, as_of, cal, seg, deals)}
        cal.warnings[said_before:] = [SegmentWarning(w, seg) for w in cal.warnings[said_before:]]
    if lead_level is not None and (total_share := sum(shares.values())) > 1 + 1e-9:
        # a segment with no recent arrival keeps half a deal's share (not none: it may come
        # back), which the others must give up, or the whole would grow by half a deal's
        # share of the level for every quiet segment
        for seg in seg_docs:
            shares[seg] /= total_share
            per_month = seg_docs[seg]["leads"]["per_month"]
            per_month["mean"] = round(per_month["mean"] / total_share, 4)
        cal.notes.append(f"segments: the shares of the recent arrivals, half a deal given to each segment with none, "
                         f"summed to {total_share:.4f}: divided by it, so that the segments' leads add up to the "
                         "whole's")
    start = as_of + timedelta(days=1)
    cal.base = {"name": name, "description": f"calibrated on the history known on {as_of.isoformat()}",
                "start": start.isoformat(), "end": (start + timedelta(days=horizon_days - 1)).isoformat(),
                "report_by": "month", "trials": 10000, "seed": 0, "stages": list(stages), "segments": seg_docs}
    if fiscal_year_start is not None:
        cal.base["fiscal_year_start"] = fiscal_year_start
    priced: list[float] = []  # the amounts open deals still open in the export carry
    for d in deals:
        known = [(i, e) for i, e in enumerate(d.entered) if e is not None and e <= as_of]
        closed = d.closed is not None and d.closed <= as_of
        if known and not closed and (d.outcome == "open" or (d.closed or date.max) > as_of):
            i, e = known[-1]
            # an amount of 0 on an open deal is a CRM's blank more often than a free pilot; a
            # segment whose revenue counts won deals (deal_value 1) takes no currency amount
            own = d.amount if (d.outcome == "open" and d.amount and seg_docs[d.segment]["deal_value"] != 1) \
                else None
            if own is not None:
                priced.append(own)
            cal.pipeline.append({"deal_id": d.deal_id, "segment": d.segment, "stage": stages[i],
                                 "entered_stage": e.isoformat(),
                                 "amount": "" if own is None or not open_amounts else repr(float(own))})
    if priced and open_amounts:
        cal.notes.append(f"pipeline: {len(priced)} of the {len(cal.pipeline)} open deals valued at their own amount "
                         f"(mean {np.mean(priced):,.2f}); the others at the segment's won amounts, resampled")
        seen = recorded_through(deals)  # an open deal's expected close date is no record
        export_end = seen[0] if seen else as_of
        if export_end > as_of:
            cal.warnings.append(f"--open-amounts: the open deals' amounts are those of the export, whose last record "
                                f"is {export_end}, not those known on {as_of}")
    elif open_amounts and cal.pipeline:  # asked for, and nothing to do it with: said (review)
        ids = {row["deal_id"] for row in cal.pipeline}
        mine = [d for d in deals if d.deal_id in ids]
        later = sum(1 for d in mine if d.outcome != "open" and d.amount)
        counting = sum(1 for d in mine if d.outcome == "open" and d.amount and seg_docs[d.segment]["deal_value"] == 1)
        blank = len(mine) - later - counting

        def carry(n):
            return f"{n:,} carr{'ies' if n == 1 else 'y'}"
        why = [f"{carry(later)} the amount it closed at after {as_of} (not known then)" if later else "",
               f"{carry(counting)} one, but their segments have no won amount (revenue counts won deals there)"
               if counting else "",
               f"{carry(blank)} none (blank or 0)" if blank else ""]
        cal.warnings.append(f"--open-amounts: none of the {len(cal.pipeline)} open deals is valued at its own amount: "
                            + "; ".join(w for w in why if w) + "; every open deal is valued as a won deal of its "
                            "segment is")
    elif priced and open_amounts is None:
        cal.warnings.append(f"{len(priced)} of the {len(cal.pipeline)} open deals carry an amount (mean "
                            f"{np.mean(priced):,.2f}), not used: every open deal is valued as a won deal of its "
                            "segment is (its won amounts, resampled); --open-amounts values each by its own")
    if cal.pipeline:
        cal.base["pipeline"] = {"file": pipeline_file}
    _shock_mechanism(cal, stages, whole, lead_level, new_lead_share)
    _stall_mechanism(cal, stages, whole)
    _speed_mechanism(cal, stages, whole)
    _trend_mechanism(deals, as_of, cal, since, shares, horizon_days)
    _season_mechanism(deals, as_of, cal, segments)
    closing = quarter_end_closing(deals, as_of, cal, gate=like is None) \
        if like is None or "closing" in like.mechanisms else None
    if closing:
        last = stages[-1]
        entries = [d.entered[-1] for d in deals if d.outcome == "won" and d.entered[-1] is not None
                   and d.closed is not None and d.closed <= as_of]
        factor = unslipped_factor(whole[-1].fit.days[1], closing, entries, cal.fiscal_year_start or 1)

        def apply_closing(doc, closing=closing, factor=factor):
            doc["closing"] = closing
            for seg in doc["segments"].values():  # the fitted times hold the slips already
                seg["funnel"][last]["days"] = _stretched(seg["funnel"][last]["days"], factor)
        cal.mechanisms["closing"] = Mechanism("closing", apply_closing,
                                              f"months 1 and 2 slip {closing['slip'][1]:.2f} and "
                                              f"{closing['slip'][2]:.2f} into the last {closing['window_days']} days; "
                                              f"the last stage's days x{factor:.2f} (the fitted times held the slips)")
    fitted = team_capacity(deals, as_of, cal)
    if fitted:
        cal.mechanisms["capacity"] = Mechanism("capacity", lambda doc: doc.__setitem__("capacity", fitted),
                                               f"{fitted['won_per_month']:.1f} wins a month")
    return cal


def capped_sigma(sigma: float, kind: str, cal: Calibration) -> float:
    """A shock's sigma (log scale), rounded to 4 digits and held to the format's largest
    (:data:`forecaster.scenario.limits.MAX_SHOCK`: ``kind`` is ``leads``, ``drift.leads``,
    ``convert`` or ``drift.convert``), with a note when held: a level fitted to a
    degenerate history (a lone deal decades before the rest) can drift further than any
    scenario may say, and calibration must never write a scenario the format refuses."""
    from forecaster.scenario.limits import MAX_SHOCK

    value = round(sigma, 4)
    if value > MAX_SHOCK[kind]:
        cal.notes.append(f"shocks: the {kind} sigma fitted, {value:g}, is held to the format's largest, "
                         f"{MAX_SHOCK[kind]:g}")
        return MAX_SHOCK[kind]
    return value


def _shock_mechanism(cal: Calibration, stages, whole, lead_level, new_lead_share) -> None:
    """Shared shocks: the levels' uncertainty in the horizon's first month, drawn once per
    trial, and each month after the levels' monthly drift (``shocks.drift``)."""
    shocks: dict = {"drift": {}}
    if lead_level is not None:
        shocks["leads"] = capped_sigma(math.sqrt(lead_level.variance(1)), "leads", cal)
        shocks["drift"]["leads"] = capped_sigma(math.sqrt(lead_level.variance(2) - lead_level.variance(1)),
                                                "drift.leads", cal)
    if any(w.level is not None for w in whole):
        # the conversion shock moves new leads (a month past the last cohort) and open deals
        # (from cohorts already seen: the level now) alike: sized for their mix of wins
        new = new_lead_share(cal)
        cal.notes.append(f"all segments: {new:.0%} of the horizon's expected wins come from new leads, the rest from "
                         "the open pipeline: the conversion shocks are sized for that mix")
        levels = [(stage, w.level) for stage, w in zip(stages, whole) if w.level is not None]
        shocks["convert"] = {stage: capped_sigma(math.sqrt(level.variance(new)), "convert", cal)
                             for stage, level in levels}
        shocks["drift"]["convert"] = {stage: capped_sigma(math.sqrt(level.variance(1) - level.variance(0)),
                                                          "drift.convert", cal) for stage, level in levels}
    shocks = {k: v for k, v in shocks.items() if v}
    if shocks:
        import copy

        def apply(doc, shocks=shocks):
            doc["shocks"] = copy.deepcopy(shocks)
        cal.mechanisms["shocks"] = Mechanism("shocks", apply, f"leads {shocks.get('leads', 0)}, convert "
                                             f"{shocks.get('convert', {})}")


def _stall_mechanism(cal: Calibration, stages, whole) -> None:
    """Stalled deals: the share of a stage's non-converting leads that never leave (fitted
    with the stage's times, :func:`forecaster.history.fitting.fit_stage`)."""
    stalled = {stage: round(w.fit.stalled, 4) for stage, w in zip(stages, whole) if w.fit.stalled >= 0.005}
    if stalled:
        cal.mechanisms["stalled"] = Mechanism("stalled", lambda doc: doc.__setitem__("stalled", dict(stalled)),
                                              ", ".join(f"{k} {v:.1%}" for k, v in stalled.items()))


def _speed_mechanism(cal: Calibration, stages, whole) -> None:
    """Cycle speed that drifts: each stage's ``days`` stretched by its cohorts' time scale
    against the pooled time (:func:`forecaster.history.fitting.cohort_conversion`) where the
    next month's cohort is expected: the mean one month on of a local linear trend through
    the cohorts' scales (unbiased for the next cohort whether the cycle keeps speeding up or
    holds still; a local level lags a steady trend by the months it averages), or with
    fewer than 4 cohorts that show their speed, the local level. The walk-forward inside
    the history decides whether it is kept."""
    factors, how = {}, {}
    for stage, w in zip(stages, whole):
        trend = w.speed_trend
        if trend is not None:
            log_f, how[stage] = trend.mean(1.0), f"trend {trend.slope:+.3f} a month (log)"
        elif w.speed is not None:
            log_f, how[stage] = w.speed.m, "level"
        else:
            continue
        if abs(log_f) > 0.05:
            factors[stage] = math.exp(log_f)
    if not factors:
        return

    def apply(doc):
        for seg in doc["segments"].values():
            for stage, f in factors.items():
                seg["funnel"][stage]["days"] = _stretched(seg["funnel"][stage]["days"], f)
    summary = ", ".join(f"{k} x{v:.2f} ({how[k]})" for k, v in factors.items())
    cal.mechanisms["speed"] = Mechanism("speed", apply, summary)


def _stretched(dist: dict, factor: float) -> dict:
    """A time distribution stretched by ``factor`` (its scale parameter multiplied)."""
    out = dict(dist)
    key = {"lognormal": "median", "gamma": "mean", "weibull": "scale", "exponential": "mean"}[dist["dist"]]
    out[key] = _sig(dist[key] * factor)
    return out


def _trend_mechanism(deals, as_of: date, cal: Calibration, since, shares: dict, horizon_days: int) -> None:
    """A trend in arrivals: a local linear trend of the monthly arrivals (log scale); the
    lead rate becomes its level in the horizon's first month, ``growth_per_month`` its slope
    and the slope's uncertainty widens the shared drift of the lead rate."""
    y, v = _arrival_series(deals, as_of, since)
    if y is None:
        return
    trend = local_trend(y, v)
    if trend is None or abs(trend.slope) < 0.01:
        return
    months = max(horizon_days / AVG_MONTH_DAYS, 1.0)
    growth = math.expm1(trend.slope)
    level = trend.mean(1) + trend.variance(1) / 2
    drift = math.sqrt(max(trend.variance(months) - trend.variance(1), 0.0) / max(months - 1, 1.0))
    shock = math.sqrt(trend.variance(1))

    def apply(doc):
        for seg, d in doc["segments"].items():
            d["leads"]["per_month"]["mean"] = _sig(shares[seg] * math.exp(level) * AVG_MONTH_DAYS)
            d["leads"]["growth_per_month"] = round(growth, 4)
        if "shocks" in doc:
            doc["shocks"]["leads"] = capped_sigma(shock, "leads", cal)
            doc["shocks"].setdefault("drift", {})["leads"] = capped_sigma(drift, "drift.leads", cal)
    cal.mechanisms["trend"] = Mechanism("trend", apply, f"arrivals {growth:+.1%} a month (sd of the monthly log "
                                                        f"slope {trend.slope_sd:.3f})")


def _season_mechanism(deals, as_of: date, cal: Calibration, segments) -> None:
    season = {seg: seasonality([d.entered[0] for d in deals if d.segment == seg and d.entered[0] is not None
                                and d.entered[0] <= as_of], as_of) for seg in segments}
    season = {k: v for k, v in season.items() if v}
    if not season:
        cal.notes.append(f"no seasonality: fewer than {SEASON_MONTHS} whole months of arrivals")
        return

    def apply(doc):
        for seg, m in season.items():
            doc["segments"][seg]["leads"]["seasonality"] = dict(m)
    cal.mechanisms["seasonality"] = Mechanism("seasonality", apply, f"monthly, from {SEASON_MONTHS}+ months")


@dataclass
class WholeStage:
    """A stage fitted on every segment at once: the times (``fit``), the nonparametric time
    to convert (``cdf``), the conversion over the history (``p``), its latest level on the
    log-odds scale (``centre``), the drift models behind it (``level``) and behind the
    cohorts' time scale (``speed``: a local level; ``speed_trend``: a local linear trend),
    None without them."""

    fit: StageFit
    cdf: np.ndarray
    p: float
    centre: float
    level: Level | None
    speed: Level | None = None
    speed_trend: Trend | None = None


def _whole_stage(deals: list[Deal], s: int, stages: list[str], as_of: date, lost_observed: bool,
                 since: date | None, first_seen: date | None, cal: Calibration, families=None) -> WholeStage:
    data = stage_data(deals, s, len(stages), as_of, lost_observed, first_seen)
    try:
        fit = (fit_stage(data, families=(families[0],), lost_families=(families[1],) if families[1] else None)
               if families else fit_stage(data))
    except ValueError as exc:
        kind = TooLittleHistory if isinstance(exc, TooLittleHistory) else ValueError
        raise kind(f"stage {stages[s]!r} (by {as_of}): {exc}") from None
    # the conversions not seen yet included (:func:`with_fitted_tail`): a young history's
    # exposure and cohorts are read against the whole time to convert, not the part seen
    cdf = with_fitted_tail(conversion_cdf(data), fit, data.converted.size)
    counted = stage_data(deals, s, len(stages), as_of, lost_observed, first_seen, untruncated=True)
    exposure = conversion_exposure(counted, cdf)
    p = (counted.converted.size + 0.5) / (max(exposure, 0.0) + 1.0)
    if data.truncated:
        # deals seen only from the history's first close count in the delayed-entry likelihood,
        # not in the exposure: with little exposure left, its p carries the estimate
        w = exposure / (exposure + PRIOR_WEIGHT)
        p = expit(w * logit(p) + (1 - w) * logit(fit.p))
    cal.notes.append(f"all segments, {stages[s]}: {_counts(fit)}; days {fit.days[0]} (lowest AIC)"
                     + (f"; {fit.stalled:.1%} of the leads that do not convert never leave" if fit.stalled else "")
                     + f"; {counted.converted.size} conversions over an exposure of {exposure:.1f} deals "
                       f"-> p = {p:.4f}")
    law = LogTimeLaw.of(cdf, int(counted.converted.size))
    still_open = (lambda ages: open_non_converter(fit, ages)) if open_non_converter(fit, np.zeros(1)) is not None \
        else None
    level, (ys, vs), (tau2, revisions) = conversion_level(deals, s, len(stages), as_of, lost_observed, law, since,
                                                          first_seen, still_open, centre=logit(p))
    if level is None:
        cal.notes.append(f"all segments, {stages[s]}: fewer than 3 monthly cohorts: no drift measured")
        return WholeStage(fit, cdf, p, logit(p), None)
    speed, speed_trend = (local_level(ys, vs), local_trend(ys, vs)) if ys is not None else (None, None)
    cal.notes.append(f"all segments, {stages[s]}: {level.months} monthly cohorts; latest level "
                     f"p = {expit(level.m):.4f} ± {math.sqrt(level.variance(0)):.3f}, drift sd "
                     f"{math.sqrt(level.q):.3f} a month (log-odds)"
                     + (f"; cycle x{math.exp(speed.m):.2f} the pooled one" if speed is not None
                        else "; too few cohorts old enough to measure their speed")
                     + f"; young cohorts' extra variance {tau2:.3f} per (1 - seen) / seen, from {revisions} "
                       f"revisions")
    return WholeStage(fit, cdf, p, level.m, level, speed, speed_trend)


def steady_start(deals: list[Deal], as_of: date) -> date | None:
    """The first month of the history's steady part: the months before it, while arrivals
    (entries to the first stage) stay below half of the median month's, are the ramp-up of
    the export (a CRM being adopted, a dataset's first weeks), not the business drifting.
    None without arrivals."""
    counts = monthly_counts(_first_entries(deals, as_of))
    if not counts:
        return None
    months = months_until(date(*min(counts), 1), as_of)
    whole = [counts.get(m, 0) for m in months[:-1]] or [counts.get(months[-1], 0)]
    half = 0.5 * float(np.median(whole))
    for ym in months:
        if counts.get(ym, 0) >= half:
            return date(*ym, 1)
    return date(*months[-1], 1)


def _months_back(day: date, k: int) -> date:
    """The day ``k`` months before ``day``: a month's end for a month's end, else the same day
    of the month (the month's last one when it is shorter)."""
    y, m = divmod(day.year * 12 + day.month - 1 - k, 12)
    first = date(y, m + 1, 1)
    last = days_in_month(first)
    return first.replace(day=last if day == period_end(day, "month") else min(day.day, last))


def _unseen_odds(seen: float) -> float:
    """(1 - seen) / seen, seen floored at 1e-3: how young a cohort's reading is, the unit in
    which its extra variance is counted (:func:`conversion_level`, :func:`immaturity_variance`)."""
    return (1 - seen) / max(seen, 1e-3)


def _cohort_reading(cohort: list[Deal], s: int, n_stages: int, as_of: date, lost_observed: bool, law: LogTimeLaw,
                    still_open, centre: float | None = None) -> tuple:
    """What a monthly cohort says on ``as_of``: its :class:`CohortEstimate` and the share of its
    conversions that could already show (its exposure over its deals)."""
    data = stage_data(cohort, s, n_stages, as_of, lost_observed)
    est = cohort_conversion(data, law, still_open, centre)
    exposure = conversion_exposure(data, law.cdf)  # refuses data without every deal's age
    assert data.ages is not None
    return est, exposure / max(data.ages.size, 1)


def immaturity_variance(cohorts: dict[tuple[int, int], list[Deal]], now: dict[tuple[int, int], tuple], s: int,
                        n_stages: int, as_of: date, lost_observed: bool, law: LogTimeLaw,
                        still_open, centre: float | None = None) -> tuple[float, int]:
    """The variance (log-odds) a young cohort's conversion carries beyond its own counts, per
    unit of (1 - seen) / seen, from how the history's cohorts were revised as they aged.

    A young cohort's count depends on more than its conversion and speed (a queue in front of
    the team, wins pushed to a quarter's end that the as-of date falls on). Each cohort is
    read again as it was :data:`REVISION_LAGS` months before ``as_of``; its revision r (then
    minus now, log-odds) is taken as normal with variance dv + tau^2 w, dv = v_then - v_now
    from the counts (at least 1e-6) and w = (1 - seen_then) / seen_then - (1 - seen_now) /
    seen_now (seen at least 1e-3). A read that could show less than one deal's conversion
    (exposure below 1: a cohort days old, an as-of date on the 1st) is its prior, not a
    reading, and is not counted: its revision is bounded by the prior's grid while the model
    would give it a variance of tau^2 times hundreds, pulling tau^2 down. tau^2 is
    the maximum of that likelihood together with one pseudo-revision that says
    :data:`IMMATURE_VAR` (r^2 = IMMATURE_VAR w, dv = 0, w = 1): with no revision it is the
    prior, and a revision whose own counts are noisy (large dv) says little. A
    history whose cohorts' early reads agree with their later ones trusts young cohorts by
    their counts; one whose early reads were far off keeps them loose. ``cohorts``: month ->
    its deals, for the months of ``now``; ``now``: month -> its reading on ``as_of``
    (:func:`_cohort_reading`). Returns tau^2 and the number of revisions."""
    r2, dv, w = [IMMATURE_VAR], [0.0], [1.0]  # the prior's pseudo-revision
    for lag in REVISION_LAGS:
        then = _months_back(as_of, lag)
        for key, cohort in cohorts.items():
            if date(*key, 1) > then:
                continue
            early = [d for d in cohort if d.entered[s] <= then]
            if not early:
                continue
            est_then, seen_then = _cohort_reading(early, s, n_stages, then, lost_observed, law, still_open, centre)
            if seen_then * len(early) < 1:  # less than one deal's conversion could show then
                continue
            est_now, seen_now = now[key]
            weight = _unseen_odds(seen_then) - _unseen_odds(seen_now)
            r = est_then.logit_p - est_now.logit_p
            if weight > 0 and math.isfinite(r) and math.isfinite(est_then.var_logit_p):
                r2.append(r * r)
                dv.append(max(est_then.var_logit_p - est_now.var_logit_p, 1e-6))
                w.append(weight)
    return revision_variance(np.array(r2), np.array(dv), np.array(w)), len(r2) - 1


def revision_variance(r2: np.ndarray, dv: np.ndarray, w: np.ndarray) -> float:
    """The maximum-likelihood tau^2 of revisions r_i ~ N(0, dv_i + tau^2 w_i), given r_i^2
    (``r2``), dv_i and w_i (shape (n,) each, dv_i + tau^2 w_i > 0), searched on [1e-4, 100]:
    :func:`immaturity_variance`'s estimate. With every dv_i = 0 it is the closed form
    mean(r_i^2 / w_i)."""
    def minus_loglik(log_tau2: float) -> float:
        var = dv + math.exp(log_tau2) * w
        return float(np.sum(np.log(var) + r2 / var))

    best = minimize_scalar(minus_loglik, bounds=(math.log(1e-4), math.log(1e2)), method="bounded")
    return math.exp(float(best.x))


def conversion_level(deals: list[Deal], s: int, n_stages: int, as_of: date, lost_observed: bool,
                     law: LogTimeLaw, since: date | None = None,
                     first_seen: date | None = None, still_open=None,
                     centre: float | None = None) -> tuple[Level | None, tuple, tuple]:
    """The drifting conversion of stage ``s``, and its drifting speed: local levels
    (:mod:`forecaster.history.drift`) over the last :data:`DRIFT_MONTHS` monthly entry cohorts from
    the month ``since`` on, each cohort's conversion (log-odds) and time scale (log, against
    the pooled time to convert ``law``) estimated together
    (:func:`forecaster.history.fitting.cohort_conversion`), so that faster closing is not read as
    higher conversion; with ``still_open`` (losses recorded), a cohort's losses count too, so
    that wins that wait are not read as lower conversion. Young cohorts tell little, so they
    weigh little: their conversion's variance grows by tau^2 (1 - seen) / seen, tau^2 measured
    from the cohorts' own revisions (:func:`immaturity_variance`), their speed's by
    :data:`IMMATURE_VAR` (1 - seen) / seen. The conversion's local level lets a cohort be a
    one-off (``outliers``), so that a last cohort far off the level is not taken for a jump
    outright. Cohorts that entered before the
    history's first close (``first_seen``) are left out. ``centre``: the pooled conversion's
    log-odds, around which each cohort's likelihood is read (:func:`cohort_conversion`;
    None: under a flat prior, as before December 2026). Returns the conversion's level (None
    with fewer than 3 cohorts), the cohorts' log time scales and their variances, (ys, vs),
    shape (months,) each (NaN: none), for the speed's drift models, and (tau^2, revisions)."""
    cohorts: dict[tuple[int, int], list[Deal]] = {}
    for d in deals:
        e = d.entered[s]
        if e is not None and e <= as_of and (first_seen is None or e >= first_seen):
            cohorts.setdefault((e.year, e.month), []).append(d)
    if not cohorts:
        return None, (None, None), (IMMATURE_VAR, 0)
    months = months_until(max(date(*min(cohorts), 1), since or date.min), as_of)[-DRIFT_MONTHS:]
    now = {key: _cohort_reading(cohorts[key], s, n_stages, as_of, lost_observed, law, still_open, centre)
           for key in months if key in cohorts}
    tau2, pairs = immaturity_variance({key: cohorts[key] for key in now}, now, s, n_stages, as_of, lost_observed,
                                      law, still_open, centre)
    y, v = np.full(len(months), np.nan), np.full(len(months), np.nan)
    ys, vs = np.full(len(months), np.nan), np.full(len(months), np.nan)
    for k, key in enumerate(months):
        if key in now:
            est, seen = now[key]
            # what a young cohort says of its conversion and its speed is trusted in proportion
            # to how much of it could already show: its conversion by what the history's
            # revisions measured, its speed by the prior (the few early conversions of a cohort
            # days old lean on the left tail of the pooled law, which revisions of the
            # conversion do not measure)
            young = _unseen_odds(seen)
            y[k], v[k] = est.logit_p, est.var_logit_p + tau2 * young
            if math.isfinite(est.var_log_scale):  # a cohort too young to say anything of its speed: none
                ys[k], vs[k] = est.log_scale, est.var_log_scale + IMMATURE_VAR * young
    return local_level(y, v, outliers=True), (ys, vs), (tau2, pairs)


MIN_MONTH_COUNT = 1.5
"""Arrivals a month must be expected to bring to be read on the log scale (E log(n + 1/2) is
log mu + 0.026 at 2, + 0.066 at 1.5, + 0.17 at 1, + 0.75 at 1/3): a history of fewer a month
has no arrival level, and its lead rate is its recent count over its days (:func:`_lead_rate`)."""


def _first_entries(deals: list[Deal], as_of: date) -> list[date]:
    """The day each deal entered its first stage, for the deals that had by ``as_of``."""
    return [d.entered[0] for d in deals if d.entered[0] is not None and d.entered[0] <= as_of]


GAP_MONTHS = 3
"""Whole months in a row without a new deal, amid months that had some, that
:func:`arrival_gap` reads as a gap in the export rather than a pause in the leads."""


def arrival_gap(deals: list[Deal], as_of: date) -> str | None:
    """A warning when :data:`GAP_MONTHS` or more whole months in a row, among the last
    :data:`DRIFT_MONTHS` before ``as_of`` (those the arrivals are read from), have no deal
    entering its first stage where the months before had at least 5 a month (median): more
    likely a gap in the export (a filter, a migration) than no leads, and the arrivals' level,
    drift and shocks read those months as real (review: six empty months between two busy
    ones raised the lead shock to 0.59 without a word). The latest such run is said; not one
    whose calendar months were empty a year before too (a business that pauses every summer)."""
    first = _first_entries(deals, as_of)
    if not first:
        return None
    counts = monthly_counts(first)
    months = months_until(min(first), as_of)[1:]  # the first month: cut by the history's start
    if (as_of.year, as_of.month) in months and as_of != period_end(as_of, "month"):
        months = months[:-1]  # as_of's month, not whole
    runs, run = [], []
    for i, m in enumerate(months + [None]):
        if m is not None and counts.get(m, 0) == 0:
            run.append(i)
            continue
        if len(run) >= GAP_MONTHS and run[-1] >= len(months) - DRIFT_MONTHS:
            runs.append(run)
        run = []
    for run in reversed(runs):
        before = [counts.get(x, 0) for x in months[max(0, run[0] - 12):run[0]]]
        a_year_before = [i - 12 for i in run]
        if a_year_before[0] >= 0 and all(counts.get(months[i], 0) == 0 for i in a_year_before):
            continue  # the same months were empty a year before: a season, not a gap
        if before and float(np.median(before)) >= 5:
            (y0, m0), (y1, m1) = months[run[0]], months[run[-1]]
            return (f"no deal entered from {y0}-{m0:02d} to {y1}-{m1:02d} ({len(run)} whole months), where the "
                    f"months before brought {float(np.median(before)):,.0f} a month: a gap in the export (a "
                    "filter, a migration)? The arrivals are read as if no lead came then")
    return None


def _arrival_series(deals: list[Deal], as_of: date, since: date | None = None):
    """Log daily arrivals per month, log((n + 1/2) / days) (seasonality divided out when it is
    fitted), and their variances 1 / (mu + 1/2), mu the month's count expected at the
    window's mean rate, over the last :data:`DRIFT_MONTHS` months from ``since`` on, never
    the first month, which the history's start likely cuts: two arrays of shape (months,),
    NaN where a month is not read (mu below :data:`MIN_MONTH_COUNT`, or a calendar month
    the seasonality has no arrivals in); (None, None) without arrivals."""
    first = _first_entries(deals, as_of)
    if not first:
        return None, None
    counts = monthly_counts(first)
    season = seasonality(first, as_of)
    months = [m for m in months_until(min(first), as_of)[1:] if since is None or m >= (since.year, since.month)]
    months = months[-DRIFT_MONTHS:]
    y, v = np.full(len(months), np.nan), np.full(len(months), np.nan)
    days = np.array([as_of.day if (yr, mo) == (as_of.year, as_of.month) else days_in_month(date(yr, mo, 1))
                     for yr, mo in months], dtype=float)
    factor = np.array([season.get(mo, 1.0) for _, mo in months])
    n = np.array([counts.get(m, 0) for m in months], dtype=float)
    ok = factor > 0  # a calendar month with no arrivals in other years has factor 0
    if not ok.any():
        return y, v
    # a month's expected count, from the window's mean rate: its variance must not come from
    # its own count, or the months that happened to bring more would weigh more (at 2 leads a
    # month, with empty months left out too, the level read 25% high)
    expected = float(np.sum(n[ok]) / np.sum(days[ok] * factor[ok])) * days * factor
    # log(n + 1/2): a month with none counts, and the log of a Poisson count is unbiased to
    # first order (E log(n + c) = log mu + (c - 1/2) / mu + ...); its variance about 1 / mu.
    # Below MIN_MONTH_COUNT expected the next terms are not small (+0.17 at 1, +0.75 at 1/3:
    # a month cut short by an as-of date early in it), so such a month is not read
    ok &= expected >= MIN_MONTH_COUNT
    y[ok] = np.log((n[ok] + 0.5) / days[ok] / factor[ok])
    v[ok] = 1.0 / (expected[ok] + 0.5)
    return y, v


def arrival_level(deals: list[Deal], as_of: date, cal: Calibration, since: date | None = None) -> Level | None:
    """The drifting lead flow of the whole: a local level of :func:`_arrival_series`. None
    with fewer than 3 months."""
    y, v = _arrival_series(deals, as_of, since)
    if y is None:
        return None
    level = local_level(y, v)
    if level is not None:
        cal.notes.append(f"all segments: {level.months} months of arrivals; latest level "
                         f"{math.exp(level.m) * AVG_MONTH_DAYS:.1f} a month, drift sd {math.sqrt(level.q):.3f} "
                         f"a month (log)")
    return level


def _counts(fit) -> str:
    c = fit.counts
    return f"{c['converted']} converted, {c['lost']} lost, {c['open']} open (censored) -> p = {fit.p:.4f} ± {fit.p_se:.4f}"


def _sig(v: float) -> float:
    """``v`` to 6 significant digits (rounding to decimals would write a tiny median as 0)."""
    return float(f"{v:.6g}")


def _rounded(entry: dict) -> dict:
    return {k: {kk: (_sig(v) if isinstance(v, float) else v) for kk, v in q.items()} for k, q in entry.items()}


def _lead_rate(deals: list[Deal], everyone: list[Deal], as_of: date, cal: Calibration, seg: str,
               level: Level | None, ahead: float, arrivals_from: date | None = None) -> tuple[dict, float]:
    """A segment's arrivals: its share of the whole's latest level (the level's uncertainty
    is the shared ``shocks.leads``), or, without a level, its own recent rate; and its share
    of the whole's recent arrivals. ``arrivals_from``: the first day arrivals show in full
    (:func:`thinned_until`); the recent rate counts none before it."""
    def recent(ds):
        first = _first_entries(ds, as_of)
        span_start = max(min(first, default=as_of), as_of - timedelta(days=LOOKBACK_DAYS - 1),
                         arrivals_from or date.min)
        return first, span_start, sum(1 for e in first if e >= span_start)

    first, span_start, count = recent(deals)
    _, _, total = recent(everyone)
    days = (as_of - span_start).days + 1
    if count < 10:
        cal.warnings.append(f"{seg}: only {count} new deals in the last {days} days: the lead rate is uncertain")
    if level is not None:
        share = max(count, 0.5) / max(total, 1)
        mean = share * math.exp(level.m + level.variance(ahead) / 2) * AVG_MONTH_DAYS
        cv = math.sqrt(max(1 - share, 0.0) / max(count, 0.5))  # what the counts say about the share
        cal.notes.append(f"{seg}: {count} of the {total} deals entered in the {days} days before {as_of} "
                         f"(share {share:.3f}): {mean:.1f} a month")
    else:
        mean = max(count, 0.5) / days * AVG_MONTH_DAYS
        cv = 1 / math.sqrt(max(count, 1))
        if days < MIN_RATE_DAYS:
            cal.warnings.append(f"{seg}: its arrivals span only {days} day{'s' if days > 1 else ''} before {as_of}: "
                                f"the rate a month ({mean:.1f}) is theirs scaled to a month, and its spread counts "
                                f"only their number, not how one week differs from another")
        cal.notes.append(f"{seg}: {count} deals entered {days} days before {as_of}: {mean:.1f} a month")
    leads: dict[str, Any] = {"per_month": {"dist": "gamma", "mean": round(mean, 4), "cv": round(max(cv, 1e-3), 4)}}
    if level is not None and level.r > 0:
        # months vary around the level beyond counting noise: daily negative-binomial
        # arrivals with d = r * days a month give a month's count the variance m + r m^2
        leads["dispersion"] = round(level.r * AVG_MONTH_DAYS, 4)
    return leads, max(count, 0.5) / max(total, 1)


SEASON_MONTHS = 24
"""Whole months of arrivals needed (two of each calendar month) before seasonality is fitted."""


def seasonality(entries: list, as_of: date) -> dict:
    """Calendar month -> multiplier of a month's arrivals, from the whole months known on
    ``as_of`` (its own when it is the month's last day; empty with fewer than
    :data:`SEASON_MONTHS`); the multipliers average 1 (the rate is the recent level).

    Each calendar month's effect is read against a trend: a Poisson regression of the
    monthly counts on a log-linear trend and twelve month effects (summing to zero), so a
    history growing 5% a month does not read as Decembers busier than Januaries (the
    calendar months' plain means differed by x1.7 there). How far the effects are trusted
    is what the months say beyond noise: they are shrunk toward 1 as 1 + w (e - 1), with
    w = max(0, 1 - 1/F) and F the quasi-Poisson statistic of the month effects against the
    trend alone (likelihood ratio over its 11 degrees of freedom, scaled by the full model's
    Pearson dispersion, at least 1): about 1 for months that differ only by noise (flat
    multipliers), large for a clear pattern (kept nearly whole), as the quarter shape of a
    team's capacity is."""
    # the whole months known on as_of: through as_of's own when as_of is its last day (an
    # export of 24 calendar months to 30 June was read as 23 until December 2026)
    end = as_of if as_of == period_end(as_of, "month") else as_of.replace(day=1) - timedelta(days=1)
    counts = monthly_counts(e for e in entries if e <= end)
    if not counts:
        return {}
    months = months_until(date(*min(counts), 1), end)
    if len(months) < SEASON_MONTHS:
        return {}
    y = np.array([counts.get(ym, 0) for ym in months], dtype=float)
    if y.sum() <= 0:
        return {}
    n = y.size
    calendar_month = np.array([m for _, m in months])
    trend = np.column_stack([np.ones(n), (np.arange(n) - (n - 1) / 2) / n])
    dummies = (calendar_month[:, None] == np.arange(1, 13)[None, :]).astype(float)
    with_months = np.column_stack([trend, dummies[:, :11] - dummies[:, 11:]])  # effects that sum to zero
    exposure = np.ones(n)  # per calendar month, as the format's per_month and its multipliers are
    ll0, _ = poisson_fit(y, exposure, trend)
    ll1, beta = poisson_fit(y, exposure, with_months)
    mu = np.exp(np.clip(with_months @ beta, -50, 50))
    dispersion = max(float(np.sum((y - mu) ** 2 / np.maximum(mu, 1e-9))) / max(n - 13, 1), 1.0)
    f_stat = 2 * max(ll1 - ll0, 0.0) / 11 / dispersion
    weight = max(0.0, 1.0 - 1.0 / f_stat) if f_stat > 0 else 0.0
    effects = np.exp(np.append(beta[2:], -beta[2:].sum()))
    effects = effects / effects.mean()
    shaped = 1.0 + weight * (effects - 1.0)
    return {m: round(float(shaped[m - 1]), 4) for m in range(1, 13)}


def _won_amounts(deals: list[Deal], as_of: date) -> tuple[list, list[float]]:
    """The amounts of the deals won by ``as_of`` (None where blank), and those given, sorted."""
    won = [d.amount for d in deals if d.outcome == "won" and d.closed is not None and d.closed <= as_of]
    return won, sorted(a for a in won if a is not None)  # an amount of 0 (a free pilot) is worth 0


def _deal_value(deals: list[Deal], as_of: date, cal: Calibration, seg: str, every: list[Deal]):
    """A segment's ``deal_value``: its won amounts, resampled (``deals``: the segment's;
    ``every``: the whole history's). A segment with no won amount yet (no win, or wins
    without amounts) resamples the whole history's won amounts, as its conversion borrows
    from the whole; only a history with no won amount at all makes revenue count won deals
    (deal_value 1)."""
    won, values = _won_amounts(deals, as_of)
    if not values:
        pooled = _won_amounts(every, as_of)[1]
        if pooled:
            cal.warnings.append(f"{seg}: no won deal with an amount by {as_of} "
                                f"({'none won' if not won else f'{len(won)} won without one'}): deal_value resamples "
                                f"the {len(pooled)} won amounts of all segments")
            return {"dist": "empirical", "values": [round(v, 2) for v in pooled]}
        cal.warnings.append(f"{seg}: no won deal has an amount: deal_value is 1, so revenue counts won deals")
        return 1
    if len(values) < len(won):
        cal.warnings.append(f"{seg}: {len(won) - len(values)} of {len(won)} won deals have no amount: deal_value "
                            "resamples the others")
    if len(values) < 20:
        cal.warnings.append(f"{seg}: only {len(values)} won amounts to resample")
    if not any(values):  # a revenue of 0 in every trial, silently, unless said
        cal.warnings.append(f"{seg}: all {len(values)} won amounts are 0, so its revenue is forecast as 0; if the "
                            "amounts are in another column, name it with --column amount=...")
    return {"dist": "empirical", "values": [round(v, 2) for v in values]}
