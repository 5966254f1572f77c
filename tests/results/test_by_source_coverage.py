"""Results by source and pipeline coverage (scenario-format-v2.md, F12), against closed forms.

``by_source`` splits revenue and won deals into the pipeline's, the new leads' and the events'
(0 until F2): sums over source are revenue and won deals (won deals exactly), whatever
``closing`` and ``capacity`` do, and asking for it changes no other number (rule 0.1).
``coverage`` is the open deals' value against quota and their eventual win rate.
"""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, within

import forecaster as fc
from forecaster.engine.interface import THETA_CONVERT
from forecaster.results.outputs import run_to_folder
from forecaster.results.summary import summarize

START = date(2027, 1, 1)
D = 90
HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\nreport_by: month\ntrials: {trials}\nseed: 11\n"

ONE_STAGE = """\
stages: [close]
segments:
  s:
    leads: {per_day: 5}
    funnel:
      close: {convert: 0.5, days: {dist: exponential, mean: 20}, days_lost: {dist: exponential, mean: 5}}
    deal_value: {dist: lognormal, median: 1500, sigma: 0.4}
pipeline: {file: open.csv}
"""
TEAM = """\
team:
  reps:
    - {name: ana, segments: [s], quota: 120000}
    - {name: ben, segments: [s], quota: 80000}
commission:
  period: quarter
  tiers: [{rate: 0.05}]
"""


def _pipeline(path: Path) -> None:
    """F12's check: a hundred deals of each age 0, 10 and 40, half with amount 1,000."""
    rows = [(START - timedelta(age), 1000 if k % 2 else "") for age in (0, 10, 40) for k in range(100)]
    path.write_text("deal_id,segment,stage,entered_stage,amount,owner\n"
                    + "".join(f"{i},s,close,{d.isoformat()},{a},\n" for i, (d, a) in enumerate(rows)))


def _load(tmp_path, body, trials=4000, name="s.yaml"):
    _pipeline(tmp_path / "open.csv")
    path = tmp_path / name
    path.write_text(HEAD.format(trials=trials) + body)
    return fc.load_scenario(path)


def q(age: float) -> float:
    """Eventual win probability of a deal of this age: convert 0.5, exponential laws of means 20 and 5."""
    return math.exp(-age / 20) / (math.exp(-age / 20) + math.exp(-age / 5))


def test_coverage_matches_the_contracts_check(tmp_path):
    sc = _load(tmp_path, ONE_STAGE + TEAM + "outputs: {coverage: true}\n", trials=200)
    summary = run_to_folder(sc, tmp_path / "out")
    cov = summary["coverage"]
    assert math.isclose(cov["pipeline_value"], 393739.59, abs_tol=0.005)
    assert math.isclose(cov["pipeline_value"], 150 * 1000 + 150 * 1500 * math.exp(0.08), rel_tol=1e-12)
    assert cov["quota"] == 200000
    assert math.isclose(cov["ratio"], 1.968698, abs_tol=5e-7)
    assert [round(q(a), 6) for a in (0, 10, 40)] == [0.5, 0.817574, 0.997527]
    assert math.isclose(cov["win_rate"]["mean"], 0.771701, abs_tol=5e-7)
    assert math.isclose(cov["break_even"]["mean"], 1.295839, abs_tol=5e-7)
    assert cov["break_even"]["undefined"] == 0
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())["coverage"]
    assert on_disk == cov


def test_coverage_follows_each_trials_conversions_after_shocks(tmp_path):
    body = ONE_STAGE.replace("convert: 0.5", "convert: {dist: beta, mean: 0.5, concentration: 20}")
    sc = _load(tmp_path, body + "shocks: {convert: {close: 0.3}}\noutputs: {coverage: true}\n", trials=500)
    ds = fc.simulate(sc)
    cov = summarize(ds, sc)["coverage"]
    assert cov["quota"] is None and cov["ratio"] is None  # no team
    p = ds["inputs"].values[:, 0, THETA_CONVERT]
    mean_value = 1500 * math.exp(0.08)
    rate = np.zeros_like(p)
    for age in (0, 10, 40):
        odds = math.exp(-age / 5) / math.exp(-age / 20)
        rate += 50 * p / (p + (1 - p) * odds) * (1000 + mean_value)
    rate /= 150 * 1000 + 150 * mean_value
    assert math.isclose(cov["win_rate"]["mean"], rate.mean(), rel_tol=1e-12)
    assert math.isclose(cov["win_rate"]["p50"], np.percentile(rate, 50), rel_tol=1e-12)
    assert math.isclose(cov["break_even"]["mean"], (1 / rate).mean(), rel_tol=1e-12)
    assert cov["win_rate"]["std"] > 0


def test_break_even_is_undefined_where_nothing_can_be_won(tmp_path):
    sc = _load(tmp_path, ONE_STAGE.replace("convert: 0.5", "convert: 0") + "outputs: {coverage: true}\n", trials=50)
    cov = summarize(fc.simulate(sc), sc)["coverage"]
    assert cov["win_rate"]["mean"] == 0
    assert cov["break_even"]["undefined"] == 50 and cov["break_even"]["mean"] is None


def test_later_stages_multiply_the_chance_to_leave_the_deals_stage(tmp_path):
    body = """\
stages: [a, b, c]
segments:
  s:
    leads: {per_day: 1}
    funnel:
      a: {convert: 0.5, days: 10}
      b: {convert: 0.4, days: {dist: exponential, mean: 20}, days_lost: {dist: exponential, mean: 5}}
      c: {convert: 0.3, days: 10}
    deal_value: 100
pipeline: {file: b.csv}
outputs: {coverage: true}
"""
    (tmp_path / "b.csv").write_text("deal_id,segment,stage,entered_stage,amount,owner\n"
                                    "1,s,b,2026-12-22,,\n2,s,c,2027-01-01,300,\n")
    sc = _load(tmp_path, body, trials=20)
    cov = summarize(fc.simulate(sc), sc)["coverage"]
    q_b = 0.4 * math.exp(-0.5) / (0.4 * math.exp(-0.5) + 0.6 * math.exp(-2))  # age 10 in b
    assert math.isclose(cov["pipeline_value"], 400)
    assert math.isclose(cov["win_rate"]["mean"], (100 * q_b * 0.3 + 300 * 0.3) / 400, rel_tol=1e-12)


def test_sources_add_up_and_follow_their_closed_forms(tmp_path):
    sc = _load(tmp_path, ONE_STAGE + TEAM + "outputs: {by_source: true}\n")
    ds = fc.simulate(sc)
    n = ds.sizes["trial"]
    assert list(ds["source"].values) == ["pipeline", "new_leads", "events"]
    won = ds["won_deals_by_source"].transpose("trial", "period", "source").values
    revenue = ds["revenue_by_source"].transpose("trial", "period", "source").values
    assert won.dtype == np.int32 and np.array_equal(won.sum(axis=2), ds["won_deals"].values)
    assert np.allclose(revenue.sum(axis=2), ds["revenue"].values, rtol=1e-12, atol=0)
    assert not won[:, :, 2].any() and not revenue[:, :, 2].any()  # no events (F2)
    inside = 1 - math.exp(-D / 20)  # the remaining time is exponential again
    probs = [q(a) * inside for a in (0, 10, 40)]
    within(won[:, :, 0].sum(axis=1).mean(), 100 * sum(probs), math.sqrt(sum(100 * p * (1 - p) for p in probs) / n))
    lam = sum(5 * 0.5 * (1 - math.exp(-(D - d) / 20)) for d in range(D))
    new = won[:, :, 1].sum(axis=1)
    within(new.mean(), lam, math.sqrt(lam / n))
    assert 0.9 < new.var(ddof=1) / lam < 1.1  # Poisson


def _extensions(tmp_path, extra: str, customers: bool = False) -> fc.Scenario:
    """The golden extensions scenario (shocks, drift, closing, capacity, stalled deals)."""
    text = (ROOT / "tests" / "golden" / "extensions.yaml").read_text()
    text = text.replace("../../scenarios/", str(ROOT / "scenarios") + "/")
    if customers:  # with customers, capacity admits deals one by one
        line = "    deal_value: {dist: lognormal, median: 6000, sigma: 0.7}\n"
        text = text.replace(line, line + "    customer: {recognition: {over_months: 12}}\n", 1)
    path = tmp_path / f"ext-{len(extra)}-{customers}.yaml"
    path.write_text(text + extra)
    return fc.load_scenario(path)


def test_sources_with_a_capacity_that_shares_room_by_value_are_refused(tmp_path):
    """Without customers a capacity admits a month's wins by segment, by value: a source's
    revenue would not be its own deals' (a review found pipeline revenue in months where the
    pipeline won nothing), so the pair is refused."""
    with pytest.raises(fc.ScenarioError, match="outputs.by_source cannot be combined with capacity yet"):
        _extensions(tmp_path, "outputs: {by_source: true}\n")


@pytest.mark.parametrize("customers", [True], ids=["capacity-deal-by-deal"])
def test_asking_for_sources_and_coverage_changes_no_other_number(tmp_path, customers):
    plain = fc.simulate(_extensions(tmp_path, "", customers), trials=600)
    asked = fc.simulate(_extensions(tmp_path, "outputs: {by_source: true, coverage: true}\n", customers), trials=600)
    for name in plain.data_vars:
        assert np.array_equal(plain[name].values, asked[name].values, equal_nan=True), name
    won = asked["won_deals_by_source"].transpose("trial", "period", "source").values
    revenue = asked["revenue_by_source"].transpose("trial", "period", "source").values
    assert np.array_equal(won.sum(axis=2), asked["won_deals"].values)
    assert np.allclose(revenue.sum(axis=2), asked["revenue"].values, rtol=1e-12, atol=1e-6)
    assert (won >= 0).all() and (revenue > -1e-6).all()
    assert won[:, :, 0].sum() > 0 and won[:, :, 1].sum() > 0


def test_a_capacity_that_never_binds_leaves_each_source_its_deals(tmp_path):
    text = (ROOT / "tests" / "golden" / "extensions.yaml").read_text()
    text = text.replace("../../scenarios/", str(ROOT / "scenarios") + "/")
    path = tmp_path / "roomy.yaml"
    line = "    deal_value: {dist: lognormal, median: 6000, sigma: 0.7}\n"  # customers: deals admitted one by one
    text = text.replace(line, line + "    customer: {recognition: {over_months: 12}}\n", 1)
    path.write_text(text.replace("won_per_month: 90", "won_per_month: 10000000") + "outputs: {by_source: true}\n")
    roomy = fc.load_scenario(path)
    free = dataclasses.replace(roomy, capacity=None)
    a, b = fc.simulate(free, trials=300), fc.simulate(roomy, trials=300)
    assert np.array_equal(a["won_deals_by_source"].values, b["won_deals_by_source"].values)
    assert np.allclose(a["revenue_by_source"].values, b["revenue_by_source"].values, rtol=1e-12)
