"""The engine against closed-form expectations, through the public API.

Every check allows 5 Monte Carlo standard errors with a fixed seed.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import date

import numpy as np
import pytest
from conftest import MONTH_DAYS, SCENARIOS, D, within
from scipy import stats

import forecaster as fc


def totals(ds, var="won_deals"):
    return ds[var].sum("period").values


# --- arrivals ------------------------------------------------------------------------------

def test_rate_units_per_day_week_month(make):
    sc = make("""\
    stages: [x]
    segments:
      d: {leads: {per_day: 3}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
      w: {leads: {per_week: 70}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
      m: {leads: {per_month: 310}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
    """)
    ds = fc.simulate(sc)
    won = ds["won_deals_by_segment"]
    n = ds.sizes["trial"]
    for seg, per_month in (("d", [3 * 31, 3 * 28, 3 * 31]), ("w", [310, 280, 310]), ("m", [310, 310, 310])):
        got = won.sel(segment=seg).mean("trial").values
        for g, e in zip(got, per_month):
            within(g, e, math.sqrt(e / n))
        total = won.sel(segment=seg).sum("period").values
        assert 0.93 < total.var(ddof=1) / sum(per_month) < 1.07  # Poisson: variance = mean


def test_rate_drawn_once_per_trial(make):
    sc = make("""\
    stages: [x]
    segments:
      s: {leads: {per_day: {dist: gamma, mean: 10, cv: 0.3}}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
    """)
    won = totals(fc.simulate(sc))
    mean, var = 10 * D, 10 * D + D ** 2 * (10 * 0.3) ** 2
    within(won.mean(), mean, math.sqrt(var / won.size))
    assert 0.9 < won.var(ddof=1) / var < 1.1


def test_dispersion_with_weekly_rate(make):
    sc = make("""\
    stages: [x]
    segments:
      s: {leads: {per_week: 140, dispersion: 0.05}, funnel: {x: {convert: 0.5, days: 0}}, deal_value: 1}
    """)
    won = totals(fc.simulate(sc))
    m = 20.0  # leads per day
    # per day: leads ~ NB(m, d); won = binomial thinning by 0.5 -> mean m/2, var m/2 + d (m/2)^2
    var = D * (m / 2 + 0.05 * (m / 2) ** 2)
    within(won.mean(), D * m / 2, math.sqrt(var / won.size))
    assert 0.9 < won.var(ddof=1) / var < 1.1


def test_growth_drawn_per_trial_and_seasonality(make):
    sc = make("""\
    stages: [x]
    segments:
      s:
        leads: {per_month: 1000, growth_per_month: {dist: uniform, low: 0, high: 0.2}, seasonality: {3: 0.5}}
        funnel: {x: {convert: 1, days: 0}}
        deal_value: 1
    """)
    ds = fc.simulate(sc)
    n = ds.sizes["trial"]
    growth_moment = [1.0, 1.1, (1.2 ** 3 - 1) / 0.6]  # E[(1 + g)^k], g ~ U(0, 0.2)
    for got, k, season in zip(ds["won_deals"].mean("trial").values, range(3), (1, 1, 0.5)):
        exp = 1000 * season * growth_moment[k]
        within(got, exp, math.sqrt((exp + 1000 ** 2 * 0.02) / n))


def test_bought_leads_with_gamma_cost_per_lead(make):
    sc = make("""\
    stages: [x]
    segments:
      s:
        leads: {budget_per_month: 5000, cost_per_lead: {dist: gamma, mean: 40, cv: 0.25}}
        funnel: {x: {convert: 0.5, days: 0}}
        deal_value: 1
    """)
    won = totals(fc.simulate(sc))
    k, theta = 16.0, 2.5  # gamma shape and scale: mean 40, cv 0.25
    inv_mean = 1 / (theta * (k - 1))                # E[1/C]
    inv_sq = 1 / (theta ** 2 * (k - 1) * (k - 2))   # E[1/C^2]
    mean = 3 * 5000 * 0.5 * inv_mean
    var = mean + (3 * 5000 * 0.5) ** 2 * (inv_sq - inv_mean ** 2)
    within(won.mean(), mean, math.sqrt(var / won.size))
    assert 0.9 < won.var(ddof=1) / var < 1.1


# --- conversion, time in stage, value -------------------------------------------------------

def test_stage_times_add_up_hypoexponential(make):
    sc = make("""\
    stages: [a, b]
    segments:
      s:
        leads: {per_day: 20}
        funnel:
          a: {convert: 0.5, days: {dist: exponential, mean: 5}}
          b: {convert: 0.4, days: {dist: exponential, mean: 10}}
        deal_value: 1
    """)
    ds = fc.simulate(sc)
    def F(t):
        return 0.0 if t <= 0 else 1 - (10 * math.exp(-t / 10) - 5 * math.exp(-t / 5)) / 5
    edges = np.cumsum([0, *MONTH_DAYS])
    for m, got in enumerate(ds["won_deals"].mean("trial").values):
        exp = sum(20 * 0.2 * (F(edges[m + 1] - d) - F(edges[m] - d)) for d in range(D))
        within(got, exp, math.sqrt(exp / ds.sizes["trial"]))


def test_conversions_multiply_and_beta_adds_trial_variance(make):
    sc = make("""\
    stages: [a, b]
    segments:
      s:
        leads: {per_day: 50}
        funnel:
          a: {convert: {dist: beta, mean: 0.4, concentration: 30}, days: 0}
          b: {convert: {dist: pert, low: 0.2, mode: 0.3, high: 0.5}, days: 0}
        deal_value: 1
    """)
    won = totals(fc.simulate(sc))
    a = stats.beta(0.4 * 30, 0.6 * 30)
    b = stats.beta(1 + 4 * 0.1 / 0.3, 1 + 4 * 0.2 / 0.3, loc=0.2, scale=0.3)
    lam = 50 * D
    ep = a.mean() * b.mean()
    ep2 = (a.var() + a.mean() ** 2) * (b.var() + b.mean() ** 2)
    var = lam * ep + lam ** 2 * (ep2 - ep ** 2)
    within(won.mean(), lam * ep, math.sqrt(var / won.size))
    assert 0.9 < won.var(ddof=1) / var < 1.1


def test_revenue_is_value_times_deals(make):
    sc = make("""\
    stages: [x]
    segments:
      ln: {leads: {per_day: 4}, funnel: {x: {convert: 1, days: 0}}, deal_value: {dist: lognormal, median: 1000, sigma: 0.5}}
      em: {leads: {per_day: 4}, funnel: {x: {convert: 1, days: 0}}, deal_value: {dist: empirical, values: [10, 20, 60]}}
    """)
    ds = fc.simulate(sc)
    for seg, ev, ev2 in (("ln", 1000 * math.exp(0.125), 1000 ** 2 * math.exp(0.5)), ("em", 30, (100 + 400 + 3600) / 3)):
        rev = ds["revenue_by_segment"].sel(segment=seg).sum("period").values
        lam = 4 * D
        within(rev.mean(), lam * ev, math.sqrt(lam * ev2 / rev.size))  # compound Poisson: var = lam E[V^2]
        assert 0.9 < rev.var(ddof=1) / (lam * ev2) < 1.1


def test_nothing_converts_nothing_is_won(make):
    sc = make("""\
    stages: [a, b]
    segments:
      s: {leads: {per_day: 100}, funnel: {a: {convert: 1, days: 1}, b: {convert: 0, days: 1}}, deal_value: 5}
    """, trials=300)
    ds = fc.simulate(sc)
    assert ds["won_deals"].values.sum() == 0 and ds["revenue"].values.sum() == 0


# --- open pipeline --------------------------------------------------------------------------

def _csv(rows):
    return "deal_id,segment,stage,entered_stage,amount,owner\n" + "".join(
        f"d{i},{seg},{stage},{day},{amount},{owner}\n" for i, (seg, stage, day, amount, owner) in enumerate(rows))


def _entered(age):
    return date.fromordinal(date(2027, 1, 1).toordinal() - age).isoformat()


def test_pipeline_conditioning_on_age_with_gamma_and_weibull(make):
    won_law = stats.gamma(a=4, scale=5)            # days: mean 20, cv 0.5
    lost_law = stats.weibull_min(c=0.8, scale=8)   # days_lost
    rows, expected, var = [], 0.0, 0.0
    for age in (0, 15, 40, 90):
        s, sl = won_law.sf(age), lost_law.sf(age)
        q = 0.4 * s / (0.4 * s + 0.6 * sl)
        win = q * (won_law.cdf(age + D) - won_law.cdf(age)) / s
        rows += [("s", "close", _entered(age), 100, "")] * 100
        expected += 100 * win
        var += 100 * win * (1 - win)
    sc = make("""\
    stages: [close]
    segments:
      s:
        leads: {per_day: 0}
        funnel:
          close: {convert: 0.4, days: {dist: gamma, mean: 20, cv: 0.5}, days_lost: {dist: weibull, shape: 0.8, scale: 8}}
        deal_value: 1
    pipeline: {file: p.csv}
    """, files={"p.csv": _csv(rows)})
    ds = fc.simulate(sc)
    won = totals(ds)
    within(won.mean(), expected, math.sqrt(var / won.size))
    assert np.allclose(ds["revenue"].values, 100 * ds["won_deals"].values)


def test_pipeline_degenerate_ages(make):
    # a: fixed 10 days, age 20 -> no mass above: leaves at 0 and converts with p = 0.5
    # b: days uniform [0, 5] (exceeded), days_lost exponential -> it must be losing: never won
    # c: days exponential, days_lost uniform [0, 5] (exceeded) -> it must be converting: always won
    rows = [("a", "close", _entered(20), "", "")] * 200 + [("b", "close", _entered(10), "", "")] * 200 \
        + [("c", "close", _entered(10), "", "")] * 200
    sc = make("""\
    stages: [close]
    segments:
      a: {leads: {per_day: 0}, funnel: {close: {convert: 0.5, days: 10}}, deal_value: 1}
      b: {leads: {per_day: 0}, funnel: {close: {convert: 0.5, days: {dist: uniform, low: 0, high: 5},
          days_lost: {dist: exponential, mean: 10}}}, deal_value: 1}
      c: {leads: {per_day: 0}, funnel: {close: {convert: 0.5, days: {dist: exponential, mean: 1},
          days_lost: {dist: uniform, low: 0, high: 5}}}, deal_value: 1}
    pipeline: {file: p.csv}
    """, files={"p.csv": _csv(rows)}, trials=2000)
    ds = fc.simulate(sc)
    won = ds["won_deals_by_segment"]
    a = won.sel(segment="a")
    assert a.isel(period=slice(1, None)).values.sum() == 0  # all at time 0: January
    within(a.sum("period").values.mean(), 100, math.sqrt(50 / 2000))
    assert won.sel(segment="b").values.sum() == 0
    c = won.sel(segment="c").sum("period").values
    assert c.min() >= 195  # each wins unless its remaining exponential time passes 90 days (~0)


def test_pipeline_continues_through_later_stages_with_amounts_and_owners(make):
    rows = [("s", "first", _entered(3), 5000, "ann")] * 50 + [("s", "first", _entered(3), "", "")] * 50
    sc = make("""\
    stages: [first, second]
    segments:
      s:
        leads: {per_day: 0}
        funnel:
          first: {convert: 0.5, days: {dist: exponential, mean: 10}}
          second: {convert: 0.6, days: 31}
        deal_value: 1000
    team:
      reps:
        - {name: ann, segments: [s], quota: 1000}
        - {name: bob, segments: [s], quota: 1000}
    pipeline: {file: p.csv}
    """, files={"p.csv": _csv(rows)})
    ds = fc.simulate(sc)
    p_in = 0.5 * 0.6 * (1 - math.exp(-(D - 31) / 10))  # exponential remaining time is memoryless
    ann = ds["bookings"].sel(rep="ann").sum("period").values
    bob = ds["bookings"].sel(rep="bob").sum("period").values
    n = ann.size
    # ann: her 50 deals at 5000 plus half of the 50 unowned at 1000; bob: the other half
    within(ann.mean(), 50 * p_in * 5000 + 25 * p_in * 1000, math.sqrt((50 * p_in * 5000 ** 2 + 25 * p_in * 1e6) / n))
    within(bob.mean(), 25 * p_in * 1000, math.sqrt(25 * p_in * 1e6 / n))
    assert np.allclose(ann + bob, totals(ds, "revenue"))
    first_day = ds["won_deals"].isel(period=0).values
    assert first_day.max() == 0  # 31 fixed days in the second stage: the first win is on 1 February


def test_pipeline_amount_zero_is_kept_not_redrawn(make):
    # a deal whose amount is 0 is worth 0 (a free pilot); only an empty amount draws deal_value
    rows = [("s", "x", _entered(0), 0, "")] * 40 + [("s", "x", _entered(0), "", "")] * 10
    sc = make("""\
    stages: [x]
    segments:
      s: {leads: {per_day: 0}, funnel: {x: {convert: 1, days: 5}}, deal_value: 1000}
    pipeline: {file: p.csv}
    """, files={"p.csv": _csv(rows)}, trials=50)
    ds = fc.simulate(sc)
    assert (totals(ds) == 50).all()
    assert np.allclose(totals(ds, "revenue"), 10 * 1000)


# --- team and commission --------------------------------------------------------------------

def test_reps_share_their_segments_deals(make):
    sc = make("""\
    stages: [x]
    segments:
      one: {leads: {per_day: 10}, funnel: {x: {convert: 1, days: 0}}, deal_value: 10}
      two: {leads: {per_day: 10}, funnel: {x: {convert: 1, days: 0}}, deal_value: 10}
    team:
      reps:
        - {name: a, segments: [one], quota: 1}
        - {name: b, segments: [one, two], quota: 1}
        - {name: c, segments: [two], quota: 1}
    """)
    ds = fc.simulate(sc)
    book = ds["bookings"].sum("period")
    n = ds.sizes["trial"]
    for rep, share in (("a", 0.5), ("b", 1.0), ("c", 0.5)):
        exp = 100 * D * share
        within(book.sel(rep=rep).values.mean(), exp, math.sqrt(100 * D * share / n) * 10)
    assert np.allclose(book.sum("rep").values, totals(ds, "revenue"))


def _tiered(b, q, tiers, cap):
    out, lower = 0.0, 0.0
    for up, rate in tiers:
        upper = math.inf if up is None else up
        if b > lower * q:
            out += rate * (min(b, upper * q) - lower * q)
        lower = upper
    return min(out, cap)


def test_monthly_commission_is_paid_in_its_month_and_follows_the_plan(make):
    sc = make("""\
    stages: [x]
    segments:
      s: {leads: {per_day: 2}, funnel: {x: {convert: 1, days: 0}}, deal_value: {dist: exponential, mean: 1000}}
    team:
      reps:
        - {name: r, segments: [s], quota: 50000}
    commission:
      period: month
      tiers: [{up_to: 0.8, rate: 0.05}, {up_to: 1.2, rate: 0.1}, {rate: 0.2}]
      cap: 6000
    """, trials=300)
    ds = fc.simulate(sc)
    tiers = [(0.8, 0.05), (1.2, 0.1), (None, 0.2)]
    book = ds["bookings"].sel(rep="r").values
    com = ds["commission"].sel(rep="r").values
    for t in range(book.shape[0]):
        for m in range(3):
            assert math.isclose(com[t, m], _tiered(book[t, m], 50000, tiers, 6000), rel_tol=1e-12, abs_tol=1e-9)
    assert np.allclose(ds["revenue"].values, book)
    s = fc.summarize(ds, sc)
    q = s["reps"]["r"]["quota_attainment"]
    assert [x["period"] for x in q] == ["2027-01-01", "2027-02-01", "2027-03-01"]
    assert math.isclose(q[1]["probability"], float(np.mean(book[:, 1] >= 50000)))


def test_commission_periods_cut_by_the_horizon_pay_at_end(tmp_path):
    text = """\
    name: cut
    start: 2027-02-15
    end: 2027-05-10
    report_by: month
    trials: 50
    stages: [x]
    segments:
      s: {leads: {per_day: 1}, funnel: {x: {convert: 1, days: 0}}, deal_value: 100}
    team: {reps: [{name: r, segments: [s], quota: 1000}]}
    commission: {period: quarter, tiers: [{rate: 0.1}]}
    """
    import textwrap
    (tmp_path / "cut.yaml").write_text(textwrap.dedent(text))
    sc = fc.load_scenario(tmp_path / "cut.yaml")
    ds = fc.simulate(sc)
    labels = [str(np.datetime_as_string(p, unit="D")) for p in ds["period"].values]
    assert labels == ["2027-02-15", "2027-03-01", "2027-04-01", "2027-05-01"]
    com = ds["commission"].sel(rep="r").values
    rev = ds["revenue"].values
    assert np.all(com[:, [0, 2]] == 0)
    assert np.allclose(com[:, 1], 0.1 * rev[:, :2].sum(axis=1))  # Q1 (cut at start) closes 31 March
    assert np.allclose(com[:, 3], 0.1 * rev[:, 2:].sum(axis=1))  # Q2 cut at end: paid at end, in May


# --- reproducibility -----------------------------------------------------------------------

def test_same_numbers_on_one_or_two_threads_and_for_a_prefix_of_trials():
    sc = fc.load_scenario(SCENARIOS / "saas-quarter.yaml")
    a = fc.simulate(sc, trials=1200, seed=4, threads=1)
    b = fc.simulate(sc, trials=1200, seed=4, threads=2)
    c = fc.simulate(sc, trials=700, seed=4, threads=2)
    d = fc.simulate(sc, trials=1200, seed=5, threads=2)
    for var in ("revenue_by_segment", "won_deals_by_segment", "bookings", "commission"):
        assert np.array_equal(a[var].values, b[var].values), var
        assert np.array_equal(a[var].values[:700], c[var].values), var
    assert not np.array_equal(a["revenue"].values, d["revenue"].values)


_PARITY = """
import sys, numpy as np, forecaster as fc
sc = fc.load_scenario(sys.argv[1])
ds = fc.simulate(sc, trials=int(sys.argv[2]), seed=3, threads=1)
np.savez(sys.argv[3], revenue=ds["revenue_by_segment"].values, won=ds["won_deals_by_segment"].values,
         bookings=ds["bookings"].values)
"""


EXTENSIONS = """
shocks: {leads: 0.2, convert: {sql: 0.3, opportunity: 0.4}, drift: {leads: 0.05, convert: {opportunity: 0.1}}}
closing: {slip: {1: 0.25, 2: 0.1}, window_days: 12}
capacity: {won_per_month: 60, quarter_shape: {3: 1.3}, cv: 0.1}
"""


@pytest.mark.parametrize("extended", [False, True], ids=["saas", "saas+shocks+closing+capacity"])
@pytest.mark.parametrize("jit_off", ["0", "1"])
def test_kernels_give_the_same_numbers_without_the_jit(tmp_path, jit_off, extended):
    """The saas example (every lead source, many families, pipeline, team) with and without
    numba, and with the format's extensions (shocks, drift, closing, a capacity that binds)."""
    trials = 30
    path = SCENARIOS / "saas-quarter.yaml"
    if extended:
        (tmp_path / "saas-quarter-pipeline.csv").write_text((SCENARIOS / "saas-quarter-pipeline.csv").read_text())
        path = tmp_path / "saas-extended.yaml"
        path.write_text((SCENARIOS / "saas-quarter.yaml").read_text() + EXTENSIONS)
    ref = fc.simulate(fc.load_scenario(path), trials=trials, seed=3, threads=1)
    out = tmp_path / "o.npz"
    env = dict(os.environ, NUMBA_DISABLE_JIT=jit_off)
    subprocess.run([sys.executable, "-c", _PARITY, str(path), str(trials), str(out)],
                   check=True, env=env, timeout=600)
    got = np.load(out)
    assert np.array_equal(got["won"], ref["won_deals_by_segment"].values)
    assert np.array_equal(got["revenue"], ref["revenue_by_segment"].values)
    assert np.array_equal(got["bookings"], ref["bookings"].values)


def test_each_trial_depends_on_its_index_only(monkeypatch):
    """Blocks are for scheduling: any block size gives the same numbers, trial by trial."""
    from forecaster.engine import seeding

    sc = fc.load_scenario(SCENARIOS / "saas-quarter.yaml").with_run(trials=900, seed=21)
    ref = fc.simulate(sc, threads=2)
    monkeypatch.setattr(seeding, "BLOCK_TRIALS", 7)
    from forecaster.engine import simulation
    from forecaster.results import layout
    monkeypatch.setattr(simulation, "BLOCK_TRIALS", 7)
    monkeypatch.setattr(layout, "BLOCK_TRIALS", 7)
    odd = fc.simulate(sc, threads=2)
    for var in ("revenue_by_segment", "bookings", "inputs"):
        assert np.array_equal(ref[var].values, odd[var].values), var
