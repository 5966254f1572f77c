"""v2 B.4: sensitivity makes a lever of every move's share, on its segment's own stages, and
reruns the open deals of a segment with moves when one of its levers moves."""
from __future__ import annotations

from pathlib import Path

import forecaster as fc
import forecaster.analysis.sensitivity as sens
from forecaster.engine.plan import build_plan
from forecaster.scenario.loading import read_document

JOURNEYS = Path(__file__).resolve().parents[2] / "scenarios" / "buying-journeys.yaml"


def test_a_lever_per_move_share():
    sc = fc.load_scenario(JOURNEYS)
    doc, _, _ = read_document(JOURNEYS)
    levers = {lv.name: lv for lv in sens.levers(doc, sc)}
    moves = [(name, stage, m.to) for name, seg in sc.segments.items() for stage in sc.stages
             for m in seg.funnel[stage].moves]
    assert len(moves) == 6
    for name, stage, to in moves:
        lever = levers[f"{name}: {stage} move to {to} share"]
        assert lever.kind == "move_share" and lever.scope == name
        (path,) = lever.paths
        assert sens._at(doc, path[:6])["to"] == to and path[-1] == "share"
    # the consumer passes only its four stages: no lever names the business-only ones
    assert not any(n.startswith("consumer: validation") or n.startswith("consumer: consensus") for n in levers)


def test_the_open_deals_of_a_segment_with_moves_are_rerun_by_its_levers():
    sc = fc.load_scenario(JOURNEYS)
    plan = build_plan(sc)
    assert plan.has_chain_pipeline and plan.pipeline.segment.shape[0] == 0  # every open deal is in a chain
    g = list(plan.segment_names).index("business")
    pipeline_source = len(plan.segment_names)
    lever = sens.Lever("business: consensus convert", "convert", "business", ())
    assert sens.changed_sources(lever, plan) == [g, pipeline_source]
    assert sens.changed_sources(sens.Lever("business: leads", "leads", "business", ()), plan) == [g]


def test_runs_by_source_give_the_whole_runs_effects_with_moves(tmp_path):
    """Sensitivity's runs by source (only the sources a lever changes) against whole runs, on a
    scenario whose open deals are all in segments with moves: the same effects up to the
    rounding of sums."""
    text = JOURNEYS.read_text().replace("trials: 20000", "trials: 300")
    path = tmp_path / "j.yaml"
    path.write_text(text)
    (tmp_path / "buying-journeys-pipeline.csv").write_text(
        (JOURNEYS.parent / "buying-journeys-pipeline.csv").read_text())
    split, _ = sens.sensitivity(path, trials=300, by_source=True)
    whole, _ = sens.sensitivity(path, trials=300, by_source=False)
    a = {e["lever"]: e for e in split["levers"]}
    b = {e["lever"]: e for e in whole["levers"]}
    assert a.keys() == b.keys()
    for name in a:
        for d in ("minus", "plus"):
            x, y = a[name][d]["revenue"]["mean"], b[name][d]["revenue"]["mean"]
            assert abs(x - y) <= 1e-6 * max(1.0, abs(y)), (name, d, x, y)


def test_a_share_step_that_could_push_its_stages_shares_above_one_is_skipped(tmp_path):
    """Two shares of 0.5 on one stage: +10% on the odds of one makes them sum to 1.0238 in
    every trial, which the format refuses: the lever is skipped and said so, never run."""
    text = """\
name: two-shares
start: 2027-01-01
end: 2027-01-31
trials: 100
stages: [a, b, c]
segments:
  s:
    leads: {per_day: 10}
    funnel:
      a: {convert: 0.5, days: 0}
      b: {convert: 0.4, days: 0}
      c: {convert: 0.5, days: 0, moves: [{to: a, share: 0.5}, {to: b, share: 0.5}]}
    deal_value: 1
"""
    path = tmp_path / "two.yaml"
    path.write_text(text)
    for mode in ("odds", "relative"):
        summary, _ = sens.sensitivity(path, trials=100, convert_step=mode)
        skipped = {(s["lever"], s["direction"]) for s in summary["skipped"]}
        assert ("s: c move to a share", "+") in skipped and ("s: c move to b share", "+") in skipped, mode
        why = [s["why"] for s in summary["skipped"] if s["lever"] == "s: c move to a share"][0]
        assert "could sum to" in why or "sum to" in why, why
