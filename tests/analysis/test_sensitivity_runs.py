"""How a sensitivity runs its levers: on a pool of threads, keeping per-trial totals only.

The numbers must be those of running each lever through :func:`forecaster.simulate` one
after the other, bit for bit, whatever the number of threads.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import forecaster as fc
from forecaster.analysis import sensitivity as sens
from forecaster.analysis.compare import per_trial_metrics

SAAS = Path(__file__).resolve().parents[2] / "scenarios" / "saas-quarter.yaml"  # commission, pipeline, 3 segments


def test_a_runs_totals_are_those_of_simulate():
    sc = fc.load_scenario(SAAS)
    ds = fc.simulate(sc, trials=400, seed=9)
    run = sens._run(sc, 400, 9, keep_inputs=True)
    expected = {m: v.sum(axis=1) for m, v in per_trial_metrics(ds).items()}
    assert set(run.totals) == set(expected) == {"revenue", "won_deals", "commission"}
    for metric, values in expected.items():
        assert np.array_equal(run.totals[metric], values), metric
    assert np.array_equal(run.inputs, ds["inputs"].values)
    assert sens._variance_shares(run.totals["revenue"], run.inputs, sc.segment_names,
                                 ds["quantity"].values) == sens.variance_shares(ds, sc)


def _same(a, b) -> bool:
    """Equal, NaN included (json-like structures)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_the_summary_does_not_depend_on_the_threads():
    calls: list[tuple[int, int]] = []
    one, ds1 = sens.sensitivity(SAAS, trials=200, seed=4, threads=1)
    three, ds3 = sens.sensitivity(SAAS, trials=200, seed=4, threads=3, progress=lambda d, t: calls.append((d, t)))
    assert _same(one, three)
    for name in ds1.data_vars:
        assert np.array_equal(ds1[name].values, ds3[name].values, equal_nan=True), name
    runs = 2 * len(one["levers"]) - len(one["skipped"])
    assert [d for d, _ in calls] == list(range(1, runs + 1)) and {t for _, t in calls} == {2 * len(one["levers"])}
    assert all(math.isfinite(s["share"]) for s in one["variance_shares"])


# --- runs by source --------------------------------------------------------------------------

EXTENSIONS = """
shocks: {leads: 0.2, convert: {sql: 0.3, opportunity: 0.4}, drift: {leads: 0.05, convert: {opportunity: 0.1}}}
closing: {slip: {1: 0.25, 2: 0.1}, window_days: 12}
"""


def _saas_variant(tmp_path, extra: str = EXTENSIONS) -> Path:
    """saas-quarter with shocks, drift and quarter-end slips; its pipeline without mid's
    deals, and every enterprise deal with an amount of its own (so that mid's levers never
    reach the pipeline and enterprise's deal value does not either, while smb's do)."""
    rows = (SAAS.parent / "saas-quarter-pipeline.csv").read_text().splitlines()
    kept = [rows[0]]
    for row in rows[1:]:
        cells = row.split(",")
        if cells[1] == "mid":
            continue
        if cells[1] == "enterprise" and not cells[4]:
            cells[4] = "120000"
        kept.append(",".join(cells))
    (tmp_path / "saas-quarter-pipeline.csv").write_text("\n".join(kept) + "\n")
    path = tmp_path / "saas-extended.yaml"
    path.write_text(SAAS.read_text() + extra)
    return path


def test_levers_rerun_only_the_sources_they_change(tmp_path):
    path = _saas_variant(tmp_path)
    sc = fc.load_scenario(path)
    plan = sens.build_plan(sc)
    assert [(s.segments, s.pipeline) for s in sens.sources_of(plan)] == [((0,), False), ((1,), False), ((2,), False),
                                                                       ((), True)]
    doc = sens.read_document(path)[0]
    reruns = {lever.name: sens.changed_sources(lever, plan) for lever in sens.levers(doc, sc)}
    assert reruns["smb: leads"] == [0] and reruns["smb: deal value"] == [0, 3] and reruns["smb: sql days"] == [0, 3]
    assert reruns["mid: opportunity convert"] == [1] and reruns["mid: deal value"] == [1]
    assert reruns["enterprise: deal value"] == [2] and reruns["enterprise: sql convert"] == [2, 3]
    assert reruns["all: leads (expansion)"] == [0, 1, 2, 3]


def test_runs_by_source_give_the_numbers_of_whole_runs(tmp_path):
    """Every lever's per-trial effect, source by source, is the whole runs' up to the rounding
    of sums (about 1e-16 of the totals), with shocks, drift, slips, a pipeline and commission."""
    path = _saas_variant(tmp_path)
    split, ds_split = sens.sensitivity(path, trials=300, seed=11, threads=2)
    whole, ds_whole = sens.sensitivity(path, trials=300, seed=11, threads=2, by_source=False)
    for name in ds_whole.data_vars:
        a, b = ds_split[name].values, ds_whole[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        scale = np.abs(ds_whole[name].values[~np.isnan(b)]).max()
        assert np.allclose(a, b, rtol=0, atol=1e-9 * scale, equal_nan=True), name
    for a, b in zip(split["levers"], whole["levers"]):
        for direction in ("minus", "plus"):
            for metric, stats in b[direction].items():
                got = a[direction][metric]
                assert math.isclose(got["mean"], stats["mean"], rel_tol=1e-9, abs_tol=1e-6), (a["lever"], metric)
                assert got["probability_higher"] == stats["probability_higher"], (a["lever"], metric)
    assert split["ranking"] == whole["ranking"]
    assert split["three_moves"]["key_level"]["lever"] == whole["three_moves"]["key_level"]["lever"]
    for metric in whole["base"]:
        assert math.isclose(split["base"][metric]["mean"], whole["base"][metric]["mean"], rel_tol=1e-12)
    # a lever that changes no deal has an effect of exactly 0, not rounding noise
    untouched = next(e for e in split["levers"] if e["lever"] == "enterprise: lead days")
    assert untouched["minus"]["revenue"]["p50"] == 0.0


def test_a_paired_difference_within_rounding_is_a_tie():
    from forecaster.analysis.compare import difference_stats, paired_difference

    base = np.array([0.1 + 0.2, 1e6, 5.0, 0.0])
    variant = np.array([0.3, 1e6 + 1e-4, 5.0 - 2e-15, 0.0])
    assert base[0] != variant[0]  # 0.1 + 0.2 is not 0.3 in floating point
    assert list(paired_difference(base, variant)) == [0.0, variant[1] - base[1], 0.0, 0.0]
    assert difference_stats(base, variant)["probability_higher"] == 0.25


def test_with_a_capacity_every_lever_runs_whole(tmp_path, monkeypatch):
    path = _saas_variant(tmp_path, EXTENSIONS + "capacity: {won_per_month: 60, cv: 0.1}\n")
    calls = []
    monkeypatch.setattr(sens, "_lever_split", lambda *a, **k: calls.append(a))
    summary, _ = sens.sensitivity(path, trials=100, seed=2, threads=1)
    assert calls == [] and summary["levers"]


# --- leads levers and dated lead events (v2 F2) -----------------------------------------------

EVENTS = """\
name: launch
start: 2027-01-01
end: 2027-03-31
report_by: month
trials: 300
seed: 3
stages: [lead, deal]
segments:
  web:
    leads: {per_day: 4}
    funnel:
      lead: {convert: 0.3, days: 0}
      deal: {convert: 0.5, days: 0}
    deal_value: 100
"""

LAUNCH = """\
  launch:
    leads:
      per_week: 0
      events: [{date: 2027-02-01, count: 2000}]
    funnel:
      lead: {convert: 0.2, days: 0}
      deal: {convert: 0.5, days: 0}
    deal_value: 100
"""


def test_a_leads_lever_of_a_segment_of_events_only_is_0_and_says_why(tmp_path):
    """The lever scales the rate (v1: "each segment's leads (its rate or budget)"), never an
    event's count (F2: a count is a count): a segment whose leads come only from events keeps
    an effect of exactly 0, and sensitivity.json, the console and the exports say why; the
    expansion lever says it leaves the events out. A file without events has no notes."""
    from click.testing import CliRunner

    from forecaster.cli import main

    path = tmp_path / "launch.yaml"
    path.write_text(EVENTS + LAUNCH)
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(tmp_path / "o"), "--export", "csv"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "sensitivity.json").read_text())
    effect = next(e for e in summary["levers"] if e["lever"] == "launch: leads")
    assert effect["plus"]["revenue"]["mean"] == 0.0 and effect["minus"]["won_deals"]["mean"] == 0.0
    notes = {n["lever"]: n["note"] for n in summary["notes"]}
    assert set(notes) == {"launch: leads", "all: leads (expansion)"}
    assert "no arrival rate to scale" in notes["launch: leads"] and "per_week is 0" in notes["launch: leads"]
    assert "launch" in notes["all: leads (expansion)"]
    assert "note on launch: leads: segment launch has no arrival rate to scale" in " ".join(res.output.split())
    assert "no arrival rate" in (tmp_path / "o" / "sensitivity-tables" / "notes.csv").read_text()
    web = next(e for e in summary["levers"] if e["lever"] == "web: leads")
    assert web["plus"]["revenue"]["mean"] > 0
    path.write_text(EVENTS)
    plain, _ = sens.sensitivity(path, trials=100)
    assert "notes" not in plain


# --- customers after the sale (v2 A): new leads', the pipeline's and the installed base's ------

SUBSCRIPTIONS = Path(__file__).resolve().parents[2] / "scenarios" / "saas-subscriptions.yaml"


def _subscriptions(tmp_path) -> Path:
    """saas-subscriptions over a quarter, with a small pipeline (self_serve deals only) and the
    sales_led installed customers' values left blank (they draw the segment's deal value)."""
    rows = (SUBSCRIPTIONS.parent / "saas-subscriptions-customers.csv").read_text().splitlines()
    kept = [rows[0]]
    for row in rows[1:]:
        cells = row.split(",")
        if cells[1] == "sales_led":
            cells[3] = ""
        kept.append(",".join(cells))
    (tmp_path / "saas-subscriptions-customers.csv").write_text("\n".join(kept) + "\n")
    (tmp_path / "pipeline.csv").write_text(
        "deal_id,segment,stage,entered_stage,amount,owner\n"
        + "".join(f"P-{i},self_serve,{stage},2026-12-{10 + i},,\n" for i, stage in enumerate(("lead", "trial") * 3)))
    text = SUBSCRIPTIONS.read_text().replace("end: 2027-12-31", "end: 2027-03-31")
    path = tmp_path / "subs.yaml"
    path.write_text(text + "\npipeline: {file: pipeline.csv}\n")
    return path


def test_with_customers_levers_rerun_only_the_sources_whose_customers_they_change(tmp_path):
    """The installed base is a source of its own: only the after-sale levers (and a deal value
    that its customers without a value of their own draw) run it again."""
    path = _subscriptions(tmp_path)
    sc = fc.load_scenario(path)
    plan = sens.build_plan(sc)
    assert [(s.segments, s.pipeline, s.installed) for s in sens.sources_of(plan)] == [
        ((0,), False, False), ((1,), False, False), ((), True, False), ((), False, True)]
    doc = sens.read_document(path)[0]
    reruns = {lever.name: sens.changed_sources(lever, plan) for lever in sens.levers(doc, sc)}
    assert reruns["self_serve: leads"] == [0] and reruns["sales_led: leads"] == [1]
    assert reruns["self_serve: renew"] == [0, 2, 3] and reruns["sales_led: renew"] == [1, 3]
    assert reruns["self_serve: deal value"] == [0, 2]  # its installed customers keep their own values
    assert reruns["sales_led: deal value"] == [1, 3]   # its installed customers draw the deal value
    assert reruns["sales_led: negotiation convert"] == [1]
    assert reruns["all: renew"] == [0, 1, 2, 3]


def test_with_customers_runs_by_source_give_the_numbers_of_whole_runs(tmp_path, monkeypatch):
    """Every metric's effect of every lever, after-sale stocks and flows included, is the whole
    runs' up to the rounding of sums; a lever that changes no customer has an effect of 0."""
    path = _subscriptions(tmp_path)
    calls, real = [], sens._lever_split
    monkeypatch.setattr(sens, "_lever_split", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    split, _ = sens.sensitivity(path, trials=120, seed=5, threads=2)
    assert calls and [3] not in calls and any(3 not in which for which in calls)  # runs by source, indeed
    monkeypatch.setattr(sens, "_lever_split", real)
    whole, _ = sens.sensitivity(path, trials=120, seed=5, threads=2, by_source=False)
    assert [e["lever"] for e in split["levers"]] == [e["lever"] for e in whole["levers"]]
    assert "active_customers" in whole["base"] and "total_bookings" in whole["base"]
    for a, b in zip(split["levers"], whole["levers"]):
        for direction in ("minus", "plus"):
            assert (direction in a) == (direction in b), a["lever"]
            for metric, stats in b.get(direction, {}).items():
                got = a[direction][metric]
                assert math.isclose(got["mean"], stats["mean"], rel_tol=1e-9, abs_tol=1e-6), (a["lever"], metric)
    for metric in whole["base"]:
        assert math.isclose(split["base"][metric]["mean"], whole["base"][metric]["mean"], rel_tol=1e-12), metric
    # sales_led's new annual customers renew after the quarter: its leads move no renewal, exactly
    leads = next(e for e in split["levers"] if e["lever"] == "sales_led: leads")
    assert leads["minus"]["renewal_bookings"]["mean"] == 0.0 and leads["plus"]["renewal_bookings"]["mean"] == 0.0
    assert leads["plus"]["revenue"]["mean"] > 0
    renew = next(e for e in split["levers"] if e["lever"] == "self_serve: renew")
    assert renew["minus"]["mrr"]["mean"] < 0  # fewer renewals: less MRR, from new and installed customers alike


REPEAT_PRICED_BY_DEAL_VALUE = """\
name: repeat orders priced by the deal value
start: 2027-01-01
end: 2027-03-31
report_by: month
trials: 100
seed: 7
stages: [cart]
segments:
  web:
    leads: {per_day: 2}
    funnel:
      cart: {convert: 0.5, days: 3}
    deal_value: {dist: lognormal, median: 60, sigma: 0.5}
    customer:
      repeat: {per_month: 1.0, dropout: 0.1}   # no repeat.value: each repeat order draws deal_value
pipeline: {file: pipeline.csv}
"""


def test_a_deal_value_lever_reruns_priced_pipeline_deals_whose_repeat_orders_draw_it(tmp_path):
    """Pipeline deals with amounts of their own keep them, but their customers' repeat orders
    are priced by the deal value when the segment names no repeat value: the lever's run must
    simulate the pipeline again (a review found repeat revenue 775.80 by source, 951.35 whole)."""
    (tmp_path / "pipeline.csv").write_text("deal_id,segment,stage,entered_stage,amount,owner\n"
                                           + "".join(f"P{i},web,cart,2026-12-30,100,\n" for i in range(20)))
    path = tmp_path / "f1.yaml"
    path.write_text(REPEAT_PRICED_BY_DEAL_VALUE)
    sc = fc.load_scenario(path)
    plan = sens.build_plan(sc)
    lever = next(x for x in sens.levers(sens.read_document(path)[0], sc) if x.name == "web: deal value")
    assert sens.changed_sources(lever, plan, sens.repeats_drawing_deal_value(sc)) == [0, 1]
    split, _ = sens.sensitivity(path, trials=100, seed=7, threads=1)
    whole, _ = sens.sensitivity(path, trials=100, seed=7, threads=1, by_source=False)
    for a, b in zip(split["levers"], whole["levers"]):
        for direction in ("minus", "plus"):
            for metric, stats in b[direction].items():
                assert math.isclose(a[direction][metric]["mean"], stats["mean"], rel_tol=1e-9, abs_tol=1e-6), \
                    (a["lever"], metric)
