"""v2 E.1 in the scenario layer: ``{same_as: PATH}`` read, checked (every error of the section)
and resolved (a holder carries its target's law; the links are on the Scenario), and in
variant files (a scaled same_as follows its target, or is refused)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import VALID, load_text as load, scenario_problems as problems

import forecaster as fc
from forecaster.scenario.distributions import Distribution
from forecaster.scenario.schema import json_schema
from forecaster.scenario.variants import apply_changes

HOLDER = "segments.direct.funnel.qualified.convert"


def link(target: str, text: str = VALID) -> str:
    """VALID with the qualified stage's convert written as a same_as of ``target``."""
    return text.replace("convert: 0.40", f"convert: {{same_as: {target}}}")


TWO = """\
name: two
start: 2027-01-01
end: 2027-03-31
stages: [a, b]
segments:
  ads:
    leads: {per_month: {dist: gamma, mean: 100, cv: 0.3}, growth_per_month: {dist: uniform, low: 0, high: 0.1}}
    funnel:
      a: {convert: {dist: beta, mean: 0.2, concentration: 20}, days: 1}
      b: {convert: 0.5, days: 2, moves: [{to: a, share: {dist: beta, mean: 0.3, concentration: 10}}]}
    deal_value: 100
    customer:
      subscription: {renew: {dist: beta, mean: 0.9, concentration: 50}, expansion: {dist: uniform, low: 0, high: 0.05}}
      cancel: {probability: {dist: uniform, low: 0.01, high: 0.05}, days: 10}
  web:
    leads: {per_month: LEADS, growth_per_month: GROWTH}
    funnel:
      a: {convert: CONVERT, days: 1}
      b: {convert: 0.5, days: 2, moves: [{to: a, share: SHARE}]}
    deal_value: 100
    customer:
      subscription: {renew: RENEW, expansion: EXPANSION}
      cancel: {probability: CANCEL, days: 10}
"""
"""Two segments; ``web``'s per-trial quantities are placeholders (CONVERT, SHARE, ...)."""


def two(**values) -> str:
    text = TWO
    defaults = {"LEADS": "100", "GROWTH": "0", "CONVERT": "0.2", "SHARE": "0.3", "RENEW": "0.9", "EXPANSION": "0",
                "CANCEL": "0.02"}
    for key, default in defaults.items():
        text = text.replace(key, values.get(key.lower(), default))
    return text


# --- resolved: the holder carries its target's law ---------------------------------------------

def test_every_per_trial_quantity_may_take_a_draw_of_its_kind(tmp_path):
    sc = load(tmp_path, two(leads="{same_as: segments.ads.leads.per_month}",
                            growth="{same_as: segments.ads.leads.growth_per_month}",
                            convert="{same_as: 'segments.ads.funnel.b.moves[0].share'}",  # any probability (quoted: [ in a flow)
                            share="{same_as: segments.ads.customer.cancel.probability}",
                            renew="{same_as: segments.ads.customer.subscription.renew}",
                            expansion="{same_as: segments.ads.customer.subscription.expansion}",
                            cancel="{same_as: segments.ads.funnel.a.convert}"))
    ads, web = sc.segments["ads"], sc.segments["web"]
    assert web.leads.per_month == ads.leads.per_month
    assert web.leads.growth_per_month == ads.leads.growth_per_month
    assert web.funnel["a"].convert == ads.funnel["b"].moves[0].share
    assert web.funnel["b"].moves[0].share == ads.customer.cancel.probability
    assert web.customer.subscription.renew == ads.customer.subscription.renew
    assert web.customer.subscription.expansion == ads.customer.subscription.expansion
    assert web.customer.cancel.probability == ads.funnel["a"].convert
    seg = ("segments", "web")
    assert dict(sc.same_as)[seg + ("leads", "per_month")] == ("segments", "ads", "leads", "per_month")
    assert dict(sc.same_as)[seg + ("funnel", "b", "moves", 0, "share")] == \
        ("segments", "ads", "customer", "cancel", "probability")
    assert len(sc.same_as) == 7


def test_a_chain_resolves_to_the_quantity_with_a_law_of_its_own(tmp_path):
    text = VALID.replace("convert: 0.25", "convert: {same_as: segments.direct.funnel.qualified.convert}") \
        .replace("convert: 0.40", "convert: {same_as: segments.direct.funnel.proposal.convert}") \
        .replace("convert: 0.30", "convert: {dist: beta, mean: 0.3, concentration: 30}")
    sc = load(tmp_path, text)
    law = Distribution("beta", {"mean": 0.3, "concentration": 30.0})
    assert all(sc.segments["direct"].funnel[s].convert == law for s in ("lead", "qualified", "proposal"))
    target = ("segments", "direct", "funnel", "proposal", "convert")
    assert dict(sc.same_as) == {("segments", "direct", "funnel", "lead", "convert"): target,
                                ("segments", "direct", "funnel", "qualified", "convert"): target}


def test_a_file_without_same_as_has_no_links(tmp_path):
    assert load(tmp_path, VALID).same_as == ()


def test_checks_on_the_law_read_the_target_law(tmp_path):
    """B.5's shares' upper ends are the target's: a same_as of a conversion that can reach 0.8,
    beside a share of 0.3, can sum above 1."""
    text = """\
name: t
start: 2027-01-01
end: 2027-03-31
stages: [a, b, c]
segments:
  x:
    leads: {per_day: 10}
    funnel:
      a: {convert: {dist: uniform, low: 0.5, high: 0.8}, days: 1}
      b: {convert: 0.5, days: 1}
      c: {convert: 0.5, days: 1, moves: [{to: a, share: 0.3}, {to: b, share: SHARE}]}
    deal_value: 1
"""
    said = problems(tmp_path, text.replace("SHARE", "{same_as: segments.x.funnel.a.convert}"))
    assert "can sum to 1.1 (upper ends 0.3 + 0.8)" in said
    assert load(tmp_path, text.replace("SHARE", "{same_as: segments.x.funnel.b.convert}")).same_as


# --- errors ------------------------------------------------------------------------------------

def test_an_unknown_path_is_named_with_the_nearest(tmp_path):
    said = problems(tmp_path, link("segments.retail.funnel.qualified.convert"))
    assert f"{HOLDER} names segments.retail.funnel.qualified.convert in same_as, which is not found" in said
    assert "did you mean 'segments.direct.funnel.qualified.convert'" in said


@pytest.mark.parametrize("target", ["segments.direct.funnel.lead.days", "segments.direct.deal_value", "trials",
                                    "segments.direct.leads", "segments.direct.funnel.lead"])
def test_a_path_that_is_not_a_per_trial_quantity(tmp_path, target):
    said = problems(tmp_path, link(target))
    assert f"{HOLDER} names {target} in same_as, which is not a per-trial quantity" in said


def test_a_plain_number_is_not_a_per_trial_quantity(tmp_path):
    text = VALID.replace("{per_week: 120}", "{per_week: {same_as: segments.direct.leads.dispersion}, "
                                            "dispersion: 0.1}")
    assert "which is not a per-trial quantity" in problems(tmp_path, text)


def test_an_absent_expansion_is_not_found(tmp_path):
    text = two(expansion="{same_as: segments.ads.customer.subscription.expansion}").replace(
        ", expansion: {dist: uniform, low: 0, high: 0.05}}", "}")
    assert "segments.ads.customer.subscription.expansion in same_as, which is not found" in problems(tmp_path, text)


def test_a_probability_cannot_be_the_same_draw_as_a_rate(tmp_path):
    said = problems(tmp_path, link("segments.direct.leads.per_week"))
    assert f"{HOLDER} names segments.direct.leads.per_week in same_as, a rate (leads.per_week), but this is a " \
           "probability: a probability cannot be the same draw as a rate" in said
    said = problems(tmp_path, two(leads="{same_as: segments.ads.funnel.a.convert}"))
    assert "segments.web.leads.per_month names segments.ads.funnel.a.convert in same_as, a probability, but this " \
           "is a rate (leads.per_month): a rate cannot be the same draw as a probability" in said


@pytest.mark.parametrize("holder, target", [
    ("growth", "segments.ads.customer.subscription.expansion"),   # two growth rates, different keys
    ("expansion", "segments.ads.leads.growth_per_month"),
    ("leads", "segments.ads.leads.growth_per_month"),
])
def test_a_rate_only_takes_the_same_key_of_another_segment(tmp_path, holder, target):
    said = problems(tmp_path, two(**{holder: f"{{same_as: {target}}}"}))
    assert "can only be the same draw as a" in said and "the same key in the same place of its segment" in said


def test_a_rate_per_week_cannot_take_a_rate_per_month(tmp_path):
    text = two(leads="{same_as: segments.ads.leads.per_month}").replace(
        "leads: {per_month: {same_as", "leads: {per_week: {same_as")
    assert "a leads.per_week can only be the same draw as a leads.per_week" in problems(tmp_path, text)


def test_bought_leads_share_a_cost_per_lead_not_a_rate(tmp_path):
    bought = two(leads="1").replace("leads: {per_month: 1, growth_per_month: 0}",
                                    "leads: {budget_per_month: 1000, cost_per_lead: {same_as: SOURCE}}")
    ok = bought.replace("SOURCE", "segments.ads.leads.per_month")
    assert "a leads.cost_per_lead can only be the same draw as a leads.cost_per_lead" in problems(tmp_path, ok)
    shared = bought.replace("leads: {per_month: {dist: gamma, mean: 100, cv: 0.3}, growth_per_month: "
                            "{dist: uniform, low: 0, high: 0.1}}",
                            "leads: {budget_per_month: 500, cost_per_lead: {dist: lognormal, median: 5, sigma: 0.2}}") \
        .replace("SOURCE", "segments.ads.leads.cost_per_lead")
    sc = load(tmp_path, shared)
    assert sc.segments["web"].leads.cost_per_lead == sc.segments["ads"].leads.cost_per_lead


@pytest.mark.parametrize("edits, loop", [
    ({"convert: 0.40": HOLDER}, [HOLDER, HOLDER]),
    ({"convert: 0.40": "segments.direct.funnel.proposal.convert", "convert: 0.30": HOLDER},
     [HOLDER, "segments.direct.funnel.proposal.convert", HOLDER]),
    ({"convert: 0.25": "segments.direct.funnel.qualified.convert",  # a tail into a three-link loop
      "convert: 0.40": "segments.direct.funnel.proposal.convert",
      "convert: 0.30": "segments.direct.leads.per_week"}, None),
])
def test_a_chain_that_loops(tmp_path, edits, loop):
    text = VALID
    for old, target in edits.items():
        text = text.replace(old, f"convert: {{same_as: {target}}}")
    said = problems(tmp_path, text)
    if loop is None:  # not a loop: the last link is of another kind, and the chain through it is not reported again
        assert said.count("same_as") == 1 and "a probability cannot be the same draw as a rate" in said
        return
    assert said.count("is in a loop of same_as") == 1
    assert "is in a loop of same_as: " + " -> ".join(loop) in said


def test_a_tail_into_a_loop_reports_the_loop_once(tmp_path):
    text = VALID.replace("convert: 0.25", "convert: {same_as: segments.direct.funnel.qualified.convert}") \
        .replace("convert: 0.40", "convert: {same_as: segments.direct.funnel.proposal.convert}") \
        .replace("convert: 0.30", "convert: {same_as: segments.direct.funnel.qualified.convert}")
    said = problems(tmp_path, text)
    assert said.count("loop of same_as") == 1
    assert "segments.direct.funnel.qualified.convert -> segments.direct.funnel.proposal.convert -> " \
           "segments.direct.funnel.qualified.convert" in said


@pytest.mark.parametrize("old, new, where, what", [
    ("days: {dist: exponential, mean: 4}", "days: {same_as: segments.direct.funnel.qualified.days}",
     "segments.direct.funnel.lead.days", "cannot be {same_as: ...}: it is not drawn once per trial"),
    ("deal_value: {dist: lognormal, median: 3000, sigma: 0.6}", "deal_value: {same_as: segments.x.deal_value}",
     "segments.direct.deal_value", "cannot be {same_as: ...}"),
    ("convert: 0.40", "convert: {same_as: segments.direct.funnel.lead.convert, dist: beta}",
     "segments.direct.funnel.qualified.convert.dist", "cannot be given beside same_as"),
    ("convert: 0.40", "convert: {same_as: 0.4}", "segments.direct.funnel.qualified.convert.same_as",
     "must be a key path of this file"),
    ("convert: 0.40", "convert: {same_as: ''}", "segments.direct.funnel.qualified.convert.same_as",
     "must be a key path of this file"),
    ("convert: 0.40", 'convert: {same_as: "segments.direct\\e[31m"}',
     "segments.direct.funnel.qualified.convert.same_as", "holds the control character U+001B"),
    ("convert: 0.40", "convert: {same_as: " + "a" * 3000 + "}",
     "segments.direct.funnel.qualified.convert.same_as", "must be a key path of at most 2,000 characters"),
])
def test_the_form_of_a_same_as(tmp_path, old, new, where, what):
    said = problems(tmp_path, VALID.replace(old, new))
    assert f"{where} {what}" in said


def test_a_same_as_built_from_a_dict_is_checked_for_control_characters():
    import yaml

    doc = yaml.safe_load(link("segments.direct.funnel.lead.convert"))
    doc["segments"]["direct"]["funnel"]["qualified"]["convert"] = {"same_as": "segments.direct\x1b[31m"}
    with pytest.raises(fc.ScenarioError) as info:
        fc.scenario_from_dict(doc)
    assert f"{HOLDER}.same_as must be a key path without a control character" in str(info.value)


def test_bad_input_exits_2_naming_the_file_and_the_key_path_and_writes_nothing(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(link("segments.direct.leads.per_week"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said and "s.yaml" in said and HOLDER in said
    assert not out.exists()


def test_the_json_schema_allows_same_as_on_per_trial_quantities_only():
    schema = json_schema()
    segment = schema["properties"]["segments"]["additionalProperties"]
    stage = segment["properties"]["funnel"]["additionalProperties"]

    def allows(node):
        return any(v.get("required") == ["same_as"] for v in node["anyOf"])

    assert allows(stage["properties"]["convert"])
    assert allows(segment["properties"]["leads"]["properties"]["per_month"])
    assert not allows(stage["properties"]["days"])
    assert not allows(segment["properties"]["deal_value"])


# --- variants ----------------------------------------------------------------------------------

def test_a_variant_scaling_a_same_as_follows_its_target_or_is_refused():
    import yaml

    doc = yaml.safe_load(link("segments.direct.funnel.lead.convert"))
    holder = "segments.direct.funnel.qualified.convert"
    changed, said = apply_changes(doc, {"scale": {"segments.direct.funnel.*.convert": 1.1}}, "v.yaml")
    assert not said
    funnel = changed["segments"]["direct"]["funnel"]
    assert funnel["qualified"]["convert"] == {"same_as": "segments.direct.funnel.lead.convert"}
    assert funnel["lead"]["convert"] == pytest.approx(0.275)
    _, said = apply_changes(doc, {"scale": {holder: 1.1}}, "v.yaml")
    assert len(said) == 1 and said[0].path == f"scale.{holder}" and "takes that quantity's draw" in said[0].message
    _, said = apply_changes(doc, {"scale": {holder: 1.1, "segments.direct.funnel.lead.convert": 1.2}}, "v.yaml")
    assert len(said) == 1  # the target changed otherwise: the holder cannot follow
    _, said = apply_changes(doc, {"shift": {holder: 0.1}}, "v.yaml")
    assert len(said) == 1
    changed, said = apply_changes(doc, {"set": {holder: 0.5}}, "v.yaml")
    assert not said and changed["segments"]["direct"]["funnel"]["qualified"]["convert"] == 0.5
