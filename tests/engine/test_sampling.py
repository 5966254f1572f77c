"""Every sampling path of the kernels against scipy's exact distributions.

Each family is drawn through :func:`forecaster.engine.kernels.draw` and compared with the exact
law: the mean within 5 Monte Carlo standard errors and a Kolmogorov-Smirnov test (fixed
seeds, so these are deterministic). :func:`draw_above` (the pipeline's remaining time) is
checked against the conditional law P(X <= x | X > a) = (F(x) - F(a)) / S(a), in the body
(rejection) and deep in the tail (each family's own method).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from forecaster.engine import kernels
from forecaster.engine.plan import encode
from forecaster.scenario.distributions import NONNEGATIVE, PROBABILITY, Distribution, Quantity
from forecaster.scenario.validation import Context

N = 40_000


def dist(spec, role=NONNEGATIVE) -> Distribution:
    ctx = Context()
    d = Quantity(role).validate(spec, ("q",), ctx)
    assert not ctx.problems, ctx.problems
    return d


def encoded(d: Distribution):
    code, par, values = encode(d)
    if code == kernels.EMPIRICAL:
        par[0], par[1] = 0, len(values)
        return code, par, values
    return code, par, np.zeros(1)


def sample(d: Distribution, n=N, seed=0):
    code, par, pool = encoded(d)
    out = np.empty(n)
    kernels.draw_many(np.random.default_rng(seed), code, par, pool, out)
    return out


def sample_above(d: Distribution, a: float, n=N, seed=0):
    code, par, pool = encoded(d)
    out = np.empty(n)
    kernels.draw_above_many(np.random.default_rng(seed), code, par, pool, a, d.survival(a), out)
    return out


CONTINUOUS = [
    {"dist": "uniform", "low": 2, "high": 9},
    {"dist": "triangular", "low": 1, "mode": 3, "high": 10},
    {"dist": "triangular", "low": 0, "mode": 0, "high": 5},
    {"dist": "pert", "low": 2, "mode": 5, "high": 20},
    {"dist": "pert", "low": 0, "mode": 10, "high": 10},
    {"dist": "normal", "mean": 10, "sd": 3},
    {"dist": "normal", "mean": 1, "sd": 4},        # truncated at 0 for most of its mass
    {"dist": "lognormal", "median": 12, "sigma": 0.7},
    {"dist": "gamma", "mean": 10, "cv": 0.5},
    {"dist": "gamma", "mean": 3, "cv": 2.0},       # shape 0.25
    {"dist": "exponential", "mean": 7},
    {"dist": "weibull", "shape": 1.5, "scale": 30},
    {"dist": "weibull", "shape": 0.7, "scale": 5},
    {"dist": "beta", "mean": 0.3, "concentration": 8},
    {"dist": "beta", "mean": 0.5, "concentration": 0.8},  # both shapes below 1
]


@pytest.mark.parametrize("spec", CONTINUOUS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_draws_follow_the_exact_law(spec):
    d = dist(spec)
    x = sample(d)
    law = d._scipy()
    sd = law.std()
    assert abs(x.mean() - law.mean()) <= 5 * sd / math.sqrt(N), (x.mean(), law.mean())
    assert stats.kstest(x, law.cdf).pvalue > 1e-3


def test_fixed_and_empirical_draws():
    assert np.all(sample(dist(4.5), n=100) == 4.5)
    values = [3.0, 1.0, 1.0, 7.0, 20.0]
    x = sample(dist({"dist": "empirical", "values": values}))
    for v in set(values):  # each value with its share of the list
        share = values.count(v) / len(values)
        assert abs((x == v).mean() - share) <= 5 * math.sqrt(share * (1 - share) / N)
    assert set(np.unique(x)) == set(values)


@pytest.mark.parametrize("spec,lo,hi", [
    ({"dist": "normal", "mean": 0.4, "sd": 0.3}, 0, 1),     # most mass inside: rejection
    ({"dist": "normal", "mean": 1.8, "sd": 0.3}, 0, 1),     # right of the interval: tail proposal
    ({"dist": "normal", "mean": -2.0, "sd": 0.2}, 0, 1),    # far left: exponential proposal, mirrored
    ({"dist": "normal", "mean": 0.5, "sd": 20.0}, 0, 1),    # wide normal, narrow interval
])
def test_normal_probabilities_are_truncated_to_0_1(spec, lo, hi):
    d = dist(spec, PROBABILITY)
    x = sample(d)
    assert x.min() >= lo and x.max() <= hi
    m, s = spec["mean"], spec["sd"]
    law = stats.truncnorm((lo - m) / s, (hi - m) / s, loc=m, scale=s)
    assert stats.kstest(x, law.cdf).pvalue > 1e-3


@pytest.mark.parametrize("a,b", [(-np.inf, np.inf), (-1, 2), (0.2, 0.3), (3, np.inf), (6, 6.5), (4, 9),
                                 (-np.inf, -5), (-0.05, 0.05)])
def test_truncated_standard_normal(a, b):
    out = np.empty(N)
    kernels.truncated_standard_normal_many(np.random.default_rng(3), a, b, out)
    assert out.min() >= a and out.max() <= b
    assert stats.kstest(out, stats.truncnorm(a, b).cdf).pvalue > 1e-3


ABOVE = [
    ({"dist": "lognormal", "median": 20, "sigma": 0.8}, [5, 40, 200]),
    ({"dist": "normal", "mean": 30, "sd": 10}, [10, 45, 80]),
    ({"dist": "gamma", "mean": 10, "cv": 0.5}, [5, 20, 40]),
    ({"dist": "gamma", "mean": 4, "cv": 1.5}, [2, 15, 40]),
    ({"dist": "exponential", "mean": 10}, [3, 60]),
    ({"dist": "weibull", "shape": 1.5, "scale": 20}, [10, 50, 90]),
    ({"dist": "uniform", "low": 5, "high": 30}, [2, 10, 28]),
    ({"dist": "triangular", "low": 0, "mode": 10, "high": 40}, [5, 30, 39]),
    ({"dist": "pert", "low": 0, "mode": 10, "high": 40}, [5, 30, 38]),
    ({"dist": "pert", "low": 0, "mode": 40, "high": 40}, [3, 38]),
    ({"dist": "beta", "mean": 0.4, "concentration": 5}, [0.2]),
]


@pytest.mark.parametrize("spec,ages", ABOVE, ids=lambda v: str(v))
def test_draw_above_follows_the_conditional_law(spec, ages):
    d = dist(spec)
    law = d._scipy()
    for a in ages:
        x = sample_above(d, a, n=20_000, seed=int(a * 10))
        assert x.min() >= a
        fa, sa = law.cdf(a), law.sf(a)
        # the CDF given a draw above this age, its constants bound now (kstest calls it at once)
        p = stats.kstest(x, lambda v, fa=fa, sa=sa: np.clip((law.cdf(v) - fa) / sa, 0, 1)).pvalue
        assert p > 1e-3, (spec, a, sa)


def test_draw_above_empirical_and_fixed():
    values = [1.0, 4.0, 4.0, 9.0, 12.0]
    d = dist({"dist": "empirical", "values": values})
    x = sample_above(d, 4.0, n=30_000)
    assert set(np.unique(x)) == {9.0, 12.0}
    assert abs((x == 9.0).mean() - 0.5) < 5 * math.sqrt(0.25 / 30_000)
    assert np.all(sample_above(dist(7.0), 3.0, n=10) == 7.0)


@pytest.mark.parametrize("spec", CONTINUOUS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_closed_form_means_match_scipy(spec):
    d = dist(spec)
    assert math.isclose(d.mean(), d._scipy().mean(), rel_tol=1e-9)
