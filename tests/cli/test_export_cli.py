"""``--export csv,xlsx,parquet`` on run, compare and sensitivity: the option's errors, what
is written (inside --out only), and the numbers of compare's and sensitivity's tables."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import numpy as np
import openpyxl
import pytest
import xarray as xr
from click.testing import CliRunner
from conftest import SCENARIOS

from forecaster.cli import main
from forecaster.present.export import declared_names
from forecaster.results.files import OUTPUTS

SAAS = SCENARIOS / "saas-quarter.yaml"
VARIANT = SCENARIOS / "variants" / "saas-budget-up-60.yaml"


def invoke(*args, code: int = 0):
    result = CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def number(text: str):
    return None if text == "" else float(text)


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory and home: nothing may appear in them but --out."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


@pytest.mark.parametrize("command", [["run", SAAS], ["compare", SAAS, VARIANT], ["sensitivity", SAAS]],
                         ids=["run", "compare", "sensitivity"])
@pytest.mark.parametrize("value", ["csv,pdf", "", "xls"])
def test_a_bad_export_value_is_a_usage_error_listing_the_choices(tmp_path, command, value):
    out = tmp_path / "out"
    result = invoke(*command, "--out", out, "--export", value, code=2)
    assert "Invalid value for '--export'" in result.output
    assert "csv, xlsx, parquet" in result.output
    assert not out.exists()


def test_parquet_with_keep_summary_is_a_usage_error(tmp_path):
    out = tmp_path / "out"
    result = invoke("run", SAAS, "--out", out, "--keep", "summary", "--export", "parquet", code=2)
    assert "--keep summary" in result.output and not out.exists()


def test_run_exports_inside_out_only_and_says_so(cwd):
    tmp_path = cwd
    out = tmp_path / "work" / "out"
    before = {p for p in tmp_path.rglob("*")}
    result = invoke("run", SAAS, "--out", out, "--trials", "300", "--export", "csv,xlsx,parquet")
    assert f"Exported {out}/forecast.xlsx, {out}/trials.parquet, {out}/reps.parquet and 5 tables in {out}/tables/" \
        in result.output
    assert listing(out) == {"forecast.nc", "summary.json", "forecast.xlsx", "trials.parquet", "reps.parquet",
                            "tables/periods.csv", "tables/targets.csv", "tables/reps.csv", "tables/segments.csv",
                            "tables/funnel.csv"}
    made = {p for p in tmp_path.rglob("*")} - before
    assert all(p == out or out in p.parents for p in made), sorted(made)
    assert all(OUTPUTS["run"].owns(name) for name in listing(out))  # the next run replaces them all


def test_keep_summary_exports_the_tables(tmp_path):
    out = tmp_path / "out"
    invoke("run", SAAS, "--out", out, "--trials", "200", "--keep", "summary", "--export", "xlsx,csv", "-q")
    assert "forecast.nc" not in listing(out) and {"summary.json", "forecast.xlsx", "tables/periods.csv"} <= listing(out)


def test_a_run_with_customers_exports_its_after_sale_tables(tmp_path):
    out = tmp_path / "out"
    invoke("run", SCENARIOS / "saas-subscriptions.yaml", "--out", out, "--trials", "200", "--export", "csv,xlsx", "-q")
    s = json.loads((out / "summary.json").read_text())
    rows = read_csv(out / "tables" / "after_sale.csv")
    total = rows[-1]
    assert total["period"] == "total"
    assert number(total["mrr_p50 [EUR]"]) == s["metrics"]["mrr"]["total"]["p50"]
    assert number(total["active_customers_mean [customers]"]) == s["metrics"]["active_customers"]["total"]["mean"]
    wb = openpyxl.load_workbook(out / "forecast.xlsx", read_only=True)
    assert {"periods", "after_sale", "clv", "reps", "targets"} <= set(wb.sheetnames)


def test_compare_exports_its_tables_and_every_trial(tmp_path):
    out = tmp_path / "out"
    result = invoke("compare", SAAS, VARIANT, "--out", out, "--trials", "300", "--export", "csv,xlsx,parquet")
    assert f"Exported {out}/compare.xlsx" in result.output
    s = json.loads((out / "compare.json").read_text())
    names = listing(out)
    assert {"compare.nc", "compare.json", "compare.xlsx", "compare-trials.parquet", "compare-tables/scenarios.csv",
            "compare-tables/differences.csv"} <= names
    checked = 0
    for row in read_csv(out / "compare-tables" / "scenarios.csv"):
        for metric, block in s["scenarios"][row["scenario"]].items():
            source = block["total"] if row["period"] == "total" else \
                next(p for p in block["by_period"] if p["period"] == row["period"])
            for stat in ("mean", "p10", "p50", "p90", "mean_ci_low"):
                unit = "deals" if metric == "won_deals" else "USD"
                assert number(row[f"{metric}_{stat} [{unit}]"]) == source[stat]
                checked += 1
    assert checked == 2 * 4 * 3 * 5
    variant = next(iter(s["differences"]))
    rows = read_csv(out / "compare-tables" / "differences.csv")
    total = next(r for r in rows if r["variant"] == variant and r["period"] == "total")
    d = s["differences"][variant]["revenue"]["total"]
    assert number(total["revenue_mean [USD]"]) == d["mean"]
    assert number(total["revenue_probability_higher [fraction]"]) == d["probability_higher"]
    ds = xr.open_dataset(out / "compare.nc", engine="h5netcdf")
    got = duckdb.sql(f"SELECT * FROM '{out}/compare-trials.parquet' ORDER BY scenario = '{s['base']}' DESC, "
                     "scenario, trial, period").fetchnumpy()
    for name in ds.data_vars:
        np.testing.assert_array_equal(got[name], ds[name].transpose("scenario", "trial", "period").values.ravel(),
                                      err_msg=name)
    assert (out / "compare.xlsx").stat().st_size > 0


def test_sensitivity_exports_its_levers_with_their_effects(tmp_path):
    out = tmp_path / "out"
    invoke("sensitivity", SAAS, "--out", out, "--trials", "200", "--export", "csv,xlsx,parquet", "-q")
    s = json.loads((out / "sensitivity.json").read_text())
    rows = read_csv(out / "sensitivity-tables" / "levers.csv")
    effects = {e["lever"]: e for e in s["levers"]}
    assert len(rows) == sum(("minus" in e) + ("plus" in e) for e in s["levers"])
    for row in rows:
        e = effects[row["lever"]][row["direction"]]
        assert number(row["revenue_mean [USD]"]) == e["revenue"]["mean"]
        assert number(row["won_deals_p90 [deals]"]) == e["won_deals"]["p90"]
        rank = row["rank_by_revenue [position]"]
        assert (s["ranking"].index(row["lever"]) + 1 if row["lever"] in s["ranking"] else None) == number(rank)
    shares = read_csv(out / "sensitivity-tables" / "variance_shares.csv")
    assert [(r["input"], number(r["share [fraction]"])) for r in shares] == \
        [(v["input"], v["share"]) for v in s["variance_shares"]]
    ds = xr.open_dataset(out / "sensitivity.nc", engine="h5netcdf")
    got = duckdb.sql(f"SELECT revenue_difference FROM '{out}/sensitivity-trials.parquet' ORDER BY trial").fetchnumpy()
    assert len(got["revenue_difference"]) == ds.sizes["trial"] * ds.sizes["lever"] * 2
    wb = openpyxl.load_workbook(out / "sensitivity.xlsx", read_only=True)
    assert wb.sheetnames[:3] == ["About", "base", "levers"]


def test_a_second_export_replaces_the_first(tmp_path):
    out = tmp_path / "out"
    invoke("run", SAAS, "--out", out, "--trials", "200", "--export", "csv,parquet", "-q")
    (out / "notes.txt").write_text("mine\n")
    invoke("run", SAAS, "--out", out, "--trials", "150", "--export", "xlsx", "-q")
    assert listing(out) == {"forecast.nc", "summary.json", "forecast.xlsx", "notes.txt"}
    wb = openpyxl.load_workbook(out / "forecast.xlsx", read_only=True)
    assert dict(r for r in wb["About"].iter_rows(values_only=True) if r[0])["trials"] == 150


@pytest.mark.parametrize("command", ["run", "compare", "sensitivity", "backtest"])
def test_every_export_name_is_declared_as_the_commands_output(command):
    names = declared_names(command)
    if command == "backtest":  # a backtest keeps no trials: no Parquet
        names = tuple(n for n in names if not n.endswith(".parquet"))
    assert all(name in OUTPUTS[command].names for name in names)
    assert not any("*" in name for name in names)  # exact names: a user's own CSV there is never removed
