"""The engine's funnels with moves (v2 B, forecaster.engine.moves) against closed forms: the
won count's law, the paths' times, per-trial shares and shocks, independence between
segments, open deals, and the per-trial absorption test (B.5)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import within

import forecaster as fc
from forecaster.scenario import chain


def h_of(p, moves=(), won_moves=()):
    Q, R = chain.matrices(np.asarray(p, dtype=float), [(s, t, x) for s, t, x in moves] +
                          [(s, -1, x) for s, x in won_moves])
    return chain.solve(Q, R)[0]


def test_new_leads_paths_take_the_moves_times(make):
    """a (3 days) -> b (4 days), b moves back to a after 10 days: a lead arriving on day d and
    returning k times is won on day d + 7 + 13 k, with probability h 0.85 0.15^k."""
    sc = make("""\
    report_by: day
    stages: [a, b]
    segments:
      s:
        leads: {per_day: 20}
        funnel:
          a: {convert: 0.5, days: 3}
          b: {convert: 0.4, days: 4, moves: [{to: a, share: 0.5, days: 10}]}
        deal_value: 1
    """, trials=4000)
    won = fc.simulate(sc)["won_deals"].values.astype(float)
    n = won.shape[0]
    h = 0.2 / 0.85
    assert np.allclose(won[:, :7], 0)  # nothing is won before the shortest path ends
    for day, ks in ((7, (0,)), (19, (0,)), (20, (0, 1)), (33, (0, 1, 2))):
        lam = 20 * h * sum(0.85 * 0.15 ** k for k in ks)
        within(won[:, day].mean(), lam, math.sqrt(lam / n))


def test_per_trial_shares_and_shocked_conversions(make):
    """A beta share and a shocked conversion: the won leads are Poisson(m h) given the trial's
    draws, so E = m E[h] (an integral over the draws, by quadrature) and Var = E + m^2 Var[h]."""
    sc = make("""\
    stages: [a, b, c]
    segments:
      s:
        leads: {per_day: 30}
        funnel:
          a: {convert: 0.5, days: 0}
          b: {convert: 0.4, days: 0, moves: [{to: a, share: {dist: beta, mean: 0.4, concentration: 4}}]}
          c: {convert: 0.6, days: 0, moves: [{to: b, share: 0.3}]}
        deal_value: 1
    shocks: {convert: {c: 0.8}}
    """, trials=20000)
    won = fc.simulate(sc)["won_deals"].values.sum(axis=1).astype(float)
    from scipy import stats

    a, b = 0.4 * 4, 0.6 * 4
    xs, wx = np.polynomial.legendre.leggauss(200)
    x, wx = (xs + 1) / 2, wx / 2
    zs, wz = np.polynomial.hermite_e.hermegauss(60)
    wz = wz / wz.sum()
    hs = np.zeros((x.size, zs.size))
    for i, sigma in enumerate(x):
        for j, z in enumerate(zs):
            pc = 1 / (1 + (0.4 / 0.6) * math.exp(-0.8 * z))
            hs[i, j] = h_of([0.5, 0.4, pc], [(1, 0, sigma), (2, 1, 0.3)])[0]
    dens = stats.beta(a, b).pdf(x) * wx
    mean_h = float(dens @ hs @ wz)
    var_h = float(dens @ hs ** 2 @ wz) - mean_h ** 2
    m = 30 * 90
    n = won.size
    var = m * mean_h + m * m * var_h
    within(won.mean(), m * mean_h, math.sqrt(var / n))
    assert 0.9 < won.var(ddof=1) / var < 1.1


def test_two_segments_with_moves_are_independent(make):
    sc = make("""\
    stages: [a, b]
    segments:
      one:
        leads: {per_day: 10}
        funnel:
          a: {convert: 0.5, days: {dist: exponential, mean: 5}}
          b: {convert: 0.4, days: 4, moves: [{to: a, share: 0.5}]}
        deal_value: {dist: lognormal, median: 100, sigma: 0.5}
      two:
        leads: {per_day: 10}
        funnel:
          a: {convert: 0.5, days: {dist: exponential, mean: 5}}
          b: {convert: 0.4, days: 4, moves: [{to: a, share: 0.5}]}
        deal_value: {dist: lognormal, median: 100, sigma: 0.5}
    """, trials=20000)
    ds = fc.simulate(sc)
    by = ds["revenue_by_segment"].sum("period")
    x, y = by.sel(segment="one").values, by.sel(segment="two").values
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(x.size)
    assert abs(x.mean() - y.mean()) < 5 * math.sqrt((x.var() + y.var()) / x.size)


def test_open_deals_follow_their_chain_and_keep_their_amount(make):
    """Deals at stage b of a -> b (b moves back to a): each is won with h_b in the end; a long
    horizon holds every path; a deal with an amount books it."""
    rows = "deal_id,segment,stage,entered_stage,amount\n" + "".join(
        f"{i},s,b,2027-01-01,{250 if i % 2 else ''}\n" for i in range(600))
    sc = make("""\
    stages: [a, b]
    segments:
      s:
        leads: {per_day: 0}
        funnel:
          a: {convert: 0.5, days: 2}
          b: {convert: 0.4, days: 3, moves: [{to: a, share: 0.5}]}
        deal_value: 100
    pipeline: {file: open.csv}
    """, files={"open.csv": rows}, trials=4000)
    ds = fc.simulate(sc)
    won = ds["won_deals"].values.sum(axis=1).astype(float)
    hb = h_of([0.5, 0.4], [(1, 0, 0.5)])[1]  # 0.4 / (1 - 0.6 * 0.5 * 0.5) = 0.470588
    assert hb == pytest.approx(0.4 / 0.85)
    within(won.mean(), 600 * hb, math.sqrt(600 * hb * (1 - hb) / won.size))
    revenue = ds["revenue"].values.sum(axis=1)
    within(revenue.mean(), 300 * hb * (250 + 100), math.sqrt(300 * hb * (1 - hb) * (250 ** 2 + 100 ** 2) / won.size))


def test_a_trial_whose_chain_no_lead_leaves_stops_the_run(tmp_path):
    """B.5: at the means the loop a <-> b is left (share 0.95), but a trial drawing a share above
    0.9999 gives more than 10,000 expected visits: the run stops with status 2 and writes nothing."""
    text = """\
name: loop
start: 2027-01-01
end: 2027-03-31
trials: 20000
seed: 1
stages: [a, b]
segments:
  s:
    leads: {per_day: 1}
    funnel:
      a: {convert: 1, days: 0}
      b: {convert: 0, days: 0, moves: [{to: a, share: {dist: uniform, low: 0.9, high: 1.0}}]}
    deal_value: 1
"""
    path = tmp_path / "loop.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "segments.s.funnel" in proc.stderr and "in trial" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_losses_and_entries_of_a_chain_with_the_lost_leads_drawn(make):
    """v2 F1 with moves, days 0: a stage's expected entries are m N[0, s] (every visit an entry)
    and its losses m N[0, s] (1 - p_s)(1 - sum of its shares); won and lost leads add up to the
    arrivals' visits; asking for the counts leaves revenue bit-identical (rule 0.1)."""
    body = """\
    stages: [a, b, c]
    segments:
      s:
        leads: {per_day: 20}
        funnel:
          a: {convert: 0.5, days: 0, moves: [{to: c, share: 0.2}]}
          b: {convert: 0.4, days: 0, moves: [{to: a, share: 0.25}, {to: won, share: 0.1}]}
          c: {convert: 0.5, days: 0, moves: [{to: b, share: 0.6}]}
        deal_value: {dist: lognormal, median: 100, sigma: 0.5}
    """
    counted = fc.simulate(make(body + "outputs: {stage_entries: true, losses: true}\n", trials=6000))
    plain = fc.simulate(make(body, trials=6000))
    assert np.array_equal(counted["revenue"].values, plain["revenue"].values)
    p = np.array([0.5, 0.4, 0.5])
    Q, R = chain.matrices(p, [(0, 2, 0.2), (1, 0, 0.25), (1, -1, 0.1), (2, 1, 0.6)])
    h, N = chain.solve(Q, R)
    lost_share = (1 - p) * (1 - np.array([0.2, 0.35, 0.6]))
    m = 20 * 90
    n = counted.sizes["trial"]
    entries = counted["stage_entries"].sel(segment="s").sum("period").transpose("trial", "stage").values
    losses = counted["losses"].sel(segment="s").sum("period").transpose("trial", "stage").values
    second = (N @ (2 * np.diag(np.diag(N)) - np.eye(3)))[0]
    for s in range(3):
        within(entries[:, s].mean(), m * N[0, s], math.sqrt(m * second[s] / n))
        lam = m * N[0, s] * lost_share[s]
        within(losses[:, s].mean(), lam, math.sqrt(m * second[s] / n))
    won = counted["won_deals"].sum("period").values
    within((losses.sum(axis=1) + won).mean(), m, math.sqrt(m / n))  # every lead ends won or lost
    within(losses.sum(axis=1).mean(), m * (1 - h[0]), math.sqrt(m * (1 - h[0]) / n))


def test_open_deals_with_moves_count_their_later_visits_and_their_loss(make):
    """600 deals at stage b, age 0, days 0: entries into a and b from their paths are
    600 N[b, a] and 600 (N[b, b] - 1) (the current visit is not an entry); every deal not won
    is lost: 600 (1 - h_b)."""
    rows = "deal_id,segment,stage,entered_stage\n" + "".join(f"{i},s,b,2027-01-01\n" for i in range(600))
    sc = make("""\
    stages: [a, b]
    segments:
      s:
        leads: {per_day: 0}
        funnel:
          a: {convert: 0.5, days: 0}
          b: {convert: 0.4, days: 0, moves: [{to: a, share: 0.5}]}
        deal_value: 1
    pipeline: {file: open.csv}
    outputs: {stage_entries: true, losses: true}
    """, files={"open.csv": rows}, trials=6000)
    ds = fc.simulate(sc)
    Q, R = chain.matrices(np.array([0.5, 0.4]), [(1, 0, 0.5)])
    h, N = chain.solve(Q, R)
    n = ds.sizes["trial"]
    entries = ds["stage_entries"].sel(segment="s").sum("period").transpose("trial", "stage").values
    losses = ds["losses"].sel(segment="s").sum("period").values.sum(axis=-1)
    within(entries[:, 0].mean(), 600 * N[1, 0], math.sqrt(600 * 4 * N[1, 0] / n))
    within(entries[:, 1].mean(), 600 * (N[1, 1] - 1), math.sqrt(600 * 4 * N[1, 1] / n))
    within(losses.mean(), 600 * (1 - h[1]), math.sqrt(600 * h[1] * (1 - h[1]) / n))
    won = ds["won_deals"].sum("period").values
    assert np.all(won + losses == 600)  # days 0: every deal ends inside the horizon


def test_cycle_days_of_paths_that_return(tmp_path):
    """v2 F1 cycle_days with moves: a -> b (3 and 4 days), back to a after 10 days: a won
    lead's cycle is 7 + 13 k days with probability 0.85 0.15^k, counted when its arrival
    d (0..89) has d + cycle < 90: weights (90 - c) 0.85 0.15^k."""
    text = """\
name: cyc
start: 2027-01-01
end: 2027-03-31
trials: 3000
seed: 5
stages: [a, b]
segments:
  s:
    leads: {per_day: 20}
    funnel:
      a: {convert: 0.5, days: 3}
      b: {convert: 0.4, days: 4, moves: [{to: a, share: 0.5, days: 10}]}
    deal_value: 1
outputs: {cycle_days: true}
"""
    path = tmp_path / "cyc.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "--out", str(out), "--quiet"], check=True,
                   capture_output=True, timeout=600)
    import json

    cyc = json.loads((out / "summary.json").read_text())["cycle_days"]
    c = np.array([7 + 13 * k for k in range(7)], dtype=float)
    w = (90 - c) * 0.85 * 0.15 ** np.arange(7)
    mean = float(np.sum(c * w) / np.sum(w))
    sd = math.sqrt(float(np.sum((c - mean) ** 2 * w) / np.sum(w)))
    assert cyc["p50"] == 7.0 and cyc["count"] > 0
    within(cyc["mean"], mean, sd / math.sqrt(cyc["count"]))
    h = 0.2 / 0.85
    within(cyc["count"] / 3000, 20 * h * float(np.sum(w)) / 1.0 * 1.0, math.sqrt(20 * h * 90 / 3000))


def test_pipeline_coverage_with_moves_uses_the_age_conditioned_exits(make):
    """v2 F12 coverage with B.6 check 5: a deal at stage two of the three-stage chain, age 10,
    exponential exits (forward 10, move 20, lost 5), is won with 0.320519, a fresh one with
    h_2 = 0.248447: the win rate of two deals of equal value is their mean."""
    rows = "deal_id,segment,stage,entered_stage,amount\nold,s,two,2026-12-22,1000\nnew,s,two,2027-01-01,1000\n"
    sc = make("""\
    stages: [one, two, three]
    segments:
      s:
        leads: {per_day: 0}
        funnel:
          one:   {convert: 0.5, days: 0}
          two:   {convert: 0.4, days: {dist: exponential, mean: 10}, days_lost: {dist: exponential, mean: 5},
                  moves: [{to: one, share: 0.25, days: {dist: exponential, mean: 20}}]}
          three: {convert: 0.5, days: 0, moves: [{to: two, share: 0.6}]}
        deal_value: 1
    pipeline: {file: open.csv}
    outputs: {coverage: true}
    """, files={"open.csv": rows}, trials=50)
    from forecaster.engine.plan import build_plan
    from forecaster.results.coverage import coverage_summary

    ds = fc.simulate(sc)
    cov = coverage_summary(sc, build_plan(sc), ds["inputs"].values)
    assert cov["pipeline_value"] == 2000
    assert cov["win_rate"]["mean"] == pytest.approx((0.320519 + 0.248447) / 2, abs=2e-6)


def test_a_trial_whose_chain_fails_names_its_stages(tmp_path):
    """B.5: the per-trial failure names the segment, the stages of the loop and the trial."""
    text = """\
name: loop2
start: 2027-01-01
end: 2027-01-31
trials: 200
seed: 3
stages: [a, b, c]
segments:
  s:
    leads: {per_day: 1}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 1, days: 0}
      c: {convert: {dist: beta, mean: 0.05, concentration: 1}, days: 0, moves: [{to: b, share: 1}]}
    deal_value: 1
"""
    path = tmp_path / "loop2.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "segments.s.funnel" in proc.stderr and "stages b and c a loop" in proc.stderr, proc.stderr
