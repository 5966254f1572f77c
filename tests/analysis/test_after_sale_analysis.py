"""Sensitivity and compare with customers (scenario-format-v2.md A.6, issue 13).

The after-sale levers (renew, expansion, repeat per_month, dropout, cancel probability) are
checked against closed forms on customers whose deals are all won on day 0; ``--metric``
ranks by recognised revenue or total bookings; a variant of after-sale keys only shares
every draw of the deals with its base (v2 rule 0.1), so its revenue, won deals and
commission differ by exactly 0 in every trial.
"""
from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SCENARIOS

import forecaster as fc
from forecaster.analysis import sensitivity as sens
from forecaster.analysis.compare import compare, compare_summary, horizon_total, per_trial_metrics
from forecaster.cli import main
from forecaster.scenario.loading import read_document
from forecaster.scenario.variants import load_variant

Z = 1.959964
CUSTOMER_MONTH = 365.25 / 12
N = 40  # customers per segment, all won on 2027-01-01 (day 0)
HORIZON = 365 / CUSTOMER_MONTH  # customer months from the win to the end of 2027


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _deals(tmp_path, segments, n: int = N, value: float = 100) -> None:
    """n open deals of each segment at the last stage on 2027-01-01: with convert 1 and
    days 0, each is won on day 0 and creates a customer then."""
    rows = "".join(f"{s}-{i},{s},close,2027-01-01,{value},\n" for s in segments for i in range(n))
    (tmp_path / "deals.csv").write_text("deal_id,segment,stage,entered_stage,amount,owner\n" + rows)


HEAD = """\
name: {name}
start: 2027-01-01
end: 2027-12-31
report_by: month
trials: {trials}
seed: 5
stages: [close]
"""

WON = """\
    leads: {per_day: 0}
    funnel: {close: {convert: 1.0, days: 0}}
    deal_value: 100
"""

FOUR = """\
segments:
  a:
{won}    customer:
      subscription: {{renew: 0.8, expansion: 0}}
  b:
{won}    customer:
      subscription: {{renew: 1.0, expansion: 0.05}}
  c:
{won}    customer:
      cancel: {{probability: 0.2, days: 0}}
  d:
{won}    customer:
      repeat: {{per_month: 0.5, dropout: 0.2, value: 10}}
pipeline: {{file: deals.csv}}
"""


def _four(tmp_path, trials: int = 2000):
    """Four segments of N customers won on day 0: a monthly subscription renewing with 0.8
    (expansion 0), one renewing always with expansion 0.05, one-off deals cancelled on their
    win day with probability 0.2 (refund 1), and repeat buyers (0.5 a month, dropout 0.2,
    purchases of 10)."""
    _deals(tmp_path, "abcd")
    return _write(tmp_path, "four.yaml", HEAD.format(name="four", trials=trials) + FOUR.format(won=WON))


def _renewals(r: float, expansion: float = 0.0) -> float:
    """Expected renewal bookings of a monthly subscriber of value 1 won on 1 January, within the
    year: renewals on 1 February ... 1 December, the k-th reached with probability r^k and
    worth (1 + expansion)^k."""
    return sum((r * (1 + expansion)) ** k for k in range(1, 12))


def _repeats(lam: float, p: float, t: float = HORIZON) -> float:
    """E[X(t)] = (1/p)(1 - exp(-lam p t)): repeat purchases without heterogeneity (v2 A.8.6)."""
    return (1 - math.exp(-lam * p * t)) / p


def _close(effect: dict, expected: float, k: float = 5.0) -> bool:
    """``effect``'s mean within k standard errors (from its 95% interval) of ``expected``."""
    se = (effect["mean_ci_high"] - effect["mean_ci_low"]) / (2 * Z)
    return abs(effect["mean"] - expected) <= k * se + 1e-9 * abs(expected)


# --- levers ------------------------------------------------------------------------------------

def test_the_after_sale_levers_are_those_each_segment_has(tmp_path):
    path = _four(tmp_path)
    sc = fc.load_scenario(path)
    doc, _, _ = read_document(path)
    by_name = {lv.name: lv for lv in sens.levers(doc, sc)}
    after = {n: lv for n, lv in by_name.items() if lv.kind in ("renew", "expansion", "per_month", "dropout", "cancel")}
    assert set(after) == {"a: renew", "a: expansion", "b: renew", "b: expansion", "c: cancel probability",
                          "d: repeat per_month", "d: dropout", "all: renew"}
    assert after["a: expansion"].unmoved and "0" in after["a: expansion"].unmoved  # said to change nothing
    assert not any(lv.unmoved for n, lv in after.items() if n != "a: expansion")
    assert len(after["all: renew"].paths) == 2 and after["all: renew"].scope == "all segments"
    # each segment's after-sale levers follow its deal value; the all-segment ones come last
    names = list(by_name)
    assert names.index("a: renew") == names.index("a: deal value") + 1
    assert names[-1] == "all: renew"


def test_one_segment_with_customers_has_no_all_segments_copy_of_its_levers(tmp_path):
    _deals(tmp_path, "a")
    path = _write(tmp_path, "one.yaml", HEAD.format(name="one", trials=100) + f"""\
segments:
  a:
{WON}    customer:
      subscription: {{renew: 0.8}}
pipeline: {{file: deals.csv}}
""")
    doc, _, _ = read_document(path)
    names = [lv.name for lv in sens.levers(doc, fc.load_scenario(path))]
    assert "a: renew" in names and "a: expansion" not in names  # no expansion key: nothing to scale
    assert not any(n.startswith("all: renew") for n in names)


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("four")
    summary, ds = sens.sensitivity(_four(tmp_path), step=0.1, threads=2)
    return summary, ds


def _effects(summary):
    return {e["lever"]: e for e in summary["levers"]}


def test_renew_moves_renewal_bookings_and_mrr_by_the_closed_form(four):
    summary, ds = four
    e = _effects(summary)["a: renew"]
    for direction, r in (("minus", 0.72), ("plus", 0.88)):
        got = e[direction]
        assert _close(got["renewal_bookings"], N * 100 * (_renewals(r) - _renewals(0.8))), (direction, got)
        # active at the end of December: those that survived 11 renewals, each paying 100 a month
        assert _close(got["mrr"], N * 100 * (r ** 11 - 0.8 ** 11)), direction
        assert _close(got["active_customers"], N * (r ** 11 - 0.8 ** 11)), direction
    # every term lies inside the year and is recognised whole: recognised = renewals, trial by trial
    i = list(ds["lever"].values).index("a: renew")
    assert np.allclose(ds["recognised_revenue_difference"].values[i], ds["renewal_bookings_difference"].values[i],
                       rtol=1e-9, atol=1e-6)


def test_expansion_moves_renewal_bookings_exactly_and_an_expansion_of_0_is_not_run(four):
    summary, ds = four
    levers = list(ds["lever"].values)
    i = levers.index("b: expansion")  # renew 1: every customer renews 11 times, value 100 (1 + e)^k
    for j, e in enumerate((0.045, 0.055)):
        expected = N * 100 * sum((1 + e) ** k - 1.05 ** k for k in range(1, 12))
        assert np.allclose(ds["renewal_bookings_difference"].values[i, j], expected, rtol=1e-9)
        assert np.allclose(ds["recognised_revenue_difference"].values[i, j], expected, rtol=1e-9)
        assert np.allclose(ds["mrr_difference"].values[i, j], N * 100 * ((1 + e) ** 11 - 1.05 ** 11), rtol=1e-9)
    a = levers.index("a: expansion")
    assert np.all(np.isnan(ds["revenue_difference"].values[a]))
    why = [s for s in summary["skipped"] if s["lever"] == "a: expansion"]
    assert [s["direction"] for s in why] == ["-", "+"] and "changes nothing" in why[0]["why"]
    assert "minus" not in _effects(summary)["a: expansion"]


def test_a_renewal_probability_pushed_above_1_is_skipped_with_its_reason(four):
    summary, _ = four
    skipped = {(s["lever"], s["direction"]): s["why"] for s in summary["skipped"]}
    assert ("b: renew", "+") in skipped and ("all: renew", "+") in skipped
    assert "renew" in skipped[("b: renew", "+")]
    effects = _effects(summary)
    assert "minus" in effects["b: renew"] and "plus" not in effects["b: renew"]
    # b renews always, with expansion 0.05; at -10% with 0.9
    b = N * 100 * (_renewals(0.9, 0.05) - _renewals(1.0, 0.05))
    assert _close(effects["b: renew"]["minus"]["renewal_bookings"], b)
    # all: renew -10% moves a (0.72) and b (0.9) together: the sum of the two closed forms
    expected = N * 100 * (_renewals(0.72) - _renewals(0.8)) + b
    assert _close(effects["all: renew"]["minus"]["renewal_bookings"], expected)


def test_cancel_probability_moves_cancellations_and_recognised_revenue(four):
    summary, ds = four
    e = _effects(summary)["c: cancel probability"]
    for direction, q in (("minus", 0.18), ("plus", 0.22)):
        assert _close(e[direction]["cancellations"], N * 100 * (q - 0.2)), direction
    i = list(ds["lever"].values).index("c: cancel probability")
    # refund 1 on the win day: a cancelled deal recognises nothing and books -100
    cancelled = ds["cancellations_difference"].values[i]
    assert np.allclose(ds["recognised_revenue_difference"].values[i], -cancelled, atol=1e-6)
    assert np.allclose(ds["total_bookings_difference"].values[i], -cancelled, atol=1e-6)


def test_repeat_rate_and_dropout_move_repeat_revenue_by_the_closed_form(four):
    summary, _ = four
    effects = _effects(summary)
    for lever, moved in (("d: repeat per_month", lambda f: (0.5 * f, 0.2)), ("d: dropout", lambda f: (0.5, 0.2 * f))):
        for direction, f in (("minus", 0.9), ("plus", 1.1)):
            expected = N * 10 * (_repeats(*moved(f)) - _repeats(0.5, 0.2))
            got = effects[lever][direction]["repeat_revenue"]
            assert _close(got, expected), (lever, direction, got["mean"], expected)


def test_after_sale_levers_leave_revenue_won_deals_bit_identical(four):
    summary, ds = four
    after = [e["lever"] for e in summary["levers"] if e["kind"] in ("renew", "expansion", "per_month", "dropout",
                                                                     "cancel")]
    levers = list(ds["lever"].values)
    for name in after:
        i = levers.index(name)
        for metric in ("revenue", "won_deals"):
            values = ds[f"{metric}_difference"].values[i]
            moved = values[~np.isnan(values)]
            assert np.all(moved == 0), (name, metric)
    # and every metric of a scenario with customers is carried
    assert {"recognised_revenue", "total_bookings", "renewal_bookings", "repeat_revenue", "cancellations",
            "active_customers", "mrr"} <= set(summary["base"])
    assert summary["metric"] == "revenue"


# --- --metric ---------------------------------------------------------------------------------

def _size(effect, metric):
    return max([abs(effect[k][metric]["mean"]) for k in ("minus", "plus") if k in effect] or [0.0])


def test_metric_ranks_levers_by_that_metric_and_the_moves_read_it(tmp_path):
    path = _four(tmp_path, trials=300)
    by_revenue, _ = sens.sensitivity(path, threads=2)
    by_bookings, ds = sens.sensitivity(path, threads=2, metric="total_bookings")
    assert by_bookings["metric"] == "total_bookings"
    effects = _effects(by_bookings)
    sizes = [_size(effects[n], "total_bookings") for n in by_bookings["ranking"]]
    assert sizes == sorted(sizes, reverse=True)
    assert set(by_bookings["ranking"]) == set(by_revenue["ranking"])
    assert by_bookings["ranking"] != by_revenue["ranking"]  # renewals count now
    assert by_bookings["ranking"].index("a: renew") < by_revenue["ranking"].index("a: renew")
    # the same runs: the effects do not depend on the metric ranked by
    assert json.dumps(by_bookings["levers"]) == json.dumps(by_revenue["levers"])


def test_a_metric_the_scenario_does_not_report_is_a_clear_error(tmp_path):
    path = SCENARIOS / "minimal.yaml"
    with pytest.raises(fc.ForecasterError, match="recognised_revenue is not available"):
        sens.sensitivity(path, trials=50, metric="recognised_revenue")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(out), "--metric", "total_bookings",
                                    "--trials", "50"])
    assert res.exit_code == 2, res.output
    assert "total_bookings is not available" in res.output and "customer" in res.output
    assert "Traceback" not in res.output and not out.exists()
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(out), "--metric", "mrr"])
    assert res.exit_code == 2 and not out.exists()


def test_sensitivity_command_ranks_by_recognised_revenue(tmp_path):
    path = _four(tmp_path, trials=200)
    out = tmp_path / "s"
    res = CliRunner().invoke(main, ["sensitivity", str(path), "--out", str(out), "--metric", "recognised_revenue",
                                    "--threads", "2"])
    assert res.exit_code == 0, res.output
    assert "Effect on total recognised revenue, largest first" in res.output
    assert "skipped a: expansion" in res.output and "changes nothing" in res.output
    summary = json.loads((out / "sensitivity.json").read_text())
    assert summary["metric"] == "recognised_revenue"
    import xarray as xr

    with xr.open_dataset(out / "sensitivity.nc") as ds:
        assert {"recognised_revenue_difference", "total_bookings_difference", "mrr_difference"} <= set(ds.data_vars)


# --- a run's totals, variance shares ----------------------------------------------------------

def test_a_runs_totals_are_those_of_simulate_with_customers(tmp_path):
    _deals(tmp_path, "ab")
    path = _write(tmp_path, "team.yaml", HEAD.format(name="team", trials=300) + f"""\
segments:
  a:
    leads: {{per_day: 2}}
    funnel: {{close: {{convert: 0.4, days: {{dist: exponential, mean: 20}}}}}}
    deal_value: {{dist: lognormal, median: 100, sigma: 0.5}}
    customer:
      subscription: {{renew: {{dist: beta, mean: 0.85, concentration: 50}}, concentration: 10, expansion: 0.02}}
      cancel: {{probability: 0.1, days: {{dist: uniform, low: 0, high: 30}}}}
  b:
{WON}    customer:
      repeat: {{per_month: 0.5, dropout: 0.2, rate_cv: 1.0}}
pipeline: {{file: deals.csv}}
team:
  reps:
    - {{name: ana, segments: [a, b], quota: 3000}}
commission:
  period: month
  tiers: [{{up_to: 1.0, rate: 0.05}}, {{rate: 0.1}}]
  base: total_bookings
""")
    sc = fc.load_scenario(path)
    ds = fc.simulate(sc, trials=300, seed=9)
    run = sens._run(sc, 300, 9, keep_inputs=True)
    expected = {m: horizon_total(m, v) for m, v in per_trial_metrics(ds).items() if m in sens.METRICS}
    assert set(run.totals) == set(expected) == set(sens.METRICS)
    for metric, values in expected.items():
        assert np.array_equal(run.totals[metric], values), metric
    assert np.array_equal(run.totals["mrr"], ds["mrr"].values[:, -1])  # a stock's total: its level at the end
    assert np.array_equal(run.inputs, ds["inputs"].values)
    names = list(ds["quantity"].values)
    assert names[-5:] == ["renew", "expansion", "repeat.per_month", "dropout", "cancel.probability"]
    shares = sens._variance_shares(run.totals["recognised_revenue"], run.inputs, sc.segment_names, names)
    assert shares == sens.variance_shares(ds, sc, "recognised_revenue")
    assert "a.renew" in {s["input"] for s in shares}


def test_the_share_of_recognised_revenue_due_to_renew_is_the_closed_form(tmp_path):
    """Y = 100 x terms paid by N subscribers in 12 months; each pays T = min(G, 12) terms,
    P(T >= j) = r^(j-1), with r ~ Beta drawn per trial. S_renew = Var(E[Y|r]) / Var(Y), with
    Var(Y) = Var(E[Y|r]) + E[Var(Y|r)] and Var(Y|r) = N 100^2 Var(T|r)."""
    from scipy import integrate, stats

    _deals(tmp_path, "a", n=20)
    path = _write(tmp_path, "sobol.yaml", HEAD.format(name="sobol", trials=20000) + f"""\
segments:
  a:
{WON}    customer:
      subscription: {{renew: {{dist: beta, mean: 0.8, concentration: 30}}}}
pipeline: {{file: deals.csv}}
""")
    sc = fc.load_scenario(path)
    ds = fc.simulate(sc, threads=2)
    shares = {s["input"]: s["share"] for s in sens.variance_shares(ds, sc, "recognised_revenue")}
    law = stats.beta(0.8 * 30, 0.2 * 30)

    def moments(r):
        m1 = sum(r ** (j - 1) for j in range(1, 13))
        m2 = sum((2 * j - 1) * r ** (j - 1) for j in range(1, 13))
        return m1, m2 - m1 ** 2

    def expect(f):
        return integrate.quad(lambda r: f(r) * law.pdf(r), 0, 1, limit=200)[0]

    n = 20
    mean_y = expect(lambda r: n * 100 * moments(r)[0])
    var_mean = expect(lambda r: (n * 100 * moments(r)[0]) ** 2) - mean_y ** 2
    mean_var = expect(lambda r: n * 100 ** 2 * moments(r)[1])
    assert shares["a.renew"] == pytest.approx(var_mean / (var_mean + mean_var), abs=0.02)
    assert set(shares) == {"a.renew"}
    # revenue does not vary (the deals are fixed): no share of it is due to renew
    assert sens.variance_shares(ds, sc) == [{"input": "a.renew", "share": 0.0, "share_noise": 0.0}]


# --- compare ---------------------------------------------------------------------------------

COMPARED = """\
segments:
  smb:
    leads: {per_day: 3}
    funnel:
      close: {convert: {dist: beta, mean: 0.3, concentration: 50}, days: {dist: gamma, mean: 25, cv: 0.5}}
    deal_value: {dist: lognormal, median: 500, sigma: 0.5}
    customer:
      subscription: {renew: {dist: beta, mean: 0.85, concentration: 100}, concentration: 20, expansion: 0.01}
      cancel: {probability: 0.05, days: {dist: uniform, low: 0, high: 30}}
  shop:
    leads: {per_day: 5}
    funnel:
      close: {convert: 0.5, days: 3}
    deal_value: 60
    customer:
      repeat: {per_month: 0.4, dropout: 0.25, rate_cv: 1.2, value: {dist: lognormal, median: 40, sigma: 0.3}}
team:
  reps:
    - {name: ana, segments: [smb, shop], quota: 20000}
commission:
  period: quarter
  tiers: [{up_to: 1.0, rate: 0.05}, {rate: 0.1}]
"""


def test_a_variant_of_after_sale_keys_only_moves_the_after_sale_outputs_only(tmp_path):
    base = _write(tmp_path, "base.yaml", HEAD.format(name="base", trials=1000) + COMPARED)
    variant = _write(tmp_path, "v.yaml", """\
    name: stickier
    set:
      segments.smb.customer.subscription.renew: 0.95
      segments.shop.customer.repeat.dropout: 0.1
    scale:
      segments.smb.customer.subscription.expansion: 2
      segments.smb.customer.cancel.probability: 0.5
      segments.shop.customer.repeat.per_month: 1.2
    """)
    ds = compare(fc.load_scenario(base), [load_variant(variant, base)], threads=2)
    for metric in ("revenue", "won_deals", "commission"):  # every draw of the deals is shared: exactly 0
        assert np.all(ds[f"{metric}_difference"].values == 0), metric
    for metric in ("recognised_revenue", "total_bookings", "renewal_bookings", "repeat_revenue", "mrr"):
        assert np.any(ds[f"{metric}_difference"].values[1] != 0), metric
    summary = compare_summary(ds)
    diff = summary["differences"]["stickier"]
    assert diff["revenue"]["total"]["mean"] == 0 and diff["revenue"]["total"]["probability_higher"] == 0
    assert diff["recognised_revenue"]["total"]["mean"] > 0 and diff["renewal_bookings"]["total"]["mean"] > 0
    # a stock's total is its level at the end, not a sum over periods
    active = ds["active_customers"].values
    assert summary["scenarios"]["stickier"]["active_customers"]["total"]["mean"] == pytest.approx(active[1, :, -1].mean())
    assert ds["active_customers"].attrs["kind"] == "stock" and ds["active_customers"].attrs["units"] == "customers"


def _without_customers(text: str) -> str:
    """``text`` without its segments' ``customer`` blocks."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.strip() == "customer:":
            skipping = True
        elif not (skipping and line.startswith("      ")):
            skipping = False
            out.append(line)
    return "\n".join(out) + "\n"


def test_compare_reports_after_sale_outputs_only_when_every_scenario_has_them(tmp_path):
    base = _write(tmp_path, "base.yaml", HEAD.format(name="base", trials=200) + COMPARED)
    other = _write(tmp_path, "plain.yaml", HEAD.format(name="plain", trials=200) + _without_customers(COMPARED))
    assert not fc.load_scenario(other).has_customers
    ds = compare(fc.load_scenario(base), [fc.load_scenario(other)], threads=2)
    assert "recognised_revenue" not in ds and "revenue_difference" in ds
    # the deals are the same: customer keys draw nothing from the deals' streams
    assert np.all(ds["revenue_difference"].values == 0)


def test_compare_command_prints_the_after_sale_tables(tmp_path):
    base = _write(tmp_path, "base.yaml", HEAD.format(name="base", trials=200) + COMPARED)
    variant = _write(tmp_path, "v.yaml", """\
    name: stickier
    set:
      segments.smb.customer.subscription.renew: 0.95
    """)
    out = tmp_path / "c"
    res = CliRunner().invoke(main, ["compare", str(base), str(variant), "--out", str(out), "--threads", "2"])
    assert res.exit_code == 0, res.output
    for title in ("Revenue, total over the horizon", "Recognised revenue, total over the horizon",
                  "Renewal bookings, total over the horizon", "MRR, at the end of the horizon",
                  "Active customers, at the end of the horizon"):
        assert title in res.output, title
    summary = json.loads((out / "compare.json").read_text())
    assert {"recognised_revenue", "mrr", "churned_customers"} <= set(summary["differences"]["stickier"])
