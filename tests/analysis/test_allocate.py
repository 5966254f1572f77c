"""Budget allocation against closed forms: two channels whose revenue per month is known
exactly, so the best split solves a_1 B_1^(β_1 - 1) = a_2 B_2^(β_2 - 1) (equal marginal returns).

Every channel below has fixed rates, ``convert: 1``, ``days: 0`` and ``deal_value: 1``: a lead
is a deal of value 1, won the day it arrives, so the expected revenue over the 3 months
(January to March 2027) of channel i at budget B is 3 (B0_i / c_i) g_i(B) / g_i(B0_i).

**Tolerance.** The search ends at steps of R / 512 (R: the budget left after the minimums), on
the simulated objective, whose maximiser differs from the true one by Monte Carlo noise. Near
the optimum the true objective loses ½ |F''| (B_1 - B_1*)² and the simulated difference of two
splits has a paired standard error s (measured here by running the found split and the true
optimum on the same random numbers); the search can prefer a split over the optimum only while
its loss is within a few such errors. So the test allows |B_1 - B_1*| <= step + sqrt(2 · 5 s / |F''|)
(5 standard errors, as the contract's Monte Carlo checks), and also checks that the found split's
true expected revenue is within 5 s of the optimum's.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from scipy.optimize import brentq

import forecaster as fc
from forecaster.analysis.allocate import (
    MARGINAL_STEP,
    Channel,
    _Evaluator,
    allocate,
    even_split,
    parse_bounds,
    parse_quantile,
    response_factor,
    search,
)
from forecaster.analysis.compare import compare
from forecaster.engine import kernels
from forecaster.engine.interface import HILL, NO_RESPONSE, POWER
from forecaster.errors import ForecasterError

MONTHS = 3
TOTAL = 200_000.0


def channel(name: str, cost: float, response: str, budget: float = 100_000, reference: float = 100_000) -> str:
    return f"""\
  {name}:
    leads:
      budget_per_month: {budget}
      cost_per_lead: {cost}
      response: {{reference_budget: {reference}, {response}}}
    funnel:
      lead: {{convert: 1, days: 0}}
    deal_value: 1
"""


def write(tmp_path, *channels: str, extra: str = "", name: str = "two") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        start: 2027-01-01
        end: 2027-03-31
        trials: 2000
        seed: 5
        stages: [lead]
        """) + "segments:\n" + "".join(channels) + extra)
    return str(path)


def power_revenue(b, cost, beta, b0=100_000.0):
    """Expected revenue over the horizon of a power channel at budget ``b``."""
    return MONTHS * (b0 / cost) * (b / b0) ** beta


def totals_at(path, splits, names, trials=2000, seed=5):
    """Per-trial total revenue at each split, by `compare` (whole runs, common random numbers)."""
    base = fc.load_scenario(path)
    from forecaster.scenario.loading import build_scenario, read_document
    from forecaster.scenario.variants import apply_changes

    data, _, raw = read_document(path)
    variants = []
    for i, split in enumerate(splits):
        doc, problems = apply_changes(data, {"set": {f"segments.{n}.leads.budget_per_month": float(b)
                                                     for n, b in zip(names, split)} | {"name": f"v{i}"}}, "")
        assert not problems
        variants.append(build_scenario(doc, {}, path, base_dir=base.source.parent, raw=raw, source=base.source))
    ds = compare(base, variants, trials=trials, seed=seed, threads=1)
    return ds["revenue"].sum("period").values[1:]


def check_near_optimum(path, summary, optimum, revenue, names=("a", "b")):
    """The found split against the true optimum (see the module docstring's tolerance)."""
    found = np.array([summary["best"]["split"][n] for n in names])
    got, best = totals_at(path, [found, optimum], names)
    d = got - best
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    h, x = 1000.0, optimum[0]  # |F''| by a central difference of the closed form along the transfer a -> b
    f = [revenue(np.array([x + s, TOTAL - x - s])) for s in (-h, 0.0, h)]
    curvature = abs(f[0] - 2 * f[1] + f[2]) / h ** 2
    tolerance = summary["search"]["last_step"] + math.sqrt(2 * 5 * max(se, 1e-9) / curvature)
    assert abs(found[0] - optimum[0]) <= tolerance, (found, optimum, tolerance)
    assert revenue(optimum) - revenue(found) <= 5 * max(se, 1e-9) + 1e-9
    assert tolerance < 0.05 * TOTAL  # a test that could fail: the tolerance is a small share of the budget
    return found


def test_equal_elasticities_split_as_the_closed_form(tmp_path):
    """β_1 = β_2 = 0.5, costs 100 and 200: B_i ∝ a_i^(1/(1-β)) with a_i ∝ 1 / c_i, so B = (160000, 40000)."""
    path = write(tmp_path, channel("a", 100, "curve: power, elasticity: 0.5"),
                 channel("b", 200, "curve: power, elasticity: 0.5"))
    summary = allocate(path, total_budget=TOTAL, trials=2000, seed=5, threads=1)
    beta, a = 0.5, np.array([(1e5 / 100) * 1e5 ** -0.5 * 0.5, (1e5 / 200) * 1e5 ** -0.5 * 0.5])
    weights = a ** (1 / (1 - beta))
    optimum = TOTAL * weights / weights.sum()
    assert optimum == pytest.approx([160_000, 40_000])

    def revenue(split):
        return power_revenue(split[0], 100, 0.5) + power_revenue(split[1], 200, 0.5)

    check_near_optimum(path, summary, optimum, revenue)
    # better than the file's even split, on the closed form and on the simulation's paired difference
    assert revenue(np.array(list(summary["best"]["split"].values()))) > revenue(np.array([1e5, 1e5]))
    assert summary["difference"]["mean_ci_low"] > 0
    want = revenue(optimum) - revenue(np.array([1e5, 1e5]))  # 4743.4 - 4500 = 243.4
    assert summary["difference"]["mean"] == pytest.approx(want, abs=5 * summary["difference"]["half_width"] + 5)
    # the current split's forecast is the file's run, as `forecaster run` gives it
    ds = fc.simulate(fc.load_scenario(path), trials=2000, seed=5)
    assert summary["current"]["forecast"]["mean"] == pytest.approx(float(ds["revenue"].sum("period").mean()), rel=1e-12)
    # marginal returns at the optimum: equal, each d/dB of the closed form times 1,000
    for name, cost, b in (("a", 100, optimum[0]), ("b", 200, optimum[1])):
        m = summary["marginal_return"][name]
        exact = MONTHS * (1e5 / cost) * 0.5 * b ** -0.5 * 1e5 ** -0.5 * MARGINAL_STEP  # 11.86
        half = m["mean_ci_high"] - m["mean"]
        assert abs(m["mean"] - exact) <= 5 * half / 1.96 + 0.02 * exact, (name, m, exact)
    assert summary["search"]["runs"] == summary["search"]["source_runs"] + summary["search"]["whole_runs"]
    assert summary["search"]["whole_runs"] == 1 and summary["search"]["seconds"] > 0


def test_unequal_elasticities_meet_where_marginal_returns_are_equal(tmp_path):
    """β = (0.5, 0.7), costs (100, 150): the optimum solves a_1 B_1^(β_1-1) = a_2 (T - B_1)^(β_2-1)."""
    betas, costs = (0.5, 0.7), (100, 150)
    path = write(tmp_path, channel("a", costs[0], f"curve: power, elasticity: {betas[0]}"),
                 channel("b", costs[1], f"curve: power, elasticity: {betas[1]}"))
    summary = allocate(path, total_budget=TOTAL, threads=1)
    a = [(1e5 / c) * 1e5 ** -b * b for b, c in zip(betas, costs)]
    b1 = brentq(lambda x: a[0] * x ** (betas[0] - 1) - a[1] * (TOTAL - x) ** (betas[1] - 1), 1.0, TOTAL - 1.0)
    optimum = np.array([b1, TOTAL - b1])

    def revenue(split):
        return sum(power_revenue(s, c, b) for s, c, b in zip(split, costs, betas))

    assert 60_000 < b1 < 140_000  # not an even split, nor a corner
    check_near_optimum(path, summary, optimum, revenue)


def test_hill_channel(tmp_path):
    """A Hill channel (K = 50,000, slope 1) against a power one: revenue a month of the Hill
    channel is (B0/c) (B / (K + B)) (K + B0) / B0, whose derivative is (B0/c) (K + B0) / B0 · K / (K + B)²."""
    path = write(tmp_path, channel("a", 100, "curve: power, elasticity: 0.5"),
                 channel("b", 100, "curve: hill, half_saturation: 50000, slope: 1"))
    summary = allocate(path, total_budget=TOTAL, threads=1)
    k, b0 = 50_000.0, 1e5

    def hill_revenue(b, cost=100):
        return MONTHS * (b0 / cost) * (b / (k + b)) * (k + b0) / b0

    def revenue(split):
        return power_revenue(split[0], 100, 0.5) + hill_revenue(split[1])

    d_power = lambda x: MONTHS * (b0 / 100) * 0.5 * x ** -0.5 * b0 ** -0.5  # noqa: E731
    d_hill = lambda x: MONTHS * (b0 / 100) * (k + b0) / b0 * k / (k + x) ** 2  # noqa: E731
    b1 = brentq(lambda x: d_power(x) - d_hill(TOTAL - x), 1.0, TOTAL - 1.0)
    optimum = np.array([b1, TOTAL - b1])
    assert 20_000 < b1 < 180_000
    check_near_optimum(path, summary, optimum, revenue)
    assert summary["curves"]["b"]["curve"] == "hill"


def test_bounds_bind(tmp_path):
    """The unbounded optimum is (160000, 40000): --max a=120000 and --min b=90000 hold it back to the bound."""
    path = write(tmp_path, channel("a", 100, "curve: power, elasticity: 0.5"),
                 channel("b", 200, "curve: power, elasticity: 0.5"))
    capped = allocate(path, total_budget=TOTAL, maximums={"a": 120_000}, threads=1)
    assert capped["best"]["split"]["a"] == pytest.approx(120_000, abs=1e-6)
    assert capped["best"]["split"]["b"] == pytest.approx(80_000, abs=1e-6)
    floored = allocate(path, total_budget=TOTAL, minimums={"b": 90_000}, threads=1)
    assert floored["best"]["split"] == pytest.approx({"a": 110_000, "b": 90_000}, abs=1e-6)
    assert floored["channels"][1]["min"] == 90_000 and floored["channels"][0]["max"] is None
    # a bound that does not bind leaves the optimum where it was (within the search's step and noise)
    loose = allocate(path, total_budget=TOTAL, maximums={"a": 190_000}, minimums={"b": 10_000}, threads=1)
    assert abs(loose["best"]["split"]["a"] - 160_000) < 6_000


def test_quantile_is_cautious_with_the_uncertain_channel(tmp_path):
    """Channel b's elasticity is uncertain (uniform 0.3 to 0.9), a's is not (0.6), both referred
    to 20,000 a month: at 5 times the reference b's leads vary by 5^β, and the more it gets the
    more they vary. Maximising the P10 of revenue gives b less than maximising its mean does
    (E[5^β] = 2.73 > 5^0.6 = 2.63: the mean favours b a little), and the P10 is higher there."""
    path = write(tmp_path, channel("a", 100, "curve: power, elasticity: 0.6", reference=20_000),
                 channel("b", 100, "curve: power, elasticity: {dist: uniform, low: 0.3, high: 0.9}",
                         reference=20_000))
    mean = allocate(path, total_budget=TOTAL, threads=1)
    p10 = allocate(path, total_budget=TOTAL, quantile=0.1, threads=1)
    assert p10["objective"] == "p10" and mean["objective"] == "mean"
    assert p10["best"]["split"]["b"] < mean["best"]["split"]["b"] - 10_000
    # the objective is reported, and is the P10 of the forecast at the split
    assert p10["best"]["forecast"]["objective"] == pytest.approx(p10["best"]["forecast"]["p10"])
    # on the same random numbers, each split is best for its own objective
    at = totals_at(path, [list(mean["best"]["split"].values()), list(p10["best"]["split"].values())], ["a", "b"])
    assert np.percentile(at[1], 10) >= np.percentile(at[0], 10)
    assert at[0].mean() >= at[1].mean()


def test_budget_by_month_scales_with_the_budget(tmp_path):
    """A month in budget_by_month is scaled by the segment's factor: the totals at a split are
    those of a file whose budget_per_month and budget_by_month were both scaled by it."""
    path = write(tmp_path, channel("a", 100, "curve: power, elasticity: 0.5").replace(
        "      cost_per_lead", "      budget_by_month: {2: 50000}\n      cost_per_lead"),
        channel("b", 200, "curve: power, elasticity: 0.5"))
    sc = fc.load_scenario(path)
    from forecaster.scenario.loading import read_document

    data, _, raw = read_document(path)
    channels = [Channel("a", 0, 1e5, (2,)), Channel("b", 1, 1e5)]
    ev = _Evaluator(path, data, raw, sc, channels, "revenue", 500, 3, 1, True)
    scaled = ev.scenario({0: 150_000.0})
    assert scaled.segments["a"].leads.budget_per_month == 150_000
    assert scaled.segments["a"].leads.budget_by_month == {2: 75_000}
    assert scaled.segments["b"].leads == sc.segments["b"].leads


ORGANIC = "  organic:\n    leads: {per_week: 50}\n    funnel: {lead: {convert: 1, days: 0}}\n    deal_value: 1\n"


@pytest.mark.parametrize("kind", ["capacity", "customers", "organic-first"])
def test_sources_add_up_to_the_whole_run(tmp_path, kind):
    """The search's totals at a split, from each segment's source run and the fixed part, equal
    a whole run's at that split trial by trial; with a capacity every split is a whole run.
    (organic-first: a segment that does not buy its leads comes first, so a bought segment's
    index among the segments is not its index among the bought ones.)"""
    extra = "capacity: {won_per_month: 100000}\n" if kind == "capacity" else ""
    a, b = channel("a", 100, "curve: power, elasticity: 0.5"), channel("b", 200, "curve: power, elasticity: 0.5")
    if kind == "organic-first":
        a = ORGANIC + a
    metric = "revenue"
    if kind == "customers":  # fewer leads: each is a customer with a life of its own
        sub = ("    customer:\n      subscription: {term_months: 1, renew: {dist: beta, mean: 0.9, concentration: 100}}\n")
        a = channel("a", 2000, "curve: power, elasticity: 0.5") + sub
        b = channel("b", 4000, "curve: power, elasticity: 0.5") + sub
        metric = "total_bookings"
    path = write(tmp_path, a, b, extra=extra)
    summary = allocate(path, total_budget=TOTAL, metric=metric, trials=400, threads=2)
    whole = summary["search"]["whole_runs"]
    assert (whole > 1 and summary["search"]["source_runs"] == 0) if kind == "capacity" else whole == 1
    if kind == "organic-first":  # and the search finds the closed form's split there too
        assert abs(summary["best"]["split"]["a"] - 160_000) < 15_000
        assert summary["marginal_return"]["a"]["mean_ci_low"] > 0
    sc = fc.load_scenario(path)
    from forecaster.scenario.loading import read_document

    data, _, raw = read_document(path)
    first = 1 if kind == "organic-first" else 0
    channels = [Channel("a", first, 1e5), Channel("b", first + 1, 1e5)]
    from concurrent.futures import ThreadPoolExecutor

    split = np.array([137_000.0, 63_000.0])
    with ThreadPoolExecutor(2) as pool:
        wholes = _Evaluator(path, data, raw, sc, channels, metric, 400, 9, 2, False, pool=pool)
        wholes.start()
        y = wholes.totals([split])[0]
        base = wholes.totals([np.array([1e5, 1e5])])[0]
        if kind == "capacity":  # a whole run is compare's run of that split
            x = totals_at(path, [split], ["a", "b"], trials=400, seed=9)[0]
        else:
            by_source = _Evaluator(path, data, raw, sc, channels, metric, 400, 9, 2, True, pool=pool)
            by_source.start()
            x = by_source.totals([split])[0]
    assert np.abs(x - y).max() <= 1e-9 * np.abs(y).max()
    assert not np.array_equal(y, base)  # the split moved the totals


def test_response_factor_matches_the_kernel():
    x = np.array([0.0, 0.3, 1.0, 1.6, 100.0])
    for curve, code, args in (("power", POWER, (0.5, 0.0, 0.0)), ("hill", HILL, (0.0, math.sqrt(1.6), 1.0)),
                              ("hill", HILL, (0.0, 0.7, 2.5))):
        got = response_factor(curve, x, *args)
        want = [kernels.response_factor(code, float(v), *args) for v in x]
        assert got == pytest.approx(want, rel=1e-12)
    assert response_factor(None, x) == pytest.approx(x)
    assert kernels.response_factor(NO_RESPONSE, 2.0, 0.5, 1.0, 1.0) == 1.0
    # v2 C.6.2: at 100 B0 the Hill curve of n = 1, K = sqrt(1.6) B0 gives 2.236620 times the leads at B0
    assert response_factor("hill", np.array([100.0]), 0.0, math.sqrt(1.6), 1.0)[0] == pytest.approx(2.236620, abs=1e-6)


def test_search_on_a_known_concave_function():
    """The search alone, on a deterministic separable objective with a known maximiser: within its last step."""
    w = np.array([1.0, 2.0, 3.0])

    def evaluate(splits):
        return [np.array([float(np.sum(w * np.sqrt(s)))]) for s in splits]

    low, high = np.zeros(3), np.full(3, np.inf)
    best, how = search(evaluate, lambda v: float(v[0]), low, high, 1400.0)
    want = 1400.0 * w ** 2 / np.sum(w ** 2)  # 100, 400, 900
    assert best == pytest.approx(want, abs=2 * how["last_step"])
    assert best.sum() == pytest.approx(1400.0)
    assert even_split([Channel("x", 0, 0, (), 0, 100), Channel("y", 1, 0, (), 500, math.inf)], 1000) \
        == pytest.approx([100, 900])


def test_parsing_of_options():
    assert parse_quantile("P10") == pytest.approx(0.1) and parse_quantile("p2.5") == pytest.approx(0.025)
    assert parse_quantile(None) is None
    for bad in ("10", "P0", "P100", "Q10", "P-5", "median"):
        with pytest.raises(ForecasterError, match="expected P followed by a percentage"):
            parse_quantile(bad)
    assert parse_bounds(["a=1000", "b = 2,500"], "--min") == {"a": 1000.0, "b": 2500.0}
    for bad in ("a", "a=", "=5", "a=-1", "a=x", "a=nan"):
        with pytest.raises(ForecasterError, match="expected SEGMENT=AMOUNT"):
            parse_bounds([bad], "--max")
    with pytest.raises(ForecasterError, match="given twice"):
        parse_bounds(["a=1", "a=2"], "--min")


def test_bad_input(tmp_path):
    two = write(tmp_path, channel("a", 100, "curve: power, elasticity: 0.5"),
                channel("b", 200, "curve: power, elasticity: 0.5"),
                extra="  organic:\n    leads: {per_week: 10}\n    funnel: {lead: {convert: 1, days: 0}}\n"
                      "    deal_value: 1\n")
    cases = [
        (dict(minimums={"c": 1}), r"--min c: .*has no segment 'c'; the bought segments are: a, b"),
        (dict(maximums={"organic": 1}), r"--max organic: segment organic .* does not buy its leads \(it has "
                                        r"leads.per_week, not budget_per_month\)"),
        (dict(minimums={"a": 150_000, "b": 60_000}), "the minimums sum to 210,000, more than --total-budget 200,000"),
        (dict(maximums={"a": 50_000, "b": 60_000}), "they sum to 110,000, less than --total-budget 200,000"),
        (dict(minimums={"a": 10}, maximums={"a": 5}), "--min a=10 is above --max a=5"),
        (dict(metric="total_bookings"), "metric total_bookings is not available"),
        (dict(total_budget=0), "--total-budget 0: expected a monthly budget > 0"),
    ]
    for kwargs, message in cases:
        kwargs = {"total_budget": TOTAL, **kwargs}
        with pytest.raises(ForecasterError, match=message):
            allocate(two, **kwargs)
    none = write(tmp_path, "  organic:\n    leads: {per_week: 10}\n    funnel: {lead: {convert: 1, days: 0}}\n"
                           "    deal_value: 1\n", name="none")
    with pytest.raises(ForecasterError, match="no segment buys its leads"):
        allocate(none, total_budget=TOTAL)
