"""Sensitivity's options of v2 F9: ``--convert-step relative|odds|points``, ties, the
bottleneck, and relative steps capped at 1 rather than dropped.

Oracles: the odds map's closed form; with ``days: 0`` and no pipeline every lead is won in
the horizon, so a lever's effect on won deals is base x (the step's factor on the product of
the conversions - 1), checked within 5 standard errors of the paired difference; the default
options reproduce ``tests/golden/sensitivity-*.json`` (written by the code before F9) bit for bit.
Rewrite those files with ``FORECASTER_WRITE_GOLDEN=1 pytest tests/analysis/test_convert_steps.py``
(the run then fails, so a rewrite is never silent).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import scenario_text

import forecaster as fc
from forecaster.analysis import sensitivity as sens
from forecaster.analysis.steps import DrawnStep, capped_step, odds_step
from forecaster.cli import main
from forecaster.engine.plan import build_plan
from forecaster.scenario.variants import shift_quantity

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CASES = {"sensitivity-saas-quarter": (ROOT / "scenarios" / "saas-quarter.yaml", 300, 5),
         "sensitivity-minimal": (ROOT / "scenarios" / "minimal.yaml", 300, 5),
         "sensitivity-extensions": (GOLDEN / "extensions.yaml", 300, 6)}
Z = 1.959963984540054


# --- the maps -----------------------------------------------------------------------------------

def test_the_odds_step_has_its_closed_form_and_never_leaves_0_1():
    assert round(odds_step(0.95, 1.1), 6) == 0.954338
    assert math.isclose(odds_step(0.5, 1.1), 0.55 / 1.05, rel_tol=1e-15)
    assert math.isclose(odds_step(0.2, 0.9), 0.18 / 0.98, rel_tol=1e-15)
    p = np.array([0.0, 1e-9, 0.3, 0.999999, 1.0])
    up = odds_step(p, 1.1)
    assert up[0] == 0.0 and up[-1] == 1.0 and np.all((up[1:-1] > p[1:-1]) & (up[1:-1] < 1))
    # its odds are multiplied by f: stepping back by 1/f returns p
    assert np.allclose(odds_step(up, 1 / 1.1), p, rtol=1e-12, atol=0)


def test_the_capped_step_is_min_1_pf():
    assert capped_step(0.95, 1.1) == 1.0
    assert math.isclose(capped_step(0.5, 1.1), 0.55)
    assert np.array_equal(capped_step(np.array([0.9, 0.95]), 1.1), np.minimum(1.0, np.array([0.9, 0.95]) * 1.1))


def test_shift_moves_a_laws_location_by_the_step():
    assert shift_quantity(0.25, 0.1) == pytest.approx(0.35)
    assert shift_quantity({"dist": "beta", "mean": 0.3, "concentration": 50}, 0.1) == \
        {"dist": "beta", "mean": pytest.approx(0.4), "concentration": 50}
    assert shift_quantity({"dist": "pert", "low": 0.1, "mode": 0.2, "high": 0.4}, -0.05) == \
        {"dist": "pert", "low": pytest.approx(0.05), "mode": pytest.approx(0.15), "high": pytest.approx(0.35)}
    assert shift_quantity({"dist": "empirical", "values": [0.1, 0.2]}, 0.1) == \
        {"dist": "empirical", "values": [pytest.approx(0.2), pytest.approx(0.3)]}
    with pytest.raises(ValueError):
        shift_quantity({"dist": "lognormal", "median": 0.2, "sigma": 0.1}, 0.1)


def test_ties_are_within_1e_9_relative():
    assert sens.tied(1.0, 1.0 + 1e-10) and sens.tied(-5e6, -5e6 * (1 + 9e-10)) and sens.tied(0.0, 0.0)
    assert not sens.tied(1.0, 1.0 + 1e-8) and not sens.tied(0.0, 1e-300)


# --- the default options are v1's, bit for bit --------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_default_options_give_the_sensitivity_json_of_before(case):
    path, trials, seed = CASES[case]
    summary, ds = sens.sensitivity(path, trials=trials, seed=seed, threads=2)
    got = {"arrays": {k: hashlib.sha256(np.ascontiguousarray(ds[k].values).tobytes()).hexdigest()
                      for k in sorted(ds.data_vars)},
           "summary": json.loads(json.dumps(summary, allow_nan=False))}
    golden = GOLDEN / f"{case}.json"
    if os.environ.get("FORECASTER_WRITE_GOLDEN") == "1":
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.fail(f"rewrote {golden.name}: rerun without FORECASTER_WRITE_GOLDEN")
    want = json.loads(golden.read_text())
    tied = got["summary"]["three_moves"]["key_level"].pop("tied", None)
    if case == "sensitivity-minimal":  # no pipeline: every stage's relative step ties (new in F9, a key only)
        assert tied == ["all: lead convert", "all: qualified convert", "all: proposal convert"]
    else:
        assert tied is None
    for key in ("convert_step", "capped", "stage_value"):
        assert key not in got["summary"]
    for share in got["summary"]["variance_shares"]:  # added in December 2026: each share's noise
        assert 0 < share.pop("share_noise") < 0.05
    assert got["arrays"] == want["arrays"]
    assert got["summary"] == want["summary"]


# --- scenarios where every lead is won in the horizon -------------------------------------------

def _funnel(tmp_path, converts, name="f", extra="", per_day=40, trials=2000):
    stages = [f"s{i}" for i in range(len(converts))]
    rows = "".join(f"      {s}: {{convert: {c}, days: 0}}\n" for s, c in zip(stages, converts))
    body = (f"stages: [{', '.join(stages)}]\nsegments:\n  direct:\n    leads: {{per_day: {per_day}}}\n"
            f"    funnel:\n{rows}    deal_value: 1000\n{extra}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(scenario_text(body, name=name, trials=trials, seed=3))
    return path


def _within(stats: dict, expected: float, k: float = 5.0) -> None:
    se = (stats["mean_ci_high"] - stats["mean_ci_low"]) / (2 * Z)
    assert abs(stats["mean"] - expected) <= k * se + 1e-9, (stats["mean"], expected, se)


def test_without_pipeline_relative_steps_tie_every_stage_and_the_console_says_so(tmp_path):
    path = _funnel(tmp_path, [0.5, 0.4, 0.25])
    summary, _ = sens.sensitivity(path, trials=500, seed=2)
    key = summary["three_moves"]["key_level"]
    assert key["tied"] == ["all: s0 convert", "all: s1 convert", "all: s2 convert"]
    assert key["lever"] == "all: s0 convert"
    effects = {e["lever"]: e["plus"]["won_deals"]["mean"] for e in summary["levers"]}
    assert effects["direct: s0 convert"] == effects["direct: s1 convert"] == effects["direct: s2 convert"]
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "o"), "--trials", "300"])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "The key level is a tie: all: s0 convert, all: s1 convert, all: s2 convert" in flat
    assert "--convert-step points or --convert-step odds" in flat
    stored = json.loads((tmp_path / "o" / "sensitivity.json").read_text())
    assert stored["three_moves"]["key_level"]["tied"] == key["tied"]


def test_with_points_the_key_level_is_the_bottleneck(tmp_path):
    # 1/3, 0.3, 0.25 at +10 points: x1.30, x1.333, x1.40 of the won deals; the key level is the third
    path = _funnel(tmp_path, [1 / 3, 0.3, 0.25])
    summary, _ = sens.sensitivity(path, trials=2000, seed=5, convert_step="points")
    assert summary["convert_step"] == "points"
    key = summary["three_moves"]["key_level"]
    assert key["lever"] == "all: s2 convert" and "tied" not in key
    base = 40 * 90 * (1 / 3) * 0.3 * 0.25  # expected won deals: 90 days of 40 leads
    _within(summary["base"]["won_deals"], base, k=5 * math.sqrt(2000))  # one trial's spread, loosely
    effects = {e["lever"]: e for e in summary["levers"]}
    for stage, gain in (("s0", 1.30), ("s1", 0.4 / 0.3), ("s2", 1.40)):
        _within(effects[f"all: {stage} convert"]["plus"]["won_deals"], base * (gain - 1))
        _within(effects[f"all: {stage} convert"]["plus"]["revenue"], 1000 * base * (gain - 1))
    order = sorted(("s0", "s1", "s2"), key=lambda s: -effects[f"all: {s} convert"]["plus"]["won_deals"]["mean"])
    assert order == ["s2", "s1", "s0"]


def test_points_skip_a_lever_that_leaves_0_1_and_say_so(tmp_path):
    path = _funnel(tmp_path, [0.95, 0.3])
    summary, _ = sens.sensitivity(path, trials=300, seed=5, convert_step="points")
    skipped = {(s["lever"], s["direction"]) for s in summary["skipped"]}
    assert {("direct: s0 convert", "+"), ("all: s0 convert", "+"),
            ("all: every stage convert (stretching)", "+")} <= skipped
    assert ("all: s0 convert", "-") not in skipped
    moves = summary["three_moves"]
    assert "probability" in moves["stretching"]["skipped"] and "revenue" not in moves["stretching"]
    assert moves["key_level"]["lever"] == "all: s1 convert" and moves["key_level"]["skipped"] == ["all: s0 convert"]
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "o"), "--trials", "200",
                                    "--convert-step", "points"])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "(conversions: -10 / +10 points)" in flat
    assert "skipped all: every stage convert (stretching) (+10%)" in flat
    assert "the key level was chosen without all: s0 convert" in flat


def test_relative_steps_cap_at_1_and_show_it(tmp_path):
    path = _funnel(tmp_path, [0.95, 0.3])
    summary, _ = sens.sensitivity(path, trials=2000, seed=5)
    assert not summary["skipped"]
    capped = {(c["lever"], c["direction"], c["quantity"]) for c in summary["capped"]}
    q = "segments.direct.funnel.s0.convert"
    assert capped == {("direct: s0 convert", "+", q), ("all: s0 convert", "+", q),
                      ("all: every stage convert (stretching)", "+", q)}
    moves = summary["three_moves"]
    assert moves["stretching"]["capped"] == [q] and "revenue" in moves["stretching"]
    base = 40 * 90 * 0.95 * 0.3
    effects = {e["lever"]: e for e in summary["levers"]}
    _within(effects["all: s0 convert"]["plus"]["won_deals"], base * (1 / 0.95 - 1))  # 0.95 -> 1, not 1.045
    _within(effects["all: every stage convert (stretching)"]["plus"]["won_deals"], base * (1.1 / 0.95 - 1))
    _within(effects["all: s0 convert"]["minus"]["won_deals"], -base * 0.1)
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "o"), "--trials", "200"])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "all: every stage convert (stretching) (capped at 1)" in flat
    assert f"capped at 1 (+10%) in direct: s0 convert, all: s0 convert, all: every stage convert (stretching): {q}" \
        in flat
    assert "min(1, 1.1 p)" in flat
    assert json.loads((tmp_path / "o" / "sensitivity.json").read_text())["capped"] == summary["capped"]


def _odds(p: float, f: float) -> float:
    """The odds step written out, independently of the code under test."""
    return p * f / (1 - p + p * f)


def test_odds_steps_never_skip_and_have_the_odds_effect(tmp_path):
    path = _funnel(tmp_path, [0.95, 0.3])
    summary, _ = sens.sensitivity(path, trials=2000, seed=5, convert_step="odds")
    assert not summary["skipped"] and "capped" not in summary
    base = 40 * 90 * 0.95 * 0.3
    effects = {e["lever"]: e for e in summary["levers"]}
    for stage, p in (("s0", 0.95), ("s1", 0.3)):
        for direction, f in (("plus", 1.1), ("minus", 0.9)):
            _within(effects[f"all: {stage} convert"][direction]["won_deals"], base * (_odds(p, f) / p - 1))
    _within(effects["all: every stage convert (stretching)"]["plus"]["won_deals"],
            base * (_odds(0.95, 1.1) * _odds(0.3, 1.1) / (0.95 * 0.3) - 1))


SHOCKED_BETA = """\
stages: [a, b]
segments:
  one:
    leads: {per_day: 20}
    funnel:
      a: {convert: {dist: beta, mean: 0.93, concentration: 200}, days: 1}
      b: {convert: {dist: uniform, low: 0.2, high: 0.4}, days: 2}
    deal_value: 100
  two:
    leads: {per_day: 10}
    funnel:
      a: {convert: 0.5, days: 1}
      b: {convert: 0.6, days: 2}
    deal_value: 50
shocks: {convert: {a: 0.4}}
"""


def test_a_per_trial_step_maps_each_trials_draw_and_keeps_every_other(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(scenario_text(SHOCKED_BETA, trials=400))
    sc = fc.load_scenario(path)
    base = sens._run(sc, 400, 9, keep_inputs=True).inputs
    slot = list(build_plan(sc).quantity_names).index("convert.a")
    for rule, step in (("odds", odds_step), ("capped", capped_step)):
        got = sens._run(sc, 400, 9, keep_inputs=True, adjust=DrawnStep(rule, 1.1, ((0, slot),))).inputs
        other = np.ones(got.shape, dtype=bool)
        other[:, 0, slot] = False
        assert np.array_equal(got[other], base[other])  # common random numbers: every other draw as in the base
        if rule == "odds":  # before the shocks, which move the odds too: the order does not matter
            assert np.allclose(got[:, 0, slot], odds_step(base[:, 0, slot], 1.1), rtol=1e-12, atol=0)
        else:  # min(1, 1.1 p) of the drawn p, then shocked: check against the unshocked draws
            plain = replace(sc, shocks=None)
            drawn = sens._run(plain, 400, 9, keep_inputs=True).inputs[:, 0, slot]
            capped = sens._run(plain, 400, 9, keep_inputs=True,
                               adjust=DrawnStep(rule, 1.1, ((0, slot),))).inputs[:, 0, slot]
            assert np.array_equal(capped, step(drawn, 1.1)) and np.any(capped == 1.0)


def test_relative_caps_a_beta_per_trial(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(scenario_text(SHOCKED_BETA, trials=300))
    summary, _ = sens.sensitivity(path, trials=300, seed=1)
    assert {c["quantity"] for c in summary["capped"]} == {"segments.one.funnel.a.convert"}
    assert {c["lever"] for c in summary["capped"]} == {"one: a convert", "all: a convert",
                                                      "all: every stage convert (stretching)"}
    assert not summary["skipped"]


def test_levers_are_on_a_segments_own_stages(tmp_path):
    body = """\
    stages: [lead, qualified, proposal]
    segments:
      direct:
        leads: {per_day: 20}
        funnel:
          lead:      {convert: 0.5, days: 1}
          qualified: {convert: 0.4, days: 2}
          proposal:  {convert: 0.3, days: 3}
        deal_value: 100
      web:
        stages: [lead, proposal]
        leads: {per_day: 30}
        funnel:
          lead:     {convert: 0.2, days: 1}
          proposal: {convert: 0.5, days: 2}
        deal_value: 50
    """
    path = tmp_path / "f4.yaml"
    path.write_text(scenario_text(body, trials=200))
    summary, _ = sens.sensitivity(path, trials=200, seed=1)
    names = [e["lever"] for e in summary["levers"]]
    assert "web: qualified convert" not in names and "web: qualified days" not in names
    assert "web: proposal convert" in names and "direct: qualified convert" in names
    assert not summary["skipped"]
    sc = fc.load_scenario(path)
    by_name = {lv.name: lv for lv in sens.levers(json.loads(json.dumps(_doc(path))), sc)}
    assert [p[1] for p in by_name["all: qualified convert"].paths] == ["direct"]
    assert len(by_name["all: every stage convert (stretching)"].paths) == 5


def _doc(path):
    from forecaster.scenario.loading import read_document
    return read_document(path)[0]


def test_the_stage_value_table_is_printed_and_stored(tmp_path):
    path = _funnel(tmp_path, [0.5, 0.4], extra="outputs: {stage_value: true}\n")
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "o"), "--trials", "200"])
    assert res.exit_code == 0, res.output
    assert "Stage value: what a deal now entering each stage is worth" in res.output
    stored = json.loads((tmp_path / "o" / "sensitivity.json").read_text())["stage_value"]["direct"]
    assert list(stored) == ["s0", "s1"]
    assert stored["s0"]["win_probability"]["mean"] == pytest.approx(0.2, rel=1e-12)
    assert stored["s1"]["value"]["mean"] == pytest.approx(400.0, rel=1e-12)
    assert stored["s0"]["win_probability"]["std"] < 1e-12  # the same in every trial


def test_a_bad_convert_step_is_a_clear_error(tmp_path):
    path = _funnel(tmp_path, [0.5])
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "o"), "--convert-step", "logit"])
    assert res.exit_code == 2
    assert "'logit' is not one of 'relative', 'odds', 'points'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()
    with pytest.raises(fc.ForecasterError, match="expected one of"):
        sens.sensitivity(path, trials=10, convert_step="logit")


def test_a_move_share_lever_steps_its_own_theta_slot():
    # v2 B.4's levers on move shares use the same steps: the slot is move.<stage>.<to>
    doc = {"segments": {"s": {"funnel": {"two": {"convert": 0.4, "moves": [{"to": "one", "share": 0.25}]}}}}}
    path = sens.Literal(("segments", "s", "funnel", "two", "moves", 0, "share"))
    lever = sens.Lever("s: two move to one share", "move_share", "s", (path,))
    quantities = ("leads", "growth_per_month", "convert.one", "convert.two", "move.two.one")
    change = sens.lever_change(doc, lever, +1, 0.1, "odds", ("s",), quantities)
    assert change.changes == {} and change.adjust == DrawnStep("odds", 1.1, ((0, 4),))
    change = sens.lever_change(doc, lever, -1, 0.1, "points", ("s",), quantities)
    assert change.changes == {"shift": {path: -0.1}} and change.adjust is None
    doc["segments"]["s"]["funnel"]["two"]["moves"][0]["share"] = 0.95
    change = sens.lever_change(doc, lever, +1, 0.1, "relative", ("s",), quantities)
    assert change.changes == {"scale": {}} and change.adjust == DrawnStep("capped", 1.1, ((0, 4),))
    assert [q for q, _ in change.capped] == ["segments.s.funnel.two.moves[0].share"]
