"""v2 D.6: the commission extras' bad input, each message naming the key path and what was
expected (the command line's exit status 2 and "nothing written" are checked once, at the end)."""
from __future__ import annotations

import subprocess
import sys

import pytest

import forecaster as fc

BASE = """\
name: t
start: 2027-01-01
end: 2027-03-31
stages: [close]
segments:
  s:
    leads: {per_day: 1}
    funnel:
      close: {convert: 0.5, days: 5}
    deal_value: 100
%(customer)s
team:
  reps:
    - {name: ana, segments: [s], quota: 10000%(rep)s}
%(commission)s
"""
PLAN = "commission:\n  period: month\n  tiers: [{up_to: 1.0, rate: 0.05}, {rate: 0.1}]\n"


def text(commission=PLAN, extra="", rep="", customer=""):
    return BASE % {"customer": customer, "rep": rep, "commission": commission + extra}


CASES = [
    (text(PLAN.replace("rate: 0.05}", "rate: 0.05, backdate: true}")), "commission.tiers[0].backdate",
     "first band has no bookings below it"),
    (text(PLAN.replace("rate: 0.1}", "rate: 0.1, backdate: yes please}")), "commission.tiers[1].backdate",
     "true or false"),
    (text(extra="  clawback: {within_days: 30}\n"), "commission.clawback", "customer.cancel or customer.subscription"),
    (text(extra="  clawback: {within_days: 30}\n", customer="    customer: {recognition: {over_months: 2}}"),
     "commission.clawback", "a way for customers to be lost"),
    (text(extra="  clawback: {within_days: 0}\n", customer="    customer: {subscription: {renew: 0.9}}"),
     "commission.clawback.within_days", "whole number of days"),
    (text(extra="  clawback: {within_days: 10, share: 1.5}\n", customer="    customer: {subscription: {renew: 0.9}}"),
     "commission.clawback.share", "[0, 1]"),
    (text(extra="  draw: {amount: -1, recoverable: true}\n"), "commission.draw.amount", ">= 0"),
    (text(extra="  draw: {amount: 10}\n"), "commission.draw.recoverable", "missing"),
    (text(extra="  draw: {amount: 10, recoverable: true, periods: 1.5}\n"), "commission.draw.periods", "whole number"),
    (text(commission="", rep=", draw: {amount: 10, recoverable: false}"), "team.reps[0].draw",
     "needs a commission plan"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1}, {name: a, segments: [s], rate: 0.1}]\n"),
     "commission.spifs[1].name", "unique"),
    (text(extra="  spifs: [{name: a, segments: [web], per_deal: 1}]\n"), "commission.spifs[0].segments[0]",
     "not a segment"),
    (text(extra="  spifs: [{name: a, segments: [], per_deal: 1}]\n"), "commission.spifs[0].segments", "at least"),
    (text(extra="  spifs: [{name: a, segments: [s]}]\n"), "commission.spifs[0]", "exactly one of per_deal"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1, rate: 0.1}]\n"), "commission.spifs[0]",
     "found per_deal and rate"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1, min_value: -5}]\n"), "commission.spifs[0].min_value",
     ">= 0"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1, budget: 0}]\n"), "commission.spifs[0].budget",
     "> 0"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1, from: 2027-03-01, to: 2027-02-01}]\n"),
     "commission.spifs[0].to", "on or after from"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1, to: 2027-02-30}]\n"), "commission.spifs[0].to",
     "ISO date"),
    (text(extra="  amortize_months: -1\n"), "commission.amortize_months", "whole number"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1}]\ncapacity: {won_per_month: 10}\n"),
     "commission.spifs", "capacity"),
    (text(extra="targets: {spif: 10}\n"), "targets.spif", "does not report"),
    # the engine's limits (found by the fuzz battery: these overflowed or ran out of dates)
    (text(extra="  draw: {amount: 1.0e+308, recoverable: true}\n"), "commission.draw.amount", "at most 1e+15"),
    (text(rep=", draw: {amount: 1.0e+300, recoverable: true}"), "team.reps[0].draw.amount", "at most 1e+15"),
    (text(extra="  spifs: [{name: a, segments: [s], rate: 1.0e+308}]\n"), "commission.spifs[0].rate", "at most 10"),
    (text(extra="  spifs: [{name: a, segments: [s], per_deal: 1, from: 2027-13-01}]\n"), "commission.spifs[0].from",
     "ISO date"),
    (text(extra="  clawback: {within_days: 99999999999}\n", customer="    customer: {subscription: {renew: 0.9}}"),
     "commission.clawback.within_days", "36525"),
    (text(extra="  amortize_months: 100000001\n"), "commission.amortize_months", "1200"),
]


@pytest.mark.parametrize("body,path,words", CASES, ids=[c[1] + "/" + c[2] for c in CASES])
def test_bad_commission_extras_name_the_key_path(tmp_path, body, path, words):
    file = tmp_path / "s.yaml"
    file.write_text(body)
    with pytest.raises(fc.ScenarioError) as info:
        fc.load_scenario(file)
    message = str(info.value)
    assert f"s.yaml: {path}" in message or f"{path}:" in message or f"{path} " in message, message
    assert words in message, message


def test_a_file_with_every_extra_loads_and_a_bad_one_exits_2_writing_nothing(tmp_path):
    good = text(extra="  clawback: {within_days: 30, share: 0.5}\n  draw: {amount: 10, recoverable: false, periods: 2}\n"
                      "  spifs: [{name: a, segments: [s], rate: 0.01, min_value: 50, from: 2027-02-01, budget: 100, "
                      "capped: true}]\n  amortize_months: 0\ntargets: {payout: 10, commission_expense: 5}\n",
                rep=", draw: {amount: 5, recoverable: true}",
                customer="    customer: {cancel: {probability: 0.1, days: 20}}")
    sc = fc.scenario_from_dict(__import__("yaml").safe_load(good))
    assert sc.commission.spifs[0].start.isoformat() == "2027-02-01" and sc.reps[0].draw.recoverable
    bad = tmp_path / "bad.yaml"
    bad.write_text(text(extra="  spifs: [{name: push, segments: [s], per_deal: 100, rate: 0.01}]\n"))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "forecaster", "run", str(bad), "-o", str(out)], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "commission.spifs[0]" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() or not any(out.iterdir())
