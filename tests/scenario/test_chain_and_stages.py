"""v2 B (moves) and F4 (per-segment stage lists) in the scenario layer: the absorbing chain's
closed forms (B.6), the validation rules (B.5, F4) and how a segment's own stages are kept."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import load_text as load, scenario_problems as problems

import forecaster as fc
from forecaster.scenario import chain
from forecaster.scenario.schema import PASS_THROUGH

HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\n"


# --- the chain's closed forms (B.6) ----------------------------------------------------------

def test_two_stages_with_a_move_back():
    Q, R = chain.matrices(np.array([0.5, 0.4]), [(1, 0, 0.5)])
    h, _ = chain.solve(Q, R)
    assert h[0] == pytest.approx(0.2 / 0.85, rel=1e-12)  # 0.235294


def test_three_stage_chain_win_probabilities_visits_and_second_moments():
    Q, R = chain.matrices(np.array([0.5, 0.4, 0.5]), [(1, 0, 0.25), (2, 1, 0.6)])
    h, N = chain.solve(Q, R)
    assert np.allclose(h, [0.124224, 0.248447, 0.574534], atol=1e-6)
    assert np.allclose(N[0], [1.093168, 0.621118, 0.248447], atol=1e-6)
    second = (N @ (2 * np.diag(np.diag(N)) - np.eye(3)))[0]
    assert np.allclose(second, [1.296864, 0.922032, 0.322518], atol=1e-6)
    # from stage 2 a won path goes on to 3 with 0.925 and back to 1 with 0.075 (the h-transform)
    assert Q[1, 2] * h[2] / h[1] == pytest.approx(0.925, abs=1e-6)
    assert Q[1, 0] * h[0] / h[1] == pytest.approx(0.075, abs=1e-6)


def test_skips_and_moves_to_won():
    base = [(1, 0, 0.25), (2, 1, 0.6)]
    h, _ = chain.solve(*chain.matrices(np.array([0.5, 0.4, 0.5]), base + [(0, 2, 0.2)]))
    assert np.allclose(h, [0.187383, 0.259213, 0.577764], atol=1e-6)
    h, _ = chain.solve(*chain.matrices(np.array([0.5, 0.4, 0.5]), base + [(0, -1, 0.1)]))
    assert h[0] == pytest.approx(0.178882, abs=1e-6)


def test_without_moves_the_win_probability_is_the_product():
    p = np.array([0.3, 0.7, 0.45])
    h, N = chain.solve(*chain.matrices(p, []))
    assert np.allclose(h, [p.prod(), p[1:].prod(), p[2]], rtol=1e-14)
    assert np.allclose(np.diag(N), 1.0)


def test_absorption():
    assert chain.absorbed(chain.matrices(np.array([0.5, 0.4]), [(1, 0, 0.5)])[0])
    # stage b never loses: every non-converting visit goes back to a, and a always converts
    Q, _ = chain.matrices(np.array([1.0, 0.0]), [(1, 0, 1.0)])
    assert not chain.absorbed(Q)
    assert chain.loop_stages(Q, ["a", "b"]) == ["a", "b"]


# --- validation (B.5, F4) --------------------------------------------------------------------

def funnel_text(b_moves="", a_moves="", segment_extra=""):
    return HEAD + (
        "stages: [a, b, c]\n"
        "segments:\n"
        "  s:\n"
        f"{segment_extra}"
        "    leads: {per_day: 10}\n"
        "    funnel:\n"
        f"      a: {{convert: 0.5, days: 1{a_moves}}}\n"
        f"      b: {{convert: 0.4, days: 1{b_moves}}}\n"
        "      c: {convert: 0.5, days: 1}\n"
        "    deal_value: 1\n")


@pytest.mark.parametrize("moves,fragment", [
    (", moves: [{to: b, share: 0.2}]", "segments.s.funnel.b.moves[0].to a move to the same stage is time"),
    (", moves: [{to: c, share: 0.2}]", "segments.s.funnel.b.moves[0].to c is the next stage: that is convert"),
    (", moves: [{to: nowhere, share: 0.2}]", "names 'nowhere', which is not a stage"),
    (", moves: [{to: a, share: 0.1}, {to: a, share: 0.1}]", "segments.s.funnel.b.moves[1].to names a a second"),
    (", moves: [{to: a, share: 0.8}, {to: won, share: {dist: uniform, low: 0.1, high: 0.5}}]",
     "the shares of segments.s.funnel.b.moves can sum to 1.3 (upper ends 0.8 + 0.5)"),
    (", moves: [{to: a, share: 1.5}]", "segments.s.funnel.b.moves[0].share"),
    (", moves: [{to: a, share: 0.5, days: -1}]", "segments.s.funnel.b.moves[0].days"),
    (", moves: [{to: a, share: 0.5, colour: red}]", "colour"),
])
def test_bad_moves(tmp_path, moves, fragment):
    assert fragment in problems(tmp_path, funnel_text(b_moves=moves))


def test_won_is_not_a_move_of_the_last_stage(tmp_path):
    text = funnel_text().replace("c: {convert: 0.5, days: 1}", "c: {convert: 0.5, days: 1, moves: [{to: won, share: 0.1}]}")
    assert "segments.s.funnel.c.moves[0].to won from c, the segment's last stage, is its convert" in problems(
        tmp_path, text)


def test_a_loop_no_lead_leaves(tmp_path):
    text = funnel_text(b_moves=", moves: [{to: a, share: 1.0}]").replace(
        "a: {convert: 0.5, days: 1}", "a: {convert: 1, days: 1}").replace(
        "b: {convert: 0.4", "b: {convert: 0")
    assert "segments.s.funnel stages a and b form a loop that no lead leaves" in problems(tmp_path, text)


@pytest.mark.parametrize("extra,fragment", [
    ("    stages: [b, a]\n", "segments.s.stages must keep the order of stages: b comes after a"),
    ("    stages: []\n", "segments.s.stages"),
    ("    stages: [a, x]\n", "segments.s.stages[1] names 'x', which is not one of the stages"),
    ("    stages: [a, c]\n", "segments.s.funnel.b s does not pass b"),
])
def test_bad_segment_stages(tmp_path, extra, fragment):
    assert fragment in problems(tmp_path, funnel_text(segment_extra=extra))


def test_a_segment_keeps_its_stages_and_passes_the_others_at_once(tmp_path):
    text = funnel_text(segment_extra="    stages: [a, c]\n").replace("      b: {convert: 0.4, days: 1}\n", "")
    sc = load(tmp_path, text)
    seg = sc.segments["s"]
    assert seg.stages == ("a", "c") and list(seg.funnel) == ["a", "b", "c"]
    assert seg.funnel["b"] == PASS_THROUGH and seg.passes("a") and not seg.passes("b")


def test_a_move_may_name_only_the_segments_own_stages(tmp_path):
    text = funnel_text(segment_extra="    stages: [a, c]\n").replace("      b: {convert: 0.4, days: 1}\n", "")
    text = text.replace(
        "c: {convert: 0.5, days: 1}", "c: {convert: 0.5, days: 1, moves: [{to: b, share: 0.1}]}")
    assert "segments.s.funnel.c.moves[0].to segment s does not pass b" in problems(tmp_path, text)


def test_a_pipeline_deal_in_a_stage_its_segment_does_not_pass(tmp_path):
    text = funnel_text(segment_extra="    stages: [a, c]\n").replace("      b: {convert: 0.4, days: 1}\n", "")
    text += "pipeline: {file: open.csv}\n"
    csv = "deal_id,segment,stage,entered_stage\n1,s,b,2026-12-01\n"
    assert "open.csv line 2" in problems(tmp_path, text, {"open.csv": csv})
    assert "segment 's' does not pass stage 'b' (its stages: a, c)" in problems(tmp_path, text, {"open.csv": csv})


def test_a_value_on_the_segments_last_own_stage(tmp_path):
    text = funnel_text(segment_extra="    stages: [a, b]\n").replace("      c: {convert: 0.5, days: 1}\n", "").replace(
        "b: {convert: 0.4, days: 1}", "b: {convert: 0.4, days: 1, value: 10}")
    assert "segments.s.funnel.b.value the last stage's value is deal_value" in problems(tmp_path, text)


def test_coverage_needs_a_pipeline(tmp_path):
    assert "outputs.coverage needs a pipeline" in problems(tmp_path, funnel_text() + "outputs: {coverage: true}\n")


def test_outputs_are_flags(tmp_path):
    assert "outputs.losses must be true or false; got 'yes'" in problems(
        tmp_path, funnel_text() + "outputs: {losses: 'yes'}\n")


def test_the_segments_own_stages_give_the_same_numbers_as_writing_them_passed_at_once(tmp_path):
    """F4's check: equal in distribution to the missing stages written at convert 1, days 0
    (here the very same draws: that is how the engine sees it)."""
    own = funnel_text(segment_extra="    stages: [a, c]\n").replace("      b: {convert: 0.4, days: 1}\n", "")
    full = funnel_text().replace("b: {convert: 0.4, days: 1}", "b: {convert: 1, days: 0}")
    (tmp_path / "own").mkdir()
    (tmp_path / "full").mkdir()
    a = fc.simulate(load(tmp_path / "own", own), trials=2000, seed=3)
    b = fc.simulate(load(tmp_path / "full", full), trials=2000, seed=3)
    assert np.array_equal(a["revenue"].values, b["revenue"].values)
    # a lead arriving on day d is won on day d + 2 with probability 0.25: 10 a day over ~88 days
    assert float(a["won_deals"].sum("period").mean()) == pytest.approx(10 * 0.25 * 88, rel=0.02)
