"""Dated lead events (scenario-format-v2.md, F2), against closed forms.

An event puts a count of leads into a stage on a date; they go on as new leads of the
segment with that month's conversions, so the leads won are Binomial(count, P_{>=stage})
(h_stage with moves), not Poisson. Their deals go wherever a new lead's go (revenue,
commission, capacity, customers, by source), and with F1 every one of them is counted.
Events draw from streams of their own: the file's other numbers do not move.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import within
from scipy import integrate, stats

import forecaster as fc
from forecaster.engine.events import rounded_count
from forecaster.engine.plan import build_plan
from forecaster.engine.simulation import run_trials
from forecaster.errors import ScenarioError
from forecaster.results.layout import Layout, MemorySink
from forecaster.scenario import chain as chains

HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\nreport_by: month\ntrials: {trials}\nseed: 7\n"
D = 90


def _path(tmp_path, body, trials, name="s.yaml", files=None):
    for fname, text in (files or {}).items():
        (tmp_path / fname).write_text(text)
    path = tmp_path / name
    path.write_text(HEAD.format(trials=trials) + body)
    return path


def _simulate(tmp_path, body, trials=4000, name="s.yaml", files=None):
    return fc.simulate(fc.load_scenario(_path(tmp_path, body, trials, name, files)))


def _run(tmp_path, body, trials=4000):
    """(Dataset, plan, each event's count (trials, E)) of a run kept in memory."""
    sc = fc.load_scenario(_path(tmp_path, body, trials))
    plan = build_plan(sc)
    sink = MemorySink(Layout.of(sc, plan))
    run_trials(plan, sc, sink, chunk_trials=sc.trials)
    return sink.to_dataset(), plan, plan.split_event_counts(sink.kernel_arrays[4:])


ONE = """\
stages: [only]
segments:
  s:
    leads:
      per_day: 0
      events: [{date: 2027-01-01, count: %s}]
    funnel:
      only: {convert: %s, days: 0}
    deal_value: 1
"""


def test_a_fixed_count_wins_a_binomial_not_a_poisson(tmp_path):
    """The section's check: 5,000 leads into a last stage converting 0.03 win 150 on average
    with sd sqrt(5000 0.03 0.97) = 12.0623 (a Poisson's: 12.2474); 400 at 0.6: mean 240,
    variance 96."""
    ds = _simulate(tmp_path, ONE % (5000, 0.03), trials=80000)
    won = ds["won_deals"].values[:, 0]
    n = won.size
    assert np.all(ds["won_deals"].values[:, 1:] == 0)  # days 0: won on the event's day
    var = 5000 * 0.03 * 0.97
    assert math.isclose(math.sqrt(var), 12.0623, abs_tol=5e-5)
    within(won.mean(), 150, math.sqrt(var / n))
    se = math.sqrt(2 / (n - 1))  # of the variance ratio, near normal
    ratio = won.var(ddof=1) / var
    assert abs(ratio - 1) < 5 * se
    assert abs(won.var(ddof=1) / 150 - 1) > 5 * se  # a Poisson's variance is told apart
    ds = _simulate(tmp_path, ONE % (400, 0.6), trials=20000, name="b.yaml")
    won = ds["won_deals"].values[:, 0]
    within(won.mean(), 240, math.sqrt(96 / won.size))
    assert 0.95 < won.var(ddof=1) / 96 < 1.05
    assert np.array_equal(ds["revenue"].values[:, 0], won.astype(float))


def test_rounding_is_to_the_nearest_whole_number_halves_up():
    for x, want in ((0.5, 1), (1.5, 2), (2.5, 3), (2.4999999999999996, 2), (0.49999999999999994, 0),
                    (3.0, 3), (0.0, 0), (-1.0, 0), (float("nan"), 0), (1e300, 2 ** 53)):
        assert rounded_count(x) == want, x


def test_a_count_distribution_is_drawn_per_trial_rounded_and_widens_the_wins(tmp_path):
    """round(U), U ~ uniform(0.2, 8.8), halves up: 0 with chance 0.3 / 8.6, 9 with 0.3 / 8.6,
    each of 1 .. 8 with 1 / 8.6; the wins have variance E[N] p q + p^2 Var N."""
    ds, plan, counts = _run(tmp_path, ONE % ("{dist: uniform, low: 0.2, high: 8.8}", 0.25), trials=40000)
    n = counts.shape[0]
    assert counts.shape == (n, 1) and counts.dtype == np.int64
    pmf = np.array([0.3] + [1.0] * 8 + [0.3]) / 8.6
    seen = np.bincount(counts[:, 0], minlength=10)
    assert seen.size == 10
    for k in range(10):
        within(seen[k] / n, pmf[k], math.sqrt(pmf[k] * (1 - pmf[k]) / n))
    won = ds["won_deals"].values.sum(axis=1)
    assert np.all(won <= counts[:, 0])
    values = np.arange(10)
    EN, VN = values @ pmf, values ** 2 @ pmf - (values @ pmf) ** 2
    var = EN * 0.25 * 0.75 + 0.25 ** 2 * VN
    within(won.mean(), 0.25 * EN, math.sqrt(var / n))
    assert 0.95 < won.var(ddof=1) / var < 1.05
    # given the count, binomial: E[W | N] = N p
    within((won - 0.25 * counts[:, 0]).mean(), 0.0, math.sqrt(EN * 0.1875 / n))
    # E.3's view: leads by period and segment, each event's count on its date; its cost
    leads = plan.event_leads(counts)
    assert leads.shape == (n, 3, 1) and np.array_equal(leads[:, 0, 0], counts[:, 0])
    assert np.all(leads[:, 1:] == 0) and np.all(plan.event_spend() == 0)


MIDDLE = """\
stages: [a, b, c]
segments:
  s:
    leads:
      per_day: 0
      events: [{date: 2027-02-01, count: 1000, stage: b, cost: 250}]
    funnel:
      a: {convert: 0.9, days: 100}
      b: {convert: 0.5, days: {dist: exponential, mean: 10}}
      c: {convert: 0.8, days: 5}
    deal_value: 1
outputs: {stage_entries: true, losses: true, cycle_days: true, by_source: true}
"""


def test_times_start_at_the_entry_stage(tmp_path):
    """1,000 leads enter b on day 31 (February): won at 31 + Exp(10) + 5 with probability
    0.4, so in February (before day 59) with 0.4 (1 - e^-2.3) and in March with
    0.4 (e^-2.3 - e^-5.4); the 100 days of a are never spent."""
    ds, plan, counts = _run(tmp_path, MIDDLE, trials=8000)
    n = ds.sizes["trial"]
    won = ds["won_deals"].values
    assert np.all(won[:, 0] == 0) and np.all(counts == 1000)
    for period, p in ((1, 0.4 * (1 - math.exp(-2.3))), (2, 0.4 * (math.exp(-2.3) - math.exp(-5.4)))):
        within(won[:, period].mean(), 1000 * p, math.sqrt(1000 * p * (1 - p) / n))
        assert 0.93 < won[:, period].var(ddof=1) / (1000 * p * (1 - p)) < 1.07
    e = ds["stage_entries"].sel(segment="s").transpose("trial", "period", "stage").values
    lost = ds["losses"].sel(segment="s").transpose("trial", "period", "stage").values
    assert np.all(e[:, :, 0] == 0) and np.all(e[:, 1, 1] == 1000) and np.all(e[:, [0, 2], 1] == 0)
    # c is entered at 31 + Exp(10): in February with 0.5 (1 - e^-2.8)
    p_c = 0.5 * (1 - math.exp(-2.8))
    within(e[:, 1, 2].mean(), 1000 * p_c, math.sqrt(1000 * p_c * (1 - p_c) / n))
    # b's losses: days_lost is days (Exp(10)) from day 31; c's: 5 days after entering it
    p_lost_b = 0.5 * (1 - math.exp(-5.9))
    within(lost[:, :, 1].sum(axis=1).mean(), 1000 * p_lost_b, math.sqrt(1000 * p_lost_b / n))
    # days 0 of c's losses' clock: every lead entering c by day 84 is decided inside the horizon
    assert np.all(lost[:, :, 2].sum(axis=1) + won.sum(axis=1) <= e[:, :, 2].sum(axis=1))
    # the cycle: from the event's day to the win, 5 + Exp(10) cut at 59 days
    summary = fc.summarize(ds, fc.load_scenario(tmp_path / "s.yaml"))
    cyc = summary["cycle_days"]
    T = D - 31 - 5
    mean = 5 + 10 - T * math.exp(-T / 10) / (1 - math.exp(-T / 10))
    assert cyc["count"] == int(won.sum())
    within(cyc["mean"], mean, 10 / math.sqrt(cyc["count"]))
    assert np.array_equal(plan.event_spend()[:, 0], [0, 250, 0])
    src = ds["won_deals_by_source"].transpose("trial", "period", "source")
    assert np.array_equal(src.sel(source="events").values, won) and src.sel(source="new_leads").values.sum() == 0


DRIFT = """\
stages: [only]
segments:
  s:
    leads:
      per_day: {rate}
      seasonality: {{1: 0, 2: 0}}
      events: [{{date: 2027-03-10, count: 1000}}]
    funnel:
      only: {{convert: 0.2, days: 0}}
    deal_value: 1
shocks: {{convert: {{only: {shock}}}, drift: {{convert: {{only: {drift}}}}}}}
outputs: {{by_source: true}}
"""


def test_a_shock_moves_the_events_conversion_trial_by_trial(tmp_path):
    """Given the trial's shocked conversion p_t (stored in inputs), W ~ Binomial(1000, p_t)."""
    ds = _simulate(tmp_path, DRIFT.format(rate=0, shock=0.8, drift=0), trials=8000)
    p = ds["inputs"].sel(segment="s", quantity="convert.only").values
    assert p.std() > 0.05
    won = ds["won_deals"].values[:, 2]
    resid = won - 1000 * p
    within(resid.mean(), 0.0, math.sqrt(np.mean(1000 * p * (1 - p)) / p.size))
    assert 0.93 < resid.var(ddof=1) / np.mean(1000 * p * (1 - p)) < 1.07
    assert np.corrcoef(won, p)[0, 1] > 0.95


def test_the_drift_gives_the_events_its_months_conversion_the_new_leads_walk(tmp_path):
    """An event in March (two months of drift, sd 0.5 a month) converts with
    p' = expit(logit 0.2 + 0.5 sqrt(2) Z), the same p' as March's new leads (one walk)."""
    ds = _simulate(tmp_path, DRIFT.format(rate=10, shock=0, drift=0.5), trials=8000)
    n = ds.sizes["trial"]
    src = ds["won_deals_by_source"].transpose("trial", "period", "source")
    ev = src.sel(source="events").values[:, 2]
    new = src.sel(source="new_leads").values[:, 2]
    assert np.all(src.sel(source="events").values[:, :2] == 0)
    z = stats.norm()
    sd = 0.5 * math.sqrt(2)

    def moment(f):
        return integrate.quad(lambda x: f(1 / (1 + math.exp(-(math.log(0.25) + sd * x)))) * z.pdf(x), -12, 12)[0]

    mean_p, mean_p2 = moment(lambda q: q), moment(lambda q: q * q)
    var_p = mean_p2 - mean_p ** 2
    var_ev = 1000 * (mean_p - mean_p2) + 1000 ** 2 * var_p
    within(ev.mean(), 1000 * mean_p, math.sqrt(var_ev / n))
    assert abs(mean_p - 0.2) * 1000 > 5 * math.sqrt(var_ev / n)  # the drift moves the mean
    assert 0.9 < ev.var(ddof=1) / var_ev < 1.1
    m = 10 * 31  # March's new leads, Poisson
    var_new = m * mean_p + m ** 2 * var_p
    rho = 1000 * m * var_p / math.sqrt(var_ev * var_new)
    assert abs(np.corrcoef(ev, new)[0, 1] - rho) < 5 * (1 - rho ** 2) / math.sqrt(n)


MOVES = """\
stages: [a, b]
segments:
  s:
    leads:
      per_day: 0
      events: [{date: 2027-01-05, count: 1000, stage: b}]
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.4, days: 0, moves: [{to: a, share: 0.5}]}
    deal_value: 1
outputs: {stage_entries: true, losses: true}
"""


def test_with_moves_the_wins_are_binomial_with_h_and_visits_are_entries(tmp_path):
    """h_b = 0.4 / (1 - 0.5 x 0.3) = 0.470588; each visit an entry: E[entries into t] =
    1000 N[b, t]; every lead lost is lost once."""
    ds = _simulate(tmp_path, MOVES, trials=8000)
    n = ds.sizes["trial"]
    won = ds["won_deals"].values.sum(axis=1)
    Q, R = chains.matrices(np.array([0.5, 0.4]), [(1, 0, 0.5)])
    h, N = chains.solve(Q, R)
    assert math.isclose(h[1], 0.4 / 0.85)
    within(won.mean(), 1000 * h[1], math.sqrt(1000 * h[1] * (1 - h[1]) / n))
    assert 0.93 < won.var(ddof=1) / (1000 * h[1] * (1 - h[1])) < 1.07
    e = ds["stage_entries"].sel(segment="s").sum("period").transpose("trial", "stage").values
    lost = ds["losses"].sel(segment="s").sum("period").transpose("trial", "stage").values
    var_visits = N @ (2 * np.diag(np.diag(N)) - np.eye(2)) - N ** 2  # of one lead's visits to t from s
    for t in range(2):
        within(e[:, t].mean(), 1000 * N[1, t], math.sqrt(1000 * var_visits[1, t] / n))
    assert np.array_equal(lost.sum(axis=1) + won, np.full(n, 1000))


PASS = """\
stages: [only]
segments:
  s:
    leads:
      per_day: 0
      events: [{date: 2027-01-01, count: 400}]
    funnel:
      only: {convert: 1, days: 0}
    deal_value: 10
"""


def test_event_deals_reach_capacity_commission_and_customers(tmp_path):
    capacity = "capacity: {won_per_month: 50}\n"
    ds = _simulate(tmp_path, PASS + capacity, trials=50, name="cap.yaml")
    assert np.all(ds["won_deals"].values == 50)  # 400 due on day 0, 50 a month admitted
    team = ("team:\n  reps: [{name: ana, segments: [s], quota: 1000}]\ncommission:\n  period: month\n"
            "  tiers: [{rate: 0.1}]\n")
    ds = _simulate(tmp_path, PASS + team, trials=50, name="team.yaml")
    assert np.all(ds["bookings"].values[:, 0, 0] == 4000)
    assert np.allclose(ds["commission"].values.sum(axis=(1, 2)), 400)
    customer = PASS.replace("    deal_value: 10\n", "    deal_value: 10\n    customer:\n      subscription: {renew: 1}\n")
    ds = _simulate(tmp_path, customer + capacity + "outputs: {by_source: true}\n", trials=50, name="cust.yaml")
    assert np.all(ds["won_deals"].values == 50)
    assert np.array_equal(ds["new_customers"].values, ds["won_deals"].values)  # admitted one by one
    assert np.all(ds["active_customers"].values == [50, 100, 150])
    src = ds["won_deals_by_source"].transpose("trial", "period", "source")
    assert np.array_equal(src.sel(source="events").values, ds["won_deals"].values)
    assert np.allclose(ds["revenue_by_source"].sel(source="events").transpose("trial", "period").values,
                       ds["revenue"].values)


BASE = """\
stages: [a, b]
segments:
  s:
    leads:
      per_day: 4
      dispersion: 0.1
      events: %s
    funnel:
      a: {convert: 0.5, days: {dist: gamma, mean: 6, cv: 0.5}, value: 3}
      b: {convert: 0.4, days: {dist: lognormal, median: 8, sigma: 0.5}}
    deal_value: {dist: lognormal, median: 100, sigma: 0.3}
  t:
    leads: {per_week: 20}
    funnel:
      a: {convert: 0.3, days: 2}
      b: {convert: 0.5, days: 3}
    deal_value: 50
pipeline: {file: p.csv}
team:
  reps: [{name: ana, segments: [s, t], quota: 10000}]
closing: {slip: {1: 0.2}, window_days: 5}
outputs: {by_source: true%s}
"""
PIPE = "deal_id,segment,stage,entered_stage,amount\n1,s,a,2026-12-20,\n2,t,b,2026-12-01,500\n"
EVENTS = "[{date: 2027-01-20, count: 300}, {date: 2027-02-10, count: {dist: pert, low: 50, mode: 80, high: 200}, stage: b}]"


def test_events_change_no_other_draw_and_counts_change_nothing(tmp_path):
    """Adding events leaves the new leads' and the pipeline's deals, trial by trial; asking
    for the counts changes no number of a file with events (stage values included)."""
    without = _simulate(tmp_path, BASE % ("[]", ""), trials=600, name="a.yaml", files={"p.csv": PIPE})
    ds = _simulate(tmp_path, BASE % (EVENTS, ""), trials=600, name="b.yaml", files={"p.csv": PIPE})
    counted = _simulate(tmp_path, BASE % (EVENTS, ", stage_entries: true, losses: true, cycle_days: true"),
                        trials=600, name="c.yaml", files={"p.csv": PIPE})
    src, src0 = (x["won_deals_by_source"].transpose("trial", "period", "source") for x in (ds, without))
    for source in ("pipeline", "new_leads"):
        assert np.array_equal(src.sel(source=source).values, src0.sel(source=source).values), source
    assert src.sel(source="events").values.sum() > 0 and src0.sel(source="events").values.sum() == 0
    assert np.array_equal(ds["won_deals_by_segment"].sel(segment="t").values,
                          without["won_deals_by_segment"].sel(segment="t").values)
    assert np.array_equal(src.sum("source").values, ds["won_deals"].values)
    assert np.allclose(ds["revenue_by_source"].sum("source").transpose("trial", "period").values,
                       ds["revenue"].values, rtol=1e-12)
    for var in ("revenue_by_segment", "won_deals_by_segment", "bookings", "stage_revenue_by_segment",
                "revenue_by_source", "won_deals_by_source"):
        assert np.array_equal(ds[var].values, counted[var].values), var


def test_an_events_stage_value_is_booked_by_the_leads_converting_out_of_it(tmp_path):
    """1,000 leads entering a with a value of 3 (days 0): stage revenue 3 Binomial(1000, 0.5)."""
    body = """\
stages: [a, b]
segments:
  s:
    leads:
      per_day: 0
      events: [{date: 2027-01-03, count: 1000}]
    funnel:
      a: {convert: 0.5, days: 0, value: 3}
      b: {convert: 0.4, days: 0}
    deal_value: 1
"""
    ds = _simulate(tmp_path, body, trials=8000)
    sv = ds["stage_revenue"].values[:, 0] / 3
    assert np.array_equal(sv, np.round(sv))
    within(sv.mean(), 500, math.sqrt(250 / sv.size))
    assert 0.93 < sv.var(ddof=1) / 250 < 1.07
    assert np.all(sv >= ds["won_deals"].values[:, 0])


def test_per_day_0_and_a_segments_own_stages(tmp_path):
    """A segment of events only (per_day: 0) whose own stages skip one: the default entry
    stage is its first; the stage it does not pass converts at once."""
    body = """\
stages: [a, b, c]
segments:
  s:
    stages: [b, c]
    leads:
      per_day: 0
      events: [{date: 2027-01-01, count: 500}]
    funnel:
      b: {convert: 0.5, days: 0}
      c: {convert: 0.5, days: 0}
    deal_value: 1
  other:
    leads: {per_day: 1}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.5, days: 0}
      c: {convert: 0.5, days: 0}
    deal_value: 1
outputs: {stage_entries: true}
"""
    ds = _simulate(tmp_path, body, trials=4000)
    won = ds["won_deals_by_segment"].sel(segment="s").values[:, 0]
    within(won.mean(), 125, math.sqrt(500 * 0.25 * 0.75 / won.size))
    e = ds["stage_entries"].sel(segment="s").transpose("trial", "period", "stage").values
    assert np.all(e[:, 0, 1] == 500) and np.all(e[:, :, 0] == 0)


BAD = [
    ("{date: 2027-04-01, count: 10}", "segments.s.leads.events[0].date", "within the horizon"),
    ("{date: 2026-12-31, count: 10}", "segments.s.leads.events[0].date", "within the horizon"),
    ("{date: 2027-01-10, count: 10, stage: nope}", "segments.s.leads.events[0].stage", "not one of the stages"),
    ("{date: 2027-01-10, count: 10, stage: a}", "segments.s.leads.events[0].stage", "does not pass"),
    ("{date: 2027-01-10, count: -1}", "segments.s.leads.events[0].count", "whole number"),
    ("{date: 2027-01-10, count: 2.5}", "segments.s.leads.events[0].count", "whole number"),
    ("{date: 2027-01-10, count: {dist: fixed, value: 2.5}}", "segments.s.leads.events[0].count.value",
     "whole number"),
    ("{date: 2027-01-10, count: {dist: uniform, low: -5, high: 5}}", "segments.s.leads.events[0].count",
     "ranges over"),
    ("{date: 2027-01-10, count: 10, cost: -1}", "segments.s.leads.events[0].cost", ">= 0"),
    ("{date: 2027-01-10}", "segments.s.leads.events[0].count", "is missing"),
    ("{date: 2027-01-10, count: 10, when: 3}", "segments.s.leads.events[0].when", "not a known key"),
]


@pytest.mark.parametrize("event,where,what", BAD, ids=[b[1].split(".")[-1] + "-" + b[2][:12] for b in BAD])
def test_bad_events_are_refused_with_the_key_path(tmp_path, event, where, what):
    body = f"""\
stages: [a, b]
segments:
  s:
    stages: [b]
    leads:
      per_day: 0
      events: [{event}]
    funnel:
      b: {{convert: 0.5, days: 0}}
    deal_value: 1
"""
    path = _path(tmp_path, body, 10)
    with pytest.raises(ScenarioError) as err:
        fc.load_scenario(path)
    text = str(err.value)
    assert where in text and what in text, text
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and where in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


_PARITY = """
import sys, numpy as np, forecaster as fc
ds = fc.simulate(fc.load_scenario(sys.argv[1]), threads=1)
np.savez(sys.argv[2], **{v: ds[v].values for v in ("revenue_by_segment", "won_deals_by_segment", "stage_entries",
                                                   "losses", "won_deals_by_source", "cycle_days")})
"""


PARITY = BASE.replace("    leads: {per_week: 20}\n",
                      "    leads: {per_week: 20, events: [{date: 2027-03-01, count: 40, stage: b}]}\n").replace(
    "      b: {convert: 0.5, days: 3}\n", "      b: {convert: 0.5, days: 3, moves: [{to: a, share: 0.3}]}\n") \
    + "shocks: {convert: {b: 0.3}, drift: {leads: 0.1}}\n"
"""Every path of the kernel: events with and without moves, a count distribution, stage
values, closing, a team, counts and cycle times, shocks."""


@pytest.mark.parametrize("jit_off", ["0", "1"])
def test_events_give_the_same_numbers_without_the_jit(tmp_path, jit_off):
    path = _path(tmp_path, PARITY % (EVENTS, ", stage_entries: true, losses: true, cycle_days: true"), 40,
                 files={"p.csv": PIPE})
    ref = fc.simulate(fc.load_scenario(path), threads=1)
    out = tmp_path / "o.npz"
    subprocess.run([sys.executable, "-c", _PARITY, str(path), str(out)], check=True,
                   env=dict(os.environ, NUMBA_DISABLE_JIT=jit_off), timeout=900)
    got = np.load(out)
    assert ref["won_deals_by_source"].sel(source="events").values.sum() > 0
    for name in got.files:
        assert np.array_equal(got[name], ref[name].values), name


FUNNEL = """\
stages: [a, b, c]
segments:
  s:
    leads:
      per_day: 10
      events:
        - {date: 2027-01-10, count: 5000}
        - {date: 2027-02-10, count: {dist: uniform, low: 300, high: 500}, stage: b}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.4, days: 0}
      c: {convert: 0.3, days: 0}
    deal_value: 1
outputs: {stage_entries: true}
"""


def test_the_summarys_funnel_counts_event_leads_at_their_own_stage(tmp_path):
    """summary.json's funnel counts what ``leads`` and ``stage_entries`` count (E.3, F1): the
    event leads enter their own stage (the first by default) and go on from there. 900 new
    leads and 5,000 at a, 400 expected at b: a 5,900, b 2,950 + 400 = 3,350, c 1,340, won
    402; the simulated entries agree."""
    from forecaster.results.summary import summarize

    sc = fc.load_scenario(_path(tmp_path, FUNNEL, trials=400))
    ds = fc.simulate(sc)
    funnel = summarize(ds, sc)["funnel"]["s"]
    entering = [st["entering"] for st in funnel["stages"]]
    assert entering == pytest.approx([5900, 3350, 1340], rel=1e-12)
    assert funnel["won_eventually"] == pytest.approx(402, rel=1e-12)
    simulated = ds["stage_entries"].sel(segment="s").sum("period").mean("trial").values
    assert simulated == pytest.approx(entering, rel=0.01)
    # with moves: sum over entry stages r of the entries x N[r, t], and x h_r for the wins
    ds = _simulate(tmp_path, MOVES.replace("per_day: 0", "per_day: 5"), trials=2000)
    sc = fc.load_scenario(tmp_path / "s.yaml")
    funnel = summarize(ds, sc)["funnel"]["s"]
    h, N = chains.solve(*chains.matrices(np.array([0.5, 0.4]), [(1, 0, 0.5)]))
    assert [st["entering"] for st in funnel["stages"]] == pytest.approx(450 * N[0] + 1000 * N[1], rel=1e-12)
    assert funnel["won_eventually"] == pytest.approx(450 * h[0] + 1000 * h[1], rel=1e-12)
    simulated = ds["stage_entries"].sel(segment="s").sum("period").mean("trial").values
    assert simulated == pytest.approx(450 * N[0] + 1000 * N[1], rel=0.01)
