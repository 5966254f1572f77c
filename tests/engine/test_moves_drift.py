"""Funnels with moves under a conversion drift (v2 B.4): month k's new leads are won with h_0
of month k's chain, their paths follow that chain, the lost ones (F1 counts) likewise, and
the walks are those ``apply_shocks`` draws; open deals keep start's month's chain."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import MONTH_DAYS, within

import forecaster as fc
from forecaster.scenario import chain

P_A, P_B, SHARE, DRIFT, PER_DAY = 0.5, 0.2, 0.9, 0.8, 30

LOOP = f"""\
stages: [a, b]
shocks: {{drift: {{convert: {{b: {DRIFT}}}}}}}
segments:
  s:
    leads: {{per_day: {PER_DAY}}}
    funnel:
      a: {{convert: {P_A}, days: 0}}
      b: {{convert: {P_B}, days: 0, moves: [{{to: a, share: {SHARE}}}]}}
    deal_value: 1
"""


def month_moments(k: int, f) -> tuple[float, float]:
    """E and Var of f(p_b') over month k's walk: p_b shifted on the log-odds scale by
    DRIFT W_k, W_k ~ N(0, k) (Gauss-Hermite quadrature)."""
    z, w = np.polynomial.hermite_e.hermegauss(100)
    w = w / w.sum()
    pb = 1.0 / (1.0 + (1.0 - P_B) / P_B * np.exp(-DRIFT * math.sqrt(k) * z))
    values = np.array([f(x) for x in pb])
    mean = float(w @ values)
    return mean, float(w @ values ** 2) - mean ** 2


def h_and_n(pb: float) -> tuple[np.ndarray, np.ndarray]:
    Q, R = chain.matrices(np.array([P_A, pb]), [(1, 0, SHARE)])
    return chain.solve(Q, R)


def test_month_k_leads_are_won_with_month_ks_h(make):
    """E[won in month k] = m_k E[h_0(p_b shifted by DRIFT W_k)] and Var = m_k E[h] + m_k^2 Var[h]
    (times 0: a lead is won in its arrival month). Month 0's h (drift ignored) and v1's rule
    (h_0 times p_b' / p_b) are each more than 8 standard errors off in months 1 and 2."""
    ds = fc.simulate(make(LOOP, trials=6000))
    won = ds["won_deals"].values.astype(float)  # (trial, month)
    n = won.shape[0]
    h0 = h_and_n(P_B)[0][0]
    for k, days in enumerate(MONTH_DAYS):
        m = PER_DAY * days
        mean_h, var_h = month_moments(k, lambda pb: h_and_n(pb)[0][0])
        var = m * mean_h + m * m * var_h
        se = math.sqrt(var / n)
        within(won[:, k].mean(), m * mean_h, se)
        assert 0.9 < won[:, k].var(ddof=1) / var < 1.1, k
        if k:
            assert abs(won[:, k].mean() - m * h0) > 8 * se  # month 0's chain would fail
            v1 = m * h0 * month_moments(k, lambda pb: pb / P_B)[0]
            assert abs(won[:, k].mean() - v1) > 8 * se  # so would scaling h_0 by p_b' / p_b


def test_month_k_leads_visit_and_are_lost_by_month_ks_chain(make):
    """F1 under the drift: entries into a and b of month k are m_k E[N_k[0, a]], m_k E[N_k[0, b]];
    losses m_k E[1 - h_0(k)] (won and lost paths together; times 0)."""
    ds = fc.simulate(make(LOOP + "outputs: {stage_entries: true, losses: true}\n", trials=3000))
    entries = ds["stage_entries"].sum("segment")  # (trial, period, stage)
    lost = ds["losses"].sum(["segment", "stage"]).values.astype(float)
    n = lost.shape[0]
    for k, days in enumerate(MONTH_DAYS):
        m = PER_DAY * days
        for s, stage in enumerate("ab"):
            got = entries.sel(stage=stage).values[:, k].astype(float)
            expected = m * month_moments(k, lambda pb, s=s: h_and_n(pb)[1][0, s])[0]
            within(got.mean(), expected, got.std(ddof=1) / math.sqrt(n))
        expected = m * (1.0 - month_moments(k, lambda pb: h_and_n(pb)[0][0])[0])
        within(lost[:, k].mean(), expected, lost[:, k].std(ddof=1) / math.sqrt(n))
    k = 2  # month 0's chain would lose far more
    far = PER_DAY * MONTH_DAYS[k] * (1.0 - h_and_n(P_B)[0][0])
    assert abs(lost[:, k].mean() - far) > 8 * lost[:, k].std(ddof=1) / math.sqrt(n)


def test_without_moves_a_chain_under_drift_wins_what_v1_wins(make):
    """A move with share 0 sends the segment through the chain's kernel; its h_0(k) is v1's
    product of month k's conversions, the walks are apply_shocks' (drawn again from the same
    streams) and the counts and arrival days come from the same streams: trial by trial, the
    won deals of each month are v1's (a count can differ only where a Poisson mean's last bits
    do, which these trials do not meet)."""
    body = """\
    stages: [a, b, c]
    shocks: {drift: {convert: {a: 0.4, c: 0.7}, leads: 0.2}, convert: {b: 0.3}}
    segments:
      s:
        leads: {per_day: 25}
        funnel:
          a: {convert: 0.6, days: 0}
          b: {convert: {dist: beta, mean: 0.5, concentration: 20}, days: 0MOVE}
          c: {convert: 0.3, days: 0}
        deal_value: 1
    """
    v1 = fc.simulate(make(body.replace("MOVE", ""), trials=2000))["won_deals"].values
    moves = fc.simulate(make(body.replace("MOVE", ", moves: [{to: a, share: 0}]"), trials=2000))["won_deals"].values
    assert v1[:, 1:].std() > 0 and np.array_equal(v1, moves)


def test_open_deals_keep_starts_chain_under_the_drift(make):
    """The drift moves new leads by their arrival month; open deals of a segment with moves
    are decided by start's month's chain, as v1's are: bit for bit the same with and without it."""
    rows = "deal_id,segment,stage,entered_stage\n" + "".join(f"{i},s,b,2026-12-20\n" for i in range(300))
    body = """\
    stages: [a, b]
    segments:
      s:
        leads: {per_day: 0}
        funnel:
          a: {convert: 0.5, days: {dist: exponential, mean: 5}}
          b: {convert: 0.4, days: {dist: exponential, mean: 8}, moves: [{to: a, share: 0.5}]}
        deal_value: 1
    pipeline: {file: p.csv}
    """
    files = {"p.csv": rows}
    plain = fc.simulate(make(body, files=files, trials=500))["won_deals"].values
    drift = fc.simulate(make(body + "shocks: {drift: {convert: {a: 1.0, b: 1.0}}}\n", files=files,
                             trials=500))["won_deals"].values
    assert plain.sum() > 0 and np.array_equal(plain, drift)


def test_a_month_whose_drifted_chain_no_lead_leaves_stops_the_run(tmp_path):
    """B.5 with B.4: the test is made on every month's drifted chain; its message names the
    segment, the loop, the trial and the month."""
    text = """\
name: driftloop
start: 2027-01-01
end: 2027-12-31
trials: 200
seed: 5
stages: [a, b]
shocks: {drift: {convert: {b: 5}}}
segments:
  s:
    leads: {per_day: 1}
    funnel:
      a: {convert: 0.99999, days: 0}
      b: {convert: 0.01, days: 0, moves: [{to: a, share: 1}]}
    deal_value: 1
"""
    path = tmp_path / "driftloop.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "segments.s.funnel" in proc.stderr and "stages a and b a loop" in proc.stderr, proc.stderr
    assert "shocks.drift.convert" in proc.stderr and "calendar month" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_sensitivity_and_the_summarys_funnel_with_moves_under_drift(tmp_path):
    """Sensitivity's runs by source give the whole runs' effects with moves under a conversion
    drift (the walks are drawn for every block whatever its sources), and the summary's funnel
    of a segment with moves keeps its visits and win probabilities (start's month's chain)."""
    import yaml

    import forecaster.analysis.sensitivity as sens
    from forecaster.results.summary import summarize

    journeys = Path(__file__).resolve().parents[2] / "scenarios" / "buying-journeys.yaml"
    doc = yaml.safe_load(journeys.read_text())
    doc["shocks"] = {"drift": {"convert": {"validation": 0.3, "problem": 0.2}}}
    doc["trials"] = 100
    path = tmp_path / "j.yaml"
    path.write_text(yaml.safe_dump(doc))
    (tmp_path / "buying-journeys-pipeline.csv").write_text(
        (journeys.parent / "buying-journeys-pipeline.csv").read_text())
    split, _ = sens.sensitivity(path, trials=100, by_source=True)
    whole, _ = sens.sensitivity(path, trials=100, by_source=False)
    a = {e["lever"]: e for e in split["levers"]}
    b = {e["lever"]: e for e in whole["levers"]}
    assert a.keys() == b.keys() and any("move to" in name for name in a)
    for name in a:
        for d in ("minus", "plus"):
            x, y = a[name][d]["revenue"]["mean"], b[name][d]["revenue"]["mean"]
            assert abs(x - y) <= 1e-6 * max(1.0, abs(y)), (name, d, x, y)
    sc = fc.load_scenario(path)
    funnel = summarize(fc.simulate(sc), sc)["funnel"]["business"]
    stages = {st["stage"]: st for st in funnel["stages"]}
    assert 0 < stages["problem"]["win_probability"] < stages["consensus"]["win_probability"] < 1
    assert stages["validation"]["visits"] > 0 and funnel["won_eventually"] > 0


JIT_PARITY = """
import sys, numpy as np, forecaster as fc
ds = fc.simulate(fc.load_scenario(sys.argv[1]), threads=1)
np.savez(sys.argv[2], **{v: ds[v].values for v in ds.data_vars})
"""


def test_moves_with_drift_stalled_and_stage_values_give_the_same_numbers_without_the_jit(tmp_path):
    """The kernels of this change (each month's chain, the stalled share, stage values of won,
    lost and open deals, with the counts) run the same with NUMBA_DISABLE_JIT=1, bit for bit."""
    funnel = """\
    a: {convert: 0.5, days: {dist: exponential, mean: 3}VALUE_A}
          b: {convert: 0.4, days: {dist: gamma, mean: 5, cv: 0.5}, moves: [{to: a, share: 0.3, days: 4}]VALUE_B}
          c: {convert: 0.5, days: 2, moves: [{to: b, share: 0.5}]}"""
    head = "name: parity\nstart: 2027-01-01\nend: 2027-02-28\ntrials: 8\nseed: 3\nstages: [a, b, c]\n"
    rows = "deal_id,segment,stage,entered_stage\n" + "".join(f"{i},s,{'ab'[i % 2]},2026-12-20\n" for i in range(20))
    (tmp_path / "p.csv").write_text(rows)
    tail = "pipeline: {file: p.csv}\nstalled: {b: 0.2}\noutputs: {stage_entries: true, losses: true}\n"
    seg = "segments:\n  s:\n    leads: {per_day: 10}\n    funnel:\n      " + funnel + "\n    deal_value: 1\n"
    drift = head + "shocks: {drift: {convert: {b: 0.3}}}\n" + seg.replace("VALUE_A", "").replace("VALUE_B", "")
    values = head + seg.replace("VALUE_A", ", value: 7").replace("VALUE_B", ", value: 5")
    for name, text in (("drift", drift + tail), ("values", values + tail)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        got = {}
        for jit_off in ("0", "1"):
            out = tmp_path / f"{name}-{jit_off}.npz"
            subprocess.run([sys.executable, "-c", JIT_PARITY, str(path), str(out)], check=True, timeout=600,
                           env=dict(os.environ, NUMBA_DISABLE_JIT=jit_off))
            got[jit_off] = np.load(out)
        assert got["0"]["won_deals"].sum() > 0
        for var in got["0"].files:
            assert np.array_equal(got["0"][var], got["1"][var]), (name, var)
