"""Calibration: from a deal history to a scenario, using only what was known on a date.

The history is read by :mod:`forecaster.history` (one :class:`Deal` per row).

For an as-of date T, only dates on or before T count: a deal closed after T was still open
on T. What is fitted, and how:

* **Times.** Each stage's ``days`` (and ``days_lost``) by censored maximum likelihood
  (:mod:`forecaster.fitting`): deals still open are unfinished, not lost. Segments with
  fewer than :data:`MIN_CONVERTED` conversions in a stage use the pooled times.
* **Conversion, level and drift.** Conversions are counted against their exposure (each
  deal weighted by the chance that its conversion would already show, from the
  nonparametric time to convert), for the whole and for each monthly entry cohort. The
  cohorts' log-odds go through a local-level model (:mod:`forecaster.drift`) from the
  month the history is steady (:func:`steady_start`): its latest level is the
  conversion, and its uncertainty over the horizon (level, drift, jumps) becomes the
  stage's ``shocks.convert``, shared by every segment, sized for the horizon's mix of
  expected wins from new leads (months ahead) and open deals (cohorts already seen).
* **Segments** keep their conversion relative to the whole (on the log-odds scale),
  shrunk toward it by a beta prior worth :data:`PRIOR_WEIGHT` deals at the pooled rate;
  their beta's concentration is that prior plus their exposure.
* **Lead arrivals.** The whole's monthly arrivals go through the same local-level model
  on the log scale: the latest level is shared out by each segment's part of the last
  :data:`LOOKBACK_DAYS` days' arrivals (a gamma whose cv is the share's sampling error),
  the level's uncertainty becomes ``shocks.leads``, and month-to-month noise beyond
  Poisson becomes ``dispersion``. With fewer than 3 months, the segment's own recent rate.
* **Quarter-end closing** (:func:`quarter_end_closing`) from the last whole quarters of wins.
* **Capacity**, when asked for (:func:`team_capacity`): what a saturated team won in its
  last whole quarters is what it can win.
* **Deal values** are the won amounts, resampled (``empirical``); the deals open on T
  become the pipeline.
"""
from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .calendar import days_in_month
from .drift import Level, empirical_logit, expit, local_level, logit
from .fitting import StageData, conversion_cdf, conversion_exposure, fit_stage
from .history import PRESETS, Deal, load_deals, read_history, read_olist, won_dates  # noqa: F401 (re-exported)

MIN_CONVERTED = 30
DRIFT_MONTHS = 12
"""Monthly entry cohorts (the last ones before the as-of date) that measure drift."""
PRIOR_WEIGHT = 30.0
LOOKBACK_DAYS = 90
AVG_MONTH_DAYS = 30.4375

@dataclass
class Calibration:
    """What calibration produced: the scenario document, the pipeline rows, and notes."""

    scenario: dict
    pipeline: list
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def stage_data(deals: list[Deal], s: int, n_stages: int, as_of: date, lost_observed: bool) -> StageData:
    """What was known on ``as_of`` about the deals that entered stage ``s``."""
    conv, lost, open_, ages = [], [], [], []
    for d in deals:
        e = d.entered[s]
        if e is None or e > as_of:
            continue
        ages.append((as_of - e).days)
        nxt = d.entered[s + 1] if s + 1 < n_stages else None
        closed = d.closed if d.closed is not None and d.closed <= as_of else None
        if nxt is not None and nxt <= as_of:
            conv.append((nxt - e).days)
        elif d.outcome == "won" and closed is not None:
            conv.append((closed - e).days)
        elif d.outcome == "lost" and closed is not None:
            lost.append((closed - e).days)
        else:
            open_.append((as_of - e).days)
    as_array = lambda v: np.maximum(np.asarray(v, dtype=float), 0.0)  # noqa: E731 (a same-day data-entry slip)
    return StageData(as_array(conv), as_array(lost), as_array(open_), lost_observed=lost_observed,
                     ages=as_array(ages))


def calibrate(deals: list[Deal], stages: list[str], as_of: date, *, horizon_days: int = 90, name: str = "calibrated",
              lost_observed: bool = True, pipeline_file: str = "pipeline.csv", capacity: bool = False) -> Calibration:
    """Fit a scenario from ``deals`` as known on ``as_of`` (see the module docstring).

    ``capacity``: also fit the team's capacity (:func:`team_capacity`), for a team whose
    deals wait for it (the analyst's call: see the README).
    """
    S = len(stages)
    segments = sorted({d.segment for d in deals})
    cal = Calibration(scenario={}, pipeline=[])
    ahead = (horizon_days / AVG_MONTH_DAYS + 1) / 2  # months from as_of's month to the horizon's average lead
    since = steady_start(deals, as_of)
    if since is not None:
        cal.notes.append(f"all segments: drift measured from {since:%Y-%m} on (earlier months: the history's "
                         "ramp-up, below half the median month's arrivals)")
    whole = [_whole_stage(deals, s, stages, as_of, lost_observed, since, cal) for s in range(S)]
    lead_level = arrival_level(deals, as_of, cal, since)
    seg_docs = {}
    for seg in segments:
        mine = [d for d in deals if d.segment == seg]
        funnel = {}
        for s, stage in enumerate(stages):
            data, w = stage_data(mine, s, S, as_of, lost_observed), whole[s]
            fit = w.fit
            if data.converted.size >= MIN_CONVERTED:
                fit = fit_stage(data)
                cal.notes.append(f"{seg}, {stage}: {_counts(fit)}; days {fit.days[0]}")
            else:
                cal.warnings.append(f"{seg}, {stage}: only {data.converted.size} conversions by {as_of}: conversion "
                                    f"shrunk toward the pooled {w.p:.3f}, pooled times used")
            # the segment's conversion relative to the whole, shrunk toward it: a beta prior worth
            # PRIOR_WEIGHT deals at the pooled rate, updated with the segment's conversions and
            # their exposure (open deals count only for the chance that a converting one would
            # already show: they are not lost); moved to the latest level of the whole
            exposure = conversion_exposure(data, w.cdf)
            p_seg = (data.converted.size + PRIOR_WEIGHT * w.p) / (exposure + PRIOR_WEIGHT)
            mean = expit(w.centre + logit(p_seg) - logit(w.p))
            entry = {"convert": {"dist": "beta", "mean": round(mean, 6),
                                 "concentration": round(exposure + PRIOR_WEIGHT, 3)},
                     "days": fit.days[1]}
            if fit.days_lost:
                entry["days_lost"] = fit.days_lost[1]
            funnel[stage] = _rounded(entry)
        if not lost_observed:  # leads that are never won stay in their stage (the data records no losses)
            for entry in funnel.values():
                entry["days_lost"] = {"dist": "fixed", "value": 1e9}
        seg_docs[seg] = {"leads": _lead_rate(mine, deals, as_of, cal, seg, lead_level, ahead), "funnel": funnel,
                         "deal_value": _deal_value(mine, as_of, cal, seg)}
    start = as_of + timedelta(days=1)
    cal.scenario = {"name": name, "description": f"calibrated on the history known on {as_of.isoformat()}",
                    "start": start.isoformat(), "end": (start + timedelta(days=horizon_days - 1)).isoformat(),
                    "report_by": "month", "trials": 10000, "seed": 0, "stages": list(stages), "segments": seg_docs}
    for d in deals:
        known = [(i, e) for i, e in enumerate(d.entered) if e is not None and e <= as_of]
        closed = d.closed is not None and d.closed <= as_of
        if known and not closed and (d.outcome == "open" or (d.closed or date.max) > as_of):
            i, e = known[-1]
            cal.pipeline.append({"deal_id": d.deal_id, "segment": d.segment, "stage": stages[i],
                                 "entered_stage": e.isoformat(), "amount": ""})
    if cal.pipeline:
        cal.scenario["pipeline"] = {"file": pipeline_file}
    # the level's uncertainty in the horizon's first month is a shock drawn once per trial;
    # each month after adds the level's monthly drift (``shocks.drift``)
    shocks: dict = {"drift": {}}
    if lead_level is not None:
        shocks["leads"] = round(math.sqrt(lead_level.variance(1)), 4)
        shocks["drift"]["leads"] = round(math.sqrt(lead_level.variance(2) - lead_level.variance(1)), 4)
    if any(w.level is not None for w in whole):
        # the conversion shock moves new leads (a month past the last cohort) and open deals
        # (from cohorts already seen: the level now) alike: sized for their mix of wins
        new = _new_lead_share(cal)
        cal.notes.append(f"all segments: {new:.0%} of the horizon's expected wins come from new leads, the rest from "
                         "the open pipeline: the conversion shocks are sized for that mix")
        levels = [(stage, w.level) for stage, w in zip(stages, whole) if w.level is not None]
        shocks["convert"] = {stage: round(math.sqrt(level.variance(new)), 4) for stage, level in levels}
        shocks["drift"]["convert"] = {stage: round(math.sqrt(level.variance(1) - level.variance(0)), 4)
                                      for stage, level in levels}
    shocks = {k: v for k, v in shocks.items() if v}
    if shocks:
        cal.scenario["shocks"] = shocks
    closing = quarter_end_closing(deals, as_of, cal)
    if closing:
        cal.scenario["closing"] = closing
    if capacity:
        fitted = team_capacity(deals, as_of, cal)
        if fitted:
            cal.scenario["capacity"] = fitted
    return cal


def _new_lead_share(cal: Calibration, trials: int = 400) -> float:
    """Expected share of the horizon's won deals that come from new leads (not the pipeline),
    from a short simulation of the calibrated scenario without shocks."""
    import tempfile

    from .loading import scenario_from_dict
    from .simulation import simulate

    if not cal.pipeline:
        return 1.0
    doc = {k: v for k, v in cal.scenario.items() if k not in ("shocks", "closing")}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / doc["pipeline"]["file"]).write_text(pipeline_csv(cal.pipeline))
        both = float(simulate(scenario_from_dict(doc, base_dir=tmp), trials=trials)["won_deals"].sum())
    doc.pop("pipeline")
    new = float(simulate(scenario_from_dict(doc), trials=trials)["won_deals"].sum())
    return min(new / both, 1.0) if both > 0 else 1.0


@dataclass
class WholeStage:
    """A stage fitted on every segment at once: the times (``fit``), the nonparametric time
    to convert (``cdf``), the conversion over the history (``p``), its latest level on the
    log-odds scale (``centre``) and the drift model behind it (``level``, None without one)."""

    fit: object
    cdf: np.ndarray
    p: float
    centre: float
    level: Level | None


def _whole_stage(deals: list[Deal], s: int, stages: list[str], as_of: date, lost_observed: bool,
                 since: date | None, cal: Calibration) -> WholeStage:
    data = stage_data(deals, s, len(stages), as_of, lost_observed)
    fit = fit_stage(data)
    cdf = conversion_cdf(data)
    exposure = conversion_exposure(data, cdf)
    p = data.converted.size / max(exposure, 1e-9)
    cal.notes.append(f"all segments, {stages[s]}: {_counts(fit)}; days {fit.days[0]} (lowest AIC); "
                     f"{data.converted.size} conversions over an exposure of {exposure:.1f} deals -> p = {p:.4f}")
    level = conversion_level(deals, s, len(stages), as_of, lost_observed, cdf, since)
    if level is None:
        cal.notes.append(f"all segments, {stages[s]}: fewer than 3 monthly cohorts: no drift measured")
        return WholeStage(fit, cdf, p, logit(p), None)
    cal.notes.append(f"all segments, {stages[s]}: {level.months} monthly cohorts; latest level "
                     f"p = {expit(level.m):.4f} ± {math.sqrt(level.variance(0)):.3f}, drift sd "
                     f"{math.sqrt(level.q):.3f} a month (log-odds)")
    return WholeStage(fit, cdf, p, level.m, level)


def steady_start(deals: list[Deal], as_of: date) -> date | None:
    """The first month of the history's steady part: the months before it, while arrivals
    (entries to the first stage) stay below half of the median month's, are the ramp-up of
    the export (a CRM being adopted, a dataset's first weeks), not the business drifting.
    None without arrivals."""
    counts = _monthly_counts(d.entered[0] for d in deals if d.entered[0] is not None and d.entered[0] <= as_of)
    if not counts:
        return None
    months = _months_until(date(*min(counts), 1), as_of)
    whole = [counts.get(m, 0) for m in months[:-1]] or [counts.get(months[-1], 0)]
    half = 0.5 * float(np.median(whole))
    for ym in months:
        if counts.get(ym, 0) >= half:
            return date(*ym, 1)
    return date(*months[-1], 1)


def _monthly_counts(dates) -> Counter:
    """How many of ``dates`` fall in each (year, month)."""
    return Counter((e.year, e.month) for e in dates)


def _months_until(first: date, as_of: date) -> list[tuple[int, int]]:
    """(year, month) from ``first``'s month to ``as_of``'s, inclusive."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (as_of.year, as_of.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def conversion_level(deals: list[Deal], s: int, n_stages: int, as_of: date, lost_observed: bool,
                     cdf: np.ndarray, since: date | None = None) -> Level | None:
    """The drifting conversion of stage ``s``: a local level (:mod:`forecaster.drift`) over
    the last :data:`DRIFT_MONTHS` monthly entry cohorts, each measured as its conversions
    over its exposure (``cdf``: the pooled time to convert) on the log-odds scale, from the
    month ``since`` on. Young cohorts have little exposure, so they weigh little. None with
    fewer than 3 cohorts."""
    cohorts: dict = {}
    for d in deals:
        e = d.entered[s]
        if e is not None and e <= as_of:
            cohorts.setdefault((e.year, e.month), []).append(d)
    if not cohorts:
        return None
    months = _months_until(max(date(*min(cohorts), 1), since or date.min), as_of)[-DRIFT_MONTHS:]
    y, v = np.full(len(months), np.nan), np.full(len(months), np.nan)
    for k, key in enumerate(months):
        if key in cohorts:
            data = stage_data(cohorts[key], s, n_stages, as_of, lost_observed)
            y[k], v[k] = empirical_logit(data.converted.size, conversion_exposure(data, cdf))
    return local_level(y, v)


def arrival_level(deals: list[Deal], as_of: date, cal: Calibration, since: date | None = None) -> Level | None:
    """The drifting lead flow of the whole: a local level of log daily arrivals per month
    (seasonality divided out when it is fitted), over the last :data:`DRIFT_MONTHS` months
    from ``since`` on, and never the first month, which the history's start likely cuts.
    None with fewer than 3 months."""
    first = [d.entered[0] for d in deals if d.entered[0] is not None and d.entered[0] <= as_of]
    if not first:
        return None
    counts = _monthly_counts(first)
    season = seasonality(first, as_of)
    months = [m for m in _months_until(min(first), as_of)[1:] if since is None or m >= (since.year, since.month)]
    months = months[-DRIFT_MONTHS:]
    y, v = np.full(len(months), np.nan), np.full(len(months), np.nan)
    for k, (yr, mo) in enumerate(months):
        n = counts.get((yr, mo), 0)
        days = as_of.day if (yr, mo) == (as_of.year, as_of.month) else days_in_month(date(yr, mo, 1))
        if n > 0:
            y[k], v[k] = math.log(n / days / season.get(mo, 1.0)), 1.0 / n
    level = local_level(y, v)
    if level is not None:
        cal.notes.append(f"all segments: {level.months} months of arrivals; latest level "
                         f"{math.exp(level.m) * AVG_MONTH_DAYS:.1f} a month, drift sd {math.sqrt(level.q):.3f} "
                         f"a month (log)")
    return level


def _whole_quarters(wins: list, as_of: date) -> list[tuple[date, date]]:
    """(first, last day) of the whole quarters from the first win's on (a quarter the first
    win falls inside of is cut by the history, so it is left out), ending by ``as_of``; the
    latest :data:`CLOSING_QUARTERS`."""
    if not wins:
        return []
    quarters = []
    y, q = wins[0].year, (wins[0].month - 1) // 3
    if wins[0] != date(y, 3 * q + 1, 1):
        y, q = (y + 1, 0) if q == 3 else (y, q + 1)
    while True:
        first = date(y, 3 * q + 1, 1)
        last = (date(y + 1, 1, 1) if q == 3 else date(y, 3 * q + 4, 1)) - timedelta(days=1)
        if last > as_of:
            break
        quarters.append((first, last))
        y, q = (y + 1, 0) if q == 3 else (y, q + 1)
    return quarters[-CLOSING_QUARTERS:]


def _quarter_months(wins: list[date], quarters: list[tuple[date, date]]) -> tuple[np.ndarray, np.ndarray]:
    """Wins and days in each month of each quarter: two arrays of shape (quarters, 3)."""
    by_month = _monthly_counts(wins)
    counts, days = np.zeros((len(quarters), 3)), np.zeros((len(quarters), 3))
    for i, (first, _) in enumerate(quarters):
        for k in range(3):
            counts[i, k] = by_month[(first.year, first.month + k)]
            days[i, k] = days_in_month(date(first.year, first.month + k, 1))
    return counts, days


def team_capacity(deals: list[Deal], as_of: date, cal: Calibration) -> dict | None:
    """The team's capacity, as the format's ``capacity``, from its last whole quarters of wins.

    For a team whose deals wait for it, what it won is what it can win: ``won_per_month``
    is the mean of those months, ``quarter_shape`` each month of the quarter's mean over
    it (per day, so February is not short-changed), and ``cv`` what the months vary around
    that shape beyond their counts (at least Poisson's 1/sqrt(wins)). None without a whole
    quarter.
    """
    wins = won_dates(deals, as_of)
    quarters = _whole_quarters(wins, as_of)
    if not quarters:
        cal.warnings.append("capacity: no whole quarter of wins yet: not fitted")
        return None
    counts, days = _quarter_months(wins, quarters)
    rates = counts / days  # wins per day, by quarter and month of the quarter
    shape = rates.mean(axis=0) / rates.mean()
    per_month = float(rates.mean()) * AVG_MONTH_DAYS
    ratios = rates / (rates.mean(axis=1, keepdims=True) * shape)  # each month against its quarter's shape
    spread = float(np.var(ratios.ravel(), ddof=1)) if len(quarters) > 1 else 0.0
    cv = math.sqrt(1 / max(per_month, 1.0) + spread)
    cal.notes.append(f"capacity: {per_month:.1f} wins a month over the last {len(quarters)} whole quarters, by month "
                     f"of the quarter x{shape[0]:.2f} / x{shape[1]:.2f} / x{shape[2]:.2f}, cv {cv:.3f}")
    return {"won_per_month": round(per_month, 2),
            "quarter_shape": {k + 1: round(float(shape[k]), 4) for k in range(3)}, "cv": round(cv, 4)}


CLOSING_QUARTERS = 4
"""Whole quarters of wins (the latest before the as-of date) that measure quarter-end bunching."""
WINDOWS = (5, 10, 15, 20, 30)


def quarter_end_closing(deals: list[Deal], as_of: date, cal: Calibration) -> dict | None:
    """Quarter-end bunching of wins, as the format's ``closing`` (None when there is none).

    From the last :data:`CLOSING_QUARTERS` whole quarters of wins (quarters that start on
    or after the month of the first win and end by ``as_of``): the daily win rate of each
    month of the quarter against the quarters' average b. When a chi-square test rejects an
    even spread (p < 0.01) and the third month is the busiest, months 1 and 2 slip with
    1 - rate_k / b, and the window is the one of :data:`WINDOWS` under which the daily wins
    of the third months are most likely (Poisson).
    """
    from scipy import stats

    wins = won_dates(deals, as_of)
    quarters = _whole_quarters(wins, as_of)
    if not quarters:
        cal.notes.append("closing: no whole quarter of wins yet: quarter-end bunching not measured")
        return None
    counts, days = (a.sum(axis=0) for a in _quarter_months(wins, quarters))
    by_day_before_end = np.zeros(31)
    for first, last in quarters:
        for w in wins:
            if (w.month - 1) % 3 == 2 and first <= w <= last:
                by_day_before_end[min((last - w).days, 30)] += 1
    total = counts.sum()
    if total < 60:
        return None
    b = total / days.sum()
    p_value = stats.chisquare(counts, days / days.sum() * total).pvalue
    note = (f"closing: wins per day in months 1/2/3 of the last {len(quarters)} whole quarters "
            f"{' / '.join(f'{c / d:.2f}' for c, d in zip(counts, days))} (chi-square p = {p_value:.2g})")
    rate = counts / days
    if p_value >= 0.01 or rate[2] <= rate.max() - 1e-12:
        cal.notes.append(note + ": no quarter-end bunching")
        return None
    slip = {k + 1: round(float(max(0.0, 1 - rate[k] / b)), 4) for k in range(2)}
    extra = sum(slip[k + 1] * b * days[k] for k in range(2))  # slipped wins landing in third months
    best = None
    for w in WINDOWS:  # third-month wins by days before the quarter's end (day 31 and on pooled)
        mean = np.array([len(quarters) * b + (extra / w if j < w else 0.0) for j in range(31)])
        ll = float(np.sum(by_day_before_end * np.log(mean) - mean))
        if best is None or ll > best[0]:
            best = (ll, w)
    cal.notes.append(note + f": months 1 and 2 slip {slip[1]:.2f} and {slip[2]:.2f} into the last "
                            f"{best[1]} days")
    return {"slip": slip, "window_days": best[1]}


PIPELINE_COLUMNS = ("deal_id", "segment", "stage", "entered_stage", "amount")


def pipeline_csv(rows: list) -> str:
    """The open deals of a calibration, as a pipeline CSV (the contract's columns)."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PIPELINE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _counts(fit) -> str:
    c = fit.counts
    return f"{c['converted']} converted, {c['lost']} lost, {c['open']} open (censored) -> p = {fit.p:.4f} ± {fit.p_se:.4f}"


def _rounded(entry: dict) -> dict:
    return {k: {kk: (round(v, 6) if isinstance(v, float) else v) for kk, v in q.items()} for k, q in entry.items()}


def _lead_rate(deals: list[Deal], everyone: list[Deal], as_of: date, cal: Calibration, seg: str,
               level: Level | None, ahead: float) -> dict:
    """A segment's arrivals: its share of the whole's latest level (the level's uncertainty
    is the shared ``shocks.leads``), or, without a level, its own recent rate."""
    def recent(ds):
        first = [d.entered[0] for d in ds if d.entered[0] is not None and d.entered[0] <= as_of]
        span_start = max(min(first, default=as_of), as_of - timedelta(days=LOOKBACK_DAYS - 1))
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
        cal.notes.append(f"{seg}: {count} deals entered {days} days before {as_of}: {mean:.1f} a month")
    leads = {"per_month": {"dist": "gamma", "mean": round(mean, 4), "cv": round(max(cv, 1e-3), 4)}}
    if level is not None and level.r > 0:
        # months vary around the level beyond counting noise: daily negative-binomial
        # arrivals with d = r * days a month give a month's count the variance m + r m^2
        leads["dispersion"] = round(level.r * AVG_MONTH_DAYS, 4)
    season = seasonality(first, as_of)
    if season:
        leads["seasonality"] = season
        cal.notes.append(f"{seg}: monthly seasonality from {SEASON_MONTHS}+ months of arrivals")
    else:
        cal.notes.append(f"{seg}: no seasonality: fewer than {SEASON_MONTHS} whole months of arrivals")
    return leads


SEASON_MONTHS = 24
"""Whole months of arrivals needed (two of each calendar month) before seasonality is fitted."""


def seasonality(entries: list, as_of: date) -> dict:
    """Calendar month -> multiplier: each month's mean arrivals over the mean of all months,
    from the whole months before ``as_of`` (empty with fewer than :data:`SEASON_MONTHS`).
    The rate is the recent level; multipliers are normalised so the months average 1."""
    counts = _monthly_counts(e for e in entries if (e.year, e.month) < (as_of.year, as_of.month))
    if not counts:
        return {}
    months = _months_until(date(*min(counts), 1), as_of)[:-1]  # the whole months before as_of's
    if len(months) < SEASON_MONTHS:
        return {}
    by_month = {m: np.mean([counts.get(ym, 0) for ym in months if ym[1] == m]) for m in range(1, 13)}
    level = np.mean(list(by_month.values()))
    if level <= 0:
        return {}
    return {m: round(float(v / level), 4) for m, v in by_month.items()}


def _deal_value(deals: list[Deal], as_of: date, cal: Calibration, seg: str):
    values = sorted(d.amount for d in deals if d.outcome == "won" and d.amount is not None and d.amount > 0
                    and d.closed is not None and d.closed <= as_of)
    if not values:
        cal.warnings.append(f"{seg}: no won amounts: deal_value is 1, so revenue counts won deals")
        return 1
    if len(values) < 20:
        cal.warnings.append(f"{seg}: only {len(values)} won amounts to resample")
    return {"dist": "empirical", "values": [round(v, 2) for v in values]}
