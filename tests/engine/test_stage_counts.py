"""Entries into and losses at each stage (scenario-format-v2.md, F1), against closed forms.

The won leads are v1's (their entries are their arrival plus their stage times, in stage
order, whatever order the kernel draws them in); the lost ones are Poisson classes of their
own, Poisson(m_d P_{<k} (1 - p_k)) for stage k, sharing the day's gamma multiplier and the
drift's walks; open deals enter the later stages they reach and are lost at the first one
they do not convert out of. Asking for the counts changes no other number (rule 0.1).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ROOT, within

import forecaster as fc
from forecaster.results.outputs import run_to_folder

HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\nreport_by: month\ntrials: {trials}\nseed: 5\n"
D = 90
MONTH_DAYS = (31, 28, 31)


def _simulate(tmp_path, body, trials=4000, files=None):
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.format(trials=trials) + body)
    return fc.simulate(fc.load_scenario(path))


def _counts(ds, segment="s"):
    """stage_entries and losses of a segment, (trial, period, stage) arrays."""
    return tuple(ds[v].sel(segment=segment).transpose("trial", "period", "stage").values
                 for v in ("stage_entries", "losses"))


THREE = """\
stages: [a, b, c]
segments:
  s:
    leads: {per_day: 30%s}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.4, days: 0}
      c: {convert: 0.3, days: 0}
    deal_value: 1
outputs: {stage_entries: true, losses: true}
"""


def test_with_days_0_losses_are_independent_poisson_and_entries_add_up(tmp_path):
    ds = _simulate(tmp_path, THREE % "")
    n = ds.sizes["trial"]
    e, lost = _counts(ds)
    assert e.dtype == np.int32 and lost.dtype == np.int32
    assert list(ds["stage"].values) == ["a", "b", "c"]
    won = ds["won_deals"].values
    # trial by trial and period by period: everything happens on the arrival day
    assert np.array_equal(e[:, :, 1], e[:, :, 0] - lost[:, :, 0])
    assert np.array_equal(e[:, :, 2], e[:, :, 1] - lost[:, :, 1])
    assert np.array_equal(won, e[:, :, 2] - lost[:, :, 2])
    m = 30 * D
    for k, (entries, losses) in enumerate(((m, m * 0.5), (m * 0.5, m * 0.5 * 0.6), (m * 0.2, m * 0.2 * 0.7))):
        x, y = e[:, :, k].sum(axis=1), lost[:, :, k].sum(axis=1)
        within(x.mean(), entries, math.sqrt(entries / n))
        within(y.mean(), losses, math.sqrt(losses / n))
        assert 0.93 < x.var(ddof=1) / entries < 1.07  # Poisson
        assert 0.93 < y.var(ddof=1) / losses < 1.07
    totals = lost.sum(axis=1)
    for i, j in ((0, 1), (0, 2), (1, 2)):  # independent classes
        assert abs(np.corrcoef(totals[:, i], totals[:, j])[0, 1]) < 5 / math.sqrt(n)
    assert abs(np.corrcoef(totals[:, 0], won.sum(axis=1))[0, 1]) < 5 / math.sqrt(n)
    summary = fc.summarize(ds, fc.load_scenario(tmp_path / "s.yaml"))
    assert math.isclose(summary["metrics"]["losses.b"]["total"]["mean"], lost[:, :, 1].sum(axis=1).mean())
    assert math.isclose(summary["metrics"]["stage_entries.a"]["by_period"][1]["mean"], e[:, 1, 0].mean())


def test_dispersion_shares_the_days_multiplier_between_won_and_lost_leads(tmp_path):
    ds = _simulate(tmp_path, THREE % ", dispersion: 0.05")
    e, _ = _counts(ds)
    arrivals = e[:, :, 0].sum(axis=1)  # every lead enters a on arrival: negative binomial by day
    m, delta = 30, 0.05
    assert 0.92 < arrivals.var(ddof=1) / (D * (m + delta * m * m)) < 1.08
    within(arrivals.mean(), m * D, math.sqrt(D * (m + delta * m * m) / ds.sizes["trial"]))


def test_conversion_drift_moves_won_and_lost_leads_together(tmp_path):
    """Every arrival enters the first stage, whatever month's conversions it meets: with the
    drift's walks shared, arrivals stay Poisson(m D) although won and lost leads move."""
    body = THREE % "" + "shocks: {drift: {convert: {a: 0.5, b: 0.5, c: 0.5}}}\n"
    ds = _simulate(tmp_path, body)
    e, lost = _counts(ds)
    arrivals = e[:, :, 0].sum(axis=1)
    within(arrivals.mean(), 30 * D, math.sqrt(30 * D / ds.sizes["trial"]))
    assert 0.93 < arrivals.var(ddof=1) / (30 * D) < 1.07
    assert np.array_equal(ds["won_deals"].values, e[:, :, 2] - lost[:, :, 2])
    assert lost[:, 2, 0].std() > 3 * lost[:, 0, 0].std()  # March's conversions wander; January's do not


def test_won_leads_enter_each_stage_after_the_stages_before_in_stage_order(tmp_path):
    """Fixed days 5, 30 and 10 (the kernel draws b first): a lead arriving on day d enters b
    on d + 5 and c on d + 35, counted only inside the horizon."""
    body = """\
stages: [a, b, c]
segments:
  s:
    leads: {per_day: 20}
    funnel:
      a: {convert: 1, days: 5}
      b: {convert: 1, days: 30}
      c: {convert: 1, days: 10}
    deal_value: 1
outputs: {stage_entries: true}
"""
    ds = _simulate(tmp_path, body)
    n = ds.sizes["trial"]
    assert "losses" not in ds
    e = ds["stage_entries"].sel(segment="s").transpose("trial", "period", "stage").values
    starts = (0, 31, 59)
    for k, lag in enumerate((0, 5, 35)):
        for p, (lo, days) in enumerate(zip(starts, MONTH_DAYS)):
            arrivals = len([d for d in range(D) if lo <= d + lag < lo + days])
            within(e[:, p, k].mean(), 20 * arrivals, math.sqrt(20 * arrivals / n))
    assert np.array_equal(ds["won_deals"].values[:, 0], e[:, 0, 2] * 0)  # nothing won before day 45


def test_losses_are_dated_when_given_up(tmp_path):
    body = """\
stages: [only]
segments:
  s:
    leads: {per_day: 30}
    funnel:
      only: {convert: 0.4, days: {dist: exponential, mean: 20}, days_lost: 10}
    deal_value: 1
outputs: {losses: true}
"""
    ds = _simulate(tmp_path, body)
    lost = ds["losses"].sel(segment="s", stage="only").transpose("trial", "period").values
    for k, days in enumerate((21, 28, 31)):  # arrivals on days 0-20 are lost in January, ...
        within(lost[:, k].mean(), 30 * 0.6 * days, math.sqrt(30 * 0.6 * days / ds.sizes["trial"]))


PIPELINE = """\
stages: [a, b]
segments:
  s:
    leads: {per_day: 0}
    funnel:
      a: {convert: 0.5, days: {dist: exponential, mean: 10}, days_lost: {dist: exponential, mean: 5}}
      b: {convert: 0.4, days: 1000, days_lost: 5}
    deal_value: 1
pipeline: {file: open.csv}
outputs: {stage_entries: true, losses: true}
"""


@pytest.mark.parametrize("age", [0, 10])
def test_open_deals_enter_the_stages_they_reach_and_are_lost_where_they_stop(tmp_path, age):
    rows = "".join(f"{i},s,a,{np.datetime64('2027-01-01') - age},," + "\n" for i in range(1000))
    ds = _simulate(tmp_path, PIPELINE, files={"open.csv": "deal_id,segment,stage,entered_stage,amount,owner\n" + rows})
    n = ds.sizes["trial"]
    e, lost = _counts(ds)
    assert not e[:, :, 0].any()  # their current stage is not an entry
    q = 0.5 * math.exp(-age / 10) / (0.5 * math.exp(-age / 10) + 0.5 * math.exp(-age / 5))
    ends = np.array((31, 59, 90), dtype=float)
    # converting out of a: after an exponential(10) remaining time; lost: after an exponential(5) one
    for p in range(3):
        lo = ends[p - 1] if p else 0.0
        enter = 1000 * q * (math.exp(-lo / 10) - math.exp(-ends[p] / 10))
        within(e[:, p, 1].mean(), enter, math.sqrt(enter / n) + 1e-9)
        lose = 1000 * (1 - q) * (math.exp(-lo / 5) - math.exp(-ends[p] / 5))
        within(lost[:, p, 0].mean(), lose, math.sqrt(lose / n) + 1e-9)
    # lost at b 5 days after entering it (0.6 of those entering): by day X + 5 < 90
    lose_b = 1000 * q * 0.6 * (1 - math.exp(-85 / 10))
    within(lost[:, :, 1].sum(axis=1).mean(), lose_b, math.sqrt(lose_b * (1 - lose_b / 1000) / n))


def test_a_segment_counts_nothing_at_the_stages_it_does_not_pass(tmp_path):
    body = """\
stages: [a, b, c]
segments:
  short:
    stages: [a, c]
    leads: {per_day: 10}
    funnel:
      a: {convert: 0.5, days: 10}
      c: {convert: 0.4, days: 20}
    deal_value: 1
outputs: {stage_entries: true, losses: true}
"""
    ds = _simulate(tmp_path, body)
    e, lost = _counts(ds, "short")
    assert not e[:, :, 1].any() and not lost[:, :, 1].any()
    within(e[:, :, 2].sum(axis=1).mean(), 10 * 0.5 * 80, math.sqrt(400 / ds.sizes["trial"]))
    within(lost[:, :, 2].sum(axis=1).mean(), 10 * 0.5 * 0.6 * 60, math.sqrt(180 / ds.sizes["trial"]))


def _extensions(tmp_path, extra: str) -> fc.Scenario:
    """The golden extensions scenario (shocks, drift, closing, capacity, stalled deals, pipeline)."""
    text = (ROOT / "tests" / "golden" / "extensions.yaml").read_text()
    path = tmp_path / f"ext{len(extra)}.yaml"
    path.write_text(text.replace("../../scenarios/", str(ROOT / "scenarios") + "/") + extra)
    return fc.load_scenario(path)


def test_asking_for_the_counts_changes_no_other_number(tmp_path):
    plain = fc.simulate(_extensions(tmp_path, ""), trials=400)
    asked = fc.simulate(_extensions(tmp_path, "outputs: {stage_entries: true, losses: true}\n"),
                        trials=400)
    for name in plain.data_vars:
        assert np.array_equal(plain[name].values, asked[name].values, equal_nan=True), name
    e = asked["stage_entries"].sum(("period", "segment")).values
    lost = asked["losses"].sum(("period", "segment")).values
    assert (e[:, 0] > e[:, 1]).all() and (lost > 0).all()


def test_targets_may_name_the_counts_of_a_stage(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.format(trials=10) + THREE % "" + "targets: {losses.b: 100, revenue: 1}\n")
    assert set(fc.load_scenario(path).targets) == {"losses.b", "revenue"}
    path.write_text(HEAD.format(trials=10) + (THREE % "").replace("losses: true", "losses: false")
                    + "targets: {losses.b: 100, stage_entries.z: 1}\n")
    with pytest.raises(fc.ScenarioError) as err:
        fc.load_scenario(path)
    assert "targets.losses.b names losses.b, which this scenario does not report" in str(err.value)
    assert "targets.stage_entries.z names stage_entries.z" in str(err.value)


CYCLE = """\
stages: [only]
segments:
  s:
    leads: {per_day: 30}
    funnel:
      only: {convert: 0.4, days: {dist: exponential, mean: 20}, days_lost: 10}
    deal_value: 1
outputs: {cycle_days: true}
"""


def test_cycle_days_are_censored_by_the_horizon(tmp_path):
    """F1's check: density proportional to f(t) ceil(90 - t) on (0, 90), f exponential of mean
    20: mean 14.6831, median 10.6506, sd 13.5685, 848.550 deals a trial."""
    trials = 2000
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.format(trials=trials) + CYCLE)
    sc = fc.load_scenario(path)
    summary = run_to_folder(sc, tmp_path / "out")
    cyc = summary["cycle_days"]
    won = summary["metrics"]["won_deals"]["total"]["mean"]
    assert cyc["count"] == round(won * trials)
    within(cyc["count"] / trials, 848.550, math.sqrt(848.550 / trials))
    n = cyc["count"]
    within(cyc["mean"], 14.6831, 13.5685 / math.sqrt(n))
    within(cyc["std"], 13.5685, 13.5685 * math.sqrt(2 / n))
    density = math.exp(-10.6506 / 20) / 20 * 80 / (848.550 / (30 * 0.4))  # f(m) ceil(90 - m) / Z at the median
    within(cyc["p50"], 10.6506, math.sqrt(0.25 / n) / density)
    assert cyc["p5"] <= cyc["p10"] <= cyc["p50"] <= cyc["p90"] <= cyc["p95"] < 90
    assert cyc["by_segment"]["s"] == {k: v for k, v in cyc.items() if k != "by_segment"}
    ds = fc.simulate(sc)  # the in-memory Dataset holds the pooled times: the same summary
    assert fc.summarize(ds, sc)["cycle_days"] == cyc
    assert ds["cycle_days"].size == n and "cycle_days" not in summary["metrics"]


def test_cycle_days_count_slips_and_leave_every_other_number(tmp_path):
    body = CYCLE.replace("only: {convert", "only: {convert").replace(
        "outputs: {cycle_days: true}\n", "closing: {slip: {3: 0.5}, window_days: 20}\n")
    plain = _simulate(tmp_path, body, trials=300)
    asked = _simulate(tmp_path, body + "outputs: {cycle_days: true, stage_entries: true}\n", trials=300)
    for name in plain.data_vars:
        assert np.array_equal(plain[name].values, asked[name].values), name
    assert asked["cycle_days"].size == int(asked["won_deals"].sum())
    assert (asked["cycle_days"].values >= 0).all() and (asked["cycle_days"].values < D).all()


def test_cycle_days_with_a_capacity_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.format(trials=10) + CYCLE + "capacity: {won_per_month: 100}\n")
    with pytest.raises(fc.ScenarioError) as err:
        fc.load_scenario(path)
    assert "outputs.cycle_days cannot be combined with capacity yet" in str(err.value)


# moves go back to b, never to a: every entry into a is a lead arriving
MOVES = """\
stages: [a, b, c]
segments:
  s:
    leads: {per_day: 30%s}
    funnel:
      a: {convert: 0.5, days: 4}
      b: {convert: 0.4, days: 6}
      c: {convert: 0.3, days: 8, moves: [{to: b, share: 0.3}]}
    deal_value: 1
outputs: {stage_entries: true, losses: true}
"""


@pytest.mark.parametrize("case", ["plain", "dispersion", "drift", "moves", "moves-dispersion", "own-stages"])
def test_the_leads_counted_are_the_leads_entering_the_first_stage_in_every_trial(tmp_path, case):
    """``leads`` (v2 E.3) and ``stage_entries`` (F1) count the same new leads: the lost ones
    were drawn twice, from two streams, so each was right on average but they disagreed in
    97% of a trial's months (a sales-ops user's trial). Now the leads not won are drawn
    once and split over the stages they are lost at: equal in every trial and period, the
    losses still Poisson with the means of F1 (a lost lead's stage chosen with probability
    P_{<k} (1 - p_k) / (1 - P)), and the leads what they were."""
    body = {"plain": THREE % "", "dispersion": THREE % ", dispersion: 0.05",
            "drift": THREE % "" + "shocks: {drift: {convert: {a: 0.5, b: 0.5}, leads: 0.2}}\n",
            "moves": MOVES % "", "moves-dispersion": MOVES % ", dispersion: 0.05",
            "own-stages": (THREE % "").replace("  s:\n", "  s:\n    stages: [b, c]\n", 1)}[case]
    body = body.replace("outputs: {stage_entries: true, losses: true}", "outputs: {stage_entries: true, losses: true, "
                        "leads: true}")
    if case == "own-stages":
        body = body.replace("      a: {convert: 0.5, days: 0}\n", "")
    ds = _simulate(tmp_path, body, trials=2000)
    e, lost = _counts(ds)
    first = 1 if case == "own-stages" else 0
    leads = ds["leads_by_segment"].sel(segment="s").transpose("trial", "period").values
    assert np.array_equal(leads, e[:, :, first]), case
    n = ds.sizes["trial"]
    if case in ("plain", "dispersion", "own-stages"):  # days 0: the losses at each stage, by their means
        p = (1.0, 0.4, 0.3) if case == "own-stages" else (0.5, 0.4, 0.3)
        reach, m = 1.0, 30 * D
        for k in range(first, 3):
            mean = m * reach * (1 - p[k])
            var = mean + (0.05 * 30 * 30 * D * (reach * (1 - p[k])) ** 2 if case == "dispersion" else 0.0)
            within(lost[:, :, k].sum(axis=1).mean(), mean, 4 * math.sqrt(var / n))
            reach *= p[k]
    # asking for the leads changes no count, and asking for the counts no lead (rule 0.1)
    alone = _simulate(tmp_path, body.replace(", leads: true}", "}"), trials=2000)
    assert np.array_equal(alone["stage_entries"].values, ds["stage_entries"].values)
    only = _simulate(tmp_path, body.replace("stage_entries: true, losses: true, ", ""), trials=2000)
    assert np.array_equal(only["leads"].values, ds["leads"].values)


@pytest.mark.parametrize("outputs", ["stage_entries: true, losses: true", "leads: true"])
def test_a_drawn_loop_no_lead_leaves_stops_with_its_message_when_counts_are_asked(tmp_path, outputs):
    """A trial whose drawn conversion and share make a loop no lead leaves stops the run with
    the clear message, counts asked or not: the leads not won are drawn only after the won
    leads' kernel has checked the chain (drawn before, a singular matrix raised LinAlgError)."""
    body = """\
stages: [a, b]
segments:
  s:
    leads: {per_day: 1}
    funnel:
      a: {convert: 1, days: 0}
      b: {convert: {dist: empirical, values: [0, 0.2]}, days: 0,
          moves: [{to: a, share: {dist: empirical, values: [0.5, 1.0]}}]}
    deal_value: 1
""" + "outputs: {" + outputs + "}\n"
    with pytest.raises(fc.ScenarioError) as info:
        _simulate(tmp_path, body, trials=200)
    assert "a loop that no lead leaves" in str(info.value)
