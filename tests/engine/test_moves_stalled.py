"""Funnels with moves and the extension ``stalled``: of the leads that take a visit's lost exit,
(1 - p_s)(1 - sum_j sigma_j) as in v2 B.2, a share sigma_s never leave the stage (never won,
never counted lost). The moves' shares and h stay B.2's (new leads are not touched); an open
deal's lost exit is open at age a with sigma_s + (1 - sigma_s) S_lost(a)."""
from __future__ import annotations

import math

import numpy as np
from conftest import MONTH_DAYS, within

import forecaster as fc
from forecaster.results.summary import summarize
from forecaster.scenario import chain

P = np.array([0.5, 0.4, 0.5])
MOVES = [(1, 0, 0.25), (2, 1, 0.6)]  # v2 B.6 check 3: b moves back to a, c back to b
FUNNEL = """\
stages: [a, b, c]
segments:
  s:
    leads: {{per_day: {per_day}}}
    funnel:
      a: {{convert: 0.5, days: {a_days}}}
      b: {{convert: 0.4, days: {{dist: exponential, mean: 10}}, days_lost: {{dist: exponential, mean: 5}},
          moves: [{{to: a, share: 0.25, days: {{dist: exponential, mean: 20}}}}]}}
      c: {{convert: 0.5, days: {c_days}, moves: [{{to: b, share: 0.6}}]}}
    deal_value: 1
"""


def solved():
    Q, R = chain.matrices(P, MOVES)
    return chain.solve(Q, R)


def test_an_open_deal_weighs_its_lost_exit_with_its_stalled_share(tmp_path):
    """v2 B.6 check 5 (stage b, age 10, exponential laws) with stalled {b: 0.3}: the exits
    weigh pi_i S_i(a), the lost one 0.45 (0.3 + 0.7 e^-2), and the deal is won with
    q = sum_i pi_i(a) h(i); given up (counted lost, whatever the horizon) with
    (0.45 0.7 e^-2 + sum_{i moves, forward} pi_i S_i(a) L(i)) / sum, L = (I - Q)^-1 l,
    l_s = (1 - p_s)(1 - sum_j sigma_j)(1 - stalled_s). Coverage's win rate is q exactly. A
    stalled share that also took moves (of all the leads that do not convert) is far off."""
    n_open, sigma, trials = 400, 0.3, 1500
    rows = "deal_id,segment,stage,entered_stage\n" + "".join(f"{i},s,b,2026-12-22\n" for i in range(n_open))
    (tmp_path / "p.csv").write_text(rows)
    text = (f"name: st\nstart: 2027-01-01\nend: 2029-12-31\nreport_by: quarter\ntrials: {trials}\nseed: 4\n"
            + FUNNEL.format(per_day=0, a_days=1, c_days=1)
            + f"pipeline: {{file: p.csv}}\nstalled: {{b: {sigma}}}\n"
            + "outputs: {losses: true, coverage: true}\n")
    (tmp_path / "st.yaml").write_text(text)
    sc = fc.load_scenario(tmp_path / "st.yaml")
    ds = fc.simulate(sc)
    h, N = solved()
    s_f, s_m, s_l = math.exp(-1.0), math.exp(-0.5), math.exp(-2.0)
    w = np.array([0.4 * s_f, 0.6 * 0.25 * s_m, 0.6 * 0.75 * (sigma + (1 - sigma) * s_l)])
    q = (w[0] * h[2] + w[1] * h[0]) / w.sum()
    won = ds["won_deals"].sum("period").values.astype(float)
    within(won.mean(), n_open * q, math.sqrt(n_open * q * (1 - q) / trials))
    assert abs(won.mean() - n_open * 0.320519) > 20 * math.sqrt(n_open * q * (1 - q) / trials)  # stalled ignored
    wa = np.array([0.4 * s_f, 0.6 * 0.7 * 0.25 * s_m, 0.6 * 0.7 * 0.75 * s_l, 0.6 * sigma])  # stalled taking moves too
    q_a = (wa[0] * h[2] + wa[1] * h[0]) / wa.sum()
    assert abs(won.mean() - n_open * q_a) > 20 * math.sqrt(n_open * q * (1 - q) / trials)
    summary = summarize(ds, sc)
    assert abs(summary["coverage"]["win_rate"]["mean"] - q) < 1e-12
    stalled = np.array([0.0, sigma, 0.0])
    lost_at = (1 - P) * (1 - np.array([0.0, 0.25, 0.6])) * (1 - stalled)
    L = N @ lost_at
    given_up = (0.6 * 0.75 * (1 - sigma) * s_l + w[0] * L[2] + w[1] * L[0]) / w.sum()
    lost = ds["losses"].sum(["period", "segment", "stage"]).values.astype(float)
    within(lost.mean(), n_open * given_up, lost.std(ddof=1) / math.sqrt(trials))


def test_new_leads_are_won_as_without_stalled_and_the_stalled_are_never_lost(make):
    """New leads: h and the won deals are B.2's, bit for bit the same with stalled; losses at
    stage s are m N[0, s] (1 - p_s)(1 - sum_j sigma_j)(1 - stalled_s) (times 0)."""
    body = FUNNEL.format(per_day=20, a_days=0, c_days=0).replace(
        "{dist: exponential, mean: 10}", "0").replace("{dist: exponential, mean: 5}", "0").replace(
        "{dist: exponential, mean: 20}", "0") + "outputs: {losses: true}\n"
    plain = fc.simulate(make(body, trials=1000))
    stalled = fc.simulate(make(body + "stalled: {a: 0.2, c: 0.5}\n", trials=1000))
    assert np.array_equal(plain["won_deals"].values, stalled["won_deals"].values)
    _, N = solved()
    keep = 1 - np.array([0.2, 0.0, 0.5])
    lost_at = (1 - P) * (1 - np.array([0.0, 0.25, 0.6])) * keep
    got = stalled["losses"].sum("segment")  # (trial, period, stage)
    n = got.shape[0]
    for k, days in enumerate(MONTH_DAYS):
        for s, stage in enumerate("abc"):
            x = got.sel(stage=stage).values[:, k].astype(float)
            m = 20 * days
            within(x.mean(), m * N[0, s] * lost_at[s], x.std(ddof=1) / math.sqrt(n))
            if keep[s] < 1:
                assert abs(x.mean() - m * N[0, s] * lost_at[s] / keep[s]) > 8 * x.std(ddof=1) / math.sqrt(n)
