"""Exports (issue 14, "numbers out"): the tables' numbers are the summary's, bit for bit; the
Parquet rows are forecast.nc's arrays; every number's header has a unit; a failed or
interrupted export leaves the previous results and nothing of its own."""
from __future__ import annotations

import csv
import errno
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import openpyxl
import pytest
import xarray as xr
from conftest import SCENARIOS

import forecaster as fc
from forecaster.errors import OutputError
from forecaster.present import export
from forecaster.present.export import (
    Units,
    compare_tables,
    generic_table,
    parse_formats,
    run_tables,
    run_with_exports,
    sensitivity_tables,
    tables_for,
    write_together_with_exports,
)
from forecaster.results import files
from forecaster.results.outputs import run_to_folder

SAAS = SCENARIOS / "saas-quarter.yaml"
SUBSCRIPTIONS = SCENARIOS / "saas-subscriptions.yaml"
ALL = ("csv", "xlsx", "parquet")


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def number(text: str) -> float | None:
    return None if text == "" else float(text)


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


@pytest.fixture(scope="module")
def saas(tmp_path_factory):
    """saas-quarter, 600 trials, with every export."""
    out = tmp_path_factory.mktemp("saas") / "out"
    summary, names = run_with_exports(fc.load_scenario(SAAS).with_run(600, 5), out, ALL)
    return out, summary, names


@pytest.fixture(scope="module")
def subscriptions(tmp_path_factory):
    """saas-subscriptions (customers, CLV), 300 trials, with every export."""
    out = tmp_path_factory.mktemp("subs") / "out"
    summary, names = run_with_exports(fc.load_scenario(SUBSCRIPTIONS).with_run(300, 3), out, ALL)
    return out, summary, names


# --- the option's values ------------------------------------------------------------------------

def test_formats_are_parsed_and_a_bad_one_is_named_with_the_choices():
    assert parse_formats("csv") == ("csv",)
    assert parse_formats(" XLSX, csv ,xlsx") == ("xlsx", "csv")
    assert parse_formats(None) == ()
    for bad, named in (("csv,pdf", "'pdf'"), ("", "''"), ("excel", "'excel'")):
        with pytest.raises(ValueError) as info:
            parse_formats(bad)
        assert "csv, xlsx, parquet" in str(info.value) and named in str(info.value)


# --- the numbers are the summary's ------------------------------------------------------------------

def stat_of(column: str, metrics) -> tuple[str, str]:
    """``revenue_mean_ci_low [USD]`` -> (revenue, mean_ci_low)."""
    name = column.split(" [")[0]
    metric = next(m for m in sorted(metrics, key=len, reverse=True) if name.startswith(m + "_"))
    return metric, name[len(metric) + 1:]


def check_period_csv(path: Path, metrics: dict, unit_of) -> int:
    header, rows = read_csv(path)
    assert header[0] == "period" and [r["period"] for r in rows][-1] == "total"
    checked = 0
    for row in rows:
        for column in header[1:]:
            metric, stat = stat_of(column, metrics)
            assert column.endswith(f" [{unit_of(metric)}]")
            block = metrics[metric]
            source = block["total"] if row["period"] == "total" else \
                next(p for p in block["by_period"] if p["period"] == row["period"])
            assert number(row[column]) == source[stat], (column, row["period"])
            checked += 1
    return checked


def test_the_period_table_holds_summary_jsons_numbers_exactly(saas):
    out, summary, _ = saas
    stored = json.loads((out / "summary.json").read_text())
    assert stored == json.loads(json.dumps(summary))
    n = check_period_csv(out / "tables" / "periods.csv", stored["metrics"],
                         lambda m: "deals" if m == "won_deals" else "USD")
    assert n == 4 * 3 * 9  # 3 months and the total, 3 metrics, 9 statistics


def test_targets_reps_and_segments_hold_summary_jsons_numbers(saas):
    out, _, _ = saas
    s = json.loads((out / "summary.json").read_text())
    _, targets = read_csv(out / "tables" / "targets.csv")
    assert [(t["metric"], number(t["threshold [USD]"]), number(t["probability [fraction]"])) for t in targets] == \
        [(m, t["threshold"], t["probability"]) for m, t in s["targets"].items()]
    header, reps = read_csv(out / "tables" / "reps.csv")
    assert [r["rep"] for r in reps] == list(s["reps"])
    for row in reps:
        rep = s["reps"][row["rep"]]
        assert number(row["quota [USD]"]) == rep["quota"]
        for key in ("bookings", "commission"):
            for stat, value in rep[key]["total"].items():
                assert number(row[f"{key}_{stat} [USD]"]) == value
        for q in rep["quota_attainment"]:
            assert number(row[f"probability_reach_quota_{q['period']} [fraction]"]) == q["probability"]
            assert number(row[f"attainment_p50_{q['period']} [fraction of quota]"]) == q["attainment_p50"]
    _, segments = read_csv(out / "tables" / "segments.csv")
    for row in segments:
        seg = s["segments"][row["segment"]]
        for stat, value in seg["revenue"]["total"].items():
            assert number(row[f"revenue_{stat} [USD]"]) == value
            assert number(row[f"won_deals_{stat} [deals]"]) == seg["won_deals"]["total"][stat]


def test_the_workbook_holds_the_same_numbers_as_numbers_with_units_and_formats(saas):
    out, summary, names = saas
    wb = openpyxl.load_workbook(out / "forecast.xlsx")
    assert wb.sheetnames[0] == "About"
    about = {r[0]: r[1] for r in wb["About"].iter_rows(values_only=True) if r[0]}
    assert about["scenario"] == summary["scenario"] and about["trials"] == 600 and about["seed"] == 5
    assert about["currency"] == "USD" and "exported" in about
    tables = {t.name: t for t in run_tables(summary)}
    assert wb.sheetnames[1:] == list(tables)
    assert all(name in about for name in tables)  # each sheet is described
    for name, table in tables.items():
        ws = wb[name]
        assert ws.freeze_panes == "A2"
        rows = list(ws.iter_rows())
        header = [c.value for c in rows[0]]
        assert header == [c.header for c in table.columns]
        _, from_csv = read_csv(out / "tables" / f"{name}.csv")
        for cells, csv_row in zip(rows[1:], from_csv):
            for cell, col in zip(cells, table.columns):
                text = csv_row[col.header]
                if col.unit is None:
                    continue
                if text == "":
                    assert cell.value is None
                    continue
                assert isinstance(cell.value, (int, float)) and cell.value == float(text), (name, col.header)
                assert cell.number_format != "General" or col.kind == "number"
        widths = [ws.column_dimensions[openpyxl.utils.get_column_letter(i + 1)].width for i in range(len(header))]
        assert all(10 <= w <= 60 for w in widths)
    assert wb["periods"]["B2"].number_format == "#,##0.00"
    assert wb["targets"]["C2"].number_format == "0.0%"


def test_after_sale_and_clv_tables_of_a_scenario_with_customers(subscriptions):
    out, _, names = subscriptions
    s = json.loads((out / "summary.json").read_text())
    assert {"tables/after_sale.csv", "tables/clv.csv", "tables/periods.csv", "tables/reps.csv"} <= set(names)

    def unit(m):
        return {"won_deals": "deals", "new_customers": "customers", "churned_customers": "customers",
                "repeat_customers": "customers", "regular_customers": "customers",
                "active_customers": "customers"}.get(m, "EUR")

    after = {m: b for m, b in s["metrics"].items() if m not in ("revenue", "won_deals", "commission")}
    assert check_period_csv(out / "tables" / "after_sale.csv", after, unit) == 13 * len(after) * 9
    _, clv = read_csv(out / "tables" / "clv.csv")
    for row in clv:
        for stat, value in s["clv"][row["segment"]].items():
            assert number(row[f"clv_{stat} [EUR]"]) == value
    wb = openpyxl.load_workbook(out / "forecast.xlsx", read_only=True)
    assert {"after_sale", "clv"} <= set(wb.sheetnames)


# --- Parquet: every trial, as forecast.nc holds it --------------------------------------------------

def parquet(path: Path, order: str) -> dict[str, np.ndarray]:
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY {order}")
    columns = rel.columns
    data = rel.fetchnumpy()
    return {c: data[c] for c in columns}  # masked where NULL


def check_trials(out: Path) -> None:
    ds = xr.open_dataset(out / "forecast.nc", engine="h5netcdf")
    got = parquet(out / "trials.parquet", "trial, period")
    T, P = ds.sizes["trial"], ds.sizes["period"]
    assert len(got["trial"]) == T * P
    np.testing.assert_array_equal(got["trial"].reshape(T, P), np.repeat(np.arange(T)[:, None], P, axis=1))
    np.testing.assert_array_equal(got["period"].reshape(T, P)[0].astype("datetime64[D]"),
                                  ds["period"].values.astype("datetime64[D]"))
    covered = set()
    for name, da in ds.data_vars.items():
        if "trial" not in da.dims or "rep" in da.dims:
            continue
        covered.add(name)
        other = [d for d in da.dims if d not in ("trial", "period")]
        values = da.transpose("trial", *(["period"] if "period" in da.dims else []), *other).values
        if "period" not in da.dims:  # per-trial draws: the same on each of a trial's rows
            values = np.repeat(values[:, None], P, axis=1)
        values = values.reshape(T, P, -1)
        labels = [[str(v) for v in ds[d].values] for d in other]
        combos = [()] if not other else [(a,) for a in labels[0]] if len(other) == 1 else \
            [(a, b) for a in labels[0] for b in labels[1]]
        for j, combo in enumerate(combos):
            column = f"{name}[{', '.join(combo)}]" if combo else name
            x = got[column]
            x = np.where(np.ma.getmaskarray(x), np.nan, np.ma.getdata(x)) if np.ma.isMaskedArray(x) else x
            np.testing.assert_array_equal(x.reshape(T, P), values[:, :, j], err_msg=column)
    assert {"revenue", "won_deals", "revenue_by_segment", "inputs"} <= covered


def filled(x: np.ndarray) -> np.ndarray:
    """Where a column read back has a value (not NULL)."""
    if np.ma.isMaskedArray(x):
        return ~np.ma.getmaskarray(x)
    if np.issubdtype(x.dtype, np.datetime64):
        return ~np.isnat(x)
    return np.array([v is not None for v in x]) if x.dtype == object else ~np.isnan(x)


def check_reps(out: Path) -> None:
    ds = xr.open_dataset(out / "forecast.nc", engine="h5netcdf")
    got = parquet(out / "reps.parquet", "trial, rep, period NULLS LAST, quota_period")
    T, P, R = ds.sizes["trial"], ds.sizes["period"], ds.sizes["rep"]
    by_period = filled(got["period"])
    commission = np.ma.getdata(got["commission"])[by_period].reshape(T, R, P)
    np.testing.assert_array_equal(commission, ds["commission"].transpose("trial", "rep", "period").values)
    Q = ds.sizes["quota_period"]
    quota_rows = filled(got["quota_period"])
    assert by_period.sum() == T * R * P and quota_rows.sum() == T * R * Q and not (by_period & quota_rows).any()
    for name in ("bookings", "commission_by_quota_period"):
        x = np.ma.getdata(got[name])[quota_rows].reshape(T, R, Q)
        np.testing.assert_array_equal(x, ds[name].transpose("trial", "rep", "quota_period").values)


def test_trials_parquet_holds_every_per_trial_variable_of_forecast_nc(saas):
    check_trials(saas[0])


def test_reps_parquet_holds_commission_and_bookings_in_long_form(saas):
    check_reps(saas[0])


def test_parquet_of_a_scenario_with_customers(subscriptions):
    out = subscriptions[0]
    check_trials(out)
    check_reps(out)
    meta = {k.decode(): v.decode() for k, v in
            duckdb.sql(f"SELECT key, value FROM parquet_kv_metadata('{out}/trials.parquet')").fetchall()}
    units = json.loads(meta["units"])
    assert units["revenue"] == "EUR" and units["active_customers"] == "customers"
    assert units["revenue_by_segment[sales_led]"] == "EUR"
    assert json.loads(meta["forecaster"])["scenario"] == "saas-subscriptions-fy27"


def test_parquet_written_in_blocks_of_trials_is_the_same(tmp_path, monkeypatch, saas):
    monkeypatch.setattr(export, "PARQUET_CHUNK_BYTES", 1)  # one trial per block
    out = tmp_path / "out"
    run_with_exports(fc.load_scenario(SAAS).with_run(40, 5), out, ("parquet",))
    check_trials(out)
    check_reps(out)
    assert listing(out) == {"forecast.nc", "summary.json", "trials.parquet", "reps.parquet"}  # no block left


# --- units ---------------------------------------------------------------------------------------------

def all_tables(saas_summary, subs_summary):
    sens = {"scenario": "s", "seed": 1, "trials": 10, "step": 0.1, "metric": "revenue",
            "base": {"revenue": {"mean": 1.0, "p50": 1.0}, "won_deals": {"mean": 2.0}},
            "levers": [{"lever": "smb: leads", "kind": "leads", "scope": "smb",
                        "minus": {"revenue": {"mean": -1.0, "probability_higher": 0.1}},
                        "plus": {"revenue": {"mean": 1.0, "probability_higher": 0.9}}}],
            "ranking": ["smb: leads"], "ranking_commission": None,
            "three_moves": {"expansion": {"lever": "all: leads", "revenue": {"mean": 2.0}}},
            "variance_shares": [{"input": "smb.leads", "share": 0.5}],
            "skipped": [{"lever": "x", "direction": "-", "why": "because"}]}
    return [*run_tables(saas_summary), *run_tables(subs_summary), *sensitivity_tables(sens, "USD")]


def test_every_number_column_of_every_table_has_a_unit_in_its_header(saas, subscriptions):
    tables = all_tables(saas[1], subscriptions[1])
    for table in tables:
        for j, col in enumerate(table.columns):
            values = [r[j] for r in table.rows]
            if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                assert col.unit and col.header.endswith(f"[{col.unit}]"), (table.name, col.name)
            if col.unit is None:
                assert all(v is None or isinstance(v, str) for v in values), (table.name, col.name)
    wb = openpyxl.load_workbook(saas[0] / "forecast.xlsx", read_only=True)
    for ws in wb.worksheets[1:]:
        header = next(ws.iter_rows(values_only=True))
        for row in ws.iter_rows(min_row=2, values_only=True):
            for name, value in zip(header, row):
                if isinstance(value, (int, float)):
                    assert name.endswith("]"), (ws.title, name)


def test_a_column_never_mixes_units():
    units = Units("EUR")
    table = generic_table("t", "", [(["revenue"], {"threshold": 10.0}), (["won_deals"], {"threshold": 3.0})],
                          [export.Column("metric", None, "text")], units)
    assert [c.header for c in table.columns] == ["metric", "threshold [EUR]", "threshold [deals]"]
    assert table.rows == [["revenue", 10.0, None], ["won_deals", None, 3.0]]


def test_keys_a_summary_gains_later_are_gathered_in_the_declared_table_other(saas):
    summary = {**saas[1], "forecast_accuracy": {"revenue": {"probability_hit": 0.4, "mean": 12.0}},
               "notes": [{"won_deals": 3.0}]}
    tables = run_tables(summary)
    assert [t.name for t in tables if t.name not in files.TABLES["run"]] == []
    table = next(t for t in tables if t.name == "other")
    assert [c.header for c in table.columns] == ["field", "name", "probability_hit [fraction]", "mean [USD]",
                                                 "won_deals [deals]"]
    assert table.rows == [["forecast_accuracy", "revenue", 0.4, 12.0, None], ["notes", "0", None, None, 3.0]]


def test_a_table_of_an_undeclared_name_is_never_written(tmp_path, monkeypatch, saas):
    """A user's ``tables/<name>.csv`` must never be replaced: only declared names are written."""
    monkeypatch.setattr(export, "run_tables", lambda summary, currency=None: [export.Table("my-pivot", "", [])])
    monkeypatch.setitem(export.BUILDERS, "run", export.run_tables)
    with files.Staged(tmp_path) as staged, pytest.raises(AssertionError, match="my-pivot"):
        export.stage_exports(staged, "run", saas[1], ("csv",))
    assert list(tmp_path.iterdir()) == []


def test_compare_tables_include_the_targets_and_any_per_scenario_field():
    stats = {"mean": 1.5, "p50": 1.0}
    summary = {"base": "a", "seed": 1, "trials": 10, "units": {"revenue": "GBP", "won_deals": "deals"},
               "scenarios": {n: {"revenue": {"total": stats, "by_period": [{"period": "2027-01-01", **stats}]},
                                 "won_deals": {"total": stats, "by_period": [{"period": "2027-01-01", **stats}]},
                                 "note": {"revenue": {"probability": 0.5}}} for n in ("a", "b")},
               "differences": {"b": {"revenue": {"total": {"mean": 0.5, "probability_higher": 0.6},
                                                 "by_period": [{"period": "2027-01-01", "mean": 0.5,
                                                                "probability_higher": 0.6}]}}},
               "targets": {"revenue": {"threshold": 2.0, "probability": {"a": 0.1, "b": 0.3},
                                       "difference": {"b": {"mean": 0.2, "mean_ci_low": 0.1, "mean_ci_high": 0.3}}}}}
    tables = {t.name: t for t in compare_tables(summary, "EUR")}
    assert list(tables) == ["scenarios", "scenarios_other", "differences", "targets"]
    assert tables["scenarios_other"].rows == [["a", "note", 0.5], ["b", "note", 0.5]]
    s = tables["scenarios"]
    assert [c.header for c in s.columns] == ["scenario", "period", "revenue_mean [GBP]", "revenue_p50 [GBP]",
                                             "won_deals_mean [deals]", "won_deals_p50 [deals]"]
    assert s.rows[0] == ["a", "2027-01-01", 1.5, 1.0, 1.5, 1.0] and s.rows[1][1] == "total"
    d = tables["differences"]
    assert [c.header for c in d.columns][2:] == ["revenue_mean [GBP]", "revenue_probability_higher [fraction]"]
    t = tables["targets"]
    assert [c.header for c in t.columns] == ["metric", "scenario", "threshold [GBP]", "probability [fraction]",
                                             "difference_mean [fraction]", "difference_mean_ci_low [fraction]",
                                             "difference_mean_ci_high [fraction]"]
    assert t.rows == [["revenue", "a", 2.0, 0.1, None, None, None], ["revenue", "b", 2.0, 0.3, 0.2, 0.1, 0.3]]


def test_a_backtests_result_is_exported_with_write_together(tmp_path):
    score = {"actual": 10.0, "mean": 12.0, "p10": 8.0, "p50": 11.0, "p90": 15.0, "in_p10_p90": True, "crps": 1.5,
             "pit": 0.3, "pinball": {"p10": 0.2, "p50": 0.5, "p90": 0.5}, "bias": 2.0}
    result = {"cutoffs": [{"cutoff": "2017-03-31", "months": ["2017-04-01"], "whole_quarter": True,
                           "trailing_mean_rate": 1.2,
                           "metrics": {"won_deals": {"forecaster": {"by_month": [score], "total": score}},
                                       "revenue": {"forecaster": {"by_month": [score], "total": score}}}}],
              "average": {"won_deals": {"forecaster": {"crps_month": 1.5, "coverage_p10_p90_month": 1.0,
                                                       "months_whole_quarter": 1}}}}
    out = tmp_path / "bt"
    write_together_with_exports(out, {"backtest.json": json.dumps(result)}, "--out bt", kind="backtest",
                                summary=result, formats=("csv", "xlsx"), currency="USD")
    assert listing(out) == {"backtest.json", "backtest.xlsx", "backtest-tables/scores.csv",
                            "backtest-tables/averages.csv", "backtest-tables/cutoffs.csv",
                            "backtest-tables/skipped.csv", "backtest-tables/warnings.csv"}
    assert read_csv(out / "backtest-tables" / "skipped.csv") == (["cutoff", "reason"], [])  # none skipped
    assert read_csv(out / "backtest-tables" / "warnings.csv")[1] == []  # none warned
    header, rows = read_csv(out / "backtest-tables" / "scores.csv")
    assert header[:3] == ["cutoff", "method", "month"] and [r["month"] for r in rows] == ["2017-04-01", "total"]
    assert number(rows[0]["won_deals_crps [deals]"]) == 1.5 and number(rows[0]["revenue_p90 [USD]"]) == 15.0
    assert rows[0]["won_deals_in_p10_p90 [true/false]"] == "true" and number(rows[0]["revenue_pit [fraction]"]) == 0.3
    _, averages = read_csv(out / "backtest-tables" / "averages.csv")
    assert number(averages[0]["won_deals_coverage_p10_p90_month [fraction]"]) == 1.0
    assert number(averages[0]["won_deals_months_whole_quarter [months]"]) == 1
    header, cutoffs = read_csv(out / "backtest-tables" / "cutoffs.csv")
    assert number(cutoffs[0]["trailing_mean_rate [deals per month]"]) == 1.2  # per month, as baselines.py has it
    assert not any("per day" in h for h in header)
    with pytest.raises(ValueError, match="parquet"):
        write_together_with_exports(out, {}, "--out bt", kind="backtest", summary=result, formats=("parquet",))
    assert [t.name for t in tables_for("backtest", result)] == ["scores", "averages", "cutoffs", "skipped",
                                                               "warnings"]


def test_backtest_units_histograms_count_months_and_revenue_has_no_made_up_unit():
    """pit_histogram holds counts of months; a history has no currency: [currency], never [amount]."""
    score = {"actual": 10.0, "mean": 12.0, "crps": 1.5, "pit": 0.3}
    result = {"cutoffs": [{"cutoff": "2017-03-31", "months": ["2017-04-01"], "trailing_mean_rate": 1.2,
                           "metrics": {m: {"forecaster": {"by_month": [score], "total": score}}
                                       for m in ("won_deals", "revenue")}}],
              "average": {m: {"forecaster": {"crps_month": 1.5, "pit_histogram": [1, 0, 2]}}
                          for m in ("won_deals", "revenue")}}
    tables = {t.name: t for t in tables_for("backtest", result)}
    averages = [c.header for c in tables["averages"].columns]
    for m in ("won_deals", "revenue"):
        assert [h for h in averages if h.startswith(f"{m}_pit_histogram")] == \
            [f"{m}_pit_histogram_{i} [months]" for i in range(3)]
    assert not any(h.endswith(("[deals]", "[amount]", "[currency]")) for h in averages if "histogram" in h)
    assert "revenue_crps_month [currency]" in averages and "won_deals_crps_month [deals]" in averages
    scores = [c.header for c in tables["scores"].columns]
    assert "revenue_actual [currency]" in scores and not any("[amount]" in h for t in tables.values()
                                                             for h in (c.header for c in t.columns))
    assert [c.header for c in tables["cutoffs"].columns if "rate" in c.name] == \
        ["trailing_mean_rate [deals per month]"]


def test_the_about_sheet_names_the_scenarios_currency(subscriptions, tmp_path):
    out, summary, _ = subscriptions
    assert fc.load_scenario(SUBSCRIPTIONS).currency == "EUR"
    about = {r[0]: r[1] for r in openpyxl.load_workbook(out / "forecast.xlsx")["About"].iter_rows(values_only=True)
             if r[0]}
    assert about["currency"] == "EUR"
    assert about["units"].startswith("a number's header ends with its unit in brackets: [EUR] a currency")
    assert "USD" not in about["units"]
    rows = dict(r for r in export.about("backtest", {}, [], None, []) if r[0])
    assert "[currency] a currency" in rows["units"]


# --- text that looks like a formula stays text -------------------------------------------------------

FORMULAS = {"segment": "=1+2", "reps": ("=cmd|' /C calc'!A0", "+SUM(1,2)", "@foo", "-2+3"),
            "scenario": '=HYPERLINK("http://evil","click")'}


def formula_scenario(folder: Path, name: str) -> Path:
    """saas-quarter (without its pipeline file) with a segment, the reps and the scenario named like formulas."""
    import re

    text = SAAS.read_text().replace("pipeline:\n  file: saas-quarter-pipeline.csv\n", "")
    assert "pipeline:" not in text
    text = text.replace("name: saas-fy27-q1", f"name: '{name}'")
    text = re.sub(r"\bsmb\b", json.dumps(FORMULAS["segment"]), text)
    for old, new in zip(("ana", "ben", "chloe", "dev"), FORMULAS["reps"]):
        assert f"name: {old}," in text
        text = text.replace(f"name: {old},", f"name: {json.dumps(new)},")
    path = folder / f"{abs(hash(name))}.yaml"
    path.write_text(text)
    return path


def check_no_formulas(workbook: Path, expected: set[str]) -> None:
    """No sheet of ``workbook`` holds a formula; every name in ``expected`` is shown as it is."""
    import zipfile

    with zipfile.ZipFile(workbook) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")]
        assert sheets
        for n in sheets:
            assert b"<f>" not in z.read(n) and b"<f " not in z.read(n), n
    wb = openpyxl.load_workbook(workbook)
    shown = {c.value for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.data_type == "s"}
    assert not any(c.data_type == "f" for ws in wb.worksheets for row in ws.iter_rows() for c in row)
    assert expected <= shown, expected - shown


def check_csv_cells(folder: Path, expected: set[str]) -> None:
    found: set[str] = set()
    for path in folder.glob("*.csv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            for row in csv.reader(f):
                for cell in row:
                    assert cell[:1] not in ("=", "+", "@", "\t", "\r") and not cell.startswith("-") or \
                        _is_number(cell), (path.name, cell)
                    found.add(cell)
    assert {"'" + e for e in expected} <= found, {"'" + e for e in expected} - found


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_names_that_look_like_formulas_are_written_as_text(tmp_path):
    path = formula_scenario(tmp_path, FORMULAS["scenario"])
    out = tmp_path / "out"
    run_with_exports(fc.load_scenario(path).with_run(100, 1), out, ("csv", "xlsx"))
    names = {FORMULAS["segment"], *FORMULAS["reps"], FORMULAS["scenario"]}
    check_no_formulas(out / "forecast.xlsx", names)
    check_csv_cells(out / "tables", {FORMULAS["segment"], *FORMULAS["reps"]})
    wb = openpyxl.load_workbook(out / "forecast.xlsx")
    assert [c.value for c in wb["reps"]["A"]][1:5] == list(FORMULAS["reps"])
    assert dict(r for r in wb["About"].iter_rows(values_only=True) if r[0])["scenario"] == FORMULAS["scenario"]
    # numbers stay numbers, negative ones too
    table = export.Table("t", "", [export.Column("name", None, "text"), export.Column("x", "USD", "money")],
                         [["-2+3", -2.5]])
    export.write_csv(table, tmp_path / "t.csv")
    assert read_csv(tmp_path / "t.csv")[1] == [{"name": "'-2+3", "x [USD]": "-2.5"}]
    export.write_xlsx([table], tmp_path / "t.xlsx", [])
    cells = list(openpyxl.load_workbook(tmp_path / "t.xlsx")["t"].iter_rows(min_row=2, values_only=True))
    assert cells == [("-2+3", -2.5)]


def test_compare_names_that_look_like_formulas_are_written_as_text(tmp_path):
    from click.testing import CliRunner

    from forecaster.cli import main

    base = formula_scenario(tmp_path, FORMULAS["scenario"])
    variant = formula_scenario(tmp_path, "@variant")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compare", str(base), str(variant), "--out", str(out), "--trials", "100",
                                       "--export", "csv,xlsx"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    check_no_formulas(out / "compare.xlsx", {FORMULAS["scenario"], "@variant"})
    check_csv_cells(out / "compare-tables", {FORMULAS["scenario"], "@variant"})


# --- written together, or not at all ----------------------------------------------------------------

@pytest.fixture
def previous(tmp_path):
    """A folder with a finished run (and an export) and its files' bytes."""
    out = tmp_path / "out"
    run_with_exports(fc.load_scenario(SAAS).with_run(200, 1), out, ("csv",))
    return out, {name: (out / name).read_bytes() for name in listing(out)}


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "Ctrl-C"])
@pytest.mark.parametrize("stage", ["write_xlsx", "write_parquet"])
def test_a_failed_or_interrupted_export_leaves_the_previous_results_and_no_file_of_its_own(previous, monkeypatch,
                                                                                          failure, stage):
    out, before = previous
    real = getattr(export, stage)

    def fail(*args, **kwargs):
        real(*args, **kwargs)  # the file is written, then the failure comes
        raise failure

    monkeypatch.setattr(export, stage, fail)
    with pytest.raises(OutputError if isinstance(failure, OSError) else KeyboardInterrupt) as info:
        run_with_exports(fc.load_scenario(SAAS).with_run(300, 2), out, ALL)
    if isinstance(failure, OSError):
        assert "No space left on device" in str(info.value) and "nothing was written" in str(info.value)
    assert {name: (out / name).read_bytes() for name in listing(out)} == before  # no temporary, no hidden folder
    assert sorted(p.name for p in out.iterdir()) == ["forecast.nc", "summary.json", "tables"]


def test_a_failed_export_into_a_new_folder_leaves_no_folder(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(export, "write_csv", fail)
    with pytest.raises(OutputError, match="File too large"):
        run_with_exports(fc.load_scenario(SAAS).with_run(100, 2), tmp_path / "new" / "out", ("csv",))
    assert list(tmp_path.iterdir()) == []


def test_an_export_replaces_the_previous_runs_exports(previous):
    out, _ = previous
    run_with_exports(fc.load_scenario(SAAS).with_run(150, 3), out, ("xlsx",))
    assert listing(out) == {"forecast.nc", "summary.json", "forecast.xlsx"}  # tables/ of the older run went
    run_to_folder(fc.load_scenario(SAAS).with_run(150, 3), out)  # and a run without exports removes them
    assert listing(out) == {"forecast.nc", "summary.json"}


def test_a_killed_runs_hidden_folder_is_swept_once_its_process_is_gone(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = tmp_path / f".export.{proc.pid}.0123456789ab.tmp"
    alive = tmp_path / ".export.1.0123456789ab.tmp"  # pid 1 runs (and started before the folder)
    mine = tmp_path / ".notes.123.0123456789ab.tmp"
    for d in (dead, alive, mine):
        d.mkdir()
        (d / "forecast.nc").write_bytes(b"x")
    assert export.sweep_stale_run_folders(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and mine.exists()


def test_the_workbook_uses_no_system_temporary_file(tmp_path, monkeypatch, saas):
    """openpyxl's temporaries go beside the workbook, not into the system's temporary folder."""
    import openpyxl.worksheet._writer as sheet_writer

    def refused(*args, **kwargs):
        raise AssertionError("a temporary file outside --out")

    monkeypatch.setattr(sheet_writer, "NamedTemporaryFile", refused)
    tables = run_tables(saas[1])
    export.write_xlsx(tables, tmp_path / "f.xlsx", export.about("run", saas[1], tables, "USD", []))
    assert [p.name for p in tmp_path.iterdir()] == ["f.xlsx"]
    assert openpyxl.load_workbook(tmp_path / "f.xlsx")["periods"]["B2"].value == \
        saas[1]["metrics"]["revenue"]["by_period"][0]["mean"]
