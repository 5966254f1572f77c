"""Calibration: from a deal history to a scenario, using only what was known on a date.

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
  trusted in proportion to what could already show (:data:`IMMATURE_VAR`), and go through
  local-level models (:mod:`forecaster.history.drift`) from the month the history is steady
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
  A local linear trend is the ``trend`` part.
* **Quarter-end closing** (:func:`quarter_end_closing`, against a trend) and **capacity**
  (:func:`team_capacity`) from the last whole quarters of wins; seasonality from 24
  months of arrivals.
* **Which optional parts are kept** (:data:`MECHANISMS`), and how wide the shared spread
  is, is decided by a walk-forward inside the history (:mod:`forecaster.history.selection`).
* **Deal values** are the won amounts, resampled (``empirical``); the deals open on T
  become the pipeline.
"""
from __future__ import annotations

from datetime import date

from forecaster.history.estimate import fit_candidates
from forecaster.history.parts import MECHANISMS, Calibration, build_scenario, new_lead_share
from forecaster.history.readers import Deal
from forecaster.history.selection import select_mechanisms


def calibrate(deals: list[Deal], stages: list[str], as_of: date, *, horizon_days: int = 90, name: str = "calibrated",
              lost_observed: bool = True, pipeline_file: str = "pipeline.csv", capacity: bool = False,
              force: dict | None = None, select: bool = True, families: dict | None = None,
              like: Calibration | None = None) -> Calibration:
    """Fit a scenario from ``deals`` as known on ``as_of`` (see the module docstring).

    Every optional part (:data:`MECHANISMS`) is fitted, then kept only when a walk-forward
    inside the history known on ``as_of`` shows that it improves the out-of-sample CRPS
    (:func:`forecaster.history.selection.select_mechanisms`); the shared shocks are then widened
    until that walk-forward's P10-P90 covers 80% of its months.

    ``force``: mechanism name -> True (always keep) or False (never); ``capacity=True`` is
    ``force={"capacity": True}``. ``select=False`` keeps the defaults without evidence (the
    shocks and stalled deals), as the walk-forward's own calibrations do. ``families``:
    stage -> (family of days, family of days_lost) to fit instead of choosing by AIC.
    ``like``: a calibration on a later as-of date whose parts are to be measured here (the
    in-history walk-forward): a part it found is fitted here without its own significance
    test (quarter-end slips), since the question here is whether the part forecasts well,
    not whether this shorter history shows it.
    """
    force = dict(force or {})
    if capacity:
        force["capacity"] = True
    cal = fit_candidates(deals, stages, as_of, horizon_days=horizon_days, name=name, lost_observed=lost_observed,
                         pipeline_file=pipeline_file, families=families, like=like,
                         new_lead_share=new_lead_share)
    fitted = [m for m in MECHANISMS if m in cal.mechanisms]
    forced_on = [m for m in fitted if force.get(m) is True]
    if select:
        kept, widen = select_mechanisms(deals, stages, as_of, cal, horizon_days=horizon_days,
                                        lost_observed=lost_observed, forced_on=forced_on,
                                        forced_off=[m for m in fitted if force.get(m) is False])
    else:
        kept, widen = [m for m in fitted if (m in ("shocks", "stalled") and force.get(m) is not False)
                       or m in forced_on], 1.0
    cal.kept = kept
    cal.scenario = build_scenario(cal, kept, widen)
    for m in fitted:
        cal.notes.append(f"{m}: {'kept' if m in kept else 'left out'} ({cal.mechanisms[m].summary})")
    return cal
