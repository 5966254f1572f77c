"""The baselines a forecaster must beat, from a deal history as known on a cutoff (a month end).

* **last-month naive** (:func:`last_month_naive`): every month of the horizon is the
  actual of the last whole month before the cutoff; a point forecast.
* **trailing mean** (:func:`trailing_mean`): a distribution: each month's won deals
  Poisson with the mean of the :data:`TRAILING_MONTHS` whole months ending on the cutoff,
  revenue compound Poisson (amounts resampled from the deals won by then).
* **seasonal naive**: each month as the same month of the previous quarter (read from
  :func:`actuals` by :func:`forecaster.history.backtest.backtest`).
* **weighted pipeline** (:func:`weighted_pipeline`), the CRMs' expected value, without
  look-ahead.

:data:`LABELS` names each method as the console, the report and BACKTEST.md show it.
"""
from __future__ import annotations

from datetime import date

import numpy as np

from forecaster.history.readers import Deal

TRAILING_MONTHS = 3          # whole months averaged by the trailing-mean baseline
BASELINE_SEED = 0            # the trailing mean's draws: seeded with (BASELINE_SEED, the cutoff's ordinal)
MONTH_BASELINES = ("seasonal_naive", "last_month_naive", "trailing_mean")  # scored month by month
#: how the console, the report and BACKTEST.md name each method
LABELS = {"forecaster": "forecaster", "seasonal_naive": "seasonal naive (same month last quarter)",
          "last_month_naive": "last-month naive", "trailing_mean": "trailing 3-month mean (compound Poisson)",
          "weighted_pipeline": "weighted pipeline (CRM, no look-ahead)"}


def month_start(d: date) -> date:
    return d.replace(day=1)


def add_months(d: date, k: int) -> date:
    y, m = divmod(d.month - 1 + k, 12)
    return date(d.year + y, m + 1, 1)


def _won(deals: list[Deal]) -> list[tuple[date, float | None, str]]:
    """The won deals' (close date, amount or None, segment)."""
    return [(d.closed, d.amount, d.segment) for d in deals if d.outcome == "won" and d.closed is not None]


def actuals(deals: list[Deal], months: list[date]) -> dict:
    """Deals won, and their value, in each month: ``{"won_deals": [...], "revenue": [...],
    "unvalued": [...]}``, each a list with one number per month of ``months`` (first days of
    months); ``unvalued``: the month's won deals without an amount counted at a mean.

    A won deal without an amount counts as calibration values it (``deal_value``, estimate's
    ``_deal_value``) on its month's last day: at the mean of its segment's won amounts known
    by then, or of every segment's when its segment has none, or 1 when no won deal has an
    amount by then (revenue then counts won deals, as ``deal_value: 1`` does; not counted in
    ``unvalued``). Counting every such deal as 1 put the revenue actuals below what the
    forecast is a forecast of (3% on an export with 5% of its won amounts blank). Only deals
    won by the month's end are read, so a month's actual is known at its end (the last-month
    naive forecasts from it)."""
    wins = _won(deals)
    per = {m: [0, 0.0, 0] for m in months}  # won, value, won without an amount counted at a mean
    blanks: dict[tuple[date, str], int] = {}  # (month, segment) -> won deals without an amount
    for closed, amount, segment in wins:
        m = month_start(closed)
        if m not in per:
            continue
        per[m][0] += 1
        if amount is None:
            blanks[(m, segment)] = blanks.get((m, segment), 0) + 1
        else:
            per[m][1] += float(amount)
    for (m, segment), n in blanks.items():
        end = add_months(m, 1)
        by_end = [(a, g) for c, a, g in wins if a is not None and c < end]
        known = [a for a, g in by_end if g == segment] or [a for a, _ in by_end]
        if known:
            per[m][1] += n * float(np.mean(known))
            per[m][2] += n
        else:
            per[m][1] += float(n)
    return {"won_deals": [float(per[m][0]) for m in months], "revenue": [per[m][1] for m in months],
            "unvalued": [per[m][2] for m in months]}


def last_month_naive(deals: list[Deal], cutoff: date) -> dict:
    """The last-month naive forecast for every month after ``cutoff`` (a month end): what
    was won in the month ending on the cutoff. Returns ``{"month": date, "won_deals":
    deals, "revenue": currency}``."""
    month = month_start(cutoff)
    last = actuals(deals, [month])
    return {"month": month, "won_deals": last["won_deals"][0], "revenue": last["revenue"][0]}


def trailing_mean(deals: list[Deal], cutoff: date, months: int, trials: int, seed=BASELINE_SEED) -> dict:
    """The trailing-mean baseline's samples for the ``months`` months after ``cutoff``.

    Won deals in each month ~ Poisson(``rate``), ``rate`` the mean of the wins of the
    :data:`TRAILING_MONTHS` whole months ending on the cutoff [deals a month]; revenue is
    the sum of that many values, each resampled from the deals won on or before the cutoff
    (compound Poisson). Months and metrics of one sample come from the same draw.

    Returns ``{"rate": float, "window": [first days of the months averaged],
    "won_deals": array (trials, months), "revenue": array (trials, months)}``.
    """
    window = [add_months(month_start(cutoff), -k) for k in reversed(range(TRAILING_MONTHS))]
    rate = float(np.mean(actuals(deals, window)["won_deals"]))
    known = [a for c, a, _ in _won(deals) if c <= cutoff]
    # the amounts known on the cutoff, as calibration resamples them; 1 each when none is
    given = [float(a) for a in known if a is not None]
    pool = np.array(given) if given else np.ones(len(known))
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rate, size=(trials, months))
    if pool.size and counts.sum():
        values = pool[rng.integers(0, pool.size, size=int(counts.sum()))]
        cell = np.repeat(np.arange(trials * months), counts.ravel())
        revenue: np.ndarray = np.bincount(cell, weights=values, minlength=trials * months).reshape(trials, months)
    else:
        revenue = np.zeros((trials, months))
    return {"rate": rate, "window": window, "won_deals": counts.astype(float), "revenue": revenue}


def weighted_pipeline(deals: list[Deal], stages: list[str], cutoff: date) -> dict:
    """The CRM's expected value on ``cutoff``, without look-ahead: each deal open then
    times the win rate of the last stage it had reached (among the deals that had been in
    that stage and closed by the cutoff), valued at the mean amount of the deals won on or
    before the cutoff (a deal's own amount is its final one, perhaps set after the
    cutoff). Returns ``{"won_deals": expected deals, "revenue": expected currency}``."""
    outcome_by_stage = {s: [0, 0] for s in range(len(stages))}   # won, lost after being in the stage
    values = [a for c, a, _ in _won(deals) if c <= cutoff and a is not None]
    mean_value = float(np.mean(values)) if values else 1.0
    open_stages = []
    for d in deals:
        reached = [i for i, e in enumerate(d.entered) if e is not None and e <= cutoff]
        if not reached:
            continue
        closed = d.closed is not None and d.closed <= cutoff
        if closed and d.outcome in ("won", "lost"):
            for i in reached:
                outcome_by_stage[i][0 if d.outcome == "won" else 1] += 1
        elif not closed:
            open_stages.append(reached[-1])
    count = 0.0
    for stage in open_stages:
        won, lost = outcome_by_stage[stage]
        count += won / (won + lost) if won + lost else 0.0
    return {"won_deals": count, "revenue": count * mean_value}
