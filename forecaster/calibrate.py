"""Calibration: from a deal history to a scenario, using only what was known on a date.

The history is a CSV with one row per deal (column names mappable, see :data:`PRESETS`):

============  =============================================================================
deal_id       unique id
segment       optional; the segment the deal belongs to (default: one segment, ``all``)
<stage>       one column per stage (``--stages``): the date the deal entered it, blank if not
outcome       ``won``, ``lost`` or ``open`` (case-insensitive)
closed        the date it was won or lost
amount        the deal's value (needed for won deals; optional)
============  =============================================================================

For an as-of date T, only dates on or before T count: a deal closed after T was still open
on T. Each stage is fitted by censored maximum likelihood (:mod:`forecaster.fitting`):
deals still open are unfinished, not lost. Segments with fewer than
:data:`MIN_CONVERTED` conversions in a stage borrow strength from the whole: their
conversion is shrunk toward the pooled one (a beta prior with the pooled mean and a
concentration of :data:`PRIOR_WEIGHT` resolved deals) and they use the pooled times.
Lead arrivals are the deals that entered the first stage in the :data:`LOOKBACK_DAYS`
before T, per segment, as a gamma rate (Poisson-gamma: cv = 1/sqrt(count)). Deal values
are the won amounts, resampled (``empirical``). The deals open on T become the pipeline.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .errors import Problem, ScenarioError
from .fitting import StageData, conversion_exposure, fit_conversion, fit_stage

MIN_CONVERTED = 30
DRIFT_MONTHS = 12
"""Monthly entry cohorts (the last ones before the as-of date) that measure drift."""
PRIOR_WEIGHT = 30.0
LOOKBACK_DAYS = 90
AVG_MONTH_DAYS = 30.4375

PRESETS = {
    "generic": {"stages": None, "columns": {}},
    # Maven Analytics CRM opportunities (sales_pipeline.csv): one dated stage, engaging
    "maven": {"stages": ["engaging"], "columns": {"deal_id": "opportunity_id", "engaging": "engage_date",
                                                  "outcome": "deal_stage", "closed": "close_date",
                                                  "amount": "close_value", "segment": None},
              "outcomes": {"won": "won", "lost": "lost", "engaging": "open", "prospecting": "open"}},
    # a typical CRM opportunity export (Salesforce-style field names): one stage, from creation
    "crm": {"stages": ["opportunity"], "columns": {"deal_id": "Id", "opportunity": "CreatedDate",
                                                   "outcome": "StageName", "closed": "CloseDate",
                                                   "amount": "Amount", "segment": None},
            "outcomes": {"closed won": "won", "closed lost": "lost"}},
}


@dataclass
class Deal:
    deal_id: str
    segment: str
    entered: list          # date or None, one per stage
    outcome: str           # won | lost | open
    closed: date | None
    amount: float | None


@dataclass
class Calibration:
    """What calibration produced: the scenario document, the pipeline rows, and notes."""

    scenario: dict
    pipeline: list
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def _date(text: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    return date.fromisoformat(text[:10])


def read_history(path: Path, stages: list[str], columns: dict, outcomes: dict | None = None,
                 segment_column: str | None = None) -> list[Deal]:
    """Read a history CSV into deals; ``columns`` maps our names to the file's."""
    shown = str(path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except OSError as exc:
        raise ScenarioError(shown, [Problem("", f"cannot be read: {exc}")]) from None
    if not rows:
        raise ScenarioError(shown, [Problem("", "has no rows")])
    col = {name: columns.get(name, name) for name in ("deal_id", "outcome", "closed", "amount", *stages)}
    col["segment"] = segment_column or columns.get("segment", "segment")
    header = rows[0].keys()
    missing = [f"{k} (column {v!r})" for k, v in col.items() if v and v not in header and k not in ("segment", "amount")]
    if missing:
        raise ScenarioError(shown, [Problem("", f"lacks {', '.join(missing)}; its columns are: {', '.join(header)}")])
    outcomes = {**{"won": "won", "lost": "lost", "open": "open"}, **(outcomes or {})}
    deals, problems = [], []
    for line, row in enumerate(rows, start=2):
        try:
            raw = (row.get(col["outcome"]) or "").strip().lower()
            outcome = outcomes.get(raw)
            if outcome is None:
                raise ValueError(f"outcome {raw!r} is not one of {', '.join(sorted(outcomes))}")
            amount_text = (row.get(col["amount"]) or "").strip() if col["amount"] in header else ""
            deals.append(Deal(row[col["deal_id"]], (row.get(col["segment"]) or "all").strip() or "all"
                              if col["segment"] in header else "all",
                              [_date(row.get(col[s], "")) for s in stages], outcome, _date(row.get(col["closed"], "")),
                              float(amount_text) if amount_text else None))
        except ValueError as exc:
            problems.append(Problem("", f"line {line}: {exc}"))
            if len(problems) > 20:
                break
    if problems:
        raise ScenarioError(shown, problems)
    return deals


def load_deals(history: Path, preset: str, stages: str | None = None, segment_column: str | None = None,
               mapping=()) -> tuple[list[Deal], list[str], bool]:
    """Deals, stage names and whether losses are recorded, for a history and a preset.

    ``stages``: comma-separated stage columns (for the generic preset); ``mapping``:
    ``NAME=SOURCE`` items mapping our column names to the file's.

    Raises
    ------
    ValueError
        When the stages are not known or a mapping item is malformed.
    """
    if preset == "olist":
        return read_olist(history), ["lead"], False
    spec = PRESETS[preset]
    stage_list = stages.split(",") if stages else spec["stages"]
    if not stage_list:
        raise ValueError("give --stages (the stage columns, in order) or a --preset")
    columns = dict(spec["columns"])
    for item in mapping:
        key, _, value = item.partition("=")
        if not value:
            raise ValueError(f"--column expects NAME=SOURCE; got {item!r}")
        columns[key] = value
    return read_history(history, stage_list, columns, spec.get("outcomes"), segment_column), stage_list, True


def read_olist(folder: Path) -> list[Deal]:
    """The Olist marketing funnel: MQLs (one stage, ``lead``) won when they appear in the
    closed deals; never-won leads are open (the data records no losses). Segment: origin."""
    mqls = list(csv.DictReader((folder / "olist_marketing_qualified_leads_dataset.csv").read_text().splitlines()))
    won = {r["mql_id"]: r for r in csv.DictReader((folder / "olist_closed_deals_dataset.csv").read_text().splitlines())}
    deals = []
    for r in mqls:
        w = won.get(r["mql_id"])
        deals.append(Deal(r["mql_id"], (r["origin"] or "unknown").replace(" ", "_"), [_date(r["first_contact_date"])],
                          "won" if w else "open", _date(w["won_date"]) if w else None, None))
    return deals


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
              lost_observed: bool = True, pipeline_file: str = "pipeline.csv") -> Calibration:
    """Fit a scenario from ``deals`` as known on ``as_of`` (see the module docstring)."""
    S = len(stages)
    segments = sorted({d.segment for d in deals})
    cal = Calibration(scenario={}, pipeline=[])
    pooled = []
    for s in range(S):
        data = stage_data(deals, s, S, as_of, lost_observed)
        pooled.append(fit_stage(data))
        cal.notes.append(f"all segments, {stages[s]}: {_counts(pooled[s])}; days {pooled[s].days[0]} (lowest AIC)")
    seg_docs = {}
    for seg in segments:
        mine = [d for d in deals if d.segment == seg]
        funnel = {}
        for s, stage in enumerate(stages):
            data = stage_data(mine, s, S, as_of, lost_observed)
            base = pooled[s]
            if data.converted.size >= MIN_CONVERTED:
                fit = fit_stage(data)
                beta = fit.convert_beta()
                drift = conversion_drift(mine, s, S, as_of, lost_observed, fit)
                if drift is not None and drift < beta["concentration"]:
                    beta["concentration"] = round(drift, 3)
                    cal.notes.append(f"{seg}, {stage}: conversion drifts between monthly cohorts: "
                                     f"concentration {drift:.1f}")
                entry = {"convert": beta, "days": fit.days[1]}
                if fit.days_lost:
                    entry["days_lost"] = fit.days_lost[1]
                cal.notes.append(f"{seg}, {stage}: {_counts(fit)}; days {fit.days[0]}")
            else:
                # shrink toward the pooled conversion: a beta prior worth PRIOR_WEIGHT resolved deals,
                # updated with the conversions seen and their exposure (open deals only count for
                # the chance that a converting one would already show: they are not lost)
                exposure = conversion_exposure(data, base)
                p = (data.converted.size + PRIOR_WEIGHT * base.p) / (exposure + PRIOR_WEIGHT)
                entry = {"convert": {"dist": "beta", "mean": round(p, 6),
                                     "concentration": round(exposure + PRIOR_WEIGHT, 3)},
                         "days": base.days[1]}
                if base.days_lost:
                    entry["days_lost"] = base.days_lost[1]
                cal.warnings.append(f"{seg}, {stage}: only {data.converted.size} conversions by {as_of}: conversion "
                                    f"shrunk toward the pooled {base.p:.3f}, pooled times used")
            funnel[stage] = _rounded(entry)
        if not lost_observed:  # leads that are never won stay in their stage (the data records no losses)
            for entry in funnel.values():
                entry["days_lost"] = {"dist": "fixed", "value": 1e9}
        seg_docs[seg] = {"leads": _lead_rate(mine, as_of, cal, seg), "funnel": funnel,
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
    return cal


def conversion_drift(deals: list[Deal], s: int, n_stages: int, as_of: date, lost_observed: bool, fit) -> float | None:
    """Beta concentration matching how much the conversion moves between monthly cohorts.

    Each of the last :data:`DRIFT_MONTHS` monthly cohorts of deals entering the stage gets
    its own conversion (times held at the stage's fit); the variance of those estimates
    beyond their sampling variance is the drift, and kappa = p(1 - p) / drift - 1 a beta
    with that spread. None when the cohorts show no drift beyond noise.
    """
    cohorts: dict = {}
    for d in deals:
        e = d.entered[s]
        if e is not None and e <= as_of:
            cohorts.setdefault((e.year, e.month), []).append(d)
    ps, variances = [], []
    for key in sorted(cohorts)[-DRIFT_MONTHS:]:
        data = stage_data(cohorts[key], s, n_stages, as_of, lost_observed)
        if data.converted.size < 5:
            continue
        p, se = fit_conversion(data, fit)
        if math.isfinite(se):
            ps.append(p)
            variances.append(se ** 2)
    if len(ps) < 4:
        return None
    drift = float(np.var(ps, ddof=1) - np.mean(variances))
    if drift <= 0:
        return None
    p = float(np.mean(ps))
    return max(p * (1 - p) / drift - 1.0, 2.0)


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


def _lead_rate(deals: list[Deal], as_of: date, cal: Calibration, seg: str) -> dict:
    first = [d.entered[0] for d in deals if d.entered[0] is not None and d.entered[0] <= as_of]
    span_start = max(min(first, default=as_of), as_of - timedelta(days=LOOKBACK_DAYS - 1))
    days = (as_of - span_start).days + 1
    count = sum(1 for e in first if e >= span_start)
    per_month = max(count, 0.5) / days * AVG_MONTH_DAYS
    cal.notes.append(f"{seg}: {count} deals entered {days} days before {as_of}: {per_month:.1f} a month")
    if count < 10:
        cal.warnings.append(f"{seg}: only {count} new deals in the last {days} days: the lead rate is uncertain")
    cv = 1 / math.sqrt(max(count, 1))  # what the count alone says about the rate
    monthly = {}
    for e in first:  # whole months before the as-of date: how much the rate moves from month to month
        if (e.year, e.month) < (as_of.year, as_of.month) and (as_of - e).days < 366:
            monthly[(e.year, e.month)] = monthly.get((e.year, e.month), 0) + 1
    if len(monthly) >= 4:
        counts = np.array(list(monthly.values()), dtype=float)
        extra = counts.var(ddof=1) / counts.mean() ** 2 - 1 / counts.mean()
        if extra > cv ** 2:
            cv = math.sqrt(extra)
            cal.notes.append(f"{seg}: monthly arrivals vary beyond counting noise: cv {cv:.2f}")
    leads = {"per_month": {"dist": "gamma", "mean": round(per_month, 4), "cv": round(cv, 4)}}
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
    counts: dict = {}
    for e in entries:
        if (e.year, e.month) < (as_of.year, as_of.month):
            counts[(e.year, e.month)] = counts.get((e.year, e.month), 0) + 1
    if not counts:
        return {}
    first = min(counts)
    months = [(first[0] + (first[1] - 1 + k) // 12, (first[1] - 1 + k) % 12 + 1)
              for k in range((as_of.year - first[0]) * 12 + as_of.month - first[1])]
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
