"""Issue 14 from the command line: calibrate --fiscal-year-start writes a scenario whose
quarters follow the fiscal year; backtest --export writes its tables beside backtest.json."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import openpyxl
import yaml
from click.testing import CliRunner

from forecaster.cli import main

MAVEN = Path(__file__).resolve().parents[3] / "shared" / "data" / "maven-crm-sales-opportunities" / "sales_pipeline.csv"


def test_calibrate_fiscal_year_start_reaches_the_scenario(tmp_path):
    out = tmp_path / "s.yaml"
    r = CliRunner().invoke(main, ["calibrate", str(MAVEN), "--preset", "maven", "--as-of", "2017-06-30", "-o",
                                  str(out), "--fiscal-year-start", "2"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(out.read_text())
    assert doc["fiscal_year_start"] == 2
    r = CliRunner().invoke(main, ["validate", str(out)])
    assert r.exit_code == 0, r.output
    bad = CliRunner().invoke(main, ["calibrate", str(MAVEN), "--preset", "maven", "--as-of", "2017-06-30", "-o",
                                    str(tmp_path / "t.yaml"), "--fiscal-year-start", "13"])
    assert bad.exit_code == 2 and "--fiscal-year-start" in bad.output and not (tmp_path / "t.yaml").exists()


def test_backtest_exports_its_tables(tmp_path):
    out = tmp_path / "bt"
    args = ["backtest", str(MAVEN), "--preset", "maven", "--cutoffs", "2017-06-30", "--months", "2",
            "--trials", "200", "--out", str(out)]
    r = CliRunner().invoke(main, [*args, "--export", "csv,xlsx"])
    assert r.exit_code == 0, r.output
    result = json.loads((out / "backtest.json").read_text())
    assert sorted(p.name for p in (out / "backtest-tables").iterdir()) == ["averages.csv", "cutoffs.csv", "scores.csv",
                                                                         "skipped.csv", "warnings.csv"]
    wb = openpyxl.load_workbook(out / "backtest.xlsx", read_only=True)
    assert wb.sheetnames[0] == "About" and len(wb.sheetnames) == 6
    # Maven in June 2017 is too young for calibration's in-history check: the backtest says so
    with open(out / "backtest-tables" / "warnings.csv", encoding="utf-8-sig") as f:
        said = list(csv.DictReader(f))
    assert any("too young to check the intervals" in w["warning"] and w["cutoffs"] == "2017-06-30" for w in said)
    assert "warning: calibrating on 2017-06-30: the history is too young" in r.output
    with open(out / "backtest-tables" / "cutoffs.csv", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [r["cutoff"] for r in rows][:1] == [result["cutoffs"][0]["cutoff"]]
    # a backtest without --export removes the older export (one result per folder)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert not (out / "backtest.xlsx").exists() and not (out / "backtest-tables").exists()
    # parquet: nothing to write it from
    r = CliRunner().invoke(main, [*args, "--export", "parquet"])
    assert r.exit_code == 2 and "keeps no trials" in r.output
