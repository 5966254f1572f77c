"""v2 C (leads that saturate with the budget) and E.2/E.3 (a channel's costs, the leads arriving,
spend and its ratios), checked against closed forms.

Every scenario converts in 0 days unless said, so a segment's won deals in a month are its won
arrivals of that month.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ROOT, within

import forecaster as fc
from forecaster.engine import kernels
from forecaster.engine.interface import HILL, NO_RESPONSE, POWER

HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\nreport_by: month\ntrials: {trials}\nseed: 7\n"
B0, C = 50000, 50  # 1000 leads a month at the reference budget


def _simulate(tmp_path, body, trials=4000, name="s.yaml"):
    path = tmp_path / name
    path.write_text(HEAD.format(trials=trials) + body)
    return fc.simulate(fc.load_scenario(path))


def _bought(name, budget, response, extra="", convert=1.0):
    return f"""\
  {name}:
    leads:
      budget_per_month: {budget}
      cost_per_lead: {C}
      response: {response}
{extra}    funnel:
      x: {{convert: {convert}, days: 0}}
    deal_value: 1
"""


@pytest.mark.parametrize("x", [0.0, 0.3, 1.0, 1.6, 100.0, 1e12])
def test_the_response_factor_is_the_curves_ratio_and_exactly_one_at_the_reference(x):
    beta, kappa, n = 0.45, math.sqrt(1.6), 1.7
    assert kernels.response_factor(NO_RESPONSE, x, beta, kappa, n) == 1.0
    assert kernels.response_factor(POWER, x, beta, kappa, n) == pytest.approx(x ** beta, rel=1e-12)
    def hill(b):
        return (b ** n / (kappa ** n + b ** n))
    expected = hill(x) / hill(1.0)
    assert kernels.response_factor(HILL, x, beta, kappa, n) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert kernels.response_factor(POWER, 1.0, beta, kappa, n) == 1.0  # bit-identity at B = B0
    assert kernels.response_factor(HILL, 1.0, beta, kappa, n) == 1.0
    # a steep hill whose powers underflow (0.6^2000, 0.5^2000) is still the ratio: about 1 here
    assert kernels.response_factor(HILL, 0.6, beta, 0.5, 2000.0) == pytest.approx(1.0, rel=1e-9)


def test_power_response_scales_each_months_arrivals_by_the_budget_ratio_to_the_elasticity(tmp_path):
    power = f"{{reference_budget: {B0}, curve: power, elasticity: 0.5}}"
    body = "stages: [x]\nsegments:\n" + _bought("ref", B0, power) + _bought("up", 1.6 * B0, power) + \
        _bought("months", B0, power, extra="      budget_by_month: {2: 200000, 3: 0}\n")
    ds = _simulate(tmp_path, body, trials=6000)
    n = ds.sizes["trial"]
    won = ds["won_deals_by_segment"].transpose("trial", "period", "segment")
    for seg, monthly in (("ref", [1000.0] * 3), ("up", [1000 * 1.6 ** 0.5] * 3), ("months", [1000.0, 2000.0, 0.0])):
        got = won.sel(segment=seg).values
        for k in range(3):
            if monthly[k] == 0:
                assert (got[:, k] == 0).all()
            else:
                within(got[:, k].mean(), monthly[k], math.sqrt(monthly[k] / n))
        # the same seed and the same draws: a Poisson, not 1.6 times one (a linear rule would give 1600)
        assert 0.93 < got[:, 0].var(ddof=1) / got[:, 0].mean() < 1.07


def test_uncertain_elasticity_is_one_draw_per_trial_shared_by_the_months(tmp_path):
    power = f"{{reference_budget: {B0}, curve: power, elasticity: {{dist: uniform, low: 0.2, high: 0.8}}}}"
    ds = _simulate(tmp_path, "stages: [x]\nsegments:\n" + _bought("s", 4 * B0, power), trials=20000)
    won = ds["won_deals"].values
    def e(r):
        return (r ** 0.8 - r ** 0.2) / (0.6 * math.log(r))  # E[r^beta], beta ~ U(0.2, 0.8)
    mean, var_f = 1000 * e(4.0), 1000 ** 2 * (e(16.0) - e(4.0) ** 2)
    within(won[:, 0].mean(), mean, math.sqrt((mean + var_f) / won.shape[0]))
    # months share the trial's elasticity: their covariance is Var(1000 x 4^beta), not 0
    cov = np.cov(won[:, 0], won[:, 2])[0, 1]
    assert 0.9 < cov / var_f < 1.1
    elasticity = ds["inputs"].sel(segment="s", quantity="response.elasticity").values
    assert 0.2 <= elasticity.min() and elasticity.max() <= 0.8


def test_hill_response_saturates_towards_its_ceiling(tmp_path):
    K = 2 * B0
    hill = f"{{reference_budget: {B0}, curve: hill, half_saturation: {K}, slope: 2}}"
    body = "stages: [x]\nsegments:\n" + _bought("big", 10 * B0, hill)
    ds = _simulate(tmp_path, body, trials=4000)
    def g(b):
        return b ** 2 / (K ** 2 + b ** 2)
    monthly = 1000 * g(10 * B0) / g(B0)  # 4,807.7; the ceiling is 5,000
    won = ds["won_deals"].values.sum(axis=1)
    within(won.mean(), 3 * monthly, math.sqrt(3 * monthly / won.shape[0]))


def test_a_response_at_the_reference_budget_and_spend_change_no_other_number(tmp_path):
    text = (ROOT / "tests" / "golden" / "extensions.yaml").read_text().replace(
        "../../scenarios/", str(ROOT / "scenarios") + "/")
    plain = tmp_path / "plain.yaml"
    plain.write_text(text)
    base = fc.simulate(fc.load_scenario(plain), trials=300)
    asked = tmp_path / "asked.yaml"
    asked.write_text(text + "outputs: {leads: true, spend: true}\n")
    more = fc.simulate(fc.load_scenario(asked), trials=300)
    for name in base.data_vars:
        assert np.array_equal(base[name].values, more[name].values, equal_nan=True), name
    assert {"leads", "spend", "leads_by_segment", "spend_by_segment"} <= set(more.data_vars)


LEADS = """\
stages: [a, b]
segments:
  s:
    leads: {per_day: 40%s}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.3, days: %s}
    deal_value: 1
outputs: {leads: true}
"""


@pytest.mark.parametrize("dispersion", [0.0, 0.03])
def test_leads_are_the_arrivals_split_exactly_into_won_and_not_won(tmp_path, dispersion):
    extra = f", dispersion: {dispersion}" if dispersion else ""
    ds = _simulate(tmp_path, LEADS % (extra, 0), trials=20000)
    m, P, d, D = 40, 0.15, dispersion, 90
    L = ds["leads"].values.sum(axis=1)
    W = ds["won_deals"].values.sum(axis=1)
    n = L.shape[0]
    within(L.mean(), m * D, math.sqrt((m * D + D * d * m * m) / n))
    assert 0.95 < L.var(ddof=1) / (D * (m + d * m * m)) < 1.05
    assert 0.93 < np.cov(L, W)[0, 1] / (D * (m * P + d * m * m * P)) < 1.07  # = Var(W)
    assert (L >= W).all()
    if not dispersion:  # the leads not won are independent of the won ones
        assert abs(np.corrcoef(L - W, W)[0, 1]) < 5 / math.sqrt(n)
    for k, days in enumerate((31, 28, 31)):
        within(ds["leads"].values[:, k].mean(), m * days, math.sqrt(m * days * (1 + d * m) / n))


def test_won_leads_are_counted_on_their_arrival_day_not_their_win_day(tmp_path):
    """With 20 days at the last stage, the leads of a month are still that month's arrivals."""
    ds = _simulate(tmp_path, LEADS % ("", 20), trials=4000)
    n = ds.sizes["trial"]
    for k, days in enumerate((31, 28, 31)):
        within(ds["leads"].values[:, k].mean(), 40 * days, math.sqrt(40 * days / n))


def test_drift_moves_won_and_not_won_leads_together(tmp_path):
    body = (LEADS % ("", 0)) + "shocks: {drift: {leads: 0.3, convert: {a: 0.4}}}\n"
    ds = _simulate(tmp_path, body, trials=8000)
    L = ds["leads"].values
    n = L.shape[0]
    for k, days in enumerate((31, 28, 31)):  # the lead walk has mean 1: each month's leads still average m
        var = 40 * days + (40 * days) ** 2 * (math.exp(0.09 * k) - 1)
        within(L[:, k].mean(), 40 * days, math.sqrt(var / n))
    # the won share follows the drifted conversion month by month, the leads do not change with it
    assert (L >= ds["won_deals"].values).all()


def test_spend_is_the_budget_and_the_costs_and_its_ratios_are_the_trials_ratios(tmp_path):
    body = """\
stages: [touch]
segments:
  search:
    leads:
      budget_per_month: 20000
      cost_per_lead: {dist: lognormal, median: 0.40, sigma: 0.1}
    cost: {per_lead: {dist: uniform, low: 0.01, high: 0.03}, per_month: 1000, per_won: 5}
    funnel:
      touch: {convert: 0.04, days: 0}
    deal_value: 100
  free:
    leads: {per_month: 300}
    funnel:
      touch: {convert: 0.1, days: 0}
    deal_value: 50
"""
    path = tmp_path / "spend.yaml"
    path.write_text(HEAD.format(trials=5000) + body)
    sc = fc.load_scenario(path)
    assert sc.spends and sc.counts_leads  # on by default: a segment has a cost
    ds = fc.simulate(sc)
    def seg(v, s):
        return ds[f"{v}_by_segment"].sel(segment=s).transpose("trial", "period").values
    per_lead = ds["inputs"].sel(segment="search", quantity="cost.per_lead").values
    assert 0.01 <= per_lead.min() and per_lead.max() <= 0.03
    expected = 20000 + 1000 + per_lead[:, None] * seg("leads", "search") + 5 * seg("won_deals", "search")
    assert np.allclose(seg("spend", "search"), expected, rtol=1e-12)
    assert np.array_equal(seg("spend", "free"), np.zeros_like(seg("spend", "free")))  # leads for free
    L = seg("leads", "search").sum(axis=1)
    mean = 60000 * 2.5 * math.exp(0.005)  # budget x E[1 / cost per lead] = 150,751.9
    within(L.mean(), mean, math.sqrt((mean + 60000 ** 2 * 6.25 * math.exp(0.01) * (math.exp(0.01) - 1)) / L.size))
    from forecaster.results.summary import summarize

    s = summarize(ds, sc)
    spend, won = ds["spend"].values.sum(axis=1), ds["won_deals"].values.sum(axis=1)
    assert math.isclose(s["ratios"]["cac"]["mean"], float(np.mean(spend / won)), rel_tol=1e-9)
    roi = (ds["revenue"].values.sum(axis=1) - spend) / spend
    assert math.isclose(s["ratios"]["roi"]["p50"], float(np.percentile(roi, 50)), rel_tol=1e-9)
    free = s["ratios"]["cac"]["by_segment"]["free"]
    assert math.isclose(free["mean"], 0.0, abs_tol=1e-12) and free["undefined"] == 0
    assert s["metrics"]["spend"]["total"]["mean"] == pytest.approx(spend.mean(), rel=1e-12)


def test_a_ratio_whose_denominator_is_0_in_some_trials_counts_them_as_undefined(tmp_path):
    body = """\
stages: [x]
segments:
  rare:
    leads: {per_month: 0.3}
    cost: {per_month: 100}
    funnel:
      x: {convert: 1.0, days: 0}
    deal_value: 1
"""
    path = tmp_path / "rare.yaml"
    path.write_text(HEAD.format(trials=3000) + body)
    sc = fc.load_scenario(path)
    ds = fc.simulate(sc)
    from forecaster.results.summary import summarize

    cac = summarize(ds, sc)["ratios"]["cac"]
    won = ds["won_deals"].values.sum(axis=1)
    assert cac["undefined"] == int((won == 0).sum()) > 0  # P(no deal in 3 months) = e^-0.9 = 0.41
    assert math.isclose(cac["mean"], float(np.mean(300 / won[won > 0])), rel_tol=1e-9)


def test_a_response_and_a_cost_per_lead_may_be_the_same_draw_as_another_segments(tmp_path):
    """v2 E.1 on C's and E.2's per-trial rates: the holder takes its target's draws, trial by trial."""
    own = "{reference_budget: 50000, curve: power, elasticity: {dist: uniform, low: 0.2, high: 0.8}}"
    shared = "{reference_budget: 50000, curve: power, elasticity: {same_as: segments.a.leads.response.elasticity}}"
    body = "stages: [x]\nsegments:\n" + _bought("a", 4 * B0, own, extra="") + _bought("b", 4 * B0, shared) + \
        _bought("c", 4 * B0, own)
    body = body.replace("    funnel:\n", "    cost: {per_lead: %s}\n    funnel:\n")
    body = body % ("{dist: uniform, low: 1, high: 2}", "{same_as: segments.a.cost.per_lead}",
                   "{dist: uniform, low: 1, high: 2}")
    ds = _simulate(tmp_path, body, trials=3000)
    inputs = ds["inputs"]
    for quantity in ("response.elasticity", "cost.per_lead"):
        a, b, c = (inputs.sel(segment=s, quantity=quantity).values for s in "abc")
        assert np.array_equal(a, b) and not np.array_equal(a, c), quantity
    won = ds["won_deals_by_segment"].sum("period").transpose("trial", "segment").values
    assert np.corrcoef(won[:, 0], won[:, 1])[0, 1] > 0.9 > 0.1 > abs(np.corrcoef(won[:, 0], won[:, 2])[0, 1])


MOVES = """\
stages: [a, b]
segments:
  s:
    leads: {per_day: 20}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.4, days: 0, moves: [{to: a, share: 0.5}]}
    deal_value: 1
outputs: {leads: true}
"""


def test_leads_of_a_segment_with_moves_split_by_the_chains_win_probability(tmp_path):
    """h_a = 0.2 / 0.85 (v2 B); the leads not won are Poisson(m D (1 - h_a)), independent of the won."""
    ds = _simulate(tmp_path, MOVES, trials=20000)
    L, W = ds["leads"].values.sum(axis=1), ds["won_deals"].values.sum(axis=1)
    n, m, h = L.size, 20 * 90, 0.2 / 0.85
    within(L.mean(), m, math.sqrt(m / n))
    within((L - W).mean(), m * (1 - h), math.sqrt(m * (1 - h) / n))
    assert 0.95 < (L - W).var(ddof=1) / (m * (1 - h)) < 1.05
    assert abs(np.corrcoef(L - W, W)[0, 1]) < 5 / math.sqrt(n)


def test_leads_of_a_segment_with_moves_under_a_conversion_drift_keep_their_rate(tmp_path):
    """The drift moves h month by month: the won and the not-won leads trade places, the leads stay Poisson(m)."""
    ds = _simulate(tmp_path, MOVES + "shocks: {drift: {convert: {b: 0.4}}}\n", trials=20000)
    L, W = ds["leads"].values, ds["won_deals"].values
    n = L.shape[0]
    for k, days in enumerate((31, 28, 31)):
        within(L[:, k].mean(), 20 * days, math.sqrt(20 * days / n))
        assert 0.93 < L[:, k].var(ddof=1) / (20 * days) < 1.07
    assert np.corrcoef((L - W)[:, 2], W[:, 2])[0, 1] < -0.2  # the walk: more won, fewer not won


def test_sensitivity_of_a_bought_segment_shows_its_saturation(tmp_path):
    """C.4: the leads lever scales the budget, not the reference: +10% budget gives 1.1^0.5 - 1 of
    the leads with elasticity 0.5 (a run with spend and an event cost, which sensitivity once refused)."""
    import json
    import subprocess
    import sys

    body = """\
stages: [deal]
segments:
  search:
    leads: {budget_per_month: 1000, cost_per_lead: 10,
            response: {reference_budget: 1000, curve: power, elasticity: 0.5}}
    cost: {per_month: 100}
    funnel: {deal: {convert: 1, days: 0}}
    deal_value: 1
  organic:
    leads: {per_month: 100, events: [{date: 2027-02-01, count: 50, cost: 100}]}
    funnel: {deal: {convert: 1, days: 0}}
    deal_value: 1
"""
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.format(trials=2000) + body)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "forecaster", "sensitivity", str(path), "--out", str(out),
                           "--trials", "4000"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    levers = {item["lever"]: item for item in json.loads((out / "sensitivity.json").read_text())["levers"]}
    for sign, step in (("plus", 1.1), ("minus", 0.9)):
        got = levers["search: leads"][sign]["won_deals"]
        expected = 300 * (step ** 0.5 - 1)  # 1,000 / 10 leads a month for three months
        assert got["mean_ci_low"] - 1 <= expected <= got["mean_ci_high"] + 1, (sign, got, expected)
    # the organic lever scales its rate, not the event's count: +10% of 300
    assert levers["organic: leads"]["plus"]["won_deals"]["mean"] == pytest.approx(30, abs=3)


def test_whole_months_of_budget_are_spent_exactly_and_partial_months_pro_rata(tmp_path):
    """Spend per period sums each (period, month) share, budget x (the month's days inside the
    period) / (the month's days): a whole month is its budget to the bit (no 470000.00000000006
    from adding daily shares), and a month the horizon or a period cuts is its share."""
    body = """\
stages: [x]
segments:
  search:
    leads: {budget_per_month: 250000, cost_per_lead: 200}
    funnel:
      x: {convert: 0.1, days: 0}
    deal_value: 1
  social:
    leads: {budget_per_month: 150000, cost_per_lead: 100, budget_by_month: {1: 120000}}
    funnel:
      x: {convert: 0.1, days: 0}
    deal_value: 1
  events:
    leads: {budget_per_month: 100000, cost_per_lead: 400}
    funnel:
      x: {convert: 0.1, days: 0}
    deal_value: 1
"""
    path = tmp_path / "months.yaml"
    path.write_text(HEAD.format(trials=20) + body)
    sc = fc.load_scenario(path)
    ds = fc.simulate(sc)
    assert ds["spend"].values.tolist() == [[470000.0, 500000.0, 500000.0]] * 20
    from forecaster.results.summary import summarize

    s = json_round_trip(summarize(ds, sc))["metrics"]["spend"]
    assert [p["mean"] for p in s["by_period"]] == [470000.0, 500000.0, 500000.0]
    assert s["total"]["mean"] == 1470000.0 and s["total"]["std"] == 0.0
    from forecaster.present.export import run_tables, write_csv

    table = next(t for t in run_tables(summarize(ds, sc)) if t.name == "spend")
    write_csv(table, tmp_path / "spend.csv")
    text = (tmp_path / "spend.csv").read_text()
    assert "470000" in text and "470000.0000" not in text and "499999.99" not in text
    # 15 January to 30 April by week (Mondays): the first period holds 3/31 of January's
    # budget, the week of 29 March-4 April 3/31 of March's and 4/30 of April's; the horizon
    # spends 17/31 of January's
    weekly = (HEAD.replace("2027-01-01", "2027-01-15").replace("2027-03-31", "2027-04-30")
              .replace("report_by: month", "report_by: week").format(trials=3) + body)
    path.write_text(weekly)
    sc = fc.load_scenario(path)
    ds = fc.simulate(sc)
    by_segment = ds["spend_by_segment"].sel(segment="social").values[0]
    weeks = [str(p)[:10] for p in ds["period"].values]
    assert weeks[:2] == ["2027-01-15", "2027-01-18"] and by_segment[0] == 120000 * 3 / 31
    assert by_segment[weeks.index("2027-03-29")] == 150000 * 3 / 31 + 150000 * 4 / 30
    assert by_segment[weeks.index("2027-02-01")] == 150000 * 7 / 28
    assert math.isclose(by_segment.sum(), 120000 * 17 / 31 + 3 * 150000, rel_tol=1e-14)


def json_round_trip(value):
    import json

    return json.loads(json.dumps(value))
