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

import calendar
from datetime import date, timedelta

from forecaster.calendar import months_until
from forecaster.history.estimate import fit_candidates
from forecaster.history.parts import MECHANISMS, Calibration, build_scenario, new_lead_share
from forecaster.history.readers import Deal, beyond_records, recorded_through
from forecaster.history.selection import select_mechanisms


def after_the_export(deals: list[Deal], as_of: date, seen: tuple[date, int] | None) -> str | None:
    """What to say of won or lost deals closed after the history's last record
    (:func:`~forecaster.history.readers.recorded_through`) and after ``as_of``: no export
    shows a close after it was taken, so their dates are typed wrong (2027 for 2026) or
    placeholders (2099-12-31); on ``as_of`` they read as still open. None when there are none."""
    if seen is None:
        return None
    end = seen[0] + timedelta(days=seen[1])
    late = sorted((d for d in deals if d.outcome in ("won", "lost") and d.closed is not None
                   and d.closed > max(end, as_of)), key=lambda d: d.closed or date.max)
    if not late:
        return None
    shown = ", ".join(f"{d.deal_id} {d.outcome} on {d.closed}" for d in late[:3]) + (", ..." if len(late) > 3 else "")
    return (f"{len(late)} deal{'s' * (len(late) != 1)} won or lost after the history's last record ({seen[0]}), which "
            f"no export shows ({shown}): typed dates or placeholders? They are read as still open on {as_of}, "
            "in the pipeline; correct their close dates if they closed")


def calibrate(deals: list[Deal], stages: list[str], as_of: date, *, horizon_days: int = 90, name: str = "calibrated",
              lost_observed: bool = True, pipeline_file: str = "pipeline.csv", capacity: bool = False,
              force: dict | None = None, select: bool = True, families: dict | None = None,
              like: Calibration | None = None, fiscal_year_start: int | None = None,
              open_amounts: bool | None = False) -> Calibration:
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
    ``open_amounts``: value the deals still open in the export at their own amounts
    (:func:`~forecaster.history.estimate.fit_candidates`; None: not, with a warning when
    they have amounts). A backtest never does: an open deal's amount in the export is the
    one known at its end, not on an earlier cutoff.
    """
    seen = recorded_through(deals)
    past = beyond_records(deals, as_of, seen)
    if seen and past:
        last, quiet = seen
        raise ValueError(f"the as-of date is past the history: {past}; use an as-of date up to "
                         f"{last + timedelta(days=quiet)}, or a later export")
    force = dict(force or {})
    if capacity:
        force["capacity"] = True
    late = after_the_export(deals, as_of, seen)
    cal = fit_candidates(deals, stages, as_of, horizon_days=horizon_days, name=name, lost_observed=lost_observed,
                         pipeline_file=pipeline_file, families=families, like=like,
                         new_lead_share=new_lead_share, fiscal_year_start=fiscal_year_start,
                         open_amounts=open_amounts)
    if late:
        cal.warnings.append(late)
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
    if (select and "seasonality" in fitted and "seasonality" not in kept and force.get("seasonality") is not False
            and cal.evidence.get("steps")):  # (without a check, the history's own warning says so)
        unjudged = unjudged_season(cal, as_of, horizon_days)
        if unjudged:
            cal.warnings.append(f"seasonality: left out, but the in-history check that left it out scored no "
                                f"{' or '.join(unjudged)}, the horizon's months furthest from an average one, so it "
                                "says nothing of them; --mechanism seasonality=on keeps it")
    return cal


SEASON_OFF = 0.2
"""How far from 1 a calendar month's seasonal multiplier is before :func:`unjudged_season`
says that leaving seasonality out was judged without it."""


def unjudged_season(cal: Calibration, as_of: date, horizon_days: int) -> list[str]:
    """The horizon's calendar months whose seasonal multiplier (in some segment) is more
    than :data:`SEASON_OFF` away from 1 and that no inner month of the in-history check
    scored: the walk-forward judged seasonality on other months (its last few), where it
    may change little, so its verdict says nothing of these. Each as ``December (x0.32)``."""
    doc = build_scenario(cal, ["seasonality"])
    factors: dict[int, float] = {}
    for seg in doc["segments"].values():
        for month, f in (seg["leads"].get("seasonality") or {}).items():
            if abs(f - 1) > abs(factors.get(month, 1.0) - 1):
                factors[month] = f
    scored: set[int] = set()
    for c, n in zip(cal.evidence.get("cutoffs", []), cal.evidence.get("scored", [])):  # each scored on n months
        m = int(c[5:7])
        scored.update((m + k - 1) % 12 + 1 for k in range(1, n + 1))
    horizon = dict.fromkeys(m for _, m in months_until(as_of + timedelta(days=1), as_of + timedelta(days=horizon_days)))
    return [f"{calendar.month_name[m]} (x{factors[m]:.2f})" for m in horizon
            if m in factors and abs(factors[m] - 1) > SEASON_OFF and m not in scored]


def why_not_fitted(notes: list[str], mechanism: str) -> str:
    """Why ``mechanism`` was not fitted: its notes (those starting ``closing:``, or naming
    it, as ``no seasonality: ...``), or that none says."""
    own = [n for n in notes if n.startswith(f"{mechanism}:")] or [n for n in notes if mechanism in n.split(":")[0]]
    if not own:
        return "the history shows too little of it (no note says more)"
    return "; ".join(n.split(":", 1)[1].strip() if n.startswith(f"{mechanism}:") else n for n in own)
