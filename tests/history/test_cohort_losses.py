"""A cohort's conversion counts its losses (losses recorded): wins that wait (a queue in
front of a saturated team, a slower cycle) must not read as lower conversion while the
losses come as usual."""
from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest

from forecaster.history.estimate import stage_data
from forecaster.history.fitting import (
    LogTimeLaw,
    StageData,
    cohort_conversion,
    conversion_cdf,
    fit_stage,
    open_non_converter,
)
from forecaster.history.readers import Deal


def _cohorts(rng, wait_of_month, p=0.25, months=12, leads=400):
    """One stage; cohort m converts with p after a lognormal 30 days (sigma 0.5) plus a wait
    of ``wait_of_month(m)`` days (a queue), or is lost after a lognormal 20 days."""
    deals = []
    for m in range(months):
        first = date(2025, m + 1, 1)
        for k in range(rng.poisson(leads)):
            entered = first + timedelta(days=int(rng.integers(0, 28)))
            won = rng.random() < p
            days = (rng.lognormal(math.log(30), 0.5) + wait_of_month(m)) if won else rng.lognormal(math.log(20), 0.6)
            deals.append(Deal(f"{m}-{k}", "all", [entered], "won" if won else "lost",
                              entered + timedelta(days=int(days)), 1.0))
    return deals


def _seen(deals, as_of):
    return [Deal(d.deal_id, d.segment, d.entered, d.outcome if d.closed <= as_of else "open",
                 d.closed if d.closed <= as_of else None, d.amount) for d in deals]


def _estimates(deals, as_of, with_losses: bool):
    pooled = stage_data(deals, 0, 1, as_of, True)
    law = LogTimeLaw.of(conversion_cdf(pooled), int(pooled.converted.size))
    fit = fit_stage(pooled)
    still_open = (lambda a: open_non_converter(fit, a)) if with_losses else None
    out = []
    for m in range(9, 12):  # the three youngest cohorts (one to three months old)
        cohort = [d for d in deals if d.entered[0].month == m + 1]
        out.append(cohort_conversion(stage_data(cohort, 0, 1, as_of, True), law, still_open))
    return out


def test_young_cohorts_whose_wins_wait_still_read_their_conversion():
    """The last four cohorts' wins wait 45 more days (a queue): counted as before, a month-old
    cohort has shown few wins and reads as a weak converter; with its losses counted it
    reads p = 0.25 within its standard error, and more precisely."""
    as_of = date(2025, 12, 31)
    deals = _seen(_cohorts(np.random.default_rng(5), lambda m: 45 if m >= 8 else 0), as_of)
    new, old = _estimates(deals, as_of, True), _estimates(deals, as_of, False)
    logit_truth = math.log(0.25 / 0.75)
    for e in new:
        assert abs(e.logit_p - logit_truth) < 3 * math.sqrt(e.var_logit_p), e
    for e_new, e_old in zip(new, old):
        assert e_new.var_logit_p < 0.5 * e_old.var_logit_p
    assert old[-1].logit_p < logit_truth - 0.5  # the month-old cohort, counted as before, looked weak


def test_a_cohort_with_only_losses_and_open_deals_is_a_weak_converter():
    """No conversion yet, most deals lost young: the likelihood has its mass at low p (a lost
    deal is a non-converter), not at the prior's middle."""
    data = StageData(np.zeros(0), np.full(300, 10.0), np.full(100, 5.0), ages=np.r_[np.full(300, 20.0),
                     np.full(100, 5.0)], other_ages=np.r_[np.full(300, 20.0), np.full(100, 5.0)])
    law = LogTimeLaw.of(np.r_[np.zeros(30), np.linspace(0.1, 1.0, 30)], 200)
    e = cohort_conversion(data, law, lambda a: np.exp(-np.asarray(a) / 15))
    assert 1 / (1 + math.exp(-e.logit_p)) < 0.1


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_open_non_converter_is_the_fitted_survival_of_losses(stall):
    rng = np.random.default_rng(2)
    n = 4000
    won = rng.random(n) < 0.3
    stalled = ~won & (rng.random(n) < stall)
    t_win, t_lost = rng.lognormal(math.log(30), 0.5, n), rng.lognormal(math.log(20), 0.6, n)
    age = rng.uniform(0, 400, n)
    conv = won & (t_win <= age)
    lost = ~won & ~stalled & (t_lost <= age)
    data = StageData(np.floor(t_win[conv]), np.floor(t_lost[lost]), np.floor(age[~conv & ~lost]))
    fit = fit_stage(data, families=("lognormal",), lost_families=("lognormal",))
    a = np.array([5.0, 20.0, 60.0, 1000.0])
    want = stall + (1 - stall) * (1 - 0.5 * (1 + np.vectorize(math.erf)((np.log(a) - math.log(20)) / (0.6 * 2 ** .5))))
    np.testing.assert_allclose(open_non_converter(fit, a), want, atol=0.03)
