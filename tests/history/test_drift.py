"""The local-level model of drifting rates recovers known truths (synthetic series)."""
from __future__ import annotations

import math

import numpy as np

from forecaster.history.drift import empirical_logit, local_level


def test_the_forecast_interval_of_a_random_walk_covers_its_nominal_share():
    rng = np.random.default_rng(7)
    hits, n = 0, 400
    for _ in range(n):
        x = np.cumsum(rng.normal(0, math.sqrt(0.05), 19))  # 18 months seen, the 19th forecast
        v = rng.uniform(0.01, 0.05, 18)
        fit = local_level(x[:18] + rng.normal(0, np.sqrt(v)), v)
        hits += abs(x[18] - fit.m) <= 1.2816 * math.sqrt(fit.variance(1))
    share, se = hits / n, math.sqrt(0.8 * 0.2 / n)
    assert abs(share - 0.8) < 3.5 * se, share


def test_a_stable_rate_has_no_drift_and_its_level_is_the_mean():
    rng = np.random.default_rng(8)
    v = rng.uniform(0.01, 0.04, 12)
    fit = local_level(1.5 + rng.normal(0, np.sqrt(v)), v)
    assert fit.q < 0.02
    assert abs(fit.m - 1.5) < 3 * math.sqrt(fit.variance(0))


def test_noise_around_a_steady_level_is_not_read_as_drift():
    rng = np.random.default_rng(9)
    hits, qs, rs = 0, [], []
    for _ in range(100):
        v = np.full(12, 0.01)
        fit = local_level(1.0 + rng.normal(0, 0.3, 12) + rng.normal(0, 0.1, 12), v)  # r = 0.09
        qs.append(fit.q)
        rs.append(fit.r)
        hits += abs(fit.m - 1.0) <= 1.2816 * math.sqrt(fit.variance(0))
    assert np.median(qs) < np.median(rs) / 2 and 0.04 < np.median(rs) < 0.15  # mostly noise, little drift
    assert hits / 100 > 0.7  # the level's own interval covers the truth


def test_a_jump_is_followed_and_months_without_data_are_skipped():
    v = np.full(7, 0.01)
    once = local_level([-3.5, -3.6, np.nan, -3.4, -3.5, -2.0], v[:6])
    assert -3.5 < once.m < -1.9 and abs(once.m + 2) < 1.28 * math.sqrt(once.variance(0))  # a shift, or an outlier?
    twice = local_level([-3.5, -3.6, np.nan, -3.4, -3.5, -2.0, -2.1], v)
    assert abs(twice.m + 2.05) < 0.2  # the level has moved
    assert twice.q < 0.1 and math.sqrt(twice.variance(1)) < 0.5  # a jump, not a wildly drifting level
    assert local_level([1.0, np.nan, 2.0], [0.1, 0.1, 0.1]) is None


def test_empirical_logit_and_its_variance():
    y, var = empirical_logit(30, 100)
    assert math.isclose(y, math.log(30.5 / 70.5)) and math.isclose(var, 1 / 30.5 + 1 / 70.5)
