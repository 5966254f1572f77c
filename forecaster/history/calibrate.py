"""Calibration: from a deal history to a scenario, using only what was known on a date.

:func:`calibrate` is the assembler of three steps, each in its own module:

1. **estimate** every part (:func:`forecaster.history.estimate.fit_candidates`: times,
   conversion and its drift, arrivals, deal values, and each optional part; its docstring
   says what is fitted and how), given the share of wins from new leads
   (:func:`forecaster.history.parts.new_lead_share`);
2. **select** the optional parts and the spread by a walk-forward inside the history
   (:func:`forecaster.history.selection.select_mechanisms`);
3. **assemble** the scenario document (:func:`forecaster.history.parts.build_scenario`),
   returned in a typed :class:`forecaster.history.parts.Calibration` with its pipeline rows,
   notes, warnings and evidence.
"""
from __future__ import annotations

from datetime import date

from forecaster.history.estimate import fit_candidates
from forecaster.history.parts import MECHANISMS, Calibration, build_scenario, new_lead_share
from forecaster.history.readers import Deal, beyond_records
from forecaster.history.selection import select_mechanisms


def calibrate(deals: list[Deal], stages: list[str], as_of: date, *, horizon_days: int = 90, name: str = "calibrated",
              lost_observed: bool = True, pipeline_file: str = "pipeline.csv", capacity: bool = False,
              force: dict | None = None, select: bool = True, families: dict | None = None,
              like: Calibration | None = None, fiscal_year_start: int | None = None) -> Calibration:
    """Fit a scenario from ``deals`` as known on ``as_of`` (see the module docstring).

    Every optional part (:data:`MECHANISMS`) is fitted, then kept only when a walk-forward
    inside the history known on ``as_of`` shows that it improves the out-of-sample CRPS
    (:func:`forecaster.history.selection.select_mechanisms`); the shared spread (shocks, a
    capacity's cv) is then sized so that walk-forward's P10-P90 covers 80% of its months.

    ``force``: mechanism name -> True (always keep) or False (never); ``capacity=True`` is
    ``force={"capacity": True}``. ``select=False`` keeps the defaults without evidence (the
    shocks and stalled deals), as the walk-forward's own calibrations do. ``families``:
    stage -> (family of days, family of days_lost) to fit instead of choosing by AIC.
    ``like``: a calibration on a later as-of date whose parts are to be measured here (the
    in-history walk-forward): a part it found is fitted here without its own significance
    test (quarter-end slips), since the question here is whether the part forecasts well,
    not whether this shorter history shows it. ``fiscal_year_start``: the month (1-12) the
    company's quarters count from (quarter-end slips, capacity, and the scenario's key).
    """
    past = beyond_records(deals, as_of)
    if past:
        raise ValueError(f"the as-of date is past the history: {past}; use an as-of date on or before the last "
                         "recorded date, or a later export")
    force = dict(force or {})
    if capacity:
        force["capacity"] = True
    cal = fit_candidates(deals, stages, as_of, horizon_days=horizon_days, name=name, lost_observed=lost_observed,
                         pipeline_file=pipeline_file, families=families, like=like,
                         new_lead_share=new_lead_share, fiscal_year_start=fiscal_year_start)
    fitted = [m for m in MECHANISMS if m in cal.mechanisms]
    forced_on = [m for m in fitted if force.get(m) is True]
    for m in MECHANISMS:
        if force.get(m) is True and m not in cal.mechanisms:
            cal.warnings.append(f"{m}: asked for (--mechanism {m}=on) but could not be fitted from the history known "
                                f"on {as_of}, so the scenario is without it: {why_not_fitted(cal.notes, m)}")
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


def why_not_fitted(notes: list[str], mechanism: str) -> str:
    """Why ``mechanism`` was not fitted: its notes (those starting ``closing:``, or naming
    it, as ``no seasonality: ...``), or that none says."""
    own = [n for n in notes if n.startswith(f"{mechanism}:")] or [n for n in notes if mechanism in n.split(":")[0]]
    if not own:
        return "the history shows too little of it (no note says more)"
    return "; ".join(n.split(":", 1)[1].strip() if n.startswith(f"{mechanism}:") else n for n in own)
