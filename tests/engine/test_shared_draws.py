"""v2 E.1 in the engine: a ``same_as`` takes, in every trial, the very value drawn for its
target, before shocks; it changes nothing else that is drawn; a sensitivity lever on a shared
quantity steps its own segment only."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import within

import forecaster as fc
from forecaster.analysis import sensitivity as sens
from forecaster.engine.plan import build_plan

SEGMENT = """\
  {name}:
    leads: {{per_month: 200}}
    funnel:
      deal: {{convert: {convert}, days: 0}}
    deal_value: 1
"""
BETA = "{dist: beta, mean: 0.2, concentration: 20}"


def three(referrals: str) -> str:
    return ("stages: [deal]\nsegments:\n" + SEGMENT.format(name="ads", convert=BETA)
            + SEGMENT.format(name="referrals", convert=referrals) + SEGMENT.format(name="alone", convert=BETA))


def inputs(ds, segment: str, quantity: str) -> np.ndarray:
    return ds["inputs"].sel(segment=segment, quantity=quantity).values


def won(ds, segment: str) -> np.ndarray:
    return ds["won_deals_by_segment"].sel(segment=segment).values.sum(axis=1).astype(float)


def test_the_sections_check_two_segments_share_the_trials_conversion(make):
    """E.1's check: 600 expected arrivals each, p ~ Beta(mean 0.2, concentration 20): the won
    counts have correlation 600² Var p / (600 p̄ + 600² Var p) = 0.958084 with same_as, 0
    without; each segment's won count keeps its law (mean 120, variance 600 p̄ + 600² Var p)."""
    ds = fc.simulate(make(three("{same_as: segments.ads.funnel.deal.convert}"), trials=20000))
    n = ds.sizes["trial"]
    var_p = 0.2 * 0.8 / 21
    var = 600 * 0.2 + 600 ** 2 * var_p
    rho = 600 ** 2 * var_p / var
    assert rho == pytest.approx(0.958084, abs=1e-6)
    counts = {s: won(ds, s) for s in ("ads", "referrals", "alone")}
    for x in counts.values():
        within(x.mean(), 120, math.sqrt(var / n))
        # the sd of a sample variance is var sqrt((kurtosis - 1) / n); a kurtosis below 7 here
        within(x.var(ddof=1), var, var * math.sqrt(6 / n))
    assert abs(np.corrcoef(counts["ads"], counts["referrals"])[0, 1] - rho) < 5 * (1 - rho ** 2) / math.sqrt(n)
    assert abs(np.corrcoef(counts["ads"], counts["alone"])[0, 1]) < 5 / math.sqrt(n)
    assert abs(np.corrcoef(counts["referrals"], counts["alone"])[0, 1]) < 5 / math.sqrt(n)
    # the holder's draws are the target's, trial by trial; the law of its won count is the one of
    # a segment with that law of its own (a two-sample Kolmogorov-Smirnov distance, 5 sigma)
    assert np.array_equal(inputs(ds, "referrals", "convert.deal"), inputs(ds, "ads", "convert.deal"))
    from scipy import stats

    assert stats.ks_2samp(counts["referrals"], counts["alone"]).statistic < 5 * math.sqrt(2 / n) / 2


def test_without_same_as_the_segments_are_independent(make):
    ds = fc.simulate(make(three(BETA), trials=20000))
    n = ds.sizes["trial"]
    assert abs(np.corrcoef(won(ds, "ads"), won(ds, "referrals"))[0, 1]) < 5 / math.sqrt(n)


def test_a_same_as_changes_no_other_draw(make):
    """Linking referrals' conversion to ads' leaves every other segment's results, and every
    other draw of referrals, bit-identical: the link draws nothing of its own."""
    alone = fc.simulate(make(three(BETA), trials=500))
    linked = fc.simulate(make(three("{same_as: segments.ads.funnel.deal.convert}"), trials=500))
    for s in ("ads", "alone"):
        for var in ("revenue_by_segment", "won_deals_by_segment", "inputs"):
            assert np.array_equal(alone[var].sel(segment=s).values, linked[var].sel(segment=s).values), (s, var)
    assert np.array_equal(inputs(alone, "referrals", "leads"), inputs(linked, "referrals", "leads"))
    assert not np.array_equal(inputs(alone, "referrals", "convert.deal"), inputs(linked, "referrals", "convert.deal"))


def test_the_draw_is_taken_before_the_shocks(make):
    """A holder at stage a of the draw of stage b: with a shock on stage b only, a keeps b's
    draw before the shock (the draw of the same run without shocks), b is shocked."""
    body = """\
    stages: [a, b]
    segments:
      x:
        leads: {per_day: 5}
        funnel:
          a: {convert: {same_as: segments.x.funnel.b.convert}, days: 1}
          b: {convert: {dist: beta, mean: 0.4, concentration: 10}, days: 1}
        deal_value: 1
    """
    calm = fc.simulate(make(body, trials=300))
    shocked = fc.simulate(make(body + "shocks: {convert: {b: 0.5}}\n", trials=300))
    drawn = inputs(calm, "x", "convert.b")
    assert np.array_equal(inputs(calm, "x", "convert.a"), drawn)
    assert np.array_equal(inputs(shocked, "x", "convert.a"), drawn)
    assert not np.allclose(inputs(shocked, "x", "convert.b"), drawn)


CHANNELS = """\
stages: [a, b]
segments:
  ads:
    leads: {per_month: {dist: gamma, mean: 300, cv: 0.3}, growth_per_month: {dist: uniform, low: 0, high: 0.1}}
    funnel:
      a: {convert: {dist: beta, mean: 0.3, concentration: 20}, days: 2}
      b: {convert: 0.5, days: 3, moves: [{to: a, share: {dist: uniform, low: 0.1, high: 0.3}}]}
    deal_value: 100
    customer:
      repeat: {per_month: {dist: gamma, mean: 0.5, cv: 0.4}, dropout: {dist: beta, mean: 0.3, concentration: 10}}
      cancel: {probability: {dist: uniform, low: 0.01, high: 0.1}, days: 5}
  web:
    leads: {per_month: {same_as: segments.ads.leads.per_month},
            growth_per_month: {same_as: segments.ads.leads.growth_per_month}}
    funnel:
      a: {convert: {same_as: "segments.ads.funnel.b.moves[0].share"}, days: 2}
      b: {convert: 0.5, days: 3, moves: [{to: a, share: {same_as: segments.web.funnel.a.convert}}]}
    deal_value: 100
    customer:
      repeat: {per_month: {same_as: segments.ads.customer.repeat.per_month},
               dropout: {same_as: segments.ads.customer.cancel.probability}}
      cancel: {probability: {same_as: segments.ads.funnel.a.convert}, days: 5}
  bought:
    leads: {budget_per_month: 1000, cost_per_lead: {dist: lognormal, median: 4, sigma: 0.3}}
    funnel:
      a: {convert: 0.3, days: 2}
      b: {convert: 0.5, days: 3}
    deal_value: 100
  bought_too:
    leads: {budget_per_month: 2000, cost_per_lead: {same_as: segments.bought.leads.cost_per_lead}}
    funnel:
      a: {convert: 0.3, days: 2}
      b: {convert: 0.5, days: 3}
    deal_value: 100
"""


def test_every_kind_of_per_trial_quantity_takes_its_targets_draws(make):
    sc = make(CHANNELS, trials=200)
    ds = fc.simulate(sc)
    same = [("web", "leads", "ads", "leads"), ("web", "growth_per_month", "ads", "growth_per_month"),
            ("web", "convert.a", "ads", "move.b.a"),  # a chain: web's share is web's a, which is ads' share
            ("web", "move.b.a", "ads", "move.b.a"), ("web", "repeat.per_month", "ads", "repeat.per_month"),
            ("web", "dropout", "ads", "cancel.probability"), ("web", "cancel.probability", "ads", "convert.a"),
            ("bought_too", "leads", "bought", "leads")]
    for holder, slot, target, target_slot in same:
        x, y = inputs(ds, holder, slot), inputs(ds, target, target_slot)
        assert np.array_equal(x, y) and np.unique(x).size > 100, (holder, slot)
    plan = build_plan(sc)
    assert plan.same_as.shape == (len(sc.same_as), 4)
    # a cost per lead shared: both segments' arrivals follow one draw (bought_too buys twice as much)
    assert sc.segments["bought_too"].leads.cost_per_lead == sc.segments["bought"].leads.cost_per_lead


def test_a_lever_on_a_shared_quantity_moves_its_own_segment_only(make):
    """Sensitivity steps a shared quantity per trial after the copy: stepping ads' conversion
    leaves referrals' deals (which take ads' draw) bit-identical, and moves ads' as the same
    step of its own draw; a lever on the holder moves the holder only."""
    import yaml

    sc = make(three("{same_as: segments.ads.funnel.deal.convert}"), trials=400)
    doc = yaml.safe_load(sc.source.read_text())
    plan = build_plan(sc)
    shared = sens.shared_laws(sc)
    levers = {lv.name: lv for lv in sens.levers(doc, sc)}
    _, base, _ = sens._run_sources(sc, 400, 1, None, None)
    for name, moved, kept in (("ads: deal convert", 0, 1), ("referrals: deal convert", 1, 0)):
        change = sens.lever_change(doc, levers[name], +1, 0.1, "relative", sc.segment_names, plan.quantity_names,
                                   shared)
        assert not change.changes.get("scale") and change.adjust is not None
        assert change.adjust.rule == "capped" and change.adjust.slots == ((moved, plan.quantity_names.index(
            "convert.deal")),)
        _, run, _ = sens._run_sources(sc, 400, 1, None, None, change.adjust)
        for a, b in zip(base[kept], run[kept]):
            assert np.array_equal(a, b)
        assert run[moved][1].sum() > base[moved][1].sum()
    # across all segments: the doc's law for alone, per trial for the two that share a draw
    change = sens.lever_change(doc, levers["all: deal convert"], +1, 0.1, "relative", sc.segment_names,
                               plan.quantity_names, shared)
    assert len(change.changes["scale"]) == 1 and len(change.adjust.slots) == 2
    odds = sens.lever_change(doc, levers["referrals: deal convert"], -1, 0.1, "odds", sc.segment_names,
                             plan.quantity_names, shared)
    assert odds.adjust.rule == "odds" and odds.adjust.slots == ((1, 2),)
    points = sens.lever_change(doc, levers["referrals: deal convert"], -1, 0.1, "points", sc.segment_names,
                               plan.quantity_names, shared)
    assert points.adjust.rule == "shift" and points.adjust.factor == pytest.approx(-0.1)
    leads = sens.lever_change(doc, levers["ads: leads"], +1, 0.1, "relative", sc.segment_names,
                              plan.quantity_names, shared)
    assert leads.adjust is None and leads.changes == {"scale": {levers["ads: leads"].paths[0]: 1.1}}


def test_a_points_step_that_leaves_zero_one_on_a_shared_draw_is_skipped(make):
    import yaml

    from forecaster.errors import ScenarioError

    sc = make(three("{same_as: segments.ads.funnel.deal.convert}").replace(BETA, "{dist: uniform, low: 0.1, high: 0.95}",
                                                                          1), trials=10)
    doc = yaml.safe_load(sc.source.read_text())
    lever = next(lv for lv in sens.levers(doc, sc) if lv.name == "referrals: deal convert")
    with pytest.raises(ScenarioError, match="not run"):
        sens.lever_change(doc, lever, +1, 0.1, "points", sc.segment_names, build_plan(sc).quantity_names,
                          sens.shared_laws(sc))


def test_variance_shares_list_a_shared_draw_once(make):
    sc = make(three("{same_as: segments.ads.funnel.deal.convert}"), trials=2000)
    ds = fc.simulate(sc)
    names = [r["input"] for r in sens.variance_shares(ds, sc)]
    assert "ads.convert.deal" in names and "referrals.convert.deal" not in names
