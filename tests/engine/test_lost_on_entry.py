"""The leads lost at the first stage they enter (v2 F1), whose loss days the kernels draw all
at once (``kernels.lost_on_entry``: a binomial for the stalled share, then one multinomial
per arrival day over the reporting periods and beyond the horizon), against closed forms.

With Poisson arrivals of lambda a day and a first stage converting p, the leads lost there
arriving on day d are Poisson(lambda (1 - p)) and each is given up on day d + X, X from the
stage's ``days_lost``; so the losses in month j are Poisson with mean
lambda (1 - p) (1 - stalled) sum_d [P(X < e_j - d) - P(X < s_j - d)] (s_j, e_j the month's
first day and the day after its last, days from start), independent from month to month,
from segment to segment, and of the won leads. P(X < c) is taken strictly below: a law with
an atom on a whole day (``fixed``, ``empirical``) tells a day's shift or a wrong period at
once, and every law does at these sample sizes (a day's shift moves a month's mean by about
lambda (1 - p) leads, tens of standard errors). With moves, a lead may come back to its first
stage: when only ``days_lost`` takes time, every loss there is still d + X after its arrival,
and the losses are lambda N[a, a] (1 - p_a)(1 - sigma_a)(1 - stalled) the same sums.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import MONTH_DAYS, within
from scipy import stats

import forecaster as fc

HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\nreport_by: month\ntrials: {trials}\nseed: 17\n"
D = 90
STARTS = np.cumsum((0,) + MONTH_DAYS)  # each month's first day, then the horizon's end
LAM = 30.0


def _below_continuous(dist):
    return lambda c: dist.cdf(c)


FAMILIES = {  # yaml of the law, P(X < c) computed here from scipy or by hand
    "exponential": ("{dist: exponential, mean: 6}", _below_continuous(stats.expon(scale=6))),
    "gamma": ("{dist: gamma, mean: 8, cv: 0.5}", _below_continuous(stats.gamma(4.0, scale=2.0))),
    "lognormal": ("{dist: lognormal, median: 5, sigma: 0.7}", _below_continuous(stats.lognorm(0.7, scale=5))),
    "weibull": ("{dist: weibull, shape: 1.5, scale: 7}", _below_continuous(stats.weibull_min(1.5, scale=7))),
    "uniform": ("{dist: uniform, low: 2, high: 12}", _below_continuous(stats.uniform(2, 10))),
    "triangular": ("{dist: triangular, low: 0, mode: 3, high: 15}",
                   _below_continuous(stats.triang(0.2, loc=0, scale=15))),
    "pert": ("{dist: pert, low: 1, mode: 4, high: 20}",
             _below_continuous(stats.beta(1 + 4 * 3 / 19, 1 + 4 * 16 / 19, loc=1, scale=19))),
    "normal": ("{dist: normal, mean: 6, sd: 4}",  # cut to days >= 0
               _below_continuous(stats.truncnorm(-1.5, np.inf, loc=6, scale=4))),
    "fixed": ("7", lambda c: (7.0 < np.asarray(c)).astype(float)),
    "empirical": ("{dist: empirical, values: [0, 3, 3, 7, 10.5]}",
                  lambda c: np.array([np.sum(np.array([0, 3, 3, 7, 10.5]) < x) / 5 for x in np.atleast_1d(c)])),
}


def expected_by_month(below, rate: float) -> np.ndarray:
    """Mean losses in each month of leads arriving at ``rate`` a day and lost at their
    first stage after X days (``below(c)`` = P(X < c)), (3,)."""
    out = np.zeros(3)
    for d in range(D):
        for j in range(3):
            lo, hi = max(STARTS[j] - d, 0), STARTS[j + 1] - d
            if hi > 0:
                out[j] += float(below(np.array([float(hi)]))[0]) - (float(below(np.array([float(lo)]))[0])
                                                                     if lo > 0 else 0.0)
    return rate * out


def _simulate(tmp_path, body, trials):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.format(trials=trials) + body)
    return fc.simulate(fc.load_scenario(path))


def _losses(ds, segment, stage):
    return ds["losses"].sel(segment=segment, stage=stage).transpose("trial", "period").values


def _entries(ds, segment, stage):
    return ds["stage_entries"].sel(segment=segment, stage=stage).transpose("trial", "period").values


TWO = """\
stages: [a, b]
segments:
  s:
    leads: {per_day: 30}
    funnel:
      a: {convert: 0.4, days: 0, days_lost: LAW}
      b: {convert: 0.5, days: {dist: exponential, mean: 3}, days_lost: 2}
    deal_value: 1
  u:
    stages: [b]
    leads: {per_day: 30}
    funnel:
      b: {convert: 0.5, days: 0, days_lost: LAW}
    deal_value: 1
outputs: {stage_entries: true, losses: true}
"""


@pytest.mark.parametrize("family", list(FAMILIES))
def test_first_stage_losses_by_month_follow_the_shifted_law(tmp_path, family):
    """Each family, on a segment entering at its first stage (s) and one entering at the
    second (u, v2 F4): means by month, Poisson variances, independent months and segments."""
    law, below = FAMILIES[family]
    stalled = 0.25 if family == "gamma" else 0.0  # the stalled share: a binomial before the periods
    body = TWO.replace("LAW", law) + (f"stalled: {{a: {stalled}}}\n" if stalled else "")
    n = 1500
    ds = _simulate(tmp_path, body, n)
    for seg, stage, p, keep in (("s", "a", 0.4, 1.0 - stalled), ("u", "b", 0.5, 1.0)):
        lost = _losses(ds, seg, stage)
        mean = expected_by_month(below, LAM * (1 - p) * keep)
        for j in range(3):
            within(lost[:, j].mean(), mean[j], math.sqrt(mean[j] / n), k=4.0)
            assert 0.88 < lost[:, j].var(ddof=1) / mean[j] < 1.12  # Poisson, not a fixed share
        for i, j in ((0, 1), (0, 2), (1, 2)):
            assert abs(np.corrcoef(lost[:, i], lost[:, j])[0, 1]) < 4.5 / math.sqrt(n)
        entered = _entries(ds, seg, stage).sum(axis=1)  # every arrival enters on its day
        within(entered.mean(), LAM * D, math.sqrt(LAM * D / n), k=4.0)
    a, b = _losses(ds, "s", "a").sum(axis=1), _losses(ds, "u", "b").sum(axis=1)
    assert abs(np.corrcoef(a, b)[0, 1]) < 4.5 / math.sqrt(n)  # segments apart
    won = ds["won_deals"].values.sum(axis=1)
    assert abs(np.corrcoef(a, won)[0, 1]) < 4.5 / math.sqrt(n)


def test_a_day_shift_or_the_arrival_period_would_fail(tmp_path):
    """The test's power: with the fixed law of 7 days, moving every loss a day later (or
    counting it in its arrival month) moves a month's mean by at least 18 leads, over 20
    standard errors at 1500 trials."""
    _, below = FAMILIES["fixed"]
    right = expected_by_month(below, LAM * 0.6)
    shifted = expected_by_month(lambda c: below(np.asarray(c) - 1.0), LAM * 0.6)
    arrival = LAM * 0.6 * np.array(MONTH_DAYS, dtype=float)
    for wrong in (shifted, arrival):
        assert np.max(np.abs(wrong - right) / np.sqrt(right / 1500)) > 20


@pytest.mark.parametrize("stalled", [0.0, 0.2])
def test_with_moves_every_loss_at_the_first_stage_is_dated_from_arrival(tmp_path, stalled):
    """A funnel with moves where only days_lost takes time: a skip a -> c, b back to a. The
    visits to a are N[a, a] = 1 / (1 - p_a (1 - p_b) tau) a lead; the lost exit of each is
    (1 - p_a)(1 - sigma); a lead is lost at most once."""
    law, below = FAMILIES["lognormal"]
    body = f"""\
stages: [a, b, c]
segments:
  s:
    leads: {{per_day: 30}}
    funnel:
      a: {{convert: 0.5, days: 0, days_lost: {law}, moves: [{{to: c, share: 0.2, days: 0}}]}}
      b: {{convert: 0.4, days: 0, days_lost: 0, moves: [{{to: a, share: 0.3, days: 0}}]}}
      c: {{convert: 0.5, days: 0, days_lost: 0}}
    deal_value: 1
  u:
    leads: {{per_day: 30}}
    funnel:
      a: {{convert: 0.5, days: 0, days_lost: {law}}}
      b: {{convert: 0.4, days: 0, days_lost: 0}}
      c: {{convert: 0.5, days: 0, days_lost: 0}}
    deal_value: 1
outputs: {{stage_entries: true, losses: true}}
""" + (f"stalled: {{a: {stalled}}}\n" if stalled else "")
    n = 1500
    ds = _simulate(tmp_path, body, n)
    visits = 1.0 / (1.0 - 0.5 * 0.6 * 0.3)
    lost = _losses(ds, "s", "a")
    mean = expected_by_month(below, LAM * visits * 0.5 * 0.8 * (1.0 - stalled))
    for j in range(3):
        within(lost[:, j].mean(), mean[j], math.sqrt(mean[j] / n), k=4.0)
        assert 0.88 < lost[:, j].var(ddof=1) / mean[j] < 1.12
    days = np.array(MONTH_DAYS, dtype=float)
    for stage, per_day in (("a", visits), ("b", visits * 0.5), ("c", visits * (0.5 * 0.2 + 0.5 * 0.4))):
        got = _entries(ds, "s", stage)
        for j in range(3):
            m = LAM * per_day * days[j]
            within(got[:, j].mean(), m, math.sqrt(m * 1.5 / n), k=4.0)  # revisits: over-dispersed
    lost_b = _losses(ds, "s", "b")  # given up on the day they leave a
    m = LAM * visits * 0.5 * 0.6 * 0.7 * days
    for j in range(3):
        within(lost_b[:, j].mean(), m[j], math.sqrt(m[j] / n), k=4.0)
    other = _losses(ds, "u", "a")  # a segment without moves beside it: its own draws
    mean_u = expected_by_month(below, LAM * 0.5 * (1.0 - stalled))
    for j in range(3):
        within(other[:, j].mean(), mean_u[j], math.sqrt(mean_u[j] / n), k=4.0)
    assert abs(np.corrcoef(lost.sum(axis=1), other.sum(axis=1))[0, 1]) < 4.5 / math.sqrt(n)
    won = ds["won_deals"].values.sum(axis=1)
    assert abs(np.corrcoef(lost.sum(axis=1), won)[0, 1]) < 4.5 / math.sqrt(n)
