"""Calendar periods, commission arithmetic, summaries and written outputs."""
from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pytest
from conftest import SCENARIOS
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import forecaster as fc
from forecaster.calendar import day_calendar, periods
from forecaster.results.commission import commission_by_period, commission_per_quota_period
from forecaster.results.outputs import write_outputs
from forecaster.results.summary import describe
from forecaster.scenario.model import Commission, Tier

# --- calendar ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,start,end,starts", [
    ("week", date(2027, 1, 1), date(2027, 1, 20), ["2027-01-01", "2027-01-04", "2027-01-11", "2027-01-18"]),
    ("month", date(2027, 1, 15), date(2027, 3, 2), ["2027-01-15", "2027-02-01", "2027-03-01"]),
    ("quarter", date(2026, 11, 20), date(2027, 7, 1), ["2026-11-20", "2027-01-01", "2027-04-01", "2027-07-01"]),
    ("day", date(2028, 2, 27), date(2028, 3, 1), ["2028-02-27", "2028-02-28", "2028-02-29", "2028-03-01"]),
])
def test_periods_are_calendar_periods_cut_to_the_horizon(kind, start, end, starts):
    p = periods(start, end, kind)
    assert [d.isoformat() for d in p.starts] == starts
    assert p.of_day.shape == ((end - start).days + 1,)
    assert p.of_day[0] == 0 and p.of_day[-1] == len(starts) - 1
    assert p.last_day[-1] == (end - start).days
    assert np.all(np.diff(p.of_day) >= 0)


def test_growth_exponent_counts_whole_calendar_months():
    month, month_len, elapsed = day_calendar(date(2027, 1, 30), date(2027, 3, 1))
    assert list(elapsed[:3]) == [0, 0, 1] and elapsed[-1] == 2
    assert list(month_len[:3]) == [31, 31, 28] and month[-1] == 3


# --- commission ----------------------------------------------------------------------------

PLAN = Commission("quarter", (Tier(0.04, 0.5), Tier(0.08, 1.0), Tier(0.12, 1.5), Tier(0.15)), cap=60000)


def test_commission_bands_exactly():
    bookings = np.array([[[0.0, 40000, 130000, 1e6, 150000]]])
    quotas = np.full(5, 100000.0)
    got = commission_per_quota_period(bookings, quotas, PLAN)[0, 0]
    assert list(got) == [0.0, 1600.0, 9600.0, 60000.0, 12000.0]


def test_commission_is_placed_where_it_is_paid():
    earned = np.arange(2 * 3 * 1, dtype=float).reshape(2, 3, 1)
    out = commission_by_period(earned, np.array([1, 1, 3]), 4)
    assert out[:, :, 0].tolist() == [[0, 1, 0, 2], [0, 7, 0, 5]]


@settings(max_examples=200, deadline=None)
@given(b=arrays(float, 20, elements=st.floats(0, 1e7)), quota=st.floats(1e3, 1e6),
       rates=st.lists(st.floats(0, 0.5), min_size=1, max_size=5), cap=st.one_of(st.none(), st.floats(1, 1e6)))
def test_commission_properties(b, quota, rates, cap):
    tiers = tuple(Tier(r, (i + 1) * 0.5 if i < len(rates) - 1 else None) for i, r in enumerate(rates))
    plan = Commission("month", tiers, cap)
    b = np.sort(b)
    c = commission_per_quota_period(b[None, :, None], np.array([quota]), plan)[0, :, 0]
    assert np.all(c >= 0)
    assert np.all(c <= max(rates) * b + 1e-6)                 # never more than the top rate on everything
    assert np.all(np.diff(c) >= -1e-6)                          # more bookings never pay less
    if cap is not None:
        assert np.all(c <= cap)


# --- summaries -----------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(arrays(float, (st.integers(2, 60).map(lambda n: (n, 2))), elements=st.floats(-1e6, 1e6)))
def test_describe_orders_quantiles_and_brackets_the_mean(x):
    for s in describe(x):
        assert s["p5"] <= s["p10"] <= s["p50"] <= s["p90"] <= s["p95"]
        assert s["mean_ci_low"] <= s["mean"] + 1e-9 and s["mean"] <= s["mean_ci_high"] + 1e-9


def test_describe_matches_its_definition():
    x = np.random.default_rng(1).gamma(2.0, 3.0, size=(1001, 1))
    s = describe(x)[0]
    assert math.isclose(s["std"], x[:, 0].std(ddof=1))
    assert math.isclose(s["p90"], np.percentile(x[:, 0], 90))
    assert math.isclose(s["mean_ci_high"] - s["mean"], 1.959963984540054 * s["std"] / math.sqrt(1001))


def test_percentiles_interpolate_linearly_where_methods_differ():
    # 11 values 0, 10, ..., 100 and 4 values: with few trials "lower", "nearest", "higher" and
    # "linear" give different percentiles; the contract says linear (numpy's default)
    s = describe(np.arange(0.0, 101.0, 10.0)[:, None])[0]
    assert (s["p5"], s["p10"], s["p50"], s["p90"], s["p95"]) == pytest.approx((5.0, 10.0, 50.0, 90.0, 95.0))
    s = describe(np.array([[1.0], [2.0], [4.0], [8.0]]))[0]
    # linear: position q (n - 1) / 100 between order statistics
    assert s["p10"] == pytest.approx(1.3) and s["p50"] == pytest.approx(3.0) and s["p90"] == pytest.approx(6.8)
    assert s["p5"] == pytest.approx(1.15) and s["p95"] == pytest.approx(7.4)


def test_one_trial_has_no_standard_deviation_and_still_writes_json(tmp_path):
    sc = fc.load_scenario(SCENARIOS / "minimal.yaml")
    ds = fc.simulate(sc, trials=1)
    summary = fc.summarize(ds, sc)
    assert summary["metrics"]["revenue"]["total"]["std"] is None
    write_outputs(tmp_path / "one", ds, summary)
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["trials"] == 1


def test_summary_and_dataset_of_the_saas_example(tmp_path):
    sc = fc.load_scenario(SCENARIOS / "saas-quarter.yaml")
    ds = fc.simulate(sc, trials=1000)
    s = fc.summarize(ds, sc)
    assert set(s["metrics"]) == {"revenue", "won_deals", "commission"}
    assert set(s["reps"]) == {"ana", "ben", "chloe", "dev", "eli", "fay"}
    assert math.isclose(sum(seg["revenue"]["total"]["mean"] for seg in s["segments"].values()),
                        s["metrics"]["revenue"]["total"]["mean"], rel_tol=1e-9)
    assert math.isclose(sum(r["commission"]["total"]["mean"] for r in s["reps"].values()),
                        s["metrics"]["commission"]["total"]["mean"], rel_tol=1e-9)
    assert s["targets"]["revenue"]["probability"] == float(np.mean(ds["revenue"].sum("period").values >= 4.5e6))
    assert ds["revenue"].attrs["units"] == "USD" and ds.attrs["scenario_sha256"] == sc.sha256
    written = write_outputs(tmp_path / "out", ds, s)
    import xarray as xr
    with xr.open_dataset(written["forecast.nc"]) as back:
        assert np.array_equal(back["commission"].values, ds["commission"].values)
        assert list(back["rep"].values) == list(ds["rep"].values)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["forecast.nc", "summary.json"]


def test_outputs_refuse_a_file_in_place_of_the_folder(tmp_path):
    (tmp_path / "taken").write_text("x")
    sc = fc.load_scenario(SCENARIOS / "minimal.yaml")
    ds = fc.simulate(sc, trials=10)
    with pytest.raises(fc.OutputError, match="exists and is not a folder"):
        write_outputs(tmp_path / "taken", ds, fc.summarize(ds, sc))


def test_streamed_file_equals_the_in_memory_dataset_whatever_the_chunking(tmp_path, monkeypatch):
    import xarray as xr

    from forecaster.results import layout as results_layout
    from forecaster.results.outputs import run_to_folder

    sc = fc.load_scenario(SCENARIOS / "saas-quarter.yaml").with_run(trials=1700, seed=9)
    mem = fc.simulate(sc)
    expected = fc.summarize(mem, sc)
    for chunk_bytes in (results_layout.CHUNK_BYTES, 1):  # one chunk; then one block (1,000 trials) per chunk
        monkeypatch.setattr(results_layout, "CHUNK_BYTES", chunk_bytes)
        out = tmp_path / f"c{chunk_bytes}"
        summary = run_to_folder(sc, out)
        assert summary == expected
        assert json.loads((out / "summary.json").read_text()) == expected
        with xr.open_dataset(out / "forecast.nc") as back:
            back = back.load()
        assert set(back.data_vars) == set(mem.data_vars)
        for name in mem.variables:
            assert np.array_equal(back[name].values, mem[name].values), name
            assert back[name].dims == mem[name].dims, name
        assert back.attrs == mem.attrs


def test_columns_select_and_sum():
    from forecaster.results.layout import Columns

    x = np.arange(5 * 3 * 2, dtype=float).reshape(5, 3, 2)
    cols = Columns({"x": x}, 5, rows=2)
    assert np.array_equal(cols.column("x", (1, 0)), x[:, 1, 0])
    assert np.array_equal(cols.column("x", (None, 1)), x[:, :, 1].sum(axis=1))
    assert np.array_equal(cols.column("x", (None, None)), x.sum(axis=(1, 2)))


def test_funnel_expectation_matches_the_closed_form(tmp_path):
    text = """\
    name: f
    start: 2027-01-01
    end: 2027-03-31
    trials: 20000
    stages: [a, b]
    segments:
      s:
        leads: {per_month: 300, growth_per_month: 0.1, seasonality: {2: 2}}
        funnel:
          a: {convert: {dist: beta, mean: 0.4, concentration: 10}, days: 3}
          b: {convert: 0.5, days: 3}
        deal_value: 1
    """
    import textwrap
    (tmp_path / "f.yaml").write_text(textwrap.dedent(text))
    sc = fc.load_scenario(tmp_path / "f.yaml")
    funnel = fc.summarize(fc.simulate(sc), sc)["funnel"]["s"]
    arrivals = 300 * (1 + 2 * 1.1 + 1.21)
    assert funnel["stages"][0]["entering"] == pytest.approx(arrivals, rel=1e-9)
    assert funnel["stages"][1]["entering"] == pytest.approx(arrivals * 0.4, rel=0.01)  # beta mean, 20,000 draws
    assert funnel["won_eventually"] == pytest.approx(arrivals * 0.2, rel=0.01)
