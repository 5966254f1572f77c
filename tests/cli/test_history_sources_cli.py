"""calibrate and backtest read a history from each source (issue 14): the same scenario and
backtest from a CSV, Parquet, XLSX or DuckDB history; the input options of both commands;
usage errors and refusals as messages, never tracebacks."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "history"))
import history_tables as ht  # noqa: E402

from forecaster.cli import main  # noqa: E402

ROWS = ht.synthetic_history()
COMMON = ["--preset", "salesforce", "--segment-column", "Segment"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    return {"csv": ht.write_csv(ROWS, d / "h.csv"), "parquet": ht.write_parquet(ROWS, d / "h.parquet"),
            "xlsx": ht.write_xlsx(ROWS, d / "h.xlsx"), "duckdb": ht.write_duckdb(ROWS, d / "h.duckdb"),
            "us": ht.write_csv(ROWS, d / "us.csv", date_style="us")}


@pytest.fixture(scope="module")
def from_csv(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("csv") / "s.yaml"
    res = invoke("calibrate", tables["csv"], *COMMON, "--as-of", ht.AS_OF, "-o", out)
    assert res.exit_code == 0, res.output
    return out


def body(path: Path) -> str:
    """A calibrated scenario without its first line (which names the history)."""
    return path.read_text().split("\n", 1)[1]


@pytest.mark.parametrize("kind", ["parquet", "xlsx", "duckdb", "us"])
def test_calibrate_on_each_source_writes_the_csvs_scenario(tables, from_csv, tmp_path, kind):
    query = ["--query", "SELECT * FROM deals"] if kind == "duckdb" else []
    out = tmp_path / "s.yaml"
    res = invoke("calibrate", tables[kind], *query, *COMMON, "--as-of", ht.AS_OF, "-o", out)
    assert res.exit_code == 0, res.output
    assert body(out) == body(from_csv)
    assert (tmp_path / "s-pipeline.csv").read_text() == (from_csv.parent / "s-pipeline.csv").read_text()
    first = out.read_text().split("\n", 1)[0]
    assert str(tables[kind]) in first and ("--query 'SELECT * FROM deals'" in first) == (kind == "duckdb")


def test_backtest_on_a_duckdb_query_scores_as_on_the_csv(tables, tmp_path):
    common = [*COMMON, "--cutoffs", "2025-12-31", "--months", 2, "--trials", 200]
    a = invoke("backtest", tables["csv"], *common, "--out", tmp_path / "a")
    b = invoke("backtest", tables["duckdb"], "--query", "SELECT * FROM deals", *common, "--out", tmp_path / "b")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads((tmp_path / "a" / "backtest.json").read_text()) == \
        json.loads((tmp_path / "b" / "backtest.json").read_text())


@pytest.mark.parametrize("command", ["calibrate", "backtest"])
def test_both_commands_take_the_same_input_options(tmp_path, command):
    history = tmp_path / "h.csv"
    history.write_text("Ref,Opened,Result,Closed,Value\n"
                       'd1,01/02/2026,Signed,01/20/2026,"1.500,00"\n'
                       'd2,01/03/2026,Dropped,01/21/2026,"2.000,00"\n'
                       'd3,01/04/2026,Talking,,"750,00"\n')
    extra = ["--as-of", "2026-01-31", "-o", tmp_path / "o" / "s.yaml"] if command == "calibrate" else \
        ["--cutoffs", "2026-01-31", "--trials", 100, "--out", tmp_path / "o"]
    base = [command, history, "--stages", "lead", "--column", "deal_id=Ref", "--column", "lead=Opened",
            "--column", "outcome=Result", "--column", "closed=Closed", "--column", "amount=Value", *extra]
    res = invoke(*base, "--outcome", "won=Signed", "--outcome", "lost=Dropped", "--outcome", "open=Talking")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "dates like '01/02/2026' can be read day first or month first" in res.output
    assert "--date-format %d/%m/%Y (day first) or --date-format %m/%d/%Y (month first)" in res.output
    res = invoke(*base, "--outcome", "won=Signed", "--outcome", "lost=Dropped", "--date-format", "%m/%d/%Y",
                 "--decimal", ",")
    assert res.exit_code == 2 and "'Talking': 1 row (first on line 4)" in res.output
    assert '--outcome open="Talking"' in res.output
    res = invoke(*base, "--date-format", "dd/mm/yyyy")
    assert res.exit_code == 2 and "Invalid value for '--date-format': expected a date format with the day, month " \
                                  "and year, e.g. %d/%m/%Y" in res.output
    res = invoke(*base, "--decimal", ";")
    assert res.exit_code == 2 and "Invalid value for '--decimal'" in res.output
    assert not (tmp_path / "o").exists()
    res = invoke(*base, "--outcome", "won=Signed", "--outcome", "lost=Dropped", "--outcome", "open=Talking",
                 "--date-format", "%m/%d/%Y")
    assert "Traceback" not in res.output
    if command == "backtest":  # read as calibrate reads it, and three deals in January score no 3 months after
        assert res.exit_code == 2 and "no cutoff can be scored over 3 months" in res.output, res.output
    if command == "calibrate":
        assert res.exit_code == 0, res.output
        assert "d3,all,lead,2026-01-04" in (tmp_path / "o" / "s-pipeline.csv").read_text()
        import yaml

        value = yaml.safe_load((tmp_path / "o" / "s.yaml").read_text())["segments"]["all"]["deal_value"]
        assert value["values"] == [1500.0], value  # the one won deal's "1.500,00"


def test_the_query_option_applies_to_databases_only(tables, tmp_path):
    out = ["--as-of", ht.AS_OF, "-o", tmp_path / "o" / "s.yaml"]
    res = invoke("calibrate", tables["duckdb"], *COMMON, *out)
    assert res.exit_code == 2 and "is a DuckDB database: give --query \"SELECT ...\"" in res.output
    assert "its tables: deals" in res.output
    res = invoke("calibrate", tables["parquet"], "--query", "SELECT 1", *COMMON, *out)
    assert res.exit_code == 2 and "--query reads a database" in res.output
    res = invoke("calibrate", tables["duckdb"], "--query", "SELECT * FROM nowhere", *COMMON, *out)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{tables['duckdb']} (--query): cannot be read as a DuckDB query: Catalog Error" in res.output
    assert not (tmp_path / "o").exists()


def test_a_postgresql_url_never_shows_its_password(tmp_path):
    url = "postgresql://ana:s3cret@127.0.0.1:1/crm"
    for command in (["calibrate", url, "--query", "SELECT * FROM deals", "--as-of", "2026-06-30", "-o",
                     tmp_path / "o" / "s.yaml"],
                    ["backtest", url, "--query", "SELECT * FROM deals", "--cutoffs", "2026-01-31", "--out",
                     tmp_path / "o"]):
        res = invoke(*command, *COMMON)
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "postgresql://ana:***@127.0.0.1:1/crm: cannot connect:" in res.output and "s3cret" not in res.output
    res = invoke("calibrate", url, *COMMON, "--as-of", "2026-06-30", "-o", tmp_path / "o" / "s.yaml")
    assert res.exit_code == 2 and "is a database: give --query" in res.output and "s3cret" not in res.output
    assert not (tmp_path / "o").exists()


def test_a_history_that_does_not_exist_is_a_usage_error(tmp_path):
    res = invoke("calibrate", tmp_path / "nope.parquet", "--as-of", "2026-06-30", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 2 and "Path" in res.output and "does not exist" in res.output


def test_calibrate_never_writes_over_a_workbook_it_reads(tables, tmp_path):
    xlsx = tmp_path / "s.xlsx"
    xlsx.write_bytes(tables["xlsx"].read_bytes())
    res = invoke("calibrate", xlsx, *COMMON, "--as-of", ht.AS_OF, "-o", xlsx)
    assert res.exit_code == 2 and "is the history" in res.output
    assert xlsx.read_bytes() == tables["xlsx"].read_bytes()
