"""Values booked at an intermediate stage (scenario-format-v2.md, F11), against closed forms.

A lead books a stage's value on the day it converts out of the stage: the leads to be won
(drawn by the v1 kernel, whose loop stops drawing a deal's stage times once it is past the
horizon: the missing ones are drawn apart), the leads lost at a later stage (Poisson classes
drawn apart, sharing the day's gamma multiplier), and open pipeline deals at or before the
stage. v1's outputs must not move.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import within

import forecaster as fc

HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\nreport_by: month\ntrials: {trials}\nseed: 3\n"
MONTHS = ((0, 31), (31, 59), (59, 90))  # [first day, end) of each month


def _load(tmp_path, body, trials=4000, name="s.yaml"):
    path = tmp_path / name
    path.write_text(HEAD.format(trials=trials) + body)
    return fc.load_scenario(path)


THREE = """\
stages: [lead, deal, close]
segments:
  s:
    leads: {per_day: 4%s}
    funnel:
      lead:  {convert: 0.5, days: {dist: exponential, mean: 10}%s}
      deal:  {convert: 0.4, days: {dist: exponential, mean: 40}%s}
      close: {convert: 0.5, days: {dist: gamma, mean: 30, cv: 0.5}}
    deal_value: 1000
"""


def _exits(mean_days: list[float], lo: int, hi: int, n_days: int = 90) -> float:
    """Expected exits in days [lo, hi) per lead a day arriving on days 0 .. n_days - 1 (at the
    start of its day) whose exit time is the sum of exponentials of ``mean_days``."""
    def cdf(t):
        if t <= 0:
            return 0.0
        if len(mean_days) == 1:
            return 1 - math.exp(-t / mean_days[0])
        a, b = mean_days
        return 1 - (a * math.exp(-t / a) - b * math.exp(-t / b)) / (a - b)
    return sum(cdf(hi - d) - cdf(lo - d) for d in range(n_days))


def test_values_are_booked_when_leads_convert_out_of_their_stage(tmp_path):
    """Value 100 out of `lead` (chance 0.5) and 50 out of `deal` (0.5 x 0.4), times
    exponential: the expected stage revenue of each month is a closed form, whatever the
    leads' later fate (won inside the horizon, after it, or lost)."""
    sc = _load(tmp_path, THREE % ("", ", value: 100", ", value: 50"))
    ds = fc.simulate(sc)
    sr = ds["stage_revenue"].values
    n = sr.shape[0]
    for k, (lo, hi) in enumerate(MONTHS):
        e_lead = 4 * 0.5 * _exits([10.0], lo, hi)
        e_deal = 4 * 0.2 * _exits([10.0, 40.0], lo, hi)
        expected = 100 * e_lead + 50 * e_deal
        se = math.sqrt((100 ** 2 * e_lead + 50 ** 2 * e_deal) / n)  # Poisson counts (exits of one lead: both
        within(sr[:, k].mean(), expected, 1.3 * se)                  # stages; covariance < 30% of the variance)
    assert np.allclose(ds["total_bookings"].values, ds["revenue"].values + sr, rtol=1e-12)


def test_stage_values_leave_every_v1_output_bit_identical(tmp_path):
    rows = "".join(f"D{i},s,{stage},2026-12-{10 + i % 20},{'' if i % 2 else 800},\n"
                   for i, stage in enumerate(["lead", "deal", "close"] * 10))
    (tmp_path / "p.csv").write_text("deal_id,segment,stage,entered_stage,amount,owner\n" + rows)
    extra = "pipeline: {file: p.csv}\nclosing: {slip: {1: 0.2, 3: 0.3}}\nshocks: {leads: 0.2}\n"
    base = fc.simulate(_load(tmp_path, THREE % (", dispersion: 0.3", "", "") + extra, trials=500))
    valued = fc.simulate(_load(tmp_path, THREE % (", dispersion: 0.3", ", value: 100",
                                                  ", value: {dist: empirical, values: [10, 20, 70]}") + extra,
                               trials=500, name="v.yaml"))
    for var in ("revenue", "won_deals", "revenue_by_segment", "won_deals_by_segment", "inputs"):
        assert np.array_equal(base[var].values, valued[var].values), var
    assert "stage_revenue" not in base and valued["stage_revenue"].values.sum() > 0


def test_open_deals_book_the_value_of_their_stage_when_they_convert_out(tmp_path):
    """200 deals entered `lead` on start (age 0): each converts out with 0.5 after an
    exponential time of mean 10, so E[stage revenue] = 200 x 0.5 x 100 x P(X < 90), exactly
    counted in each month; deals already past `lead` book nothing of it."""
    rows = "".join(f"D{i},s,lead,2027-01-01,,\n" for i in range(200))
    rows += "".join(f"E{i},s,deal,2027-01-01,,\n" for i in range(100))
    (tmp_path / "p.csv").write_text("deal_id,segment,stage,entered_stage,amount,owner\n" + rows)
    body = THREE.replace("per_day: 4", "per_day: 0") % ("", ", value: 100", "") + "pipeline: {file: p.csv}\n"
    ds = fc.simulate(_load(tmp_path, body))
    sr = ds["stage_revenue"].values
    n = sr.shape[0]
    for k, (lo, hi) in enumerate(MONTHS):
        p = 0.5 * (math.exp(-lo / 10) - math.exp(-hi / 10))
        within(sr[:, k].mean(), 200 * 100 * p, 100 * math.sqrt(200 * p * (1 - p) / n))
    assert np.allclose(sr / 100, np.round(sr / 100))


def test_lost_leads_share_the_days_gamma_multiplier_with_the_won_ones(tmp_path):
    """With days 0 and dispersion δ, the exits out of the first stage on a day are
    NegBin(m p0, δ): variance m p0 + δ (m p0)² a day. Drawing the lost ones with a gamma of
    their own would add 2 δ m p m (p0 - p) a day (p the chance to be won): 18% more here."""
    delta, m, p0, p = 0.8, 10.0, 0.5, 0.5 * 0.6
    body = """\
stages: [lead, deal]
segments:
  s:
    leads: {per_day: 10, dispersion: 0.8}
    funnel:
      lead: {convert: 0.5, days: 0, value: 1}
      deal: {convert: 0.6, days: 0}
    deal_value: 1000
"""
    sr = fc.simulate(_load(tmp_path, body, trials=8000))["stage_revenue"].values.sum(axis=1)
    var_day = m * p0 + delta * (m * p0) ** 2
    within(sr.mean(), 90 * m * p0, math.sqrt(90 * var_day / sr.size))
    var = sr.var(ddof=1)
    own_gamma = 90 * (var_day + 2 * delta * m * p * m * (p0 - p))
    # the sample variance's sd: about var * sqrt(2 / n) (near-normal sums of 90 days)
    assert abs(var - 90 * var_day) < 4 * 90 * var_day * math.sqrt(2 / sr.size) < abs(own_gamma - 90 * var_day)


@pytest.mark.parametrize("text, fragment", [
    ((THREE % ("", "", "")).replace("close: {convert: 0.5,", "close: {value: 5, convert: 0.5,"),
     "segments.s.funnel.close.value"),
    (THREE % ("", ", value: 100", "") + "shocks: {drift: {convert: {deal: 0.1}}}\n", "shocks.drift.convert"),
])
def test_stage_values_refused_where_they_cannot_be_honoured(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD.format(trials=10) + text)
    with pytest.raises(fc.ScenarioError, match=fragment.replace(".", r"\.")):
        fc.load_scenario(path)
