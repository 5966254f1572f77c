"""v2 C (``leads.response``, ``leads.budget_by_month``) and E.2/E.3 (``cost``, ``outputs.leads``,
``outputs.spend``) in the scenario layer: what is refused, with which key path, and the defaults."""
from __future__ import annotations

import pytest
from conftest import load_text as load, scenario_problems as problems

HEAD = "name: t\nstart: 2027-01-01\nend: 2027-03-31\nstages: [x]\nsegments:\n  web:\n"
FUNNEL = "    funnel:\n      x: {convert: 0.5, days: 1}\n    deal_value: 10\n"


def _text(leads: str, extra: str = "", tail: str = "") -> str:
    return HEAD + f"    leads: {leads}\n" + extra + FUNNEL + tail


BOUGHT = "{budget_per_month: 20000, cost_per_lead: 40, %s}"


@pytest.mark.parametrize("leads,extra,fragments", [
    ("{per_week: 120, response: {reference_budget: 1000, curve: power, elasticity: 0.5}}", "",
     ["segments.web.leads.response", "needs budget_per_month"]),
    ("{per_week: 120, budget_by_month: {3: 100}}", "", ["segments.web.leads.budget_by_month", "needs budget_per_month"]),
    (BOUGHT % "response: {reference_budget: 20000, curve: power, elasticity: 1.5}", "",
     ["segments.web.leads.response.elasticity", "(0, 1]"]),
    (BOUGHT % "response: {reference_budget: 20000, curve: power, elasticity: 0}", "",
     ["segments.web.leads.response.elasticity"]),
    (BOUGHT % "response: {reference_budget: 20000, curve: power, elasticity: {dist: normal, mean: 0.5, sd: 2}}", "",
     []),  # a normal elasticity is truncated to (0, 1]: accepted
    (BOUGHT % "response: {reference_budget: 20000, curve: hill, half_saturation: 30000, elasticity: 0.5}", "",
     ["segments.web.leads.response.elasticity", "is a key of curve: power; this curve is hill"]),
    (BOUGHT % "response: {reference_budget: 20000, curve: power, slope: 2}", "",
     ["segments.web.leads.response.slope", "is a key of curve: hill", "segments.web.leads.response.elasticity",
      "is missing"]),
    (BOUGHT % "response: {reference_budget: 20000, curve: hill}", "",
     ["segments.web.leads.response.half_saturation", "is missing"]),
    (BOUGHT % "response: {reference_budget: 0, curve: power, elasticity: 0.5}", "",
     ["segments.web.leads.response.reference_budget"]),
    (BOUGHT % "response: {curve: power, elasticity: 0.5}", "", ["segments.web.leads.response.reference_budget",
                                                                  "is missing"]),
    (BOUGHT % "response: {reference_budget: 20000, curve: linear}", "", ["segments.web.leads.response.curve",
                                                                         "power, hill"]),
    (BOUGHT % "budget_by_month: {13: 100}", "", ["segments.web.leads.budget_by_month"]),
    (BOUGHT % "budget_by_month: {3: -1}", "", ["segments.web.leads.budget_by_month"]),
    (BOUGHT % "budget_by_month: {3: 1e20}", "", ["segments.web.leads.budget_by_month.3", "at most"]),
    (BOUGHT % "response: {reference_budget: 1e-300, curve: power, elasticity: 0.5}", "",
     ["segments.web.leads.response.reference_budget", "within a factor of 1e+12"]),
    ("{per_day: 5}", "    cost: {per_won: 1e308}\n", ["segments.web.cost.per_won", "at most"]),
    ("{per_day: 5}", "    cost: {per_lead: {dist: lognormal, median: 1e300, sigma: 1}}\n",
     ["segments.web.cost.per_lead", "on average"]),
    ("{per_day: 5}", "    cost: {per_lead: -1}\n", ["segments.web.cost.per_lead"]),
    ("{per_day: 5}", "    cost: {per_month: -1}\n", ["segments.web.cost.per_month"]),
    ("{per_day: 5}", "    cost: {per_won: -5}\n", ["segments.web.cost.per_won"]),
    ("{per_day: 5}", "    cost: {per_deal: 5}\n", ["segments.web.cost.per_deal", "per_won"]),
])
def test_channel_keys_are_refused_with_their_key_path(tmp_path, leads, extra, fragments):
    text = _text(leads, extra)
    if not fragments:
        load(tmp_path, text)
        return
    said = problems(tmp_path, text)
    for fragment in fragments:
        assert fragment in said, said


def test_spend_is_on_by_default_only_where_something_is_spent(tmp_path):
    plain = load(tmp_path, _text("{per_day: 5}"))
    assert not plain.spends and not plain.counts_leads
    for leads, extra in ((BOUGHT % "response: {reference_budget: 20000, curve: power, elasticity: 0.5}", ""),
                         (BOUGHT % "budget_by_month: {2: 0}", ""), ("{per_day: 5}", "    cost: {per_won: 3}\n")):
        sc = load(tmp_path, _text(leads, extra))
        assert sc.spends and sc.counts_leads
        off = load(tmp_path, _text(leads, extra, "outputs: {spend: false}\n"))
        assert not off.spends and not off.counts_leads
    asked = load(tmp_path, _text("{per_day: 5}", "", "outputs: {leads: true}\n"))
    assert asked.counts_leads and not asked.spends
    bought = load(tmp_path, _text(BOUGHT % "dispersion: 0", "", "outputs: {spend: true}\n"))
    assert bought.spends  # v1's bought leads spend their budget when asked


def test_targets_may_name_leads_and_spend_only_when_reported(tmp_path):
    said = problems(tmp_path, _text("{per_day: 5}", "", "targets: {spend: 100}\n"))
    assert "targets.spend" in said and "leads and spend need" in said
    sc = load(tmp_path, _text("{per_day: 5}", "    cost: {per_won: 3}\n", "targets: {spend: 100, leads: 400}\n"))
    assert set(sc.targets) == {"spend", "leads"}
