"""Stage values (v2 F11) in funnels with moves: a lead books a valued stage's value on its
first forward exit from it (F11: "with moves, every lead books at its first forward exit from
s, with the law of the chain"), won or lost; an open deal books those of its own stage and
later ones (one already past a stage books nothing)."""
from __future__ import annotations

import math

import numpy as np
from conftest import MONTH_DAYS, within

import forecaster as fc
from forecaster.scenario import chain

P = np.array([0.5, 0.4, 0.5])
MOVES = [(1, 0, 0.25), (2, 1, 0.6)]  # v2 B.6 check 3


def forward_exit_chance(stage: int) -> np.ndarray:
    """g_t: the chance that a lead entering stage t ever converts forward out of ``stage``
    (the chain with that step made absorbing)."""
    Q, _ = chain.matrices(P, MOVES)
    b = np.zeros(3)
    b[stage], Q[stage, stage + 1] = P[stage], 0.0
    return np.linalg.solve(np.eye(3) - Q, b)


def funnel(values: dict, days: str = "0", lost: str = "") -> str:
    v = {s: f", value: {values[s]}" if s in values else "" for s in "abc"}
    return f"""\
    stages: [a, b, c]
    segments:
      s:
        leads: {{per_day: 30}}
        funnel:
          a: {{convert: 0.5, days: {days}{v['a']}}}
          b: {{convert: 0.4, days: {days}{lost}, moves: [{{to: a, share: 0.25}}]{v['b']}}}
          c: {{convert: 0.5, days: {days}, moves: [{{to: b, share: 0.6}}]}}
        deal_value: 1
    """


def test_new_leads_book_each_valued_stage_once_on_the_first_forward_exit(make):
    """Values on a (10) and b (100), times 0: per month the booked amount of m leads is compound
    Poisson with E = m (10 g_a + 100 g_b) and Var = m (100 g_a + 10^4 g_b + 2000 g_b) (a lead
    that leaves b forward has left a forward: both values, one lead); revenue is bit for bit
    that of the file without values. Booking every forward exit, or on first reaching the
    stage, would be far off."""
    ga, gb = forward_exit_chance(0)[0], forward_exit_chance(1)[0]
    plain = fc.simulate(make(funnel({}), trials=3000))
    ds = fc.simulate(make(funnel({"a": 10, "b": 100}), trials=3000))
    assert np.array_equal(plain["revenue"].values, ds["revenue"].values)
    booked = ds["stage_revenue"].values.astype(float)  # (trial, month)
    n = booked.shape[0]
    Q, R = chain.matrices(P, MOVES)
    _, N = chain.solve(Q, R)
    for k, days in enumerate(MONTH_DAYS):
        m = 30 * days
        mean, var = m * (10 * ga + 100 * gb), m * (100 * ga + 1e4 * gb + 2000 * gb)
        se = math.sqrt(var / n)
        within(booked[:, k].mean(), mean, se)
        assert 0.9 < booked[:, k].var(ddof=1) / var < 1.1
        every_exit = m * (10 * N[0, 0] * P[0] + 100 * N[0, 1] * P[1])
        first_reach = m * (10 * 1.0 + 100 * 0.5)
        assert abs(booked[:, k].mean() - every_exit) > 8 * se and abs(booked[:, k].mean() - first_reach) > 8 * se


def test_the_first_forward_exit_is_booked_on_its_day(make):
    """a (3 days) -> b (4 days) -> c (0 days, converts all), b moves back to a after 10 days,
    value 1 on b: a lead arriving on day d first converts out of b on day d + 7 + 13 j with
    probability 0.2 x 0.15^j (0.5 into b, then 0.4 forward or 0.3 back to a and through it
    again); it is then won that day, so the booked values are the won deals, trial by trial."""
    sc = make("""\
    report_by: day
    stages: [a, b, c]
    segments:
      s:
        leads: {per_day: 20}
        funnel:
          a: {convert: 0.5, days: 3}
          b: {convert: 0.4, days: 4, moves: [{to: a, share: 0.5, days: 10}], value: 1}
          c: {convert: 1, days: 0}
        deal_value: 1
    """, trials=4000)
    ds = fc.simulate(sc)
    booked = ds["stage_revenue"].values.astype(float)
    n = booked.shape[0]
    assert np.array_equal(booked, ds["won_deals"].values)
    assert np.allclose(booked[:, :7], 0)
    for day, js in ((7, (0,)), (19, (0,)), (20, (0, 1)), (33, (0, 1, 2))):
        lam = 20 * sum(0.2 * 0.15 ** j for j in js)
        within(booked[:, day].mean(), lam, math.sqrt(lam / n))


def test_open_deals_book_their_stage_and_later_ones_on_their_first_forward_exit(tmp_path):
    """Deals in b at age 10 (v2 B.6 check 5's exponential laws), values a: 1000, b: 1: a deal
    books b's value when it first converts out of b, with pi_f(a) + pi_m(a) g_a (g_a: the chance
    to come back from a and convert out of b), won or lost in the end; a is behind them and
    books nothing, though they return to it."""
    n_open, trials = 400, 1000
    rows = "deal_id,segment,stage,entered_stage\n" + "".join(f"{i},s,b,2026-12-22\n" for i in range(n_open))
    (tmp_path / "p.csv").write_text(rows)
    body = f"""\
name: sv
start: 2027-01-01
end: 2029-12-31
report_by: quarter
trials: {trials}
seed: 8
stages: [a, b, c]
segments:
  s:
    leads: {{per_day: 0}}
    funnel:
      a: {{convert: 0.5, days: 1, value: 1000}}
      b: {{convert: 0.4, days: {{dist: exponential, mean: 10}}, days_lost: {{dist: exponential, mean: 5}},
          moves: [{{to: a, share: 0.25, days: {{dist: exponential, mean: 20}}}}], value: 1}}
      c: {{convert: 0.5, days: 1, moves: [{{to: b, share: 0.6}}]}}
    deal_value: 1
pipeline: {{file: p.csv}}
"""
    (tmp_path / "sv.yaml").write_text(body)
    ds = fc.simulate(fc.load_scenario(tmp_path / "sv.yaml"))
    w = np.array([0.4 * math.exp(-1.0), 0.15 * math.exp(-0.5), 0.45 * math.exp(-2.0)])
    pi = w / w.sum()  # (0.492093, 0.304247, 0.203660)
    assert np.allclose(pi, (0.492093, 0.304247, 0.203660), atol=1e-6)
    chance = pi[0] + pi[1] * forward_exit_chance(1)[0]
    booked = ds["stage_revenue"].sum("period").values.astype(float)
    within(booked.mean(), n_open * chance, math.sqrt(n_open * chance * (1 - chance) / trials))
    assert booked.max() < 1000  # never a's value
