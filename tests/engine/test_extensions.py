"""Format extensions (`shocks`, `closing`) against closed forms, with fixed seeds.

Every check allows 5 Monte Carlo standard errors (or a variance ratio within 10%).
"""
from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
from conftest import SCENARIOS, D, within
from numpy.polynomial.hermite_e import hermegauss

import forecaster as fc
from forecaster.errors import ScenarioError


def shifted_moments(p: float, sigma: float) -> tuple[float, float]:
    """E[P] and Var[P] for P = expit(logit(p) + sigma Z), Z standard normal (quadrature)."""
    z, w = hermegauss(80)
    w = w / w.sum()
    x = 1 / (1 + (1 - p) / p * np.exp(-sigma * z))
    mean = float(w @ x)
    return mean, float(w @ x ** 2) - mean ** 2


def by_segment(ds, seg):
    return ds["won_deals_by_segment"].sel(segment=seg).sum("period").values.astype(float)


def test_a_lead_shock_is_shared_by_every_segment_and_keeps_the_mean(make):
    sigma = 0.3
    sc = make(f"""\
    stages: [x]
    shocks: {{leads: {sigma}}}
    segments:
      a: {{leads: {{per_day: 10}}, funnel: {{x: {{convert: 1, days: 0}}}}, deal_value: 1}}
      b: {{leads: {{budget_per_month: 3100, cost_per_lead: 10}}, funnel: {{x: {{convert: 1, days: 0}}}}, deal_value: 1}}
    """)
    ds = fc.simulate(sc)
    a, b = by_segment(ds, "a"), by_segment(ds, "b")
    lam_a, lam_b = 10.0 * D, 310.0 * 3
    extra = math.exp(sigma ** 2) - 1  # Var of the multiplier (mean 1)
    for won, lam in ((a, lam_a), (b, lam_b)):
        var = lam + lam ** 2 * extra
        within(won.mean(), lam, math.sqrt(var / won.size))
        assert 0.9 < won.var(ddof=1) / var < 1.1
    cov = lam_a * lam_b * extra  # one multiplier for both: bought leads' cost is divided by it
    corr = cov / math.sqrt((lam_a + lam_a ** 2 * extra) * (lam_b + lam_b ** 2 * extra))
    assert np.corrcoef(a, b)[0, 1] == pytest.approx(corr, abs=0.03)


def test_a_conversion_shock_shifts_every_segment_and_the_pipeline_together(make):
    p, sigma, lam, n_open = 0.3, 0.8, 20.0 * D, 200
    rows = "".join(f"d{i},open,x,2027-01-01\n" for i in range(n_open))
    sc = make(f"""\
    stages: [x]
    shocks: {{convert: {{x: {sigma}}}}}
    segments:
      a: {{leads: {{per_day: 20}}, funnel: {{x: {{convert: {p}, days: 0}}}}, deal_value: 1}}
      b: {{leads: {{per_day: 20}}, funnel: {{x: {{convert: {p}, days: 0}}}}, deal_value: 1}}
      open: {{leads: {{per_day: 0}}, funnel: {{x: {{convert: {p}, days: 0}}}}, deal_value: 1}}
    pipeline: {{file: p.csv}}
    """, files={"p.csv": "deal_id,segment,stage,entered_stage\n" + rows})
    ds = fc.simulate(sc)
    mean, var_p = shifted_moments(p, sigma)
    assert abs(mean - p) > 0.01  # the shift keeps the median, not the mean: the test can tell
    a, b, o = by_segment(ds, "a"), by_segment(ds, "b"), by_segment(ds, "open")
    var = lam * mean + lam ** 2 * var_p
    for won in (a, b):
        within(won.mean(), lam * mean, math.sqrt(var / won.size))
        assert 0.9 < won.var(ddof=1) / var < 1.1
    assert np.cov(a, b)[0, 1] / (lam ** 2 * var_p) == pytest.approx(1.0, abs=0.1)
    var_o = n_open * mean * (1 - mean) + n_open * (n_open - 1) * var_p  # binomial given P, P shared
    within(o.mean(), n_open * mean, math.sqrt(var_o / o.size))
    assert 0.9 < o.var(ddof=1) / var_o < 1.1


def test_without_shocks_the_numbers_do_not_move(make):
    body = """\
    stages: [x]
    segments:
      a: {leads: {per_day: {dist: gamma, mean: 5, cv: 0.2}}, funnel: {x: {convert: 0.4, days: 3}}, deal_value: 2}
    """
    plain = fc.simulate(make(body, trials=500))
    zero = fc.simulate(make(body + "shocks: {leads: 0, convert: {x: 0}}\n", trials=500))
    assert np.array_equal(plain["revenue"].values, zero["revenue"].values)


def test_a_lead_drift_walks_month_by_month_and_keeps_the_mean(make):
    delta = 0.3
    sc = make(f"""\
    stages: [x]
    shocks: {{drift: {{leads: {delta}}}}}
    segments:
      a: {{leads: {{per_day: 10}}, funnel: {{x: {{convert: 1, days: 0}}}}, deal_value: 1}}
    """)
    won = fc.simulate(sc)["won_deals"].values.astype(float)  # (trial, month)
    for k, lam in enumerate((310.0, 280.0, 310.0)):  # month k's multiplier: exp(delta W_k - k delta^2 / 2)
        var = lam + lam ** 2 * (math.exp(k * delta ** 2) - 1)
        within(won[:, k].mean(), lam, math.sqrt(var / won.shape[0]))
        assert 0.9 < won[:, k].var(ddof=1) / var < 1.1, k
    cov = 280.0 * 310.0 * (math.exp(delta ** 2) - 1)  # months 1 and 2 share the walk's first step
    assert np.cov(won[:, 1], won[:, 2])[0, 1] / cov == pytest.approx(1.0, abs=0.12)


def test_a_conversion_drift_moves_new_leads_by_month_and_leaves_the_pipeline(make):
    p, delta, n_open = 0.3, 0.5, 200
    rows = "".join(f"d{i},b,x,2027-01-01\n" for i in range(n_open))
    sc = make(f"""\
    stages: [x]
    shocks: {{drift: {{convert: {{x: {delta}}}}}}}
    segments:
      a: {{leads: {{per_day: 20}}, funnel: {{x: {{convert: {p}, days: 0}}}}, deal_value: 1}}
      b: {{leads: {{per_day: 0}}, funnel: {{x: {{convert: {p}, days: 0}}}}, deal_value: 1}}
    pipeline: {{file: p.csv}}
    """, files={"p.csv": "deal_id,segment,stage,entered_stage\n" + rows})
    ds = fc.simulate(sc)
    new = ds["won_deals_by_segment"].sel(segment="a").values.astype(float)  # (trial, month)
    for k, days in enumerate((31, 28, 31)):
        lam = 20.0 * days
        mean, var_p = shifted_moments(p, delta * math.sqrt(k)) if k else (p, 0.0)
        var = lam * mean + lam ** 2 * var_p
        within(new[:, k].mean(), lam * mean, math.sqrt(var / new.shape[0]))
        assert 0.9 < new[:, k].var(ddof=1) / var < 1.1, k
    old = by_segment(ds, "b")  # pipeline deals are decided at start's month: no drift
    var = n_open * p * (1 - p)
    within(old.mean(), n_open * p, math.sqrt(var / old.size))
    assert 0.9 < old.var(ddof=1) / var < 1.1


def test_closing_slips_deals_to_the_quarter_end(make):
    sc = make("""\
    stages: [x]
    closing: {slip: {1: 0.3, 2: 0.1}, window_days: 10}
    segments:
      a: {leads: {per_day: 10}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
    """)
    won = fc.simulate(sc)["won_deals"].values.astype(float)  # (trial, month)
    jan, feb = 310 * 0.3, 280 * 0.1
    expected = [310 - jan, 280 - feb, 310 + jan + feb]  # nothing is lost: slipped deals land in March
    for k, e in enumerate(expected):  # each month's count is Poisson (a thinning of Poisson arrivals)
        within(won[:, k].mean(), e, math.sqrt(e / won.shape[0]))
        assert 0.9 < won[:, k].var(ddof=1) / e < 1.1


def test_closing_lands_in_the_window_never_earlier_and_can_leave_the_horizon(make):
    sc = make("""\
    stages: [x]
    report_by: day
    closing: {slip: {3: 1.0}, window_days: 10}
    segments:
      a: {leads: {per_day: 10}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
    """, trials=1000)
    won = fc.simulate(sc)["won_deals"].values.astype(float)  # (trial, day)
    march = slice(31 + 28, D)
    assert won[:, 31 + 28:D - 10].sum() == 0  # every March deal slipped into the last 10 days
    assert won[:, :31 + 28].mean() == pytest.approx(10, rel=0.02)
    within(won[:, march].sum(axis=1).mean(), 310, math.sqrt(310 / 1000))
    # deals due inside the window land uniformly between their day and the quarter's end:
    # the last day gets 21 days' deals over 10, plus 1/10 .. 1/1 of each window day's own
    last = (21 * 10) / 10 + sum(10 / k for k in range(1, 11))
    within(won[:, D - 1].mean(), last, math.sqrt(last / 1000))


def test_deals_slipping_past_the_end_are_not_counted():
    sc = fc.scenario_from_dict({
        "name": "cut", "start": "2027-01-01", "end": "2027-02-15", "trials": 2000, "seed": 3, "stages": ["x"],
        "closing": {"slip": {1: 0.3}},  # window_days defaults to 10
        "segments": {"a": {"leads": {"per_day": 10}, "funnel": {"x": {"convert": 1, "days": 0}}, "deal_value": 1}}})
    assert sc.closing.window_days == 10
    won = fc.simulate(sc)["won_deals"].values.astype(float).sum(axis=1)
    expected = 310 * 0.7 + 150  # January's slipped deals land after the end; February does not slip
    within(won.mean(), expected, math.sqrt(expected / won.size))


def test_pipeline_deals_slip_too(make):
    n = 400
    rows = "".join(f"d{i},a,x,2027-01-01\n" for i in range(n))
    sc = make("""\
    stages: [x]
    closing: {slip: {1: 0.5}, window_days: 5}
    segments:
      a: {leads: {per_day: 0}, funnel: {x: {convert: 1, days: 5}}, deal_value: 1}
    pipeline: {file: p.csv}
    """, files={"p.csv": "deal_id,segment,stage,entered_stage\n" + rows}, trials=2000)
    won = fc.simulate(sc)["won_deals"].values.astype(float)
    within(won[:, 0].mean(), n / 2, math.sqrt(n / 4 / won.shape[0]))
    assert np.array_equal(won[:, 0] + won[:, 2], np.full(won.shape[0], n))  # slipped to March, none lost


def test_an_open_deal_past_its_due_day_may_be_a_slip_still_waiting(tmp_path):
    # On 1 February (month 2 of the quarter), a deal that entered its last stage on 10 January
    # with 10 fixed days was due on 20 January, in month 1, where every win slips to the last
    # 10 days of March. Open on 1 February, it is either lost-to-be (open: its 100 days to lose
    # are not over) or a slipped win waiting: P(won | open) = p S'(a) / (p S'(a) + (1 - p) S_L(a))
    # with S'(22) = P(slipped and still to land) = 1, so 0.5; it lands from 22 to 31 March.
    # A deal due in month 2 (entered 27 January, due 6 February) does not slip: won on 6 February.
    n = 300
    rows = "".join(f"late{i},a,x,2027-01-10\n" for i in range(n)) + "".join(f"due{i},a,x,2027-01-27\n" for i in range(n))
    (tmp_path / "p.csv").write_text("deal_id,segment,stage,entered_stage\n" + rows)
    sc = fc.scenario_from_dict({
        "name": "wait", "start": "2027-02-01", "end": "2027-03-31", "trials": 2000, "seed": 4, "stages": ["x"],
        "report_by": "day", "closing": {"slip": {1: 1.0}, "window_days": 10},
        "segments": {"a": {"leads": {"per_day": 0}, "funnel": {"x": {"convert": 0.5, "days": 10,
                                                                     "days_lost": 100}}, "deal_value": 1}},
        "pipeline": {"file": "p.csv"}}, base_dir=tmp_path)
    won = fc.simulate(sc)["won_deals"].values.astype(float)  # (trial, day from 1 February)
    feb6 = 5
    march22 = (date(2027, 3, 22) - date(2027, 2, 1)).days
    # the deals due on 6 February: p S(5) / (p S(5) + (1 - p) S_L(5)) = 0.5 each, won that day
    within(won[:, feb6].mean(), n * 0.5, math.sqrt(n * 0.25 / won.shape[0]))
    late = won[:, march22:].sum(axis=1)
    within(late.mean(), n * 0.5, math.sqrt(n * 0.25 / won.shape[0]))
    assert won.sum(axis=1).mean() == pytest.approx(late.mean() + won[:, feb6].mean())  # nothing elsewhere
    per_day = won[:, march22:].mean(axis=0)  # uniform over the 10 days
    assert np.all(np.abs(per_day - n * 0.5 / 10) < 5 * math.sqrt(n * 0.5 / 10 / won.shape[0]))


@pytest.mark.parametrize("extra, path, words", [
    ("shocks: {convert: {y: 0.2}}", "shocks.convert.y", "is not one of the stages"),
    ("shocks: {leads: -1}", "shocks.leads", ">= 0"),
    ("shocks: {lead: 0.1}", "shocks.lead", "leads"),
    ("shocks: {drift: {convert: {y: 0.2}}}", "shocks.drift.convert.y", "is not one of the stages"),
    ("shocks: {drift: {leads: -0.1}}", "shocks.drift.leads", ">= 0"),
    ("closing: {slip: {4: 0.2}}", "closing.slip", "month of the quarter"),
    ("closing: {slip: {1: 1.5}}", "closing.slip.1", "in [0, 1]"),
    ("closing: {window_days: 5}", "closing.slip", "missing"),
    ("capacity: {cv: 0.1}", "capacity.won_per_month", "missing"),
    ("capacity: {won_per_month: 10, quarter_shape: {5: 1}}", "capacity.quarter_shape", "month of the quarter"),
])
def test_bad_extensions_name_their_key(make, extra, path, words):
    with pytest.raises(ScenarioError) as err:
        make("""\
        stages: [x]
        segments:
          a: {leads: {per_day: 1}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
        """ + extra + "\n")
    text = str(err.value)
    assert path in text and words in text, text


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.glob("*.yaml")))
def test_every_example_scenario_runs(name):
    ds = fc.simulate(fc.load_scenario(SCENARIOS / name), trials=300, seed=1)
    assert float(ds["won_deals"].sum("period").mean()) > 0


# --- capacity -------------------------------------------------------------------------------

def test_capacity_caps_each_month_and_carries_the_rest(make):
    sc = make("""\
    stages: [x]
    capacity: {won_per_month: 200}
    segments:
      a: {leads: {per_day: 10}, funnel: {x: {convert: 1, days: 0}}, deal_value: 5}
    """, trials=500)
    ds = fc.simulate(sc)
    assert (ds["won_deals"].values == 200).all()  # demand (310, 280, 310 on average) always exceeds it
    assert np.allclose(ds["revenue"].values, 1000)


def test_capacity_that_never_binds_changes_nothing(make):
    body = """\
    stages: [x]
    segments:
      a: {leads: {per_day: 10}, funnel: {x: {convert: 0.5, days: {dist: gamma, mean: 9, cv: 0.5}}},
          deal_value: {dist: lognormal, median: 100, sigma: 0.5}}
    """
    plain = fc.simulate(make(body, trials=300))
    capped = fc.simulate(make(body + "capacity: {won_per_month: 100000}\n", trials=300))
    assert np.array_equal(plain["won_deals"].values, capped["won_deals"].values)
    assert np.allclose(plain["revenue"].values, capped["revenue"].values)


def test_waiting_deals_go_first_and_segments_share_in_proportion(make):
    rows = "".join(f"a{i},a,x,2027-01-01,10,ana\n" for i in range(200))
    rows += "".join(f"b{i},b,x,2027-01-01,20,ben\n" for i in range(100))
    sc = make("""\
    stages: [x]
    capacity: {won_per_month: 100}
    segments:
      a: {leads: {per_day: 0}, funnel: {x: {convert: 1, days: 5}}, deal_value: 1}
      b: {leads: {per_day: 0}, funnel: {x: {convert: 1, days: 5}}, deal_value: 1}
    pipeline: {file: p.csv}
    team:
      reps: [{name: ana, segments: [a], quota: 1000}, {name: ben, segments: [b], quota: 1000}]
    commission: {period: month, tiers: [{rate: 0.1}]}
    """, files={"p.csv": "deal_id,segment,stage,entered_stage,amount,owner\n" + rows}, trials=50)
    ds = fc.simulate(sc)
    won = ds["won_deals_by_segment"].values  # (trial, month, segment): 300 deals due on 6 January
    # 100 a month, shared in proportion to what waits (whole deals, largest remainder, ties
    # to the first): 200:100 -> 67:33, then 133:67 -> 67:33 (a tie at .5), then 66:34
    assert (won[:, :, 0] == [67, 67, 66]).all() and (won[:, :, 1] == [33, 33, 34]).all()
    rev = ds["revenue"].values
    assert np.allclose(rev, [1330, 1330, 1340])  # each deal's value moves with it (10 and 20 here)
    assert np.allclose(ds["bookings"].values.sum(axis=2), rev)


def test_deals_waiting_from_an_earlier_month_go_before_deals_newly_due():
    # 150 deals of a due on 6 January against room for 100: 50 wait for February. 100 deals of b
    # fall due on 1 February, the day February's room opens: the waiting ones go first.
    rows = "".join(f"a{i},a,x,2027-01-01,1\n" for i in range(150))
    rows += "".join(f"b{i},b,y,2027-01-01,1\n" for i in range(100))
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "p.csv").write_text("deal_id,segment,stage,entered_stage,amount\n" + rows)
        sc = fc.scenario_from_dict({
            "name": "wait", "start": "2027-01-01", "end": "2027-03-31", "trials": 20, "seed": 3, "stages": ["x", "y"],
            "capacity": {"won_per_month": 100},
            "segments": {"a": {"leads": {"per_day": 0}, "funnel": {"x": {"convert": 1, "days": 5},
                                                                   "y": {"convert": 1, "days": 0}}, "deal_value": 1},
                         "b": {"leads": {"per_day": 0}, "funnel": {"x": {"convert": 1, "days": 0},
                                                                   "y": {"convert": 1, "days": 31}}, "deal_value": 1}},
            "pipeline": {"file": "p.csv"}}, base_dir=tmp)
        won = fc.simulate(sc)["won_deals_by_segment"].values  # (trial, month, segment)
    assert (won[:, 0, 0] == 100).all() and (won[:, 0, 1] == 0).all()
    assert (won[:, 1, 0] == 50).all() and (won[:, 1, 1] == 50).all()  # newly due first would give 0 and 100
    assert (won[:, 2, 1] == 50).all()


def test_capacity_follows_the_quarter_shape_pro_rata():
    sc = fc.scenario_from_dict({
        "name": "cap", "start": "2027-01-16", "end": "2027-03-31", "trials": 200, "seed": 2, "stages": ["x"],
        "capacity": {"won_per_month": 310, "quarter_shape": {3: 2.0}},
        "segments": {"a": {"leads": {"per_day": 20}, "funnel": {"x": {"convert": 1, "days": 0}}, "deal_value": 1}}})
    won = fc.simulate(sc)["won_deals"].values
    assert (won[:, 0] == 160).all()  # 16 of January's 31 days: 310 * 16 / 31
    assert (won[:, 1] == 310).all() and (won[:, 2] == 620).all()


def test_a_capacity_cv_varies_each_month(make):
    sc = make("""\
    stages: [x]
    capacity: {won_per_month: 200, cv: 0.1}
    segments:
      a: {leads: {per_day: 20}, funnel: {x: {convert: 1, days: 0}}, deal_value: 1}
    """)
    won = fc.simulate(sc)["won_deals"].values.astype(float)
    for k in range(3):  # demand (about 600 a month) always binds: the month's draw, rounded
        within(won[:, k].mean(), 200, math.sqrt(400 / won.shape[0]))
        assert 0.85 < won[:, k].var(ddof=1) / (400 + 1 / 12) < 1.15
    assert abs(np.corrcoef(won[:, 0], won[:, 1])[0, 1]) < 0.06  # a draw per month
