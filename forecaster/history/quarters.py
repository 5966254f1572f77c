"""Quarterly patterns in the wins: quarter-end slips (:func:`quarter_end_closing`, read from
the last whole months of wins) and a saturated team's capacity (:func:`team_capacity`, read
from the last whole quarters), both after the wins' ramp-up (:func:`wins_steady_from`)."""
from __future__ import annotations

import math
from datetime import date, timedelta
from typing import NamedTuple

import numpy as np

from forecaster.calendar import (
    AVG_MONTH_DAYS,
    days_in_month,
    month_of_quarter,
    monthly_counts,
    period_end,
    period_start,
)
from forecaster.history.parts import Calibration
from forecaster.history.readers import Deal, won_dates

PINNED_SHARE = 0.5
"""The share of close dates on a period's last day above which :func:`pinned_close_dates`
warns. Deals that close when they close put about 1 in 30 on a month's last day and 1 in
90 on a quarter's. Measured (8 December 2026; won and lost closes): Maven 3.2% on a month's
last day and 1.3% on a quarter's, Olist 5.3% and 0%; the truth suite's steady history 3.1-3.7%
and 1.1-1.2%, its quarter-end push (wins slipping into the quarter's last month) 3.3-3.8% and
1.4-1.8% (3 seeds each, as of September 2024)."""


def pinned_close_dates(deals: list[Deal], as_of: date, fiscal_year_start: int = 1) -> list[str]:
    """Warnings when most close dates of the won deals, or of the lost ones (by ``as_of``; at
    least 30 of them), fall on the last day of a quarter, or of a month: dates a CRM set by
    the period (a default close date, a clean-up of lost deals), not when each deal closed.
    The times to win (or to be given up) are then read as times to the period's end (review:
    every close on its quarter's last day forecast January and February wins that the
    history never had). Won and lost apart: the wins pinned with the losses on real dates
    were missed when pooled, and losses closed in bulk at quarter end were said as if the
    wins were."""
    said = []
    for outcome in ("won", "lost"):
        closes = [d.closed for d in deals if d.outcome == outcome and d.closed is not None and d.closed <= as_of]
        if len(closes) < 30:
            continue
        for unit in ("quarter", "month"):
            on_end = sum(1 for c in closes if period_end(c, unit, fiscal_year_start) == c)
            if on_end <= PINNED_SHARE * len(closes):
                continue
            share = f"{on_end:,} of the {len(closes):,} {outcome} deals' close dates by {as_of} ({on_end / len(closes):.0%})"
            if outcome == "won":
                said.append(f"{share} fall on a {unit}'s last day: they look set by the {unit} (a CRM's default close "
                            f"date?), not by when each deal was won; the times to win are read as times to the "
                            f"{unit}'s end and a forecast of the days inside a {unit} is not to be trusted (read the "
                            "date each deal was won, --column closed=..., if the export has it)")
            else:
                said.append(f"{share} fall on a {unit}'s last day: they look set by the {unit} (lost deals closed in "
                            f"bulk at the {unit}'s end?), not by when each deal was given up; the time until a deal "
                            f"is lost is read as the time to the {unit}'s end, and so is how likely an old open deal "
                            "still is to be won")
            break
    return said


def wins_steady_from(deals: list[Deal], as_of: date) -> date | None:
    """The day from which the history's monthly wins are no longer ramping up, or None.

    A history that starts when its first leads arrive wins little at first: its wins fill
    up over a cycle. So wins count as steady from the first deal's entry plus the 80th
    percentile of the days from entry to win of the wins known on ``as_of``. An export
    that starts mid-stream (deals that entered long before its first close) is steady from
    its first win on already.
    """
    entries = [d.entered[0] for d in deals if d.entered[0] is not None and d.entered[0] <= as_of]
    spans = [(d.closed - d.entered[0]).days for d in deals if d.outcome == "won" and d.closed is not None
             and d.closed <= as_of and d.entered[0] is not None]
    if not entries or not spans:
        return None
    return min(entries) + timedelta(days=int(np.percentile(spans, 80)))


def whole_quarters(wins: list, as_of: date, since: date | None = None,
                   fiscal_year_start: int = 1) -> list[tuple[date, date]]:
    """(first, last day) of the whole quarters (of the fiscal year starting in month
    ``fiscal_year_start``) from the first win's on (a quarter the first win falls inside of
    is cut by the history, so it is left out), and starting on or after ``since`` when given
    (:func:`wins_steady_from`: quarters of a ramp-up are not the team's pattern), ending by
    ``as_of``; the latest :data:`CLOSING_QUARTERS`."""
    if not wins:
        return []
    quarters = []
    start = max(wins[0], since) if since is not None else wins[0]
    first = period_start(start, "quarter", fiscal_year_start)
    if first != start:
        first = period_end(start, "quarter", fiscal_year_start) + timedelta(days=1)
    while True:
        last = period_end(first, "quarter", fiscal_year_start)
        if last > as_of:
            break
        quarters.append((first, last))
        first = last + timedelta(days=1)
    return quarters[-CLOSING_QUARTERS:]


def quarter_months(wins: list[date], quarters: list[tuple[date, date]]) -> tuple[np.ndarray, np.ndarray]:
    """Wins and days in each month of each quarter: two arrays of shape (quarters, 3)."""
    by_month = monthly_counts(wins)
    counts, days = np.zeros((len(quarters), 3)), np.zeros((len(quarters), 3))
    for i, (first, _) in enumerate(quarters):
        for k in range(3):
            y, m = first.year + (first.month + k - 1) // 12, (first.month + k - 1) % 12 + 1
            counts[i, k] = by_month[(y, m)]
            days[i, k] = days_in_month(date(y, m, 1))
    return counts, days


def team_capacity(deals: list[Deal], as_of: date, cal: Calibration) -> dict | None:
    """The team's capacity, as the format's ``capacity``, from its last whole quarters of wins.

    For a team whose deals wait for it, what it won is what it can win: ``won_per_month``
    is the level its wins stay at over those months (whole quarters after the wins' ramp-up,
    :func:`wins_steady_from`), read by :func:`wins_level`: the mean of them all when they
    are one level; the level they reached (the months since it binds) when they grew into
    it (the mean of four quarters, two of them still growing, put a team closing 150 a
    month at 107); None, with a note, while they are still growing (no level is seen yet,
    and a mean of a ramp caps the forecast below what the team closes now).
    ``quarter_shape`` each month of the quarter's mean over it
    (per day, so February is not short-changed), shrunk toward flat by how far the months
    of the quarter differ beyond noise: 1 + w (shape - 1) with w = max(0, 1 - 1/F), F the
    month-of-quarter statistic (:func:`month_of_quarter_effect`, against a trend; with one
    quarter, Poisson's chi-square over 2), so four quarters of noise (F near 1) give a flat
    shape and a clear quarter-end pattern keeps it; and ``cv``
    sqrt(phi / won_per_month), phi (at least 1, Poisson's) the months' Pearson dispersion
    around that one level and shape over its degrees of freedom (3 x quarters - 1 - 2w; for
    a level reached after growing, its months' around it, months - 1): a month varies by phi
    times its mean, its own counting noise counted once. None without a whole quarter.
    """
    wins = won_dates(deals, as_of)
    quarters = whole_quarters(wins, as_of, wins_steady_from(deals, as_of), cal.fiscal_year_start or 1)
    if not quarters:
        cal.notes.append("capacity: no whole quarter of wins yet: not fitted")
        return None
    counts, days = quarter_months(wins, quarters)
    rates = counts / days  # wins per day, by quarter and month of the quarter
    if np.any(rates.mean(axis=0) <= 0) or np.any(rates.mean(axis=1) <= 0):
        cal.notes.append("capacity: a month of the quarter (or a quarter) without wins: not fitted")
        return None
    raw = rates.mean(axis=0) / rates.mean()
    if len(quarters) >= 2:
        f_stat = month_of_quarter_effect(counts.ravel(), days.ravel(), np.tile(np.arange(3), len(quarters)))[2]
    else:
        expected = counts.sum() * days[0] / days[0].sum()
        f_stat = float(np.sum((counts[0] - expected) ** 2 / expected)) / 2
    weight = max(0.0, 1.0 - 1.0 / f_stat) if f_stat > 0 else 0.0
    shape = 1.0 + weight * (raw - 1.0)
    # the months in order, each one's days weighted by its place in the quarter's shape
    exposure = (days * shape[None, :]).ravel()
    level = wins_level(counts.ravel(), exposure)
    if level.kind == "growing":
        cal.notes.append(f"capacity: wins still growing {level.growth:+.1%} a month over the last "
                         f"{counts.size} whole months, with no level they stopped at: no capacity seen, not fitted")
        return None
    if level.kind == "flat":
        per_day = float(rates.mean())
        # quasi-Poisson: the months' variance is phi times their mean, phi their Pearson
        # dispersion around the one level and shape forecast (quarters that differ count, as a
        # next quarter may); a month's own counting noise is inside phi, not added to it
        seen, expected = counts, per_day * shape[None, :] * days
        dof = counts.size - 1 - 2 * weight
        span = f"the last {len(quarters)} whole quarters"
    else:  # the level the wins reached after growing: the months since, around it
        per_day = level.per_day
        seen, expected = counts.ravel()[level.since:], level.per_day * exposure[level.since:]
        dof = seen.size - 1
        span = (f"the last {seen.size} whole months, the level the wins reached after changing "
                f"{level.growth:+.1%} a month (the {level.since} months before)")
    phi = float(np.sum((seen - expected) ** 2 / expected)) / dof if dof >= 1 else 1.0
    per_month = per_day * AVG_MONTH_DAYS
    cv = math.sqrt(max(phi, 1.0) / max(per_month, 1.0))
    cal.notes.append(f"capacity: {per_month:.1f} wins a month over {span}, by month "
                     f"of the quarter x{shape[0]:.2f} / x{shape[1]:.2f} / x{shape[2]:.2f} (seen x{raw[0]:.2f} / "
                     f"x{raw[1]:.2f} / x{raw[2]:.2f}, F = {f_stat:.1f}), cv {cv:.3f}")
    return {"won_per_month": round(per_month, 2),
            "quarter_shape": {k + 1: round(float(shape[k]), 4) for k in range(3)}, "cv": round(cv, 4)}


class WinsLevel(NamedTuple):
    """What :func:`wins_level` read: ``kind`` ("flat", "plateau" or "growing"), ``since``
    (the plateau's first month, an index into the months; 0 unless a plateau), ``per_day``
    (the plateau's wins a day at shape 1; 0 unless a plateau) and ``growth`` (the growth a
    month before the plateau, or of the whole months when growing; 0 when flat)."""
    kind: str
    since: int
    per_day: float
    growth: float


MIN_LEVEL_MONTHS = 3
"""Months a plateau of wins (and the growth before it) lasts at least in :func:`wins_level`."""
GROWTH_LEVEL = 0.01
"""The significance level at which :func:`wins_level` calls wins still growing."""


def wins_level(counts: np.ndarray, exposure: np.ndarray) -> WinsLevel:
    """Where a team's wins stand: one level, a level reached after growing, or still growing.

    ``counts``: wins in consecutive whole months, shape (months,); ``exposure``: each
    month's days times its month-of-the-quarter factor, shape (months,). A capacity is the
    level the wins stay at; a team that grows into it wins more and more, then the same:
    each month's wins Poisson around ``exposure x min(exp(a + b t), c)``, a log-linear demand
    capped at c. Three quasi-Poisson models are compared by BIC (log-likelihoods divided by
    the capped model's Pearson dispersion, at least 1): one level (1 parameter), a
    log-linear trend (2) and the capped trend (3, maximum likelihood by Nelder-Mead from the
    trend's fit and from each split into a trend and a level). The wins reached a *plateau*
    when the capped trend's BIC is below one level's, it rises, and its cap binds the last
    :data:`MIN_LEVEL_MONTHS` months and no more than all but :data:`MIN_LEVEL_MONTHS`
    (``since``: the first month it binds); its level is the mean of those months (the cap's
    maximum likelihood). A step up (a team that hired) reads so too, at its new level; it
    need not beat the uncapped trend, which a step fits no better. Otherwise the wins are
    *growing* when the trend rises and beats one level at :data:`GROWTH_LEVEL` (the
    likelihood ratio over the dispersion read as F(1, months - 3), the dispersion being
    estimated); else *flat*, which a step *down* or a decline also reads as (a capacity
    never binds below the wins it had). Measured, 12 months each: of 1,000 flat series,
    Poisson(300) reads 15 plateaus and no growth, a negative binomial four times as
    dispersed 33 and 3; of 400, a ramp of 15% a month capped at 150 from month 8 reads 379
    plateaus (mean level 150.3), a step from 100 to 200 at month 6 382 (199.7), a 4% ramp
    with no cap 101 plateaus at its last months' level (141.9) and 277 growing. Fewer than
    twice :data:`MIN_LEVEL_MONTHS` months: one level.
    """
    from scipy import optimize, stats

    y, e = np.asarray(counts, dtype=float), np.asarray(exposure, dtype=float)
    n = y.size
    flat = WinsLevel("flat", 0, 0.0, 0.0)
    if n < 2 * MIN_LEVEL_MONTHS or y.sum() <= 0:
        return flat

    def loglik(mu: np.ndarray) -> float:
        return poisson_loglik(y, mu)

    t = np.arange(n, dtype=float) - (n - 1) / 2
    X = np.stack([np.ones(n), t], axis=1)
    ll_flat = loglik(e * y.sum() / e.sum())
    ll_trend, beta = poisson_fit(y, e, X)

    def capped(p: np.ndarray) -> np.ndarray:  # wins a day at shape 1, by month
        return np.minimum(np.exp(np.clip(p[0] + p[1] * t, -50, 50)), np.exp(min(p[2], 50.0)))

    starts = [np.array([beta[0], beta[1], math.log(y.max() / e.max() * 2)])]
    for k in range(MIN_LEVEL_MONTHS, n - MIN_LEVEL_MONTHS + 1):  # a trend, then a level from month k
        if y[k:].sum() > 0:
            _, b = poisson_fit(y[:k], e[:k], X[:k])
            starts.append(np.array([b[0], b[1], math.log(y[k:].sum() / e[k:].sum())]))
    fits = [optimize.minimize(lambda p: -loglik(e * capped(p)), x0, method="Nelder-Mead",
                              options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000}) for x0 in starts]
    p = min(fits, key=lambda f: f.fun).x
    mu = e * capped(p)
    ll_capped = loglik(mu)
    # a month fitted near zero (a ramp from nothing) would blow the Pearson sum up and hide
    # every model's gain: its expected count is floored at one win
    dispersion = max(float(np.sum((y - mu) ** 2 / np.maximum(mu, 1.0))) / max(n - 3, 1), 1.0)
    bic = {"flat": -2 * ll_flat / dispersion + math.log(n),
           "trend": -2 * ll_trend / dispersion + 2 * math.log(n),
           "capped": -2 * ll_capped / dispersion + 3 * math.log(n)}
    rising = beta[1] > 0 and stats.f.sf(2 * (ll_trend - ll_flat) / dispersion, 1, max(n - 3, 1)) < GROWTH_LEVEL
    binds = p[0] + p[1] * t >= min(p[2], 50.0)  # where the demand reaches the cap (log scale)
    since = int(np.argmax(binds))
    if (bic["capped"] < bic["flat"] and p[1] > 0
            and binds[-MIN_LEVEL_MONTHS:].all() and MIN_LEVEL_MONTHS <= since):
        level = float(y[since:].sum() / e[since:].sum())
        return WinsLevel("plateau", since, level, math.expm1(min(float(p[1]), 5.0)))
    if rising:
        return WinsLevel("growing", 0, 0.0, math.expm1(min(float(beta[1]), 5.0)))
    return flat


CLOSING_QUARTERS = 4
"""Whole quarters of wins (the latest before the as-of date) that measure a team's capacity."""
CLOSING_MONTHS = 12
"""Whole months of wins (the latest before the as-of date) that measure quarter-end bunching."""


WINDOWS = (5, 10, 15, 20, 30)


def month_of_quarter_effect(counts: np.ndarray, day_counts: np.ndarray,
                            place: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Whether wins depend on the month of the quarter, beyond a trend: (p-value, rates, F).

    ``counts``, ``day_counts``, ``place``: wins, days and place in the quarter (0, 1 or 2)
    of consecutive whole months, shape (months,), at least six (each place twice). Wins that
    grow (or shrink) month by month are not a quarterly pattern, so Poisson models with and
    without month-of-quarter effects are compared, both with a log-linear trend over the
    months (likelihood ratio, 2 degrees of freedom). Months vary more than Poisson counts (a
    busy month, a holiday): the ratio is scaled by the full model's Pearson dispersion and
    read as F(2, n - 4) (quasi-Poisson). ``rates``, shape (3,): each place's daily rate with
    the trend removed, relative to a quarter's average day; ``F`` the test's statistic (about
    1 when the months differ only by noise).
    """
    from scipy import stats

    y, exposure = np.asarray(counts, dtype=float), np.asarray(day_counts, dtype=float)
    place = np.asarray(place)
    # a place's mean days a month: a quarter's calendar, whichever place the months start at
    days = np.array([exposure[place == k].mean() for k in range(3)])
    t = np.arange(y.size, dtype=float) - (y.size - 1) / 2
    trend_only = np.stack([np.ones(y.size), t], axis=1)
    with_months = np.column_stack([trend_only, place == 0, place == 1]).astype(float)
    ll0, _ = poisson_fit(y, exposure, trend_only)
    ll1, beta = poisson_fit(y, exposure, with_months)
    mu = exposure * np.exp(with_months @ beta)
    dof = y.size - with_months.shape[1]
    dispersion = max(float(np.sum((y - mu) ** 2 / np.maximum(mu, 1e-9))) / dof, 1.0)
    f_stat = max(ll1 - ll0, 0.0) / dispersion
    p_value = float(stats.f.sf(f_stat, 2, dof))
    effect = np.exp(np.array([beta[2], beta[3], 0.0]))  # each month's rate against the third's, trend removed
    return p_value, effect / (effect @ days / days.sum()), float(f_stat)


def steady_months(wins: list, as_of: date, since: date | None = None,
                  fiscal_year_start: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[date]]:
    """The latest :data:`CLOSING_MONTHS` whole calendar months of wins from the first win's
    on (a month the first win, or ``since``, falls inside of is cut, so it is left out) and
    ending by ``as_of``: their wins, days and place in the (fiscal) quarter (0, 1, 2), shape
    (months,) each, and their first days."""
    if not wins:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=int), []
    start = max(wins[0], since) if since is not None else wins[0]
    first = start if start.day == 1 else period_end(start, "month") + timedelta(days=1)
    firsts = []
    while period_end(first, "month") <= as_of:
        firsts.append(first)
        first = period_end(first, "month") + timedelta(days=1)
    firsts = firsts[-CLOSING_MONTHS:]
    by_month = monthly_counts(wins)
    counts = np.array([by_month[(f.year, f.month)] for f in firsts], dtype=float)
    days = np.array([days_in_month(f) for f in firsts], dtype=float)
    place = np.array([month_of_quarter(f.month, fiscal_year_start) - 1 for f in firsts], dtype=int)
    return counts, days, place, firsts


def quarter_end_closing(deals: list[Deal], as_of: date, cal: Calibration, gate: bool = True) -> dict | None:
    """Quarter-end bunching of wins, as the format's ``closing`` (None when there is none).

    From the last :data:`CLOSING_MONTHS` whole months of steady wins (months after the first
    win and after the wins' ramp-up, :func:`wins_steady_from`, ending by ``as_of``;
    :func:`steady_months`), at least six: the daily win rate of each month of the quarter
    against a log-linear trend over the months (:func:`month_of_quarter_effect`). Whole
    months, not whole quarters: a history that starts in a quarter's middle, or an as-of
    date inside one, keeps its months (with whole quarters only, the slips of a history
    eight months old were not measured at all, and of one nine months old with two
    degrees of freedom for the months' dispersion, which a slip of 40% barely passed; on
    the synthetic quarter-end push, its first three cutoffs' forecasts scored a CRPS of
    15-25 wins a month, where the best naive forecast scored 5-8). When the test rejects "no
    month-of-quarter effect" (p < 0.01; skipped with ``gate=False``, as the in-history
    walk-forward does to measure a part the whole history showed) and the third month is the
    busiest, months 1 and 2 slip with 1 - rate_k, and the window is the one of
    :data:`WINDOWS` under which the daily wins of the third months are most likely
    (Poisson). A growing team's wins rise month by month; that is a trend, not quarter-end
    bunching.
    """
    wins = won_dates(deals, as_of)
    fy = cal.fiscal_year_start or 1
    month_wins, month_days, place, firsts = steady_months(wins, as_of, wins_steady_from(deals, as_of), fy)
    if month_wins.size < 6:
        cal.notes.append("closing: fewer than six whole months of steady wins: quarter-end bunching not measured")
        return None
    counts = np.array([month_wins[place == k].sum() for k in range(3)])
    days = np.array([month_days[place == k].sum() for k in range(3)])
    by_day_before_end = np.zeros(31)
    thirds = [(f, period_end(f, "month")) for f, k in zip(firsts, place) if k == 2]
    for first, last in thirds:
        for won in wins:
            if first <= won <= last:
                by_day_before_end[min((last - won).days, 30)] += 1
    total = counts.sum()
    if total < 60:
        return None
    b = total / days.sum()
    p_value, rate, _ = month_of_quarter_effect(month_wins, month_days, place)
    note = (f"closing: wins per day in months 1/2/3 of the quarter over the last {len(firsts)} whole months "
            f"{' / '.join(f'{c / d:.2f}' for c, d in zip(counts, days))}; against their trend x"
            f"{' / x'.join(f'{r:.2f}' for r in rate)} (likelihood ratio p = {p_value:.2g})")
    if (gate and p_value >= 0.01) or rate[2] <= rate.max() - 1e-12:
        cal.notes.append(note + ": no quarter-end bunching")
        return None
    slip = {k + 1: round(float(max(0.0, 1 - rate[k])), 4) for k in range(2)}
    extra = sum(slip[k + 1] * b * days[k] for k in range(2))  # slipped wins landing in third months
    best: tuple[float, int] | None = None  # (log-likelihood, window)
    for window in WINDOWS:  # third-month wins by days before the quarter's end (day 31 and on pooled)
        mean = np.array([len(thirds) * b + (extra / window if j < window else 0.0) for j in range(31)])
        ll = float(np.sum(by_day_before_end * np.log(mean) - mean))
        if best is None or ll > best[0]:
            best = (ll, window)
    assert best is not None  # WINDOWS is not empty
    cal.notes.append(note + f": months 1 and 2 slip {slip[1]:.2f} and {slip[2]:.2f} into the last "
                            f"{best[1]} days")
    return {"slip": slip, "window_days": best[1]}


def unslipped_factor(days: dict, closing: dict, entries: list, fiscal_year_start: int = 1,
                     draws: int = 20000) -> float:
    """The factor on a fitted time to win that, once slipped by ``closing``, gives back the
    fitted time's median: the times were fitted from wins that had already slipped, so
    applying the slips to them again would push the forecast's wins late twice.

    ``days``: the scenario's spelling of the fitted distribution (lognormal, gamma, Weibull or
    exponential); ``entries``: the dates the won deals entered the last stage (a sample of
    the calendar the slips act on). Found by bisection on [0.2, 1] with fixed random draws.
    """
    if not entries:
        return 1.0
    rng = np.random.default_rng(0)
    fam = days["dist"]
    if fam == "lognormal":
        base = days["median"] * np.exp(days["sigma"] * rng.standard_normal(draws))
    elif fam == "gamma":
        k = 1 / days["cv"] ** 2
        base = rng.gamma(k, days["mean"] / k, draws)
    elif fam == "weibull":
        base = days["scale"] * rng.weibull(days["shape"], draws)
    elif fam == "exponential":
        base = rng.exponential(days["mean"], draws)
    else:
        return 1.0
    start = np.array([e.toordinal() for e in entries], dtype=float)[rng.integers(len(entries), size=draws)]
    u, v = rng.random(draws), rng.random(draws)
    target = float(np.median(base))
    slip = np.array([0.0, closing["slip"].get(1, 0.0), closing["slip"].get(2, 0.0), 0.0])
    window = closing["window_days"]

    def by_day(due: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each due time's month of its quarter (1-3) and the day after its quarter's last
        (an ordinal, as float), worked out once per calendar day (the draws fall on a few
        hundred days) and spread back to the draws: the same arrays as day by day."""
        if np.isfinite(due).all():
            days, back = np.unique(due.astype(np.int64), return_inverse=True)  # int(x): toward zero, as astype
            try:
                dates = [date.fromordinal(int(x)) for x in days]
            except (ValueError, OverflowError):
                dates = None  # a day out of range: raise as day by day below
            if dates is not None:
                month = np.array([month_of_quarter(d.month, fiscal_year_start) for d in dates])
                q_end = np.array([period_end(d, "quarter", fiscal_year_start).toordinal() + 1
                                  for d in dates], dtype=float)
                return month[back], q_end[back]
        dates = [date.fromordinal(int(x)) for x in due]
        month = np.array([month_of_quarter(d.month, fiscal_year_start) for d in dates])
        q_end = np.array([period_end(d, "quarter", fiscal_year_start).toordinal() + 1
                          for d in dates], dtype=float)  # the day after the quarter's last
        return month, q_end

    def slipped_median(f: float) -> float:
        due = start + f * base
        month, q_end = by_day(due)
        moves = u < slip[month]
        lo = np.maximum(due, q_end - window)
        return float(np.median(np.where(moves, lo + (q_end - lo) * v, due) - start))

    lo, hi = 0.2, 1.0
    if slipped_median(hi) <= target:
        return 1.0
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slipped_median(mid) < target else (lo, mid)
    return round((lo + hi) / 2, 4)


def poisson_fit(y: np.ndarray, exposure: np.ndarray, X: np.ndarray) -> tuple[float, np.ndarray]:
    """Poisson regression of counts ``y`` (shape (n,)) on ``X`` (shape (n, k)) with log
    ``exposure`` as offset, by Newton's method: (log-likelihood, coefficients)."""
    beta = np.zeros(X.shape[1])
    beta[0] = math.log(max(y.sum(), 0.5) / exposure.sum())
    for _ in range(50):
        mu = exposure * np.exp(np.clip(X @ beta, -50, 50))
        step = np.linalg.lstsq(X.T @ (X * mu[:, None]) + 1e-9 * np.eye(X.shape[1]), X.T @ (y - mu), rcond=None)[0]
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    mu = exposure * np.exp(np.clip(X @ beta, -50, 50))
    return poisson_loglik(y, mu), beta


def poisson_loglik(y: np.ndarray, mu: np.ndarray) -> float:
    """Poisson log-likelihood of counts ``y`` at means ``mu`` (same shape), without the
    log(y!) terms that no model changes."""
    return float(np.sum(y * np.log(np.maximum(mu, 1e-300)) - mu))
