"""Extreme but legal input: correct numbers or a clear refusal with the key path, never
silent zeros, overflowed infinities or a hang (forecaster.scenario.limits, the distributions' tails)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import D, within
from scipy import stats

import forecaster as fc
from forecaster.errors import ScenarioError
from forecaster.scenario.distributions import truncated_normal_mean
from forecaster.scenario.limits import MAX_LEADS, MAX_VALUE


def _one(days="0", convert="1", value="1", leads="{per_day: 1}", extra="", **head):
    return f"""\
    stages: [x]
    segments:
      s: {{leads: {leads}, funnel: {{x: {{convert: {convert}, days: {days}}}}}, deal_value: {value}}}
    {extra}"""


@pytest.mark.parametrize("body, path, words, head", [
    (_one(leads="{per_day: 1e18}"), "segments.s.leads", "leads a trial", {}),
    (_one(leads="{per_month: 15, growth_per_month: 1e6}"), "segments.s.leads", "growth_per_month", {}),
    (_one(leads="{budget_per_month: 1e6, cost_per_lead: 1e-9}"), "segments.s.leads", "cost_per_lead", {}),
    (_one(value="1e308"), "segments.s.deal_value", "mean", {}),
    (_one(value="{dist: lognormal, median: 100, sigma: 40}"), "segments.s.deal_value", "infinity", {}),
    (_one(value="{dist: weibull, shape: 0.005, scale: 100}"), "segments.s.deal_value", "infinity", {}),
    (_one(days="{dist: gamma, mean: 5, cv: 1e-200}"), "segments.s.funnel.x.days.cv", "at least", {}),
    (_one(extra="team: {reps: [{name: a, segments: [s], quota: 1}]}\n    "
                "commission: {period: quarter, tiers: [{rate: 1e300}]}"),
     "commission.tiers[0].rate", "at most", {}),
    (_one(extra="team: {reps: [{name: a, segments: [s], quota: 1e300}]}"), "team.reps[0].quota", "at most", {}),
])
def test_sizes_past_the_engine_are_refused_with_the_key_path(make, body, path, words, head):
    with pytest.raises(ScenarioError) as err:
        make(body, trials=10, **head)
    text = str(err.value)
    assert path in text and words in text, text


def test_growth_over_ten_years_is_refused_not_zero():
    # 100% a month for ten years: 15 leads in the first month, 2^119 times that in the last
    with pytest.raises(ScenarioError, match="growth_per_month"):
        fc.scenario_from_dict({"name": "t", "start": "2027-01-01", "end": "2036-12-31", "trials": 10, "seed": 1,
                               "stages": ["x"], "segments": {"s": {
                                   "leads": {"per_month": 15, "growth_per_month": 1.0},
                                   "funnel": {"x": {"convert": 1, "days": 0}}, "deal_value": 1}}})


def test_the_largest_accepted_sizes_still_run(make):
    per_day = MAX_LEADS / D / 1e4  # well inside the limits, a big but quick run
    ds = fc.simulate(make(_one(leads=f"{{per_day: {per_day}}}", value=str(MAX_VALUE)), trials=2))
    assert np.all(np.isfinite(ds["revenue"].values))
    assert ds["won_deals"].values.sum() > 0


def test_a_pipeline_amount_past_the_limit_is_refused(make):
    with pytest.raises(ScenarioError, match="amount"):
        make(_one(extra="pipeline: {file: p.csv}"),
             files={"p.csv": "deal_id,segment,stage,entered_stage,amount\nd1,s,x,2026-12-01,1e300\n"})


def test_lognormal_days_with_sigma_40_are_sampled_correctly(make):
    # P(T <= t) = Phi(log(t / 5) / 40); a lead of day k (0-based) is won in the horizon if T < D - k
    won = fc.simulate(make(_one(days="{dist: lognormal, median: 5, sigma: 40}", leads="{per_day: 20}"),
                           trials=2000))["won_deals"].sum("period").values
    p = [stats.norm.cdf(math.log((D - k) / 5) / 40) for k in range(D)]  # days are continuous, won before D - k
    expected = 20 * sum(p)
    within(won.mean(), expected, math.sqrt(expected / won.size) * 1.1)


def test_weibull_days_with_shape_0_005_are_sampled_correctly(make):
    won = fc.simulate(make(_one(days="{dist: weibull, shape: 0.005, scale: 5}", leads="{per_day: 20}"),
                           trials=2000))["won_deals"].sum("period").values
    expected = 20 * sum(1 - math.exp(-((D - k) / 5) ** 0.005) for k in range(D))
    within(won.mean(), expected, math.sqrt(expected / won.size) * 1.1)


def test_normal_days_far_below_zero_are_conditioned_not_refused(make):
    # mean -100, sd 1 conditioned on >= 0: an exponential-like law with mean about 0.01 days
    ds = fc.simulate(make(_one(days="{dist: normal, mean: -100, sd: 1}", leads="{per_day: 20}"), trials=500))
    won = ds["won_deals"].sum("period").values
    within(won.mean(), 20 * D, math.sqrt(20 * D / won.size))


def test_beta_with_a_vanishing_concentration_is_a_coin_with_its_mean(make):
    # concentration 1e-300: p is 0 or 1, 1 with chance 0.3 (the mean), once per trial
    won = fc.simulate(make(_one(convert="{dist: beta, mean: 0.3, concentration: 1e-300}", leads="{per_day: 5}"),
                           trials=3000))["won_deals"].sum("period").values
    ones = won > 0
    within(ones.mean(), 0.3, math.sqrt(0.21 / won.size))
    assert set(np.unique(won[~ones])) == {0}
    within(won[ones].mean(), 5 * D, math.sqrt(5 * D / ones.sum()))


def test_far_truncated_normal_conversion_is_near_its_bound(make):
    won = fc.simulate(make(_one(convert="{dist: normal, mean: 1000, sd: 1}", leads="{per_day: 5}"),
                           trials=200))["won_deals"].sum("period").values
    within(won.mean(), 5 * D, math.sqrt(5 * D / won.size))  # conditioned on [0, 1]: p is 1 to within 1e-3


@pytest.mark.parametrize("a, b", [(0.5, 2.0), (-1.0, 3.0), (-3.0, -1.0), (5.0, math.inf), (2.0, 2.5)])
def test_truncated_normal_mean_matches_scipy_where_scipy_is_exact(a, b):
    assert truncated_normal_mean(a, b) == pytest.approx(stats.truncnorm(a, b).mean(), rel=1e-10)


def test_truncated_normal_mean_far_in_the_tails():
    # E[Z | Z > a] = a + 1/a - 2/a^3 + 10/a^5 - ... (the Mills ratio's expansion)
    for a in (100.0, 1e4, 1e6):
        assert truncated_normal_mean(a, math.inf) == pytest.approx(a + 1 / a - 2 / a ** 3 + 10 / a ** 5, rel=1e-12)
        assert truncated_normal_mean(-math.inf, -a) == pytest.approx(-(a + 1 / a - 2 / a ** 3 + 10 / a ** 5), rel=1e-12)
    # a narrow interval [a, a + w] far out: the density falls like exp(-a x) across it, so the
    # mean is a + w (1 / (a w) - 1 / (exp(a w) - 1)); a w = 1 here
    a, w = 1e6, 1e-6
    assert truncated_normal_mean(a, a + w) == pytest.approx(a + w * (1 - 1 / (math.e - 1)), abs=3e-10)  # doubles near 1e6 are 1.2e-10 apart


@pytest.mark.parametrize("extra, path, words", [
    ("capacity: {won_per_month: 1e308}", "capacity.won_per_month", "at most"),
    ("capacity: {won_per_month: 100, quarter_shape: {3: 1e308}}", "capacity.won_per_month", "quarter_shape"),
    ("capacity: {won_per_month: 10, cv: 1e-300}", "capacity.cv", "0 (none)"),
    ("shocks: {leads: 1e308}", "shocks.leads", "at most 3"),
    ("shocks: {convert: {x: 1000}}", "shocks.convert.x", "at most 10"),
    ("shocks: {drift: {convert: {x: 50}}}", "shocks.drift.convert.x", "at most 5"),
])
def test_extensions_past_the_engine_are_refused(make, extra, path, words):
    with pytest.raises(ScenarioError) as err:
        make(_one(extra=extra), trials=10)
    assert path in str(err.value) and words in str(err.value), str(err.value)


@pytest.mark.parametrize("cost, words", [
    ("{dist: lognormal, median: 50, sigma: 40}", "leads a trial"),
    ("{dist: normal, mean: -5, sd: 0.01}", "leads a trial"),  # conditioned on > 0: costs near 0
    ("{dist: gamma, mean: 50, cv: 1e3}", "leads a trial"),
])
def test_bought_leads_count_what_a_cost_near_zero_buys(make, cost, words):
    with pytest.raises(ScenarioError, match=words):
        make(_one(leads=f"{{budget_per_month: 5000, cost_per_lead: {cost}}}"), trials=10)


def test_inverse_mean_of_a_cost_matches_its_closed_form():
    from forecaster.scenario.distributions import Distribution
    from forecaster.scenario.limits import inverse_mean

    # lognormal: E[1 / X] = exp(sigma^2 / 2) / median; gamma of shape k, mean m: k / (m (k - 1))
    assert inverse_mean(Distribution("lognormal", {"median": 45.0, "sigma": 0.3})) == pytest.approx(
        math.exp(0.045) / 45, rel=2e-3)
    assert inverse_mean(Distribution("gamma", {"mean": 40.0, "cv": 0.25})) == pytest.approx(16 / (40 * 15), rel=2e-3)
    assert inverse_mean(Distribution.fixed(20.0)) == 0.05
    assert inverse_mean(Distribution("empirical", {"values": (10.0, 40.0)})) == pytest.approx(0.0625)


def test_a_triangular_reaching_the_largest_float_samples_without_overflow(make):
    # days triangular(0, 0, 1e308): P(T < 90) is about 2 * 90 / 1e308, so nothing is won; the
    # quantile's product (high - low)(high - mode) overflowed to -inf days and wrote out of bounds
    ds = fc.simulate(make(_one(days="{dist: triangular, low: 0, mode: 0, high: 1e308}", leads="{per_day: 20}"),
                          trials=300))
    assert ds["won_deals"].values.sum() == 0
    values = fc.simulate(make(_one(value="{dist: triangular, low: 0, mode: 1e14, high: 1e15}"), trials=300))
    assert np.all(np.isfinite(values["revenue"].values)) and values["revenue"].values.min() >= 0


def test_a_normal_conversion_with_a_vanishing_sd_far_above_one_converts_everything(make):
    # mean 1e6, sd 1e-300 conditioned on [0, 1]: the far tail's rate overflowed and never accepted
    won = fc.simulate(make(_one(convert="{dist: normal, mean: 1e6, sd: 1e-300}", leads="{per_day: 5}"),
                           trials=100))["won_deals"].sum("period").values
    within(won.mean(), 5 * D, math.sqrt(5 * D / won.size))


def test_one_trial_is_refused(make):
    with pytest.raises(ScenarioError, match="trials must be at least 2"):
        make(_one(), trials=1)
