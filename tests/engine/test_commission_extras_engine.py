"""v2 D through :func:`forecaster.simulate`: spifs with a budget that binds, clawbacks at the
rate paid against closed forms (inside the horizon and after end), and the bit-identity of
everything v1 and A define when the commission extras are added.

The public checks (../shared/conformance-v2/test_commission_extras.py) drive the command line
on D's worked examples; these reach the order of a budget's payments, capped spifs, the
renewal decisions after end and the other outputs' bit-identity.
"""
from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from conftest import within

import forecaster as fc

START = date(2027, 1, 1)


def won_on(day: int, days_in_stage: int = 200) -> str:
    """entered_stage of an open deal that a stage of fixed ``days_in_stage`` days wins on ``day``."""
    return (START - timedelta(days_in_stage - day)).isoformat()


def _scenario(tmp_path, body: str, rows=(), *, end="2027-12-31", trials=200, seed=5, stage="close"):
    if rows:
        (tmp_path / "deals.csv").write_text("deal_id,segment,stage,entered_stage,amount,owner\n" + "".join(
            f"d{i},{seg},{stage},{entered},{amount},{rep}\n" for i, (seg, entered, amount, rep) in enumerate(rows)))
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\nstart: 2027-01-01\nend: {end}\ntrials: {trials}\nseed: {seed}\n" + body)
    return fc.load_scenario(path)


PIPELINE_ONLY = """\
stages: [close]
segments:
  s:
    leads: {per_day: 0}
    funnel:
      close: {convert: 1.0, days: 200}
    deal_value: 1
pipeline: {file: deals.csv}
team:
  reps:
    - {name: ana, segments: [s], quota: 1000000}
    - {name: ben, segments: [s], quota: 1000000}
"""


def test_a_budget_pays_deals_in_the_order_they_are_won_the_one_crossing_it_in_part(tmp_path):
    # won on days 40 (ben), 5, 5 (ana), 70 (ana), 10 (ben): in win order ana, ana, ben, ben, ana
    rows = [("s", won_on(40), 1000, "ben"), ("s", won_on(5), 1000, "ana"), ("s", won_on(5), 1000, "ana"),
            ("s", won_on(70), 1000, "ana"), ("s", won_on(10), 1000, "ben")]
    body = PIPELINE_ONLY + """\
commission:
  period: month
  tiers: [{rate: 0.1}]
  spifs:
    - {name: push, segments: [s], per_deal: 100, budget: 350}
    - {name: share, segments: [s], rate: 0.05, min_value: 1000, from: 2027-01-07, to: 2027-02-28}
"""
    ds = fc.simulate(_scenario(tmp_path, body, rows, trials=3))
    spif = ds["spif"].transpose("trial", "period", "rep").values
    # push: ana 100 + 100 in January, ben 100 (day 10, January) + 50 (day 40, February), ana's day 70 nothing;
    # share: 5% of 1,000 on days 10 and 40 only (ben; day 5 is 2027-01-06)
    assert np.allclose(spif[:, 0], [[200, 100 + 50]])
    assert np.allclose(spif[:, 1], [[0, 50 + 50]])
    assert np.allclose(spif[:, 2:], 0)
    assert np.allclose(ds["net_commission"], ds["commission"] + ds["spif"])


def test_a_capped_spif_is_cut_to_what_the_cap_leaves_and_commission_stays_v1(tmp_path):
    rows = [("s", won_on(3), 9000, "ana"), ("s", won_on(3), 2000, "ben")]
    body = PIPELINE_ONLY + """\
commission:
  period: month
  tiers: [{rate: 0.1}]
  cap: 1000
  spifs:
    - {name: in-cap, segments: [s], per_deal: 300, capped: true}
    - {name: beside, segments: [s], per_deal: 10}
"""
    ds = fc.simulate(_scenario(tmp_path, body, rows, trials=2))
    jan = ds["spif"].isel(period=0).transpose("trial", "rep").values
    assert np.allclose(ds["commission"].isel(period=0).transpose("trial", "rep").values, [[900, 200]])
    assert np.allclose(jan, [[100 + 10, 300 + 10]])  # ana: 900 + 300 capped at 1,000


def test_clawbacks_of_cancellations_match_rate_times_the_chance_of_a_loss_within_the_window(tmp_path):
    lam, days, p, mean, window, value, rate = 2.0, 365, 0.3, 40.0, 30, 500.0, 0.1
    body = f"""\
stages: [close]
segments:
  s:
    leads: {{per_day: {lam}}}
    funnel:
      close: {{convert: 1.0, days: 0}}
    deal_value: {value}
    customer:
      cancel: {{probability: {p}, days: {{dist: exponential, mean: {mean}}}}}
team:
  reps:
    - {{name: ana, segments: [s], quota: 1.0e12}}
commission:
  period: quarter
  tiers: [{{rate: {rate}}}]
  clawback: {{within_days: {window}}}
"""
    ds = fc.simulate(_scenario(tmp_path, body, trials=2000))
    total = ds["clawback"].sum(("period", "rep")).values + ds["clawback_after_end"].sum("rep").values
    # a deal is lost within the window when floor(days) <= window: P = p (1 - exp(-(window + 1) / mean))
    q = p * (1 - math.exp(-(window + 1) / mean))
    n = lam * days
    within(total.mean(), rate * value * n * q, rate * value * math.sqrt(n * q / total.size))
    assert np.all(ds["clawback_after_end"].values >= 0) and ds["clawback_after_end"].values.mean() > 0


@pytest.mark.parametrize("window,chance", [(45, 0.3), (70, 0.3 + 0.7 * 0.3)])
def test_renewal_decisions_after_end_within_the_window_are_clawed_back_after_end(tmp_path, window, chance):
    n = 400
    rows = [("s", won_on(80), 1000, "ana")] * n  # won 2027-03-22, ten days before end
    body = PIPELINE_ONLY.replace("deal_value: 1\n", "deal_value: 1\n    customer:\n"
                                                    "      subscription: {renew: 0.7, term_months: 1}\n") + f"""\
commission:
  period: quarter
  tiers: [{{rate: 0.1}}]
  clawback: {{within_days: {window}}}
"""
    ds = fc.simulate(_scenario(tmp_path, body, rows, end="2027-03-31", trials=400))
    after = ds["clawback_after_end"].sel(rep="ana").values
    assert np.allclose(ds["clawback"].values, 0)
    assert np.allclose(after / 100, np.round(after / 100))
    within(after.mean() / 100, n * chance, math.sqrt(n * chance * (1 - chance) / after.size))


def test_the_extras_leave_every_other_output_bit_identical(tmp_path):
    rows = [("s", won_on(30 + i), 800 + 10 * i, "ana" if i % 2 else "") for i in range(30)]
    base = PIPELINE_ONLY.replace("close: {convert: 1.0, days: 200}", "close: {convert: 0.6, days: 200}").replace(
        "leads: {per_day: 0}", "leads: {per_day: 3}").replace(
        "deal_value: 1\n", "deal_value: {dist: lognormal, median: 900, sigma: 0.4}\n    customer:\n"
                           "      subscription: {renew: {dist: beta, mean: 0.8, concentration: 50}, term_months: 1}\n"
                           "      cancel: {probability: 0.1, days: {dist: uniform, low: 0, high: 40}}\n")
    plan = "commission:\n  period: month\n  tiers: [{up_to: 0.5, rate: 0.05}, {rate: 0.1}]\n"
    extras = ("  clawback: {within_days: 60, share: 0.5}\n  draw: {amount: 100, recoverable: true}\n"
              "  spifs: [{name: a, segments: [s], per_deal: 50, budget: 500}]\n  amortize_months: 6\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = fc.simulate(_scenario(tmp_path / "a", base + plan, rows, end="2027-06-30"))
    two = fc.simulate(_scenario(tmp_path / "b", base + plan + extras, rows, end="2027-06-30"))
    for name in one.data_vars:
        assert np.array_equal(one[name].values, two[name].values), name
    assert {"spif", "clawback", "payout", "commission_expense"} <= set(two.data_vars) - set(one.data_vars)


def test_a_backdated_band_changes_commission_only(tmp_path):
    body = VALID_TEAM = PIPELINE_ONLY.replace("leads: {per_day: 0}", "leads: {per_day: 2}").replace(
        "days: 200", "days: {dist: exponential, mean: 20}").replace("deal_value: 1", "deal_value: 1000")
    plan = "commission:\n  period: month\n  tiers: [{up_to: 0.5, rate: 0.05}, {rate: 0.1%s}]\n"
    rows = [("s", "2026-12-20", 1000, "ana")]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = fc.simulate(_scenario(tmp_path / "a", VALID_TEAM + plan % "", rows, end="2027-03-31"))
    two = fc.simulate(_scenario(tmp_path / "b", body + plan % ", backdate: true", rows, end="2027-03-31"))
    for name in ("revenue", "won_deals", "bookings", "revenue_by_segment"):
        assert np.array_equal(one[name].values, two[name].values), name
    b = two["bookings"].values
    q = 1e6
    expected = np.where(b > 0.5 * q, 0.1 * b, 0.05 * b)
    assert np.allclose(two["commission_by_quota_period"].values, expected)


def test_summary_has_each_reps_extras_and_the_chance_net_earnings_fall_below_the_draws(tmp_path):
    rows = [("s", won_on(10), 5000, "ana"), ("s", won_on(40), 20000, "ana"), ("s", won_on(95), 40000, "ana"),
            ("s", won_on(40), 10000, "cy")]
    body = PIPELINE_ONLY.replace("    - {name: ben, segments: [s], quota: 1000000}\n",
                                 "    - {name: ben, segments: [s], quota: 1000000}\n"
                                 "    - {name: cy, segments: [s], quota: 1000000, draw: {amount: 500, "
                                 "recoverable: false}}\n") + """\
commission:
  period: month
  tiers: [{rate: 0.1}]
  draw: {amount: 1500, recoverable: true, periods: 2}
  amortize_months: 0
targets: {payout: 9000, commission_expense: 7000}
"""
    sc = _scenario(tmp_path, body, rows, end="2027-04-30", trials=5)
    ds = fc.simulate(sc)
    summary = fc.summarize(ds, sc)
    reps = summary["reps"]
    # ana earns (500, 2000, 0, 4000) = 6,500 against draws of 3,000; ben 0 against 3,000; cy 1,000 against 2,000
    assert [reps[r]["draw"] for r in ("ana", "ben", "cy")] == [
        {"total": 3000.0, "probability_net_below": 0.0}, {"total": 3000.0, "probability_net_below": 1.0},
        {"total": 2000.0, "probability_net_below": 1.0}]
    assert reps["ana"]["payout"]["total"]["mean"] == 6500 and reps["ben"]["draw_balance"]["total"]["mean"] == 3000
    assert reps["cy"]["payout"]["total"]["mean"] == 500 + 1000 + 500 + 500
    assert summary["draw_balance"]["mean"] == 3000 and "spif" not in summary["metrics"]
    assert summary["targets"]["payout"]["probability"] == 1.0  # 6,500 + 3,000 + 2,500
    # with amortize_months 0 the expense is the net commission, in the period it is earned
    assert np.allclose(ds["commission_expense"].values, ds["commission"].sum("rep").values)
    assert summary["targets"]["commission_expense"]["probability"] == 1.0


def test_the_command_line_writes_the_summary_the_library_computes(tmp_path):
    """Chunked and streamed to forecast.nc (the clawback rows and spifs chunk by chunk), the
    example plan's summary.json is the in-memory one, to the bit."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scenarios" / "saas-commission-plan.yaml"
    subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "-o", str(tmp_path), "--trials", "700",
                    "--seed", "4"], check=True, capture_output=True)
    sc = fc.load_scenario(path)
    want = json.loads(json.dumps(fc.summarize(fc.simulate(sc, trials=700, seed=4), sc)))
    assert json.loads((tmp_path / "summary.json").read_text()) == want


EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "scenarios" / "saas-commission-plan.yaml"
EXTRAS = ("spif", "clawback", "clawback_after_end", "net_commission", "payout", "draw_balance",
          "commission_expense_by_rep")
_PARITY = """\
import sys
import numpy as np
import forecaster as fc
ds = fc.simulate(fc.load_scenario(sys.argv[1]), trials=int(sys.argv[2]), seed=3, threads=1)
np.savez(sys.argv[3], **{k: ds[k].values for k in sys.argv[4:]})
"""


def test_the_extras_are_the_same_without_the_jit(tmp_path):
    import os
    import subprocess
    import sys

    ref = fc.simulate(fc.load_scenario(EXAMPLE), trials=6, seed=3, threads=1)
    out = tmp_path / "o.npz"
    subprocess.run([sys.executable, "-c", _PARITY, str(EXAMPLE), "6", str(out), *EXTRAS], check=True,
                   env=dict(os.environ, NUMBA_DISABLE_JIT="1"), timeout=900)
    got = np.load(out)
    for name in EXTRAS:
        assert np.array_equal(got[name], ref[name].values), name


def test_the_extras_of_a_trial_depend_on_its_index_only(monkeypatch):
    from forecaster.engine import seeding, simulation
    from forecaster.results import layout

    sc = fc.load_scenario(EXAMPLE).with_run(trials=60, seed=21)
    ref = fc.simulate(sc, threads=2)
    for module in (seeding, simulation, layout):
        monkeypatch.setattr(module, "BLOCK_TRIALS", 7)
    odd = fc.simulate(sc, threads=2)
    for name in EXTRAS:
        assert np.array_equal(ref[name].values, odd[name].values), name


def test_spifs_without_customers_keep_a_deal_log_that_changes_no_number(tmp_path):
    """A spif makes the kernels keep every deal (and rerun a trial whose log outgrows its
    arrays): no other output moves, the counts of F1 and E.3 included."""
    body = """\
stages: [a, b]
segments:
  s:
    leads: {per_day: 40, dispersion: 0.1}
    funnel:
      a: {convert: 0.5, days: {dist: exponential, mean: 5}}
      b: {convert: 0.6, days: {dist: gamma, mean: 9, cv: 0.5}}
    deal_value: {dist: lognormal, median: 1000, sigma: 0.5}
  t:
    leads: {per_week: 30}
    funnel:
      a: {convert: 0.4, days: 3}
      b: {convert: 0.5, days: 8}
    deal_value: 5000
pipeline: {file: deals.csv}
team:
  reps:
    - {name: ana, segments: [s, t], quota: 50000}
    - {name: ben, segments: [s], quota: 50000}
outputs: {stage_entries: true, losses: true, leads: true, by_source: true}
commission:
  period: month
  tiers: [{up_to: 1, rate: 0.05}, {rate: 0.08}]
  cap: 9000
"""
    rows = [("s", "2026-12-20", 1000 + i, "ana" if i % 3 else "") for i in range(40)]
    spifs = "  spifs: [{name: x, segments: [s, t], per_deal: 10, budget: 20000, capped: true}]\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = fc.simulate(_scenario(tmp_path / "a", body, rows, end="2027-04-30", trials=120, stage="b"))
    two = fc.simulate(_scenario(tmp_path / "b", body + spifs, rows, end="2027-04-30", trials=120, stage="b"))
    for name in one.data_vars:
        assert np.array_equal(one[name].values, two[name].values), name
    assert two["spif"].values.sum() > 0
