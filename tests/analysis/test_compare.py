"""Variants, comparisons on common random numbers, sensitivity and variance attribution."""
from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from conftest import SCENARIOS, D, scenario_text
from scipy import stats

import forecaster as fc
from forecaster.analysis.compare import compare, compare_summary
from forecaster.analysis.sensitivity import first_order_index, sensitivity
from forecaster.cli import main
from forecaster.scenario.variants import apply_changes, load_variant

SAAS = SCENARIOS / "saas-quarter.yaml"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --- variants ------------------------------------------------------------------------------

def test_set_and_scale_by_key_path_with_wildcards():
    base = {"segments": {"a": {"leads": {"per_week": 100}, "funnel": {"x": {"convert": 0.5, "days": {"dist": "gamma", "mean": 10, "cv": 0.5}},
                                                                       "y": {"convert": {"dist": "beta", "mean": 0.2, "concentration": 50}, "days": 3}}},
                         "b": {"leads": {"per_week": 10}, "funnel": {"x": {"convert": 0.1, "days": {"dist": "empirical", "values": [1, 2]}}}}},
            "team": {"reps": [{"name": "r", "quota": 10}]}}
    out, problems = apply_changes(base, {"scale": {"segments.*.funnel.*.days": 2, "segments.a.funnel.y.convert": 1.5,
                                                   "team.reps[0].quota": 3},
                                         "set": {"segments.b.leads.per_week": 20}}, "v.yaml")
    assert not problems
    assert out["segments"]["a"]["funnel"]["x"]["days"] == {"dist": "gamma", "mean": 20, "cv": 0.5}
    assert out["segments"]["a"]["funnel"]["y"]["days"] == 6
    assert out["segments"]["b"]["funnel"]["x"]["days"]["values"] == [2, 4]
    assert out["segments"]["a"]["funnel"]["y"]["convert"] == {"dist": "beta", "mean": pytest.approx(0.3), "concentration": 50}
    assert out["team"]["reps"][0]["quota"] == 30 and out["segments"]["b"]["leads"]["per_week"] == 20
    assert base["segments"]["a"]["funnel"]["y"]["days"] == 3  # the base is left alone


def test_variant_errors_name_the_file_the_path_and_what_is_there(tmp_path):
    bad = write(tmp_path, "v.yaml", """\
    scale:
      segments.smb.funnel.oportunity.convert: 1.1
      segments.smb.leads: 2
      segments.mid.deal_value: -1
    colour: red
    """)
    with pytest.raises(fc.ScenarioError) as info:
        load_variant(bad, SAAS)
    text = str(info.value)
    assert "v.yaml" in text and "4 problems" in text
    assert "scale.segments.smb.funnel.oportunity.convert names" in text and "(did you mean 'opportunity'?)" in text
    assert "scale.segments.smb.leads points at a mapping, which is not a number or a distribution" in text
    assert "scale.segments.mid.deal_value must be a factor >= 0" in text
    assert "colour is not a known key of a variant file" in text


@pytest.mark.parametrize("key, meant", [("sacle", "scale"), ("sett", "set")])
def test_a_variant_with_its_only_change_key_misspelt_is_told_so(tmp_path, key, meant):
    """A variant file whose ``scale:`` is misspelt has neither ``set`` nor ``scale``: read as a
    whole scenario, it was told four scenario keys were missing and offered 'stalled' for
    'sacle'. A document with no scenario key whose keys are all near a variant's is a variant."""
    bad = write(tmp_path, "v.yaml", f"""\
    name: bigger
    {key}:
      segments.smb.leads.per_day: 1.2
    """)
    with pytest.raises(fc.ScenarioError) as info:
        load_variant(bad, SAAS)
    text = str(info.value)
    assert f"{key} is not a known key of a variant file (did you mean {meant!r}?)" in text
    assert "missing" not in text
    from forecaster.scenario.variants import is_variant

    assert not is_variant({"name": "x", "stage": ["a"]})  # a scenario's misspelt stages, nearer than scale
    too_far = write(tmp_path, "w.yaml", "scale:\n  segments.mid.funnel.lead.convert: 3\n")
    with pytest.raises(fc.ScenarioError, match=r"segments.mid.funnel.lead.convert must be a probability in \[0, 1\]; got 1.05"):
        load_variant(too_far, SAAS)


def test_a_whole_scenario_is_a_variant_too():
    sc = load_variant(SCENARIOS / "minimal.yaml", SAAS)
    assert sc.name == "minimal"


# --- compare -------------------------------------------------------------------------------

def test_a_scenario_compared_with_itself_differs_by_exactly_zero():
    sc = fc.load_scenario(SAAS)
    twin = fc.scenario_from_dict({**_doc(SAAS), "name": "twin"}, base_dir=SCENARIOS)
    ds = compare(sc, [twin], trials=2000)
    for var in ("revenue_difference", "won_deals_difference", "commission_difference"):
        assert np.all(ds[var].values == 0), var
    d = compare_summary(ds)["differences"]["twin"]["revenue"]
    assert d["total"]["mean"] == 0 and d["total"]["mean_ci_low"] == 0 and d["total"]["probability_higher"] == 0
    assert all(p["mean"] == 0 for p in d["by_period"])


def _doc(path):
    from forecaster.scenario.loading import read_document
    return read_document(path)[0]


def test_paired_interval_is_narrower_than_independent_runs():
    base = fc.load_scenario(SAAS)
    variant = load_variant(SCENARIOS / "variants" / "saas-budget-up-60.yaml", SAAS)
    summary = compare_summary(compare(base, [variant], trials=4000))
    d = summary["differences"]["saas-mid-budget-up-60"]["revenue"]["total"]
    paired = (d["mean_ci_high"] - d["mean_ci_low"]) / 2
    assert paired < 0.6 * d["unpaired_ci_half_width"], (paired, d["unpaired_ci_half_width"])
    # the segments the variant leaves alone draw exactly the same numbers, trial by trial
    ds = fc.simulate(base, trials=4000)
    dv = fc.simulate(variant, trials=4000)
    for seg in ("smb", "enterprise"):
        assert np.array_equal(ds["revenue_by_segment"].sel(segment=seg).values,
                              dv["revenue_by_segment"].sel(segment=seg).values), seg
    assert not np.array_equal(ds["revenue_by_segment"].sel(segment="mid").values,
                              dv["revenue_by_segment"].sel(segment="mid").values)


def test_compare_refuses_different_horizons(tmp_path):
    other = fc.scenario_from_dict({**_doc(SAAS), "name": "later", "end": "2027-04-30"}, base_dir=SCENARIOS)
    with pytest.raises(fc.ScenarioError, match="need the same horizon and periods"):
        compare(fc.load_scenario(SAAS), [other], trials=100)


def test_compare_command_writes_json_and_netcdf_with_a_scenario_dimension(tmp_path):
    res = CliRunner().invoke(main, ["compare", str(SAAS), str(SCENARIOS / "variants" / "saas-proposal-better.yaml"),
                                    "--out", str(tmp_path / "c"), "--trials", "1000"])
    assert res.exit_code == 0, res.output
    assert "difference (95% CI)" in res.output and "saas-opportunity-plus-20" in res.output
    summary = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert set(summary["differences"]["saas-opportunity-plus-20"]) == {"revenue", "won_deals", "commission"}
    with xr.open_dataset(tmp_path / "c" / "compare.nc") as ds:
        assert list(ds["scenario"].values) == ["saas-fy27-q1", "saas-opportunity-plus-20"]
        assert ds["revenue_difference"].dims == ("scenario", "trial", "period")
    res = CliRunner().invoke(main, ["compare", str(SAAS), str(tmp_path / "none.yaml"), "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "does not exist" in res.output and not (tmp_path / "d").exists()


# --- sensitivity ----------------------------------------------------------------------------

FIXED_FUNNEL = """\
stages: [a, b, c]
segments:
  s:
    leads: {per_day: 50}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.4, days: 0}
      c: {convert: 0.3, days: 0}
    deal_value: 1
"""


def test_raising_any_stage_by_x_percent_raises_won_deals_by_x_percent(tmp_path):
    path = write(tmp_path, "f.yaml", scenario_text(FIXED_FUNNEL, trials=4000))
    summary, ds = sensitivity(path, step=0.1)
    expected = 50 * D * 0.5 * 0.4 * 0.3 * 0.1  # 10% of the expected won deals, exactly
    effects = {e["lever"]: e for e in summary["levers"]}
    for stage in "abc":
        e = effects[f"s: {stage} convert"]["plus"]["won_deals"]
        half = (e["mean_ci_high"] - e["mean_ci_low"]) / 2
        assert abs(e["mean"] - expected) <= 2.6 * half, (stage, e["mean"], expected)
        down = effects[f"s: {stage} convert"]["minus"]["won_deals"]["mean"]
        assert abs(down + expected) <= 2.6 * half
    stretch = effects["all: every stage convert (stretching)"]["plus"]["won_deals"]
    exact = 50 * D * 0.06 * (1.1 ** 3 - 1)
    assert abs(stretch["mean"] - exact) <= 2.6 * (stretch["mean_ci_high"] - stretch["mean_ci_low"]) / 2
    assert summary["three_moves"]["stretching"]["won_deals"]["mean"] == stretch["mean"]
    # days are 0: no time lever can move anything
    for stage in "abc":
        assert effects[f"s: {stage} days"]["plus"]["won_deals"]["mean"] == 0
    assert ds["revenue_difference"].dims == ("lever", "direction", "trial")
    assert summary["ranking_commission"] is None  # no plan here


def test_sensitivity_ranks_commission_too():
    summary, _ = sensitivity(SAAS, trials=300)
    assert summary["ranking_commission"] and set(summary["ranking_commission"]) == set(summary["ranking"])


def test_sensitivity_command_prints_the_tornado_and_the_three_moves(tmp_path):
    path = write(tmp_path, "f.yaml", scenario_text(FIXED_FUNNEL, trials=500))
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "s"), "--step", "20%"])
    assert res.exit_code == 0, res.output
    for fragment in ("Effect on total revenue, largest first", "-20% (95% CI)", "expansion", "stretching",
                     "key level"):
        assert fragment in res.output
    summary = json.loads((tmp_path / "s" / "sensitivity.json").read_text())
    assert summary["step"] == 0.2 and summary["ranking"]
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "t"), "--step", "150%"])
    assert res.exit_code == 2 and "between 0% and 100%" in res.output


def test_sensitivity_moves_segments_and_stages_whose_names_look_like_paths(tmp_path):
    # names holding ".", "[0]" or "*" must name themselves, not be read as key-path syntax
    body = """\
    stages: ["st.a"]
    segments:
      "eu.north": {leads: {per_day: 10}, funnel: {"st.a": {convert: 0.5, days: 0}}, deal_value: 1}
      "[0]": {leads: {per_day: 10}, funnel: {"st.a": {convert: 0.5, days: 0}}, deal_value: 1}
      "*": {leads: {per_day: 10}, funnel: {"st.a": {convert: 0.5, days: 0}}, deal_value: 1}
    """
    path = write(tmp_path, "odd.yaml", scenario_text(body, trials=300))
    summary, _ = sensitivity(path, trials=300, step=0.2)
    assert not summary["skipped"], summary["skipped"]
    effects = {e["lever"]: e for e in summary["levers"]}
    base = summary["base"]["won_deals"]["mean"] / 3  # each segment's share
    for name in ("eu.north", "[0]", "*"):  # one segment's leads +20%: its wins +20%, only its own
        moved = effects[f"{name}: leads"]["plus"]["won_deals"]["mean"]
        assert abs(moved - 0.2 * base) < 0.35 * 0.2 * base, (name, moved, base)


def test_first_order_indices_match_the_closed_form(tmp_path):
    """Won deals W ~ Poisson(R p D) with R ~ gamma and p ~ beta drawn per trial."""
    body = """\
    stages: [x]
    segments:
      s:
        leads: {per_day: {dist: gamma, mean: 20, cv: 0.3}}
        funnel:
          x: {convert: {dist: beta, mean: 0.4, concentration: 20}, days: 0}
        deal_value: 1
    """
    path = write(tmp_path, "sobol.yaml", scenario_text(body, trials=40000))
    sc = fc.load_scenario(path)
    ds = fc.simulate(sc)
    from forecaster.analysis.sensitivity import variance_shares

    shares = {s["input"]: s["share"] for s in variance_shares(ds, sc)}
    R, p = stats.gamma(a=1 / 0.09, scale=20 * 0.09), stats.beta(0.4 * 20, 0.6 * 20)
    var_rp = (R.var() + R.mean() ** 2) * (p.var() + p.mean() ** 2) - (R.mean() * p.mean()) ** 2
    var_w = D * R.mean() * p.mean() + D ** 2 * var_rp
    assert shares["s.leads"] == pytest.approx(D ** 2 * p.mean() ** 2 * R.var() / var_w, abs=0.02)
    assert shares["s.convert.x"] == pytest.approx(D ** 2 * R.mean() ** 2 * p.var() / var_w, abs=0.02)


def test_first_order_index_of_noise_and_of_the_output_itself():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20000)
    assert first_order_index(x, rng.normal(size=20000), 50) < 0.01
    assert first_order_index(x, x, 50) > 0.99
    assert first_order_index(np.ones(100), x[:100], 10) == 0.0


def test_a_share_below_its_noise_is_what_an_input_with_no_effect_shows():
    """``share_noise``: an input independent of the metric reaches it about 3 times in 100 (a
    sales-ops user saw a renewal rate take 0.2% of new-deal revenue's variance, which it
    cannot move, ranked above a real input); an input with a small real effect clears it."""
    from forecaster.analysis.sensitivity import _first_order

    rng = np.random.default_rng(3)
    n, bins, reps = 2000, 22, 400
    above = 0
    for _ in range(reps):
        y, x = rng.normal(size=n), rng.normal(size=n)
        share, noise = _first_order(x, y, bins)
        above += share >= noise
        assert 0.005 < noise < 0.008  # 2 sqrt(42) / 2000 = 0.0065
    # 2.9% expected (chi-square with 21 degrees of freedom past 22 + 2 sqrt(42)): 11 of 400, a
    # binomial's 99.9% range
    assert 2 <= above <= 24, above
    x = rng.normal(size=n)
    share, noise = _first_order(x, 0.15 * x + rng.normal(size=n), bins)  # a true share of 2.2%
    assert share > noise


def test_common_random_numbers_pair_every_trial(tmp_path):
    """+10% at one stage of a fixed funnel: the per-trial difference in won deals has the
    spread of the extra deals alone (Poisson, mean 27), not of two independent runs."""
    base = fc.load_scenario(write(tmp_path, "f.yaml", scenario_text(FIXED_FUNNEL, trials=4000)))
    variant = load_variant(write(tmp_path, "v.yaml", "scale:\n  segments.s.funnel.b.convert: 1.1\n"), tmp_path / "f.yaml")
    ds = compare(base, [variant])
    d = ds["won_deals_difference"].sel(scenario="v").sum("period").values
    w = ds["won_deals"].sel(scenario="t").sum("period").values
    assert d.std(ddof=1) < 0.35 * math.sqrt(2 * w.var(ddof=1))  # independent runs: sqrt(2 var)
    assert np.mean(d >= 0) > 0.95


def test_compare_reports_the_commission_extras_where_every_run_has_them(tmp_path):
    """v2 D: spif, clawback, net commission, payout and commission expense (sums over reps)
    are compared with the paired treatment of the other metrics. Halving the clawback share
    halves every trial's clawbacks and moves nothing else of the deals: the paired
    difference is exactly -1/2 of the base's clawback, +1/2 of it in net commission, 0 in
    revenue, commission and spifs. A file without section D compares as before."""
    variant = write(tmp_path, "half.yaml", """\
        name: half-clawback
        set:
          commission.clawback: {within_days: 90, share: 0.5}
        """)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(main, ["compare", str(SCENARIOS / "saas-commission-plan.yaml"), str(variant),
                                    "--out", str(out), "--trials", "300", "--export", "csv"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "compare.json").read_text())
    extras = ("spif", "clawback", "net_commission", "payout", "commission_expense")
    base = summary["scenarios"]["saas-commission-plan-h1"]
    assert set(extras) <= set(base) and all(summary["units"][m] == "USD" for m in extras)
    diff = summary["differences"]["half-clawback"]
    clawback = base["clawback"]["total"]["mean"]
    assert clawback > 1000
    assert diff["clawback"]["total"]["mean"] == pytest.approx(-clawback / 2, rel=1e-9)
    assert diff["net_commission"]["total"]["mean"] == pytest.approx(clawback / 2, rel=1e-9)
    for m in ("revenue", "commission", "spif"):
        assert diff[m]["total"]["mean"] == 0.0 and diff[m]["total"]["probability_higher"] == 0.0, m
    assert diff["clawback"]["total"]["mean_ci_high"] < 0 and len(diff["clawback"]["by_period"]) == 6
    ds = xr.open_dataset(out / "compare.nc")
    claw = ds["clawback"].values.sum(axis=2)
    assert np.allclose(claw[1], claw[0] / 2, rtol=1e-12)
    ds.close()
    assert "Clawbacks [USD]" in res.output and "Net commission" in res.output
    assert "clawback_mean" in (out / "compare-tables" / "differences_after_sale.csv").read_text()
    plain = compare_summary(compare(fc.load_scenario(SAAS), [load_variant(SCENARIOS / "variants" /
                                                                          "saas-faster-cycle.yaml", SAAS)], trials=50))
    assert not set(extras) & set(plain["units"])
